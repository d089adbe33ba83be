"""Stalls in evaluation metrics: windows in which a robot asked to move does not, on hand-made traces and on a real
PiDog trotting into a wall."""

from __future__ import annotations

import numpy as np
import pytest

from legkit.evaluate.metrics import STALL_WINDOW_S, compute_metrics, format_table
from legkit.evaluate.rollout import Trace, rollout_model
from legkit.evaluate.scripted import Unnormalized, ZeroResidual, gait_config, scene_config

DT = 0.02
W = round(STALL_WINDOW_S / DT)  # 100 steps


def _trace(vel: np.ndarray, command: np.ndarray, alive: np.ndarray | None = None,
           contact: np.ndarray | None = None) -> Trace:
    T, n, _ = vel.shape
    alive = np.ones((T, n), dtype=bool) if alive is None else alive
    z = np.zeros((T, n))
    return Trace(alive=alive, vel=vel, command=command, height=z + 0.3, action_abs=z, power=z, reward=z,
                 terminated=np.zeros(n, dtype=bool), length=alive.sum(axis=0), dt=DT, max_steps=T,
                 obstacle_contact=contact)


def test_a_robot_that_stops_under_a_command_to_move_stalls_and_one_that_keeps_moving_does_not():
    T = 300
    vel, cmd = np.zeros((T, 4, 3)), np.zeros((T, 4, 3))
    cmd[:, 0, 0] = vel[:, 0, 0] = 0.2  # 0: walks as asked
    cmd[:, 1, 0], vel[:100, 1, 0] = 0.2, 0.3  # 1: walks 2 s, then stands against something
    cmd[:, 2, 1] = vel[:, 2, 1] = -0.3  # 2: sideways, as asked
    cmd[:, 3, 0], vel[:, 3, 0] = -0.2, 0.2  # 3: asked backwards, walks forwards
    m = compute_metrics(_trace(vel, cmd))
    # Windows of 100 steps starting at 0..200 (201 per episode, all judged). Episode 1's mean speed over the window
    # starting at i is 0.3 (100 - i) / 100, a stall below 0.25 * 0.2: i = 84..200, 117 windows; episode 3's 201.
    assert m["stalled_time_share"] == pytest.approx((117 + 201) / (4 * 201))
    assert m["episodes_stalled"] == 0.5
    assert "stalls_at_obstacles" not in m  # no arena
    rows = {line.rsplit("  ", 1)[0].strip(): line.rsplit(" ", 1)[1] for line in format_table(m).splitlines()}
    assert rows["episodes with a stall"] == "50.0%" and "stalls touching an obstacle" not in rows


def test_standing_still_under_a_stand_command_and_short_episodes_are_not_judged():
    T = 300
    vel, cmd = np.zeros((T, 2, 3)), np.zeros((T, 2, 3))
    cmd[:, 1, 0] = 0.04  # below STALL_MIN_COMMAND: not asked to move
    m = compute_metrics(_trace(vel, cmd))
    assert m["stalled_time_share"] is None and m["episodes_stalled"] is None
    short = np.zeros((W - 1, 1, 3))
    asked = short.copy()
    asked[..., 0] = 0.5
    assert compute_metrics(_trace(short, asked))["stalled_time_share"] is None
    # A robot that fell after 150 steps: only the windows it was alive through are judged.
    vel, cmd = np.zeros((T, 1, 3)), np.zeros((T, 1, 3))
    cmd[..., 0] = 0.2
    vel[:150, 0, 0] = 0.2
    alive = np.zeros((T, 1), dtype=bool)
    alive[:150] = True
    m = compute_metrics(_trace(vel, cmd, alive))
    assert m["stalled_time_share"] == 0.0 and m["episodes_stalled"] == 0.0  # windows 0..50, none a stall


def test_stalls_at_obstacles_is_the_share_of_stalls_with_a_touch():
    T = 300
    vel, cmd = np.zeros((T, 2, 3)), np.zeros((T, 2, 3))
    cmd[..., 0] = 0.2  # both stand still all along: every window a stall
    contact = np.zeros((T, 2), dtype=bool)
    contact[10, 0] = True  # episode 0 touches at step 10: the windows starting at 0..10 hold that touch
    m = compute_metrics(_trace(vel, cmd, contact=contact))
    assert m["stalled_time_share"] == 1.0
    assert m["stalls_at_obstacles"] == pytest.approx(11 / (2 * 201))


NEAR_WALL = ["task.arena.boxes=1", "task.arena.low=0", "task.arena.narrow=0", "task.arena.box_side=[0.01,0.01]",
             "task.arena.box_height=[0.01,0.01]", "task.arena.spacing=0", "task.episode_seconds=10",
             "task.reset.yaw_range=0", "task.commands.lin_vel_x=[0.1,0.1]"]
"""A PiDog arena with one 1 cm cube and the walls, heading +x at a 0.1 m/s command for 10 s."""


def _trot(sets: list[str]) -> Trace:
    cfg = gait_config("pidog", "trot", scene_config("pidog-run"), [*NEAR_WALL, *sets])
    return rollout_model(ZeroResidual.for_task(cfg.task), Unnormalized(), 2, cfg, seed=0)


def test_a_trotting_pidog_stalls_at_a_near_wall_and_not_in_the_open():
    # Walls 0.35 m ahead: the scripted trot (about 0.07 m/s) reaches them 2-3 s in and treads against them.
    near = compute_metrics(_trot(["task.arena.size=0.7", "task.arena.clear_radius=0.25"]))
    assert near["episodes_stalled"] == 1.0 and near["stalled_time_share"] > 0.5
    assert near["stalls_at_obstacles"] > 0.9
    far = compute_metrics(_trot(["task.arena.size=4.0", "task.arena.clear_radius=1.5"]))
    assert far["mean_forward_velocity"] > 0.05 and far["survival_rate"] == 1.0
    assert far["episodes_stalled"] == 0.0 and far["stalled_time_share"] == 0.0 and far["stalls_at_obstacles"] is None
