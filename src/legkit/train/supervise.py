"""Supervised training: training runs in a child process that is restarted from the latest checkpoint
when it dies, and (with chunks) is replaced by a fresh one every N steps on purpose.

    legkit train TASK --supervise [--max-restarts N] [--chunk-steps N]

The supervisor is the `legkit` process itself. It has imported torch, MuJoCo and SB3 but computed
nothing, and forks one child per stretch of training, so a child starts in milliseconds and with no
memory of the one before. A child trains (the `segment` callable the CLI hands in: train.trainer.train)
and ends with

    0    the run reached run.total_steps
    75   its chunk ended: a checkpoint was written at least --chunk-steps steps after it started;
         the next child continues from it (not a restart)
    2    a legkit error (bad input, a full disk...), which the supervisor raises as its own; not restarted
    3    an internal error; not restarted
    130  interrupted (Ctrl-C reaches the child from the terminal; the supervisor ignores it while a
         child runs, and forwards SIGTERM and SIGHUP to it); not restarted

Any other end (a signal: a segfault, the kernel's out-of-memory kill, kill -9; or an exit code of its
own) is a crash: after a backoff (1 s, doubled for every further crash that brought no new checkpoint,
at most 60 s) a new child resumes from the latest intact checkpoint, up to `max_restarts` times in all.
Every restart is printed as one line and appended to meta.json's `restarts` (time, how the child
ended, the checkpoint and step resumed from, the delay); every child that finished, ended a chunk or
crashed to `processes` (first and last checkpointed step, how it ended, its peak resident memory from
wait4, seconds). A child stopped by an error records nothing: a refused resume leaves the run as it was.

Test hook: LEGKIT_TEST_CRASH_AT=STEP[:SIGNAL],... makes the child that runs after i restarts kill itself
with SIGNAL (default KILL) at its first step at or past the i-th STEP (legkit.train.callbacks.InjectedCrash).

Needs os.fork (Linux, macOS); a child dies with the supervisor (Linux: PR_SET_PDEATHSIG). The supervisor
holds the run's lock; the children share it (train/lock.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from legkit import LegkitError
from legkit.config import load_yaml
from legkit.train.checkpoints import latest_intact, step_of
from legkit.train.config import Config, build_config
from legkit.train.lock import hold_run
from legkit.train.resume import ResumePlan, plan_resume
from legkit.train.runs import CONFIG, META, checkpoints, write_json

FINISHED, CHUNK_END, USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 0, 75, 2, 3, 130
NOT_RESTARTED = {FINISHED: "finished", CHUNK_END: "chunk end", USER_ERROR: "legkit error",
                 INTERNAL_ERROR: "internal error", INTERRUPTED: "interrupted"}

Segment = Callable[[ResumePlan | None, int | None], dict]
"""What one child does: train from a resume plan (None: from scratch) for a chunk of steps (None: to the end)."""


@dataclass(frozen=True)
class Supervision:
    """How a supervised run restarts its training process."""

    max_restarts: int = 5
    """Crashes survived in all; the next one ends the run with an error."""
    chunk_steps: int | None = None
    """Replace the training process after its first checkpoint this many steps on (None: never)."""
    first_delay_s: float = 1.0
    """Wait before the first restart; doubled for every further crash that brought no new checkpoint."""
    max_delay_s: float = 60.0

    def check(self, cfg: Config) -> None:
        """Raise a one-line LegkitError for settings that cannot work with `cfg`, before anything runs."""
        if self.max_restarts < 0:
            raise LegkitError(f"--max-restarts must be 0 or more (crashes survived in all), got {self.max_restarts}")
        if self.chunk_steps is not None:
            if self.chunk_steps < 1:
                raise LegkitError(f"--chunk-steps must be at least 1 (steps per training process; leave it out "
                                  f"for one process), got {self.chunk_steps}")
            if not cfg.run.checkpoint_every:
                raise LegkitError("--chunk-steps needs checkpoints, each chunk ends at one: run.checkpoint_every "
                                  "is 0; set it > 0")
        if not hasattr(os, "fork"):
            raise LegkitError("--supervise runs training in forked processes, and this platform has no os.fork; "
                              "train without it and continue after a crash with --resume RUN")

    def delay(self, streak: int) -> float:
        """Seconds before a restart after `streak` earlier crashes in a row without a new checkpoint."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** streak)


