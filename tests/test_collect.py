"""Demonstrations from scripted gaits (legkit.imitate.collect) on the PiDog: the file, the labels, the noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from legkit.envs.core import LeggedBatch
from legkit.gaits import GaitController
from legkit.imitate.collect import PIDOG_BEHAVIOURS, CollectConfig, behaviour_task, collect
from legkit.imitate.demos import load_demos
from legkit.tasks import get_task


def test_demonstrations_of_every_behaviour(tmp_path):
    task = replace(get_task("pidog-run"), arena=replace(get_task("pidog-run").arena, enabled=False))
    chosen = {k: PIDOG_BEHAVIOURS[k] for k in ("trot_forward", "walk_backward", "sit")}
    summary = collect("pidog-run", task, chosen, CollectConfig(seconds=6, episode_seconds=3), tmp_path / "d.npz")
    d = load_demos(tmp_path / "d.npz")
    assert d.gaits == list(chosen) and d.meta["task"] == "pidog-run" and d.meta["noise"]["joint_pos"] == 0.01
    assert summary["trot_forward"]["mean_forward_velocity"] > 0.02  # forward moves +x
    assert summary["walk_backward"]["mean_forward_velocity"] < -0.005
    assert abs(summary["sit"]["mean_forward_velocity"]) < 0.01
    for name, s in summary.items():
        assert s["samples"] == s["episodes"] * 150 and s["episodes"] + s["fallen"] == 2
    # The behaviour term is the one-hot of the demonstrated behaviour
    _, start, size = next(b for b in LeggedBatch(task, 1).obs_layout if b[0] == "behaviour")
    hot = d.obs[:, start:start + size].argmax(axis=1)
    names = np.array(task.behaviours)[hot]
    assert (names == np.array(d.gaits)[d.gait]).all()
    assert np.abs(d.action).max() <= 1.0 and np.mean(np.abs(d.action) >= 0.999) < 0.01  # the gaits fit the scale


def test_labels_reproduce_the_gait_and_joint_readings_carry_the_noise(tmp_path):
    task = replace(get_task("pidog-run"), arena=replace(get_task("pidog-run").arena, enabled=False))
    collect("pidog-run", task, {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]},
            CollectConfig(seconds=2, episode_seconds=2, joint_pos_noise=0.0, joint_vel_noise=0.0), tmp_path / "clean.npz")
    collect("pidog-run", task, {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]},
            CollectConfig(seconds=2, episode_seconds=2), tmp_path / "noisy.npz")
    clean, noisy = load_demos(tmp_path / "clean.npz"), load_demos(tmp_path / "noisy.npz")
    np.testing.assert_array_equal(clean.action, noisy.action)  # noise on the readings, never on the labels
    _, start, size = next(b for b in LeggedBatch(task, 1).obs_layout if b[0] == "joint_pos")
    diff = noisy.obs[:, start:start + size] - clean.obs[:, start:start + size]
    assert 0.008 < diff.std() < 0.012
    # Replaying the labels through the policy's action map gives the gait's joint targets
    btask = behaviour_task(task, "pidog", "trot_forward", PIDOG_BEHAVIOURS["trot_forward"], 2.0)
    b = LeggedBatch(btask, 1, seed=0)
    ctl = GaitController(b.robot, b.model, btask.gait, 1, b.dt)
    for k in range(10):
        np.testing.assert_allclose(b.home + task.action_scale * clean.action[k], ctl.joint_targets()[0], atol=1e-6)
        ctl.step()
    b.close()


def test_executed_noise_leaves_the_labels_clean(tmp_path):
    task = replace(get_task("pidog-run"), arena=replace(get_task("pidog-run").arena, enabled=False))
    trot = {"trot_forward": PIDOG_BEHAVIOURS["trot_forward"]}
    quiet = CollectConfig(seconds=1, episode_seconds=1, joint_pos_noise=0.0, joint_vel_noise=0.0)
    collect("pidog-run", task, trot, quiet, tmp_path / "a.npz")
    collect("pidog-run", task, trot, replace(quiet, action_noise=0.01), tmp_path / "b.npz")
    a, b = load_demos(tmp_path / "a.npz"), load_demos(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.action, b.action)  # the gait's own targets: they depend on its phase alone
    _, start, size = next(x for x in LeggedBatch(task, 1).obs_layout if x[0] == "joint_pos")
    assert np.abs(a.obs[:, start:start + size] - b.obs[:, start:start + size]).max() > 0.005  # executed off it
    assert b.meta["noise"]["executed_action"] == 0.01

