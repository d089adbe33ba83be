"""The env on a terrain and under a scripted gait: heights from the ground, spawn tiles, the terrain curriculum,
height scans, the residual action map, the baseline check, `legkit gait` and `legkit compare`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cli_helpers import one_error_line, run_legkit
from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.gaits import default_gait
from legkit.sim.terrain import TerrainConfig
from legkit.tasks import get_task
from legkit.tasks.config import undisturbed
from legkit.tasks.ground import TerrainCurriculumConfig

SMALL = TerrainConfig(kind="tiles", rows=3, cols=2, kinds={"stairs_up": 1.0}, step_height=(0.05, 0.10), border=3.0)
"""Pyramid stairs rising to every tile centre: its platforms stand 0.2-0.4 m above the border."""


def _task(**kw):
    t = replace(get_task("go2-walk"), terrain=SMALL, **kw)
    return t


@pytest.fixture
def batch():
    b = LeggedBatch(_task(terrain_curriculum=TerrainCurriculumConfig(max_init_level=2)), 16, seed=3)
    yield b
    b.close()


def test_heights_are_measured_from_the_ground_under_the_base(batch):
    s, t = batch.state, batch.ground.terrain
    assert t.origins[:, :, 2].min() > 0.15  # raised platforms: absolute z would be wrong
    for _ in range(30):
        batch.step(np.zeros((16, 12)))
    ground = t.height_at(s.base_pos[:, 0], s.base_pos[:, 1])
    np.testing.assert_allclose(s.ground_height, ground)
    np.testing.assert_allclose(s.base_height, s.base_pos[:, 2] - ground)
    assert 0.2 < s.base_height.mean() < 0.32  # standing on its platform, not 0.2-0.4 m higher
    assert not s.terminated.any()


def test_robots_spawn_on_their_tiles(batch):
    t, g = batch.ground.terrain, batch.ground
    level, col = g.curriculum.level, g.curriculum.col
    assert set(level) <= {0, 1, 2} and len(set(level)) > 1
    centre = t.origins[level, col]
    np.testing.assert_array_less(np.abs(batch.state.base_pos[:, :2] - centre[:, :2]), 0.25 + 1e-9)
    np.testing.assert_allclose(g.origin[:, 2], centre[:, 2])  # platforms are flat
    np.testing.assert_allclose(batch.state.base_pos[:, 2], centre[:, 2] + batch.robot.reset_height)


def test_the_terrain_curriculum_moves_robots_by_how_far_they_walked(batch):
    g, s = batch.ground, batch.state
    ids = np.arange(16)
    before = g.curriculum.level.copy()
    xy = g.origin[:, :2].copy()
    xy[:8, 0] += 3.0  # half of them walked 3 m (more than half a 4 m tile), the others stood
    g.commanded_distance[:] = 10.0
    s.terminated[:] = False
    batch.time_limit[:] = batch.max_steps
    s.episode_step[:] = batch.max_steps
    batch.sim.qpos[:, :2] = xy
    batch.reset(ids)
    after = g.curriculum.level
    walked, stood = slice(0, 8), slice(8, 16)
    hardest = before[walked] == 2
    assert np.all((after[walked] == before[walked] + 1) | hardest)
    assert np.all(after[stood] == np.maximum(before[stood] - 1, 0))
    assert g.scalars()["terrain_level"] == pytest.approx(after.mean())


def test_evaluation_puts_every_robot_on_the_evaluation_row_heading_along_it():
    task = undisturbed(_task(terrain_curriculum=TerrainCurriculumConfig(eval_row=1)))
    b = LeggedBatch(task, 8, seed=0)
    try:
        t = b.ground.terrain
        assert b.ground.curriculum is None
        np.testing.assert_array_less(np.abs(b.state.base_pos[:, :2] - t.origins[1, 0, :2]), 0.25 + 1e-9)
        np.testing.assert_allclose(b.state.projected_gravity[:, 2], -1.0, atol=1e-9)
        q = b.state.base_quat
        np.testing.assert_allclose(np.abs(q[:, 0]), 1.0, atol=1e-9)  # yaw 0: heading +x along the row
    finally:
        b.close()


def test_the_height_scan_reads_the_ground_around_the_base():
    obs = (*get_task("go2-walk").observations, "height_scan")
    flat = LeggedBatch(replace(get_task("go2-walk"), observations=obs), 4, seed=0)
    rough = LeggedBatch(_task(observations=obs), 4, seed=0)
    try:
        for b in (flat, rough):
            for _ in range(5):
                b.step(np.zeros((4, 12)))
        k = len(flat.ground.grid)
        _, start, size = next(x for x in flat.obs_layout if x[0] == "height_scan")
        assert size == k
        np.testing.assert_allclose(flat.observe()[:, start:start + k], np.repeat(flat.state.base_pos[:, 2:3], k, 1),
                                   rtol=1e-6)
        s = rough.state
        q = s.base_quat
        yaw = np.arctan2(2 * (q[:, 0] * q[:, 3] + q[:, 1] * q[:, 2]), 1 - 2 * (q[:, 2] ** 2 + q[:, 3] ** 2))
        expected = rough.ground.terrain.height_scan(s.base_pos, yaw, rough.ground.grid)
        np.testing.assert_allclose(rough.observe()[:, start:start + k], expected, rtol=1e-5)
        assert np.ptp(expected) > 0.04  # the stairs show
    finally:
        flat.close()
        rough.close()


def test_robots_that_reach_the_edge_of_the_field_are_truncated_not_fallen(batch):
    hx, _ = batch.ground.terrain.half_size
    batch.sim.qpos[:3, 0] = hx - 0.5
    batch.sim.qpos[:3, 2] += 0.0
    _, term, trunc = batch.step(np.zeros((16, 12)))
    assert trunc[:3].all() and not term[:3].any()


def test_plane_tasks_are_unchanged():
    b = LeggedBatch(get_task("go2-walk"), 4, seed=0)
    try:
        assert b.ground.terrain is None and b.gait is None
        for _ in range(10):
            b.step(np.zeros((4, 12)))
        assert not b.state.ground_height.any()
        np.testing.assert_array_equal(b.state.base_height, b.state.base_pos[:, 2])
    finally:
        b.close()


def test_a_residual_is_added_to_the_gait_target():
    task = replace(get_task("go2-walk"), gait=default_gait("go2", "trot"), action_scale=0.25,
                   observations=(*get_task("go2-walk").observations, "gait_phase"))
    b = LeggedBatch(task, 3, seed=0)
    try:
        for k in range(4):
            target = b.gait.joint_targets().copy()
            phase = b.gait.phase_features().copy()
            _, start, _ = next(x for x in b.obs_layout if x[0] == "gait_phase")
            np.testing.assert_allclose(b.observe()[:, start:start + 2], phase, rtol=1e-6)
            action = np.array([[0.0] * 12, [1.0] * 12, [-0.5] * 12])
            b.step(action)
            low, high = b.ctrl_low, b.ctrl_high
            np.testing.assert_allclose(b._ctrl, np.clip(target + 0.25 * action, low, high))
        assert not np.allclose(b.gait.phase, 0.0)  # the phase advanced
    finally:
        b.close()


def test_a_gait_on_a_robot_it_does_not_fit_is_a_clear_error():
    with pytest.raises(LegkitError, match="gait"):
        LeggedBatch(replace(get_task("humanoid-stand"), gait=default_gait("go2", "trot")), 1)


def test_training_is_refused_when_the_baseline_walks_backwards(tmp_path):
    r = run_legkit("train", "go2-residual", "--set", "task.gait.step_length=-0.2", "--runs", str(tmp_path / "runs"),
                   "--no-progress", cwd=tmp_path)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "walks backwards" in line and "task.baseline_min_speed" in line
    speed = float(line.split("moves at ")[1].split(" m/s")[0])
    assert speed < -0.05
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_gait_command_prints_the_eval_table_and_writes_json(tmp_path):
    out = tmp_path / "trot.json"
    r = run_legkit("gait", "go2", "--gait", "trot", "--episodes", "2", "--set", "task.episode_seconds=4",
                   "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "mean forward velocity" in r.stdout
    result = json.loads(out.read_text())
    assert result["gait"]["type"] == "trot" and result["metrics"]["episodes"] == 2
    assert result["metrics"]["mean_forward_velocity"] > 0.1  # the default trot walks forward
    bad = run_legkit("gait", "go2", "--gait", "gallop", cwd=tmp_path)
    assert bad.returncode == 2 and "trot" in one_error_line(bad.stderr)


def test_compare_of_a_policy_with_itself_gives_identical_numbers(tmp_path):
    r = run_legkit("compare", "pretrained:go2-walk", "pretrained:go2-walk", "gait:trot", "--episodes", "2",
                   "--set", "task.episode_seconds=3", "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    a, b, gait = (x["metrics"] for x in result["results"])
    assert a == b
    assert gait["mean_residual"] == 0.0 and a["mean_residual"] is None
    assert a["mean_forward_velocity"] != gait["mean_forward_velocity"]
    header = next(line for line in r.stdout.splitlines() if "forward m/s" in line)
    assert "stalled" in header and "collisions" not in header  # no arena here: no collision column
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 5000
    bad = run_legkit("compare", "gait:trot", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert bad.returncode == 2 and "--task" in one_error_line(bad.stderr)


def test_gait_sweep_and_compare_video(tmp_path):
    import imageio.v3 as iio

    sweep = tmp_path / "sweep.json"
    r = run_legkit("gait", "go2", "--gait", "pace", "--episodes", "1", "--sweep", "--set", "task.episode_seconds=1",
                   "--json", str(sweep), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = [c["name"] for c in json.loads(sweep.read_text())["commands"]]
    assert "forward_0.5" in names and "backward_0.5" in names and "forward_0.5" in r.stdout
    r = run_legkit("compare", "pretrained:go2-residual", "gait:trot", "--episodes", "1", "--set",
                   "task.episode_seconds=2", "--video", "--seconds", "1", "--width", "320", "--height", "120",
                   "--fps", "10", "--out", str(tmp_path / "cmp"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    frames = iio.imread(tmp_path / "cmp" / "compare.mp4")
    assert frames.shape == (10, 120, 320, 3)
    left, right = frames[:, :, :160], frames[:, :, 160:]
    assert left.std() > 5 and right.std() > 5  # two rendered panels, not blank
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["scene"]["row"] == 5


def test_a_gait_out_of_reach_is_reported(tmp_path):
    out = tmp_path / "far.json"
    r = run_legkit("gait", "go2", "--episodes", "1", "--set", "task.episode_seconds=1", "--set",
                   "task.gait.step_length=0.6", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "out of the go2's reach" in r.stderr
    assert json.loads(out.read_text())["ik_clipped_per_cycle"] > 0
    ok = run_legkit("gait", "go2", "--episodes", "1", "--set", "task.episode_seconds=1", "--json", str(out), cwd=tmp_path)
    assert "reach" not in ok.stderr and json.loads(out.read_text())["ik_clipped_per_cycle"] == 0
