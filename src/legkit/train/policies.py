"""Asymmetric actor-critic for SB3 PPO: the actor reads a named subset of the observation, the critic all of it.

A real robot cannot measure everything the simulator knows (a Go2 has no base linear velocity sensor), but
the critic only runs in training, so it may see privileged state. Both read the same flat (num_envs, obs_dim)
observation, normalized by VecNormalize as a whole; the actor's features extractor keeps only
`actor_indices`. The class lives in this importable module, so a saved model loads with plain `PPO.load`
(cloudpickle stores the class by reference, and `actor_indices` is saved with the other policy_kwargs).

A blind actor can also carry a state estimator (`estimate_indices`): a small network inside the actor's
features extractor that predicts privileged terms (the base velocity) from the actor's own inputs, trained by
regression on every rollout (concurrent estimation, Ji et al. 2022). It is part of the actor, so it is in
the exported graph, and the robot needs no extra sensor.

With `mirror` (the left-right reflection of the actor's inputs and of the action), the actor is symmetric
by construction: its mean action is the average of the network's action and the mirror image of the
network's action for the mirrored inputs, and the action std is averaged with its mirror too. A turn to
the left and one to the right are then one skill, learnt together. The reflection is defined on raw
observations, so the features extractor keeps the normalizer's mean and std (SymmetryStatistics copies
them from VecNormalize at every rollout start) to reflect normalized inputs exactly.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor
from torch import nn

from legkit import LegkitError
from legkit.tasks.observations import term_indices


def observation_indices(layout: list, names: tuple[str, ...] | list[str]) -> list[int]:
    """Indices into the flat observation of the terms `names`, in observation order.

    `layout` is the env's `obs_layout`, a list of (name, start, size).
    """
    known = [str(n) for n, _, _ in layout]
    for name in names:
        if name not in known:
            raise LegkitError(f"actor observation '{name}' is not in the observation layout; valid: {', '.join(known)}")
    return term_indices(layout, names)


class ObservationSubset(BaseFeaturesExtractor):
    """The features `obs[:, indices]` of a flat Box observation: what the actor may read. Shape (batch, len(indices)).

    With `estimate_dim` > 0 the features also hold a state estimator's output: a small MLP
    (`estimator_arch` hidden layers) from those same inputs to `estimate_dim` values, trained by regression
    onto privileged observation terms (legkit.train.callbacks.EstimatorTraining), never by the PPO loss (its
    output is detached here). Features: (batch, len(indices) + estimate_dim).

    With `mirror` = (index, sign) over the actor's inputs (sign * x[:, index] is the reflected raw input),
    the features are two copies side by side, (batch, 2 * (len(indices) + estimate_dim)): those of the
    inputs and those of their reflection (`copies` = 2).
    """

    def __init__(self, observation_space: gym.spaces.Box, indices: list[int], estimate_dim: int = 0,
                 estimator_arch: tuple[int, ...] | list[int] = (), activation_fn: type[nn.Module] = nn.ELU,
                 mirror: tuple[list[int], list[float]] | None = None, clip: float = 10.0):
        dim = int(observation_space.shape[0])
        if len(observation_space.shape) != 1:
            raise ValueError(f"ObservationSubset needs a flat Box observation, got shape {observation_space.shape}")
        if not indices or len(set(indices)) != len(indices) or not all(0 <= int(i) < dim for i in indices):
            raise ValueError(f"indices must be distinct and in [0, {dim}), got {list(indices)}")
        self.copies = 2 if mirror is not None else 1
        super().__init__(observation_space, features_dim=self.copies * (len(indices) + int(estimate_dim)))
        self.register_buffer("indices", th.as_tensor([int(i) for i in indices], dtype=th.long))
        self.estimator: nn.Module | None = None
        if estimate_dim:
            layers, size = [], len(indices)
            for width in estimator_arch:
                layers += [nn.Linear(size, int(width)), activation_fn()]
                size = int(width)
            self.estimator = nn.Sequential(*layers, nn.Linear(size, int(estimate_dim)))
        if mirror is not None:
            index, sign = mirror
            if sorted(int(i) for i in index) != list(range(len(indices))) or len(sign) != len(indices):
                raise ValueError("mirror must be a permutation of the actor's inputs with one sign each")
            self.register_buffer("mirror_index", th.as_tensor([int(i) for i in index], dtype=th.long))
            self.register_buffer("mirror_sign", th.as_tensor([float(x) for x in sign], dtype=th.float32))
            # The normalizer's statistics of the actor's inputs (SymmetryStatistics keeps them current).
            self.register_buffer("obs_mean", th.zeros(len(indices)))
            self.register_buffer("obs_std", th.ones(len(indices)))
            self.clip = float(clip)

    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """The normalizer's mean and std of the actor's inputs (in `indices` order), for the reflection."""
        self.obs_mean.copy_(th.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.obs_std.copy_(th.as_tensor(np.asarray(std, dtype=np.float32)))

    def reflect(self, actor_inputs: th.Tensor) -> th.Tensor:
        """The normalized inputs of the mirror-image robot: normalize(sign * raw[:, index]), clipped as VecNormalize."""
        raw = actor_inputs * self.obs_std + self.obs_mean
        return th.clamp((raw[:, self.mirror_index] * self.mirror_sign - self.obs_mean) / self.obs_std,
                        -self.clip, self.clip)

    def estimate(self, actor_inputs: th.Tensor) -> th.Tensor:
        """The estimator's output for the actor's (normalized) inputs; shape (batch, estimate_dim)."""
        if self.estimator is None:
            raise RuntimeError("this policy has no state estimator")
        return self.estimator(actor_inputs)

    def _one(self, actor_inputs: th.Tensor) -> th.Tensor:
        if self.estimator is None:
            return actor_inputs
        return th.cat([actor_inputs, self.estimator(actor_inputs).detach()], dim=1)

    def features(self, actor_inputs: th.Tensor) -> th.Tensor:
        """The actor's features from its own inputs `obs[:, indices]`: those, then the (detached) estimate;
        with a mirror, the same for the reflected inputs beside them."""
        if self.copies == 1:
            return self._one(actor_inputs)
        return th.cat([self._one(actor_inputs), self._one(self.reflect(actor_inputs))], dim=1)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.features(observations[:, self.indices])


class AsymmetricMlpExtractor(nn.Module):
    """SB3's MlpExtractor with separate input sizes: the policy net takes `actor_dim` features, the value
    net `critic_dim` (same layers, attribute names and interface: forward_actor, forward_critic, latent dims).

    With `copies` = 2 the actor's features are two inputs side by side (an input and its reflection): the
    one policy net runs on each half, and forward_actor returns both latents side by side; `latent_dim_pi`
    is one latent's size.
    """

    def __init__(self, actor_dim: int, critic_dim: int, net_arch: list[int] | dict[str, list[int]],
                 activation_fn: type[nn.Module], device: th.device | str = "cpu", copies: int = 1):
        super().__init__()
        pi = net_arch.get("pi", []) if isinstance(net_arch, dict) else net_arch
        vf = net_arch.get("vf", []) if isinstance(net_arch, dict) else net_arch
        self.copies = copies
        self.policy_net, self.latent_dim_pi = self._mlp(actor_dim // copies, pi, activation_fn)
        self.value_net, self.latent_dim_vf = self._mlp(critic_dim, vf, activation_fn)
        self.to(device)

    @staticmethod
    def _mlp(size: int, layers: list[int], activation_fn: type[nn.Module]) -> tuple[nn.Sequential, int]:
        modules: list[nn.Module] = []
        for width in layers:
            modules += [nn.Linear(size, width), activation_fn()]
            size = width
        return nn.Sequential(*modules), size

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        raise RuntimeError("the actor and critic read different features: call forward_actor / forward_critic")

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        if self.copies == 1:
            return self.policy_net(features)
        return th.cat([self.policy_net(half) for half in features.chunk(self.copies, dim=1)], dim=1)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(features)


class AsymmetricActorCriticPolicy(ActorCriticPolicy):
    """ActorCriticPolicy whose actor reads only the observation entries `actor_indices`; the critic reads
    everything. Use as `PPO(AsymmetricActorCriticPolicy, env, policy_kwargs={"actor_indices": [...], ...})`.

    Features extractors are not shared: the critic's is `features_extractor_class` (FlattenExtractor by
    default) over the whole observation, the actor's an ObservationSubset. SB3's `features_extractor`
    attribute is the actor's, as for any unshared ActorCriticPolicy.

    Optional: `estimate_indices` (privileged entries a state estimator inside the actor predicts) and
    `mirror` = {"inputs": [index, sign] over the actor's inputs, "actions": [index, sign], "clip": c}
    (a left-right symmetric actor, see the module docstring).
    """

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space, lr_schedule,
                 actor_indices: list[int], estimate_indices: list[int] | None = None,
                 estimator_arch: list[int] | tuple[int, ...] = (128, 64), mirror: dict | None = None,
                 **kwargs: Any):
        if kwargs.pop("share_features_extractor", False):
            raise ValueError("AsymmetricActorCriticPolicy cannot share a features extractor: the actor reads a subset")
        if kwargs.get("features_extractor_class", FlattenExtractor) is not FlattenExtractor:
            raise ValueError("AsymmetricActorCriticPolicy selects from the raw flat observation; "
                             "features_extractor_class must be FlattenExtractor")
        # Read by _build_mlp_extractor, which ActorCriticPolicy.__init__ calls.
        self.actor_indices = [int(i) for i in actor_indices]
        self.estimate_indices = [int(i) for i in (estimate_indices or [])]
        self.estimator_arch = [int(w) for w in estimator_arch]
        self.mirror = mirror
        if set(self.estimate_indices) & set(self.actor_indices):
            raise ValueError("the estimator's targets must not be inputs of the actor")
        super().__init__(observation_space, action_space, lr_schedule, share_features_extractor=False, **kwargs)
        if mirror is not None:
            index, sign = mirror["actions"]
            if sorted(int(i) for i in index) != list(range(self.action_space.shape[0])):
                raise ValueError("mirror['actions'] must be a permutation of the actions")
            self.register_buffer("action_mirror_index", th.as_tensor([int(i) for i in index], dtype=th.long))
            self.register_buffer("action_mirror_sign", th.as_tensor([float(x) for x in sign], dtype=th.float32))

    def _build_mlp_extractor(self) -> None:
        # ActorCriticPolicy.__init__ made both extractors from features_extractor_class; swap in the actor's
        # before _build sets up the orthogonal initialisation and the optimizer over the final modules.
        m = self.mirror
        self.pi_features_extractor = ObservationSubset(
            self.observation_space, self.actor_indices, len(self.estimate_indices), self.estimator_arch,
            self.activation_fn, (m["inputs"][0], m["inputs"][1]) if m else None, float(m["clip"]) if m else 10.0)
        self.features_extractor = self.pi_features_extractor
        self.features_dim = self.pi_features_extractor.features_dim
        self.mlp_extractor = AsymmetricMlpExtractor(self.pi_features_extractor.features_dim,
                                                    self.vf_features_extractor.features_dim, self.net_arch,
                                                    self.activation_fn, self.device,
                                                    self.pi_features_extractor.copies)

    def mean_actions(self, latent_pi: th.Tensor) -> th.Tensor:
        """The Gaussian's mean from the actor's latent; symmetric: the average of the action for the inputs
        and the mirror image of the action for the reflected inputs."""
        if self.mirror is None:
            return self.action_net(latent_pi)
        own, reflected = latent_pi.chunk(2, dim=1)
        mirrored = self.action_net(reflected)[:, self.action_mirror_index] * self.action_mirror_sign
        return 0.5 * (self.action_net(own) + mirrored)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor):
        if self.mirror is None:
            return super()._get_action_dist_from_latent(latent_pi)
        log_std = 0.5 * (self.log_std + self.log_std[self.action_mirror_index])  # a joint and its mirror alike
        return self.action_dist.proba_distribution(self.mean_actions(latent_pi), log_std)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # What policy.save / BasePolicy.load need to rebuild this policy on its own.
        return {**super()._get_constructor_parameters(), "actor_indices": self.actor_indices,
                "estimate_indices": self.estimate_indices, "estimator_arch": self.estimator_arch,
                "mirror": self.mirror}

    def estimator_parameters(self) -> list[nn.Parameter]:
        """The state estimator's parameters (empty without one): trained by regression, not by PPO."""
        est = self.pi_features_extractor.estimator
        return list(est.parameters()) if est is not None else []

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        # PPO's optimizer leaves the estimator alone: EstimatorTraining owns it (its output is detached anyway).
        mine = {id(p) for p in self.estimator_parameters()}
        if mine:
            rest = [p for p in self.parameters() if id(p) not in mine]
            self.optimizer = self.optimizer_class(rest, lr=lr_schedule(1), **self.optimizer_kwargs)


CRITIC_MODULES = ("value_net", "mlp_extractor.value_net", "vf_features_extractor", "lstm_critic", "critic")
"""Names of the critic's modules in SB3's ActorCriticPolicy, legkit's asymmetric policy and sb3-contrib's
RecurrentActorCriticPolicy (its `critic` is the linear layer of a critic without an LSTM)."""


def is_recurrent(model) -> bool:
    """Whether `model` (an SB3 algorithm, or anything with `predict`) has an LSTM policy (sb3-contrib RecurrentPPO)."""
    return isinstance(getattr(model, "policy", None), RecurrentActorCriticPolicy)


def actor_parameters(policy: ActorCriticPolicy) -> list[th.nn.Parameter]:
    """The parameters the actor's action distribution depends on: every parameter outside the critic's modules
    (CRITIC_MODULES), the log std included. A shared features extractor or shared LSTM counts as the actor's."""
    return [p for name, p in policy.named_parameters()
            if not any(name == m or name.startswith(m + ".") for m in CRITIC_MODULES)]


class PolicyActor:
    """A model's actions for a batch of robots behind frozen VecNormalize statistics, for PPO and RecurrentPPO alike.

    `actor(obs)` maps raw observations (num_robots, obs_dim) to actions (num_robots, act_dim). It carries each
    robot's LSTM state from call to call (a recurrent policy; others have none) and starts it anew for robots
    that `ended` names: call it after every step with the robots whose episode ended (and were reset, or are no
    longer counted). `model` is anything with SB3's predict(obs, state, episode_start, deterministic); `norm`
    anything with normalize_obs (a VecNormalize, not updated here). The first call starts every robot anew.
    """

    def __init__(self, model, norm, deterministic: bool = True):
        self.model, self.norm, self.deterministic = model, norm, deterministic
        self.state: tuple[np.ndarray, ...] | None = None
        """The LSTM state (hidden, cell), each (layers, num_robots, hidden); None for a policy without one."""
        self.episode_start: np.ndarray | None = None
        """(num_robots,) bool: robots whose next action starts an episode (a zero LSTM state)."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.episode_start is None or len(self.episode_start) != n:  # a new batch: every robot starts
            self.episode_start, self.state = np.ones(n, dtype=bool), None
        action, self.state = self.model.predict(self.norm.normalize_obs(obs), state=self.state,
                                                episode_start=self.episode_start, deterministic=self.deterministic)
        self.episode_start = np.zeros(n, dtype=bool)
        return action

    def ended(self, done: np.ndarray) -> None:
        """Robots `done` ((num_robots,) bool) start a new episode at the next call: their LSTM state restarts."""
        if self.episode_start is not None:
            self.episode_start |= np.asarray(done, dtype=bool)


class AsymmetricRecurrentPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's RecurrentActorCriticPolicy whose actor LSTM reads only the observation entries `actor_indices`;
    the critic (its own LSTM, or its Linear) reads everything. Use as `RecurrentPPO(AsymmetricRecurrentPolicy, env,
    policy_kwargs={"actor_indices": [...], ...})`; the model loads with plain `RecurrentPPO.load`.

    The actor then has memory of what it sensed (a curb that has left the camera's view) while the critic may read
    privileged state. Features extractors are not shared (the actor's is an ObservationSubset, as in
    AsymmetricActorCriticPolicy) and neither is the LSTM: a critic reading the actor's LSTM would see only the
    actor's inputs.
    """

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space, lr_schedule,
                 actor_indices: list[int], **kwargs: Any):
        if kwargs.pop("share_features_extractor", False):
            raise ValueError("AsymmetricRecurrentPolicy cannot share a features extractor: the actor reads a subset")
        if kwargs.get("shared_lstm", False):
            raise ValueError("AsymmetricRecurrentPolicy cannot share the actor's LSTM with the critic: the critic "
                             "reads the whole observation")
        if kwargs.get("features_extractor_class", FlattenExtractor) is not FlattenExtractor:
            raise ValueError("AsymmetricRecurrentPolicy selects from the raw flat observation; "
                             "features_extractor_class must be FlattenExtractor")
        self.actor_indices = [int(i) for i in actor_indices]  # read by _build_mlp_extractor during __init__
        super().__init__(observation_space, action_space, lr_schedule, share_features_extractor=False, **kwargs)
        # RecurrentActorCriticPolicy sized the actor's LSTM for the whole observation (features_dim, the critic's
        # input size): size it for the actor's inputs, then set the optimizer up again over the final modules.
        old = self.lstm_actor
        self.lstm_actor = nn.LSTM(len(self.actor_indices), old.hidden_size, num_layers=old.num_layers,
                                  **self.lstm_kwargs)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _build_mlp_extractor(self) -> None:
        # ActorCriticPolicy.__init__ made both extractors from FlattenExtractor; the actor's becomes the subset.
        self.pi_features_extractor = ObservationSubset(self.observation_space, self.actor_indices)
        self.features_extractor = self.pi_features_extractor
        super()._build_mlp_extractor()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "actor_indices": self.actor_indices}
