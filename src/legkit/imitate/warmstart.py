"""Start SB3 models from a cloned policy, and run a cloned policy in closed loop.

`load_into_ppo` copies a BC MLP into an SB3 PPO policy (MlpPolicy, or legkit's AsymmetricActorCriticPolicy,
whose actor reads a subset of the observation: the first layer keeps the clone's weights from those inputs, and
the clone must read nothing else), `load_into_recurrent_ppo` a BC LSTM into sb3-contrib RecurrentPPO
(MlpLstmPolicy): the actor's layers are copied, the critic is left as built, and the action log-std is set low.
An MLP clone may also start a wider actor (`ppo.net_arch` wider layer
by layer, the same depth): the clone fills the first units of each layer and the added units start as the policy
built them, reading every input, with zero weights into the clone's units and into the actions, so the start acts
exactly as the clone does while the added units learn from the first update as a fresh network's would.
`action_ratio` converts the clone's actions into the run's units (the demonstrations' action scale over the
task's: the same joint targets). SB3's default log std of 0 (std 1 on actions in [-1, 1])
would bury the cloned gait in exploration noise on the first rollout; log_std -2 (std 0.14) keeps it
recognisable. The model then takes the BC normalizer's statistics as its VecNormalize's
(legkit.imitate.normalizer.set_obs_statistics).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import DiagGaussianDistribution, StateDependentNoiseDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from legkit import LegkitError
from legkit.imitate.bc import BCPolicy, first_layer_weight
from legkit.train.policies import AsymmetricActorCriticPolicy

DEFAULT_LOG_STD = -2.0
"""Log std of the Gaussian policy after a warm start: std 0.14 on actions in [-1, 1]."""


def _describe(module: nn.Module) -> str:
    """One line naming `module`'s layers and sizes, e.g. `Linear(in_features=4, ...) -> ELU(alpha=1.0)`."""
    if isinstance(module, nn.Sequential):
        return " -> ".join(repr(m) for m in module) or "(no layers)"
    return repr(module)


def _check_policy(bc: BCPolicy, policy: ActorCriticPolicy, what: str) -> None:
    """What both warm starts need: a flat observation read whole (or a subset, by an AsymmetricActorCriticPolicy
    without a state estimator), the same sizes, a plain Gaussian."""
    arch = bc.arch
    if isinstance(policy, AsymmetricActorCriticPolicy):
        if policy.estimate_indices:
            raise LegkitError(f"the {what} actor holds a state estimator whose output the BC policy never read: "
                              "fine-tune the clone without ppo.estimator")
    elif not isinstance(policy.pi_features_extractor, FlattenExtractor):
        raise LegkitError(f"the {what} actor reads its observation through "
                          f"{type(policy.pi_features_extractor).__name__}, but the BC policy reads the whole "
                          "observation: build it with the default FlattenExtractor (no actor_observations/symmetry)")
    obs_shape, act_shape = tuple(policy.observation_space.shape), tuple(policy.action_space.shape)
    if obs_shape != (arch.obs_dim,) or act_shape != (arch.act_dim,):
        raise LegkitError(f"the {what} policy takes observations {obs_shape} and gives actions {act_shape} but the "
                          f"BC policy takes ({arch.obs_dim},) and gives ({arch.act_dim},)")
    gaussian = (DiagGaussianDistribution, StateDependentNoiseDistribution)  # the mean is action_net's output in both
    if policy.squash_output or not isinstance(policy.action_dist, gaussian):
        raise LegkitError(f"the {what} policy must use a Gaussian (plain or gSDE) without a squashed output to "
                          f"take the BC policy's mean action")


def _copy(name: str, ours: nn.Module, theirs: nn.Module, what: str, kwargs_hint: str) -> None:
    """Copy the BC module `ours` into the SB3 module `theirs` (in place: optimizers keep their parameters)."""
    if _describe(ours) != _describe(theirs):
        raise LegkitError(f"the {what} policy's {name} is {_describe(theirs)} but the BC policy's is "
                          f"{_describe(ours)}: build it with {kwargs_hint}")
    theirs.load_state_dict(ours.state_dict())


def read_entries(bc: BCPolicy) -> np.ndarray:
    """The observation entries the clone reads: those with a non-zero weight into its first layer (an MLP's first
    Linear, an LSTM's input weights). A clone of some inputs only (train_bc's `inputs`) reads those alone."""
    return np.flatnonzero(np.any(first_layer_weight(bc.net).detach().numpy() != 0, axis=0))


