"""`legkit diagnose RUN`: named checks for the ways RL runs of legged robots fail, from what the run folder holds.

Nothing is simulated: the checks read eval.json (else eval-final.json from `legkit eval`, else the last row of
evaluations.csv), episodes.csv, the TensorBoard scalars in tb/, config.yaml and meta.json. Each check is a
function of a `RunRecord` returning a `Check`: a verdict, the numbers behind it, and the `--set` key to change.

    fail  the run shows the failure mode: it did not learn its task, or training broke
    warn  it learned, in a way likely to hurt (saturated actions, a plateau, a term that drowns the rest),
          or a failure is likely but its data is ambiguous
    pass  the data is there and the failure mode is not
    n/a   the data the check needs is missing, or too short to judge (a short run is never guessed at)

Thresholds are the module constants below; every verdict quotes the numbers it compared.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from legkit import LegkitError
from legkit.config import load_yaml
from legkit.evaluate.success import read_evaluations
from legkit.train.logs import read_episodes, read_json, read_scalars
from legkit.train.runs import CONFIG, META, MODEL, checkpoints

PASS, WARN, FAIL, NA = "pass", "warn", "fail", "n/a"

DEFAULT_WINDOW = 100
"""Episodes in the trailing window (--window): the 'end of training' for reward shares and training-time means,
and the rolling-mean width of the return curve (narrowed on short runs, see CURVE_WINDOWS)."""
MIN_EPISODES = 20
"""Fewest episodes a window may have; fewer and a check of episodes.csv says n/a. With 20 episodes the standard
error of a window mean is under a quarter of the episodes' spread."""
MIN_COMMAND = 0.1
"""Mean forward commands below this (m/s) make a standing task: stands_still and walks_backwards are n/a."""
STAND_STILL_FRACTION = 0.25
"""stands_still fails when the mean forward velocity is below this share of the mean command (and the robot
survives): a policy that walks at all makes well over a quarter of its command; the seed project's stand-still
policy made 0.010 of a 0.095 m/s baseline (11%)."""
SLOW_FRACTION = 0.5
"""stands_still warns below this share of the command: it walks, but tracks poorly."""
HIGH_SURVIVAL = 0.8
"""Survival rate from which a slow robot is judged to stand still; below it falling is the first problem."""
BACKWARD_TOLERANCE = 0.05
"""walks_backwards fails below -0.05 m/s; slower backward means are sway and drift, which stands_still judges
(the seed project's baseline gait went -0.0044 m/s: standing still, not walking backwards)."""
LOW_HEIGHT_FRACTION = 0.7
"""lies_down fails when the mean base height is below this share of the robot's standing height: a Go2 under
0.19 m (of 0.27) has its belly near the ground; a humanoid under 0.90 m (of 1.29) is on its knees."""
CROUCH_FRACTION = 0.85
"""lies_down warns below this share of the standing height: a crouched gait."""
DOMINANCE_SHARE = 0.7
"""reward_dominance flags a term whose |mean| is more than this share of the sum of all terms' |means| over the
trailing window: the other terms then barely shape the policy. A penalty that large fails (it swamps the task
reward: the seed project's stand-still policy); a task reward that large, or all penalties together, warns."""
CURVE_WINDOWS = 4
"""The return curve needs this many windows of episodes (at least MIN_EPISODES each) to be judged; on shorter runs
the window narrows to episodes // CURVE_WINDOWS, and below MIN_EPISODES collapse and plateau say n/a."""
NOISE_SIGMAS = 3.0
"""A rise or drop of the rolling mean counts only when larger than this many standard errors of a window mean."""
COLLAPSE_FRACTION = 0.5
"""collapse fails when the final window's mean is below the top of the curve's largest rise by this share of
what the run learned (that rise, or the whole run's if larger) and by more than the noise: half of it is lost."""
DECLINE_FRACTION = 0.25
"""collapse warns from this share: a decline."""
RISE_SHARE = 0.25
"""collapse needs a rise first: the rolling mean must have climbed above its lowest point by this share of its
range (and beyond noise). A return that only sank from its first episodes (falls after a few steps collect
little penalty) never rose, and cannot collapse."""
PLATEAU_FRACTION = 0.5
"""plateau looks at this share of the steps at the end of training (of the final segment, see `_segment`)..."""
PLATEAU_GAIN = 0.05
"""...and warns when the rolling mean rose over them by less than this share of what the run learned (or by less
than the noise): those steps bought nothing. A warning: a converged run plateaus too."""
STD_COLLAPSED = 0.05
"""policy_std fails below this mean action std (action units, actions in [-1, 1]): exploration is gone and
PPO's updates stall (legkit starts at exp(ppo.log_std_init) = 0.37-0.61)."""
STD_EXPLODED = 2.0
"""policy_std fails above this std: most samples are clipped to +-1, the actions are noise."""
ACTION_SATURATION = 0.9
"""action_saturation warns when mean |action| is above this (actions are clipped to [-1, 1]): the policy drives
its joints bang-bang at the limits of task.action_scale. A warning, not a failure: a saturated policy can still do
its task (the shipped humanoid-stand does, at 0.988), but it has no authority left and is hard on hardware."""
RESIDUAL_UNUSED = 0.02
"""residual_usage fails when the mean |residual| is below this share of the residual's scale: the policy adds
nothing to the scripted gait (the seed project's penalties pushed its residual towards zero)."""
RESIDUAL_SATURATED = 0.8
"""residual_usage warns above this share: the residual is at its bounds, fighting the gait, not correcting it."""
NAN_MARKERS = ("NaN guard stopped training", "non-finite", "found invalid values")
"""Text that records a NaN stop: the trainer's error (legkit.train.trainer), as a tune trial's meta.json keeps it
and as a training log holds it; and torch's, when NaN reaches the action distribution inside an update before
the guard's next check (seen with ppo.learning_rate=1e6: an internal error, not the guard's message)."""


@dataclass
class Check:
    """One check's result: the table row and the JSON record."""

    name: str
    verdict: str
    evidence: str
    suggestion: str = ""
    numbers: dict = field(default_factory=dict)
    """The evidence as numbers (None where not defined)."""


