"""A decaying behaviour-cloning term for fine-tuning a cloned policy with PPO or RecurrentPPO.

The term is the MSE between the policy's mean action and the demonstrated action on a random minibatch of
demo (obs, action) pairs, weighted by a coefficient that falls linearly from `coef` to 0 over
`decay_steps` environment steps.

Why extra gradient steps, not a term in PPO's loss: PPO.train() builds and steps its loss inside one
method with no hook, so a callback cannot add to it; adding it would mean copying train(). Instead, after
every PPO update, `BCRegularizer.update` takes `steps` Adam steps of the BC loss on the actor's parameters
(those the loss reaches: features extractor, LSTM, policy net, action net; never the critic or log std).
It has its own Adam whose learning rate is `lr * coefficient`: scaling the loss instead would do nothing
under Adam, which divides by the gradient's own scale.

Two ways to switch it on, doing the same thing:
    BCCallback(regularizer)         an SB3 callback: the model stays a plain PPO / RecurrentPPO (what legkit's
                                    trainer builds; pass it in extra_callbacks), loadable with PPO.load
    PPOWithBC(..., bc=regularizer)  a PPO subclass whose train() calls PPO.train() and then the BC steps;
                                    the regularizer is not saved, so its model.zip loads with plain PPO.load

Demo observations are normalized, at every update, with the model's VecNormalize as it is then (its
statistics move during fine-tuning); without a VecNormalize they go to the policy raw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy

from legkit import LegkitError
from legkit.imitate.demos import Demos

Normalize = Callable[[np.ndarray], np.ndarray]


class BCRegularizer:
    """Decaying BC gradient steps on a policy's actor, from the demonstrations `demos`.

    coef: coefficient at the start (multiplies the learning rate `lr` of the BC steps); decay_steps: env steps
    over which it falls linearly to 0, counted from `start_step` (None: the step count when training starts);
    steps: Adam steps per PPO update; batch_size: demo samples per step (for a recurrent policy,
    batch_size // seq_len windows of seq_len consecutive steps of one episode, run from a zero LSTM state,
    the first `burn_in` steps of each window not counted in the loss: they rebuild the state).
    """

    def __init__(self, demos: Demos, coef: float = 1.0, decay_steps: int = 1_000_000, steps: int = 10,
                 batch_size: int = 256, lr: float = 1e-3, seq_len: int = 32, burn_in: int | None = None,
                 start_step: int | None = None, seed: int = 0):
        if coef < 0 or decay_steps < 1 or steps < 0 or batch_size < 1 or lr <= 0 or seq_len < 1:
            raise LegkitError("BCRegularizer: need coef >= 0, decay_steps >= 1, steps >= 0, batch_size >= 1, lr > 0 "
                              f"and seq_len >= 1; got {coef}, {decay_steps}, {steps}, {batch_size}, {lr}, {seq_len}")
        self.obs, self.action = demos.obs, demos.action
        self.coef, self.decay_steps, self.steps, self.batch_size, self.lr = coef, decay_steps, steps, batch_size, lr
        self.seq_len = seq_len
        self.burn_in = seq_len // 2 if burn_in is None else burn_in
        if not 0 <= self.burn_in < seq_len:
            raise LegkitError(f"BCRegularizer: burn_in must be in [0, seq_len = {seq_len}), got {self.burn_in}")
        # rows where a window of seq_len steps inside one episode can start
        starts = [np.arange(a, b - seq_len + 1) for _, a, b in demos.episodes() if b - a >= seq_len]
        self.window_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        self.start_step = start_step
        self.rng = np.random.default_rng(seed)
        self._opt: torch.optim.Adam | None = None
        self._policy: ActorCriticPolicy | None = None

    def begin(self, num_timesteps: int) -> None:
        """Start the decay at `num_timesteps` unless it has started already."""
        if self.start_step is None:
            self.start_step = int(num_timesteps)

    def coefficient(self, num_timesteps: int) -> float:
        """coef * (1 - elapsed / decay_steps), at least 0; 0 before start_step (e.g. during a critic warm-up)."""
        elapsed = num_timesteps - (self.start_step if self.start_step is not None else num_timesteps)
        if elapsed < 0:
            return 0.0
        return self.coef * max(0.0, 1.0 - elapsed / self.decay_steps)

    def sample(self, recurrent: bool) -> tuple[np.ndarray, np.ndarray]:
        """A random demo minibatch of raw obs and actions: (batch, dim), or (windows, seq_len, dim) if recurrent."""
        if not recurrent:
            rows = self.rng.integers(0, len(self.obs), self.batch_size)
            return self.obs[rows], self.action[rows]
        if len(self.window_starts) == 0:
            raise LegkitError(f"BCRegularizer: no demo episode has seq_len = {self.seq_len} steps; lower seq_len")
        first = self.rng.choice(self.window_starts, max(1, self.batch_size // self.seq_len))
        rows = first[:, None] + np.arange(self.seq_len)[None, :]
        return self.obs[rows], self.action[rows]

    def loss(self, policy: ActorCriticPolicy, obs: np.ndarray, action: np.ndarray,
             normalize: Normalize | None = None) -> torch.Tensor:
        """MSE between `policy`'s mean action and `action` for raw `obs` (as `sample` returns them)."""
        x = normalize(obs) if normalize is not None else obs
        x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=policy.device)
        target = torch.as_tensor(action, device=policy.device)
        if isinstance(policy, RecurrentActorCriticPolicy):
            n_seq, steps = x.shape[:2]
            lstm = policy.lstm_actor
            zeros = torch.zeros(lstm.num_layers, n_seq, lstm.hidden_size, device=policy.device)
            # sb3-contrib reads a flat batch as n_seq sequences one after the other; no resets inside a window
            dist, _ = policy.get_distribution(x.reshape(n_seq * steps, -1), (zeros, zeros),
                                              torch.zeros(n_seq * steps, device=policy.device))
            mean = dist.mode().reshape(n_seq, steps, -1)
            return torch.square(mean[:, self.burn_in:] - target[:, self.burn_in:]).mean()
        return torch.square(policy.get_distribution(x).mode() - target).mean()

    def update(self, policy: ActorCriticPolicy, num_timesteps: int, normalize: Normalize | None = None) -> dict:
        """Take the BC steps for this update; returns {"bc_loss": mean loss, "bc_coef": coefficient}."""
        coef = self.coefficient(num_timesteps)
        if coef <= 0.0 or self.steps == 0:
            return {"bc_coef": coef}
        recurrent = isinstance(policy, RecurrentActorCriticPolicy)
        if self._opt is None or self._policy is not policy:
            self._opt = self._optimizer(policy, recurrent, normalize)
            self._policy = policy
        for group in self._opt.param_groups:
            group["lr"] = self.lr * coef
        losses = []
        for _ in range(self.steps):
            loss = self.loss(policy, *self.sample(recurrent), normalize)
            self._opt.zero_grad()
            loss.backward()
            self._opt.step()
            losses.append(loss.item())
        policy.optimizer.zero_grad()  # leave no BC gradient behind for PPO's next update
        return {"bc_loss": float(np.mean(losses)), "bc_coef": coef}

    def _optimizer(self, policy: ActorCriticPolicy, recurrent: bool, normalize: Normalize | None) -> torch.optim.Adam:
        """Adam over the parameters the BC loss reaches (found by one backward pass): the actor's."""
        for p in policy.parameters():
            p.grad = None
        self.loss(policy, *self.sample(recurrent), normalize).backward()
        actor = [p for p in policy.parameters() if p.grad is not None]
        for p in actor:
            p.grad = None
        return torch.optim.Adam(actor, lr=self.lr)


