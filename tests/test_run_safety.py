"""A run folder stays one run: checkpoints checked before eval uses them, one trainer at a time, and an
episodes.csv without the rows a resume trains again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import LEGKIT, one_error_line
from legkit.cli import main
from legkit.train.callbacks import drop_rows_after
from legkit.train.lock import LOCK, hold_run
from legkit.train.runs import resolve_run

TINY = ["--envs", "16", "--set", "ppo.n_steps=32", "--set", "ppo.batch_size=256",
        "--set", "run.checkpoint_every=512", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
        "--set", "run.video_every=0", "--set", "run.torch_threads=1", "--set", "run.nthread=1", "--no-progress"]
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
SHORT = ["--episodes", "1", "--set", "task.episode_seconds=0.2"]
"""An evaluation of a few control steps: these tests are about which policy is loaded."""


# -- eval, validate and video check checkpoints against their checksums --------------------------------

def _run_with_checkpoints(tmp_path: Path, steps=(512, 1024), best: bool = False) -> Path:
    """A run folder (no final model) whose checkpoints (and best/) hold the shipped go2-walk policy with their
    sha256 in meta.json, as training writes them."""
    shipped = resolve_run("pretrained:go2-walk")
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(shipped / "config.yaml", run / "config.yaml")
    layout = json.loads((shipped / "meta.json").read_text())["obs_layout"]
    folders = [run / "checkpoints" / f"step_{s:09d}" for s in steps] + ([run / "best"] if best else [])
    for folder, step in zip(folders, list(steps) + [steps[0]]):
        folder.mkdir(parents=True)
        sums = {}
        for name in ("model.zip", "vecnormalize.pkl"):
            shutil.copy(shipped / name, folder / name)
            sums[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        (folder / "meta.json").write_text(json.dumps({"step": step, "obs_layout": layout, "sha256": sums}))
    return run


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_latest_falls_back_from_a_corrupt_checkpoint_with_one_warning(tmp_path, capfd):
    run = _run_with_checkpoints(tmp_path)
    _cut(run / "checkpoints" / "step_000001024" / "model.zip")
    out = tmp_path / "eval.json"
    capfd.readouterr()
    assert main(["eval", str(run), "--checkpoint", "latest", *SHORT, "--json", str(out)]) == 0
    (warning,) = capfd.readouterr().err.splitlines()
    assert warning.startswith("legkit: warning: checkpoint step_000001024 is corrupt (model.zip does not match "
                              "its sha256"), warning
    assert warning.endswith("using step_000000512, the newest intact one")
    assert json.loads(out.read_text())["checkpoint"] == "step_000000512"
    # no --checkpoint and no final model means the latest: the same fallback
    assert main(["eval", str(run), *SHORT, "--json", str(out)]) == 0
    assert "step_000001024 is corrupt" in capfd.readouterr().err


@pytest.mark.parametrize("command", [["eval", *SHORT], ["validate"], ["video", "--seconds", "0.1"]])
def test_a_corrupt_checkpoint_asked_for_is_one_line_naming_the_file_and_an_intact_one(tmp_path, capfd, command):
    run = _run_with_checkpoints(tmp_path)
    bad = run / "checkpoints" / "step_000000512" / "vecnormalize.pkl"
    _cut(bad)
    capfd.readouterr()
    assert main([command[0], str(run), "--checkpoint", "512", *command[1:]]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert f"{bad} does not match its sha256" in line and "the checkpoint is corrupt" in line, line
    assert "the newest intact checkpoint is 1024 (--checkpoint 1024)" in line, line
    assert not list(run.glob("*.json")) and not (run / "videos").exists()  # nothing was written


def test_a_corrupt_best_model_and_a_run_with_no_intact_checkpoint(tmp_path, capfd):
    run = _run_with_checkpoints(tmp_path, best=True)
    (run / "best" / "meta.json").write_text('{"step": 5')
    capfd.readouterr()
    assert main(["eval", str(run), "--checkpoint", "best", *SHORT]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert f"{run / 'best' / 'meta.json'} is unreadable" in line and "the best model is corrupt" in line
    assert "the newest intact checkpoint is 1024" in line
    for folder in (run / "checkpoints").iterdir():
        _cut(folder / "model.zip")
    assert main(["eval", str(run), "--checkpoint", "latest", *SHORT]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "step_000001024/model.zip does not match its sha256" in line and "no checkpoint of the run is intact" in line


# -- one trainer per run folder ------------------------------------------------------------------------

def _try_lock(run: Path) -> subprocess.CompletedProcess:
    """Another process taking `run`'s lock: prints 'locked' or the error."""
    code = ("import sys; from pathlib import Path; from legkit import LegkitError\n"
            "from legkit.train.lock import hold_run\n"
            "try:\n    with hold_run(Path(sys.argv[1])): print('locked')\n"
            "except LegkitError as e: print(e); sys.exit(2)")
    return subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=60)


