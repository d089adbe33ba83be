"""Collisions in evaluation metrics: contact onsets on hand-made sequences, and a real PiDog walked into a wall."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from legkit.cli import main
from legkit.evaluate.metrics import bootstrap_ci, compute_metrics, contact_onsets, format_table
from legkit.evaluate.rollout import Trace, rollout_model
from legkit.evaluate.scripted import Unnormalized, ZeroResidual, gait_config, scene_config
from legkit.tasks.terms import RewardTerm


def _trace(contact: np.ndarray | None, alive: np.ndarray) -> Trace:
    """A trace of standing robots with the given (steps, episodes) contact and alive flags."""
    T, n = alive.shape
    z = np.zeros((T, n))
    return Trace(alive=alive, vel=np.zeros((T, n, 3)), command=np.zeros((T, n, 3)), height=z + 0.1, action_abs=z,
                 power=z, reward=z, terminated=np.zeros(n, dtype=bool), length=alive.sum(axis=0), dt=0.02,
                 max_steps=T, obstacle_contact=contact)


def test_onsets_count_where_contact_starts_within_the_episode():
    c = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], dtype=bool)
    alive = np.ones_like(c)
    # episode 0: starts at steps 1 and 4; episode 1: at step 0 (contact from the first step counts) and 3;
    # episode 2: at step 0 and 2
    np.testing.assert_array_equal(contact_onsets(c, alive), [2, 2, 2])
    alive[4:, 0] = False  # episode 0 ended at step 3: its contact at step 4 is not its own
    alive[3:, 1] = False
    np.testing.assert_array_equal(contact_onsets(c, alive), [1, 1, 2])


def test_metrics_report_collisions_per_episode_and_time_share_only_with_an_arena():
    c = np.array([[0, 1], [1, 1], [1, 0], [0, 1]], dtype=bool)
    alive = np.ones_like(c)
    alive[3, 0] = False
    m = compute_metrics(_trace(c, alive))
    assert m["collisions_per_episode"] == 1.5  # one in episode 0, two in episode 1
    assert m["collision_time_share"] == 5 / 7  # alive steps in contact over alive steps
    rows = {line.rsplit("  ", 1)[0].strip(): line.rsplit(" ", 1)[1] for line in format_table(m).splitlines()}
    assert rows["collisions per episode"] == "1.50" and rows["time in contact with obstacles"] == "71.4%"
    assert m["episodes_with_collision"] == 1.0 and rows["episodes with a collision"] == "100.0%"
    plain = compute_metrics(_trace(None, alive))
    assert "collisions_per_episode" not in plain and "collision_time_share" not in plain
    assert "episodes_with_collision" not in plain and "collisions_by_kind" not in plain
    assert "collisions" not in format_table(plain)


def test_the_collision_interval_is_as_wide_as_a_heavy_tail_makes_it():
    # 200 episodes: 180 without a collision, 20 stuck against a curb for 30 touches each (mean 3.0): the
    # normal approximation's 95% interval is 3.0 +- 1.96 * 9 / sqrt(200), 1.75 to 4.25
    x = np.r_[np.zeros(180), np.full(20, 30.0)]
    lo, hi = bootstrap_ci(x)
    assert abs(lo - 1.75) < 0.25 and abs(hi - 4.25) < 0.25
    assert bootstrap_ci(x) == (lo, hi)  # a fixed seed: the same evaluation prints the same interval
    spread = bootstrap_ci(np.full(200, 3.0))  # the same 3.0 in every episode: no doubt about the mean
    assert spread[0] == spread[1] == 3.0
    c = np.zeros((4, 200), dtype=bool)  # through the metrics: 20 of 200 episodes touch once, at step 1
    c[1, :20] = True
    m = compute_metrics(_trace(c, np.ones_like(c)))
    lo, hi = m["collisions_per_episode_ci95"]
    assert lo < m["collisions_per_episode"] == 0.1 < hi and hi - lo > 0.06
    row = [line for line in format_table(m).splitlines() if line.startswith("collisions, 95% interval")]
    assert row and row[0].endswith(f"{lo:.2f} to {hi:.2f}")


def test_collisions_by_kind_count_each_kinds_onsets():
    # (steps, episodes, kinds): episode 0 presses on a box, lets go, then touches a box and a wall at once;
    # episode 1 never touches anything
    by_kind = np.zeros((5, 2, 2), dtype=bool)
    by_kind[[0, 1, 3], 0, 0] = True
    by_kind[3:, 0, 1] = True
    alive = np.ones((5, 2), dtype=bool)
    t = _trace(by_kind.any(axis=-1), alive)
    t.obstacle_kinds, t.obstacle_contact_by_kind = ("box", "wall"), by_kind
    m = compute_metrics(t)
    assert m["collisions_by_kind"] == {"box": 1.0, "wall": 0.5}  # box: 2 onsets in episode 0; wall: 1
    assert m["collisions_per_episode"] == 1.0  # the box and the wall at once are one collision of the robot
    assert m["episodes_with_collision"] == 0.5
    assert "box 1.00  wall 0.50" in format_table(m)


ONE_POST = ["task.arena.boxes=1", "task.arena.low=0", "task.arena.narrow=0", "task.arena.box_side=[0.01,0.01]",
            "task.arena.box_height=[0.01,0.01]", "task.arena.spacing=0", "task.episode_seconds=6",
            "task.reset.yaw_range=0"]
"""A PiDog arena with one 1 cm cube and the walls, heading +x for 6 s."""


def _trot(sets: list[str]) -> Trace:
    cfg = gait_config("pidog", "trot", scene_config("pidog-run"), sets)
    return rollout_model(ZeroResidual.for_task(cfg.task), Unnormalized(), 2, cfg, seed=0)


def test_a_trotting_pidog_collides_with_a_near_wall_and_not_in_open_ground():
    # Arena walls 0.35 m ahead: the scripted trot (about 0.07 m/s) reaches them within the episode.
    near = _trot([*ONE_POST, "task.arena.size=0.7", "task.arena.clear_radius=0.25"])
    assert near.obstacle_contact.shape == near.alive.shape
    first = np.argmax(near.obstacle_contact, axis=0)
    assert near.obstacle_contact.any(axis=0).all() and (first > 25).all()  # after walking there, not at the start
    m = compute_metrics(near)
    assert m["collisions_per_episode"] >= 1 and 0 < m["collision_time_share"] < 1
    assert near.obstacle_kinds == ("box", "wall") and m["collisions_by_kind"]["wall"] >= 1
    # The same robot and seed in a 4 m arena, the cube at least 1.5 m away: no contact at all.
    far = compute_metrics(_trot([*ONE_POST, "task.arena.size=4.0", "task.arena.clear_radius=1.5"]))
    assert far["collisions_per_episode"] == 0 and far["collision_time_share"] == 0
    assert far["collisions_by_kind"] == {"box": 0.0, "wall": 0.0} and far["episodes_with_collision"] == 0
    assert far["mean_forward_velocity"] > 0.03  # it did walk


def test_gait_command_reports_collisions_and_flat_ground_has_none(tmp_path, capsys):
    out = tmp_path / "gait.json"
    sets = [a for s in [*ONE_POST, "task.arena.size=0.7", "task.arena.clear_radius=0.25"] for a in ("--set", s)]
    assert main(["gait", "pidog", "--gait", "trot", "--episodes", "2", *sets, "--json", str(out)]) == 0
    assert "collisions per episode" in capsys.readouterr().out
    assert json.loads(out.read_text())["metrics"]["collisions_per_episode"] >= 1
    flat = tmp_path / "flat.json"
    assert main(["gait", "pidog", "--gait", "trot", "--episodes", "1", "--set", "task.arena.enabled=false",
                 "--set", "task.episode_seconds=1", "--json", str(flat)]) == 0
    assert "collisions per episode" not in capsys.readouterr().out
    assert "collisions_per_episode" not in json.loads(flat.read_text())["metrics"]


def test_the_onset_reward_pays_each_collision_that_eval_counts():
    """obstacle_contact_onset, the only reward term, on a trotting PiDog walked into a near wall: its reward steps
    are the trace's contact onsets, touches between two control steps included (training reads the contacts of
    every physics step, as eval does)."""
    cfg = gait_config("pidog", "trot", scene_config("pidog-run"),
                      [*ONE_POST, "task.arena.size=0.7", "task.arena.clear_radius=0.25"])
    cfg = replace(cfg, task=replace(cfg.task, rewards={"obstacle_contact_onset": RewardTerm(1.0)}))
    t = rollout_model(ZeroResidual.for_task(cfg.task), Unnormalized(), 3, cfg, seed=0)
    onsets = contact_onsets(t.obstacle_contact, t.alive)
    assert onsets.min() >= 2  # it meets the wall, steps away and back
    paid = (t.reward > 0) & t.alive
    before = np.zeros_like(t.obstacle_contact)
    before[1:] = t.obstacle_contact[:-1]
    np.testing.assert_array_equal(paid, t.obstacle_contact & ~before & t.alive)
    np.testing.assert_array_equal(paid.sum(axis=0), onsets)


def test_compare_prints_and_plots_the_collision_interval(tmp_path):
    from legkit.evaluate.compare import format_compare, plot_compare

    base = {"mean_forward_velocity": 0.1, "survival_rate": 1.0, "mean_base_height": 0.09, "cost_of_transport": None,
            "velocity_tracking_rms": 0.5, "stalled_time_share": 0.1, "mean_residual": None}
    result = {"scene": {"task": "pidog-run"}, "episodes": 200, "seed": 777, "results": [
        {"label": "policy", "metrics": {**base, "collisions_per_episode": 4.66,
                                        "collisions_per_episode_ci95": [2.84, 6.71]}},
        {"label": "older", "metrics": {**base, "collisions_per_episode": 2.0}}]}  # eval.json without the interval
    rows = format_compare(result).splitlines()
    assert rows[0].rstrip().endswith("collisions/ep")
    assert rows[1].endswith("4.66 (2.84-6.71)") and rows[2].endswith("2.00")
    plot_compare(result, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 5000
