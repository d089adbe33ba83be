"""`legkit train TASK --seeds 0,1,2 [--jobs J]`: one ordinary run per seed, in a common parent folder.

    PARENT/seeds.json      the task, the seeds, the training arguments and, per seed, its run and exit status
    PARENT/seed-<S>/       the run of seed S (config.yaml, meta.json, model.zip, evaluations.csv, ...)
    PARENT/logs/seed-<S>.log   a seed's output when seeds run in parallel (--jobs > 1)

Each seed trains in its own `legkit train` process (so a crash of one does not take the others with it);
one after another by default, up to `jobs` at once with --jobs, each then given cores / jobs simulation and
torch threads. `legkit report PARENT` aggregates the seeds (legkit.evaluate.aggregate).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from legkit import LegkitError

SEEDS_FILE = "seeds.json"


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (or a mix: '0-2,7') as a list of distinct non-negative seeds, in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
    except ValueError:
        raise LegkitError(f"--seeds '{text}' is not a list of seeds: give e.g. 0,1,2 or 0-4") from None
    if any(s < 0 for s in seeds):
        raise LegkitError(f"--seeds '{text}': seeds must be >= 0")
    if len(set(seeds)) != len(seeds):
        raise LegkitError(f"--seeds '{text}' names a seed twice")
    if not seeds:
        raise LegkitError("--seeds needs at least one seed")
    return seeds


def train_seeds(parent: Path, seeds: list[int], child_args: list[str], jobs: int = 1,
                info: dict | None = None) -> dict[int, int]:
    """Train one run per seed under `parent` (made by the caller) with `legkit train` + `child_args` + the seed's
    --seed and run folder; returns seed -> exit code. seeds.json records `info` (e.g. the task and the command)
    and the plan first, then every result."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // jobs) if jobs > 1 else 0
    record = {**(info or {}), "seeds": seeds, "jobs": jobs, "arguments": child_args,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": {}}
    info_path = parent / SEEDS_FILE
    _write(info_path, record)
    pending = list(seeds)
    running: dict[int, tuple[subprocess.Popen, object]] = {}
    codes: dict[int, int] = {}
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            cmd = [sys.executable, "-m", "legkit.cli", "train", *child_args, "--seed", str(seed),
                   "--run-folder", str(parent / f"seed-{seed}")]
            if threads:
                cmd += ["--set", f"run.nthread={threads}", "--set", f"run.torch_threads={threads}"]
            log = None
            if jobs > 1:
                (parent / "logs").mkdir(exist_ok=True)
                log = open(parent / "logs" / f"seed-{seed}.log", "w")
            print(f"seed {seed}: training in {parent / f'seed-{seed}'}" + (f" (output: {log.name})" if log else ""),
                  flush=True)
            running[seed] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None), log)
        done = [s for s, (p, _) in running.items() if p.poll() is not None]
        if not done:
            time.sleep(0.2)
            continue
        for seed in done:
            proc, log = running.pop(seed)
            if log is not None:
                log.close()
            codes[seed] = proc.returncode
            record["runs"][str(seed)] = {"run": f"seed-{seed}", "exit_code": proc.returncode}
            _write(info_path, record)
            print(f"seed {seed}: " + ("done" if proc.returncode == 0 else f"FAILED (exit code {proc.returncode})"),
                  flush=True)
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write(info_path, record)
    return codes


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
