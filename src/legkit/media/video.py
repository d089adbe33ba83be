"""MP4 videos of a policy: one robot where the task resets it, a following camera, and an overlay.

The policy acts in a one-robot LeggedBatch exactly as in evaluation (deterministic, with the saved
observation normalization). Each video frame copies the robot's physics state into a separate
MjData (mj_setState + mj_forward) and renders it offscreen; frames stream into ffmpeg (imageio),
so a long video never sits in memory.

A robot with a depth camera (task.sensors.camera, read as the `camera` observation term) gets an inset in
the top-right corner: the depth image its policy is given at that frame, read from the observation itself
(held at the camera's rate, noise included), not rendered again.
"""

from __future__ import annotations

import math
import os
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.media.render import Camera, CameraConfig, Renderer, robot_extent
from legkit.sim.sensors import CameraConfig as DepthCameraConfig
from legkit.tasks.config import TaskConfig, undisturbed

Actor = Callable[[np.ndarray], np.ndarray]
"""Raw observations (n, obs_dim) -> actions (n, action_dim). An actor with state (a recurrent policy's
legkit.train.policies.PolicyActor) also has `ended(done)`, called with the robots whose episode ended."""


@dataclass(frozen=True)
class VideoSpec:
    """What to render: length, size, frame rate, look."""

    seconds: float = 10.0
    width: int = 1280
    height: int = 720
    fps: int = 30
    quality: str = "high"
    """"high" (multisampled, floor reflections) or "fast" (neither; for clips during training)."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    overlay: bool = True
    """Draw time, commanded and measured velocity in a corner."""
    camera_inset: bool = True
    """Draw the depth image the policy sees in the top-right corner, when the task has a `camera` term."""


MAX_SIDE = 4096
MAX_FPS = 120
MAX_SECONDS = 3600.0


def check_spec(spec: VideoSpec) -> None:
    """Raise a LegkitError naming the bad value and the valid range."""
    for name, value in (("width", spec.width), ("height", spec.height)):
        if not 16 <= value <= MAX_SIDE or value % 2:
            raise LegkitError(f"--{name} must be an even number of pixels from 16 to {MAX_SIDE} "
                              f"(H.264 needs even sizes), got {value}")
    if not 1 <= spec.fps <= MAX_FPS:
        raise LegkitError(f"--fps must be from 1 to {MAX_FPS}, got {spec.fps}")
    if not (0 < spec.seconds <= MAX_SECONDS) or not math.isfinite(spec.seconds):
        raise LegkitError(f"--seconds must be more than 0 and at most {MAX_SECONDS:.0f}, got {spec.seconds}")


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run a tiny policy MLP on one torch thread (several times faster than two on a busy 2-core CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def policy_actor(model, norm) -> Actor:
    """A deterministic SB3 policy (PPO, or RecurrentPPO with its LSTM state per robot) behind its (frozen)
    VecNormalize statistics."""
    from legkit.train.policies import PolicyActor

    return PolicyActor(model, norm, deterministic=True)


def _yaw(quat: np.ndarray) -> float:
    """Heading (rad) of a (w, x, y, z) quaternion."""
    w, x, y, z = quat
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class Runner:
    """One robot of `task` driven by `actor`, reset where the task resets it whenever its episode ends."""

    def __init__(self, task: TaskConfig, actor: Actor, seed: int, camera: CameraConfig, label: str = "",
                 curriculum_stage: int | None = None, seconds: float = 0.0):
        self.batch = LeggedBatch(task, 1, seed=seed, nthread=1)  # as given: callers strip training pushes
        self.seconds = seconds
        """Length of the video (s): with the command, how far the fixed camera expects the robot to walk."""
        curriculum = getattr(self.batch, "curriculum", None)
        if curriculum is not None:  # as in evaluation: the final stage unless told otherwise
            curriculum.set_stage(curriculum.last_stage if curriculum_stage is None else curriculum_stage)
            self.batch.reset(record=False)
        self.actor = actor
        self.label = label
        self.dt = self.batch.dt
        self.steps = 0
        """Control steps taken since the start of the video."""
        self.episodes = 1
        self.camera = Camera(camera, robot_extent(self.batch.model))
        self.depth_camera, self._depth_block = _depth_term(self.batch)
        """The robot's depth camera config and its block of the observation; None, None without a `camera` term."""
        self._vel = deque(maxlen=max(1, int(round(0.5 / self.dt))))  # 0.5 s of forward speeds
        self._obs = self.batch.observe()
        self._restart_camera()

    def _restart_camera(self) -> None:
        s = self.batch.state
        self.camera.reset(s.base_pos[0], _yaw(s.base_quat[0]), travel=float(s.command[0, 0]) * self.seconds)
        self._vel.clear()

    def step(self) -> None:
        """One control step; a fall or the time limit resets the robot (and the camera)."""
        _, terminated, truncated = self.batch.step(self.actor(self._obs))
        self.steps += 1
        self._vel.append(float(self.batch.state.base_lin_vel[0, 0]))
        if terminated[0] or truncated[0]:
            self.batch.reset(record=False)  # a video never moves the curriculum
            ended = getattr(self.actor, "ended", None)
            if ended is not None:  # a recurrent policy starts the new episode from a zero state
                ended(np.ones(1, dtype=bool))
            self.episodes += 1
            self._restart_camera()
        else:
            self.camera.update(self.batch.state.base_pos[0], self.dt)
        self._obs = self.batch.observe()

    def advance_to(self, t: float) -> None:
        """Step until `t` seconds of simulated time have passed since the start."""
        while (self.steps + 0.5) * self.dt <= t:
            self.step()

    @property
    def state(self) -> np.ndarray:
        """The robot's mjSTATE_FULLPHYSICS row."""
        return self.batch.sim.state[0]

    @property
    def mocap(self) -> np.ndarray | None:
        """The robot's mocap body poses (its obstacles), or None."""
        return None if self.batch.sim.mocap is None else self.batch.sim.mocap[0]

    def readout(self) -> dict[str, float]:
        """Commanded and measured (0.5 s mean) forward velocity (m/s), base height (m)."""
        s = self.batch.state
        return {"cmd_vx": float(s.command[0, 0]), "cmd_vy": float(s.command[0, 1]), "cmd_yaw": float(s.command[0, 2]),
                "vx": float(np.mean(self._vel)) if self._vel else 0.0, "height": float(s.base_height[0])}

    def depth_image(self) -> np.ndarray | None:
        """The `camera` term of the observation the policy is given next: (height, width) depths (m, or fractions
        of max_depth if normalized), top row first, left column first as seen from behind the camera; None
        without a camera term."""
        if self._depth_block is None:
            return None
        c = self.depth_camera
        return self._obs[0, self._depth_block].reshape(c.height, c.width).copy()

    def close(self) -> None:
        self.batch.close()


