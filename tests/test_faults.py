"""Training that survives its own death: kill -9 and --resume, corrupt and unwritable checkpoints,
supervised restarts after injected crashes, and flat memory over chunks.

The runs are tiny (16 robots, a 512-step rollout, a checkpoint per rollout) and the subprocesses few:
each fresh `legkit` process costs about 4 s of CPU to import torch, MuJoCo and SB3, while the
children of a supervised run are forked and start at once.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import LEGKIT, one_error_line, snapshot
from legkit.cli import main
from legkit.train.checkpoints import listed, recover, step_of, verify

EVERY = 512
"""Checkpoint interval, and the rollout size (16 robots x 32 steps): a checkpoint ends every rollout."""
TINY = ["--envs", "16", "--set", "ppo.n_steps=32", "--set", "ppo.batch_size=256",
        "--set", f"run.checkpoint_every={EVERY}", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
        "--set", "run.video_every=0", "--set", "run.torch_threads=1", "--set", "run.nthread=1", "--no-progress"]
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
"""One torch thread (the test machine is shared); output lines in the file as they are printed."""


def _start(args: list[str], out: Path, **env: str) -> subprocess.Popen:
    """`legkit ARGS` in a fresh process, its output in the file `out`."""
    with open(out, "w") as f:
        return subprocess.Popen([str(LEGKIT), *args], stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **CHILD_ENV, **env})


def _steps(run: Path) -> list[int]:
    return [step_of(c) for c in listed(run / "checkpoints")]


def _wait_until(ok, proc: subprocess.Popen, what: str, timeout: float = 300.0, poll: float = 0.02):
    t0 = time.monotonic()
    while not ok():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended (code {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


def _tb_steps(run: Path) -> dict[int, list[int]]:
    """{writer pid: steps of its TensorBoard scalars} for the one TensorBoard run, tb/PPO_1."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]
    out: dict[int, list[int]] = {}
    for f in (run / "tb" / "PPO_1").iterdir():  # events.out.tfevents.<time>.<host>.<pid>.<n>
        steps = [e.step for e in EventFileLoader(str(f)).Load() if e.summary.value]
        out.setdefault(int(f.name.split(".")[-2]), []).extend(steps)
    return out


def _assert_intact(run: Path) -> None:
    """Every checkpoint matches its checksums; the run's JSON and YAML files parse."""
    for folder in listed(run / "checkpoints"):
        assert verify(folder) is None, f"{folder.name}: {verify(folder)}"
    json.loads((run / "meta.json").read_text())
    yaml.safe_load((run / "config.yaml").read_text())


# -- kill -9 ---------------------------------------------------------------------------------------

def test_kill_9_at_five_random_moments_loses_at_most_one_interval(tmp_path):
    """SIGKILL a real training 5 times (after a seeded random stretch; one of them inside a checkpoint
    write when it can be caught), resume each time. Everything TensorBoard had recorded before a kill is
    in an intact checkpoint, so less than one checkpoint interval of training is ever lost; the step
    counter and TensorBoard run continue; no file is corrupt."""
    rng = random.Random(2024)
    runs, total = tmp_path / "runs", 24576  # 48 checkpoints: room for 5 kills on a fast machine
    proc = _start(["train", "go2-walk", "--steps", str(total), *TINY, "--runs", str(runs)], tmp_path / "out-0.txt")
    _wait_until(lambda: runs.is_dir() and any(runs.iterdir()), proc, "the run folder")
    (run,) = list(runs.iterdir())
    pids, starts, resumed = [proc.pid], [0], []
    for k in range(5):
        start = starts[-1]
        mid_write = k == 2
        _wait_until(lambda: any(s > start for s in _steps(run)), proc, f"a checkpoint after step {start}")
        if mid_write:  # the next checkpoint's temporary folder, caught within a millisecond or two
            root = run / "checkpoints"
            t0 = time.monotonic()
            while (not any(p.name.endswith(".tmp") for p in root.iterdir()) and time.monotonic() - t0 < 5
                   and proc.poll() is None):
                time.sleep(0.001)
        else:
            time.sleep(rng.uniform(0.0, 0.4))
        assert proc.poll() is None, "the training finished before the kill; make the run longer"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        cut = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]

        _assert_intact(run)
        latest = _steps(run)[-1]
        reported = max(max(s, default=0) for s in _tb_steps(run).values())
        assert latest >= reported, f"TensorBoard saw step {reported} but the latest checkpoint is {latest}"
        print(f"kill {k + 1}: latest checkpoint {latest}, TensorBoard at {reported}, cut writes {cut}")

        proc = _start(["train", "--resume", str(run), "--no-progress"], tmp_path / f"out-{k + 1}.txt")
        _wait_until(lambda: "resuming" in (tmp_path / f"out-{k + 1}.txt").read_text(), proc, "the resume")
        assert f"from step_{latest:09d} ({latest} steps)" in (tmp_path / f"out-{k + 1}.txt").read_text()
        pids.append(proc.pid)
        starts.append(latest)
        resumed.append(latest)
    assert proc.wait(timeout=300) == 0, (tmp_path / "out-5.txt").read_text()

    _assert_intact(run)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == total and meta["finished"] is True
    assert [r["step"] for r in meta["resumes"]] == resumed
    from stable_baselines3 import PPO

    assert PPO.load(str(run / "model.zip"), device="cpu").num_timesteps == total
    assert _steps(run) == list(range(EVERY, total + 1, EVERY))
    tb = _tb_steps(run)
    for pid, start in zip(pids, starts):  # each process logged on from where it resumed, not from 0
        assert all(s > start for s in tb.get(pid, [])), (pid, start, sorted(tb.get(pid, []))[:3])
    assert max(tb[pids[-1]]) == total
    header, *rows = (run / "episodes.csv").read_text().splitlines()
    assert all(len(r.split(",")) == len(header.split(",")) for r in rows)
    logged = [int(r.split(",")[0]) for r in rows]  # each resume dropped what it trains again: no overlap
    assert logged == sorted(logged), "episodes.csv has overlapping step ranges"
    assert not [p for p in run.rglob(".*")], "temporary files left behind"