@dataclass(frozen=True)
class Ended:
    """How a child process ended."""

    code: int
    """os.waitstatus_to_exitcode: the exit code, or minus the signal that killed it."""
    peak_rss_mb: float
    seconds: float
    report: dict
    """What the child said about its error, if it had one: {"error": ...} or {"internal": ...}."""

    def describe(self) -> str:
        if self.code < 0:
            try:
                return signal.Signals(-self.code).name
            except ValueError:
                return f"signal {-self.code}"
        return NOT_RESTARTED.get(self.code, f"exit code {self.code}")


def supervise(run: Path, cfg: Config, plan: ResumePlan | None, segment: Segment, sup: Supervision,
              resume_as: Path | None = None) -> dict:
    """Train `run` to cfg.run.total_steps in child processes (the first one from `plan`); returns the final meta.
    `resume_as` is the folder that `legkit train --resume` continues `run` as (default `run`; a first stage's:
    its run's, legkit.train.stages), named when the restarts are used up.

    The supervisor holds the run's lock (train/lock.py) throughout, across restarts: each forked child shares
    it, so no other trainer can take the run between two children."""
    with hold_run(run):
        return _supervise(run, cfg, plan, segment, sup, resume_as or run)


def _supervise(run: Path, cfg: Config, plan: ResumePlan | None, segment: Segment, sup: Supervision,
               resume_as: Path) -> dict:
    _preload()
    restarts, streak, chunk = 0, 0, 0
    total = cfg.run.total_steps
    while True:
        start = plan.step if plan is not None else 0
        ended = _run_child(lambda p=plan: segment(p, sup.chunk_steps))
        latest, _ = latest_intact(run / "checkpoints")
        end = step_of(latest) if latest is not None else 0
        if ended.code not in (USER_ERROR, INTERNAL_ERROR, INTERRUPTED):  # a refused resume leaves the run as it was
            _record(run, "processes", {"start_step": start, "end_step": end, "ended": ended.describe(),
                                       "peak_rss_mb": round(ended.peak_rss_mb, 1), "seconds": round(ended.seconds, 1)})
        if ended.code == FINISHED:
            return json.loads((run / META).read_text())
        if ended.code == USER_ERROR:
            raise LegkitError(ended.report.get("error", "the training process stopped with an error"))
        if ended.code == INTERNAL_ERROR:
            raise RuntimeError(f"in the training process: {ended.report.get('internal', 'see the output above')}")
        if ended.code == INTERRUPTED or ended.report.get("stopped_by"):
            raise KeyboardInterrupt
        if ended.code == CHUNK_END:
            if end <= start:
                raise RuntimeError(f"a chunk of training ended without a new checkpoint (still at step {end})")
            chunk += 1
            print(f"supervisor: chunk {chunk} ended at {latest.name} ({end} of {total} steps, peak RSS "
                  f"{ended.peak_rss_mb:.0f} MB); a new process continues", flush=True)
            plan = _next_plan(run, cfg)
            continue
        # a crash
        where = f"{latest.name} ({end} steps)" if latest is not None else "the start (no checkpoint yet)"
        if restarts >= sup.max_restarts:
            raise LegkitError(f"the training process died ({ended.describe()}) and --max-restarts {sup.max_restarts} "
                              f"restarts are used up; the latest intact checkpoint is {where}: continue with "
                              f"legkit train --resume {resume_as} --supervise")
        stuck = end <= start  # no new checkpoint: wait longer each time in a row; after progress, the shortest
        wait = sup.delay(streak if stuck else 0)
        streak = streak + 1 if stuck else 0
        restarts += 1
        _record(run, "restarts", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "ended": ended.describe(),
                                  "exit_code": ended.code if ended.code >= 0 else None,
                                  "signal": -ended.code if ended.code < 0 else None,
                                  "from_checkpoint": latest.name if latest is not None else None, "step": end,
                                  "delay_s": wait})
        print(f"supervisor: the training process died ({ended.describe()}); restart {restarts} of "
              f"{sup.max_restarts} in {wait:g} s from {where}", flush=True)
        time.sleep(wait)
        plan = _next_plan(run, cfg)


