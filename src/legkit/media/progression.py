"""One MP4 of several checkpoints of a run in a grid: the same scene, start and command for each.

Every panel is one robot starting from the same reset (same seed, so the same pose, heading and
command), seen by the same camera rig relative to its own robot, and labelled with the step
count of its checkpoint. Panels advance in lock step, so the grid shows at each instant what
the policy could do after that many steps of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from legkit import LegkitError
from legkit.evaluate.rollout import load_policy_for, load_run_config
from legkit.media.render import Renderer
from legkit.media.video import (Runner, VideoSpec, check_spec, draw_text, one_torch_thread, policy_actor,
                                write_mp4)
from legkit.train.runs import Policy, checkpoints, find_policy

MAX_PANELS = 12


@dataclass(frozen=True)
class Snapshot:
    """One panel: a policy and the training step it was saved at."""

    policy: Policy
    step: int


def _step_of(policy: Policy) -> int:
    step = policy.step
    if step is None:
        raise LegkitError(f"'{policy.folder}' has no step count in its meta.json; cannot label it")
    return int(step)


def select_snapshots(run: Path, wanted: list[str] | None = None, count: int = 6) -> list[Snapshot]:
    """The checkpoints to show, oldest first: `wanted` (step numbers or 'final'), or `count` spread evenly
    from the first checkpoint to the final model (always both ends)."""
    if wanted:
        snaps = [Snapshot(p, _step_of(p)) for p in (find_policy(run, None if w == "final" else w) for w in wanted)]
    else:
        if count < 2:
            raise LegkitError(f"--count must be at least 2, got {count}")
        found = [find_policy(run, c.name) for c in checkpoints(run)]
        try:
            found.append(find_policy(run, None))  # the final model
        except LegkitError:
            pass  # a run still training has checkpoints but no final model yet
        by_step: dict[int, Policy] = {}
        for p in found:
            by_step.setdefault(_step_of(p), p)  # the final model repeats the last checkpoint's step
        steps = sorted(by_step)
        if len(steps) > count:
            steps = spread(steps, count)
        snaps = [Snapshot(by_step[s], s) for s in steps]
    snaps.sort(key=lambda s: s.step)
    if len(snaps) < 2:
        raise LegkitError(f"run '{run}' has {len(snaps)} saved polic{'y' if len(snaps) == 1 else 'ies'}; a progression "
                          "needs at least 2 (set run.checkpoint_every so that training writes checkpoints)")
    if len(snaps) > MAX_PANELS:
        raise LegkitError(f"at most {MAX_PANELS} checkpoints fit in one video, got {len(snaps)}")
    return snaps


def spread(steps: list[int], count: int) -> list[int]:
    """`count` of the sorted `steps`: the first, the last, and those nearest to evenly spaced steps between."""
    first, last = steps[0], steps[-1]
    chosen = {first, last}
    for i in range(1, count - 1):
        target = first + i * (last - first) / (count - 1)
        free = [s for s in steps if s not in chosen]
        chosen.add(min(free, key=lambda s: abs(s - target)))
    return sorted(chosen)


def grid_shape(n: int, width: int, height: int) -> tuple[int, int]:
    """(rows, cols) for n panels in a width x height frame, keeping panels close to the frame's shape."""
    best = None
    for cols in range(n, 0, -1):  # on a tie, more columns: side by side before stacked
        rows = math.ceil(n / cols)
        if rows * cols - n >= cols:
            continue  # a whole empty row
        panel_aspect = (width / cols) / (height / rows)
        score = abs(math.log(panel_aspect / (width / height))) + 0.1 * (rows * cols - n)
        if best is None or score < best[0] - 1e-9:
            best = (score, rows, cols)
    return best[1], best[2]


@dataclass(frozen=True)
class Panel:
    """One panel of a grid video: a task, what drives its robot, and the label drawn on it."""

    task: object
    """The TaskConfig the panel's robot runs (every panel must share one scene: robot and ground)."""
    actor: object
    """obs -> action (legkit.media.video.Actor)."""
    label: str


def grid_frames(panels: list[Panel], spec: VideoSpec, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames (height, width, 3) of `panels` side by side, each starting from the same reset (`seed`) and
    advancing in lock step, labelled with its name and speed."""
    check_spec(spec)
    rows, cols = grid_shape(len(panels), spec.width, spec.height)
    pw, ph = (spec.width // cols) // 2 * 2, (spec.height // rows) // 2 * 2
    if pw < 16 or ph < 16:
        raise LegkitError(f"{len(panels)} panels of a {spec.width}x{spec.height} video are too small; "
                          "raise --width/--height or show fewer panels")
    runners = []
    try:
        for panel in panels:
            runners.append(Runner(panel.task, panel.actor, seed, spec.camera, label=panel.label, seconds=spec.seconds))
        with Renderer(runners[0].batch.model, pw, ph, spec.quality) as renderer, one_torch_thread():
            frame = np.full((spec.height, spec.width, 3), 24, dtype=np.uint8)
            for i in range(int(round(spec.seconds * spec.fps))):
                t = i / spec.fps
                for k, runner in enumerate(runners):
                    runner.advance_to(t)
                    renderer.set_state(runner.state, runner.mocap)
                    image = renderer.render(runner.camera.cam)
                    r = runner.readout()
                    lines = [runner.label, f"vel {r['vx']:4.2f} m/s"]
                    if runner.episodes > 1:
                        lines.append(f"reset x{runner.episodes - 1}")
                    image = draw_text(image, lines, scale=1.3)
                    y, x = (k // cols) * ph, (k % cols) * pw
                    frame[y:y + ph, x:x + pw] = image
                    frame[y:y + ph, x + pw - 1:x + pw] = 24  # thin separators between panels
                    frame[y + ph - 1:y + ph, x:x + pw] = 24
                yield draw_text(frame, [f"t {t:4.1f} s  cmd {runners[0].readout()['cmd_vx']:.2f} m/s"],
                                corner="bottom-right")
    finally:
        for runner in runners:
            runner.close()


def progression_frames(snaps: list[Snapshot], spec: VideoSpec, sets: list[str] | None = None,
                       seed: int = 0) -> Iterator[np.ndarray]:
    """Frames (height, width, 3) of all snapshots side by side, each panel labelled with its step."""
    check_spec(spec)
    cfg = load_run_config(snaps[0].policy, sets)
    panels = [Panel(cfg.task, policy_actor(*load_policy_for(snap.policy, cfg)), f"step {snap.step:,}")
              for snap in snaps]
    return grid_frames(panels, spec, seed)


def render_progression(snaps: list[Snapshot], spec: VideoSpec, out: Path, sets: list[str] | None = None,
                       seed: int = 0) -> int:
    """Render the grid video of `snaps` to `out`; returns the number of frames."""
    return write_mp4(out, progression_frames(snaps, spec, sets, seed), spec.fps)