class BCCallback(BaseCallback):
    """Runs `regularizer.update` after every PPO / RecurrentPPO update (logging train/bc_loss and train/bc_coef)."""

    def __init__(self, regularizer: BCRegularizer, verbose: int = 0):
        super().__init__(verbose)
        self.regularizer = regularizer
        self._updates = 0

    def _on_training_start(self) -> None:
        self.regularizer.begin(self.model.num_timesteps)
        self._updates = self.model._n_updates

    def _after_update(self) -> None:
        if self.model._n_updates != self._updates:  # train() ran since the last call
            self._updates = self.model._n_updates
            _bc_update(self.model, self.regularizer)

    def _on_rollout_start(self) -> None:  # the first thing after an update
        self._after_update()

    def _on_training_end(self) -> None:  # the last update has no rollout after it
        self._after_update()

    def _on_step(self) -> bool:
        return True


class PPOWithBC(PPO):
    """SB3 PPO that takes the BC steps of `bc` (a BCRegularizer; None: plain PPO) after each PPO update."""

    def __init__(self, *args, bc: BCRegularizer | None = None, **kwargs):
        self.bc = bc
        super().__init__(*args, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "bc"]  # demos stay out of model.zip

    def _setup_learn(self, *args, **kwargs):
        result = super()._setup_learn(*args, **kwargs)
        if self.bc is not None:
            self.bc.begin(self.num_timesteps)
        return result

    def train(self) -> None:
        super().train()
        if self.bc is not None:
            _bc_update(self, self.bc)


def _bc_update(model, regularizer: BCRegularizer) -> None:
    vecnorm = model.get_vec_normalize_env()
    normalize = vecnorm.normalize_obs if vecnorm is not None else None
    stats = regularizer.update(model.policy, model.num_timesteps, normalize)
    for key, value in stats.items():
        model.logger.record(f"train/{key}", value)