def _depth_term(batch: LeggedBatch) -> tuple[DepthCameraConfig | None, slice | None]:
    """The depth camera config and the observation block of the `camera` term, or (None, None) without one."""
    cfg = batch.task.sensors.camera
    block = next(((start, size) for name, start, size in batch.obs_layout if name == "camera"), None)
    if cfg is None or block is None:
        return None, None
    start, size = block
    if size != cfg.height * cfg.width:
        raise LegkitError(f"the observation's camera term has {size} values, but task.sensors.camera is "
                          f"{cfg.height} x {cfg.width} = {cfg.height * cfg.width} pixels")
    return cfg, slice(start, start + size)


# -- overlay ------------------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _font(size: int):
    """DejaVu Sans Mono (shipped with matplotlib, so present wherever legkit is installed)."""
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSansMono.ttf"), size)


def draw_text(frame: np.ndarray, lines: list[str], corner: str = "top-left", scale: float = 1.0) -> np.ndarray:
    """Draw `lines` on a translucent dark box in a corner of `frame` (H, W, 3) uint8; returns a new array."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    size = max(9, int(round(min(h / 24, w / 40) * scale)))
    font = _font(size)
    img = Image.fromarray(frame).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    pad = max(2, size // 3)
    widths = [draw.textlength(line, font=font) for line in lines]
    box_w, box_h = int(max(widths)) + 2 * pad, len(lines) * (size + pad // 2) + pad + pad // 2
    x0 = pad if corner.endswith("left") else w - box_w - pad
    y0 = pad if corner.startswith("top") else h - box_h - pad
    draw.rectangle([x0, y0, x0 + box_w, y0 + box_h], fill=(0, 0, 0, 140))
    for i, line in enumerate(lines):
        draw.text((x0 + pad, y0 + pad + i * (size + pad // 2)), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


def overlay_lines(t: float, r: dict[str, float], lateral: bool) -> list[str]:
    """Time, commanded and measured velocity as short lines."""
    if lateral:
        return [f"t    {t:5.1f} s", f"cmd  {r['cmd_vx']:+.2f} {r['cmd_vy']:+.2f} m/s {r['cmd_yaw']:+.2f} rad/s",
                f"vel  {r['vx']:+.2f} m/s forward"]
    return [f"t    {t:5.1f} s", f"cmd  {r['cmd_vx']:4.2f} m/s", f"vel  {r['vx']:4.2f} m/s"]


def _has_lateral(task: TaskConfig) -> bool:
    c = task.commands
    return any(lo != 0 or hi != 0 for lo, hi in (c.lin_vel_y, c.ang_vel_yaw))


# -- camera inset -------------------------------------------------------------------------------

INSET_SHARE = 0.25
"""Width of the camera inset as a share of the frame's width (whole frame pixels per depth pixel)."""
INSET_LABEL = "camera (depth)"


