"""End-to-end through the real `legkit` command: a tiny training run, resume, eval, list, and bad inputs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_helpers import LEGKIT, METRICS, copy_run, one_error_line, run_legkit, snapshot
from legkit.cli import main
from legkit.config import from_dict
from legkit.train.config import Config

# -- a training run and what it writes ------------------------------------------------------------

def test_smoke_run_writes_config_and_meta(smoke):
    assert smoke.name.startswith("go2-walk-")
    cfg = from_dict(Config, yaml.safe_load((smoke / "config.yaml").read_text()))
    assert cfg.task_name == "go2-walk"
    assert (cfg.run.total_steps, cfg.run.num_envs, cfg.ppo.n_steps, cfg.ppo.batch_size) == (4096, 16, 64, 256)
    assert (cfg.run.checkpoint_every, cfg.run.eval_episodes) == (1024, 2)

    meta = json.loads((smoke / "meta.json").read_text())
    assert meta["seed"] == 0
    assert "git_revision" in meta
    assert meta["git_revision"] is None or re.fullmatch(r"[0-9a-f]{40}", meta["git_revision"])
    assert meta["step"] == 4096 and meta["finished"] is True
    layout = [tuple(x) for x in meta["obs_layout"]]
    assert [name for name, _, _ in layout] == list(cfg.task.observations)
    assert layout[0][1] == 0 and sum(size for _, _, size in layout) == 48
    assert all(layout[i][1] + layout[i][2] == layout[i + 1][1] for i in range(len(layout) - 1))


def test_smoke_run_writes_episodes_csv_and_tensorboard(smoke):
    cfg = from_dict(Config, yaml.safe_load((smoke / "config.yaml").read_text()))
    with open(smoke / "episodes.csv", newline="") as f:
        rows = list(csv.reader(f))
    terms = [name for name, t in cfg.task.rewards.items() if t.weight != 0]
    assert rows[0] == ["step", "reward", "length", "time", "terminated", "mean_height", "mean_action",
                       "curriculum_stage", *terms]
    assert all(len(r) == len(rows[0]) for r in rows[1:])
    events = list((smoke / "tb").glob("PPO_1/events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert [p.name for p in (smoke / "tb").iterdir()] == ["PPO_1"]


def test_smoke_run_writes_checkpoints(smoke):
    ckpts = sorted(p.name for p in (smoke / "checkpoints").iterdir())
    assert ckpts == [f"step_{s:09d}" for s in (1024, 2048, 3072, 4096)]
    for name in ckpts:
        folder = smoke / "checkpoints" / name
        assert sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.zip", "vecnormalize.pkl"]
        assert json.loads((folder / "meta.json").read_text())["step"] == int(name.split("_")[1])
    assert not [p for p in smoke.rglob(".*")], "temporary files left behind"


def test_smoke_run_writes_eval_json(smoke):
    result = json.loads((smoke / "eval.json").read_text())
    m = result["metrics"]
    for key in METRICS:
        assert key in m, key
    assert m["episodes"] == 2
    assert 0.0 <= m["survival_rate"] <= 1.0
    assert m["survival_rate"] + m["early_termination_rate"] == pytest.approx(1.0)
    assert 0.0 < m["mean_base_height"] < 0.5 and m["base_height_std"] >= 0.0
    assert result["checkpoint"] == "final" and result["step"] == 4096


def _scalars(run: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb" / "PPO_1"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_best_model_is_the_best_periodic_evaluation(smoke, tmp_path):
    """run.best_every=2048: evaluations at 2048 and 4096 steps; RUN/best holds the higher-scoring one."""
    from stable_baselines3 import PPO

    scores = _scalars(smoke, "eval/mean_return")
    assert sorted(scores) == [2048, 4096]
    best = json.loads((smoke / "best" / "meta.json").read_text())
    top = max(scores, key=scores.get)
    assert best["step"] == top and best["eval"]["mean_return"] == pytest.approx(scores[top], rel=1e-5)
    assert best["eval"]["episodes"] == 2 and best["task"] == "go2-walk"
    assert PPO.load(str(smoke / "best" / "model.zip"), device="cpu").num_timesteps == top
    out = tmp_path / "best.json"
    assert main(["eval", str(smoke), "--checkpoint", "best", "--episodes", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == "best" and result["step"] == top


def test_best_by_survival_ranks_survival_first_and_return_second():
    """run.best_by=survival: a model whose robots stay up beats one with a higher return that falls more; the
    return breaks a tie; a saved best without the metric ranks lowest (any evaluation replaces it)."""
    from legkit.evaluate.best import score

    steady, fast, steadier = ({"survival_rate": 0.9, "mean_return": 10.0}, {"survival_rate": 0.5, "mean_return": 30.0},
                              {"survival_rate": 0.9, "mean_return": 12.0})
    assert score(steady, "survival") > score(fast, "survival") and score(fast, "return") > score(steady, "return")
    assert score(steadier, "survival") > score(steady, "survival")
    assert score({"mean_return": 1e9}, "survival") < score(fast, "survival")


def test_best_min_forward_velocity_keeps_a_standing_policy_from_being_best():
    """With a speed floor, a policy that stands and survives ranks below a slower-to-survive one that walks; above
    the floor run.best_by decides as before."""
    from legkit.evaluate.best import score

    stands = {"survival_rate": 1.0, "mean_return": 5.0, "mean_forward_velocity": 0.001}
    walks = {"survival_rate": 0.8, "mean_return": 20.0, "mean_forward_velocity": 0.09}
    walks_steadier = {"survival_rate": 0.9, "mean_return": 15.0, "mean_forward_velocity": 0.06}
    assert score(stands, "survival") > score(walks, "survival")  # no floor: standing still wins
    assert score(walks, "survival", 0.05) > score(stands, "survival", 0.05)
    assert score(walks_steadier, "survival", 0.05) > score(walks, "survival", 0.05)
    assert score(walks, "survival", 0.07) > score(walks_steadier, "survival", 0.07)
    assert score({"survival_rate": 1.0, "mean_return": 5.0}, "survival", 0.05) < score(stands, "survival", 0.05)


def test_best_by_speed_over_a_survival_floor_keeps_the_fastest_model_that_stays_up():
    """run.best_by=speed with run.best_min_survival: the fastest model that reaches the survival floor wins, over
    a faster one that falls more; without the floor the faster one wins; below the floor survival still counts
    as one floor reached (of two) above none."""
    from legkit.evaluate.best import score

    fast = {"survival_rate": 0.9, "mean_return": 70.0, "mean_forward_velocity": 0.12}
    steady = {"survival_rate": 1.0, "mean_return": 60.0, "mean_forward_velocity": 0.10}
    slow = {"survival_rate": 1.0, "mean_return": 65.0, "mean_forward_velocity": 0.06}
    assert score(fast, "speed") > score(steady, "speed") > score(slow, "speed")
    assert score(steady, "speed", min_survival=0.95) > score(fast, "speed", min_survival=0.95)
    assert score(steady, "speed", min_survival=0.95) > score(slow, "speed", min_survival=0.95)
    assert score(fast, "speed", min_survival=0.9) > score(steady, "speed", min_survival=0.9)  # at the floor
    # both floors: reaching both beats reaching one, whichever
    assert score(steady, "speed", 0.08, 0.95) > score(fast, "speed", 0.08, 0.95) > score(
        {**fast, "mean_forward_velocity": 0.05}, "speed", 0.08, 0.95)
    assert score(slow, "speed", 0.08, 0.95) > score({**fast, "mean_forward_velocity": 0.05}, "speed", 0.08, 0.95)
    assert score({"survival_rate": 1.0, "mean_return": 5.0}, "speed", 0.0, 0.95) < score(slow, "speed", 0.0, 0.95)


def test_best_min_survival_must_be_a_rate(tmp_path, capsys):
    for bad in ("1.5", "-0.1"):
        assert main(["train", "go2-walk", "--steps", "64", "--runs", str(tmp_path), "--set",
                     f"run.best_min_survival={bad}", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert "run.best_min_survival" in err and "from 0 to 1" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_best_min_forward_velocity_must_not_be_negative(tmp_path, capsys):
    assert main(["train", "go2-walk", "--steps", "64", "--runs", str(tmp_path), "--set",
                 "run.best_min_forward_velocity=-0.1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.best_min_forward_velocity" in err and ">= 0" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_best_by_must_be_a_known_rule(tmp_path, capsys):
    assert main(["train", "go2-walk", "--steps", "64", "--runs", str(tmp_path), "--set", "run.best_by=fastest",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "run.best_by" in err and "return, survival, speed" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_resume_keeps_a_best_model_that_is_not_beaten(smoke, tmp_path):
    run = copy_run(smoke, tmp_path / "run")
    meta = run / "best" / "meta.json"
    kept = json.loads(meta.read_text())
    kept["eval"]["mean_return"] = 1e9  # an unbeatable score from the "earlier session"
    meta.write_text(json.dumps(kept))
    before = (run / "best" / "model.zip").read_bytes()
    assert main(["train", "--resume", str(run), "--steps", "6144", "--no-progress"]) == 0
    assert sorted(_scalars(run, "eval/mean_return")) == [2048, 4096, 6144]
    assert (run / "best" / "model.zip").read_bytes() == before


def test_model_loads_with_plain_sb3(smoke):
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from legkit.envs.vec_env import LegkitVecEnv

    model = PPO.load(str(smoke / "model.zip"), device="cpu")
    assert model.num_timesteps == 4096
    assert model.observation_space.shape == (48,) and model.action_space.shape == (12,)
    cfg = from_dict(Config, yaml.safe_load((smoke / "config.yaml").read_text()))
    venv = LegkitVecEnv(cfg.task, 2, seed=1, nthread=1)
    try:
        norm = VecNormalize.load(str(smoke / "vecnormalize.pkl"), venv)
        norm.training = False
        assert norm.obs_rms.count > 1 and norm.obs_rms.mean.shape == (48,)
        obs = norm.reset()
        assert np.abs(obs).max() <= norm.clip_obs
        action, _ = model.predict(obs, deterministic=True)
        assert action.shape == (2, 12)
        obs, rewards, dones, _ = norm.step(action)
        assert np.isfinite(obs).all() and rewards.shape == (2,)
    finally:
        venv.close()


# -- resume, eval, list -----------------------------------------------------------------------------

def test_resume_continues_step_count_and_tensorboard(smoke, tmp_path, capsys):
    run = copy_run(smoke, tmp_path / "run")
    assert main(["train", "--resume", str(run), "--steps", "8192", "--no-progress"]) == 0
    assert "from step_000004096 (4096 steps)" in capsys.readouterr().out

    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == 8192 > 4096 and meta["finished"] is True
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]  # no PPO_2
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == [f"step_{s:09d}" for s in range(1024, 8193, 1024)]
    from stable_baselines3 import PPO

    assert PPO.load(str(run / "model.zip"), device="cpu").num_timesteps == 8192
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["total_steps"] == 8192
    lines = (run / "episodes.csv").read_text().splitlines()
    assert sum(line.startswith("step,") for line in lines) == 1  # appended, one header
    assert json.loads((run / "eval.json").read_text())["step"] == 8192
    assert (smoke / "meta.json").exists() and json.loads((smoke / "meta.json").read_text())["step"] == 4096


def test_eval_writes_json_via_entry_point(smoke, tmp_path):
    assert LEGKIT.exists(), f"console script missing at {LEGKIT}"
    before = snapshot(smoke)
    out = tmp_path / "out.json"
    proc = run_legkit("eval", str(smoke), "--episodes", "2", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["task"] == "go2-walk" and result["checkpoint"] == "final" and result["step"] == 4096
    assert result["metrics"]["episodes"] == 2
    for key in METRICS:
        assert key in result["metrics"], key
    assert "survival rate" in proc.stdout
    assert snapshot(smoke) == before  # --json elsewhere: the run folder is untouched


def test_eval_of_a_checkpoint_with_overrides(smoke, tmp_path):
    out = tmp_path / "ckpt.json"
    argv = ["eval", str(smoke), "--checkpoint", "2048", "--episodes", "1", "--set", "task.episode_seconds=0.5",
            "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == "step_000002048" and result["step"] == 2048
    assert result["overrides"] == ["task.episode_seconds=0.5"]
    assert result["metrics"]["episode_limit_s"] == pytest.approx(0.5)


def test_list_in_process(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+go2\s", out, re.M) and re.search(r"^\s+go2-walk\s", out, re.M)
    from legkit.tasks import get_task

    stages = len(get_task("humanoid-stand").curriculum.stages)
    (line,) = [ln for ln in out.splitlines() if ln.strip().startswith("humanoid-stand")]
    assert f"({stages} curriculum stages)" in line and stages == 8


def test_list_via_entry_point(tmp_path):
    proc = run_legkit("list", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\s+go2\s", proc.stdout, re.M) and re.search(r"^\s+go2-walk\s", proc.stdout, re.M)


# -- bad inputs: exit code 2, one line on stderr, nothing changed ------------------------------------

def _incomplete(smoke: Path, tmp: Path) -> Path:
    run = tmp / "incomplete"
    run.mkdir()
    shutil.copy(smoke / "config.yaml", run / "config.yaml")
    return run


def _no_config(smoke: Path, tmp: Path) -> Path:
    run = tmp / "no-config"
    run.mkdir()
    (run / "notes.txt").write_text("not a run\n")
    return run


def _corrupt(smoke: Path, tmp: Path) -> Path:
    run = copy_run(smoke, tmp / "corrupt")
    (run / "model.zip").write_bytes(b"this is not a zip file\x00\xff" * 10)
    return run


def _corrupt_checkpoint(smoke: Path, tmp: Path) -> Path:
    """Every checkpoint's model garbled: nothing to fall back to (one corrupt latest checkpoint falls back to the
    one before it with a warning: tests/test_faults.py)."""
    run = copy_run(smoke, tmp / "corrupt-ckpt")
    for folder in (run / "checkpoints").glob("step_*"):
        (folder / "model.zip").write_bytes(b"garbage")
    return run


def _no_best(smoke: Path, tmp: Path) -> Path:
    run = copy_run(smoke, tmp / "no-best")
    shutil.rmtree(run / "best")  # as after training with run.best_every=0
    return run


QUICK = ["--steps", "1024", "--envs", "8", "--set", "ppo.n_steps=64", "--set", "ppo.batch_size=256", "--set",
         "run.eval_episodes=0", "--set", "run.best_every=0", "--no-progress"]
"""Keeps a case short should it ever be accepted: it then trains a few steps and fails the test, not an hour."""


def _a_file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("not a folder\n")
    return path


def _foreign_norm(smoke: Path, tmp: Path) -> Path:
    from legkit.train.runs import pretrained_root

    run = copy_run(smoke, tmp / "foreign-norm")
    shutil.copy(pretrained_root() / "humanoid-stand" / "vecnormalize.pkl", run / "vecnormalize.pkl")
    return run


BAD = {
    # name: (argv builder(smoke, runs root, tmp), fragments the error must contain)
    "unknown task": (lambda s, r, t: ["train", "go2-run", "--runs", str(r)], ["'go2-run'", "go2-walk"]),
    "unknown robot": (lambda s, r, t: ["train", "go2-walk", "--set", "task.robot=nope", "--runs", str(r)],
                      ["'nope'", "go2"]),
    "unknown key": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.learning_rat=1", "--runs", str(r)],
                    ["ppo.learning_rat", "learning_rate", "n_steps"]),
    "malformed set": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.learning_rate", "--runs", str(r)],
                      ["malformed --set", "key=value"]),
    "malformed set value": (lambda s, r, t: ["train", "go2-walk", "--set", "x=", "--runs", str(r)],
                            ["malformed --set", "missing value"]),
    "out of range": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.gamma=1.5", "--runs", str(r)],
                     ["ppo.gamma", "(0, 1]"]),
    "eval missing run": (lambda s, r, t: ["eval", str(t / "nope")], ["does not exist", "pretrained:NAME"]),
    "resume missing run": (lambda s, r, t: ["train", "--resume", str(t / "nope"), "--runs", str(r)],
                           ["does not exist", "pretrained:NAME"]),
    "eval no config": (lambda s, r, t: ["eval", str(_no_config(s, t))], ["not a legkit run folder", "config.yaml"]),
    "resume no config": (lambda s, r, t: ["train", "--resume", str(_no_config(s, t)), "--steps", "8192"],
                         ["not a legkit run folder", "config.yaml"]),
    "eval incomplete": (lambda s, r, t: ["eval", str(_incomplete(s, t))], ["incomplete", "model.zip", "checkpoints"]),
    "resume incomplete": (lambda s, r, t: ["train", "--resume", str(_incomplete(s, t)), "--steps", "8192",
                                           "--set", "run.seed=5", "--no-progress"],
                          ["no checkpoint to resume", "legkit train TASK"]),
    "eval corrupt model": (lambda s, r, t: ["eval", str(_corrupt(s, t)), "--episodes", "1"],
                           ["corrupt", "model.zip"]),
    "resume corrupt checkpoint": (lambda s, r, t: ["train", "--resume", str(_corrupt_checkpoint(s, t)),
                                                   "--steps", "8192", "--no-progress"],
                                  ["corrupt", "step_000004096", "model.zip"]),
    "eval zero episodes": (lambda s, r, t: ["eval", str(s), "--episodes", "0"], ["--episodes", "at least 1"]),
    "eval unknown checkpoint": (lambda s, r, t: ["eval", str(s), "--checkpoint", "999"],
                                ["'999'", "latest", "best", "1024", "4096"]),
    "eval no best model": (lambda s, r, t: ["eval", str(_no_best(s, t)), "--checkpoint", "best"],
                           ["no best model", "run.best_every", "latest"]),
    "resume with task": (lambda s, r, t: ["train", "go2-walk", "--resume", str(s)], ["--resume"]),
    # a run is what it says it is (resume, ranges, layouts, files)
    "resume steps not above the run's": (lambda s, r, t: ["train", "--resume", str(s), "--steps", "100"],
                                         ["run.total_steps = 100", "4096 steps", "N > 4096"]),
    "resume finished run without steps": (lambda s, r, t: ["train", "--resume", str(s)],
                                          ["nothing to train", "N > 4096"]),
    "resume network shape": (lambda s, r, t: ["train", "--resume", str(s), "--steps", "8192",
                                              "--set", "ppo.net_arch=[64,64]"], ["ppo.net_arch", "cannot change on resume"]),
    "resume observations": (lambda s, r, t: ["train", "--resume", str(s), "--steps", "8192", "--set",
                                             "task.observations=[base_ang_vel, base_lin_vel, projected_gravity, command, "
                                             "joint_pos, joint_vel, last_action]"],
                            ["task.observations", "cannot change on resume", "network's inputs"]),
    "negative max_grad_norm": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.max_grad_norm=-1", "--runs", str(r), *QUICK],
                               ["ppo.max_grad_norm = -1", "> 0"]),
    "negative vf_coef": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.vf_coef=-5", "--runs", str(r), *QUICK],
                         ["ppo.vf_coef", ">= 0"]),
    "negative action_scale": (lambda s, r, t: ["train", "go2-walk", "--set", "task.action_scale=-3", "--runs", str(r), *QUICK],
                              ["task.action_scale", "> 0"]),
    "negative nthread": (lambda s, r, t: ["train", "go2-walk", "--set", "run.nthread=-1", "--runs", str(r), *QUICK],
                         ["run.nthread", ">= 0"]),
    "negative torch_threads": (lambda s, r, t: ["train", "go2-walk", "--set", "run.torch_threads=-1", "--runs", str(r), *QUICK],
                               ["run.torch_threads", ">= 0"]),
    "negative learning_rate_final": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.learning_rate_final=-1e-4",
                                                      "--runs", str(r), *QUICK], ["ppo.learning_rate_final", ">= 0"]),
    "negative target_kl": (lambda s, r, t: ["train", "go2-walk", "--set", "ppo.target_kl=-0.1", "--runs", str(r), *QUICK],
                           ["ppo.target_kl", "> 0"]),
    "zero-step episodes": (lambda s, r, t: ["train", "go2-walk", "--set", "task.episode_seconds=0.001",
                                            "--runs", str(r), *QUICK], ["task.episode_seconds = 0.001", "control period"]),
    "stage missing keys": (lambda s, r, t: ["train", "humanoid-stand", "--set", "task.curriculum.stages=[{target: 1.0}]",
                                            "--runs", str(r), *QUICK], ["stages[0]", "missing required keys", "tolerance"]),
    "reward parameter type": (lambda s, r, t: ["train", "go2-walk", "--set",
                                               "task.rewards.track_lin_vel.params.sigma=abc", "--runs", str(r), *QUICK],
                              ["track_lin_vel.params.sigma", "must be a number", "abc"]),
    "eval json into a missing folder": (lambda s, r, t: ["eval", str(s), "--json", str(t / "nope" / "e.json")],
                                        ["--json", "does not exist"]),
    "unwritable runs": (lambda s, r, t: ["train", "go2-walk", "--steps", "1024", "--runs", str(_a_file(t) / "sub")],
                        ["cannot create a run folder", "--runs"]),
    "eval set that cannot apply": (lambda s, r, t: ["eval", str(s), "--set", "ppo.learning_rate=0.1"],
                                   ["ppo.learning_rate", "cannot apply", "task.*"]),
    "eval another run's normalizer": (lambda s, r, t: ["eval", str(_foreign_norm(s, t)), "--episodes", "1"],
                                      ["vecnormalize.pkl", "another run"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(case, smoke, tmp_path, capfd):
    build, fragments = BAD[case]
    runs = smoke.parent
    argv = build(smoke, runs, tmp_path)
    before = snapshot(runs, tmp_path)
    capfd.readouterr()
    assert main(argv) == 2
    line = one_error_line(capfd.readouterr().err)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} missing from: {line}"
    assert snapshot(runs, tmp_path) == before, "a failed command changed files"


def test_corrupt_model_leaves_other_files_untouched(smoke, tmp_path, capfd):
    run = _corrupt(smoke, tmp_path)
    before = snapshot(run)
    capfd.readouterr()
    assert main(["eval", str(run), "--episodes", "2"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert str(run / "model.zip") in line
    assert snapshot(run) == before
    # Everything but model.zip is still byte-identical to the original run.
    for p in smoke.rglob("*"):
        if p.is_file() and p != smoke / "model.zip":
            assert (run / p.relative_to(smoke)).read_bytes() == p.read_bytes(), p


def test_argparse_errors_are_one_line(capfd):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval"])
    assert exit_info.value.code == 2
    line = one_error_line(capfd.readouterr().err)
    assert "run" in line


def test_bad_input_via_entry_point(tmp_path):
    proc = run_legkit("train", "go2-run", "--runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "'go2-run'" in line and "go2-walk" in line
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()
