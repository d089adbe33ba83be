"""Physics quality presets (--physics production|medium|fast): what they set, their errors, runs that record them."""

from __future__ import annotations

import json

import pytest
import yaml

from legkit import LegkitError
from legkit.cli import main
from legkit.envs.vec_env import LegkitVecEnv
from legkit.sim.scene import PHYSICS_PRESETS
from legkit.tasks import get_task
from legkit.tasks.config import physics_preset_sets
from legkit.train.config import build_config

from cli_helpers import one_error_line

EXPECTED = {"production": (0.001, 50, 50, 20), "medium": (0.002, 10, 20, 10), "fast": (0.005, 4, 8, 4)}
"""go2-walk (20 ms control period) under each preset: timestep, iterations, ls_iterations, decimation."""


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_preset_sets_step_solver_and_decimation_and_keeps_the_control_period(name):
    cfg = build_config("go2-walk", sets=physics_preset_sets(name, get_task("go2-walk")))
    t = cfg.task
    assert (t.physics.timestep, t.physics.iterations, t.physics.ls_iterations, t.decimation) == EXPECTED[name]
    assert t.control_dt == pytest.approx(0.02, abs=1e-12) and t.max_episode_steps == 1000


def test_the_simulator_runs_the_preset():
    cfg = build_config("go2-walk", sets=physics_preset_sets("production", get_task("go2-walk")))
    env = LegkitVecEnv(cfg.task, 2, seed=0, nthread=1)
    try:
        assert env.batch.model.opt.timestep == 0.001
        assert (env.batch.model.opt.iterations, env.batch.model.opt.ls_iterations) == (50, 50)
        assert env.batch.sim.decimation == 20 and env.batch.sim.substep_sensordata.shape[1] == 20
        assert env.batch.dt == pytest.approx(0.02)
    finally:
        env.close()


def test_fast_is_what_the_tasks_train_under():
    fast = PHYSICS_PRESETS["fast"]
    for task in ("go2-walk", "go2-joystick", "pidog-run", "humanoid-stand"):
        p = get_task(task).physics
        assert (p.timestep, p.iterations, p.ls_iterations) == (fast.timestep, fast.iterations, fast.ls_iterations)


def test_a_control_period_that_is_no_multiple_of_the_step_is_refused():
    # humanoid-stand: 15 ms = 3 x 5 ms, which 1 ms divides and 2 ms does not
    assert physics_preset_sets("production", get_task("humanoid-stand"))[-1] == "task.decimation=15"
    with pytest.raises(LegkitError, match="control period of 15 ms.*2 ms physics step.*production, fast"):
        physics_preset_sets("medium", get_task("humanoid-stand"))


def test_cli_errors_are_one_line_and_leave_no_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--physics", "ultra", "--runs", str(runs)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "'ultra'" in line and "production, medium, fast" in line
    assert main(["train", "humanoid-stand", "--physics", "medium", "--runs", str(runs)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "medium" in line and "15 ms" in line
    assert main(["eval", "pretrained:go2-walk", "--physics", "ultra", "--episodes", "1"]) == 2
    assert "production, medium, fast" in one_error_line(capsys.readouterr().err)
    for command in (["validate", "pretrained:go2-walk"], ["bench", "--envs", "4", "--seconds", "0.05"],
                    ["video", "pretrained:go2-walk", "--out", str(tmp_path / "v.mp4")]):
        assert main([*command, "--physics", "ultra"]) == 2
        assert "production, medium, fast" in one_error_line(capsys.readouterr().err)
    # a --set of a key the preset sets would be silently overwritten: refused
    assert main(["eval", "pretrained:go2-walk", "--physics", "production", "--set", "task.decimation=5"]) == 2
    assert "task.decimation" in one_error_line(capsys.readouterr().err)
    assert not runs.exists()


def test_train_records_the_preset_in_the_run_config_and_resume_keeps_it(tmp_path):
    runs = tmp_path / "runs"
    tiny = ["--envs", "4", "--set", "ppo.n_steps=16", "--set", "ppo.batch_size=64", "--set", "run.eval_episodes=0",
            "--set", "run.best_every=0", "--set", "run.checkpoint_every=64", "--set", "run.video_every=0",
            "--no-progress"]
    assert main(["train", "go2-walk", "--steps", "64", "--physics", "medium", "--runs", str(runs), *tiny]) == 0
    (run,) = runs.iterdir()

    def recorded() -> tuple:
        t = yaml.safe_load((run / "config.yaml").read_text())["task"]
        return t["physics"]["timestep"], t["physics"]["iterations"], t["physics"]["ls_iterations"], t["decimation"]

    assert recorded() == EXPECTED["medium"]
    assert main(["train", "--resume", str(run), "--steps", "128", "--no-progress"]) == 0  # no --physics: as saved
    assert recorded() == EXPECTED["medium"]


def test_eval_under_a_preset_records_it(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "pretrained:go2-walk", "--physics", "production", "--episodes", "2",
                 "--set", "task.episode_seconds=1", "--json", str(out)]) == 0
    assert "physics preset production: task.physics.timestep=0.001" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["overrides"] == ["task.episode_seconds=1", "task.physics.timestep=0.001",
                                   "task.physics.iterations=50", "task.physics.ls_iterations=50", "task.decimation=20"]
    assert result["metrics"]["episode_limit_s"] == pytest.approx(1.0)  # 50 control steps of 20 ms
    assert result["metrics"]["survival_rate"] == 1.0


def test_bench_all_measures_every_preset_that_fits(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--task", "humanoid-stand", "--physics", "all", "--envs", "4", "--seconds", "0.05",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "production" in printed and "medium: not measured" in printed
    result = json.loads(out.read_text())
    assert [(r["preset"], r["decimation"]) for r in result["results"]] == [("production", 15), ("fast", 3)]
    assert list(result["skipped"]) == ["medium"]
    for r in result["results"]:
        assert r["env"] > 0 and r["physics_all_cores"] > 0
    assert result["results"][0]["speedup"] == 1.0


def test_bench_under_one_preset_runs_every_path_under_it(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--physics", "medium", "--envs", "4", "--seconds", "0.05", "--hand-envs", "2", "--no-ppo",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["timestep"], result["decimation"]) == (0.002, 10)
    assert result["results"][0]["dummy_vec_env"] > 0
    from legkit.envs.gym_env import LegkitGymEnv  # what the hand-built paths step: the preset's task too

    single = LegkitGymEnv("go2-walk", build_config("go2-walk", sets=result["overrides"]).task)
    try:
        assert single.batch.model.opt.timestep == 0.002 and single.batch.sim.decimation == 10
    finally:
        single.close()