@dataclass
class RunRecord:
    """What the checks read from one run folder; missing pieces are None or empty."""

    folder: Path
    label: str
    config: dict
    meta: dict
    eval: dict | None
    """Evaluation metrics (legkit.evaluate.metrics names)."""
    eval_source: str
    """Where the evaluation came from, in full (for the header)."""
    eval_name: str
    """...and in short (for the evidence): the file's name."""
    command_estimated: bool
    """Whether the evaluation's mean_command_velocity is estimated from the config (evaluations.csv has none)."""
    episodes: dict[str, np.ndarray] | None
    """episodes.csv as float columns (empty cells NaN)."""
    nonfinite_cells: list[str]
    """'column at step N' for each episodes.csv column holding an explicit nan/inf."""
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]
    """TensorBoard scalars: tag -> (steps, values)."""
    window: int

    @property
    def task(self) -> dict:
        return self.config.get("task") or {}

    @property
    def rewards(self) -> dict:
        return self.task.get("rewards") or {}

    def weight(self, term: str) -> float | None:
        w = (self.rewards.get(term) or {}).get("weight")
        return float(w) if isinstance(w, (int, float)) else None

    @property
    def terms(self) -> list[str]:
        """Reward term columns of episodes.csv, in the task's order."""
        if self.episodes is None:
            return []
        named = [n for n in self.rewards if n in self.episodes]
        return named or [n for n in self.episodes if n not in EPISODE_COLUMNS]

    def tail(self, column: str) -> np.ndarray:
        """The finite values of an episodes.csv column over the trailing window."""
        if self.episodes is None or column not in self.episodes:
            return np.array([])
        x = self.episodes[column][-self.window:]
        return x[np.isfinite(x)]


EPISODE_COLUMNS = ("step", "reward", "length", "time", "terminated", "mean_height", "mean_action", "curriculum_stage")
"""Columns of episodes.csv that are not reward terms (legkit.train.callbacks.EpisodeLogger)."""


# -- reading ---------------------------------------------------------------------------------------

def _read_eval(folder: Path, config: dict) -> tuple[dict | None, str, str, bool]:
    """The run's final evaluation: eval.json (training's), eval-final.json (`legkit eval RUN`), or the last periodic
    evaluation in evaluations.csv (whose command is estimated from the config where that is exact); returns the
    metrics, where they came from in full and in short, and whether the command is the config's estimate."""
    for name in ("eval.json", "eval-final.json"):
        data = read_json(folder / name)
        if data and data.get("metrics"):
            m = data["metrics"]
            step = f", step {data['step']:,}" if isinstance(data.get("step"), int) else ""
            return m, f"{name} ({m.get('episodes', '?')} episodes{step})", name, False
    rows = read_evaluations(folder)
    if not rows:
        return None, "", "", False
    m = {k: v for k, v in rows[-1].items() if k not in ("step", "wall_time_s")}
    cmd = _expected_command(config)
    how = ""
    if cmd is not None:
        m["mean_command_velocity"] = cmd
        how = f"; command {cmd:.3f} m/s = the middle of task.commands.lin_vel_x"
    return m, f"evaluations.csv (periodic evaluation at step {rows[-1]['step']:,}{how})", "evaluations.csv", \
        cmd is not None


def _expected_command(config: dict) -> float | None:
    """The mean forward command of a task that draws it uniformly from task.commands.lin_vel_x alone (no standing,
    single-axis or slow shares, no command curriculum); None otherwise."""
    task = config.get("task") or {}
    c = task.get("commands") or {}
    if (task.get("command_curriculum") or {}).get("stages") or c.get("standing_share") or c.get("single_axis_share") \
            or c.get("slow_share"):
        return None
    x = c.get("lin_vel_x")
    return float(np.mean(x)) if isinstance(x, list) and len(x) == 2 else None


def load_record(folder: Path, label: str, window: int = DEFAULT_WINDOW) -> RunRecord:
    """Read a run folder (as legkit.train.runs.resolve_run returns it) for the checks."""
    if window < 1:
        raise LegkitError(f"--window must be at least 1 episode, got {window}")
    config = load_yaml(str(folder / CONFIG))
    episodes, bad = read_episodes(folder / "episodes.csv")
    metrics, source, short, estimated = _read_eval(folder, config)
    return RunRecord(folder=folder, label=label, config=config, meta=read_json(folder / META) or {}, eval=metrics,
                     eval_source=source, eval_name=short, command_estimated=estimated, episodes=episodes,
                     nonfinite_cells=bad, scalars=read_scalars(folder / "tb"), window=window)


# -- helpers ---------------------------------------------------------------------------------------

def _pct(x: float) -> str:
    return f"{x:.0%}" if abs(x) >= 0.01 or x == 0 else f"{x:.1%}"


