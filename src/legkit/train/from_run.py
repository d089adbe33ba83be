"""A new run that starts from another run's trained model (finetune.from_run): "walk first, then look".

`prepare(cfg)` finds the source policy (a run's final model, a checkpoint, its best model or a `pretrained:` one)
and checks, before a run folder exists, that it fits the new run: the same observation layout, action size,
algorithm, network and fixed observation scales. The RunStart it returns is a legkit.train.trainer.ModelStart;
its `apply` copies into the freshly built model every weight of the source (the action std included, so
ppo.log_std_init does not apply; finetune.max_action_std caps it) and into VecNormalize its observation and return
statistics.

The source's config may differ in what the network's inputs carry (task.observation_blind):

- a term the source was blind to and the new run sees ("unblinded", e.g. a camera after a blind run learnt to
  walk) enters through first-layer weights set to 0 in the actor and the critic, so the new model acts and values
  exactly as the source did until training grows them; its normalizer statistics, which the source saw only as
  zeros, are measured afresh over `SAMPLE_STEPS` control steps of the source policy on the new run's env (each
  entry's std floored at finetune.min_obs_std);
- a term the source saw and the new run is blind to reads 0, and its statistics' mean is set to 0 so that it
  enters the network as 0.

Rewards, commands, curricula and PPO settings are the new run's own. The source is read again by nothing later:
a resume continues from the run's own checkpoints. A run's own first stage (finetune.first, legkit.train.stages)
is started from in the same way, and checked by the same `check_fit` before it is trained.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.config import to_dict
from legkit.envs.core import task_shape
from legkit.tasks.observations import layout_difference, term_indices
from legkit.train.config import Config
from legkit.train.runs import Policy, find_intact_policy, resolve_run
from legkit.train.trainer import load_model, read_normalization

SAMPLE_STEPS = 100
"""Control steps (of every robot) over which an unblinded term's statistics are measured."""


@dataclass(frozen=True)
class Source:
    """The policy a run starts from, and what differs in what its inputs carry."""

    policy: Policy
    unblinded: tuple[str, ...]
    """Terms the source was blind to that the new run sees."""
    blinded: tuple[str, ...]
    """Terms the source saw that the new run is blind to."""

    def describe(self) -> dict:
        """What meta.json records of the start."""
        return {"run": str(self.policy.config.parent.resolve()), "checkpoint": self.policy.label,
                "step": self.policy.step, "unblinded": list(self.unblinded), "blinded": list(self.blinded)}


