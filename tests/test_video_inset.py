"""The camera inset of `legkit video`: the depth image the policy is given, in the top-right corner of each frame.

Real renders (Mesa, as in test_media.py), kept tiny: 160x120, "fast" quality, a few frames of one robot. The
PiDog stands (zero action: its home pose) in pidog-run's arena, with its obstacles placed by hand.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from legkit import LegkitError
from legkit.cli import _video_spec, build_parser, main
from legkit.media.render import CameraConfig
from legkit.media.video import INSET_SHARE, Runner, VideoSpec, film, frames, inset_box
from legkit.sim.arena import PARK
from legkit.tasks import get_task

SPEC = VideoSpec(seconds=0.3, width=160, height=120, fps=10, quality="fast")
"""Frames at 0, 0.1 and 0.2 s: the last comes 10 control steps after the obstacles were placed, so the camera
(10 Hz, every 5 steps) has read them twice."""


class Recorder:
    """A zero actor that keeps every observation it is given."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim
        self.seen: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.seen.append(obs.copy())
        return np.zeros((len(obs), self.action_dim))


def place_box(runner: Runner, ahead: float | None, left: float = 0.0) -> None:
    """Park every obstacle; with `ahead`, stand the tallest box with its near face `ahead` m in front of the base
    and its centre `left` m to the left of the robot's heading, square to it."""
    batch = runner.batch
    a = batch.arena
    m = len(a.mocap_ids)
    pos = np.tile(np.asarray(PARK, dtype=float), (1, m, 1))
    quat = np.tile([1.0, 0.0, 0.0, 0.0], (1, m, 1))
    if ahead is not None:
        boxes = np.flatnonzero(a.kinds == "box")
        box = int(boxes[np.argmax(a.half_sizes[boxes, 2])])
        base, q = batch.state.base_pos[0], batch.state.base_quat[0]
        yaw = np.arctan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] ** 2 + q[3] ** 2))
        x = ahead + a.half_sizes[box, 0]
        c, s = np.cos(yaw), np.sin(yaw)
        pos[0, box] = [base[0] + x * c - left * s, base[1] + x * s + left * c, a.half_sizes[box, 2]]
        quat[0, box] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    a.write(batch.sim.mocap, pos, quat, env_ids=np.array([0]))


def shoot(ahead: float | None, left: float = 0.0, spec: VideoSpec = SPEC, noise: float = 0.0, depth: str = "range"):
    """The last frame of a short pidog-run video with the box placed so, and the depth image (rows, cols) of the
    observation the policy was given next (the `camera` term, found by name in the layout)."""
    task = get_task("pidog-run")
    task = replace(task, sensors=replace(task.sensors, camera=replace(task.sensors.camera, depth=depth)))
    if noise:
        task = replace(task, observation_noise={"camera": noise})
    actor = Recorder(12)
    runner = Runner(task, actor, seed=0, camera=CameraConfig())
    try:
        place_box(runner, ahead, left)
        shots = list(film(runner, spec))
        runner.step()  # the policy acts on the observation that the last frame showed
        _, start, size = next(t for t in runner.batch.obs_layout if t[0] == "camera")
        c = task.sensors.camera
        assert size == c.height * c.width
        depth = actor.seen[-1][0, start:start + size].reshape(c.height, c.width)
        held = runner.batch.state.camera[0].reshape(c.height, c.width).copy()
    finally:
        runner.close()
    return shots[-1], depth, held


def inset(frame: np.ndarray) -> np.ndarray:
    """The inset's image region of a frame, (rows * scale, cols * scale) grey levels (int)."""
    c = get_task("pidog-run").sensors.camera
    ys, xs = inset_box(*frame.shape[:2], c.height, c.width).image
    region = frame[ys, xs].astype(int)
    assert (region == region[..., :1]).all()  # grey
    return region[..., 0]


def by_hand(depth: np.ndarray, scale: int, max_depth: float = 3.0) -> np.ndarray:
    """Near = bright: 255 at 0 m, 0 at max_depth and beyond; each depth pixel a scale x scale block."""
    grey = np.round(255 * (1 - np.clip(depth, 0, max_depth) / max_depth))
    return np.kron(grey, np.ones((scale, scale)))


@pytest.fixture(scope="module")
def clear():
    return shoot(None)


@pytest.fixture(scope="module")
def ahead():
    return shoot(0.15, noise=0.05)


def test_the_inset_sits_top_right_about_a_quarter_of_the_width_clear_of_the_overlay():
    box = inset_box(120, 160, 12, 16)
    ys, xs = box.image
    assert xs.stop <= 160 - 2 and ys.start >= 2  # inside the frame, off its edges
    assert xs.start > 100 and ys.stop < 60  # the top-right corner; the overlay's text is top-left
    assert abs((xs.stop - xs.start) / 160 - INSET_SHARE) < 0.06
    big = inset_box(720, 1280, 12, 16)
    assert (big.image[1].stop - big.image[1].start, big.image[0].stop - big.image[0].start) == (320, 240)
    with pytest.raises(LegkitError, match="no room for the 16x12 camera inset.*--no-camera-inset"):
        inset_box(16, 16, 12, 16)