def _eval_value(run: RunRecord, key: str) -> float | None:
    v = (run.eval or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _key(run: RunRecord, term: str) -> str:
    """`task.rewards.TERM.weight (now W)` for a suggestion (to weaken a penalty is to move it towards 0)."""
    w = run.weight(term)
    return f"task.rewards.{term}.weight" + (f" (now {w:g})" if w is not None else "")


def _task_term(run: RunRecord) -> str | None:
    """The velocity-tracking reward term, else the task reward with the largest weight."""
    if "track_lin_vel" in run.rewards:
        return "track_lin_vel"
    positive = [(run.weight(n) or 0.0, n) for n in run.rewards if (run.weight(n) or 0.0) > 0]
    return max(positive)[1] if positive else None


def _penalty_shares(run: RunRecord) -> list[tuple[str, float]]:
    """Penalty terms by their share of the sum of |term means| over the trailing window, largest first (none on
    fewer than MIN_EPISODES episodes)."""
    means = {t: float(np.mean(run.tail(t))) for t in run.terms if len(run.tail(t)) >= MIN_EPISODES}
    total = sum(abs(v) for v in means.values())
    if total <= 0:
        return []
    pen = [(t, abs(v) / total) for t, v in means.items() if _is_penalty(run, t, v)]
    return sorted(pen, key=lambda p: -p[1])


def _is_penalty(run: RunRecord, term: str, mean: float) -> bool:
    """A penalty: a negative weight in the config (else, a negative mean)."""
    w = run.weight(term)
    return (w if w else mean) < 0


def _ppo(run: RunRecord, key: str) -> str:
    v = (run.config.get("ppo") or {}).get(key)
    return f"ppo.{key}" + (f" (now {v:g})" if isinstance(v, (int, float)) else "")


def _action_source(run: RunRecord) -> tuple[float | None, str]:
    """Mean |action|: the deterministic evaluation's, else the trailing training episodes' (with exploration)."""
    v = _eval_value(run, "mean_action_magnitude")
    if v is not None:
        return v, run.eval_name
    tail = run.tail("mean_action")
    if len(tail) >= MIN_EPISODES:
        return float(np.mean(tail)), f"episodes.csv, last {len(tail)} episodes, with exploration noise"
    return None, ""


# -- the checks ------------------------------------------------------------------------------------

def _velocity_inputs(run: RunRecord) -> tuple[float | None, float | None, float | None]:
    return (_eval_value(run, "mean_forward_velocity"), _eval_value(run, "mean_command_velocity"),
            _eval_value(run, "survival_rate"))


def _velocity_source(run: RunRecord) -> str:
    return run.eval_name + ("; command from the config" if run.command_estimated else "")


def stands_still(run: RunRecord, fraction: float = STAND_STILL_FRACTION) -> Check:
    """It learned to stand still: mean forward velocity far below a forward command while it survives."""
    v, cmd, surv = _velocity_inputs(run)
    name = "stands_still"
    if v is None or cmd is None:
        return Check(name, NA, "no evaluation with forward and commanded velocity (eval.json)",
                     f"evaluate the run: legkit eval {run.label}")
    nums = {"forward_velocity": v, "command_velocity": cmd, "survival_rate": surv, "threshold_fraction": fraction}
    if cmd < MIN_COMMAND:
        return Check(name, NA, f"mean command {cmd:.3f} m/s < {MIN_COMMAND} m/s: a standing task", numbers=nums)
    if v < -BACKWARD_TOLERANCE:
        return Check(name, PASS, f"forward {v:.3f} m/s: it moves (backwards: see walks_backwards)", numbers=nums)
    ratio = v / cmd
    nums["ratio"] = ratio
    said = f"forward {v:.3f} m/s = {_pct(ratio)} of the command {cmd:.3f} m/s"
    said += f", survival {_pct(surv)}" if surv is not None else ""
    said += f" [{_velocity_source(run)}]"
    term = _task_term(run)
    pens = ", ".join(f"{t} {_pct(s)}" for t, s in _penalty_shares(run)[:3])
    fix = (f"raise {_key(run, term)}" if term else "raise the velocity-tracking reward's weight") + \
          (f"; weaken the largest penalties (shares of the reward: {pens})" if pens else
           "; weaken the energy and smoothness penalties (task.rewards.torques / action_rate weights)") + \
          ("; a residual policy can cancel its gait (see residual_usage)" if _residual(run)[0] else "")
    if ratio >= SLOW_FRACTION:
        return Check(name, PASS, said, numbers=nums)
    if ratio >= fraction:
        return Check(name, WARN, f"{said} (< {_pct(SLOW_FRACTION)}: slow)", fix, nums)
    if surv is not None and surv < HIGH_SURVIVAL:
        return Check(name, WARN, f"{said} (< {_pct(fraction)}), but survival < {_pct(HIGH_SURVIVAL)}: it falls "
                     "first", "fix the falls first (see lies_down, reward_dominance)", nums)
    return Check(name, FAIL, f"{said} (< {_pct(fraction)} while surviving: it stands still)", fix, nums)


def walks_backwards(run: RunRecord, tolerance: float = BACKWARD_TOLERANCE) -> Check:
    """Mean forward velocity negative (beyond `tolerance`, m/s) while the command is forward."""
    v, cmd, _ = _velocity_inputs(run)
    name = "walks_backwards"
    if v is None or cmd is None:
        return Check(name, NA, "no evaluation with forward and commanded velocity (eval.json)",
                     f"evaluate the run: legkit eval {run.label}")
    nums = {"forward_velocity": v, "command_velocity": cmd, "tolerance": tolerance}
    if cmd < MIN_COMMAND:
        return Check(name, NA, f"mean command {cmd:.3f} m/s < {MIN_COMMAND} m/s: not a forward task", numbers=nums)
    said = f"forward {v:.3f} m/s with command {cmd:.3f} m/s [{_velocity_source(run)}]"
    if v >= -tolerance:
        return Check(name, PASS, said, numbers=nums)
    fix = "check the sign of the velocity reward and command (task.rewards.track_lin_vel, task.commands.lin_vel_x)"
    gait = run.task.get("gait")
    if _residual(run)[0]:
        stroke = gait.get("step_length") if isinstance(gait, dict) else None
        fix += ("; a residual policy inherits its scripted gait's direction: check the gait alone" +
                (f" (task.gait.step_length is {stroke:g} m; negative walks backward)"
                 if isinstance(stroke, (int, float)) else ""))
    return Check(name, FAIL, f"{said}: it walks backwards (< -{tolerance} m/s)", fix, nums)


def lies_down(run: RunRecord, fraction: float = LOW_HEIGHT_FRACTION) -> Check:
    """Base height far below the robot's standing height: lying or crawling."""
    name = "lies_down"
    robot_name = run.task.get("robot") or run.meta.get("robot")
    if not robot_name:
        return Check(name, NA, "the run's config names no robot (task.robot)")
    from legkit.robots import get_robot

    try:
        standing = get_robot(robot_name).standing_height
    except LegkitError as exc:
        return Check(name, NA, f"no standing height: {exc}")
    h, source = _eval_value(run, "mean_base_height"), run.eval_name
    if h is None:
        tail = run.tail("mean_height")
        if len(tail) < MIN_EPISODES:
            return Check(name, NA, "no base height: no evaluation, and fewer than "
                         f"{MIN_EPISODES} training episodes in episodes.csv")
        h, source = float(np.mean(tail)), f"episodes.csv, last {len(tail)} episodes"
    ratio = h / standing
    nums = {"base_height": h, "standing_height": standing, "ratio": ratio, "threshold_fraction": fraction}
    said = f"base height {h:.3f} m = {_pct(ratio)} of the {robot_name}'s standing {standing:.2f} m [{source}]"
    fix = "; ".join(f"strengthen {_key(run, t)}" for t in ("base_height", "base_too_low", "height_target")
                    if t in run.rewards)
    floor = (run.task.get("termination") or {}).get("min_base_height")
    if floor is not None:
        fix += ("; " if fix else "") + f"raise task.termination.min_base_height (now {floor:g}) to end crawling"
    if ratio < fraction:
        return Check(name, FAIL, f"{said} (< {_pct(fraction)}: lying or crawling)", fix, nums)
    if ratio < CROUCH_FRACTION:
        return Check(name, WARN, f"{said} (< {_pct(CROUCH_FRACTION)}: crouched)", fix, nums)
    return Check(name, PASS, said, numbers=nums)


def reward_dominance(run: RunRecord, share: float = DOMINANCE_SHARE) -> Check:
    """One reward term's |mean| is most of the sum of all terms' |means| over the trailing window."""
    name = "reward_dominance"
    if run.episodes is None or not run.terms:
        return Check(name, NA, "no per-term rewards: episodes.csv is not there")
    means = {t: float(np.mean(run.tail(t))) for t in run.terms if len(run.tail(t))}
    n = min((len(run.tail(t)) for t in means), default=0)
    if n < MIN_EPISODES:
        return Check(name, NA, f"{n} episodes in episodes.csv, need {MIN_EPISODES}")
    total = sum(abs(v) for v in means.values())
    if total <= 0:
        return Check(name, NA, f"every term's mean is 0 over the last {n} episodes")
    shares = sorted(((abs(v) / total, t) for t, v in means.items()), reverse=True)
    top, term = shares[0]
    penalty = lambda t: _is_penalty(run, t, means[t])  # noqa: E731
    pen_share = sum(s for s, t in shares if penalty(t))
    nums = {"shares": {t: s for s, t in shares}, "means": means, "episodes": n, "threshold_share": share,
            "penalty_share": pen_share}
    listing = ", ".join(f"{t} {means[t]:+.3g} ({_pct(s)})" for s, t in shares[:3])
    said = f"last {n} episodes, mean episode sums: {listing}"
    task = _task_term(run)
    if top > share and penalty(term):
        if term == "termination":
            return Check(name, FAIL, f"{said}: falls ({term}) are {_pct(top)} of the reward", "the robot falls in "
                         "most episodes; a smaller termination penalty only hides that (see lies_down, collapse, "
                         f"policy_std; or lower {_ppo(run, 'learning_rate')})", nums)
        fix = f"weaken {_key(run, term)}" + (f", or raise {_key(run, task)}" if task else "")
        return Check(name, FAIL, f"{said}: the penalty {term} is {_pct(top)} (> {_pct(share)}), swamping the task "
                     "reward", fix, nums)
    if top > share:
        return Check(name, WARN, f"{said}: {term} is {_pct(top)} (> {_pct(share)}); the other terms barely shape "
                     "the policy", f"check the weights of the other terms against {_key(run, term)}", nums)
    if pen_share > share:
        return Check(name, WARN, f"{said}: the penalties together are {_pct(pen_share)} (> {_pct(share)})",
                     "weaken the largest penalties" + (f", or raise {_key(run, task)}" if task else ""), nums)
    return Check(name, PASS, said, numbers=nums)


@dataclass
class Curve:
    """The episode return curve of the final segment of training, as rolling means."""

    roll: np.ndarray
    pos: np.ndarray
    """Step of each rolling window's last episode."""
    noise: float
    """Standard error of a window mean."""
    width: int
    episodes: int
    first_step: int
    last_step: int
    note: str
    """What was left out (a reward or curriculum stage change, shortened first episodes)."""
    rise: float
    """The segment's largest rise: a rolling mean minus the lowest one before it."""
    peak: int
    """Index in `roll` of the top of that rise."""
    learned: float
    """The largest rise over the segment or the whole run, if larger (earlier stages count, so that the noise of
    a late, converged segment is judged against all the run learned)."""

    @property
    def span(self) -> float:
        return float(self.roll.max() - self.roll.min())


def _rise(roll: np.ndarray) -> tuple[float, int]:
    """(largest rise of a curve above its lowest point so far, index of its top). Not the global maximum: the
    first episodes of a locomotion run end in falls within a few steps and collect little penalty, so returns
    first sink as episodes lengthen; a maximum there is no learning."""
    gain = roll - np.minimum.accumulate(roll)
    i = int(np.argmax(gain))
    return float(gain[i]), i


def _segment(run: RunRecord) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of the full episodes (without the shortened first episodes of a randomized start), of those whose
    returns are comparable with the final ones (after the last change of reward or curriculum stage), and what
    was left out."""
    ep = run.episodes
    steps = ep["step"]
    keep = np.isfinite(ep["reward"]) & np.isfinite(steps)
    notes = []
    max_len = _episode_limit(run)
    if max_len and "length" in ep and "terminated" in ep:
        short = (ep["terminated"] == 0) & (ep["length"] < max_len - 1)
        if short.any():
            keep &= ~short
            notes.append(f"shortened episodes left out: {int(short.sum())}")
    start, why = -np.inf, ""
    last = float(np.nanmax(steps))
    # An episode logged within one episode's worth of steps after a reward change began before it.
    lag = (max_len or 0) * int((run.config.get("run") or {}).get("num_envs") or 0)
    for st in run.task.get("reward_stages") or []:
        s = st.get("step") if isinstance(st, dict) else None
        if isinstance(s, (int, float)) and s <= last and s + lag > start:
            start, why = float(s + lag), f"the rewards changed at step {int(s):,} (task.reward_stages)"
    stage = ep.get("curriculum_stage")
    if stage is not None and np.isfinite(stage).any():
        valid = np.flatnonzero(np.isfinite(stage))
        changes = valid[1:][np.diff(stage[valid]) != 0]
        if len(changes) and steps[changes[-1]] > start:
            start = float(steps[changes[-1]])
            why = f"curriculum stage {int(stage[changes[-1]])} began at step {int(start):,}"
    full = np.flatnonzero(keep)
    if start > -np.inf:
        keep &= steps >= start
        notes.append(f"only episodes since {why}")
    return full, np.flatnonzero(keep), "; ".join(notes)


def _episode_limit(run: RunRecord) -> int | None:
    """Control steps of a full episode, from the config (None where it does not say)."""
    task = run.task
    dt = run.meta.get("control_dt")
    if dt is None and "decimation" in task:
        dt = float((task.get("physics") or {}).get("timestep", 0.005)) * int(task["decimation"])
    seconds = task.get("episode_seconds")
    return int(round(float(seconds) / float(dt))) if dt and seconds else None


def return_curve(run: RunRecord) -> Curve | str:
    """The rolling mean of episode returns over the final segment, or why there is none."""
    if run.episodes is None or "reward" not in run.episodes or "step" not in run.episodes:
        return "no episode returns: episodes.csv is not there (or has no step and reward columns)"
    full, idx, note = _segment(run)
    n = len(idx)
    width = min(run.window, n // CURVE_WINDOWS)
    if width < MIN_EPISODES:
        return (f"{n} comparable episodes ({note or 'all of episodes.csv'}); a curve needs {CURVE_WINDOWS} windows "
                f"of {MIN_EPISODES}: too short to judge")
    r = run.episodes["reward"][idx]
    steps = run.episodes["step"][idx]
    kernel = np.ones(width) / width
    roll = np.convolve(r, kernel, mode="valid")
    rise, peak = _rise(roll)
    whole, _ = _rise(np.convolve(run.episodes["reward"][full], kernel, mode="valid"))
    spread = max(float(np.std(r[-width:], ddof=1)), float(np.std(r[peak:peak + width], ddof=1)))
    return Curve(roll=roll, pos=steps[width - 1:], noise=spread / math.sqrt(width), width=width, episodes=n,
                 first_step=int(steps[0]), last_step=int(steps[-1]), note=note, rise=rise, peak=peak,
                 learned=max(rise, whole))


def _collapse_numbers(c: Curve) -> dict:
    top, final = float(c.roll[c.peak]), float(c.roll[-1])
    drop = top - final
    return {"peak_window_mean": top, "peak_at_step": int(c.pos[c.peak]), "final_window_mean": final, "drop": drop,
            "rise": c.rise, "learned": c.learned, "drop_fraction": drop / c.learned if c.learned > 0 else 0.0,
            "noise": c.noise, "window": c.width, "episodes": c.episodes}


def _rose(c: Curve) -> bool:
    """Whether the segment's return rose beyond noise, by a real share of its range (RISE_SHARE)."""
    return c.rise > NOISE_SIGMAS * c.noise and c.rise >= RISE_SHARE * c.span


def _declined(c: Curve) -> bool:
    nums = _collapse_numbers(c)
    return _rose(c) and nums["drop"] > NOISE_SIGMAS * c.noise and nums["drop_fraction"] >= DECLINE_FRACTION


def _harder_terrain(run: RunRecord, since: int) -> str:
    """How the mean terrain level (a TensorBoard scalar ending in terrain_level) rose since step `since`; ''
    when there is none or it did not rise by a tenth of a level."""
    tag = next((t for t in sorted(run.scalars) if t.endswith("terrain_level")), None)
    if tag is None:
        return ""
    steps, values = run.scalars[tag]
    before = values[(steps <= since) & np.isfinite(values)]
    if not len(before) or not np.isfinite(values[-1]) or values[-1] < before[-1] + 0.1:
        return ""
    return f"{tag} rose from {before[-1]:.2f} to {values[-1]:.2f} since step {since:,}"


def collapse(run: RunRecord, fraction: float = COLLAPSE_FRACTION) -> Check:
    """The return rose and then collapsed: the final window's mean lost much of what the run learned."""
    name = "collapse"
    c = return_curve(run)
    if isinstance(c, str):
        return Check(name, NA, c)
    nums = {**_collapse_numbers(c), "threshold_fraction": fraction}
    tail = f"window {c.width} episodes, noise +-{c.noise:.2g}" + (f"; {c.note}" if c.note else "")
    if not _rose(c):
        return Check(name, PASS, f"the return never rose beyond noise (largest rise {c.rise:.3g} of a range "
                     f"{c.span:.3g}; {tail}): nothing to collapse from", numbers=nums)
    said = (f"rolling mean rose by {c.rise:.3g} to {nums['peak_window_mean']:.3g} at step {nums['peak_at_step']:,}, "
            f"final {nums['final_window_mean']:.3g}: lost {_pct(max(nums['drop_fraction'], 0.0))} of the "
            f"{c.learned:.3g} the run learned ({tail})")
    if nums["drop"] <= NOISE_SIGMAS * c.noise:
        return Check(name, PASS, said, numbers=nums)
    fix = (f"lower {_ppo(run, 'learning_rate')} or {_ppo(run, 'clip_range')}; the best policy is kept in best/ "
           "(--checkpoint best, with run.best_every) or an earlier checkpoint")
    harder = _harder_terrain(run, nums["peak_at_step"])
    if harder and nums["drop_fraction"] >= DECLINE_FRACTION:
        nums["terrain"] = harder
        return Check(name, WARN, f"{said}; but {harder}: harder ground lowers the return, so this may be no "
                     "collapse", "judge the policy by an evaluation (legkit eval) rather than the training return; "
                     + fix, nums)
    if nums["drop_fraction"] >= fraction:
        return Check(name, FAIL, f"{said} (>= {_pct(fraction)}: it collapsed)", fix, nums)
    if nums["drop_fraction"] >= DECLINE_FRACTION:
        return Check(name, WARN, f"{said} (>= {_pct(DECLINE_FRACTION)}: a decline)", fix, nums)
    return Check(name, PASS, said, numbers=nums)


def plateau(run: RunRecord, tail_fraction: float = PLATEAU_FRACTION, gain: float = PLATEAU_GAIN) -> Check:
    """No improvement over the last `tail_fraction` of the steps: the best was reached long before the end."""
    name = "plateau"
    c = return_curve(run)
    if isinstance(c, str):
        return Check(name, NA, c)
    if _declined(c):
        return Check(name, NA, "the return fell at the end: see collapse", numbers=_collapse_numbers(c))
    cut = c.first_step + (1.0 - tail_fraction) * (c.last_step - c.first_step)
    before = np.flatnonzero(c.pos <= cut)
    if not len(before) or before[-1] == len(c.roll) - 1:
        return Check(name, NA, f"the {c.episodes} comparable episodes end within one window of steps")
    at_cut, final = float(c.roll[before[-1]]), float(c.roll[-1])
    improvement = final - at_cut
    needed = max(gain * c.learned, NOISE_SIGMAS * c.noise)
    best = int(np.argmax(c.roll))
    nums = {"cut_step": int(cut), "mean_at_cut": at_cut, "final_window_mean": final, "improvement": improvement,
            "needed": needed, "learned": c.learned, "best_window_mean": float(c.roll[best]),
            "best_at_step": int(c.pos[best]), "noise": c.noise, "window": c.width, "episodes": c.episodes}
    said = (f"rolling mean {at_cut:.3g} at step {int(cut):,}, {final:.3g} at step {c.last_step:,}: {improvement:+.3g} "
            f"over the last {_pct(tail_fraction)} of the steps (needed {needed:.3g}: {_pct(gain)} of the "
            f"{c.learned:.3g} learned, or {NOISE_SIGMAS:g} noise); best {nums['best_window_mean']:.3g} at step "
            f"{nums['best_at_step']:,} (window {c.width}" + (f"; {c.note})" if c.note else ")"))
    if improvement >= needed:
        return Check(name, PASS, said, numbers=nums)
    return Check(name, WARN, f"{said}: a plateau", "more steps will not help: stop earlier (run.total_steps), or "
                 "change what is learned (reward weights, curriculum); if policy_std is small, raise "
                 f"{_ppo(run, 'ent_coef')}", nums)


STD_TAGS = ("train/std", "train/policy_std")
"""TensorBoard scalars of the policy's mean action std: SB3's (PPO, gSDE off) and legkit's EpisodeLogger's."""
STD_CAP_TAG = "schedule/action_std_cap"
"""TensorBoard scalar of the cap that ppo.action_std_cap holds the std under (legkit.train.callbacks.ActionStdCap)."""


def policy_std(run: RunRecord, low: float = STD_COLLAPSED, high: float = STD_EXPLODED) -> Check:
    """The policy's action std at the end of training: collapsed (< low) or exploded (> high)."""
    name = "policy_std"
    tag = next((t for t in STD_TAGS if t in run.scalars), None)
    if tag is None:
        return Check(name, NA, "no policy std: tb/ " + ("has no train/std" if run.scalars else "is not there"))
    steps, values = run.scalars[tag]
    ok = np.isfinite(values)
    if not ok.any():
        return Check(name, FAIL, f"{tag} is never finite", "see nan_stop", {"tag": tag})
    last, first = float(values[ok][-1]), float(values[ok][0])
    nums = {"tag": tag, "final": last, "initial": first, "min": float(values[ok].min()),
            "max": float(values[ok].max()), "step": int(steps[ok][-1]), "low": low, "high": high}
    said = (f"{tag} {last:.3g} at step {nums['step']:,} (started at {first:.3g}; range {nums['min']:.3g}-"
            f"{nums['max']:.3g})")
    cap = run.scalars.get(STD_CAP_TAG)
    if last < low and cap is not None and len(cap[1]) and last >= 0.95 * float(cap[1][-1]):  # at the cap
        nums["cap"] = float(cap[1][-1])
        return Check(name, PASS, f"{said}: held at ppo.action_std_cap's {nums['cap']:.3g}, lowered on purpose",
                     numbers=nums)
    if last < low:
        return Check(name, FAIL, f"{said}: collapsed (< {low:g})", f"raise {_ppo(run, 'ent_coef')} or "
                     f"{_ppo(run, 'log_std_init')}; lower {_ppo(run, 'learning_rate')}", nums)
    if last > high:
        return Check(name, FAIL, f"{said}: exploded (> {high:g}), actions are clipped noise",
                     f"lower {_ppo(run, 'ent_coef')} or {_ppo(run, 'learning_rate')}; a std that grows means the "
                     "reward gives no gradient (see reward_dominance)", nums)
    return Check(name, PASS, said, numbers=nums)


def action_saturation(run: RunRecord, threshold: float = ACTION_SATURATION) -> Check:
    """Mean |action| close to 1: actions pinned at the clip bounds."""
    name = "action_saturation"
    is_residual, _, _ = _residual(run)
    if is_residual:
        return Check(name, NA, "a residual task: the action is the residual, see residual_usage")
    a, source = _action_source(run)
    if a is None:
        return Check(name, NA, f"no mean |action|: no evaluation and fewer than {MIN_EPISODES} episodes in "
                     "episodes.csv")
    nums = {"mean_abs_action": a, "threshold": threshold}
    said = f"mean |action| {a:.3f} of the clip bound 1 [{source}]"
    if a <= threshold:
        return Check(name, PASS, said, numbers=nums)
    pens = [t for t in ("control_cost", "torques", "energy", "action_rate") if t in run.rewards]
    scale = run.task.get("action_scale")
    fix = "raise task.action_scale" + (f" (now {scale:g})" if scale is not None else "") + \
        " if the task needs more range; else " + \
        (f"strengthen {_key(run, pens[0])}" if pens else "add an action penalty (task.rewards.torques)")
    return Check(name, WARN, f"{said} (> {threshold:g}): saturated, bang-bang", fix, nums)


def _residual(run: RunRecord) -> tuple[bool, str, float | None]:
    """(is the policy a residual over a scripted gait, why, the residual's scale in rad).

    Residual: task.gait is set (legkit.gaits: joint target = gait target + task.action_scale x action), or the
    task's name says so. The scale is task.action_scale (or a task.residual_scale, where a config has one)."""
    task_name = str(run.config.get("task_name") or run.meta.get("task") or "")
    gait = run.task.get("gait")
    scale = run.task.get("residual_scale", run.task.get("action_scale"))
    scale = float(scale) if isinstance(scale, (int, float)) else None
    if gait:
        kind = f" ({gait['type']})" if isinstance(gait, dict) and "type" in gait else ""
        return True, f"task.gait{kind} is set", scale
    if "residual" in task_name.lower():
        return True, f"the task is {task_name}", scale
    return False, "", scale


def residual_usage(run: RunRecord, unused: float = RESIDUAL_UNUSED, saturated: float = RESIDUAL_SATURATED) -> Check:
    """For a residual policy: mean |residual| (= mean |action|, in units of its scale) tiny or at its bounds."""
    name = "residual_usage"
    is_residual, why, scale = _residual(run)
    if not is_residual:
        return Check(name, NA, "not a residual task (no task.gait)")
    a, source = _action_source(run)
    if a is None:
        return Check(name, NA, f"{why}, but no mean |action|: no evaluation and fewer than {MIN_EPISODES} episodes")
    nums = {"mean_abs_residual": a, "residual_scale": scale, "unused": unused, "saturated": saturated}
    if source.startswith("episodes.csv") and unused <= a <= saturated:
        return Check(name, NA, f"{why}; mean |residual| {a:.3f} in training [{source}]: exploration noise alone "
                     "gives that much, so use cannot be told from noise", f"evaluate the run: legkit eval {run.label}",
                     nums)
    said = f"{why}; mean |residual| {a:.3f} of its scale" + (f" ({scale:g} rad)" if scale is not None else "") + \
        f" [{source}]"
    key = "task.action_scale, the residual's scale" + (f" (now {scale:g})" if scale is not None else "")
    if a < unused:
        pens = ", ".join(f"{t} {_pct(s)}" for t, s in _penalty_shares(run)[:2])
        term = _task_term(run)
        return Check(name, FAIL, f"{said} (< {unused:g}): the residual is unused, the policy is the gait",
                     "weaken the penalties on the residual" + (f" ({pens})" if pens else " (torques, action_rate)") +
                     (f" and raise {_key(run, term)}" if term else "") + f"; check that {key} lets it help", nums)
    if a > saturated:
        return Check(name, WARN, f"{said} (> {saturated:g}): saturated, overriding the gait",
                     f"raise {key}, or fix the gait (it is being fought)", nums)
    return Check(name, PASS, said, numbers=nums)


def _held_by(folder: Path) -> int | None:
    """The pid training `folder` now, from its train.lock (legkit.train.lock), if that process lives."""
    lock = folder / "train.lock"
    try:
        pid = int(lock.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _nan_records(run: RunRecord) -> list[str]:
    """Where the run's files say a NaN stopped training: meta.json (a tune trial's reason) and training logs
    (RUN/*.log, and a seed group's PARENT/logs/<seed>.log)."""
    found = []

    def strings(x, path):
        if isinstance(x, dict):
            for k, v in x.items():
                yield from strings(v, f"{path}.{k}")
        elif isinstance(x, list):
            for i, v in enumerate(x):
                yield from strings(v, f"{path}[{i}]")
        elif isinstance(x, str):
            yield path, x

    for where, text in strings({k: v for k, v in run.meta.items() if k != "command"}, "meta.json"):
        if any(m in text for m in NAN_MARKERS):
            found.append(f"{where}: {text.splitlines()[0][:160]}")
    logs = [p for p in sorted(run.folder.glob("*.log")) if p.name != "mujoco.log"]
    logs.append(run.folder.parent / "logs" / f"{run.folder.name}.log")
    for log in logs:
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if any(m in line for m in NAN_MARKERS):
                    found.append(f"{log.name}: {line.strip()[:160]}")
                    break
    return found


def nan_stop(run: RunRecord) -> Check:
    """Training stopped on NaN or non-finite values (or has non-finite values in what it logged)."""
    name = "nan_stop"
    fix = (f"resume from the last good checkpoint with a smaller step: legkit train --resume {run.label} --set "
           f"ppo.learning_rate=... (now {(run.config.get('ppo') or {}).get('learning_rate', '?')}) or a lower "
           "ppo.max_grad_norm")
    records = _nan_records(run)
    if records:
        return Check(name, FAIL, "; ".join(records), fix, {"records": records})
    bad_tb = []
    for tag, (steps, values) in sorted(run.scalars.items()):
        off = np.flatnonzero(~np.isfinite(values))
        if len(off):
            bad_tb.append(f"{tag} at step {int(steps[off[0]]):,}")
    if bad_tb or run.nonfinite_cells:
        found = [f"tb/ {x}" for x in bad_tb[:3]] + [f"episodes.csv {x}" for x in run.nonfinite_cells[:3]]
        return Check(name, FAIL, "non-finite values logged: " + ", ".join(found), fix,
                     {"tb": bad_tb, "episodes_csv": run.nonfinite_cells[:20]})
    counters = {t: float(run.scalars[t][1][-1]) for t in ("stats/bad_actions", "stats/bad_physics")
                if t in run.scalars}
    finished = run.meta.get("finished")
    step, total = run.meta.get("step"), (run.config.get("run") or {}).get("total_steps")
    nums = {"finished": finished, "step": step, "total_steps": total, **counters}
    if finished is False and not (run.folder / MODEL).exists():
        kept = checkpoints(run.folder)
        logged = max((int(x[0][-1]) for x in run.scalars.values() if len(x[0])), default=None)
        nums.update(last_checkpoint=kept[-1].name if kept else None, last_logged_step=logged)
        where = (f"last logged at step {logged:,}" if logged is not None else "nothing logged") + \
            (f", last checkpoint {kept[-1].name}" if kept else ", no checkpoint")
        pid = _held_by(run.folder)
        if pid is not None:
            return Check(name, NA, f"being trained now (pid {pid}; {where})", numbers=nums)
        of = f" its {total:,} steps" if isinstance(total, int) else " the end"
        return Check(name, WARN, f"training stopped before{of} ({where}) without a final model; the run "
                     "folder does not record why (a NaN stop prints 'NaN guard stopped training' on the console)",
                     f"read the training's console output; {fix}", nums)
    resets = {t.split("/")[1]: int(v) for t, v in counters.items() if v > 0}
    if resets:
        return Check(name, WARN, "robots reset for non-finite or exploding values, training went on: " +
                     ", ".join(f"{k} {v}" for k, v in resets.items()), "see mujoco.log; a smaller "
                     "task.physics.timestep or gentler task.action_scale steadies the physics", nums)
    at = f"step {step:,}" if isinstance(step, int) else "an unknown step"
    said = (f"meta.json: finished at {at}" if finished else f"meta.json: {at}") + \
           (", no non-finite value in tb/ or episodes.csv" if run.scalars or run.episodes is not None else "")
    return Check(name, PASS, said, numbers=nums)


THRESHOLDS = ("MIN_EPISODES", "MIN_COMMAND", "STAND_STILL_FRACTION", "SLOW_FRACTION", "HIGH_SURVIVAL",
              "BACKWARD_TOLERANCE", "LOW_HEIGHT_FRACTION", "CROUCH_FRACTION", "DOMINANCE_SHARE", "CURVE_WINDOWS",
              "NOISE_SIGMAS", "COLLAPSE_FRACTION", "DECLINE_FRACTION", "RISE_SHARE", "PLATEAU_FRACTION", "PLATEAU_GAIN",
              "STD_COLLAPSED", "STD_EXPLODED", "ACTION_SATURATION", "RESIDUAL_UNUSED", "RESIDUAL_SATURATED")
"""The constants above that a diagnosis records in its JSON."""

CHECKS: tuple[Callable[[RunRecord], Check], ...] = (
    stands_still, walks_backwards, lies_down, reward_dominance, collapse, plateau, policy_std, action_saturation,
    residual_usage, nan_stop)
"""Every check, in the order of the table."""


# -- the diagnosis ---------------------------------------------------------------------------------

def available(run: RunRecord) -> tuple[list[str], list[str]]:
    """(what was read, what was not there)."""
    have, missing = [], []
    if run.eval is not None:
        have.append(run.eval_source)
    else:
        missing.append("an evaluation (eval.json, eval-final.json or evaluations.csv)")
    if run.episodes is not None:
        have.append(f"episodes.csv ({len(run.episodes['step'])} episodes)")
    else:
        missing.append("episodes.csv" + (" (no episodes yet)" if (run.folder / "episodes.csv").exists() else ""))
    if run.scalars:
        have.append(f"tb/ ({len(run.scalars)} scalars)")
    else:
        missing.append("tb/ (TensorBoard scalars)")
    have.append("config.yaml")
    (have if run.meta else missing).append("meta.json")
    return have, missing


def diagnose(folder: Path, label: str, window: int = DEFAULT_WINDOW) -> dict:
    """Run every check on the run in `folder` (`label`: how the user named it); returns the JSON-ready result."""
    run = load_record(folder, label, window)
    checks = [check(run) for check in CHECKS]
    have, missing = available(run)
    return {
        "run": label, "folder": str(folder), "task": run.config.get("task_name") or run.meta.get("task"),
        "robot": run.task.get("robot") or run.meta.get("robot"), "step": run.meta.get("step"), "window": window,
        "sources": have, "not_available": missing,
        "checks": [asdict(c) for c in checks],
        "failed": [c.name for c in checks if c.verdict == FAIL],
        "warned": [c.name for c in checks if c.verdict == WARN],
        "passed": not any(c.verdict == FAIL for c in checks),
        "thresholds": {k: globals()[k] for k in THRESHOLDS},
    }


def format_diagnosis(result: dict, width: int = 150) -> str:
    """The table: check, verdict, evidence, suggestion (cells wrapped), then a one-line summary."""
    import textwrap

    w_name = max(len(c["name"]) for c in result["checks"])
    w_v = 7
    rest = max(60, width - w_name - w_v - 6)
    w_ev, w_fix = rest * 3 // 5, rest - rest * 3 // 5
    step = f", {result['step']:,} steps" if isinstance(result.get("step"), int) else ""
    lines = [f"diagnosis of {result['run']} ({result['task']} on {result['robot']}{step})",
             f"read: {', '.join(result['sources'])}"]
    if result["not_available"]:
        lines.append(f"not available: {', '.join(result['not_available'])}")
    lines.append(f"{'check':<{w_name}}  {'verdict':<{w_v}}  {'evidence':<{w_ev}}  suggestion")
    for c in result["checks"]:
        ev = textwrap.wrap(c["evidence"], w_ev) or [""]
        fix = textwrap.wrap(c["suggestion"], w_fix)
        for i in range(max(len(ev), len(fix))):
            head = (c["name"], c["verdict"].upper() if c["verdict"] in (FAIL, WARN) else c["verdict"]) if i == 0 \
                else ("", "")
            lines.append(f"{head[0]:<{w_name}}  {head[1]:<{w_v}}  {(ev[i] if i < len(ev) else ''):<{w_ev}}  "
                         f"{fix[i] if i < len(fix) else ''}".rstrip())
    counts = {v: sum(c["verdict"] == v for c in result["checks"]) for v in (PASS, WARN, FAIL, NA)}
    verdict = "FAILED: " + ", ".join(result["failed"]) if result["failed"] else "no failure found"
    lines.append(f"diagnosis {verdict} ({', '.join(f'{n} {v}' for v, n in counts.items())})")
    return "\n".join(lines)
