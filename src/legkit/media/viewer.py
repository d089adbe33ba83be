"""`legkit play`: MuJoCo's interactive viewer with a saved policy walking in real time.

The policy runs in a one-robot LeggedBatch exactly as in `legkit video`; after every control step
the robot's state is copied into the viewer's MjData. The viewer needs a display (X11 or
Wayland); without one, `legkit video` renders the same thing to an MP4.
"""

from __future__ import annotations

import os
import platform
import threading
import time

import mujoco


from legkit import LegkitError
from legkit.media.render import CameraConfig
from legkit.media.video import Runner, one_torch_thread, policy_actor

NO_DISPLAY = ("no display for the interactive viewer ($DISPLAY and $WAYLAND_DISPLAY are not set); "
              "render a video instead: legkit video RUN")


def has_display() -> bool:
    """Whether a window can be opened: always on macOS and Windows, on Linux when X11 or Wayland is set."""
    if platform.system() != "Linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _show(model: mujoco.MjModel, data: mujoco.MjData, runner) -> None:
    """Load the runner's robot state (and its obstacles' poses) into `data`."""
    mujoco.mj_setState(model, data, runner.state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    if runner.mocap is not None:
        mujoco.mj_setState(model, data, runner.mocap, mujoco.mjtState.mjSTATE_MOCAP_POS | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
    mujoco.mj_forward(model, data)


def play(policy, sets: list[str] | None = None, seconds: float | None = None, seed: int = 0) -> float:
    """Show `policy` (a legkit.train.runs.Policy) in the viewer until the window closes or `seconds` of
    simulated time pass; returns the simulated seconds shown."""
    if not has_display():
        raise LegkitError(NO_DISPLAY)
    if seconds is not None and seconds <= 0:
        raise LegkitError(f"--seconds must be positive, got {seconds}")
    import mujoco.viewer

    from legkit.evaluate.rollout import load_policy_for, load_run_config

    cfg = load_run_config(policy, sets)
    runner = Runner(cfg.task, policy_actor(*load_policy_for(policy, cfg)), seed, CameraConfig())
    model = runner.batch.model
    data = mujoco.MjData(model)
    _show(model, data, runner)
    before = set(threading.enumerate())
    try:
        viewer = mujoco.viewer.launch_passive(model, data, show_left_ui=False, show_right_ui=False)
    except Exception as exc:  # GLFW raises its own types when the display cannot be opened
        runner.close()
        raise LegkitError(f"could not open the viewer window ({type(exc).__name__}: {exc}); "
                          "render a video instead: legkit video RUN") from None
    shown = 0.0
    try:
        with viewer, one_torch_thread():
            viewer.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            viewer.cam.trackbodyid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, runner.batch.robot.base_body)
            viewer.cam.distance = runner.camera.cam.distance
            viewer.cam.elevation = runner.camera.cam.elevation
            start = time.perf_counter()
            while viewer.is_running() and (seconds is None or shown < seconds):
                runner.step()
                shown = runner.steps * runner.dt
                with viewer.lock():
                    _show(model, data, runner)
                viewer.sync()
                ahead = shown - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)  # real time: never faster than the simulation
    finally:
        runner.close()
        # The viewer runs on a daemon thread that tears its window down after close(); wait for it, or
        # the interpreter's exit (glfw.terminate at atexit) can race it and crash.
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=10)
    return shown
