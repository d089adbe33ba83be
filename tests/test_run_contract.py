"""A run is what it says it is: resume applies (or refuses) changes, observation layouts are checked by
term, episodes start out of step, unexpected errors are one line, nothing leaks outside the run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli_helpers import SMOKE, copy_run, one_error_line, snapshot
from legkit.cli import main
from legkit.tasks import get_task


def _load(run: Path, name: str = "model.zip"):
    from stable_baselines3 import PPO

    return PPO.load(str(run / name), device="cpu")


# -- resume: changes apply and are recorded, or are refused ------------------------------------------

def test_resume_applies_ppo_changes_and_records_them(smoke, tmp_path, capsys):
    run = copy_run(smoke, tmp_path / "run")
    argv = ["train", "--resume", str(run), "--steps", "6144", "--no-progress", "--set", "ppo.learning_rate=0.1",
            "--set", "ppo.n_epochs=1", "--set", "ppo.gamma=0.5", "--set", "ppo.ent_coef=0.03"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ppo.learning_rate: 0.0005 -> 0.1" in out and "ppo.n_epochs: 5 -> 1" in out
    model = _load(run)
    assert model.num_timesteps == 6144
    # What the model trains with, not only what it stores: the optimizer ran at the new rate.
    assert model.lr_schedule(1.0) == pytest.approx(0.1)
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    assert (model.n_epochs, model.gamma, model.ent_coef) == (1, 0.5, 0.03)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["ppo"]["learning_rate"], cfg["ppo"]["n_epochs"], cfg["ppo"]["gamma"]) == (0.1, 1, 0.5)
    assert cfg["run"]["total_steps"] == 6144
    (entry,) = json.loads((run / "meta.json").read_text())["resumes"]
    assert entry["step"] == 4096 and entry["from_checkpoint"] == "step_000004096"
    assert entry["changes"]["ppo.learning_rate"] == {"from": 0.0005, "to": 0.1}
    assert entry["changes"]["run.total_steps"] == {"from": 4096, "to": 6144}
    # n_epochs=1 really ran: SB3 counts gradient epochs in _n_updates (4 rollouts of 1024 at 5, then 2 at 1)
    assert model._n_updates == 4 * 5 + 2 * 1


def test_resume_with_a_changed_layout_in_the_checkpoint_names_the_term(smoke, tmp_path, capfd):
    run = copy_run(smoke, tmp_path / "run")
    meta_path = run / "checkpoints" / "step_000004096" / "meta.json"
    meta = json.loads(meta_path.read_text())
    layout = meta["obs_layout"]
    layout[0][0], layout[1][0] = layout[1][0], layout[0][0]  # same sizes, other order: what a code change does
    meta["obs_layout"] = layout
    meta_path.write_text(json.dumps(meta))
    before = snapshot(run)
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "8192", "--no-progress"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "observation layout changed" in line and "term 0 is 'base_lin_vel'" in line and "'base_ang_vel'" in line
    assert "corrupt" not in line
    assert snapshot(run) == before


def test_resume_at_a_curriculum_stage_above_zero(tmp_path, capsys):
    """A humanoid run resumed from a checkpoint at stage 3 trains at stage 3, and the reset PPO.learn makes
    first feeds no fake failed episodes into the curriculum."""
    runs = tmp_path / "runs"
    base = ["--envs", "8", "--no-progress", "--set", "ppo.n_steps=64", "--set", "ppo.batch_size=256",
            "--set", "run.checkpoint_every=512", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
            "--set", "run.torch_threads=1", "--set", "run.video_every=0"]
    assert main(["train", "humanoid-stand", "--steps", "1024", "--runs", str(runs), *base]) == 0
    (run,) = list(runs.iterdir())
    ckpt_meta = run / "checkpoints" / "step_000001024" / "meta.json"
    meta = json.loads(ckpt_meta.read_text())
    assert meta["curriculum_stage"] == 0 and meta["curriculum_stage_steps"] >= 0
    meta["curriculum_stage"] = 3
    meta["curriculum_stage_steps"] = 10**9  # the clock of a stage's max_steps goes on from the checkpoint's
    ckpt_meta.write_text(json.dumps(meta))
    assert main(["train", "--resume", str(run), "--steps", "1536", "--no-progress"]) == 0
    final = json.loads((run / "meta.json").read_text())
    assert final["step"] == 1536 and final["curriculum_stage"] >= 3
    assert final["curriculum_stage_steps"] >= 10**9 or final["curriculum_stage"] > 3
    rows = (run / "episodes.csv").read_text().splitlines()[1:]
    stage_col = (run / "episodes.csv").read_text().splitlines()[0].split(",").index("curriculum_stage")
    resumed = [int(r.split(",")[stage_col]) for r in rows if int(r.split(",")[0]) > 1024]
    assert resumed and min(resumed) >= 3  # every episode after the resume began at stage 3


def test_env_reset_is_no_curriculum_outcome():
    from legkit.envs.vec_env import LegkitVecEnv

    env = LegkitVecEnv(get_task("humanoid-stand"), 16, seed=0, nthread=1, randomize_episode_start=True)
    try:
        for _ in range(3):
            env.step(np.zeros((16, 17), dtype=np.float32))
        env.reset()  # what PPO.learn does first: cuts 16 running episodes short
        assert len(env.batch.curriculum.outcomes) == 0
        assert env.drain_completed() == []
    finally:
        env.close()


def test_episode_starts_are_spread_after_the_first_reset():
    """PPO.learn's reset used to zero every episode clock, so the batch timed out in lock step."""
    from legkit.envs.vec_env import LegkitVecEnv

    task = get_task("go2-walk")
    env = LegkitVecEnv(task, 32, seed=0, nthread=1, randomize_episode_start=True)
    try:
        env.reset()
        limits = env.batch.time_limit.copy()
        assert len(np.unique(limits)) > 16 and limits.min() >= 1 and limits.max() <= env.batch.max_steps
        first_end = np.zeros(32, dtype=np.int64)
        lengths = {}
        zeros = np.zeros((32, 12), dtype=np.float32)
        for t in range(1, env.batch.max_steps + 1):
            _, _, dones, infos = env.step(zeros)  # the PD home pose stands: every end is a time-out
            for i in np.flatnonzero(dones & (first_end == 0)):
                first_end[i] = t
                lengths[i] = infos[i]["episode"]["l"]
                assert infos[i]["TimeLimit.truncated"]
        np.testing.assert_array_equal(first_end, limits)  # each robot's first time-out at its own step
        assert all(lengths[i] == limits[i] for i in lengths)  # and its reported length is what it lived
        np.testing.assert_array_equal(env.batch.time_limit[first_end < env.batch.max_steps], env.batch.max_steps)
    finally:
        env.close()