def test_the_inset_is_the_depth_image_the_policy_was_given(clear, ahead):
    frame_clear, depth_clear, _ = clear
    frame_box, depth_box, held = ahead
    scale = inset_box(120, 160, 12, 16).scale
    # Pixel for pixel, the observation the policy got (noise included), near bright and far dark.
    np.testing.assert_allclose(inset(frame_clear), by_hand(depth_clear, scale), atol=1)
    np.testing.assert_allclose(inset(frame_box), by_hand(depth_box, scale), atol=1)
    assert not np.allclose(depth_box, held)  # the noise is the observation's, not the sensor's held value
    # The box fills the middle of the view, close: the inset's centre is bright there and dark without it.
    assert depth_box[4:8, 6:10].max() < 0.5 and depth_clear[4:8, 6:10].min() > 1.0
    centre = np.s_[4 * scale:8 * scale, 6 * scale:10 * scale]
    assert inset(frame_box)[centre].mean() > 180 > 120 > inset(frame_clear)[centre].mean()


def test_an_obstacle_on_the_left_shows_on_the_left_and_the_floor_at_the_bottom(clear):
    frame_clear, depth_clear, _ = clear
    frame_left, depth_left, _ = shoot(0.3, left=0.2)
    c = get_task("pidog-run").sensors.camera
    # The sensor's convention (sim/sensors.py): column 0 looks left (+y), row 0 up. The box at the robot's left
    # came nearer in the left columns only.
    nearer = depth_left < depth_clear - 0.3
    assert nearer[:, : c.width // 2].sum() >= 4 and not nearer[:, c.width // 2 + 2:].any()
    # The inset shows it on its left: the pixels that brightened lie in its left half.
    brighter = inset(frame_left) - inset(frame_clear) > 40
    cols = np.nonzero(brighter)[1]
    half = inset(frame_left).shape[1] / 2
    assert len(cols) > 0 and cols.max() < half + 2 * inset_box(120, 160, 12, 16).scale
    assert cols.mean() < half
    # Upright: the floor just ahead (bottom rows) is bright, what lies beyond max_depth (top rows) dark.
    grey = inset(frame_clear)
    assert grey[-3:].mean() > 150 > 40 > grey[:3].mean()


def test_a_height_camera_shows_the_floor_dark_and_what_stands_on_it_bright():
    frame, height, _ = shoot(0.15, depth="height")
    scale = inset_box(120, 160, 12, 16).scale
    grey = np.round(255 * np.clip(height, 0, 0.1) / 0.1)  # 0 m (the floor, or nothing) black, 0.1 m white
    np.testing.assert_allclose(inset(frame), np.kron(grey, np.ones((scale, scale))), atol=1)
    # the box (0.1 m tall or more) fills the middle of the view; without it the floor ahead reads 0
    frame_clear, clear_height, _ = shoot(None, depth="height")
    assert height[4:8, 6:10].min() > 0.08 and np.abs(clear_height[-4:]).max() < 0.01
    centre = np.s_[4 * scale:8 * scale, 6 * scale:10 * scale]
    assert inset(frame)[centre].min() > 200 > 5 > inset(frame_clear)[-4 * scale:].max()


def test_a_task_without_a_camera_renders_as_before():
    task = get_task("go2-walk")
    spec = replace(SPEC, seconds=0.2)
    zero = Recorder(12)
    with_flag = np.stack(list(frames(task, zero, spec)))
    without = np.stack(list(frames(task, zero, replace(spec, camera_inset=False))))
    assert with_flag.shape == (2, 120, 160, 3)
    assert np.array_equal(with_flag, without)
    runner = Runner(task, zero, seed=0, camera=CameraConfig())
    try:
        assert runner.depth_image() is None and runner.depth_camera is None
    finally:
        runner.close()


def test_no_camera_inset_flag_turns_the_inset_off(clear, tmp_path):
    parser = build_parser()
    on = _video_spec(parser.parse_args(["video", "pretrained:go2-walk"]))
    off = _video_spec(parser.parse_args(["video", "pretrained:go2-walk", "--no-camera-inset"]))
    assert on.camera_inset and not off.camera_inset
    # With the inset off the PiDog's frame is the plain render: the corner differs (the image, and its label
    # under it, wider than a tiny image), the rest is the same.
    frame_on, _, _ = clear
    frame_off, _, _ = shoot(None, spec=replace(SPEC, camera_inset=False))
    assert not np.array_equal(frame_on[:60, 100:], frame_off[:60, 100:])
    assert np.array_equal(frame_on[60:], frame_off[60:]) and np.array_equal(frame_on[:, :70], frame_off[:, :70])
    # The command takes it (and a policy without a camera renders with or without it).
    out = tmp_path / "plain.mp4"
    assert main(["video", "pretrained:go2-walk", "--seconds", "0.2", "--fps", "5", "--width", "160", "--height", "120",
                 "--no-camera-inset", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