# -- corrupt and unwritable checkpoints ------------------------------------------------------------

def test_a_truncated_checkpoint_falls_back_to_the_one_before(tmp_path, capfd):
    runs = tmp_path / "runs"
    keep = ["--set", "run.keep_checkpoints=3"]
    assert main(["train", "go2-walk", "--steps", "2048", *TINY, *keep, "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    assert _steps(run) == [1024, 1536, 2048]  # the last 3 kept
    model = run / "checkpoints" / "step_000002048" / "model.zip"
    cut = model.read_bytes()[: model.stat().st_size // 2]
    model.write_bytes(cut)
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "2560", "--no-progress"]) == 0
    out = capfd.readouterr()
    (warning,) = [line for line in out.err.splitlines() if line.strip()]
    assert warning.startswith("legkit: warning: checkpoint step_000002048 is corrupt (model.zip does not match")
    assert "resuming from step_000001536" in warning
    assert "from step_000001536 (1536 steps)" in out.out
    # the corrupt one is kept aside, as it was; the new ones are whole
    assert (run / "checkpoints" / "corrupt" / "step_000002048" / "model.zip").read_bytes() == cut
    assert _steps(run) == [1536, 2048, 2560]
    _assert_intact(run)
    entry = json.loads((run / "meta.json").read_text())["resumes"][-1]
    assert entry["from_checkpoint"] == "step_000001536" and "step_000002048" in entry["skipped_corrupt"]


def test_a_run_whose_checkpoints_are_all_corrupt_is_refused_untouched(tmp_path, capfd):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", *TINY, "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    for folder in listed(run / "checkpoints"):
        (folder / "model.zip").write_bytes(b"garbage")
    before = snapshot(run)
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "2048", "--no-progress"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "no intact checkpoint to resume from, every one is corrupt (step_000001024: model.zip does not" in line
    assert "step_000000512" in line and "legkit train TASK" in line
    assert snapshot(run) == before


def test_verify_names_what_is_wrong(tmp_path):
    folder = tmp_path / "step_000000512"
    folder.mkdir()
    (folder / "model.zip").write_bytes(b"PK\x03\x04 not a whole zip")
    (folder / "vecnormalize.pkl").write_bytes(b"\x80\x04")
    (folder / "meta.json").write_text(json.dumps({"step": 512}))  # saved before checksums: structural checks
    assert "model.zip is not a whole zip file" in verify(folder)
    (folder / "meta.json").write_text('{"step": 51')
    assert verify(folder) == "meta.json is unreadable (JSONDecodeError)"
    import hashlib

    sums = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("model.zip", "vecnormalize.pkl")}
    (folder / "meta.json").write_text(json.dumps({"step": 512, "sha256": sums}))
    assert verify(folder) is None
    (folder / "vecnormalize.pkl").write_bytes(b"\x80\x05")
    assert verify(folder) == "vecnormalize.pkl does not match its sha256 (2 bytes)"


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch, capfd):
    import legkit.train.checkpoints as ckpt

    real, calls = ckpt.write_file, []

    def full_disk(path: Path, data: bytes) -> None:  # the second checkpoint's model.zip fills the disk
        if path.name == "model.zip" and path.parent.name.startswith(".step_"):
            calls.append(path)
            if len(calls) == 2:
                with open(path, "wb") as f:
                    f.write(data[: len(data) // 3])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(ckpt, "write_file", full_disk)
    runs = tmp_path / "runs"
    capfd.readouterr()
    assert main(["train", "go2-walk", "--steps", "2048", *TINY, "--runs", str(runs)]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "could not write" in line and "step_000001024" in line and "No space left on device (ENOSPC)" in line
    assert "free some disk space" in line and "--resume" in line
    (run,) = list(runs.iterdir())
    assert _steps(run) == [512]
    _assert_intact(run)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")], "half a checkpoint left"
    from stable_baselines3 import PPO

    assert PPO.load(str(run / "checkpoints" / "step_000000512" / "model.zip"), device="cpu").num_timesteps == 512
    monkeypatch.setattr(ckpt, "write_file", real)  # space again: the run continues from it
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert _steps(run) == [512, 1024, 1536, 2048]


def test_recover_undoes_a_folder_swap_cut_between_its_renames(tmp_path):
    run = tmp_path / "run"
    root = run / "checkpoints"
    (root / ".step_000001024.old").mkdir(parents=True)  # step_1024 was being replaced: the old one set aside,
    (root / ".step_000001024.old" / "model.zip").write_text("old")
    (root / ".step_000001024.tmp").mkdir()  # the new one not yet renamed in
    (root / ".step_000000512.del").mkdir()  # a pruning cut short
    (run / ".meta.json.tmp").write_text("{")
    recover(run)
    assert sorted(p.name for p in root.iterdir()) == ["step_000001024"]
    assert (root / "step_000001024" / "model.zip").read_text() == "old"
    assert not (run / ".meta.json.tmp").exists()


# -- supervised training ---------------------------------------------------------------------------

def test_supervised_run_survives_three_crashes_and_ends_where_an_uninterrupted_one_does(tmp_path):
    total = 3072
    args = ["train", "go2-walk", "--steps", str(total), *TINY]
    out = tmp_path / "supervised.txt"
    proc = _start([*args, "--supervise", "--runs", str(tmp_path / "supervised")], out,
                  LEGKIT_TEST_CRASH_AT="700,1300:SEGV,2200")
    assert main([*args, "--runs", str(tmp_path / "plain")]) == 0  # meanwhile, the same run without crashes
    assert proc.wait(timeout=600) == 0, out.read_text()
    (run,) = list((tmp_path / "supervised").iterdir())
    (plain,) = list((tmp_path / "plain").iterdir())
    from stable_baselines3 import PPO

    steps = PPO.load(str(run / "model.zip"), device="cpu").num_timesteps
    assert steps == PPO.load(str(plain / "model.zip"), device="cpu").num_timesteps == total
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == total and meta["finished"] is True
    assert [r["signal"] for r in meta["restarts"]] == [signal.SIGKILL, signal.SIGSEGV, signal.SIGKILL]
    assert [r["step"] for r in meta["restarts"]] == [512, 1024, 2048]  # the checkpoints resumed from
    assert [p["ended"] for p in meta["processes"]] == ["SIGKILL", "SIGSEGV", "SIGKILL", "finished"]
    lines = [line for line in out.read_text().splitlines() if line.startswith("supervisor:")]
    assert len(lines) == 3 and "(SIGSEGV); restart 2 of 5 in 1 s from step_000001024" in lines[1]
    _assert_intact(run)
    assert _steps(run) == _steps(plain) == list(range(EVERY, total + 1, EVERY))
    assert [p.name for p in (run / "tb").iterdir()] == ["PPO_1"]


def test_memory_stays_flat_over_ten_chunks(tmp_path):
    """Peak resident memory of each of 10 training processes (wait4's ru_maxrss), one per 512-step chunk.

    Each chunk is a fresh fork of the supervisor, so what one leaks dies with it; what could still grow
    is what a chunk carries on from the run (meta.json, episodes.csv, TensorBoard, checkpoints). The
    tolerance, 8 MB, is about 2.5% of the ~315 MB a chunk holds (torch, MuJoCo and SB3 are ~280 MB of
    it); a leak of the run's own size per chunk would exceed it within a few chunks."""
    out = tmp_path / "chunks.txt"
    proc = _start(["train", "go2-walk", "--steps", str(10 * EVERY), *TINY, "--chunk-steps", str(EVERY),
                   "--runs", str(tmp_path / "runs")], out)
    assert proc.wait(timeout=600) == 0, out.read_text()
    (run,) = list((tmp_path / "runs").iterdir())
    procs = json.loads((run / "meta.json").read_text())["processes"]
    assert [p["ended"] for p in procs] == ["chunk end"] * 9 + ["finished"]
    assert [p["end_step"] for p in procs] == list(range(EVERY, 10 * EVERY + 1, EVERY))
    assert "restarts" not in json.loads((run / "meta.json").read_text())  # chunks are not restarts
    peaks = [p["peak_rss_mb"] for p in procs]
    print("peak RSS per chunk (MB):", peaks)
    assert max(peaks) - min(peaks) < 8.0, peaks
    assert sum(peaks[-3:]) / 3 - sum(peaks[1:4]) / 3 < 4.0, peaks  # no upward trend among resumed chunks


def test_a_legkit_error_in_the_child_is_not_restarted(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LEGKIT_TEST_CRASH_AT", "soon")
    runs = tmp_path / "runs"
    capfd.readouterr()
    assert main(["train", "go2-walk", "--steps", "1024", *TINY, "--supervise", "--runs", str(runs)]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "LEGKIT_TEST_CRASH_AT=soon" in line
    assert not list(runs.iterdir())  # it failed before training began: no run folder left


def test_restarts_back_off_and_run_out(tmp_path, capfd):
    """The supervisor's own logic, with children that die at once (nothing is trained: safe to fork here)."""
    from legkit import LegkitError
    from legkit.train.config import Config
    from legkit.train.supervise import Supervision, supervise

    run = tmp_path / "run"
    run.mkdir()
    sup = Supervision(max_restarts=2, first_delay_s=0.01)
    with pytest.raises(LegkitError, match=r"died \(SIGKILL\) and --max-restarts 2 restarts are used up; the latest "
                                          r"intact checkpoint is the start \(no checkpoint yet\)"):
        supervise(run, Config(), None, lambda plan, chunk: os.kill(os.getpid(), signal.SIGKILL), sup)
    meta = json.loads((run / "meta.json").read_text())
    assert [r["delay_s"] for r in meta["restarts"]] == [0.01, 0.02]  # no progress: each wait doubles
    assert [p["ended"] for p in meta["processes"]] == ["SIGKILL"] * 3
    assert len([line for line in capfd.readouterr().out.splitlines() if line.startswith("supervisor:")]) == 2

    def exits_1(plan, chunk):
        os._exit(1)  # an exit code of its own: a crash, restarted

    for name in ("b", "c"):
        (tmp_path / name).mkdir()
    with pytest.raises(LegkitError, match=r"died \(exit code 1\)"):
        supervise(tmp_path / "b", Config(), None, exits_1, Supervision(max_restarts=0))
    with pytest.raises(RuntimeError, match="a chunk of training ended without a new checkpoint"):
        supervise(tmp_path / "c", Config(), None, lambda plan, chunk: {"finished": False}, sup)


@pytest.mark.parametrize("extra, expected", [
    (["--chunk-steps", "0"], "--chunk-steps must be at least 1 (steps per training process"),
    (["--chunk-steps", "-512"], "--chunk-steps must be at least 1"),
    (["--max-restarts", "-1"], "--max-restarts must be 0 or more"),
    (["--chunk-steps", "1024", "--set", "run.checkpoint_every=0"], "--chunk-steps needs checkpoints"),
    (["--set", "run.keep_checkpoints=1"], "invalid run.keep_checkpoints = 1: must be 0 (keep every checkpoint) "
                                          "or at least 2"),
])
def test_bad_supervision_input_is_one_line_before_anything_is_made(tmp_path, capfd, extra, expected):
    runs = tmp_path / "runs"
    capfd.readouterr()
    assert main(["train", "go2-walk", "--steps", "2048", *TINY, *extra, "--runs", str(runs)]) == 2
    assert expected in one_error_line(capfd.readouterr().err)
    assert not runs.exists() or not list(runs.iterdir())