def test_spread_first_episodes_are_not_curriculum_outcomes():
    from legkit.envs.core import LeggedBatch

    batch = LeggedBatch(get_task("humanoid-stand"), 4, seed=0, nthread=1)
    try:
        batch.spread_episode_starts()
        batch.time_limit[:] = [5, 5, batch.max_steps, batch.max_steps]
        for _ in range(5):
            batch.step(np.zeros((4, 17)))
        batch.reset(np.array([0, 2]))  # 0: a shortened episode at its limit; 2: a real (if short) outcome
        assert len(batch.curriculum.outcomes) == 1
    finally:
        batch.close()


def test_same_seed_gives_identical_weights(tmp_path):
    argv = [*SMOKE[:3], "2048", *SMOKE[4:], "--set", "run.best_every=0", "--set", "run.eval_episodes=0"]
    for name in ("a", "b"):
        assert main([*argv, "--runs", str(tmp_path / name)]) == 0
    (a,), (b,) = (list((tmp_path / n).iterdir()) for n in ("a", "b"))
    wa, wb = _load(a).policy.state_dict(), _load(b).policy.state_dict()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# -- evaluation: observation layouts by term, normalizers that belong ---------------------------------

SWAPPED = "task.observations=[base_ang_vel, base_lin_vel, projected_gravity, command, joint_pos, joint_vel, last_action]"


