"""SB3 callbacks: per-term logging + episodes.csv, checkpoints, schedules, a critic warm-up, a test-only crash."""

from __future__ import annotations

import csv
import os
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from legkit import LegkitError
from legkit.envs.vec_env import LegkitVecEnv
from legkit.tasks.terms import staged_rewards
from legkit.train.checkpoints import atomic_write, save_checkpoint
from legkit.train.normalization import normalizer_statistics
from legkit.train.policies import actor_parameters


def current_rss_mb() -> float:
    """Resident memory of this process now (MB), from /proc; the peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class EpisodeLogger(BaseCallback):
    """After each rollout: every reward term's episode sum as reward/<term>, fall rate, steps/s,
    bad-action and bad-physics counters to TensorBoard; one row per episode to episodes.csv."""

    def __init__(self, env: LegkitVecEnv, csv_path: Path):
        super().__init__()
        self.env = env
        self.csv_path = csv_path
        self._file = None
        self._writer = None
        self._t_last = 0.0
        self._steps_last = 0

    def _on_training_start(self) -> None:
        names = self.env.batch.rewards.names
        if self.csv_path.exists():
            drop_partial_line(self.csv_path)  # a process killed mid-write left half a row
            # A resume trains again what was logged after its checkpoint: those rows would be there twice.
            dropped = drop_rows_after(self.csv_path, self.num_timesteps)
            if dropped:
                print(f"{self.csv_path.name}: dropped {dropped} episodes logged after step {self.num_timesteps}, "
                      "which is trained again from its checkpoint")
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._file = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(["step", "reward", "length", "time", "terminated", "mean_height", "mean_action",
                                   "curriculum_stage", *names])
        self._t_last, self._steps_last = time.perf_counter(), self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        episodes = self.env.drain_completed()
        names = self.env.batch.rewards.names
        staged = self.env.batch.curriculum is not None
        for ep in episodes:  # the stage each episode started in
            self._writer.writerow([self.num_timesteps, f"{ep['return']:.4f}", ep["length"], ep["time"],
                                   int(ep["terminated"]), f"{ep['mean_height']:.4f}", f"{ep['mean_action']:.4f}",
                                   ep["stage"] if staged else "", *(f"{ep['terms'][n]:.4f}" for n in names)])
        self._file.flush()
        cur = self.env.batch.curriculum
        if cur is not None:
            for name, value in cur.scalars().items():
                self.logger.record(f"curriculum/{name}", value)
        for name, value in self.env.batch.ground.scalars().items():
            self.logger.record(f"curriculum/{name}", value)
        if self.env.batch.gait is not None:  # leg targets of the scripted gait out of reach, clipped (cumulative)
            self.logger.record("stats/gait_ik_clipped", self.env.batch.gait.clipped_count)
        if episodes:
            self.logger.record("episode/mean_height", float(np.mean([ep["mean_height"] for ep in episodes])))
            self.logger.record("episode/mean_action", float(np.mean([ep["mean_action"] for ep in episodes])))
            for n in names:
                self.logger.record(f"reward/{n}", float(np.mean([ep["terms"][n] for ep in episodes])))
            self.logger.record("episode/fall_rate", float(np.mean([ep["terminated"] for ep in episodes])))
            self.logger.record("episode/length_s", float(np.mean([ep["length"] for ep in episodes])) * self.env.batch.dt)
        now = time.perf_counter()
        self.logger.record("perf/steps_per_second", (self.num_timesteps - self._steps_last) / max(now - self._t_last, 1e-9))
        self._t_last, self._steps_last = now, self.num_timesteps
        self.logger.record("perf/rss_mb", current_rss_mb())
        self.logger.record("stats/bad_actions", self.env.batch.bad_action_count)
        self.logger.record("stats/bad_physics", self.env.batch.bad_physics_count)
        for name, n in self.env.batch.termination_counts.items():  # cumulative, as the two above
            self.logger.record(f"termination/{name}", n)
        self.logger.record("train/policy_std", float(np.exp(self.model.policy.log_std.detach().cpu().numpy()).mean()))

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class NaNGuard(BaseCallback):
    """Stop training at the first non-finite observation, reward, loss or network weight.

    Checked every step (observations and rewards) and after every update (losses and weights).
    When tripped, training stops at once, `reason` says what and where, and the Checkpointer
    and the trainer write nothing more: the last good checkpoint stays the latest.
    """

    LOSSES = ("train/loss", "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss", "train/approx_kl")

    def __init__(self):
        super().__init__()
        self.reason: str | None = None

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def _trip(self, what: str) -> bool:
        if self.reason is None:
            self.reason = f"non-finite {what} at step {self.num_timesteps}"
        return False

    def _on_step(self) -> bool:
        if self.tripped:
            return False
        obs, rewards = self.locals.get("new_obs"), self.locals.get("rewards")
        if obs is not None and not np.isfinite(obs).all():
            return self._trip(f"observation (robots {np.flatnonzero(~np.isfinite(obs).all(axis=1))[:5].tolist()})")
        if rewards is not None and not np.isfinite(rewards).all():
            return self._trip(f"reward (robots {np.flatnonzero(~np.isfinite(rewards))[:5].tolist()})")
        return True

    def _on_rollout_start(self) -> None:
        # Runs after each update: the losses just logged and the weights they produced.
        values = self.model.logger.name_to_value
        for key in self.LOSSES:
            if key in values and not np.isfinite(values[key]):
                self._trip(f"training loss {key} = {values[key]}")
                return
        self.check_weights()

    def check_weights(self) -> bool:
        """True when every network weight is finite; trips the guard otherwise."""
        for name, param in self.model.policy.named_parameters():
            if not torch.isfinite(param).all():
                self._trip(f"network weight {name}")
                return False
        return True


class Checkpointer(BaseCallback):
    """Every `every` steps, save model + VecNormalize + step count atomically under checkpoints/,
    keeping the newest `keep` (0: all).

    With `stop_at` (a chunk of supervised training), the first checkpoint due at or past that step,
    and before `end` where training ends anyway, waits for the update of its rollout: it is saved
    when the next rollout starts, and training stops at that rollout's first step (`stopped`). So the
    next process continues from the updated policy, and a chunked run makes every update an
    uninterrupted one makes.
    """

    def __init__(self, folder: Path, every: int, meta: Callable[[], dict], guard: NaNGuard | None = None,
                 keep: int = 0, stop_at: int | None = None, end: int | None = None):
        super().__init__()
        self.folder = folder
        self.every = every
        self.meta = meta
        self.guard = guard
        self.keep = keep
        self.stop_at, self.end = stop_at, end
        self.stopped = False
        """True once the chunk's checkpoint is written and training was stopped for it."""
        self.saved_step: int | None = None
        """The step of the latest checkpoint this callback wrote."""
        self._next = 0
        self._stop_pending = False

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _save(self) -> bool:
        if self.guard is not None and not self.guard.check_weights():
            return False
        save_checkpoint(self.folder, self.num_timesteps, self.model, self.model.get_vec_normalize_env(), self.meta(),
                        self.keep)
        self.saved_step = self.num_timesteps
        return True

    def _on_step(self) -> bool:
        if self.guard is not None and self.guard.tripped:
            return False  # never write a poisoned checkpoint
        if self.stopped:
            return False
        if self.num_timesteps >= self._next:
            step = self.num_timesteps
            self._next = (step // self.every + 1) * self.every
            if self.stop_at is not None and step >= self.stop_at and (self.end is None or step < self.end):
                self._stop_pending = True  # saved after this rollout's update, in _on_rollout_start
                return True
            return self._save()
        return True

    def _on_rollout_start(self) -> None:
        if self._stop_pending:  # the update is made: save, and stop at the first step of this rollout
            self._stop_pending = False
            self.stopped = self._save()


def drop_rows_after(path: Path, step: int) -> int:
    """Rewrite the csv at `path` (header, then rows whose first column is the step) without the rows of steps
    after `step`, atomically (a new file renamed over it); returns how many were dropped (0: left as it was)."""
    header, *rows = path.read_bytes().splitlines(keepends=True) or [b""]

    def after(row: bytes) -> bool:
        first = row.split(b",", 1)[0]
        return first.isdigit() and int(first) > step

    keep = [row for row in rows if not after(row)]
    if len(keep) < len(rows):
        atomic_write(path, header + b"".join(keep))
    return len(rows) - len(keep)


def drop_partial_line(path: Path) -> None:
    """Cut an append-only text file back to its last complete line."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = 0
        for start in range(size, 0, -65536):  # the last newline, read backwards in blocks
            lo = max(0, start - 65536)
            f.seek(lo)
            block = f.read(start - lo)
            if b"\n" in block:
                keep = lo + block.rindex(b"\n") + 1
                break
        f.truncate(keep)


CRASH_ENV = "LEGKIT_TEST_CRASH_AT"
"""For tests of supervised training: `STEP[:SIGNAL],...` (SIGNAL e.g. KILL, SEGV; default KILL)."""


def injected_crashes(restarts: int) -> InjectedCrash | None:
    """The crash that LEGKIT_TEST_CRASH_AT plans for a process started after `restarts` restarts, if any.

    Entry i belongs to the process that runs after i restarts (meta.json `restarts`), so that each
    crash happens once even though the restarted process trains past the same steps again."""
    spec = os.environ.get(CRASH_ENV, "").strip()
    if not spec:
        return None
    plans = []
    for item in spec.split(","):
        step, _, name = item.strip().partition(":")
        sig = getattr(signal, f"SIG{name.strip().upper() or 'KILL'}", None)
        if not step.strip().isdigit() or not isinstance(sig, signal.Signals):
            raise LegkitError(f"{CRASH_ENV}={spec}: '{item}' is not STEP or STEP:SIGNAL (e.g. 1500 or 1500:SEGV)")
        plans.append((int(step), sig))
    return InjectedCrash(*plans[restarts]) if restarts < len(plans) else None


class InjectedCrash(BaseCallback):
    """Test hook: the process kills itself with `sig` at the first step at or past `step` (no core file)."""

    def __init__(self, step: int, sig: signal.Signals):
        super().__init__()
        self.step, self.sig = step, sig

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.kill(os.getpid(), self.sig)
        return True


class TorchThreads(BaseCallback):
    """One torch thread while collecting (MuJoCo's threads own the cores then), `update` threads
    for the gradient updates, when the physics is idle."""

    def __init__(self, update: int):
        super().__init__()
        self.update = update

    def _on_rollout_start(self) -> None:
        torch.set_num_threads(1)

    def _on_rollout_end(self) -> None:
        torch.set_num_threads(self.update)

    def _on_training_end(self) -> None:
        torch.set_num_threads(self.update)

    def _on_step(self) -> bool:
        return True


class LinearSchedule(BaseCallback):
    """Move a model attribute (e.g. ent_coef) linearly from `start` to `end` over `total` steps."""

    def __init__(self, attr: str, start: float, end: float, total: int):
        super().__init__()
        self.attr, self.start, self.end, self.total = attr, start, end, total

    def _on_rollout_start(self) -> None:
        frac = min(1.0, self.num_timesteps / max(1, self.total))
        value = self.start + frac * (self.end - self.start)
        setattr(self.model, self.attr, value)
        self.logger.record(f"schedule/{self.attr}", value)

    def _on_step(self) -> bool:
        return True


class ActionStdCap(BaseCallback):
    """Hold each action's std at or under a cap moving geometrically from `start` to `end` over `total` steps: the
    policy's log std is clamped before every rollout, so every rollout explores under the cap (ppo.action_std_cap)."""

    def __init__(self, start: float, end: float, total: int):
        super().__init__()
        self.start, self.end, self.total = start, end, total

    def cap(self, steps: int) -> float:
        frac = min(1.0, steps / max(1, self.total))
        return float(self.start * (self.end / self.start) ** frac)

    def _on_rollout_start(self) -> None:
        cap = self.cap(self.num_timesteps)
        with torch.no_grad():
            self.model.policy.log_std.clamp_(max=float(np.log(cap)))
        self.logger.record("schedule/action_std_cap", cap)

    def _on_step(self) -> bool:
        return True


class CriticWarmup(BaseCallback):
    """Fit only the critic in the updates that follow the rollouts ending at or before step `until`.

    In those updates the actor's parameters (legkit.train.policies.actor_parameters: everything outside the
    critic, the log std included) take no gradient, so PPO's loss moves only the value function: the first
    real updates of a policy that already acts well (a cloned one) are then not driven by a random critic's
    advantages. Every warm-up rollout logs `critic_warmup/value_loss`, the critic's mean squared error on that
    rollout before its update (its returns minus the values it predicted while collecting it, reward-normalized
    units as PPO's train/value_loss); `value_losses` keeps (step, loss). `episode_returns` keeps the (raw)
    returns of the training episodes that ended during the warm-up. `on_end()` is called once, right after the
    last warm-up update (before the next rollout, or at the end of training). A resume past `until` does nothing.
    """

    def __init__(self, until: int, on_end: Callable[[], None] | None = None):
        super().__init__()
        self.until, self.on_end = int(until), on_end
        self.value_losses: list[tuple[int, float]] = []
        self.episode_returns: list[float] = []
        self.ended = False
        self._actor: list[torch.nn.Parameter] = []

    def _on_training_start(self) -> None:
        self._actor = actor_parameters(self.model.policy)
        self.ended = self.num_timesteps >= self.until

    def _freeze(self, frozen: bool) -> None:
        for p in self._actor:
            p.requires_grad_(not frozen)

    def _on_step(self) -> bool:
        if not self.ended:
            for info in self.locals.get("infos", ()):
                if "episode" in info:
                    self.episode_returns.append(float(info["episode"]["r"]))
        return True

    def _on_rollout_end(self) -> None:
        warm = self.num_timesteps <= self.until
        self._freeze(warm)
        if warm:
            buf = self.model.rollout_buffer
            loss = float(np.mean(np.square(buf.returns - buf.values)))
            self.value_losses.append((self.num_timesteps, loss))
            self.logger.record("critic_warmup/value_loss", loss)

    def _finish(self) -> None:
        if not self.ended and self.value_losses and self.num_timesteps >= self.until:
            self.ended = True
            self._freeze(False)
            if self.on_end is not None:
                self.on_end()

    def _on_rollout_start(self) -> None:
        self._finish()

    def _on_training_end(self) -> None:
        self._finish()
        self._freeze(False)


class EstimatorTraining(BaseCallback):
    """Train the actor's state estimator (AsymmetricActorCriticPolicy with `estimate_indices`) by regression.

    At the end of each rollout the (normalized) observations are kept; at the start of the next rollout,
    after PPO's update, the estimator is fit for `epochs` passes over them: its inputs are the actor's
    observation entries, its targets the privileged entries `estimate_indices`, in VecNormalize's units.
    Fitting between PPO's update and the next rollout keeps each rollout and its update on one estimator,
    so PPO's probability ratios stay exact. Logs `estimator/loss` (mean squared error, normalized units) and
    `estimator/rmse` (root mean squared error per target entry, in the target's own units).
    """

    def __init__(self, learning_rate: float = 1e-3, epochs: int = 4, batch_size: int = 2048):
        super().__init__()
        self.learning_rate, self.epochs, self.batch_size = learning_rate, epochs, batch_size
        self._obs: np.ndarray | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def _on_training_start(self) -> None:
        params = self.model.policy.estimator_parameters()
        if not params:
            raise LegkitError("EstimatorTraining needs a policy with a state estimator (ppo.estimator)")
        self._optimizer = torch.optim.Adam(params, lr=self.learning_rate)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buf = self.model.rollout_buffer.observations
        self._obs = np.array(buf.reshape(-1, buf.shape[-1]), dtype=np.float32)

    def _on_rollout_start(self) -> None:
        if self._obs is not None:
            self.fit(self._obs)
            self._obs = None

    def fit(self, obs: np.ndarray) -> float:
        """Fit the estimator on normalized observations `obs` (samples, obs_dim); returns the last epoch's MSE."""
        policy = self.model.policy
        extractor = policy.pi_features_extractor
        x_all = torch.as_tensor(obs[:, policy.actor_indices])
        y_all = torch.as_tensor(obs[:, policy.estimate_indices])
        rng = np.random.default_rng(self.num_timesteps)
        policy.set_training_mode(True)
        for _ in range(self.epochs):
            loss_sum, count = 0.0, 0
            for batch in np.array_split(rng.permutation(len(obs)), max(1, len(obs) // self.batch_size)):
                loss = torch.nn.functional.mse_loss(extractor.estimate(x_all[batch]), y_all[batch])
                self._optimizer.zero_grad()
                loss.backward()
                self._optimizer.step()
                loss_sum, count = loss_sum + float(loss.detach()) * len(batch), count + len(batch)
        # no stale gradients for PPO's gradient clipping, which norms over every policy parameter
        self._optimizer.zero_grad(set_to_none=True)
        policy.set_training_mode(False)
        mse = loss_sum / max(1, count)
        self.logger.record("estimator/loss", mse)
        # back to the target's units: normalized error x the normalizer's std, per entry
        with torch.no_grad():
            err = (extractor.estimate(x_all) - y_all).numpy()
        _, std = normalizer_statistics(self.model.get_vec_normalize_env(), policy.estimate_indices)
        self.logger.record("estimator/rmse", float(np.sqrt(np.mean(np.square(err * std)))))
        return mse


def sync_symmetry_statistics(policy, vecnorm) -> None:
    """Give a symmetric policy (an AsymmetricActorCriticPolicy with a mirror) VecNormalize's statistics of its
    actor's inputs, through which it reflects normalized inputs; any other policy is left alone."""
    if getattr(policy, "mirror", None) is not None:
        policy.pi_features_extractor.set_statistics(*normalizer_statistics(vecnorm, policy.actor_indices))


class SymmetryStatistics(BaseCallback):
    """At every rollout start, copy VecNormalize's statistics of the actor's inputs into a symmetric policy,
    which reflects normalized inputs through raw units; the rollout and the update after it use one copy."""

    def _on_rollout_start(self) -> None:
        sync_symmetry_statistics(self.model.policy, self.model.get_vec_normalize_env())

    def _on_step(self) -> bool:
        return True


class RewardStages(BaseCallback):
    """Set the reward parameters of `task.reward_stages` when training reaches each stage's step (at the start
    of a rollout; on resume, every stage already reached at once). Logs `reward_stage` (stages in force)."""

    def __init__(self, env: LegkitVecEnv):
        super().__init__()
        self.env = env
        self.in_force = -1

    def _on_rollout_start(self) -> None:
        task = self.env.batch.task
        reached = sum(1 for st in task.reward_stages if st.step <= self.num_timesteps)
        if reached != self.in_force:
            self.env.batch.rewards.set_params(staged_rewards(task.rewards, task.reward_stages, self.num_timesteps))
            self.in_force = reached
        self.logger.record("reward_stage", reached)

    def _on_step(self) -> bool:
        return True