def test_the_lock_is_exclusive_shared_with_forked_children_and_leaves_no_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with hold_run(run):
        assert (run / LOCK).read_text() == f"{os.getpid()}\n"
        other = _try_lock(run)
        assert other.returncode == 2 and f"run '{run}' is being trained by process {os.getpid()}" in other.stdout
        with hold_run(run):  # nested in the holder: nothing changes
            pass
        pid = os.fork()  # a supervised training child: it holds the run through its supervisor
        if pid == 0:
            try:
                with hold_run(run):
                    pass
                os._exit(0)
            except BaseException:  # noqa: BLE001 - a child must not return into pytest
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        assert _try_lock(run).returncode == 2  # the child's end did not release it
    assert not (run / LOCK).exists()
    assert _try_lock(run).stdout.strip() == "locked"


def _start(args: list[str], out: Path) -> subprocess.Popen:
    with open(out, "w") as f:
        return subprocess.Popen([str(LEGKIT), *args], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **CHILD_ENV})


def test_a_second_trainer_of_a_supervised_run_fails_at_once_naming_the_supervisor(tmp_path):
    """The supervisor holds the lock and its training child trains under it; a second `train --resume` of the
    folder is refused at once, naming the folder and the supervisor's pid; kill -9 of the supervisor frees it."""
    runs = tmp_path / "runs"
    first = _start(["train", "go2-walk", "--steps", "1000000", *TINY, "--runs", str(runs), "--supervise"],
                   tmp_path / "first.txt")
    try:
        t0 = time.monotonic()
        while not (runs.is_dir() and any(runs.glob("*/checkpoints/step_*"))):  # the child trains: not refused
            assert first.poll() is None, (tmp_path / "first.txt").read_text()
            assert time.monotonic() - t0 < 240, "no checkpoint in 240 s"
            time.sleep(0.1)
        (run,) = list(runs.iterdir())
        assert (run / LOCK).read_text() == f"{first.pid}\n"
        second = subprocess.run([str(LEGKIT), "train", "--resume", str(run), "--no-progress"], capture_output=True,
                                text=True, timeout=120, env={**os.environ, **CHILD_ENV})
        assert second.returncode == 2
        line = one_error_line(second.stderr)
        assert f"run '{run}' is being trained by process {first.pid}" in line and str(run / LOCK) in line
        assert first.poll() is None  # the first one trains on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    t0 = time.monotonic()  # its child dies with it (PR_SET_PDEATHSIG), and the kernel drops the lock
    while (done := _try_lock(run)).returncode != 0:
        assert time.monotonic() - t0 < 30, done.stdout
        time.sleep(0.2)
    assert not (run / LOCK).exists()  # the taker removed the file the killed supervisor left


# -- episodes.csv after a resume -----------------------------------------------------------------------

def test_drop_rows_after_keeps_the_header_and_the_rows_up_to_the_step(tmp_path):
    path = tmp_path / "episodes.csv"
    path.write_text("step,reward\n512,1.0\n1024,2.0\n1536,3.0\n1024,4.0\n2048,5.0\n")
    before = path.stat().st_mtime_ns
    assert drop_rows_after(path, 2048) == 0 and path.stat().st_mtime_ns == before  # nothing to drop: untouched
    assert drop_rows_after(path, 1024) == 2
    assert path.read_text() == "step,reward\n512,1.0\n1024,2.0\n1024,4.0\n"
    assert not list(tmp_path.glob(".*"))  # written beside and renamed


def test_resume_drops_the_episodes_logged_after_its_checkpoint(tmp_path, capsys):
    runs = tmp_path / "runs"
    short = ["--set", "task.episode_seconds=0.5"]  # episodes end in every rollout
    assert main(["train", "go2-walk", "--steps", "1024", *TINY, *short, "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    csv = run / "episodes.csv"
    trained = csv.read_text()
    header, *rows = trained.splitlines()
    assert rows and max(int(r.split(",")[0]) for r in rows) <= 1024
    # what a process killed after step 1024 would have logged past its last checkpoint (reward 999)
    ghost = [",".join([str(step), "999.0", *r.split(",")[2:]]) for step in (1536, 2048) for r in rows[:3]]
    csv.write_text(trained + "\n".join(ghost) + "\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1536", "--no-progress"]) == 0
    assert f"episodes.csv: dropped {len(ghost)} episodes logged after step 1024" in capsys.readouterr().out
    after = csv.read_text()
    assert after.startswith(trained)  # what was logged up to the checkpoint, as it was
    new = after[len(trained):].splitlines()
    assert new and all(r.split(",")[0] == "1536" and r.split(",")[1] != "999.0" for r in new)
    assert not list(run.glob(".*"))
