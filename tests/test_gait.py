"""Gait metrics on hand-made foot data, per-substep sensors, and the command sweep of `legkit eval --sweep`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.evaluate.gait import (G, cost_of_transport, debounce, duty_factor, foot_clearance, foot_contact,
                                  foot_slip_speed, gait_symmetry, left_right_pairs, stride_frequency, swings)
from legkit.evaluate.metrics import compute_metrics, format_table
from legkit.evaluate.rollout import Trace

DT = 0.005  # the Go2's physics step (s)


def _alive(T: int, E: int = 1) -> np.ndarray:
    return np.ones((T, E), dtype=bool)


def _trot(periods: int, period: int = 80) -> np.ndarray:
    """(periods * period, 1, 4) contact of a trot with duty 0.5: FL and RR in stance for the first half of
    each period, FR and RL for the second."""
    t = np.arange(periods * period)
    first = (t % period) < period // 2
    return np.stack([first, ~first, ~first, first], axis=-1)[:, None, :]


# -- duty factor, symmetry -----------------------------------------------------------------------------

def test_duty_factor_is_the_fraction_of_alive_time_in_contact():
    # 100 samples, in contact for the first 60: 0.6. A second episode that ends after 50 samples, in contact
    # for 10 of them and then (dead) always: 10 / 50. Pooled: 70 / 150.
    contact = np.zeros((100, 2, 1), dtype=bool)
    contact[:60, 0] = True
    contact[:10, 1] = True
    contact[50:, 1] = True
    alive = _alive(100, 2)
    alive[50:, 1] = False
    assert duty_factor(contact[:, :1], alive[:, :1])[0] == pytest.approx(0.6)
    assert duty_factor(contact[:, 1:], alive[:, 1:])[0] == pytest.approx(0.2)
    assert duty_factor(contact, alive)[0] == pytest.approx(70 / 150)


def test_foot_contact_is_force_above_the_threshold():
    np.testing.assert_array_equal(foot_contact(np.array([0.0, 0.5, 1.0, 1.5, 80.0]), 1.0),
                                  [False, False, False, True, True])


def test_trot_has_duty_one_half_and_is_symmetric():
    duty = duty_factor(_trot(50), _alive(4000))
    np.testing.assert_allclose(duty, 0.5)
    assert gait_symmetry(duty, ((0, 1), (2, 3))) == pytest.approx(1.0)


def test_symmetry_of_a_limp():
    # Left front in stance 0.6 of the time, right front 0.3: 1 - 0.3 / 0.9; the rear pair is symmetric.
    duty = np.array([0.6, 0.3, 0.5, 0.5])
    assert gait_symmetry(duty, ((0, 1),)) == pytest.approx(2 / 3)
    assert gait_symmetry(duty, ((0, 1), (2, 3))) == pytest.approx((2 / 3 + 1) / 2)
    assert gait_symmetry(np.zeros(2), ((0, 1),)) == 1.0  # both feet always in the air: symmetric
    assert np.isnan(gait_symmetry(duty, ()))


def test_left_right_pairs_from_foot_positions():
    # Go2 feet FL, FR, RL, RR; listed in another order the pairs follow the positions, not the order.
    xy = np.array([[0.19, 0.14], [0.19, -0.14], [-0.19, 0.14], [-0.19, -0.14]])
    assert left_right_pairs(xy) == ((0, 1), (2, 3))
    assert left_right_pairs(xy[[3, 0, 2, 1]]) == ((1, 3), (2, 0))


# -- strides and swings --------------------------------------------------------------------------------

def test_trot_stride_frequency():
    # Period 80 samples x 0.005 s = 0.4 s: 2.5 strides per second. Over 50 periods (20 s) every foot has
    # 49 complete swings: FL/RR's last swing is cut by the window's end, FR/RL's first one (the flight
    # before the first landing) has no liftoff. 49 / 20 s = 2.45 Hz.
    np.testing.assert_allclose(stride_frequency(_trot(50), _alive(4000), DT), 49 / 20.0)


def test_stride_frequency_counts_only_alive_time():
    # The episode ends after 10 periods (4 s): 9 complete swings per foot in 4 s of alive time.
    alive = _alive(4000)
    alive[800:] = False
    np.testing.assert_allclose(stride_frequency(_trot(50), alive, DT), 9 / 4.0)


def test_debounce_fills_bounces_but_keeps_swings():
    # Stance 0..39 with a 2-sample bounce at 10..11, swing 40..59 (20 samples), stance 60..79.
    c = np.zeros((80, 1, 1), dtype=bool)
    c[:40] = c[60:] = True
    c[10:12] = False
    alive = _alive(80)
    d = debounce(c, alive, min_swing=8)
    expected = np.zeros(80, dtype=bool)
    expected[:40] = expected[60:] = True
    np.testing.assert_array_equal(d[:, 0, 0], expected)
    assert len(swings(c, alive)[0]) == 2 and len(swings(d, alive)[0]) == 1


def test_foot_clearance_is_the_mean_swing_peak():
    # Heights 0 in stance; a flight from the reset pose (peak 0.3) and a swing cut by the end (peak 0.5)
    # are not swings; the two complete swings peak at 0.06 and 0.10 m: mean 0.08.
    T = 100
    c = np.ones((T, 1, 1), dtype=bool)
    h = np.zeros((T, 1, 1))
    c[:10], h[:10, 0, 0] = False, np.linspace(0.3, 0.01, 10)
    for (start, stop), peak in (((20, 40), 0.06), ((50, 70), 0.10), ((85, 100), 0.5)):
        c[start:stop] = False
        n = stop - start
        h[start:stop, 0, 0] = peak * np.sin(np.pi * (np.arange(n) + 0.5) / n) / np.sin(np.pi * (n // 2 + 0.5) / n)
    assert foot_clearance(h, c, _alive(T))[0] == pytest.approx(0.08)
    foot, peaks = swings(c, _alive(T), h)
    np.testing.assert_allclose(peaks, [0.06, 0.10])
    np.testing.assert_array_equal(foot, [0, 0])


# -- slip and cost of transport ------------------------------------------------------------------------

def test_slip_speed_is_the_mean_horizontal_speed_in_contact():
    # In contact 60% of the time sliding at 0.1 m/s; swinging at 2 m/s, which does not count.
    c = np.zeros((100, 1, 2), dtype=bool)
    c[:60, 0, 0] = True
    speed = np.where(c, 0.1, 2.0)
    slip = foot_slip_speed(speed, c, _alive(100))
    assert slip[0] == pytest.approx(0.1)
    assert np.isnan(slip[1])  # never in contact


def test_cost_of_transport():
    # 100 W at 1 m/s for a 10 kg robot: 100 / (10 g 1). Steps after the end (alive False) do not count.
    power, speed = np.full((10, 2), 100.0), np.ones((10, 2))
    alive = _alive(10, 2)
    power[5:, 1], speed[5:, 1], alive[5:, 1] = 1e6, 0.0, False
    assert cost_of_transport(power, speed, alive, 10.0) == pytest.approx(100 / (10 * G))
    assert np.isnan(cost_of_transport(power, speed * 0.05, alive, 10.0))  # hardly moving: undefined


# -- substeps: touchdowns between control steps ---------------------------------------------------------

def _trace(force: np.ndarray, decimation: int) -> Trace:
    """A trace of one episode whose feet have the per-substep `force` (T * decimation, 1, feet)."""
    T = force.shape[0] // decimation
    z = np.zeros((T, 1))
    return Trace(alive=np.ones((T, 1), dtype=bool), vel=np.zeros((T, 1, 3)), command=np.zeros((T, 1, 3)),
                 height=z + 0.27, action_abs=z, power=z, reward=z, terminated=np.zeros(1, dtype=bool),
                 length=np.array([T]), dt=DT * decimation, max_steps=T, mass=15.0,
                 feet=tuple(f"foot{i}" for i in range(force.shape[2])), foot_force=force,
                 foot_height=np.zeros_like(force), foot_speed=np.zeros_like(force), foot_pairs=((0, 1),),
                 substep_dt=DT)


def test_substep_contacts_catch_a_touchdown_that_the_last_substep_misses():
    # Decimation 4; foot 0 touches down at substeps 1 and 2 of every 10th control step (0.2 s) and is in the
    # air at every last substep; foot 1 stands.
    decimation, steps = 4, 100
    force = np.zeros((steps * decimation, 1, 2))
    force[:, 0, 1] = 50.0
    for k in range(0, steps, 10):
        force[k * decimation + 1: k * decimation + 3, 0, 0] = 30.0
    c = foot_contact(force)
    last = c[decimation - 1::decimation]  # what the control step sees
    assert not last[:, 0, 0].any()
    assert duty_factor(last, np.ones((steps, 1), dtype=bool))[0] == 0.0
    m = compute_metrics(_trace(force, decimation))
    assert m["duty_factor_per_foot"]["foot0"] == pytest.approx(2 / 40)
    # 9 swings of 38 samples between the 10 touches, over 2 s.
    assert m["stride_frequency_per_foot"]["foot0"] == pytest.approx(9 / 2.0)
    assert m["duty_factor_per_foot"]["foot1"] == 1.0
    assert m["gait_symmetry"] == pytest.approx(1 - (1 - 0.05) / 1.05)


def test_table_shows_gait_rows_only_with_foot_data():
    force = np.full((40, 1, 2), 50.0)
    with_feet = format_table(compute_metrics(_trace(force, 4)))
    assert "duty factor per foot" in with_feet and "foot0 1.00  foot1 1.00" in with_feet
    bare = dataclasses.replace(_trace(force, 4), foot_force=None, foot_height=None, foot_speed=None)
    m = compute_metrics(bare)
    assert "duty_factor" not in m
    assert "duty factor" not in format_table(m) and "cost of transport" in format_table(m)


# -- the simulator: sensors and substeps -----------------------------------------------------------------

def _sensor(model: mujoco.MjModel, name: str) -> int:
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
    assert i >= 0, name
    return int(model.sensor_adr[i])


def test_foot_sensors_do_not_change_the_physics(go2, tmp_path):
    """The same controls give the same trajectory with and without the foot position/velocity sensors."""
    from legkit.sim.scene import PhysicsConfig, build_model

    text = Path(go2.xml()).read_text()
    names = go2.foot_pos_sensors + go2.foot_vel_sensors
    assert len(names) == 8 and all(f'name="{n}"' in text for n in names)
    stripped = "\n".join(line for line in text.splitlines() if not any(f'name="{n}"' in line for n in names))
    (tmp_path / "go2.xml").write_text(stripped)
    bare = dataclasses.replace(go2, xml=lambda: tmp_path / "go2.xml")
    finals = []
    for robot in (go2, bare):
        m = build_model(robot, PhysicsConfig())
        d = mujoco.MjData(m)
        d.qpos[2], d.qpos[7:] = go2.reset_height, go2.home
        rng = np.random.default_rng(0)
        for i in range(1000):
            if i % 4 == 0:
                d.ctrl[:] = go2.home + rng.uniform(-0.5, 0.5, m.nu)
            mujoco.mj_step(m, d)
        finals.append((d.qpos.copy(), d.qvel.copy(), d.sensordata[:m.nsensordata].copy()))
    (q1, v1, s1), (q0, v0, s0) = finals
    np.testing.assert_array_equal(q1, q0)
    np.testing.assert_array_equal(v1, v0)
    np.testing.assert_array_equal(s1[:len(s0)], s0)  # the new sensors come last: old addresses unchanged


def test_substep_sensordata_holds_every_physics_step(go2, go2_model):
    """A robot in free fall: the foot's world height and vertical velocity at substep k are those of the
    state substep k starts from (semi-implicit Euler: v_k = -g k dt, z_k = z_0 - g dt^2 k (k + 1) / 2)."""
    from legkit.sim.batch import BatchSim

    m = go2_model
    sim = BatchSim(m, 2, 4, nthread=1)
    try:
        qpos = np.tile(m.qpos0, (2, 1))
        qpos[:, 2], qpos[:, 7:] = 1.0, go2.home  # PD at rest on its targets: the legs fall with the base
        sim.set_state(np.arange(2), qpos, np.zeros((2, m.nv)))
        pz, vz = _sensor(m, go2.foot_pos_sensors[0]) + 2, _sensor(m, go2.foot_vel_sensors[0]) + 2
        z, v = [], []
        for _ in range(3):
            sim.step(np.tile(go2.home, (2, 1)))
            sub = sim.substep_sensordata
            assert sub.shape == (2, 4, m.nsensordata) and not sub.flags.writeable
            np.testing.assert_array_equal(sub[:, -1], sim.sensordata)
            z.extend(sub[0, :, pz])
            v.extend(sub[0, :, vz])
        k, dt, g = np.arange(12), m.opt.timestep, -m.opt.gravity[2]
        np.testing.assert_allclose(np.array(v), -g * dt * k, atol=1e-9)
        np.testing.assert_allclose(np.array(z) - z[0], -g * dt**2 * k * (k + 1) / 2, atol=1e-9)
        with pytest.raises(ValueError):
            sim.substep_sensordata[0, 0, 0] = 1.0
    finally:
        sim.close()


# -- the sweep -------------------------------------------------------------------------------------------

def test_sweep_commands_are_the_issues_list():
    from legkit.evaluate.sweep import SWEEP

    assert SWEEP == {
        "stand": (0, 0, 0),
        **{f"forward_{v}": (v, 0, 0) for v in (0.2, 0.5, 1.0, 1.5, 2.0)},
        "backward_0.5": (-0.5, 0, 0),
        "sideways_+0.5": (0, 0.5, 0), "sideways_-0.5": (0, -0.5, 0),
        "yaw_+1.0": (0, 0, 1.0), "yaw_-1.0": (0, 0, -1.0),
        "forward_1.0_yaw_0.5": (1.0, 0, 0.5),
    }


def test_fixed_command_holds_one_command_for_every_robot(walk_task):
    from legkit.envs.core import LeggedBatch
    from legkit.evaluate.sweep import fixed_command

    # every command setting that would change a draw is on: standing and single-axis draws, resampling
    task = fixed_command(dataclasses.replace(walk_task, commands=dataclasses.replace(
        walk_task.commands, resample_seconds=1.0, standing_share=0.5, single_axis_share=0.5)), 1.0, -0.5, 0.3)
    assert task.commands.resample_seconds == 0.0
    batch = LeggedBatch(task, 64, seed=3, nthread=1)
    try:
        np.testing.assert_allclose(batch.state.command, np.tile([1.0, -0.5, 0.3], (64, 1)))
    finally:
        batch.close()


def test_eval_sweep_of_the_pretrained_walker(tmp_path, capsys):
    from legkit.cli import main
    from legkit.evaluate.sweep import SWEEP

    out = tmp_path / "sweep.json"
    sets = ["task.episode_seconds=5"]  # 250 control steps per command: long enough to walk
    assert main(["eval", "pretrained:go2-walk", "--sweep", "--episodes", "2", "--set", sets[0],
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {"task", "policy", "checkpoint", "step", "seed", "overrides", "commands"} <= set(result)
    assert result["overrides"] == sets
    assert result["figures"] == {"met": 0, "of": 0, "missed": []}  # go2-walk has no sweep figures: no column
    assert "figures" not in printed
    records = {r["name"]: r for r in result["commands"]}
    assert list(records) == list(SWEEP)
    for name, rec in records.items():
        assert rec["command"] == list(SWEEP[name])
        assert rec["metrics"]["episodes"] == 2
        assert name in printed
        for key in ("mean_forward_velocity", "mean_lateral_velocity", "mean_yaw_rate", "lin_vel_tracking_rms",
                    "yaw_rate_tracking_rms", "survival_rate", "duty_factor", "foot_slip_speed", "foot_clearance",
                    "stride_frequency_hz", "gait_symmetry", "cost_of_transport"):
            assert key in rec["metrics"], (name, key)
    forward = records["forward_1.0"]["metrics"]
    assert forward["mean_forward_velocity"] > 0.5  # go2-walk was trained on 0.5 .. 1.0 m/s forward
    assert 0 < forward["duty_factor"] < 1 and forward["stride_frequency_hz"] > 0
    # It never learned to walk backwards.
    assert records["backward_0.5"]["metrics"]["lin_vel_tracking_rms"] > \
        records["forward_0.5"]["metrics"]["lin_vel_tracking_rms"]


def _record(name, **metrics):
    return {"name": name, "command": [0.0, 0.0, 0.0], "metrics": metrics}


def test_sweep_judge_marks_each_command_against_the_task_figures():
    from legkit.evaluate.sweep import format_sweep, judge
    from legkit.tasks.config import SweepBar

    records = [_record("forward_0.2", mean_forward_velocity=0.05, survival_rate=1.0, lin_vel_tracking_rms=0.15),
               _record("forward_1.0", mean_forward_velocity=0.98, survival_rate=0.9, lin_vel_tracking_rms=0.12),
               _record("stand", mean_forward_velocity=0.01, survival_rate=1.0, lin_vel_tracking_rms=None)]
    bars = (SweepBar("forward_0.2", "mean_forward_velocity", 0.1, 0.3), SweepBar("forward_1.0", "survival_rate", 0.95),
            SweepBar("forward_1.0", "lin_vel_tracking_rms", high=0.2),
            SweepBar("stand", "lin_vel_tracking_rms", high=1))
    verdict = judge(records, bars)
    assert verdict["met"] == 1 and verdict["of"] == 4
    assert verdict["missed"] == ["forward_0.2: mean_forward_velocity 0.050, asked >= 0.1 and <= 0.3",
                                 "forward_1.0: survival_rate 0.900, asked >= 0.95",
                                 "stand: lin_vel_tracking_rms undefined, asked <= 1"]  # undefined is not met
    assert [f["met"] for f in records[1]["figures"]] == [False, True]
    table = format_sweep({"commands": records, "figures": verdict})
    assert table.splitlines()[0].split()[-1] == "figures"
    assert [line.split()[-1] for line in table.splitlines()[1:4]] == ["MISSED", "MISSED", "MISSED"]
    assert "1 of 4 met:" in table and "  missed forward_1.0: survival_rate 0.900, asked >= 0.95" in table
    records[1]["metrics"]["survival_rate"] = 1.0
    judge(records[1:2], bars[1:3])
    assert all(f["met"] for f in records[1]["figures"][-2:])
    # A figure the sweep cannot judge is an error that names what is valid, never skipped.
    with pytest.raises(LegkitError, match="command 'backward_9' is not in the sweep; valid: forward_0.2"):
        judge(records, (SweepBar("backward_9", "survival_rate", 0.9),))
    with pytest.raises(LegkitError, match="metric 'speed' is not measured; valid: lin_vel_tracking_rms"):
        judge(records, (SweepBar("stand", "speed", 0.9),))


def test_go2_joystick_figures_are_the_issues_and_survive_a_saved_config():
    from legkit.config import from_dict, load_yaml, to_dict
    from legkit.evaluate.sweep import SWEEP, task_bars
    from legkit.train.config import Config, build_config
    from legkit.train.runs import resolve_run

    cfg = build_config("go2-joystick")
    bars = cfg.task.validation.sweep_bars
    assert {b.command for b in bars} == set(SWEEP)
    assert ("forward_2.0", "mean_forward_velocity", 1.8, None) in [(b.command, b.metric, b.low, b.high) for b in bars]
    assert from_dict(Config, to_dict(cfg)).task.validation.sweep_bars == bars  # written in config.yaml, read back
    # The shipped policy's config carries them; a run saved before the figures existed is marked against the
    # task's own.
    rep = dataclasses.replace
    saved = from_dict(Config, load_yaml(str(resolve_run("pretrained:go2-joystick") / "config.yaml")))
    assert saved.task.validation.sweep_bars == bars
    older = rep(saved, task=rep(saved.task, validation=rep(saved.task.validation, sweep_bars=())))
    assert task_bars(older) == bars
    assert task_bars(build_config("go2-walk")) == ()
    # The figures are the task's, as validate's suite is: a run saved with other bars is judged by today's, and a
    # task.validation --set changes them.
    old = rep(cfg, task=rep(cfg.task, validation=rep(cfg.task.validation, sweep_bars=bars[:1])))
    assert task_bars(old) == bars
    one = task_bars(old, ["task.validation.sweep_bars=[{command: stand, metric: survival_rate, low: 0.5}]"])
    assert [(b.command, b.metric, b.low, b.high) for b in one] == [("stand", "survival_rate", 0.5, None)]


def test_eval_sweep_writes_beside_a_run(tmp_path):
    from legkit.cli import main
    from legkit.train.runs import resolve_run

    run = tmp_path / "run"
    shutil.copytree(resolve_run("pretrained:go2-walk"), run)
    assert main(["eval", str(run), "--sweep", "--episodes", "1", "--set", "task.episode_seconds=0.5"]) == 0
    (written,) = run.glob("eval-final-sweep*.json")
    assert len(json.loads(written.read_text())["commands"]) == 12
    assert not (run / "eval-final.json").exists()