HEIGHT_FULL_SCALE = 0.1
"""Height (m) drawn white in the inset of a camera with depth "height" (the floor, 0, is black): a 3-5 cm curb
shows mid-grey, a box or post white."""


def depth_grey(depth: np.ndarray, full_scale: float, rising: bool = False) -> np.ndarray:
    """Depths (h, w) -> grey levels (h, w) uint8: 255 at 0 (near: bright) falling linearly to 0 at `full_scale`
    (max_depth: far, or nothing hit: dark); `rising`: 0 at 0 rising to 255 at `full_scale` (heights: the floor
    dark, what stands up from it bright)."""
    share = np.clip(depth / full_scale, 0.0, 1.0)
    return np.round(255.0 * (share if rising else 1.0 - share)).astype(np.uint8)


def inset_style(cfg: DepthCameraConfig) -> tuple[float, bool, str]:
    """How the inset draws this camera's image: (full scale, rising, label). Depths: bright near, black at max_depth
    (1 for a normalized camera); heights (depth "height"): black at the floor, white at HEIGHT_FULL_SCALE."""
    if cfg.depth == "height":
        return HEIGHT_FULL_SCALE, True, "camera (height)"
    return (1.0 if cfg.normalize else cfg.max_depth), False, INSET_LABEL


@dataclass(frozen=True)
class InsetBox:
    """Where a camera inset's image lies in a frame (pixels): rows y0 to y0 + rows * scale, columns x0 to
    x0 + cols * scale; `border` pixels of frame around it."""

    y0: int
    x0: int
    scale: int
    """Frame pixels per depth pixel, each way (nearest-neighbour upscaling)."""
    rows: int
    cols: int
    border: int

    @property
    def image(self) -> tuple[slice, slice]:
        """(rows, columns) of the frame that the upscaled image fills."""
        return (slice(self.y0, self.y0 + self.rows * self.scale), slice(self.x0, self.x0 + self.cols * self.scale))


