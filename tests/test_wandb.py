"""--wandb: every scalar TensorBoard gets, at the same steps, and each clip, in a wandb run (offline here: no
network); one wandb run across resumes and supervised processes; a one-line error without wandb installed.

The wandb side is read back by wandb's own reader of its transaction log (`wandb leet inspect --json`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from cli_helpers import LEGKIT, copy_run, one_error_line
from legkit.cli import main

WANDB = Path(sys.executable).with_name("wandb")  # wandb's command, installed with it
TINY = ["--envs", "16", "--set", "ppo.n_steps=64", "--set", "ppo.batch_size=256", "--set", "run.checkpoint_every=1024",
        "--set", "run.eval_episodes=0", "--set", "run.best_every=0", "--set", "run.torch_threads=1", "--no-progress"]
CLIP = ["--set", "run.video_every=2048", "--set", "run.video_seconds=0.5", "--set", "run.video_width=160",
        "--set", "run.video_height=120"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """wandb offline, silent, with every folder of its own (and its temp files) inside the test's folder."""
    pytest.importorskip("wandb")  # imported now: the staging folder it makes on import is not this test's
    home = tmp_path_factory.mktemp("wandb-home")
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_ERROR_REPORTING": "false"}
    env |= {name: str(home / name.lower()) for name in
            ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
            if name.endswith("_DIR"):
                Path(value).mkdir()
        for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_NAME", "WANDB_RUN_ID", "WANDB_RESUME"):
            mp.delenv(name, raising=False)
        yield home


@pytest.fixture(scope="module")
def wandb_run(offline, tmp_path_factory) -> Path:
    """2048 steps (two rollouts, a clip at 2048) with --wandb offline; nothing new in the temp dir or the cwd."""
    import wandb

    runs = tmp_path_factory.mktemp("wandb-runs")
    temp_before, cwd_before = _wandb_named(Path(tempfile.gettempdir())), _wandb_named(Path.cwd())
    assert main(["train", "go2-walk", "--steps", "2048", *TINY, *CLIP, "--runs", str(runs), "--wandb", "offline"]) == 0
    wandb.teardown()  # wandb's service (its socket is in the temp dir) ends with the process; here, now
    assert _wandb_named(Path(tempfile.gettempdir())) == temp_before and _wandb_named(Path.cwd()) == cwd_before
    (run,) = list(runs.iterdir())
    return run


def _wandb_named(folder: Path) -> set[str]:
    """The entries of `folder` that wandb could have made."""
    return {p.name for p in folder.iterdir() if "wandb" in p.name.lower() or p.name.startswith("debug")}


def wandb_logs(run: Path) -> list[Path]:
    """The .wandb transaction logs of a run's wandb sessions, oldest first (their folders are time-stamped)."""
    return sorted(run.glob("wandb/offline-run-*/run-*.wandb"))


def records(log: Path, tmp: Path) -> list[dict]:
    """Every record of the transaction log `log`, read by wandb's own reader (its temp files go to `tmp`)."""
    tmp.mkdir(exist_ok=True)
    r = subprocess.run([str(WANDB), "leet", "inspect", str(log), "--json"], env={**os.environ, "TMPDIR": str(tmp)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def of_type(recs: list[dict], kind: str) -> list[dict]:
    """The payloads of the records of one type ("history", "run", "exit"...)."""
    return [r[kind] for r in recs if r["type"] == kind]


def wandb_scalars(recs: list[dict]) -> dict[str, dict[int, float]]:
    """{key: {step: value}} of the logged numbers (wandb's own `_step`, `_runtime`... and clips left out)."""
    out: dict[str, dict[int, float]] = {}
    for h in of_type(recs, "history"):
        for key, value in h["item"].items():
            if not key.startswith(("_", "video/")):
                out.setdefault(key, {})[int(h["step"]["num"])] = value
    return out


def tb_scalars(run: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the run's TensorBoard files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb" / "PPO_1"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def assert_same_scalars(wb: dict[str, dict[int, float]], tb: dict[str, dict[int, float]]) -> None:
    assert sorted(wb) == sorted(tb)
    for key in tb:
        assert sorted(wb[key]) == sorted(tb[key]), key
        for step, value in tb[key].items():  # TensorBoard keeps float32
            assert wb[key][step] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, step)


# -- one run ----------------------------------------------------------------------------------------------

def test_wandb_gets_every_tensorboard_scalar_at_the_same_steps(wandb_run, tmp_path):
    (log,) = wandb_logs(wandb_run)
    recs = records(log, tmp_path / "tmp")
    tb = tb_scalars(wandb_run)
    assert "reward/track_lin_vel" in tb and sorted(tb["rollout/ep_rew_mean"]) == [1024, 2048]
    assert_same_scalars(wandb_scalars(recs), tb)
    (exit_record,) = of_type(recs, "exit")
    assert exit_record.get("exit_code", 0) == 0


def test_wandb_run_is_named_and_configured_after_the_legkit_run(wandb_run, tmp_path):
    meta = json.loads((wandb_run / "meta.json").read_text())
    (log,) = wandb_logs(wandb_run)
    (info,) = of_type(records(log, tmp_path / "tmp"), "run")
    assert info["run_id"] == meta["wandb_id"] and log.name == f"run-{meta['wandb_id']}.wandb"
    assert info["project"] == "legkit" and info["display_name"] == wandb_run.name
    config = {k: v for k, v in info["config"]["update"].items() if k != "_wandb"}
    assert config == yaml.safe_load((wandb_run / "config.yaml").read_text())


def test_wandb_gets_each_clip_as_a_video(wandb_run, tmp_path):
    (log,) = wandb_logs(wandb_run)
    clips = [h for h in of_type(records(log, tmp_path / "tmp"), "history") if "video/policy._type" in h["item"]]
    assert [int(h["step"]["num"]) for h in clips] == [2048]
    item = clips[0]["item"]
    assert item["video/policy._type"] == "video-file"
    copied = log.parent / "files" / item["video/policy.path"]
    assert copied.read_bytes() == (wandb_run / "videos" / "step_000002048.mp4").read_bytes()


# -- one wandb run over sessions ------------------------------------------------------------------------

def test_resumed_run_continues_the_same_wandb_run(wandb_run, tmp_path):
    run = copy_run(wandb_run, tmp_path / "run")
    wandb_id = json.loads((run / "meta.json").read_text())["wandb_id"]
    assert main(["train", "--resume", str(run), "--steps", "3072", "--no-progress", "--wandb", "offline"]) == 0
    assert json.loads((run / "meta.json").read_text())["wandb_id"] == wandb_id
    first, second = wandb_logs(run)
    assert first.name == second.name == f"run-{wandb_id}.wandb"
    recs = records(second, tmp_path / "tmp")
    (info,) = of_type(recs, "run")
    assert info["run_id"] == wandb_id and info["resume"] is True
    assert sorted(wandb_scalars(recs)["rollout/ep_rew_mean"]) == [3072]


def test_supervised_processes_log_to_one_wandb_run_and_finish_it(offline, tmp_path):
    """Two chunks in two forked processes: each continues the wandb run and finishes its part of it."""
    runs = tmp_path / "runs"
    r = subprocess.run([str(LEGKIT), "train", "go2-walk", "--steps", "2048", *TINY, "--set", "run.video_every=0",
                        "--runs", str(runs), "--wandb", "--chunk-steps", "1024"],  # a bare --wandb: WANDB_MODE decides
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(runs.iterdir())
    wandb_id = json.loads((run / "meta.json").read_text())["wandb_id"]
    logs = wandb_logs(run)
    assert [log.name for log in logs] == [f"run-{wandb_id}.wandb"] * 2
    merged: dict[str, dict[int, float]] = {}
    for log in logs:
        recs = records(log, tmp_path / "tmp")
        (exit_record,) = of_type(recs, "exit")  # finished before the process ended
        assert exit_record.get("exit_code", 0) == 0
        for key, values in wandb_scalars(recs).items():
            merged.setdefault(key, {}).update(values)
    assert_same_scalars(merged, tb_scalars(run))


# -- without wandb -----------------------------------------------------------------------------------------

def test_wandb_flag_without_wandb_installed_is_one_line_and_makes_no_run_folder(tmp_path, monkeypatch, capfd):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", *TINY, "--runs", str(runs), "--wandb", "offline"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "wandb" in line and "not installed" in line and "pip install wandb" in line
    assert not runs.exists()


def test_legkit_imports_without_importing_wandb():
    code = ("import sys, legkit.cli, legkit.train.trainer, legkit.train.video_callback, legkit.train.wandb_log; "
            "assert 'wandb' not in sys.modules, 'wandb was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_an_unknown_wandb_mode_is_one_line(tmp_path, capfd):
    runs = tmp_path / "runs"
    assert main(["train", "--steps", "1024", "--runs", str(runs), "--wandb", "go2-walk"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "--wandb takes online or offline" in line and "'go2-walk'" in line
    assert not runs.exists()


def test_a_wandb_run_that_cannot_start_is_one_line_and_leaves_no_run_folder(offline, tmp_path, monkeypatch, capfd):
    """No API key for an online run (wandb's own UsageError, raised by a stand-in: the test needs no network)."""
    import wandb

    def refuse(**kwargs):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "init", refuse)
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", *TINY, "--runs", str(runs), "--wandb", "online"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "wandb could not start a run: No API key" in line and "--wandb offline" in line
    assert not list(runs.glob("*"))
