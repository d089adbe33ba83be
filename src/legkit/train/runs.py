"""Run folders: layout, checkpoints, and resolving RUN arguments (paths or pretrained:NAME).

Writing is legkit.train.checkpoints' (atomic, fsynced, checksummed); its names are re-exported here.

    runs/<name>-<timestamp>/
        config.yaml  meta.json  episodes.csv  eval.json
        model.zip  vecnormalize.pkl          final policy (plain PPO.load, or RecurrentPPO.load when meta.json's
                                             algorithm is recurrent_ppo; VecNormalize.load)
        checkpoints/step_000500000/{model.zip, vecnormalize.pkl, meta.json}
        best/{model.zip, vecnormalize.pkl, meta.json}   best by periodic evaluation (legkit.evaluate.best)
        tb/                                  TensorBoard
        finetune.json                        a start from a cloned policy (finetune.*, legkit.imitate.start)
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from legkit import LegkitError
from legkit.train.checkpoints import (META, MODEL, NORM, atomic_write, latest_intact, listed,  # noqa: F401
                                      save_final, save_policy, step_of, verify)

CONFIG, BEST = "config.yaml", "best"
PRETRAINED_PREFIX = "pretrained:"


def pretrained_root() -> Path:
    """Folder of the policies that ship with legkit."""
    return Path(str(resources.files("legkit") / "pretrained"))


def pretrained_names() -> list[str]:
    root = pretrained_root()
    return sorted(p.name for p in root.iterdir() if (p / MODEL).exists()) if root.exists() else []


@dataclass(frozen=True)
class Policy:
    """A policy on disk: its model, normalization and the config it was trained with."""

    folder: Path
    model: Path
    norm: Path
    config: Path
    label: str

    @property
    def name(self) -> str:
        """What a user calls this policy's folder: `pretrained:NAME` for one that ships with legkit (not where the
        package happens to be installed), else the folder's path."""
        root = pretrained_root().resolve()
        folder = self.folder.resolve()
        return PRETRAINED_PREFIX + folder.name if folder.parent == root else str(self.folder)

    @property
    def step(self) -> int | None:
        meta = self.folder / META
        return json.loads(meta.read_text()).get("step") if meta.exists() else None

    @property
    def obs_layout(self) -> list | None:
        """The observation layout (name, start, size) the model was trained on, from its meta.json or
        the run's; None for folders saved without one."""
        for meta in (self.folder / META, self.config.parent / META):
            if meta.exists():
                layout = json.loads(meta.read_text()).get("obs_layout")
                if layout:
                    return layout
        return None

    @property
    def algorithm(self) -> str:
        """"ppo" or "recurrent_ppo": the class that loads the model (legkit.train.trainer.ALGORITHM_CLASSES), from
        its meta.json, the run's, or the run's config.yaml; "ppo" for runs from before there was a choice."""
        for meta in (self.folder / META, self.config.parent / META):
            if meta.exists():
                algorithm = json.loads(meta.read_text()).get("algorithm")
                if algorithm:
                    return str(algorithm)
        if self.config.exists():
            ppo = (yaml.safe_load(self.config.read_text()) or {}).get("ppo") or {}
            return str(ppo.get("algorithm", "ppo"))
        return "ppo"


def resolve_run(spec: str) -> Path:
    """A RUN argument -> a run folder; `pretrained:NAME` is a policy packaged with legkit."""
    if spec.startswith(PRETRAINED_PREFIX):
        name = spec[len(PRETRAINED_PREFIX):]
        names = pretrained_names()
        if name not in names:
            raise LegkitError(f"unknown pretrained policy '{name}'; available: {', '.join(names) or 'none'}")
        return pretrained_root() / name
    path = Path(spec)
    if not path.is_dir():
        raise LegkitError(f"run folder '{spec}' does not exist; pass a folder under runs/ or pretrained:NAME")
    if not (path / CONFIG).exists():
        raise LegkitError(f"'{spec}' is not a legkit run folder: it has no {CONFIG}")
    return path