def _source_config(policy: Policy) -> dict:
    try:
        return yaml.safe_load(policy.config.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LegkitError(f"finetune.from_run: cannot read '{policy.config}' ({type(exc).__name__})") from None


def find_source(cfg: Config, obs_layout: list) -> Source:
    """The policy `cfg.finetune.from_run` names, checked to fit a run of `cfg` with observation layout
    `obs_layout` ((name, start, size) list); a one-line LegkitError otherwise."""
    f = cfg.finetune
    checkpoint = None if f.from_checkpoint is None else str(f.from_checkpoint)
    try:
        run = resolve_run(f.from_run)
    except LegkitError as exc:
        raise LegkitError(f"finetune.from_run: {exc}") from None
    return source_at(run, checkpoint, cfg, obs_layout, f"finetune.from_run '{f.from_run}'")


def source_at(run: Path, checkpoint: str | None, cfg: Config, obs_layout: list, name: str) -> Source:
    """The policy `checkpoint` of run folder `run` (None: its final model), checked as `find_source` does;
    `name` says in an error where the run was named (e.g. "finetune.from_run 'runs/x'")."""
    policy, _ = find_intact_policy(run, checkpoint)
    where = f"{name} ({policy.label})"
    unblinded, blinded = check_fit(where, policy.algorithm, policy.obs_layout, _source_config(policy), cfg,
                                   obs_layout)
    return Source(policy, unblinded, blinded)


def check_fit(where: str, algorithm: str, trained: list | None, theirs: dict, cfg: Config,
              obs_layout: list) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check that a model of `algorithm` trained on layout `trained` under config `theirs` (a config tree, as
    config.yaml holds it) can start a run of `cfg` with layout `obs_layout`; a one-line LegkitError starting with
    `where` otherwise. Returns the terms it was blind to that `cfg` sees, and those it saw that `cfg` is blind to."""
    if algorithm != cfg.ppo.algorithm:
        raise LegkitError(f"{where} is a {algorithm} model but this run's ppo.algorithm is {cfg.ppo.algorithm}")
    diff = layout_difference(trained, obs_layout) if trained else "its layout is not recorded"
    if diff:
        raise LegkitError(f"{where} does not take this run's observations: {diff}")
    ppo, mine = theirs.get("ppo") or {}, to_dict(cfg.ppo)  # both as YAML has them: lists, not tuples
    for key in ("net_arch", "activation", "actor_observations", "estimator", "symmetry", "fixed_scales",
                "lstm_hidden", "lstm_layers", "shared_lstm", "critic_lstm", "use_sde"):
        if key in ppo and ppo[key] != mine[key]:
            raise LegkitError(f"{where} was trained with ppo.{key} = {ppo[key]} but this run has {mine[key]}: "
                              "the network and its inputs must be the same")
    names = {str(n) for n, _, _ in obs_layout}
    was = {str(n) for n in ((theirs.get("task") or {}).get("observation_blind") or ())} & names
    now = set(cfg.task.observation_blind) & names
    unblinded, blinded = tuple(sorted(was - now)), tuple(sorted(now - was))
    if unblinded and (cfg.ppo.actor_observations or cfg.ppo.estimator or cfg.ppo.symmetry):
        raise LegkitError(f"{where} was blind to {', '.join(unblinded)}: starting to see a term is supported for "
                          "MlpPolicy and the recurrent policy, not with ppo.actor_observations, ppo.estimator or "
                          "ppo.symmetry")
    return unblinded, blinded


def first_layers(policy: ActorCriticPolicy) -> list[torch.Tensor]:
    """The weight matrices that read the observation first, in the actor and the critic (columns = observation
    entries): the first Linear of an MlpPolicy's two networks, or the LSTMs' input weights of a recurrent one (and
    the critic's first Linear when it has no LSTM of its own)."""
    if not isinstance(policy.features_extractor, FlattenExtractor):
        raise LegkitError(f"a {type(policy).__name__} reads its observation through "
                          f"{type(policy.features_extractor).__name__}: its input weights are not the observation's")
    if isinstance(policy, RecurrentActorCriticPolicy):
        out = [policy.lstm_actor.weight_ih_l0]
        if policy.lstm_critic is not None:
            out.append(policy.lstm_critic.weight_ih_l0)
        elif not policy.shared_lstm:  # the critic reads the features through its own Linear
            out.append(policy.critic.weight)
        return out
    out = []
    for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net):
        linear = next((m for m in net if isinstance(m, torch.nn.Linear)), None)
        if linear is None:  # net_arch [] : the heads read the features directly
            raise LegkitError("the policy has no hidden layers (ppo.net_arch = []): no input weights to start at 0")
        out.append(linear.weight)
    return out


def zero_input_weights(policy: ActorCriticPolicy, columns: np.ndarray) -> None:
    """Set every first-layer weight reading observation entries `columns` to 0 (in place)."""
    with torch.no_grad():
        for weight in first_layers(policy):
            weight[:, torch.as_tensor(columns, dtype=torch.long)] = 0.0


def sample_statistics(model: BaseAlgorithm, vecnorm: VecNormalize, columns: np.ndarray,
                      steps: int = SAMPLE_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of observation entries `columns` over `steps` control steps of `model` (deterministic)
    on the raw env under `vecnorm`, from a reset."""
    venv = vecnorm.venv
    obs = venv.reset()
    n = obs.shape[0]
    state, starts = None, np.ones(n, dtype=bool)
    frames = [obs[:, columns].astype(np.float64)]
    for _ in range(steps):
        action, state = model.predict(vecnorm.normalize_obs(obs), state=state, episode_start=starts,
                                      deterministic=True)
        obs, _, starts, _ = venv.step(action)
        frames.append(obs[:, columns].astype(np.float64))
    data = np.concatenate(frames)
    return data.mean(axis=0), data.var(axis=0)


class RunStart:
    """A legkit.train.trainer.ModelStart: a new run's model begins as `source`'s (see the module docstring)."""

    def __init__(self, cfg: Config, source: Source):
        self.cfg, self.source = cfg, source

    def apply(self, model: BaseAlgorithm, vecnorm: VecNormalize) -> None:
        src = self.source.policy
        theirs = load_model(src.model, algorithm=src.algorithm)
        try:
            model.policy.load_state_dict(theirs.policy.state_dict())
        except RuntimeError as exc:
            why = (str(exc).strip().splitlines() or [""])[0]
            raise LegkitError(f"finetune.from_run: '{src.model}' does not fit this run's network ({why})") from None
        cap = self.cfg.finetune.max_action_std
        if cap is not None:
            with torch.no_grad():
                model.policy.log_std.clamp_(max=float(np.log(cap)))
        if model.policy.use_sde:
            model.policy.reset_noise()
        norm = read_normalization(src.norm, int(np.prod(vecnorm.observation_space.shape)))
        vecnorm.obs_rms = copy.deepcopy(norm.obs_rms)
        vecnorm.ret_rms = copy.deepcopy(norm.ret_rms)
        layout = vecnorm.unwrapped.batch.obs_layout
        blinded = np.asarray(term_indices(layout, self.source.blinded), dtype=np.int64)
        vecnorm.obs_rms.mean[blinded] = 0.0  # a blind term reads 0: normalized, 0 too
        seen = np.asarray(term_indices(layout, self.source.unblinded), dtype=np.int64)
        if seen.size:
            zero_input_weights(model.policy, seen)
            seen = np.setdiff1d(seen, getattr(vecnorm.obs_rms, "pinned", []))  # ppo.fixed_scales: kept
        if seen.size:
            mean, var = sample_statistics(model, vecnorm, seen)
            vecnorm.obs_rms.mean[seen] = mean
            vecnorm.obs_rms.var[seen] = np.maximum(var, self.cfg.finetune.min_obs_std ** 2)
        what = f"; first sees {', '.join(self.source.unblinded)}" if self.source.unblinded else ""
        print(f"started from {src.config.parent} ({src.label}, step {src.step}){what}")

    def callbacks(self, run: Path, model: BaseAlgorithm, resumed: bool) -> list[BaseCallback]:
        return []

    def describe(self) -> dict:
        return self.source.describe()


def prepare(cfg: Config) -> RunStart:
    """The RunStart that cfg.finetune.from_run asks for, its source read and checked against the task now."""
    layout, _ = task_shape(cfg.task)
    return RunStart(cfg, find_source(cfg, layout))
