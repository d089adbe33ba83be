"""Files and policy folders that survive a crash at any moment, and checkpoints that prove they are whole.

Every file is written to a temporary name in its own folder, flushed to disk (fsync) and renamed
over its place, so a crash leaves the old content or the new, never half of one. A policy folder
(checkpoints/step_N, best/) is built beside its place the same way and renamed as a whole; its
meta.json, written last, holds the sha256 of model.zip and vecnormalize.pkl. `verify` checks them,
`latest_intact` skips a corrupt latest checkpoint for the one before it, `prune` keeps the last K,
and `recover` finishes (or undoes) what a killed process left half done. Any OSError of a write (a
full disk, a read-only or vanished folder) is a one-line LegkitError, and what was written before
stays as it was. The files stay plain SB3 files: `PPO.load(model.zip)`, `VecNormalize.load(...)`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

from legkit import LegkitError

MODEL, NORM, META = "model.zip", "vecnormalize.pkl", "meta.json"
CHECKSUMS = "sha256"
"""The meta.json key of a policy folder's checksums: {file name: sha256 hex digest}."""
TRAINING_TEMPORARIES = tuple(f".{name}.tmp" for name in (MODEL, NORM, META, "config.yaml", "episodes.csv"))
"""Temporary files of the training's own atomic writes at the top of a run (eval's are not touched)."""
CORRUPT = "corrupt"
"""checkpoints/corrupt/: where a resume moves the corrupt checkpoints it skipped (kept, never deleted)."""


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` and flush it to the disk (fsync) before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename stands
            os.fsync(fd)
    finally:
        os.close(fd)


def write_error(what: Path, exc: OSError, then: str = "") -> LegkitError:
    """A one-line error for an OSError while writing `what`; `then` says what to do once it is fixed."""
    code = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    why = f"{exc.strerror or exc}{f' ({code})' if code else ''}"
    hint = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "check that the folder exists and is writable")
    return LegkitError(f"could not write {what}: {why}; nothing already saved was replaced: {hint}{then}")


def atomic_write(path: Path, payload: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_file(tmp, payload)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None
    _fsync_dir(path.parent)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def policy_files(model, vecnorm) -> dict[str, bytes]:
    """model.zip and vecnormalize.pkl as bytes: what PPO.save and VecNormalize.save would write."""
    buf = io.BytesIO()
    model.save(buf)
    return {MODEL: buf.getvalue(), NORM: pickle.dumps(vecnorm)}


def save_policy(folder: Path, model, vecnorm, meta: dict) -> None:
    """Save model + normalization + meta (with their checksums) into `folder` atomically: built beside
    it, flushed, then renamed into place; an existing `folder` is replaced only once the new one is whole."""
    files = policy_files(model, vecnorm)
    meta = {**meta, CHECKSUMS: {name: sha256(data) for name, data in files.items()}}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name, data in files.items():
            write_file(tmp / name, data)
        write_file(tmp / META, json_bytes(meta))  # last: its presence means whole
        _fsync_dir(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)  # a cleanup on a failing disk: the error above is what counts
        raise write_error(folder, exc, ", then continue the run with legkit train --resume RUN") from None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)  # a crash between these two renames is undone by `recover`
        os.replace(tmp, folder)
        shutil.rmtree(old)
    else:
        os.replace(tmp, folder)
    _fsync_dir(folder.parent)


def save_final(run: Path, model, vecnorm, meta: dict) -> None:
    """Write the final model.zip and vecnormalize.pkl at the top of the run folder, each atomically."""
    for name, data in policy_files(model, vecnorm).items():
        atomic_write(run / name, data)
    atomic_write(run / META, json_bytes(meta))


def step_of(folder: Path) -> int:
    """The step of checkpoints/step_N (from its name)."""
    return int(folder.name.split("_")[1])


def listed(root: Path) -> list[Path]:
    """Checkpoint folders under `root` (RUN/checkpoints) with a model and a normalization, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step_") and (p / MODEL).exists() and (p / NORM).exists()]
    return sorted(found, key=step_of)


def verify(folder: Path) -> str | None:
    """None when the policy in `folder` is whole, else what is wrong (one phrase).

    Folders with checksums (meta.json `sha256`) are checked against them; older ones, saved without,
    by reading the zip's own CRCs and unpickling the normalization."""
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        return f"no {META}"
    except (OSError, ValueError) as exc:
        return f"{META} is unreadable ({type(exc).__name__})"
    sums = meta.get(CHECKSUMS) if isinstance(meta, dict) else None
    if sums is None:
        return _verify_unsummed(folder)
    for name in (MODEL, NORM):
        if name not in sums:
            return f"{META} has no checksum of {name}"
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or type(exc).__name__})"
        if sha256(data) != sums[name]:
            return f"{name} does not match its sha256 ({len(data)} bytes)"
    return None


def _verify_unsummed(folder: Path) -> str | None:
    try:
        with zipfile.ZipFile(folder / MODEL) as z:
            bad = z.testzip()
        if bad is not None:
            return f"{MODEL} has a corrupt member {bad}"
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{MODEL} is not a whole zip file ({exc})"
    try:
        with open(folder / NORM, "rb") as f:
            pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - a truncated pickle raises any of several types
        return f"{NORM} is unreadable ({type(exc).__name__})"
    return None


def latest_intact(root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint under `root` that verifies, and the newer ones that did not (with why)."""
    skipped: list[tuple[Path, str]] = []
    for folder in reversed(listed(root)):
        problem = verify(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def set_aside(folder: Path) -> Path:
    """Move a corrupt checkpoint to checkpoints/corrupt/ (never over another), so that a new one of
    the same step cannot replace it."""
    dest_root = folder.parent / CORRUPT
    dest_root.mkdir(exist_ok=True)
    dest, k = dest_root / folder.name, 1
    while dest.exists():
        k += 1
        dest = dest_root / f"{folder.name}-{k}"
    os.replace(folder, dest)
    return dest


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints under `root` (0: keep every one)."""
    if keep <= 0:
        return
    for folder in listed(root)[:-keep]:
        doomed = folder.with_name(f".{folder.name}.del")  # renamed first: a half-deleted folder is never listed
        os.replace(folder, doomed)
        shutil.rmtree(doomed)


def save_checkpoint(root: Path, step: int, model, vecnorm, meta: dict, keep: int = 0) -> Path:
    """Save checkpoints/step_N (see `save_policy`), then keep only the newest `keep` (0: all)."""
    folder = root / f"step_{step:09d}"
    save_policy(folder, model, vecnorm, {**meta, "step": step})
    prune(root, keep)
    return folder


def recover(run: Path) -> None:
    """Finish or undo what a killed process left half done in `run` and `run/checkpoints`: a folder swap
    cut between its two renames gets its previous content back; unfinished temporaries and deletions go."""
    for parent in (run, run / "checkpoints"):
        if not parent.is_dir():
            continue
        for p in parent.iterdir():
            if not p.name.startswith("."):
                continue
            if p.name.endswith(".old") and p.is_dir():
                target = p.with_name(p.name[1:-len(".old")])
                if target.exists():
                    shutil.rmtree(p)  # the swap finished; only the clean-up was cut
                else:
                    os.replace(p, target)
            elif p.name.endswith((".tmp", ".del")) and p.is_dir():
                shutil.rmtree(p)
            elif p.is_file() and p.name.startswith(TRAINING_TEMPORARIES):  # what atomic_write (and older legkit) left
                p.unlink()