def unread_terms(bc: BCPolicy, keep) -> list[str]:
    """The observation terms (by the clone's obs_layout) that an MLP clone reads outside the entries `keep`: those
    whose first-layer weights are not all zero."""
    read = np.zeros(bc.arch.obs_dim, dtype=bool)
    read[read_entries(bc)] = True
    read[np.asarray(keep, dtype=np.int64)] = False
    return [str(name) for name, start, size in bc.meta.get("obs_layout") or []
            if read[int(start):int(start) + int(size)].any()]


def _actor_first_layer(bc: BCPolicy, policy: ActorCriticPolicy) -> nn.Module:
    """The clone's policy net as the actor of `policy` reads its inputs: for an AsymmetricActorCriticPolicy, the
    first layer's columns of the actor's inputs alone (a LegkitError when the clone reads any other input)."""
    net = bc.net.mlp_extractor.policy_net
    if not isinstance(policy, AsymmetricActorCriticPolicy):
        return net
    keep = np.asarray(policy.actor_indices, dtype=np.int64)
    read = unread_terms(bc, keep)
    if read:
        raise LegkitError(f"the BC policy reads observation terms the actor does not see ({', '.join(read)}): clone "
                          "it from the actor's observations only (imitate.inputs), or add those terms to "
                          "ppo.actor_observations")
    first = net[0]
    out = copy.deepcopy(net)
    out[0] = nn.Linear(len(keep), first.out_features)
    with torch.no_grad():
        out[0].weight.copy_(first.weight[:, torch.as_tensor(keep)])
        out[0].bias.copy_(first.bias)
    return out


def _layers(net: nn.Module) -> list[nn.Module]:
    return list(net) if isinstance(net, nn.Sequential) else [net]


def _embed(ours: nn.Module, theirs: nn.Module, name: str, hint: str) -> None:
    """Copy the BC module `ours` into the first units of each layer of the wider SB3 module `theirs` (wider inputs,
    or wider outputs, or both): the weights from the added inputs into the copied units are zeroed, and the added
    units keep their own weights, so `theirs` computes `ours` in its first units from its first inputs."""
    src, dst = ([m for m in _layers(net) if isinstance(m, nn.Linear)] for net in (ours, theirs))
    kinds = [[type(m) for m in _layers(net)] for net in (ours, theirs)]  # the layers, widths left out
    fits = kinds[0] == kinds[1] and all(
        d.in_features >= s.in_features and d.out_features >= s.out_features for s, d in zip(src, dst))
    if not fits:
        raise LegkitError(f"the PPO policy's {name} is {_describe(theirs)}, which cannot hold the BC policy's "
                          f"{_describe(ours)} (the same layers, each at least as wide): build it with {hint}")
    with torch.no_grad():
        for s, d in zip(src, dst):
            o, i = s.out_features, s.in_features
            d.weight[:o, :i] = s.weight
            d.weight[:o, i:] = 0.0
            d.bias[:o] = s.bias


def _scaled(action_net: nn.Linear, ratio: float) -> nn.Linear:
    """`action_net` whose outputs are `ratio` times as large."""
    out = copy.deepcopy(action_net)
    with torch.no_grad():
        out.weight.mul_(float(ratio))
        out.bias.mul_(float(ratio))
    return out


def _set_log_std(policy: ActorCriticPolicy, log_std: float) -> None:
    with torch.no_grad():
        policy.log_std.fill_(float(log_std))
    if policy.use_sde:  # gSDE's noise function was drawn with the old std
        policy.reset_noise()


def _net_arch_hint(bc: BCPolicy) -> str:
    activation = {"elu": "nn.ELU", "tanh": "nn.Tanh", "relu": "nn.ReLU"}[bc.arch.activation]
    return f"policy_kwargs net_arch=dict(pi={list(bc.arch.net_arch)}, vf=...), activation_fn={activation}"


