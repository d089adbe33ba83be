"""Train (or resume) PPO or RecurrentPPO (ppo.algorithm) on a legkit task; every output lands in the run folder.

A run may start from something other than a fresh network (a behaviour-cloned policy: finetune.bc_policy): the
caller passes a ModelStart (legkit.imitate.start.FinetuneStart), which sits above train/ and so is handed in, as
the clip renderer is.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import VecNormalize

from legkit import LegkitError, __version__
from legkit.config import to_dict
from legkit.envs.vec_env import LegkitVecEnv
from legkit.sim.log import mujoco_warnings_to
from legkit.robots import get_robot
from legkit.tasks.observations import layout_difference, mirror_map, term_reflections
from legkit.train.callbacks import (ActionStdCap, Checkpointer, EpisodeLogger, EstimatorTraining, LinearSchedule,
                                    NaNGuard, RewardStages, SymmetryStatistics, TorchThreads, injected_crashes)
from legkit.train.checkpoints import recover, save_checkpoint, set_aside
from legkit.train.config import Config
from legkit.train.lock import holding_run
from legkit.train.normalization import pinned_statistics
from legkit.train.policies import AsymmetricActorCriticPolicy, AsymmetricRecurrentPolicy, observation_indices
from legkit.train.resume import ResumePlan
from legkit.train.runs import CONFIG, checkpoints, git_revision, save_final, write_json, write_yaml
from legkit.train.video_callback import ClipRenderer, VideoCallback
from legkit.train.wandb_log import WandbOutputFormat, WandbSettings

CLIP_OBS = 10.0
"""VecNormalize clips normalized observations to +-CLIP_OBS."""
ACTIVATION = {"elu": torch.nn.ELU, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
HISTORY = ("resumes", "restarts", "processes", "wandb_id", "tune", "started_from")
"""meta.json entries that every later session of a run carries on (resumes; supervised restarts and processes;
the id of its wandb run; the `legkit tune` trial it is; the model a new run started from)."""
ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "recurrent_ppo": RecurrentPPO}
"""ppo.algorithm (and meta.json's `algorithm`) -> the class whose plain .load reads the run's model.zip."""


class ModelStart(Protocol):
    """How a new run's freshly built model starts (e.g. from a cloned policy), and what it adds to training."""

    def apply(self, model: BaseAlgorithm, vecnorm: VecNormalize) -> None:
        """Change the new model and its normalizer in place, before any step (not called on resume)."""

    def callbacks(self, run: Path, model: BaseAlgorithm, resumed: bool) -> list[BaseCallback]:
        """Callbacks for this session of the run (a new run's or a resume's)."""

    def describe(self) -> dict:
        """What meta.json records as `started_from`."""


def model_start(cfg: Config, resumed: bool = False) -> ModelStart | None:
    """The ModelStart that cfg.finetune asks for (a cloned policy, or another run's model for a new run), its files
    read and checked now; None for a fresh network, a resume of a run started from another run, or a first stage
    (finetune.first: legkit.train.stages makes its start once that stage is trained)."""
    if cfg.finetune.bc_policy is not None:
        from legkit.imitate.start import prepare

        return prepare(cfg, resumed=resumed)
    if cfg.finetune.from_run is not None and not resumed:  # a resume continues from its own checkpoints
        from legkit.train.from_run import prepare as prepare_from_run

        return prepare_from_run(cfg)
    return None


def load_model(model_path: Path, env=None, algorithm: str = "ppo", **changes) -> BaseAlgorithm:
    """`PPO.load` (or RecurrentPPO.load for algorithm "recurrent_ppo") with a one-line LegkitError when the file is
    missing or corrupt, or holds the other algorithm's model; `changes` replace saved settings (e.g. learning_rate)
    before SB3 sets the model up, so that they really apply."""
    cls = ALGORITHM_CLASSES.get(algorithm)
    if cls is None:
        raise LegkitError(f"unknown algorithm '{algorithm}' for '{model_path}'; valid: {', '.join(ALGORITHM_CLASSES)}")
    try:
        model = cls.load(str(model_path), env=env, device="cpu", **changes)
    except Exception as exc:  # zipfile, pickle and torch all raise their own types
        why = (str(exc).strip().splitlines() or [""])[0]  # one line: torch's messages run over several
        raise LegkitError(f"checkpoint '{model_path}' is corrupt or unreadable ({type(exc).__name__}: {why})") from None
    recurrent = algorithm == "recurrent_ppo"
    if recurrent != isinstance(model.policy, RecurrentActorCriticPolicy):
        raise LegkitError(f"'{model_path}' holds a {type(model.policy).__name__}, not the "
                          f"{'LSTM' if recurrent else 'MLP'} policy of a {algorithm} model: its meta.json or "
                          "config.yaml names the wrong algorithm")
    return model


def read_normalization(path: Path, obs_dim: int | None = None) -> VecNormalize:
    """The VecNormalize statistics in `path` (no environment attached), checked to have `obs_dim` inputs."""
    try:
        with open(path, "rb") as f:
            norm = pickle.load(f)
    except Exception as exc:
        raise LegkitError(f"normalization file '{path}' is corrupt or unreadable ({type(exc).__name__})") from None
    if not isinstance(norm, VecNormalize) or not hasattr(norm, "obs_rms"):
        raise LegkitError(f"'{path}' does not hold VecNormalize statistics")
    size = int(np.prod(norm.obs_rms.mean.shape))
    if obs_dim is not None and size != obs_dim:
        raise LegkitError(f"normalization file '{path}' has statistics for {size} observation values but the model "
                          f"takes {obs_dim}: it belongs to another run; use the vecnormalize.pkl saved beside the model")
    return norm


def load_normalization(path: Path, venv) -> VecNormalize:
    """`read_normalization` attached to `venv` (as VecNormalize.load does), sizes checked first."""
    norm = read_normalization(path, venv.observation_space.shape[0])
    norm.set_venv(venv)
    return norm


def quiet_logger() -> Logger:
    """An SB3 logger that writes nothing: without one, every `learn` makes an SB3-* folder in the temp dir."""
    return Logger(folder=None, output_formats=[])


def ppo_settings(cfg: Config) -> dict:
    """The PPO constructor arguments that `cfg.ppo` sets and a resume may change."""
    p = cfg.ppo
    lr = p.learning_rate
    if p.learning_rate_final is not None:
        lr0, lr1 = p.learning_rate, p.learning_rate_final
        lr = lambda progress: lr1 + progress * (lr0 - lr1)  # noqa: E731 - progress goes 1 -> 0
    return dict(learning_rate=lr, n_steps=p.n_steps, batch_size=p.batch_size, n_epochs=p.n_epochs, gamma=p.gamma,
                gae_lambda=p.gae_lambda, clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef,
                sde_sample_freq=p.sde_sample_freq,
                max_grad_norm=p.max_grad_norm, target_kl=p.target_kl)


def policy_choice(cfg: Config, obs_layout: list) -> tuple[str | type, dict]:
    """The SB3 policy and policy_kwargs for `cfg.ppo`: MlpPolicy, or with `ppo.actor_observations` (or a
    state estimator, or symmetry) an AsymmetricActorCriticPolicy whose actor reads those terms of
    `obs_layout` ((name, start, size) list; all of them without actor_observations); for recurrent_ppo,
    sb3-contrib's MlpLstmPolicy (LSTM, then net_arch), or with `ppo.actor_observations` an
    AsymmetricRecurrentPolicy whose actor LSTM reads those terms."""
    p = cfg.ppo
    kwargs = {"net_arch": {"pi": list(p.net_arch), "vf": list(p.net_arch)},
              "activation_fn": ACTIVATION[p.activation], "log_std_init": p.log_std_init}
    if p.algorithm == "recurrent_ppo":
        kwargs.update(lstm_hidden_size=p.lstm_hidden, n_lstm_layers=p.lstm_layers, shared_lstm=p.shared_lstm,
                      enable_critic_lstm=p.critic_lstm)
        if not p.actor_observations:
            return "MlpLstmPolicy", kwargs
        return AsymmetricRecurrentPolicy, {**kwargs, "actor_indices": observation_indices(obs_layout,
                                                                                           p.actor_observations)}
    if not p.actor_observations and not p.symmetry:
        return "MlpPolicy", kwargs
    names = p.actor_observations or tuple(str(n) for n, _, _ in obs_layout)
    kwargs["actor_indices"] = observation_indices(obs_layout, names)
    if p.symmetry:
        kwargs["mirror"] = symmetry_kwargs(cfg, obs_layout, kwargs["actor_indices"])
    if p.estimator:
        kwargs["estimate_indices"] = observation_indices(obs_layout, p.estimator)
        kwargs["estimator_arch"] = list(p.estimator_net_arch)
    return AsymmetricActorCriticPolicy, kwargs


def symmetry_kwargs(cfg: Config, obs_layout: list, actor_indices: list[int]) -> dict:
    """The policy's `mirror` argument: the reflection of the actor's inputs (in their order) and of the action."""
    robot = get_robot(cfg.task.robot)
    joint_index, joint_sign = robot.joint_mirror()
    index, sign = mirror_map(obs_layout, joint_index, joint_sign, cfg.task.observation_history.terms,
                             term_reflections(cfg.task))
    where = {i: j for j, i in enumerate(actor_indices)}
    if any(int(index[i]) not in where for i in actor_indices):
        raise LegkitError("ppo.symmetry: the actor's inputs are not closed under the left-right reflection")
    return {"inputs": [[where[int(index[i])] for i in actor_indices], [float(sign[i]) for i in actor_indices]],
            "actions": [joint_index.tolist(), joint_sign.tolist()], "clip": CLIP_OBS}


def _build_model(cfg: Config, env: VecNormalize) -> BaseAlgorithm:
    layout = env.unwrapped.batch.obs_layout  # LegkitVecEnv under the wrappers
    policy, policy_kwargs = policy_choice(cfg, layout)
    model = ALGORITHM_CLASSES[cfg.ppo.algorithm](
        policy, env, **ppo_settings(cfg), use_sde=cfg.ppo.use_sde, seed=cfg.run.seed, device="cpu", verbose=0,
        policy_kwargs=policy_kwargs, tensorboard_log=None,
    )
    model.set_logger(quiet_logger())
    return model


@holding_run  # one trainer per run folder (train/lock.py)
def train(cfg: Config, run: Path, resume: ResumePlan | None = None, progress_bar: bool = True,
          extra_callbacks: tuple = (), render_clip: ClipRenderer | None = None,
          chunk_steps: int | None = None, wandb: WandbSettings | None = None, start: ModelStart | None = None) -> dict:
    """Train `cfg` in run folder `run` (continuing a checkpoint as `resume` plans); returns meta.

    `render_clip` renders the clips that `run.video_every` asks for (legkit.media.video.TrainingClips;
    train cannot import media, the room below it, so the caller passes it in). With `chunk_steps`,
    training stops at the first checkpoint `chunk_steps` or more steps from where it started (one chunk
    of supervised training, legkit.train.supervise): meta then has "finished": False and no final model
    is written. With `wandb`, every scalar and clip also goes to a wandb run (legkit.train.wandb_log).
    `start` starts a new run's model as `finetune.bc_policy` asks (legkit.imitate.start.FinetuneStart) and adds
    its callbacks to every session of the run; or from another run's model (finetune.from_run, finetune.first:
    legkit.train.from_run.RunStart).
    """
    r = cfg.run
    if cfg.finetune.bc_policy is not None and start is None:
        raise LegkitError(f"finetune.bc_policy = '{cfg.finetune.bc_policy}' asks for a start from a cloned policy but "
                          "no model start was given: pass start=legkit.imitate.start.prepare(cfg) or set "
                          "finetune.bc_policy=null")
    if cfg.finetune.from_run is not None and start is None and resume is None:
        raise LegkitError(f"finetune.from_run = '{cfg.finetune.from_run}' asks for a start from that run's model but "
                          "no model start was given: pass start=legkit.train.trainer.model_start(cfg) or set "
                          "finetune.from_run=null")
    if cfg.finetune.first is not None and start is None and resume is None:
        raise LegkitError(f"finetune.first = '{cfg.finetune.first}' asks for a first stage, which legkit train trains "
                          "(legkit.train.stages) before this run, but no model start was given: pass "
                          "start=legkit.train.stages.main_start(run, cfg) or set finetune.first=null")
    clips = bool(r.video_every) and r.video_every <= r.total_steps
    if clips:
        if render_clip is None:
            raise LegkitError(f"run.video_every = {r.video_every} asks for clips but no clip renderer was given: pass "
                              "render_clip=legkit.media.video.TrainingClips(...) or set run.video_every=0")
        render_clip.check()  # no OpenGL: stop now, not after the first million steps
    if chunk_steps and not r.checkpoint_every:
        raise LegkitError("chunks of training end at a checkpoint, but run.checkpoint_every = 0; set it > 0")
    recover(run)  # what a killed process left half done
    old = _read_meta(run)
    crash = injected_crashes(len(old.get("restarts", [])))  # a test hook; None unless LEGKIT_TEST_CRASH_AT is set
    # Before anything is built or written: a run whose wandb run cannot start stays as it was. One wandb
    # run (its id in meta.json) for every session of this run.
    board = WandbOutputFormat.start(wandb, run, to_dict(cfg), old.get("wandb_id")) if wandb is not None else None
    update_threads = r.torch_threads or os.cpu_count() or 1
    # The same torch threads for every run from the start (network initialisation included): float results
    # depend on the thread count, and a seed must give the same weights whatever ran before in the process.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(update_threads)
    env = LegkitVecEnv(cfg.task, r.num_envs, seed=r.seed, nthread=r.nthread or None, randomize_episode_start=True)
    t_start = time.time()
    meta = {
        "task": cfg.task_name, "robot": cfg.task.robot, "seed": r.seed, "git_revision": git_revision(),
        "legkit_version": __version__, "command": " ".join(sys.argv), "obs_layout": env.batch.obs_layout,
        "joints": list(env.batch.robot.joints), "control_dt": cfg.task.control_dt, "action_scale": cfg.task.action_scale,
        "actor_observations": list(cfg.ppo.actor_observations),  # [] = the actor reads every obs_layout term
        "estimated_observations": list(cfg.ppo.estimator),  # predicted inside the actor from its own inputs
        "symmetric_actor": cfg.ppo.symmetry,
        "algorithm": cfg.ppo.algorithm,  # the class that loads model.zip: PPO or RecurrentPPO (ALGORITHM_CLASSES)
        **{key: old[key] for key in HISTORY if key in old}, "finished": False,
    }
    if board is not None:
        meta["wandb_id"] = board.run.id

    def abandon() -> None:
        """Undo what this call set up, before the model trains: a failed start leaves nothing running."""
        env.close()
        torch.set_num_threads(threads_before)
        if board is not None:
            board.finish(failed=True)

    if resume is not None:
        latest = resume.checkpoint
        saved = _read_meta(latest)
        try:
            trained = saved.get("obs_layout") or _read_meta(run).get("obs_layout")
            diff = layout_difference(trained, env.batch.obs_layout) if trained else None
            if diff:
                raise LegkitError(f"cannot resume '{run}': the observation layout changed, {diff}")
            vecnorm = load_normalization(latest / "vecnormalize.pkl", env)
            model = load_model(latest / "model.zip", env=vecnorm, algorithm=cfg.ppo.algorithm, **ppo_settings(cfg))
        except LegkitError:
            abandon()
            raise
        vecnorm.gamma = cfg.ppo.gamma  # the return that reward normalization estimates
        write_yaml(run / CONFIG, to_dict(cfg))  # only now: a failed resume leaves the run untouched
        for folder, problem in resume.skipped:
            kept = set_aside(folder)
            print(f"legkit: warning: checkpoint {folder.name} is corrupt ({problem}); resuming from {latest.name}, "
                  f"the one before it; the corrupt one is kept in {kept}", file=sys.stderr)
        wall_before = float(old.get("wall_time_s", 0.0))
        meta["resumes"] = list(old.get("resumes", [])) + [{**resume.record(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}]
        stage = saved.get("curriculum_stage")
        if stage is not None and env.batch.curriculum is not None:
            env.batch.curriculum.set_stage(stage)
            # the clock of the stage's max_steps goes on where it was (absent from older checkpoints: 0)
            env.batch.curriculum.stage_steps = int(saved.get("curriculum_stage_steps", 0))
            env.batch.reset(record=False)
        levels = saved.get("terrain_levels")
        if levels is not None and env.batch.ground.restore_levels(levels):
            env.batch.reset(record=False)
        print(f"resuming {run} from {latest.name} ({model.num_timesteps} steps)")
        if resume.changes:
            print(f"changed on resume (applied, and recorded in meta.json):\n{resume.describe()}")
    else:
        write_yaml(run / CONFIG, to_dict(cfg))
        vecnorm = VecNormalize(env, norm_obs=True, norm_reward=cfg.ppo.normalize_reward, clip_obs=CLIP_OBS,
                               gamma=cfg.ppo.gamma)
        if cfg.ppo.fixed_scales:  # commands, camera pixels by their own scales, not by running statistics
            vecnorm.obs_rms = pinned_statistics(env.batch.obs_layout, cfg.task, cfg.ppo.fixed_scales)
        model = _build_model(cfg, vecnorm)
        if start is not None:
            try:
                start.apply(model, vecnorm)
                meta["started_from"] = start.describe()
            except LegkitError:
                abandon()
                raise
        wall_before = 0.0
    meta["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(run / "meta.json", {**_read_meta(run), **meta})
    model.tensorboard_log = str(run / "tb")
    # The TensorBoard logger SB3's learn() would make, made here: one run PPO_1, continued on resume.
    model.set_logger(configure_logger(0, str(run / "tb"), "PPO", reset_num_timesteps=resume is None))
    if board is not None:
        model.logger.output_formats.append(board)

    def current_meta() -> dict:
        cur = env.batch.curriculum
        extra = {"curriculum_stage": cur.stage, "curriculum_stage_steps": cur.stage_steps} if cur is not None else {}
        if env.batch.ground.curriculum is not None:  # per robot: where each stands on the terrain
            extra["terrain_levels"] = env.batch.ground.curriculum.level.tolist()
        return {**meta, **extra, "wall_time_s": round(wall_before + time.time() - t_start, 1)}

    guard = NaNGuard()
    callbacks = [guard, TorchThreads(update_threads), EpisodeLogger(env, run / "episodes.csv")]
    checkpointer = None
    if r.checkpoint_every:
        stop_at = model.num_timesteps + chunk_steps if chunk_steps else None
        checkpointer = Checkpointer(run / "checkpoints", r.checkpoint_every, current_meta, guard,
                                    r.keep_checkpoints, stop_at, end=r.total_steps)
        callbacks.append(checkpointer)
    if crash is not None:
        callbacks.append(crash)
    if clips:
        callbacks.append(VideoCallback(run / "videos", r.video_every, render_clip, r.video_tensorboard))
    if cfg.task.reward_stages:
        callbacks.append(RewardStages(env))
    if cfg.ppo.symmetry:
        callbacks.append(SymmetryStatistics())
    if cfg.ppo.estimator:
        callbacks.append(EstimatorTraining(cfg.ppo.estimator_learning_rate, cfg.ppo.estimator_epochs,
                                           cfg.ppo.batch_size))
    if cfg.ppo.ent_coef_final is not None:
        callbacks.append(LinearSchedule("ent_coef", cfg.ppo.ent_coef, cfg.ppo.ent_coef_final, r.total_steps))
    if cfg.ppo.action_std_cap is not None:
        callbacks.append(ActionStdCap(*cfg.ppo.action_std_cap, r.total_steps))
    remaining = r.total_steps - model.num_timesteps
    try:
        if start is not None:  # inside the try: a start that fails here still closes the env
            callbacks += start.callbacks(run, model, resume is not None)
        if remaining > 0:
            try:
                with mujoco_warnings_to(run / "mujoco.log"):
                    model.learn(remaining, callback=list(extra_callbacks) + callbacks, progress_bar=progress_bar,
                                tb_log_name="PPO", reset_num_timesteps=resume is None)
            except ValueError:
                # Non-finite weights make torch's distributions raise on the next forward pass, which can
                # come before the guard's next check; report it as the guard would, or re-raise.
                if guard.check_weights():
                    raise
        if guard.tripped:
            kept = checkpoints(run)
            # The run's record says why it stopped (legkit diagnose reads it); no model or checkpoint is written.
            write_json(run / "meta.json", {**_read_meta(run), "nan_stop": f"NaN guard stopped training: {guard.reason}"})
            raise LegkitError(f"NaN guard stopped training: {guard.reason}; nothing more was saved, the last good "
                              f"checkpoint is {kept[-1] if kept else 'none (no checkpoint was written yet)'}")
        if checkpointer is not None and checkpointer.stopped:
            chunk = {**current_meta(), "step": checkpointer.saved_step}  # the chunk's checkpoint is written
            write_json(run / "meta.json", {**_read_meta(run), **chunk})
            return chunk
        final = {**current_meta(), "step": model.num_timesteps, "finished": True}
        if r.checkpoint_every:
            save_checkpoint(run / "checkpoints", model.num_timesteps, model, vecnorm, final, r.keep_checkpoints)
        save_final(run, model, vecnorm, final)
    finally:
        if board is not None:  # before a supervised child's os._exit: its part of the wandb run ends here
            board.finish(failed=sys.exc_info()[0] is not None)
        env.close()
        torch.set_num_threads(threads_before)
    return final


def _read_meta(run: Path) -> dict:
    import json

    path = run / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {}
