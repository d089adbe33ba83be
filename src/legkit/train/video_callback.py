"""Clips of the policy while it trains: every `every` steps an MP4 in RUN/videos/, optionally in TensorBoard.

Rendering lives in legkit.media, a room below train: this callback only schedules, names files
and logs, and gets the renderer passed in (the `legkit` command passes
legkit.media.video.TrainingClips). Anything with the ClipRenderer shape works.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Protocol

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

from legkit.train.wandb_log import log_clip


class ClipRenderer(Protocol):
    preview_fps: int
    """Frame rate of the preview frames that __call__ returns."""

    def check(self) -> None:
        """Raise a LegkitError now if clips cannot be rendered (no OpenGL, bad size)."""

    def __call__(self, model, vecnorm, path: Path) -> np.ndarray:
        """Write an MP4 of the current policy to `path`; return preview frames (T, H, W, 3) uint8."""


def clip_path(folder: Path, step: int) -> Path:
    """videos/step_NNNNNNNNN.mp4, named like the checkpoints."""
    return folder / f"step_{step:09d}.mp4"


class VideoCallback(BaseCallback):
    """Every `every` steps, render a clip of the current policy to `folder`/step_N.mp4.

    With `tensorboard`, the preview frames go to TensorBoard as an animated GIF under
    `video/policy` (TensorBoard's image panel plays it). The time spent is logged as
    perf/video_seconds so that its cost is visible next to perf/steps_per_second. A run that logs to
    wandb also gets each MP4 there, as a wandb Video under `video/policy`.
    """

    def __init__(self, folder: Path, every: int, render: ClipRenderer, tensorboard: bool = True):
        super().__init__()
        self.folder = folder
        self.every = every
        self.render = render
        self.tensorboard = tensorboard
        self.seconds = 0.0
        """Wall time spent rendering so far (s)."""
        self.clips: list[Path] = []
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            step = self.num_timesteps
            t0 = time.perf_counter()
            path = clip_path(self.folder, step)
            preview = self.render(self.model, self.model.get_vec_normalize_env(), path)
            if self.tensorboard and len(preview):
                self._log_gif(preview, step)
            log_clip(self.model.logger, path, step)  # the MP4 itself, when the run logs to wandb
            self.clips.append(path)
            self.seconds += time.perf_counter() - t0
            self.logger.record("perf/video_seconds", self.seconds)
            self._next = (step // self.every + 1) * self.every
        return True

    def _log_gif(self, frames: np.ndarray, step: int) -> None:
        """Write `frames` as an animated-GIF image summary to the run's TensorBoard file."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = next((f.writer for f in self.model.logger.output_formats if isinstance(f, TensorBoardOutputFormat)),
                      None)
        if writer is None:
            return
        images = [Image.fromarray(f).quantize(colors=128, method=Image.Quantize.MEDIANCUT) for f in frames]
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / self.render.preview_fps),
                       loop=0)
        h, w = frames.shape[1:3]
        image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=buf.getvalue())
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag="video/policy", image=image)]), step)
        writer.flush()