def test_eval_refuses_a_same_size_layout_change(smoke, capfd):
    capfd.readouterr()
    assert main(["eval", str(smoke), "--episodes", "1", "--set", SWAPPED, "--json", "/dev/null"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "term 0 is 'base_ang_vel'" in line and "'base_lin_vel'" in line


def test_eval_refuses_another_runs_normalizer(smoke, tmp_path, capfd):
    from legkit.train.runs import pretrained_root

    run = copy_run(smoke, tmp_path / "run")
    shutil.copy(pretrained_root() / "humanoid-stand" / "vecnormalize.pkl", run / "vecnormalize.pkl")
    capfd.readouterr()
    assert main(["eval", str(run), "--episodes", "1"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "vecnormalize.pkl" in line and "another run" in line and "48" in line


def test_eval_keeps_the_training_evaluation(smoke, tmp_path):
    run = copy_run(smoke, tmp_path / "run")
    training = (run / "eval.json").read_bytes()
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert main(["eval", str(run), "--episodes", "1", "--checkpoint", "2048"]) == 0
    assert main(["eval", str(run), "--episodes", "1", "--set", "task.commands.lin_vel_x=[1.0,1.0]"]) == 0
    assert (run / "eval.json").read_bytes() == training
    assert json.loads((run / "eval-final.json").read_text())["checkpoint"] == "final"
    assert json.loads((run / "eval-step_000002048.json").read_text())["step"] == 2048
    (custom,) = run.glob("eval-final-set-*.json")
    assert json.loads(custom.read_text())["overrides"] == ["task.commands.lin_vel_x=[1.0,1.0]"]


def test_eval_on_held_out_episodes_with_another_seed(smoke, tmp_path, capfd):
    """`--seed` evaluates other episodes (other commands here: go2-walk draws one per episode), into a file of its
    own; the default seed's figures are those of eval-final.json, unchanged."""
    run = copy_run(smoke, tmp_path / "run")
    assert main(["eval", str(run), "--episodes", "4"]) == 0
    assert main(["eval", str(run), "--episodes", "4", "--seed", "7"]) == 0
    usual = json.loads((run / "eval-final.json").read_text())
    other = json.loads((run / "eval-final-seed-7.json").read_text())
    assert (usual["seed"], other["seed"]) == (12345, 7)
    assert other["metrics"]["mean_command_velocity"] != usual["metrics"]["mean_command_velocity"]
    assert main(["eval", str(run), "--episodes", "4", "--seed", "12345", "--json", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["metrics"] == usual["metrics"]
    capfd.readouterr()
    assert main(["eval", str(run), "--episodes", "4", "--seed", "-1"]) == 2
    assert "--seed must be a whole number >= 0, got -1" in one_error_line(capfd.readouterr().err)


# -- one line, a distinct code, --debug ---------------------------------------------------------------

def test_unexpected_errors_are_one_line_with_their_own_code(monkeypatch, capfd):
    import legkit.cli as cli

    def broken(args):
        raise RuntimeError("something legkit did not expect\nsecond line")

    monkeypatch.setattr(cli, "cmd_list", broken)
    capfd.readouterr()
    assert main(["list"]) == cli.INTERNAL_ERROR == 3
    line = capfd.readouterr().err.strip()
    assert "\n" not in line and line.startswith("legkit: internal error: RuntimeError: something legkit did not")
    assert "--debug" in line
    with pytest.raises(RuntimeError):
        main(["list", "--debug"])
    monkeypatch.setenv("LEGKIT_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["list"])


def test_debug_shows_the_traceback_of_a_legkit_error(capfd):
    capfd.readouterr()
    assert main(["--debug", "train", "go2-run"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("legkit: error: unknown task")


def test_steps_accept_the_notation_people_type():
    from legkit.cli import count

    assert count("1e6") == 1_000_000 and count("3_000_000") == 3_000_000 and count("2.5e5") == 250_000
    assert count("4096") == 4096
    import argparse

    for bad in ("1.5", "abc", "1e-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            count(bad)


# -- nothing outside the run: temp folders, MUJOCO_LOG.TXT -------------------------------------------

def test_bench_ppo_leaves_no_sb3_folder_in_temp():
    from legkit.evaluate.bench import ppo_rate
    from legkit.train.config import build_config

    before = set(Path(tempfile.gettempdir()).glob("SB3-*"))
    cfg = build_config("go2-walk", sets=["ppo.n_steps=8", "ppo.batch_size=64", "ppo.n_epochs=1"])
    assert ppo_rate(cfg, 8, 0.01) > 0
    assert set(Path(tempfile.gettempdir()).glob("SB3-*")) == before


def test_mujoco_warnings_go_to_the_run_log_not_the_working_directory(tmp_path, monkeypatch):
    from legkit.envs.vec_env import LegkitVecEnv
    from legkit.sim.log import mujoco_warnings_to, take_unreported

    monkeypatch.chdir(tmp_path)
    take_unreported()
    env = LegkitVecEnv(get_task("go2-walk"), 2, seed=0, nthread=1)
    try:
        env.batch.sim.qvel[1, 8] = 1e12  # an exploding robot: MuJoCo warns
        env.step(np.zeros((2, 12), dtype=np.float32))
        assert take_unreported(), "MuJoCo gave no warning; the test needs a physics blow-up"
        log = tmp_path / "run" / "mujoco.log"
        log.parent.mkdir()
        with mujoco_warnings_to(log):
            env.batch.sim.qvel[0, 8] = 1e12
            env.step(np.zeros((2, 12), dtype=np.float32))
        assert "unstable" in log.read_text() or "Nan" in log.read_text()
        assert not take_unreported()
    finally:
        env.close()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_gymnasium_envs_without_a_seed_differ():
    from legkit.envs.gym_env import LegkitGymEnv

    a, b = LegkitGymEnv(), LegkitGymEnv()
    try:
        assert not np.array_equal(a.reset()[0], b.reset()[0])
        np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    finally:
        a.close()
        b.close()


def test_no_file_cites_the_shared_folder():
    """The repository stands alone: README, code and tests state facts instead of citing ../shared."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *root.glob("src/**/*.py"), *root.glob("src/**/*.xml"), *root.glob("tests/*.py"),
             *root.glob("docs/*.md")]
    citing = [str(p.relative_to(root)) for p in files if "shared/robots" in p.read_text()
              and p.name != Path(__file__).name]
    assert not citing, citing