def inset_box(height: int, width: int, rows: int, cols: int) -> InsetBox:
    """Where a rows x cols depth image goes in a height x width frame: its top-right corner (the overlay's text
    is top-left), about INSET_SHARE of the width wide and at most half the height tall. A LegkitError if even
    one frame pixel per depth pixel does not fit."""
    scale = max(1, min(int(INSET_SHARE * width / cols + 0.5), (height // 2) // rows))
    border = max(1, width // 640)
    margin = max(2, width // 160)
    edge = 2 * (margin + border)
    if cols + edge > width or rows + edge > height:
        raise LegkitError(f"a {width}x{height} video has no room for the {cols}x{rows} camera inset: make it at least "
                          f"{cols + edge}x{rows + edge} pixels, or leave the inset out (--no-camera-inset)")
    return InsetBox(y0=margin + border, x0=width - margin - border - cols * scale, scale=scale, rows=rows, cols=cols,
                    border=border)


def draw_depth_inset(frame: np.ndarray, depth: np.ndarray, full_scale: float, label: str = INSET_LABEL,
                     rising: bool = False) -> np.ndarray:
    """Draw depth image (rows, cols) into the top-right corner of `frame` (H, W, 3) uint8, upscaled with
    nearest-neighbour, near bright and far dark (depth_grey; `rising`: a height image, high bright), with a thin
    light border and `label` under it on a translucent dark box; returns a new array."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    box = inset_box(h, w, *depth.shape)
    out = frame.copy()
    ys, xs = box.image
    b = box.border
    out[ys.start - b:ys.stop + b, xs.start - b:xs.stop + b] = 230  # the border: a light frame around the image
    grey = depth_grey(depth, full_scale, rising)
    out[ys, xs] = np.repeat(np.repeat(grey, box.scale, axis=0), box.scale, axis=1)[..., None]
    # The label, right-aligned under the image (it may be wider than a small image).
    size = max(9, int(round(min(h / 24, w / 40) * 0.7)))
    font = _font(size)
    img = Image.fromarray(out).convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    pad = max(2, size // 4)
    box_w = int(draw.textlength(label, font=font)) + 2 * pad
    x1, y0 = xs.stop + b, ys.stop + b
    x0 = min(xs.start - b, x1 - box_w)
    draw.rectangle([x0, y0, x1 - 1, y0 + size + 2 * pad], fill=(0, 0, 0, 140))
    draw.text((x0 + pad, y0 + pad), label, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(img, layer).convert("RGB"))


# -- recording and encoding ---------------------------------------------------------------------

def frames(task: TaskConfig, actor: Actor, spec: VideoSpec, seed: int = 0,
           curriculum_stage: int | None = None) -> Iterator[np.ndarray]:
    """Render `spec.seconds` of `actor` on `task`: (height, width, 3) uint8 frames at `spec.fps`."""
    check_spec(spec)
    runner = Runner(task, actor, seed, spec.camera, curriculum_stage=curriculum_stage, seconds=spec.seconds)
    try:
        yield from film(runner, spec)
    finally:
        runner.close()


def film(runner: Runner, spec: VideoSpec) -> Iterator[np.ndarray]:
    """Frames of `runner` at `spec.fps` until `spec.seconds` since its start (it stays open): (height, width, 3)
    uint8, with the overlay and the camera inset that `spec` asks for."""
    lateral = _has_lateral(runner.batch.task)
    inset = spec.camera_inset and runner.depth_camera is not None
    full_scale, rising, label = 1.0, False, INSET_LABEL
    if inset:  # before the first frame: a frame too small for the inset fails now
        inset_box(spec.height, spec.width, runner.depth_camera.height, runner.depth_camera.width)
        full_scale, rising, label = inset_style(runner.depth_camera)
    with Renderer(runner.batch.model, spec.width, spec.height, spec.quality) as renderer, one_torch_thread():
        for i in range(int(round(spec.seconds * spec.fps))):
            t = i / spec.fps
            runner.advance_to(t)
            renderer.set_state(runner.state, runner.mocap)
            frame = renderer.render(runner.camera.cam)
            if spec.overlay:
                frame = draw_text(frame, overlay_lines(t, runner.readout(), lateral))
            if inset:
                frame = draw_depth_inset(frame, runner.depth_image(), full_scale, label, rising)
            yield frame


def write_mp4(path: Path, frames_: Iterable[np.ndarray], fps: int, quality: float = 5.0) -> int:
    """Encode frames to an H.264 MP4 at `path` (written beside it, then renamed); returns the frame count."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    n = 0
    try:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    quality=quality, macro_block_size=2, ffmpeg_log_level="error",
                                    output_params=["-movflags", "+faststart"])
        try:
            for frame in frames_:
                writer.append_data(frame)
                n += 1
        finally:
            writer.close()
        if n == 0:
            raise LegkitError(f"no frames to write to '{path}'")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def render_video(task: TaskConfig, actor: Actor, spec: VideoSpec, out: Path, seed: int = 0) -> int:
    """Render and encode a video of `actor` on `task` to `out`; returns the number of frames."""
    return write_mp4(out, frames(task, actor, spec, seed), spec.fps)


def video_of_policy(policy, spec: VideoSpec, out: Path, sets: list[str] | None = None, seed: int = 0) -> int:
    """`legkit video`: render a saved policy (a legkit.train.runs.Policy) on its own task to `out`."""
    from legkit.evaluate.rollout import load_policy_for, load_run_config

    from legkit.media.render import gl_backend

    check_spec(spec)
    gl_backend()  # no OpenGL: say so before loading anything
    cfg = load_run_config(policy, sets)
    actor = policy_actor(*load_policy_for(policy, cfg))
    return render_video(cfg.task, actor, spec, out, seed)


# -- clips during training ----------------------------------------------------------------------

@dataclass
class TrainingClips:
    """The clip renderer that legkit.train.video_callback.VideoCallback calls during training.

    Renders the policy being trained (deterministic, current normalization) in "fast" quality and
    returns a few small frames for TensorBoard.
    """

    task: TaskConfig
    spec: VideoSpec
    seed: int = 0
    preview_width: int = 240
    """Width of the TensorBoard preview frames (their height keeps the aspect ratio)."""
    preview_fps: int = 10

    @classmethod
    def for_run(cls, cfg) -> "TrainingClips":
        """The clips a run's config (legkit.train.config.Config) asks for: run.video_* at 25 fps, fast quality."""
        r = cfg.run
        spec = VideoSpec(seconds=r.video_seconds, width=r.video_width, height=r.video_height, fps=25, quality="fast")
        return cls(cfg.task, spec, seed=r.seed)

    def check(self) -> None:
        """Fail now, before training, if clips cannot be rendered (no OpenGL, bad size)."""
        from legkit.media.render import gl_backend

        check_spec(self.spec)
        gl_backend()

    def __call__(self, model, vecnorm, path: Path) -> np.ndarray:
        """Write an MP4 of the current policy to `path`; return preview frames (T, h, w, 3) uint8."""
        step = max(1, int(round(self.spec.fps / self.preview_fps)))
        stride = max(1, self.spec.width // self.preview_width)
        preview = []

        def tee(it: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for i, frame in enumerate(it):
                if i % step == 0:
                    preview.append(frame[::stride, ::stride])
                yield frame

        # The training env's current curriculum stage, so that the clip shows what the policy practises now.
        curriculum = getattr(getattr(vecnorm.venv, "batch", None), "curriculum", None)
        stage = curriculum.stage if curriculum is not None else None
        clip = frames(undisturbed(self.task), policy_actor(model, vecnorm), self.spec, self.seed,
                      curriculum_stage=stage)
        write_mp4(path, tee(clip), self.spec.fps)
        return np.stack(preview)