def checkpoints(run: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    return listed(run / "checkpoints")


def find_policy(run: Path, checkpoint: str | None = None) -> Policy:
    """The final model of `run`, or checkpoint `checkpoint` (a step number, a folder name, 'latest' or 'best')."""
    config = run / CONFIG
    if checkpoint is None:
        if (run / MODEL).exists() and (run / NORM).exists():
            return Policy(run, run / MODEL, run / NORM, config, "final")
        checkpoint = "latest"
    if checkpoint == BEST:
        best = run / BEST
        if not ((best / MODEL).exists() and (best / NORM).exists()):
            raise LegkitError(f"run '{run}' has no best model: it is written by the periodic evaluation during "
                              "training (run.best_every > 0); valid checkpoints: latest, a step number, or none "
                              "for the final model")
        return Policy(best, best / MODEL, best / NORM, config, BEST)
    ckpts = checkpoints(run)
    if not ckpts:
        missing = [n for n in (MODEL, NORM) if not (run / n).exists()]
        if not missing:  # a final model but no checkpoints, and a checkpoint was asked for
            raise LegkitError(f"run '{run}' has no checkpoint '{checkpoint}': it has no checkpoints, only the final "
                              "model (leave out --checkpoint)")
        raise LegkitError(f"run '{run}' is incomplete: no {', '.join(missing)} and no checkpoints")
    if checkpoint == "latest":
        c = ckpts[-1]
    else:
        wanted = checkpoint if checkpoint.startswith("step_") else None
        if wanted is None:
            try:
                wanted = f"step_{int(checkpoint):09d}"
            except ValueError:
                raise LegkitError(f"checkpoint '{checkpoint}' is not a step number, step_ folder, 'latest' or "
                                  "'best'") from None
        matches = [c for c in ckpts if c.name == wanted]
        if not matches:
            valid = ", ".join(str(int(c.name.split("_")[1])) for c in ckpts)
            best = ", best" if (run / BEST / MODEL).exists() else ""
            raise LegkitError(f"run '{run}' has no checkpoint '{checkpoint}'; valid: latest{best}, {valid}")
        c = matches[0]
    return Policy(c, c / MODEL, c / NORM, config, c.name)


def find_intact_policy(run: Path, checkpoint: str | None = None) -> tuple[Policy, list[tuple[Path, str]]]:
    """`find_policy`, with a checkpoint or best model checked against its meta.json checksums (`verify`).

    Returns the policy and the newer corrupt checkpoints skipped on the way (folder, what is wrong): asked for
    'latest' (or no final model), a corrupt newest checkpoint falls back to the newest intact one, as a resume
    does. A corrupt checkpoint asked for by step, or a corrupt best model, is a one-line error naming the file
    and the newest intact checkpoint. The final model carries no checksums and is not checked.
    """
    policy = find_policy(run, checkpoint)
    if policy.label == "final":
        return policy, []
    problem = verify(policy.folder)
    if problem is None:
        return policy, []
    intact, skipped = latest_intact(run / "checkpoints")
    if checkpoint in (None, "latest") and intact is not None:
        return find_policy(run, intact.name), skipped
    if intact is not None:
        valid = f"the newest intact checkpoint is {step_of(intact)} (--checkpoint {step_of(intact)})"
    else:
        final = (run / MODEL).exists() and (run / NORM).exists()
        valid = "no checkpoint of the run is intact" + ("; leave out --checkpoint for the final model" if final else "")
    what = f"{policy.folder}/{problem}" if problem.startswith((MODEL, NORM, META)) else f"{policy.folder}: {problem}"
    raise LegkitError(f"{what}: the {'best model' if policy.label == BEST else 'checkpoint'} is corrupt; {valid}")


def new_run_dir(name: str, root: Path = Path("runs")) -> Path:
    """Create runs/<name>-<timestamp>/, never reusing an existing folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{name}-{stamp}"
    k = 1
    while path.exists():
        k += 1
        path = root / f"{name}-{stamp}-{k}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise LegkitError(f"cannot create a run folder under --runs '{root}': {exc.strerror or exc}; "
                          "give a writable folder with --runs DIR") from None
    return path


def git_revision() -> str | None:
    """The git commit of the legkit source tree, when it is a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_yaml(path: Path, data: Any) -> None:
    atomic_write(path, yaml.safe_dump(data, sort_keys=False).encode())


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())