def load_into_ppo(bc: BCPolicy, model: PPO, log_std: float = DEFAULT_LOG_STD, action_ratio: float = 1.0) -> None:
    """Copy the BC MLP into `model`'s actor (mlp_extractor.policy_net, action_net, its outputs times
    `action_ratio`; into the first units of each layer of a wider actor) and set its log std. A symmetric
    AsymmetricActorCriticPolicy averages the copy with its mirror image, which is the clone itself when the
    demonstrated gaits are mirror-symmetric.

    A LegkitError names what differs when the policy is not an MlpPolicy (or AsymmetricActorCriticPolicy) of
    the same sizes and activation."""
    if bc.arch.kind != "mlp":
        raise LegkitError(f"the BC policy is an {bc.arch.kind.upper()}: load it into RecurrentPPO with "
                          "load_into_recurrent_ppo")
    policy = model.policy
    if isinstance(policy, RecurrentActorCriticPolicy) or not isinstance(policy, ActorCriticPolicy):
        raise LegkitError(f"load_into_ppo needs a PPO with an MlpPolicy, got {type(policy).__name__}")
    _check_policy(bc, policy, "PPO")
    hint = _net_arch_hint(bc)
    net, action_net = _actor_first_layer(bc, policy), _scaled(bc.net.action_net, action_ratio)
    if _describe(net) == _describe(policy.mlp_extractor.policy_net):
        _copy("mlp_extractor.policy_net", net, policy.mlp_extractor.policy_net, "PPO", hint)
        _copy("action_net", action_net, policy.action_net, "PPO", hint)
    else:  # a wider actor: the clone in its first units, the others fresh (see the module's docstring); the
        # observation and the actions are the same size (_check_policy), so only the hidden layers are wider
        _embed(net, policy.mlp_extractor.policy_net, "mlp_extractor.policy_net", hint)
        _embed(action_net, policy.action_net, "action_net", hint)
    _set_log_std(policy, log_std)


def load_into_recurrent_ppo(bc: BCPolicy, model: RecurrentPPO, log_std: float = DEFAULT_LOG_STD,
                            action_ratio: float = 1.0) -> None:
    """Copy the BC LSTM into `model`'s actor (lstm_actor, mlp_extractor.policy_net, action_net, its outputs times
    `action_ratio`) and set its log std.

    The critic's LSTM is left as built. A LegkitError names what differs when the sizes do not match."""
    if bc.arch.kind != "lstm":
        raise LegkitError(f"the BC policy is an {bc.arch.kind.upper()}: load it into PPO with load_into_ppo")
    policy = model.policy
    if not isinstance(policy, RecurrentActorCriticPolicy):
        raise LegkitError(f"load_into_recurrent_ppo needs a RecurrentPPO (MlpLstmPolicy), got {type(policy).__name__}")
    _check_policy(bc, policy, "RecurrentPPO")
    hint = (f"policy_kwargs lstm_hidden_size={bc.arch.lstm_hidden}, n_lstm_layers={bc.arch.lstm_layers}, "
            + _net_arch_hint(bc))
    _copy("lstm_actor", bc.net.lstm_actor, policy.lstm_actor, "RecurrentPPO", hint)
    _copy("mlp_extractor.policy_net", bc.net.mlp_extractor.policy_net, policy.mlp_extractor.policy_net,
          "RecurrentPPO", hint)
    _copy("action_net", _scaled(bc.net.action_net, action_ratio), policy.action_net, "RecurrentPPO", hint)
    _set_log_std(policy, log_std)


def bc_action(bc: BCPolicy, obs: np.ndarray, state: tuple[np.ndarray, np.ndarray] | None = None,
              episode_start: np.ndarray | None = None, clip: bool = True
              ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The BC policy's action for raw observations `obs` (num_robots, obs_dim); returns (action
    (num_robots, act_dim) float32, next state).

    For an LSTM, `state` is (h, c), each (layers, num_robots, hidden) as RecurrentPPO.predict uses it (None:
    zeros), and it is reset to zero where `episode_start` (num_robots,) is True before this step; an MLP
    returns state None. With `clip`, actions are clipped to [-1, 1] as SB3's predict and the env do.
    """
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[1] != bc.arch.obs_dim:
        raise LegkitError(f"bc_action: observations must have shape (num_robots, {bc.arch.obs_dim}), got {obs.shape}")
    x = torch.from_numpy(bc.normalizer(obs))
    n = len(x)
    with torch.no_grad():
        if bc.arch.kind == "mlp":
            action, new_state = bc.net(x), None
        else:
            shape = (bc.arch.lstm_layers, n, bc.arch.lstm_hidden)
            if state is None:
                h, c = torch.zeros(shape), torch.zeros(shape)
            else:
                h, c = (torch.as_tensor(np.asarray(s), dtype=torch.float32) for s in state)
                if tuple(h.shape) != shape or tuple(c.shape) != shape:
                    raise LegkitError(f"bc_action: the LSTM state must be two arrays of shape {shape}, got "
                                      f"{tuple(h.shape)} and {tuple(c.shape)}")
            if episode_start is not None:
                keep = 1.0 - torch.as_tensor(np.asarray(episode_start), dtype=torch.float32).view(1, n, 1)
                h, c = keep * h, keep * c
            out, (h, c) = bc.net(x.unsqueeze(0), (h, c))
            action, new_state = out[0], (h.numpy(), c.numpy())
    action = action.numpy()
    return (np.clip(action, -1.0, 1.0) if clip else action), new_state