def _preload() -> None:
    """Import, once in the supervisor, what each child would import for itself: torch loads its compiler
    stack (2-3 s) when the first optimizer is made. Only an optimizer over one number is built: no
    update, no thread pool, nothing a fork could inherit half-run."""
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _next_plan(run: Path, cfg: Config) -> ResumePlan | None:
    """Where the next child starts: the latest intact checkpoint, with `cfg` against the config on disk
    (a resume's changes stay recorded even when its first child died before writing config.yaml)."""
    if not checkpoints(run):
        return None  # died before its first checkpoint: start again
    saved = build_config(cfg.task_name, base=load_yaml(str(run / CONFIG)))
    return plan_resume(run, saved, cfg, finishing=True)  # cut after its last checkpoint: write the final model


def _record(run: Path, key: str, entry: dict) -> None:
    """Append `entry` to meta.json's list `key` (no child is running: the file is the supervisor's now)."""
    path = run / META
    meta = json.loads(path.read_text()) if path.exists() else {}
    meta[key] = list(meta.get(key, [])) + [entry]
    write_json(path, meta)


def _run_child(body: Callable[[], dict]) -> Ended:
    """Run `body` in a forked child; wait for it, and say how it ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the supervisor's stack
        code = INTERNAL_ERROR
        try:
            os.close(read_fd)
            code = _child(body, write_fd, parent)
        finally:
            os._exit(code)
    os.close(write_fd)
    with _forwarding(pid) as stopped:
        with os.fdopen(read_fd, "rb") as pipe:
            said = pipe.read()  # until the child exits (or dies): its end of the pipe closes then
        _, status, usage = os.wait4(pid, 0)
    report = json.loads(said) if said else {}
    if stopped:
        report["stopped_by"] = stopped[0]
    rss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux
    return Ended(os.waitstatus_to_exitcode(status), rss, time.monotonic() - t0, report)


def _child(body: Callable[[], dict], fd: int, parent: int) -> int:
    """The child's side: run `body`, turn what it raises into an exit code (and a report on `fd`)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with(parent)
    try:
        meta = body()
        return FINISHED if meta.get("finished") else CHUNK_END
    except LegkitError as exc:
        _report(fd, {"error": str(exc)})
        return USER_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except BaseException as exc:  # noqa: BLE001 - the child's last line of defence, as the CLI's
        if "--debug" in sys.argv or os.environ.get("LEGKIT_DEBUG", "").strip() not in ("", "0"):
            import traceback

            traceback.print_exc()
        _report(fd, {"internal": f"{type(exc).__name__}: {exc}".splitlines()[0]})
        return INTERNAL_ERROR
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed or broken stream must not turn an exit into another
                stream.flush()


def _report(fd: int, data: dict) -> None:
    os.write(fd, json.dumps(data).encode())


def _die_with(parent: int) -> None:
    """Linux: the kernel kills this child when the supervisor dies, so that no orphan trains on unwatched."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent:  # the supervisor died before the call took effect
        os._exit(INTERRUPTED)


@contextlib.contextmanager
def _forwarding(pid: int):
    """While child `pid` runs: ignore SIGINT (the terminal's Ctrl-C reaches the child itself) and pass
    SIGTERM and SIGHUP on to it. Yields a list that holds the signal once one was passed on."""
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield stopped
        return

    def forward(signum, frame):  # noqa: ARG001 - signal handler API
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    before = {s: signal.signal(s, h) for s, h in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward),
                                                   (signal.SIGHUP, forward))}
    try:
        yield stopped
    finally:
        for s, h in before.items():
            signal.signal(s, h)
