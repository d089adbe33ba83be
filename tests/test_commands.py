"""The command term and the command curriculum: zero commands, heading mode, ranges that widen."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from legkit import LegkitError
from legkit.envs.core import LeggedBatch
from legkit.tasks import get_task
from legkit.tasks.commands import CommandConfig, VelocityCommand, check_commands, wrap_angle
from legkit.tasks.curriculum import CommandCurriculum, CommandCurriculumConfig, CommandStage
from legkit.tasks.state import BatchState


class _Env:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)


def test_standing_share_gives_that_share_of_zero_commands():
    s = BatchState(20000, 12, 4, 5, 0.02)
    term = VelocityCommand(CommandConfig(lin_vel_x=(0.5, 1.0), standing_share=0.25), s, _Env(), 0.02)
    term.reset(np.arange(20000))
    zero = np.all(s.command == 0.0, axis=1)
    assert zero.mean() == pytest.approx(0.25, abs=0.01)
    assert np.all((s.command[~zero, 0] >= 0.5) & (s.command[~zero, 0] <= 1.0))


def test_heading_mode_commands_a_yaw_rate_towards_the_heading():
    s = BatchState(3, 12, 4, 5, 0.02)
    cfg = CommandConfig(lin_vel_x=(0.0, 0.0), ang_vel_yaw=(-1.0, 1.0), heading=True, heading_stiffness=0.5)
    term = VelocityCommand(cfg, s, _Env(), 0.02)
    term.reset(np.arange(3))
    term.target_heading[:] = [0.4, -0.4, 3.0]  # the base faces yaw 0 (identity quaternion)
    term.step()
    np.testing.assert_allclose(s.command[:, 2], [0.2, -0.2, 1.0])  # 0.5 x error, clipped to the yaw range
    assert wrap_angle(np.array([3 * np.pi]))[0] == pytest.approx(-np.pi)


def test_resampling_follows_the_schedule():
    s = BatchState(4, 12, 4, 5, 0.02)
    term = VelocityCommand(CommandConfig(lin_vel_x=(-1.0, 1.0), resample_seconds=0.1), s, _Env(), 0.02)
    term.reset(np.arange(4))
    first = s.command.copy()
    s.episode_step[:] = [1, 2, 5, 10]  # every 5 control steps
    term.step()
    changed = np.any(s.command != first, axis=1)
    np.testing.assert_array_equal(changed, [False, False, True, True])


STAGES = (CommandStage((-0.5, 1.0), (-0.3, 0.3), (-0.5, 0.5)), CommandStage((-1.0, 2.0), (-0.8, 0.8), (-1.5, 1.5)))


def test_command_curriculum_advances_on_synthetic_outcomes_and_widens_the_ranges():
    s = BatchState(10, 12, 4, 5, 0.02)
    term = VelocityCommand(CommandConfig(), s, _Env(), 0.02)
    cur = CommandCurriculum(CommandCurriculumConfig(STAGES, window=10, success_rate=0.8), term)
    np.testing.assert_array_equal(term.ranges, [[-0.5, 1.0], [-0.3, 0.3], [-0.5, 0.5]])  # stage 0's, not the config's
    stages, lengths = np.zeros(10, dtype=np.int64), np.full(10, 1000)
    assert not cur.record(np.array([True] * 7 + [False] * 3), stages, lengths)  # 70% < 80%
    assert cur.stage == 0
    assert cur.record(np.array([True] * 10), stages, lengths)
    assert cur.stage == 1 and cur.outcomes.maxlen == 10 and len(cur.outcomes) == 0
    np.testing.assert_array_equal(term.ranges, [[-1.0, 2.0], [-0.8, 0.8], [-1.5, 1.5]])
    assert not cur.record(np.array([True] * 10), stages, lengths)  # episodes begun in stage 0 no longer count
    assert cur.stage == 1 and cur.scalars()["lin_vel_x_max"] == 2.0


def test_a_stage_with_max_steps_advances_once_they_are_trained_even_below_the_success_rate():
    s = BatchState(10, 12, 4, 5, 0.02)
    term = VelocityCommand(CommandConfig(), s, _Env(), 0.02)
    capped = (replace(STAGES[0], max_steps=25_000), replace(STAGES[1], max_steps=10))
    cur = CommandCurriculum(CommandCurriculumConfig(capped, window=10, success_rate=0.8), term)
    failed, lengths = np.zeros(10, dtype=bool), np.full(10, 1000)
    assert not cur.record(failed, np.zeros(10, dtype=np.int64), lengths)
    assert not cur.record(failed, np.array([0] * 5 + [1] * 5), lengths)  # only stage 0's episodes count: 15,000
    assert cur.stage == 0 and cur.stage_steps == 15_000
    assert not cur.record(failed[:9], np.zeros(9, dtype=np.int64), lengths[:9])  # 24,000 < 25,000
    assert cur.record(failed[:1], np.zeros(1, dtype=np.int64), lengths[:1])  # 25,000: at the cap, all failed
    assert cur.stage == 1 and cur.stage_steps == 0 and len(cur.outcomes) == 0
    np.testing.assert_array_equal(term.ranges, [[-1.0, 2.0], [-0.8, 0.8], [-1.5, 1.5]])
    # the last stage has nowhere to go: its cap is spent and it stays
    assert not cur.record(failed, np.ones(10, dtype=np.int64), lengths)
    assert cur.stage == 1 and cur.scalars()["stage_steps"] == 10_000
    cur.set_stage(0)  # a resume or an evaluation restarts the stage's clock
    assert cur.stage_steps == 0


def test_command_curriculum_judges_tracking_from_the_reward_sums():
    """In the env: an episode succeeds when it did not fall and tracked well enough on average."""
    task = replace(get_task("go2-joystick"), command_curriculum=CommandCurriculumConfig(STAGES, window=4,
                                                                                      success_rate=0.75,
                                                                                      min_tracking=0.5))
    batch = LeggedBatch(task, 4, seed=0, nthread=1)
    try:
        cur = batch.curriculum
        assert isinstance(cur, CommandCurriculum)
        scale = batch.rewards.scales["track_lin_vel"]
        batch.state.episode_step[:] = 100
        batch.state.terminated[:] = [False, False, False, True]
        batch.rewards.episode_sums["track_lin_vel"][:] = scale * 100 * np.array([0.9, 0.6, 0.4, 0.9])
        batch.reset()
        assert list(cur.outcomes) == [True, True, False, False]  # 0.4 tracked too little; robot 3 fell
        assert cur.stage == 0
    finally:
        batch.close()


def test_single_axis_share_gives_pure_draws_on_each_axis_evenly():
    s = BatchState(30000, 12, 4, 5, 0.02)
    cfg = CommandConfig(lin_vel_x=(-1.0, 2.0), lin_vel_y=(-0.8, 0.8), ang_vel_yaw=(-1.5, 1.5), single_axis_share=0.3)
    term = VelocityCommand(cfg, s, _Env(), 0.02)
    term.reset(np.arange(30000))
    nonzero = s.command != 0.0
    single = nonzero.sum(axis=1) == 1
    assert single.mean() == pytest.approx(0.3, abs=0.01)
    # each axis gets a third of the single-axis draws, and keeps its range
    np.testing.assert_allclose(nonzero[single].mean(axis=0), [1 / 3] * 3, atol=0.02)
    assert s.command[:, 0].min() >= -1.0 and s.command[:, 0].max() <= 2.0
    assert (nonzero.sum(axis=1) == 3)[~single].all()


def test_slow_share_draws_that_share_from_the_slow_ranges_cut_to_the_current_ones():
    s = BatchState(40000, 12, 4, 5, 0.02)
    cfg = CommandConfig(lin_vel_x=(-1.0, 2.0), lin_vel_y=(-0.8, 0.8), ang_vel_yaw=(-1.5, 1.5), slow_share=0.5,
                        slow_ranges=((-0.6, 0.6), (-0.5, 0.5), (-1.0, 1.0)))
    term = VelocityCommand(cfg, s, _Env(), 0.02)
    term.reset(np.arange(40000))
    vx = s.command[:, 0]
    # slow draws are uniform on [-0.6, 0.6], the others on [-1, 2]: P(|vx| < 0.3) = 0.5 * 0.5 + 0.5 * 0.2
    assert np.mean(np.abs(vx) < 0.3) == pytest.approx(0.35, abs=0.01)
    assert np.mean(vx > 0.6) == pytest.approx(0.5 * 1.4 / 3.0, abs=0.01)  # only the other draws exceed 0.6
    assert vx.min() >= -1.0 and vx.max() <= 2.0
    # a draw is slow on all three axes together: given a slow yaw rate, vx exceeds 0.6 less often
    fast_yaw = np.abs(s.command[:, 2]) > 1.0
    assert np.mean(vx[fast_yaw] > 0.6) == pytest.approx(1.4 / 3.0, abs=0.02)
    # a command curriculum's narrower stage cuts the slow ranges
    term.ranges[:] = [[-0.3, 0.4], [0.0, 0.0], [-0.2, 0.2]]
    term.reset(np.arange(40000))
    assert s.command[:, 0].min() >= -0.3 and s.command[:, 0].max() <= 0.4
    assert np.all(s.command[:, 1] == 0.0) and np.abs(s.command[:, 2]).max() <= 0.2


def test_slow_share_without_slow_ranges_is_an_error():
    task = get_task("go2-joystick")
    with pytest.raises(LegkitError, match="task.commands.slow_ranges"):
        check_commands(replace(task, commands=replace(task.commands, slow_share=0.5)))
