"""Videos, training clips, progression, plots, the HTML report and the viewer, checked by measurement.

Everything is real: MuJoCo renders offscreen through Mesa (EGL, or OSMesa), ffmpeg encodes MP4s
that are read back with imageio, and the report is opened in headless Chromium. Renders are kept
tiny (160x120, 1-2 s) because the test machine is a shared 2-core CPU.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from legkit.cli import main

LEGKIT = Path(sys.executable).with_name("legkit")
CHROMIUM = "/usr/bin/chromium"
TINY = ["--width", "160", "--height", "120"]


def read_frames(path: Path) -> np.ndarray:
    """Every frame of an MP4 as (T, H, W, 3) uint8 (imageio + ffmpeg)."""
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return np.stack([frame for frame in reader])


def run_legkit(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """The installed command in a fresh process; `env` (default: this process's) is its whole environment."""
    env = {**(os.environ if env is None else env), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([str(LEGKIT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("legkit: error: "), lines[0]
    return lines[0]


def no_egl_env(tmp_path: Path) -> dict:
    """An environment whose EGL finds no driver: glvnd reads vendor files from an empty folder."""
    empty = tmp_path / "no-egl-vendors"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return {**env, "__EGL_VENDOR_LIBRARY_DIRS": str(empty)}


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> Path:
    """A tiny training run with checkpoints every 1024 steps and a 0.5 s clip every 2048 steps."""
    runs = tmp_path_factory.mktemp("media-runs")
    assert main(["train", "go2-walk", "--steps", "4096", "--envs", "16", "--set", "ppo.n_steps=64",
                 "--set", "ppo.batch_size=256", "--set", "run.checkpoint_every=1024", "--set", "run.eval_episodes=1",
                 "--set", "run.video_every=2048", "--set", "run.video_seconds=0.5", "--set", "run.video_width=160",
                 "--set", "run.video_height=120", "--no-progress", "--runs", str(runs)]) == 0
    (run,) = list(runs.iterdir())
    return run


# -- legkit video: the shipped policy walks, measured in pixels ---------------------------------------

def test_video_fixed_camera_shows_the_robot_walking_forward(tmp_path):
    out = tmp_path / "fixed.mp4"
    assert main(["video", "pretrained:go2-walk", "--seconds", "2", "--fps", "15", *TINY, "--camera", "fixed",
                 "--no-overlay", "--out", str(out)]) == 0
    frames = read_frames(out).astype(np.int16)
    assert frames.shape == (30, 120, 160, 3)

    # Consecutive frames differ (the legs move even where the robot covers the same pixels).
    diffs = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (diffs > 0.05).all(), diffs

    # The still camera sees a still floor, so the per-pixel median over time is the empty scene and the
    # robot is what differs from it. A robot standing still would be part of the median: no mask, no motion.
    background = np.median(frames, axis=0)
    mask = np.abs(frames - background).max(axis=3) > 40
    counts = mask.sum(axis=(1, 2))
    assert (counts >= 15).all(), f"robot pixels per frame: {counts}"
    xs = []
    for m in mask:
        ys, x = np.nonzero(m)
        # In view: the robot's pixels never touch the frame's border.
        assert x.min() > 0 and x.max() < 159 and ys.min() > 0 and ys.max() < 119
        xs.append(x.mean())
    xs = np.array(xs)
    # Forward progress: the side camera sees forward as left to right; the base moves steadily right.
    assert xs[-5:].mean() - xs[:5].mean() > 15, xs
    assert np.polyfit(np.arange(len(xs)), xs, 1)[0] > 0.5, xs


def test_video_follow_camera_keeps_the_robot_in_view_and_draws_the_overlay(tmp_path):
    out = tmp_path / "follow.mp4"
    r = run_legkit("video", "pretrained:go2-walk", "--seconds", "2", "--fps", "15", *TINY, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "30 frames, 160x120 at 15 fps" in r.stdout
    frames = read_frames(out).astype(np.int16)
    assert frames.shape == (30, 120, 160, 3)
    assert (np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)) > 0.05).all()
    # The Go2's trunk and thighs are light grey, far brighter than the floor; outside the overlay corner
    # they are the robot. The follow camera keeps them near the middle of every frame.
    body = frames.min(axis=3) > 150
    body[:, :45, :90] = False  # the overlay box
    for i, m in enumerate(body):
        ys, xs = np.nonzero(m)
        assert len(xs) >= 10, f"frame {i}: robot not visible"
        assert 30 < xs.mean() < 130 and 25 < ys.mean() < 100, (i, xs.mean(), ys.mean())
    # The overlay: white text on a dark box in the top-left corner of every frame.
    corner = frames[:, 2:40, 2:80]
    assert ((corner.min(axis=3) > 200).sum(axis=(1, 2)) > 20).all()
    assert (corner.mean(axis=(1, 2, 3)) < frames[:, 60:, :].mean(axis=(1, 2, 3))).all()


def test_overlay_changes_only_its_corner():
    from legkit.evaluate.rollout import load_normalizer, load_run_config
    from legkit.media.video import VideoSpec, frames, policy_actor
    from legkit.train.runs import find_policy, resolve_run
    from legkit.train.trainer import load_model

    policy = find_policy(resolve_run("pretrained:go2-walk"))
    task = load_run_config(policy).task
    actor = policy_actor(load_model(policy.model), load_normalizer(policy))
    spec = VideoSpec(seconds=0.2, width=160, height=120, fps=10)
    with_text = np.stack(list(frames(task, actor, spec)))
    plain = np.stack(list(frames(task, actor, VideoSpec(seconds=0.2, width=160, height=120, fps=10, overlay=False))))
    assert with_text.shape == plain.shape == (2, 120, 160, 3)
    assert np.array_equal(with_text[:, 60:], plain[:, 60:])  # the rollout and render are deterministic
    assert not np.array_equal(with_text[:, :40, :80], plain[:, :40, :80])


@pytest.mark.parametrize("args, words", [
    (["--width", "101"], ["--width", "even"]),
    (["--height", "8"], ["--height", "16"]),
    (["--fps", "0"], ["--fps", "1 to 120"]),
    (["--seconds", "0"], ["--seconds", "more than 0"]),
    (["--out", "clip.avi"], ["--out", ".mp4"]),
    (["--checkpoint", "5"], ["no checkpoint", "5"]),
])
def test_video_bad_input_is_one_line(args, words, capfd):
    assert main(["video", "pretrained:go2-walk", *args]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert all(w in line for w in words), line


def test_video_of_a_missing_run_is_one_line(tmp_path, capfd):
    assert main(["video", str(tmp_path / "nope")]) == 2
    assert "does not exist" in one_error_line(capfd.readouterr().err)


# -- no OpenGL ------------------------------------------------------------------------------------

def test_no_gl_is_one_line_that_says_how_to_get_it(tmp_path):
    out = tmp_path / "never.mp4"
    r = run_legkit("video", "pretrained:go2-walk", "--seconds", "1", *TINY, "--out", str(out),
                   env={**no_egl_env(tmp_path), "MUJOCO_GL": "egl"})
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "no OpenGL" in line and "MUJOCO_GL" in line and "apt-get install" in line and "libegl1" in line
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))


def test_training_with_clips_and_no_gl_stops_before_training(tmp_path):
    r = run_legkit("train", "go2-walk", "--steps", "4096", "--envs", "8", "--set", "ppo.n_steps=64",
                   "--set", "ppo.batch_size=256", "--set", "run.video_every=1024", "--runs", str(tmp_path / "runs"),
                   "--no-progress", env={**no_egl_env(tmp_path), "MUJOCO_GL": "egl"})
    assert r.returncode == 2
    assert "no OpenGL" in one_error_line(r.stderr) and "trained" not in r.stdout
    assert not [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]  # nothing written, not even config.yaml


def test_without_egl_rendering_falls_back_to_osmesa(tmp_path):
    out = tmp_path / "osmesa.mp4"
    r = run_legkit("video", "pretrained:go2-walk", "--seconds", "0.5", "--fps", "10", *TINY, "--out", str(out),
                   env=no_egl_env(tmp_path))
    assert r.returncode == 0, r.stderr
    frames = read_frames(out)
    assert frames.shape == (5, 120, 160, 3) and frames.std() > 5


def test_bad_mujoco_gl_is_one_line(capfd, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "bogus")
    assert main(["list"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert "MUJOCO_GL=bogus" in line and "egl" in line


# -- clips during training ------------------------------------------------------------------------

def test_training_writes_clips_and_tensorboard_previews(clip_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clips = sorted(p.name for p in (clip_run / "videos").iterdir())
    assert clips == ["step_000002048.mp4", "step_000004096.mp4"]
    for name in clips:
        frames = read_frames(clip_run / "videos" / name)
        assert frames.shape[1:] == (120, 160, 3) and 12 <= len(frames) <= 13  # 0.5 s at 25 fps
        assert frames.std() > 5
    acc = EventAccumulator(glob.glob(str(clip_run / "tb" / "*"))[0], size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    previews = acc.Images("video/policy")
    assert [p.step for p in previews] == [2048, 4096]
    assert all(p.encoded_image_string[:6] == b"GIF89a" for p in previews)
    spent = acc.Scalars("perf/video_seconds")
    assert spent and spent[-1].value > 0


def test_no_clips_when_the_interval_is_past_the_run(tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--steps", "1024", "--envs", "8", "--set", "ppo.n_steps=128",
                 "--set", "ppo.batch_size=256", "--set", "run.eval_episodes=0", "--set", "run.checkpoint_every=0",
                 "--no-progress", "--runs", str(runs)]) == 0  # the default run.video_every is far beyond 1024
    (run,) = list(runs.iterdir())
    assert (run / "model.zip").exists() and not (run / "videos").exists()


@pytest.mark.parametrize("key, value, words", [
    ("run.video_width", "101", ["run.video_width", "even"]),
    ("run.video_every", "-1", ["run.video_every", ">= 0"]),
    ("run.video_seconds", "0", ["run.video_seconds", "> 0"]),
])
def test_bad_video_config_is_one_line(key, value, words, tmp_path, capfd):
    assert main(["train", "go2-walk", "--set", f"{key}={value}", "--runs", str(tmp_path)]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert all(w in line for w in words), line


def test_train_without_a_renderer_says_what_to_pass(tmp_path):
    from legkit import LegkitError
    from legkit.train.config import build_config
    from legkit.train.trainer import train

    cfg = build_config("go2-walk", sets=["run.total_steps=2048", "run.video_every=1024"])
    with pytest.raises(LegkitError, match="render_clip=legkit.media.video.TrainingClips"):
        train(cfg, tmp_path)


# -- progression ----------------------------------------------------------------------------------

def test_progression_shows_each_checkpoint_in_its_own_labelled_panel(clip_run, tmp_path, capsys):
    out = tmp_path / "progression.mp4"
    assert main(["progression", str(clip_run), "--count", "3", "--seconds", "1", "--fps", "10",
                 "--width", "192", "--height", "108", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "steps 1,024, 2,048, 4,096" in printed and f"wrote {out}" in printed
    frames = read_frames(out).astype(np.int16)
    assert frames.shape == (10, 108, 192, 3)
    # 3 panels in a 16:9 frame: a 2x2 grid, the fourth cell empty (the frame's dark background).
    ph, pw = 54, 96
    panels = [frames[:, r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] for r in range(2) for c in range(2)]
    for k, panel in enumerate(panels[:3]):
        assert panel.std() > 10, f"panel {k} is blank"
        # Each label: white text on a dark box in the panel's top-left corner.
        assert ((panel[:, 1:12, 1:60].min(axis=3) > 190).sum(axis=(1, 2)) > 5).all(), f"panel {k} has no label"
        assert np.abs(np.diff(panel, axis=0)).mean() > 0.05, f"panel {k} does not move"
    empty = panels[3][:, 4:30, 8:88]  # the empty cell, away from its edges and the time readout below
    assert empty.std() < 3 and empty.mean() < 40
    # Different checkpoints act differently from the same start.
    assert np.abs(panels[0][-1] - panels[2][-1]).mean() > 1


def test_progression_picks_evenly_spread_checkpoints():
    from legkit.media.progression import grid_shape, spread

    assert spread([1, 2, 3, 4, 5, 6, 7, 8, 9], 3) == [1, 5, 9]
    assert spread([500, 1000, 1500, 2000, 2500, 3000, 3004], 6) == [500, 1000, 1500, 2000, 2500, 3004]
    assert grid_shape(2, 1280, 720) == (1, 2)
    assert grid_shape(4, 1280, 720) == (2, 2)
    assert grid_shape(6, 1280, 720) == (2, 3)


def test_progression_needs_two_policies(capfd):
    assert main(["progression", "pretrained:go2-walk"]) == 2
    assert "at least 2" in one_error_line(capfd.readouterr().err)


# -- plots ----------------------------------------------------------------------------------------

def test_plots_of_a_run(clip_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "plots"
    assert main(["plots", str(clip_run), "--eval-episodes", "1", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["evaluation.png", "reward_terms.png", "training.png"]  # go2-walk has no curriculum
    for name in names:
        img = np.asarray(Image.open(out / name).convert("RGB"))
        assert img.shape[0] > 200 and img.shape[1] > 600 and img.std() > 10
    assert "evaluating" in capsys.readouterr().out


def test_curriculum_plot_from_tensorboard_scalars(tmp_path):
    from PIL import Image

    from legkit.media.plots import RunData, plot_curriculum

    steps = np.array([0, 1000, 2000, 3000])
    runs = [RunData(name=f"run{i}", folder=tmp_path, config={}, meta={}, episodes=None, terms=[],
                    scalars={"curriculum/stage": (steps, np.array([0, 0, 1, 2]) + i),
                             "curriculum/target_height": (steps, np.array([0.3, 0.3, 0.4, 0.5]))},
                    eval=None, validation=None) for i in range(2)]
    path = plot_curriculum(runs, tmp_path / "curriculum.png")
    assert path is not None and np.asarray(Image.open(path)).std() > 10
    assert plot_curriculum([RunData("plain", tmp_path, {}, {}, None, [], {}, None, None)], tmp_path / "x.png") is None


def test_evaluation_plot_uses_the_periodic_evaluation_of_training(tmp_path):
    """Without checkpoint evaluations, the eval/* scalars that training logged draw the evaluation curves."""
    from PIL import Image

    from legkit.media.plots import RunData, eval_points, plot_evaluation

    steps = np.array([1000, 2000, 3000])
    periodic = RunData("periodic", tmp_path, {}, {}, None, [], {"eval/survival_rate": (steps, np.array([0.2, 0.6, 1.0])),
                                                                "eval/mean_return": (steps, np.array([5.0, 9.0, 12.0]))},
                       None, None)
    assert eval_points(periodic, "survival_rate") == [(1000, 0.2), (2000, 0.6), (3000, 1.0)]
    assert eval_points(periodic, "mean_base_height") == []
    checked = RunData("checked", tmp_path, {}, {}, None, [], dict(periodic.scalars), None, None,
                      checkpoint_evals=[{"step": 1500, "metrics": {"survival_rate": 0.5}}])
    assert eval_points(checked, "survival_rate") == [(1500, 0.5)]  # explicit checkpoint evaluations come first
    path = plot_evaluation([periodic], tmp_path / "evaluation.png")
    assert path is not None and np.asarray(Image.open(path)).std() > 10
    assert plot_evaluation([RunData("plain", tmp_path, {}, {}, None, [], {}, None, None)], tmp_path / "x.png") is None


# -- report ---------------------------------------------------------------------------------------

def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Headless Chromium as CI runs it: root, no sandbox, no GPU, nothing from the network, a fresh profile."""
    profile = tempfile.mkdtemp(prefix="legkit-chromium-")
    try:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (make test installs it)")
def test_report_compares_runs_and_renders_in_chromium(clip_run, tmp_path):
    from PIL import Image

    out = tmp_path / "report"
    r = run_legkit("report", str(clip_run), "pretrained:go2-walk", "--out", str(out), "--eval-episodes", "1",
                   "--video-seconds", "1", *TINY, "--fps", "10")
    assert r.returncode == 0, r.stderr
    page = out / "report.html"
    html = page.read_text()
    # Self-contained: nothing is loaded from outside the file.
    assert not re.search(r'(src|href)="(?!data:)', html)
    summary = (out / "SUMMARY.md").read_text()
    assert clip_run.name in summary and "pretrained:go2-walk" in summary and "![training](plots/training.png)" in summary

    dom = chromium("--virtual-time-budget=8000", "--dump-dom", page.as_uri()).stdout
    table = re.search(r'<table id="summary">.*?</table>', dom, re.S)
    assert table, "no summary table"
    rows = re.findall(r"<tr><td>(.*?)</td>", table.group(0))
    assert rows == [clip_run.name, "pretrained:go2-walk"]
    assert "go2-walk" in table.group(0) and "4,096" in table.group(0)
    for plot in ("training", "reward_terms", "evaluation"):
        img = re.search(rf'<figure id="plot-{plot}"><img [^>]*data-width="(\d+)"', dom)
        assert img and int(img.group(1)) > 600, f"plot {plot} missing or not decoded"
    videos = re.findall(r"<video [^>]*>", dom)
    assert len(videos) == 2
    for tag in videos:  # Chromium decoded each embedded MP4
        assert 'data-ready="yes"' in tag and 'data-width="160"' in tag, tag
        assert 0.9 <= float(re.search(r'data-duration="([\d.]+)"', tag).group(1)) <= 1.1

    shot = tmp_path / "report.png"
    chromium("--window-size=1280,1600", f"--screenshot={shot}", "--virtual-time-budget=4000", page.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape[:2] == (1600, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # not blank


def test_report_of_one_run_defaults_into_the_run_folder(clip_run, tmp_path):
    run = Path(shutil.copytree(clip_run, tmp_path / clip_run.name))
    assert main(["report", str(run), "--eval-episodes", "0", "--video-seconds", "0"]) == 0
    html = (run / "report" / "report.html").read_text()
    assert '<table id="summary">' in html and 'id="plot-training"' in html and "<video" not in html
    assert (run / "report" / "SUMMARY.md").exists()


# -- play ---------------------------------------------------------------------------------------

def test_play_without_a_display_points_to_video():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([str(LEGKIT), "play", "pretrained:go2-walk"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert "no display" in line and "legkit video" in line


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed (make test installs it)")
def test_play_opens_the_viewer_on_a_display():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL")}
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 800x600x24", str(LEGKIT), "play", "pretrained:go2-walk",
                        "--seconds", "1"], env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "played 1.0 s" in r.stdout
