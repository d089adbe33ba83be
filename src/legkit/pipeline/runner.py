"""Run the PiDog pipeline's stages in order, each in a child process, into one experiment folder.

A stage's child works in STAGE.partial/ and its output goes to logs/STAGE.log and to the console. When it
ends well its folder replaces STAGE/ (legkit.pipeline.state.promote) and pipeline.json records it done; when
it fails or dies, pipeline.json says so and the next run of the same command resumes it from what it kept.
The state file is written by this process only, and atomically: a kill at any moment leaves it readable.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from legkit import LegkitError, __version__
from legkit.config import to_dict
from legkit.config import apply_sets, load_yaml
from legkit.pipeline.config import FINETUNE_KIND, FIRST_RECIPE, RECIPE, STAGES, TASK, PipelineConfig, blind_terms, \
    differences, first_sets, resolve, stage_config, train_sets
from legkit.pipeline.state import discard, hold, now, output, partial, promote, read_state, recover, write_state
from legkit.pipeline.stages import BC_FILE, DEMOS, METRICS, RUN
from legkit.train.config import recipe_file
from legkit.train.runs import checkpoints, git_revision, write_json, write_yaml

LOGS = "logs"


class StageFailed(Exception):
    """A stage ended with an error (exit code 1 of the command; the error is in its log)."""


def experiment_folder(runs: Path, name: str) -> Path:
    return runs / "pipeline" / name


def prepare(folder: Path, sets: list[str], redo: str | None, only: str | None,
            to: str | None = None) -> tuple[dict | None, PipelineConfig]:
    """Everything checked before anything is written: the saved record, the configuration with `sets`, that no
    stage before `redo` (the first stage run anew: --from's or --only's) would keep or continue work of other
    settings, that the stages before `only` are done, that `to` (the last stage run) is not before `redo`, and
    that a blind fine-tuning (an ablation) is not to be packaged. Returns (record or None, config)."""
    if to is not None and redo is not None and STAGES.index(to) < STAGES.index(redo):
        raise LegkitError(f"--to {to} comes before --from {redo}: nothing would run; stages in order: "
                          f"{', '.join(STAGES)}")
    state = read_state(folder)
    if state is None and folder.exists() and any(p.name not in ("pipeline.lock",) for p in folder.iterdir()):
        raise LegkitError(f"'{folder}' exists and is not a pipeline experiment (no pipeline.json); give another --name")
    cfg = resolve(state["config"] if state else None, sets)
    stages = state["stages"] if state else {}
    first = STAGES.index(redo) if redo else len(STAGES)
    for stage in STAGES[:first]:
        rec = stages.get(stage)
        if rec is None or rec["status"] == "stale":  # never run, or runs again anyway
            continue
        diff = differences(rec["config"], stage_config(cfg, stage), stage)
        if diff:
            raise LegkitError(f"experiment '{folder.name}' ran {stage} with other settings ({'; '.join(diff)}); "
                              f"to redo {stage} and the stages after it with these, add --from {stage}")
    if only:
        missing = [s for s in STAGES[:STAGES.index(only)] if not _done(folder, stages, s)]
        if missing:
            raise LegkitError(f"--only {only} needs the stages before it done; {', '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not: run without --only first")
    if (only or to or "package") == "package":
        blind = blind_terms(cfg)
        if blind:
            raise LegkitError(f"finetune.task.observation_blind makes the fine-tuned policy blind to "
                              f"{', '.join(blind)}: an ablation, which the package stage cannot export for the robot "
                              "(its runtime would feed real readings); add --to finetune to stop after the "
                              "fine-tuning (its evaluation: finetune/run/eval.json)")
    return state, cfg


def _done(folder: Path, stages: dict, stage: str) -> bool:
    rec = stages.get(stage)
    return rec is not None and rec["status"] == "done" and output(folder, stage).is_dir()


def run(folder: Path, sets: list[str], redo: str | None = None, only: str | None = None,
        command: str = "", to: str | None = None) -> dict:
    """Run the pipeline in `folder`: stages before `redo` that are done are kept, `redo` (or `only`) and the ones
    after it (none after `only`; none after `to`) run anew, failed ones resume. Returns the final record;
    StageFailed when a stage fails; a LegkitError (nothing written) when the input is wrong."""
    if only is not None and to is not None:
        raise LegkitError("--only and --to cannot go together: --only runs one stage; --from STAGE --to STAGE runs a "
                          "range")
    prepare(folder, sets, redo or only, only, to)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LegkitError(f"cannot create the experiment folder '{folder}': {exc.strerror or exc}; give a writable "
                          "--runs folder") from None
    with hold(folder):
        state, cfg = prepare(folder, sets, redo or only, only, to)  # again, now that no other pipeline can change it
        recover(folder, STAGES)
        if state is None:
            state = {"pipeline": "pidog", "name": folder.name, "created": now(), "legkit_version": __version__,
                     "git_revision": git_revision(), "stages": {}}
        state.update(config=to_dict(cfg), command=command)
        _mark_died(state)
        start = STAGES.index(redo or only) if (redo or only) else len(STAGES)
        last = STAGES.index(only or to or STAGES[-1])
        if start < len(STAGES):
            _mark_stale(folder, state, STAGES[start + 1:], f"--{'only' if only else 'from'} {STAGES[start]} redid a "
                        "stage before it")
        write_state(folder, state)
        for i, stage in enumerate(STAGES[:last + 1]):
            rec = state["stages"].get(stage)
            if i < start and _done(folder, state["stages"], stage):
                print(f"{stage}: done ({rec.get('duration_s', 0):.0f} s, {rec['ended']}), kept", flush=True)
                continue
            # what a failed or killed attempt kept is continued, unless --from asks for the stage anew
            resumable = (stage != "package" and rec is not None and rec["status"] == "failed"
                         and rec["config"] == stage_config(cfg, stage) and partial(folder, stage).is_dir())
            _run_stage(folder, state, stage, cfg, resumable and (i < start or stage == only))
    statuses = ", ".join(f"{s} {state['stages'][s]['status']}" for s in STAGES if s in state["stages"])
    packaged = _done(folder, state["stages"], "package") and only in (None, "package")
    print(f"experiment {folder}: {statuses}" + (f"; the packaged policy is in {output(folder, 'package')}"
                                                 if packaged else ""), flush=True)
    return state


def _mark_stale(folder: Path, state: dict, stages: tuple[str, ...], why: str) -> None:
    """`stages` were built on outputs that are being replaced: they run again (their finished outputs stay until
    the new ones are whole; unfinished work is discarded)."""
    for stage in stages:
        rec = state["stages"].get(stage)
        if rec is not None and rec["status"] != "stale":
            rec.update(status="stale", error=why)
            discard(partial(folder, stage))


def _mark_died(state: dict) -> None:
    """A stage recorded running while this process holds the lock died with the pipeline that ran it."""
    for stage, rec in state["stages"].items():
        if rec["status"] == "running":
            rec["status"] = "failed"
            rec["error"] = "its process died (killed, or the machine stopped) before it ended"
            if rec.get("attempts"):
                rec["attempts"][-1].setdefault("outcome", "died")


def _run_stage(folder: Path, state: dict, stage: str, cfg: PipelineConfig, resume: bool) -> None:
    work = partial(folder, stage)
    if not resume:
        discard(work)  # unfinished work of another attempt or other settings; finished outputs stay in STAGE/
    work.mkdir(exist_ok=True)
    old = state["stages"].get(stage) or {}
    attempts = list(old.get("attempts", [])) if resume else []
    t0, started = time.time(), now()
    attempts.append({"started": started, "mode": "resume" if resume else "new"})
    rec = {"status": "running", "started": started, "config": stage_config(cfg, stage), "attempts": attempts}
    state["stages"][stage] = rec
    write_state(folder, state)
    log = folder / LOGS / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    header = f"== {stage}: {'resumed' if resume else 'started'} {started} =="
    command = finetune_command(folder, cfg, resume) if stage == "finetune" else \
        [sys.executable, "-m", "legkit.pipeline.stages", stage, str(folder.resolve())]
    code, error = tee(command, log, header)
    ended = now()
    rec.update(ended=ended, duration_s=round(time.time() - t0, 1))
    attempts[-1].update(ended=ended, duration_s=rec["duration_s"], outcome="done" if code == 0 else f"exit {code}")
    if code != 0:
        rec.update(status="failed", error=error)
        write_state(folder, state)
        raise StageFailed(f"stage {stage} failed: {error} (its log: {log}); once the cause is fixed, the same "
                          f"command {'redoes' if stage == 'package' else 'resumes'} it (--from {stage} --set ...: "
                          "with other settings)")
    if stage == "finetune":
        write_json(work / METRICS, finetune_metrics(work / RUN))
    rec["metrics"] = json.loads((work / METRICS).read_text())
    rec["total_duration_s"] = round(sum(a.get("duration_s", 0) for a in attempts), 1)
    rec["status"] = "done"
    if stage == "package":  # the summary of every stage, this one included, goes out with the model
        from legkit.pipeline.package import write_summary

        write_summary(work / "SUMMARY.md", state)
    promote(folder, stage)
    _mark_stale(folder, state, STAGES[STAGES.index(stage) + 1:], f"{stage} was run again after it")
    write_state(folder, state)
    print(f"{stage}: done in {rec['duration_s']:.0f} s", flush=True)


def finetune_command(folder: Path, cfg: PipelineConfig, resume: bool) -> list[str]:
    """`legkit train`: continuing finetune.partial/run from its latest checkpoint (or its first stage's), or a new
    run there of the recipe pidog-arena, its first stage (pidog-turn from the clone) in finetune.partial/first.yaml."""
    work = partial(folder, "finetune")
    run_dir = (work / RUN).resolve()
    train = [sys.executable, "-m", "legkit.cli", "train"]
    if resume and (checkpoints(run_dir) or checkpoints(run_dir / "first")):
        return [*train, "--resume", str(run_dir), "--no-progress"]
    discard(run_dir)  # died before its first checkpoint: nothing to continue
    bc = (output(folder, "imitate") / FINETUNE_KIND / BC_FILE).resolve()
    demos = (output(folder, "collect") / DEMOS).resolve()
    if cfg.finetune.turn_steps:
        first = (work / "first.yaml").resolve()
        tree = apply_sets(load_yaml(str(recipe_file(FIRST_RECIPE))), first_sets(cfg, bc, demos))
        write_yaml(first, tree)
        sets = [*train_sets(cfg), f"finetune.first={json.dumps(str(first))}"]
    else:
        sets = train_sets(cfg, first=(bc, demos))
    return [*train, TASK, "--config", str(recipe_file(RECIPE)), "--run-folder", str(run_dir), "--no-progress",
            *[a for s in sets for a in ("--set", s)]]


def finetune_metrics(run_dir: Path) -> dict:
    """The fine-tuning's steps, time, final evaluation and best model, from its run folder."""
    meta = json.loads((run_dir / "meta.json").read_text())
    out = {"algorithm": meta.get("algorithm", "ppo"), "steps": meta.get("step"), "wall_time_s": meta.get("wall_time_s"),
           "resumes": len(meta.get("resumes", []))}
    if (run_dir / "eval.json").exists():
        out["final_evaluation"] = json.loads((run_dir / "eval.json").read_text())["metrics"]
    first = run_dir / "first"  # the first stage (pidog-turn), where the clone starts
    if (first / "meta.json").exists():
        meta_first = json.loads((first / "meta.json").read_text())
        out["first_stage"] = {"steps": meta_first.get("step"), "wall_time_s": meta_first.get("wall_time_s")}
        if (first / "eval.json").exists():
            out["first_stage"]["final_evaluation"] = json.loads((first / "eval.json").read_text())["metrics"]
    start = (first if first.is_dir() else run_dir) / "finetune.json"  # the clone's return as loaded, after warm-up
    for key, measured in (json.loads(start.read_text()) if start.exists() else {}).items():
        if key.startswith("return_"):
            out[f"clone_{key}"] = {k: v for k, v in measured.items() if isinstance(v, dict)}
    if (run_dir / "best" / "meta.json").exists():
        best = json.loads((run_dir / "best" / "meta.json").read_text())
        out["best_step"] = best.get("step")
        out["best_mean_return"] = (best.get("eval") or {}).get("mean_return")
    return out


def tee(command: list[str], log: Path, header: str) -> tuple[int, str]:
    """Run `command` with its output (stdout and stderr) appended to `log` and copied to this process's stdout.
    Returns its exit code and its error in one line (its last `legkit: error` line, or its last line)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    print(header, flush=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(header + "\n")
        f.flush()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent)
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                text = decoder.decode(chunk)
                f.write(text)
                f.flush()
                sys.stdout.write(text)
                sys.stdout.flush()
                tail = (tail + text)[-8192:]
        finally:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reached the child too: let it end first
                proc.wait()
            proc.stdout.close()
    code = proc.returncode
    if code < 0:
        return code, f"killed by signal {signal.Signals(-code).name}"
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("legkit: error: ", "legkit: internal error: "))]
    line = errors[-1] if errors else (lines[-1] if lines else f"exit code {code}, no output")
    return code, line.removeprefix("legkit: error: ")


def _die_with_parent() -> None:
    """In the child, before it runs (Linux): the kernel kills it when the pipeline dies, so that no stage goes on
    unwatched, writing into a folder that the next run of the pipeline takes over."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
