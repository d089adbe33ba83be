"""The start of fine-tuning: a training run whose model begins as a behaviour-cloned policy (the finetune.* keys).

`prepare(cfg)` reads the cloned policy (and the demonstrations) and checks that they fit the run's task and model
settings, before a run folder exists; the FinetuneStart it returns is what legkit.train.trainer.train takes as
`start` (a ModelStart; train/ cannot import this room above it). For a new run, `apply` copies the cloned actor
into the freshly built PPO / RecurrentPPO model (legkit.imitate.warmstart), sets the action log std low,
gives VecNormalize the clone's observation statistics, and measures the clone's mean return as loaded:
`eval_episodes` deterministic episodes and as many with sampled actions, the evaluation rollout of `legkit eval`
without the task's pushes. With finetune.reset_action_net it then puts back the output layer PPO built (the
clone's hidden layers under near-zero actions) and measures that start's return too. Its callbacks then, in every
session of the run:

    FinetuneRecord   logs that return at the start (and after the reset), measures it again right after the
                     critic warm-up; TensorBoard finetune/return_start, finetune/return_after_reset,
                     finetune/return_after_warmup (and *_sampled),
                     RUN/finetune.json
    CriticWarmup     (legkit.train.callbacks) the first critic_warmup_rollouts updates fit only the critic
    BCCallback       with finetune.demos: the decaying BC regularizer, from the first update after the warm-up

RUN/finetune.json also fixes, for resumes, the steps where the warm-up ends and the BC decay starts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError
from legkit.envs.core import task_shape
from legkit.evaluate.metrics import compute_metrics
from legkit.evaluate.rollout import rollout_model
from legkit.imitate.bc import BCPolicy, load_bc
from legkit.imitate.demos import Demos, load_demos
from legkit.imitate.finetune import BCCallback, BCRegularizer
from legkit.imitate.normalizer import set_obs_statistics
from legkit.imitate.warmstart import load_into_ppo, load_into_recurrent_ppo, read_entries, unread_terms
from legkit.tasks.config import undisturbed
from legkit.tasks.observations import layout_difference, term_indices
from legkit.train.callbacks import CriticWarmup, sync_symmetry_statistics
from legkit.train.config import Config
from legkit.train.normalization import FlooredRunningMeanStd, PinnedRunningMeanStd, frozen_statistics
from legkit.train.runs import write_json

FINETUNE_JSON = "finetune.json"
KIND_OF = {"ppo": "mlp", "recurrent_ppo": "lstm"}
"""ppo.algorithm -> the kind of cloned actor (BCArch.kind) that fits its policy."""
MEASURED = ("mean_return", "survival_rate", "mean_forward_velocity")
"""Metrics of each return measurement kept in finetune.json."""


def check_fit(bc: BCPolicy, cfg: Config, layout: list, act_dim: int, source: str) -> None:
    """Raise one LegkitError naming every setting of `cfg` (and the task's observations or actions) that the cloned
    policy `bc` (read from `source`) does not fit."""
    a, p = bc.arch, cfg.ppo
    wrong = []
    if KIND_OF[p.algorithm] != a.kind:
        need = next(alg for alg, kind in KIND_OF.items() if kind == a.kind)
        wrong.append(f"it is an {a.kind.upper()} actor: ppo.algorithm must be {need}, not {p.algorithm}")
    wider = a.kind == "mlp" and len(p.net_arch) == len(a.net_arch) and all(
        w >= c for w, c in zip(p.net_arch, a.net_arch))
    if tuple(p.net_arch) != tuple(a.net_arch) and not wider:
        wrong.append(f"ppo.net_arch must be {list(a.net_arch)} (its layers)"
                     + (", or as many layers each at least as wide" if a.kind == "mlp" else "")
                     + f", not {list(p.net_arch)}")
    if p.activation != a.activation:
        wrong.append(f"ppo.activation must be {a.activation}, not {p.activation}")
    if a.kind == "lstm":
        if p.lstm_hidden != a.lstm_hidden:
            wrong.append(f"ppo.lstm_hidden must be {a.lstm_hidden}, not {p.lstm_hidden}")
        if p.lstm_layers != a.lstm_layers:
            wrong.append(f"ppo.lstm_layers must be {a.lstm_layers}, not {p.lstm_layers}")
    obs_dim = sum(k for _, _, k in layout)
    diff = layout_difference(bc.meta.get("obs_layout") or [], layout) if bc.meta.get("obs_layout") else None
    if a.obs_dim != obs_dim:
        wrong.append(f"it takes {a.obs_dim} observation values, task {cfg.task_name} gives {obs_dim}"
                     + (f" ({diff})" if diff else ""))
    elif diff:
        wrong.append(f"its observations differ from task {cfg.task_name}'s: {diff}")
    if a.act_dim != act_dim:
        wrong.append(f"it gives {a.act_dim} actions, task {cfg.task_name} takes {act_dim}")
    if p.actor_observations and not wrong:
        wrong += _unseen_inputs(bc, layout, p.actor_observations)
    wrong += units_differ(bc.meta, cfg, convert_scale=True)
    if wrong:
        raise LegkitError(f"finetune.bc_policy '{source}' does not fit the run: {'; '.join(wrong)}")


def _unseen_inputs(bc: BCPolicy, layout: list, actor_terms: tuple[str, ...]) -> list[str]:
    """Why the clone cannot be the actor that reads only `actor_terms` (ppo.actor_observations): an LSTM clone
    reads the whole observation; an MLP clone must read nothing else (its first layer's other weights zero)."""
    if bc.arch.kind != "mlp":
        return [f"an {bc.arch.kind.upper()} clone reads the whole observation: leave ppo.actor_observations out"]
    known = {str(t) for t, _, _ in layout}
    read = unread_terms(bc, term_indices(layout, [n for n in actor_terms if n in known]))
    if read:
        return [f"it reads {', '.join(read)}, which the actor does not see (ppo.actor_observations): clone it from "
                "the actor's terms only (imitate.inputs) or let the actor see them"]
    return []


def units_differ(meta: dict, cfg: Config, convert_scale: bool = False) -> list[str]:
    """What makes a recorded action mean another thing in `cfg`'s task: the demonstrations' action scale (rad of
    joint offset per unit action) or control period, from `meta` (the demos' or the clone's), against the task's.
    A clone recorded at action_scale 1.4 run at 0.6 as it is would move every joint less than half as far as it
    learnt; with `convert_scale` the action scale is not listed, since the fine-tuning converts the clone's
    actions (action_ratio). A control period cannot be converted."""
    t, out = cfg.task, []
    for key, ours, unit in (("action_scale", t.action_scale, "rad per unit action"),
                            ("control_dt", t.control_dt, "s")):
        if convert_scale and key == "action_scale":
            continue
        theirs = meta.get(key)
        if theirs is not None and not np.isclose(float(theirs), float(ours), rtol=1e-6, atol=0.0):
            setting = "task.action_scale" if key == "action_scale" else "task.decimation x task.physics.timestep"
            out.append(f"its demonstrations were recorded at {key} {float(theirs):g} ({unit}), the task's is "
                       f"{float(ours):g} ({setting})")
    return out


def action_ratio(meta: dict, cfg: Config) -> float:
    """The factor that turns an action recorded at `meta`'s action_scale into one of `cfg`'s task with the same
    joint target (1 when `meta` names none): the recorded scale over the task's."""
    recorded = meta.get("action_scale")
    return 1.0 if recorded is None else float(recorded) / float(cfg.task.action_scale)


def check_demos(demos: Demos, cfg: Config, layout: list, act_dim: int, source: str) -> None:
    """Raise a LegkitError when the demonstrations' observations or actions are not the task's."""
    diff = layout_difference(demos.meta["obs_layout"], layout)
    obs_dim = sum(k for _, _, k in layout)
    if demos.obs_dim != obs_dim or diff:
        raise LegkitError(f"finetune.demos '{source}' has {demos.obs_dim} observation values, task {cfg.task_name} "
                          f"gives {obs_dim}" + (f": {diff}" if diff else ""))
    if demos.act_dim != act_dim:
        raise LegkitError(f"finetune.demos '{source}' has {demos.act_dim} actions, task {cfg.task_name} takes "
                          f"{act_dim}")
    wrong = units_differ(demos.meta, cfg, convert_scale=True)
    if wrong:
        raise LegkitError(f"finetune.demos '{source}' does not fit the run: {'; '.join(wrong)}")


def prepare(cfg: Config, resumed: bool = False) -> FinetuneStart | None:
    """The start that `cfg.finetune` asks for (None without finetune.bc_policy), its files read and checked against
    the task and the model settings: a one-line LegkitError names what is missing or does not fit. A resume (the
    model exists) reads only the demonstrations."""
    f = cfg.finetune
    if f.bc_policy is None:
        return None
    layout, act_dim = task_shape(cfg.task)
    bc = None
    if not resumed:
        bc = _read(load_bc, f.bc_policy, "finetune.bc_policy")
        check_fit(bc, cfg, layout, act_dim, f.bc_policy)
    blind = blind_columns(layout, cfg.task.observation_blind)
    demos = None
    if f.demos is not None:
        demos = _read(load_demos, f.demos, "finetune.demos")
        check_demos(demos, cfg, layout, act_dim, f.demos)
        demos.obs[:, blind] = 0.0  # the BC term shows the actor only what the task lets it see
        demos = replace(demos, action=(demos.action * action_ratio(demos.meta, cfg)).astype(demos.action.dtype))
        # the same joint targets in the task's units
    return FinetuneStart(cfg, bc, demos, blind)


def blind_columns(layout: list, blind: tuple[str, ...]) -> np.ndarray:
    """The observation columns of the terms in `blind` (task.observation_blind), as the env zeroes them."""
    return np.asarray(term_indices(layout, blind), dtype=np.int64)


def _read(load, path: str, key: str):
    """`load(path)`, its LegkitError prefixed with the config key that named the file."""
    try:
        return load(Path(path))
    except LegkitError as exc:
        raise LegkitError(f"{key}: {exc}") from None


def measure_return(model: BaseAlgorithm, vecnorm: VecNormalize, cfg: Config, episodes: int, seed: int) -> dict:
    """The policy's mean return (and survival, forward speed) over `episodes` robots of the task without its pushes,
    with deterministic and with sampled actions (torch's generator seeded with `seed` and restored)."""
    calm = replace(cfg, task=undisturbed(cfg.task))
    out: dict = {"episodes": episodes, "seed": seed}
    for key, deterministic in (("deterministic", True), ("sampled", False)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            m = compute_metrics(rollout_model(model, vecnorm, episodes, calm, seed=seed, deterministic=deterministic))
        out[key] = {k: m[k] for k in MEASURED}
    return out


def _read_statistics(built, read: np.ndarray, mean: np.ndarray, var: np.ndarray) -> PinnedRunningMeanStd:
    """finetune.obs_statistics=read: the entries `read` pinned at the clone's `mean` and `var`, every other entry
    running from the fine-tuning's first rollout on (the run's own pinned entries, `built`'s, stay pinned)."""
    fixed = built.pinned if isinstance(built, PinnedRunningMeanStd) else np.zeros(0, dtype=np.int64)
    m, v = built.mean.copy(), built.var.copy()  # at `fixed`: the run's pinned values
    m[read], v[read] = mean[read], var[read]
    index = np.union1d(fixed, read)
    return PinnedRunningMeanStd(mean.shape, index, m[index], v[index])


class FinetuneStart:
    """A legkit.train.trainer.ModelStart: a new run's model begins as the cloned policy `bc` (see the module
    docstring); `demos` (or None) feed the BC regularizer."""

    def __init__(self, cfg: Config, bc: BCPolicy | None, demos: Demos | None, blind: np.ndarray | None = None):
        self.cfg, self.bc, self.demos = cfg, bc, demos
        self.blind = np.zeros(0, dtype=np.int64) if blind is None else blind
        """Observation columns the task zeroes (task.observation_blind): their statistics' mean is set to 0, so
        they enter the network as 0, whatever the clone's demonstrations read there."""
        self.start_return: dict | None = None
        """The return measured by `apply` (None before, or with finetune.eval_episodes = 0)."""
        self.reset_return: dict | None = None
        """With finetune.reset_action_net: the return measured by `apply` after the output layer's reset."""

    def apply(self, model: BaseAlgorithm, vecnorm: VecNormalize) -> None:
        """Copy the cloned actor into `model`, set its log std, give `vecnorm` the clone's statistics, and measure
        the return: here, before training resets the envs (with obs_statistics=running that reset already moves
        the statistics), so that it is the clone's exactly as loaded."""
        if self.bc is None:
            raise LegkitError("this fine-tuning start was prepared for a resume: it has no cloned policy to load")
        f = self.cfg.finetune
        load = load_into_recurrent_ppo if self.cfg.ppo.algorithm == "recurrent_ppo" else load_into_ppo
        ratio = action_ratio(self.bc.meta, self.cfg)
        built_head = copy.deepcopy(model.policy.action_net.state_dict()) if f.reset_action_net else None
        load(self.bc, model, log_std=f.log_std, action_ratio=ratio)
        if ratio != 1.0:
            print(f"fine-tuning: the cloned policy's actions times {ratio:.4g} (recorded at action_scale "
                  f"{float(self.bc.meta['action_scale']):g}, the task's is {self.cfg.task.action_scale:g}): the same "
                  f"joint targets, those beyond {self.cfg.task.action_scale:g} rad of home clipped")
        built = vecnorm.obs_rms  # the run's own statistics, its fixed scales pinned (ppo.fixed_scales)
        n = set_obs_statistics(vecnorm, self.bc.normalizer).obs_rms  # checks size, clip and epsilon
        mean = n.mean.copy()
        mean[self.blind] = 0.0  # a blind term reads 0: normalized, 0 too
        if f.obs_statistics == "frozen":
            vecnorm.obs_rms = frozen_statistics(mean, n.var, n.count)
        elif f.obs_statistics == "read":
            read = read_entries(self.bc)
            fixed = np.intersect1d(getattr(built, "pinned", []), read)
            if fixed.size:  # ppo.fixed_scales on an input the clone reads: its actions would change
                raise LegkitError(f"ppo.fixed_scales: the cloned policy reads {fixed.size} of those inputs, which "
                                  "it normalizes by its own statistics; fix the scales of inputs it does not read")
            vecnorm.obs_rms = _read_statistics(built, read, mean, n.var)
        else:
            vecnorm.obs_rms = FlooredRunningMeanStd(mean, n.var, n.count, f.min_obs_std ** 2)
        sync_symmetry_statistics(model.policy, vecnorm)  # a symmetric actor reflects through these statistics
        if f.eval_episodes:
            self.start_return = {"step": 0, **measure_return(model, vecnorm, self.cfg, f.eval_episodes,
                                                             self.cfg.run.seed)}
        if built_head is not None:  # the clone measured as loaded; its output layer back to PPO's own
            model.policy.action_net.load_state_dict(built_head)
            print("fine-tuning: the actor's output layer starts as PPO built it (finetune.reset_action_net): the "
                  "clone's hidden layers under near-zero actions")
            if f.eval_episodes:
                self.reset_return = {"step": 0, **measure_return(model, vecnorm, self.cfg, f.eval_episodes,
                                                                 self.cfg.run.seed)}

    def describe(self) -> dict:
        return {"bc_policy": str(Path(self.cfg.finetune.bc_policy).resolve())}

    def callbacks(self, run: Path, model: BaseAlgorithm, resumed: bool) -> list[BaseCallback]:
        """FinetuneRecord, CriticWarmup and (with demos) BCCallback, in that order."""
        f, r = self.cfg.finetune, self.cfg.run
        rollout = self.cfg.ppo.n_steps * r.num_envs
        saved = _read_record(run) if resumed else {}
        if resumed and not saved:
            raise LegkitError(f"cannot resume '{run}' as a fine-tuning run: it has no {FINETUNE_JSON} (it records "
                              "where the critic warm-up ends)")
        until = int(saved["critic_warmup"]["until_step"]) if saved else f.critic_warmup_rollouts * rollout
        record = FinetuneRecord(self.cfg, run, self.bc, until, saved)
        if not resumed and self.start_return is not None:
            record.record["return_start"] = self.start_return
        if not resumed and self.reset_return is not None:
            record.record["return_after_reset"] = self.reset_return
        warmup = CriticWarmup(until, on_end=record.after_warmup)
        record.warmup = warmup
        out: list[BaseCallback] = [record, warmup]
        if self.demos is not None:
            # BC steps follow PPO updates from the first one after the warm-up (its rollout ends at until + rollout)
            start = int(saved.get("bc_regularizer", {}).get("start_step", until + rollout))
            reg = BCRegularizer(self.demos, coef=f.bc_coef, decay_steps=f.bc_decay_steps, steps=f.bc_steps,
                                batch_size=f.bc_batch_size, lr=f.bc_learning_rate, seq_len=f.bc_seq_len,
                                start_step=start, seed=r.seed)
            record.bc_start = start
            out.append(BCCallback(reg))
        return out


def _read_record(run: Path) -> dict:
    path = run / FINETUNE_JSON
    return json.loads(path.read_text()) if path.exists() else {}


class FinetuneRecord(BaseCallback):
    """Measure the clone's return at the start (a new run) and after the critic warm-up; keep RUN/finetune.json."""

    def __init__(self, cfg: Config, run: Path, bc: BCPolicy | None, until: int, saved: dict):
        super().__init__()
        self.cfg, self.run, self.until = cfg, run, until
        self.warmup: CriticWarmup | None = None
        self.bc_start: int | None = None
        f = cfg.finetune
        info = {k: v for k, v in (bc.info if bc else {}).items() if k in ("epoch", "train_loss", "val_loss")}
        self.record = saved or {
            "bc_policy": {"path": str(Path(f.bc_policy).resolve()), "arch": {**vars(bc.arch), "net_arch":
                          list(bc.arch.net_arch)}, "info": info} if bc else {"path": f.bc_policy},
            "algorithm": cfg.ppo.algorithm, "log_std": f.log_std, "obs_statistics": f.obs_statistics,
            "reset_action_net": f.reset_action_net,
            "critic_warmup": {"rollouts": f.critic_warmup_rollouts, "until_step": until, "value_loss": [],
                              "train_episodes": 0, "train_mean_return": None, "finished": until == 0},
        }
        w = self.record["critic_warmup"]
        self._prior = (list(w["value_loss"]), int(w["train_episodes"]), w["train_mean_return"] or 0.0)
        """What earlier sessions of the run recorded of the warm-up: value losses, training episodes and their mean."""

    def _measure(self, name: str) -> None:
        f = self.cfg.finetune
        if not f.eval_episodes:
            return
        result = measure_return(self.model, self.model.get_vec_normalize_env(), self.cfg, f.eval_episodes,
                                self.cfg.run.seed)
        self.record[name] = {"step": self.num_timesteps, **result}
        self._log(name)

    def _log(self, name: str) -> None:
        """TensorBoard finetune/<name> (deterministic) and finetune/<name>_sampled, and a line on the console."""
        result, f = self.record[name], self.cfg.finetune
        self.logger.record(f"finetune/{name}", result["deterministic"]["mean_return"])
        self.logger.record(f"finetune/{name}_sampled", result["sampled"]["mean_return"])
        self.logger.dump(self.num_timesteps)
        label = name.replace("return_", "mean return ").replace("_", " ")  # "mean return after warmup"
        print(f"fine-tuning: {label}: {result['deterministic']['mean_return']:.2f} "
              f"deterministic, {result['sampled']['mean_return']:.2f} sampled ({f.eval_episodes} episodes)")

    def _save(self) -> None:
        if self.warmup is not None:
            w = self.record["critic_warmup"]
            losses, n, mean = self._prior
            new = self.warmup.episode_returns
            w["value_loss"] = losses + [[s, v] for s, v in self.warmup.value_losses]
            w["train_episodes"] = n + len(new)
            w["train_mean_return"] = (n * mean + sum(new)) / (n + len(new)) if n + len(new) else None
            w["finished"] = w["finished"] or self.warmup.ended
        if self.bc_start is not None:
            f = self.cfg.finetune
            self.record["bc_regularizer"] = {"demos": str(Path(f.demos).resolve()), "start_step": self.bc_start,
                                             "coef": f.bc_coef, "decay_steps": f.bc_decay_steps}
        write_json(self.run / FINETUNE_JSON, self.record)

    def _on_training_start(self) -> None:
        if "return_start" in self.record and self.num_timesteps == 0:  # measured by FinetuneStart.apply, logged here
            self._log("return_start")
            if "return_after_reset" in self.record:
                self._log("return_after_reset")
        elif 0 < self.until == self.num_timesteps and "return_after_warmup" not in self.record:
            self._measure("return_after_warmup")  # a session that ended right after the warm-up, before measuring
        self._save()

    def after_warmup(self) -> None:
        """CriticWarmup's on_end: right after the last warm-up update, before any update of the actor."""
        self._measure("return_after_warmup")
        self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._save()
