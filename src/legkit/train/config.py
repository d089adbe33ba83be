"""The full run configuration (task + PPO + run settings) and its loading and validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from legkit import LegkitError
from legkit.config import apply_sets, deep_merge, from_dict, load_yaml, to_dict
from legkit.robots import get_robot
from legkit.tasks import TASKS, get_task
from legkit.tasks.commands import check_commands
from legkit.tasks.config import TaskConfig
from legkit.tasks.observations import OBSERVATIONS, REFLECTED, term_reflections
from legkit.tasks.terms import check_reward_table, staged_rewards
from legkit.train.normalization import FIXED_SCALE_TERMS


ALGORITHMS = ("ppo", "recurrent_ppo")
"""ppo.algorithm: SB3's PPO with an MLP policy, or sb3-contrib's RecurrentPPO with an LSTM policy (MlpLstmPolicy)."""
OBS_STATISTICS = ("frozen", "running", "read")
"""finetune.obs_statistics: what the cloned policy's observation statistics do during fine-tuning."""


@dataclass(frozen=True)
class PPOConfig:
    """Stable-Baselines3 PPO hyperparameters (defaults tuned for a 2-core CPU)."""

    algorithm: str = "ppo"
    """"ppo": SB3 PPO with an MLP actor and critic (MlpPolicy, or legkit's asymmetric policy). "recurrent_ppo":
    sb3-contrib RecurrentPPO (MlpLstmPolicy): an LSTM of ppo.lstm_hidden units, then ppo.net_arch, for the actor
    and (ppo.critic_lstm) another for the critic. The model loads with plain RecurrentPPO.load; meta.json's
    `algorithm` says which class a run's model.zip is."""
    lstm_hidden: int = 64
    """LSTM hidden size (recurrent_ppo; as legkit.imitate.bc.BCArch.lstm_hidden, so a cloned LSTM fits)."""
    lstm_layers: int = 1
    """Stacked LSTM layers (recurrent_ppo; BCArch.lstm_layers)."""
    shared_lstm: bool = False
    """The critic reads the actor's LSTM (recurrent_ppo); then ppo.critic_lstm must be false."""
    critic_lstm: bool = True
    """The critic has an LSTM of its own (recurrent_ppo); false: the critic is an MLP on the observation."""
    n_steps: int = 24
    """Rollout length per environment; one rollout is n_steps * num_envs samples."""
    batch_size: int = 2048
    """Minibatch size."""
    n_epochs: int = 5
    learning_rate: float = 5e-4
    learning_rate_final: float | None = None
    """If set, the learning rate decays linearly to this value."""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.002
    ent_coef_final: float | None = None
    """If set, the entropy coefficient moves linearly to this value over the run."""
    action_std_cap: tuple[float, float] | None = None
    """(start, end): each action's std is held at or under a cap that moves geometrically from `start` to `end`
    over the run (applied before every rollout; the std still learns under it). Made for a policy whose mean
    action stands still under slow commands while its exploration noise walks it: as the noise falls, the mean
    must start and keep the walk itself, which a deterministic evaluation and a robot both use (docs/results.md,
    thirty-first session). Its first clamp, before the first rollout, also caps a std copied from another run, as
    finetune.max_action_std would at `start`. null: the std is learnt freely."""
    vf_coef: float = 0.5
    max_grad_norm: float = 1.0
    target_kl: float | None = None
    net_arch: tuple[int, ...] = (128, 128)
    """Hidden layers of both the policy and the value network."""
    activation: str = "elu"
    """One of elu, tanh, relu."""
    log_std_init: float = -0.5
    """Initial log standard deviation of the Gaussian policy."""
    use_sde: bool = False
    """Generalized state-dependent exploration (SB3's gSDE): the exploration noise is a random linear function of
    the policy's last hidden layer, redrawn every sde_sample_freq steps, instead of fresh noise at every step; a
    robot whose servos turn per-step noise into jitter (the PiDog) explores without it. The noise std of an
    action is then about exp(log_std) times the size of that layer's output."""
    sde_sample_freq: int = -1
    """Steps between redraws of gSDE's noise function (-1: once per rollout)."""
    normalize_reward: bool = True
    """Scale rewards by a running estimate of the return's standard deviation (VecNormalize)."""
    actor_observations: tuple[str, ...] = ()
    """Observation terms the actor reads (what the robot measures); the critic reads all of
    task.observations, privileged state included (asymmetric actor-critic, legkit.train.policies).
    Empty: actor and critic read everything (SB3's MlpPolicy). With recurrent_ppo, the actor's LSTM reads these
    terms and the critic's LSTM (or, ppo.critic_lstm false, its MLP) everything (AsymmetricRecurrentPolicy)."""
    estimator: tuple[str, ...] = ()
    """Privileged observation terms (e.g. base_lin_vel) that a state estimator inside the actor predicts
    from the actor's own inputs, trained by regression on every rollout; the actor reads its estimate.
    Needs actor_observations, and the terms must not be among them."""
    estimator_net_arch: tuple[int, ...] = (128, 64)
    """Hidden layers of the state estimator."""
    estimator_learning_rate: float = 1e-3
    """Adam learning rate of the state estimator's regression."""
    estimator_epochs: int = 4
    """Passes of the estimator's regression over each rollout."""
    fixed_scales: tuple[str, ...] = ()
    """Observation terms normalized by fixed statistics instead of running ones (legkit.train.normalization):
    "command" by the mean and std of a uniform draw from the task's final command ranges, "camera" by the sensor's
    own scale (a depth pixel as uniform over its range; a height pixel mean 0, std 5 cm)."""
    symmetry: bool = False
    """A left-right symmetric actor by construction: its mean action is the average of the network's action
    and the mirror image of its action for the mirrored robot (the robot's mirror_joints), so a turn or a
    step to the left and to the right are one skill (legkit.train.policies)."""


@dataclass(frozen=True)
class RunConfig:
    """How long and on what to train, and what to write."""

    total_steps: int = 3_000_000
    """Environment steps (control steps summed over robots)."""
    num_envs: int = 256
    """Robots simulated together."""
    seed: int = 0
    checkpoint_every: int = 500_000
    """Write a checkpoint every this many steps (0: only the final model)."""
    keep_checkpoints: int = 0
    """Keep only the newest this many checkpoints, deleting older ones as new ones are written (0: keep
    every checkpoint; otherwise at least 2, so that a corrupt latest one has one to fall back to)."""
    eval_episodes: int = 20
    """Episodes of the evaluation written to eval.json at the end of training."""
    best_every: int = 1_000_000
    """Evaluate the policy every this many steps and at the end, and keep the best (by mean return) in
    RUN/best (0: never)."""
    best_episodes: int = 10
    """Episodes of each of those evaluations."""
    best_by: str = "return"
    """What makes a model the best of those evaluations: "return" (the mean return), "survival" (the survival
    rate, ties broken by the mean return): for a task whose return can rise while its robots fall more, or "speed"
    (the mean forward velocity, then the survival rate, then the return): with run.best_min_survival, the fastest
    model whose robots stay up."""
    best_min_forward_velocity: float = 0.0
    """A floor (m/s) under the best model: an evaluation whose mean forward velocity is below it ranks below every
    one that reaches it, whatever run.best_by says (0: no floor). With best_by=survival, a policy that stands
    still survives best; the floor keeps it from being the best."""
    best_min_survival: float = 0.0
    """A floor under the best model's survival rate (0-1): an evaluation whose survival rate is below it ranks below
    every one that reaches it (0: no floor). An evaluation that reaches more of the two floors ranks above one that
    reaches fewer; among those reaching as many, run.best_by decides."""
    stop_on_success: bool = False
    """End training at the first of those evaluations that meets the task's success bar (task.success): to
    measure the time to success (e.g. over --seeds) without training past it."""
    nthread: int = 0
    """Physics threads; 0 uses every core."""
    torch_threads: int = 0
    """Torch threads for the gradient updates (0: every core). Rollout collection always uses one,
    so that torch's workers do not compete with MuJoCo's physics threads."""
    video_every: int = 1_000_000
    """Render a clip of the policy being trained to videos/step_N.mp4 every this many steps (0: never).
    Rendering pauses training; at the default interval it costs about 2.5% (docs/media.md)."""
    video_seconds: float = 4.0
    """Length of each training clip (s)."""
    video_width: int = 480
    """Width of the training clips (even, pixels)."""
    video_height: int = 270
    """Height of the training clips (even, pixels)."""
    video_tensorboard: bool = True
    """Also show each clip in TensorBoard (Images tab, `video/policy`, a small animated GIF)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Start training from a behaviour-cloned policy (legkit.imitate.bc's best.pt / final.pt) instead of a random one.

    With `bc_policy` set, a new run (legkit.imitate.start):
      1. copies the cloned actor into the model (an "mlp" clone into ppo.algorithm=ppo, an "lstm" clone into
         recurrent_ppo; ppo.net_arch, ppo.activation, ppo.lstm_hidden and ppo.lstm_layers must be the clone's,
         except that an MLP's ppo.net_arch may be wider layer by layer: the clone fills each layer's first units and
         the added ones start fresh, weighted zero into the clone's units and the actions;
         with ppo.actor_observations the clone may read only those terms, and ppo.symmetry averages it with its
         mirror image) and sets the action log std to `log_std` (ppo.log_std_init does not apply); a clone
         recorded at another task.action_scale has its actions converted to the same joint targets (and so
         have the demonstrations);
      2. sets VecNormalize's observation statistics to the clone's normalizer (`obs_statistics`);
      3. measures the clone's mean return (`eval_episodes` deterministic and as many sampled episodes); with
         `reset_action_net`, puts the freshly built output layer back and measures the return again;
      4. warms the critic up: the first `critic_warmup_rollouts` updates fit only the value function, the actor
         frozen, and measures the return again;
      5. with `demos`, adds the decaying BC regularizer (legkit.imitate.finetune) from the first update after
         the warm-up.
    Both measurements and the warm-up's value losses go to TensorBoard (finetune/*) and RUN/finetune.json.
    Paths are read relative to the working directory when training starts (and resumes, for `demos`).
    """

    bc_policy: str | None = None
    """The cloned policy file (best.pt or final.pt); null: train from a freshly initialised network."""
    log_std: float = -2.0
    """Log std of the Gaussian policy after loading the clone (-2: std 0.14 on actions in [-1, 1]; SB3's 0
    would bury the cloned gait in exploration noise)."""
    reset_action_net: bool = False
    """Keep the clone's hidden layers but start the actor's output layer (action_net) as PPO built it, near-zero
    actions (the home pose), as a fresh network's: transfer learning with a new head. Started from the clone's own
    output, the PiDog's fine-tuning crouches and walks at half the scripted trot's speed whether the clone trots or
    stands; with the clone's hidden layers under a fresh output layer it learns as a fresh network does
    (docs/results.md, thirty-second session). The clone's return is measured before the reset, the start's after."""
    obs_statistics: str = "frozen"
    """"frozen": observations stay normalized by the clone's statistics for the whole run (the inputs the actor
    was trained on). "running": they start there and keep updating (weighted by the demonstrations' sample
    count), each entry's std floored at min_obs_std. "read": the entries the clone reads (non-zero first-layer
    weights) keep its statistics, the others are normalized by running statistics of the fine-tuning's own
    observations from the first rollout, as a fresh run's are (the clone's actions do not depend on them, so it
    starts exactly as loaded): a clone of the behaviour and the clock alone then learns to read its sensors at
    their real spread, not at the scripted gaits' (a PiDog touch pad, command or camera pixel that never moved in
    the demonstrations is divided by min_obs_std, 0.01, under "frozen" and sits at the clip)."""
    min_obs_std: float = 0.01
    """Floor of each observation entry's std under obs_statistics=running (as BC's own floor): an entry that
    stays constant during fine-tuning would otherwise be divided by ~1e-4."""
    critic_warmup_rollouts: int = 5
    """Rollouts whose updates fit only the critic (the actor, its log std included, frozen); 0: none."""
    eval_episodes: int = 8
    """Episodes (robots side by side, the task's full length, without its pushes) of each return measurement,
    deterministic and sampled; 0: no measurement."""
    demos: str | None = None
    """demos.npz for the decaying BC regularizer; null: none."""
    bc_coef: float = 1.0
    """The regularizer's coefficient right after the warm-up (scales its Adam learning rate bc_learning_rate)."""
    bc_decay_steps: int = 1_000_000
    """Environment steps over which the coefficient falls linearly to 0."""
    bc_steps: int = 10
    """Adam steps of the BC loss after each PPO update."""
    bc_batch_size: int = 256
    """Demonstration samples per BC step (recurrent: bc_batch_size // bc_seq_len windows)."""
    bc_learning_rate: float = 1e-3
    bc_seq_len: int = 32
    """Window length (steps) of the recurrent BC loss."""
    from_run: str | None = None
    """A trained run (its folder, or pretrained:NAME) whose model a new run starts from instead of a fresh network
    (legkit.train.from_run): every weight, the action std and the normalizer statistics are copied; ppo.log_std_init
    does not apply. The observation layout, ppo.algorithm and the network must be the source's; the rewards,
    commands and PPO settings are this run's. A term the source was blind to (task.observation_blind) and this run
    sees starts with first-layer weights of 0 and statistics measured afresh: a policy that learnt to walk blind
    then learns to look. null: none."""
    from_checkpoint: int | str | None = None
    """The source's checkpoint (a step number, 'latest' or 'best'); null: its final model."""
    max_action_std: float | None = None
    """With a start from another run's model (from_run, or the run's own first stage): each action's std is capped
    at this value after the source's is copied; the mean actions are the source's. Made for a policy whose mean
    stands still under slow commands while its exploration noise moves it (docs/results.md, twenty-seventh and
    twenty-eighth sessions: it helped on some seeds, not all); null: the source's std as it is."""
    first: str | None = None
    """A YAML config file of the same task to train first, as a stage of this run (legkit.train.stages): one
    `legkit train` trains it in RUN/first/ (an ordinary run folder: config.yaml, checkpoints, final model,
    eval.json), then starts this run from its final model exactly as finetune.from_run would (so its observation
    layout, ppo.algorithm and network must be this run's; checked before any folder is made). A relative path is
    read from the folder of the --config file that names it, else from the current directory; config.yaml records
    it as given. The first stage has its own file's settings (its task, PPO, run.total_steps, run.num_envs...) and
    this run's run.seed unless its file sets one; --steps, --envs, --set and --physics on the command line apply
    to this run only. It may not name a first stage itself, and excludes finetune.from_run and
    finetune.bc_policy. `--resume RUN` continues the first stage from its own checkpoint if it had not finished,
    else this run; a finished first stage is never trained again. null: none."""


@dataclass(frozen=True)
class Config:
    """Everything a run needs; saved resolved as config.yaml in the run folder."""

    task_name: str = "go2-walk"
    task: TaskConfig = field(default_factory=TaskConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    run: RunConfig = field(default_factory=RunConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


ACTIVATIONS = ("elu", "tanh", "relu")
BEST_BY = {"return": ("mean_return",), "survival": ("survival_rate", "mean_return"),
           "speed": ("mean_forward_velocity", "survival_rate", "mean_return")}
"""run.best_by: the evaluation metrics a best model is ranked by, compared in order (the next breaks a tie)."""


def default_config_file(task_name: str) -> Path:
    """The packaged YAML for `task_name` (legkit/configs/<task>.yaml)."""
    return Path(str(resources.files("legkit") / "configs" / f"{task_name}.yaml"))


def recipes() -> list[str]:
    """The packaged recipes' names (legkit/configs/recipes/NAME.yaml): `legkit train TASK --config NAME`."""
    folder = Path(str(resources.files("legkit") / "configs" / "recipes"))
    return sorted(p.stem for p in folder.glob("*.yaml"))


def recipe_file(name: str) -> Path:
    """The packaged recipe `name` (legkit/configs/recipes/NAME.yaml); a LegkitError naming the valid ones."""
    path = Path(str(resources.files("legkit") / "configs" / "recipes" / f"{name}.yaml"))
    if not path.is_file():
        raise LegkitError(f"no packaged recipe '{name}'; valid: {', '.join(recipes())}")
    return path


def default_recipe(task_name: str) -> Path | None:
    """The packaged recipe that `legkit train TASK` runs when no --config is given: the one named as the task
    (legkit/configs/recipes/TASK.yaml), or None when the task has none (its packaged config alone)."""
    return recipe_file(task_name) if task_name in recipes() else None


def config_file(given: str) -> str:
    """The --config file `given` names: the file at that path, or else the packaged recipe of that name
    (`--config pidog-arena`); a LegkitError when it is neither."""
    if Path(given).expanduser().exists() or any(sep in given for sep in ("/", "\\")) or given.endswith(".yaml"):
        return given  # a path: load_yaml says if it is missing
    if given in recipes():
        return str(recipe_file(given))
    raise LegkitError(f"--config '{given}': no such file, nor a packaged recipe ({', '.join(recipes())})")


def _command_range_checks(key: str, ranges) -> list[tuple]:
    """validate's checks of the command ranges of `ranges` (CommandConfig or a command curriculum's stage)."""
    return [(lo <= hi, f"{key}.{name}", [lo, hi], "[lo, hi] with lo <= hi")
            for name, (lo, hi) in (("lin_vel_x", ranges.lin_vel_x), ("lin_vel_y", ranges.lin_vel_y),
                                   ("ang_vel_yaw", ranges.ang_vel_yaw))]


def _curriculum_checks(key: str, cur) -> list[tuple]:
    """validate's checks that every staged curriculum (height or command) shares: its advancing rule and each
    stage's step cap."""
    return [(not cur.stages or 0 < cur.success_rate <= 1, f"{key}.success_rate", cur.success_rate, "in (0, 1]"),
            (not cur.stages or cur.window >= 1, f"{key}.window", cur.window, ">= 1"),
            *[(st.max_steps >= 0, f"{key}.stages[{i}].max_steps", st.max_steps, ">= 0 (0: no cap)")
              for i, st in enumerate(cur.stages)]]


def validate(cfg: Config) -> Config:
    """Check ranges that a type cannot express; raise a LegkitError naming the key and the valid range.

    Returns `cfg` with its reward table's weights and parameters coerced to their declared types.
    """
    p, r, t, v, f = cfg.ppo, cfg.run, cfg.task, cfg.task.validation, cfg.finetune
    period = f"{t.control_dt:g} s = physics.timestep {t.physics.timestep:g} x decimation {t.decimation}"
    checks = [
        (p.ent_coef >= 0, "ppo.ent_coef", p.ent_coef, ">= 0"),
        (p.ent_coef_final is None or p.ent_coef_final >= 0, "ppo.ent_coef_final", p.ent_coef_final, ">= 0"),
        (p.action_std_cap is None or min(p.action_std_cap) > 0, "ppo.action_std_cap",
         None if p.action_std_cap is None else list(p.action_std_cap), "[start, end], both > 0 (or null: no cap)"),
        (0 < p.gamma <= 1, "ppo.gamma", p.gamma, "in (0, 1]"),
        (0 < p.gae_lambda <= 1, "ppo.gae_lambda", p.gae_lambda, "in (0, 1]"),
        (p.learning_rate > 0, "ppo.learning_rate", p.learning_rate, "> 0"),
        (p.learning_rate_final is None or p.learning_rate_final >= 0, "ppo.learning_rate_final",
         p.learning_rate_final, ">= 0 (or null: a constant learning rate)"),
        (p.clip_range > 0, "ppo.clip_range", p.clip_range, "> 0"),
        (p.vf_coef >= 0, "ppo.vf_coef", p.vf_coef, ">= 0"),
        (p.estimator_learning_rate > 0, "ppo.estimator_learning_rate", p.estimator_learning_rate, "> 0"),
        (p.estimator_epochs >= 1, "ppo.estimator_epochs", p.estimator_epochs, ">= 1"),
        (all(w >= 1 for w in p.estimator_net_arch), "ppo.estimator_net_arch", list(p.estimator_net_arch),
         "a list of layer widths >= 1"),
        (p.max_grad_norm > 0, "ppo.max_grad_norm", p.max_grad_norm, "> 0"),
        (p.target_kl is None or p.target_kl > 0, "ppo.target_kl", p.target_kl, "> 0 (or null: no early stop)"),
        (p.sde_sample_freq >= -1 and p.sde_sample_freq != 0, "ppo.sde_sample_freq", p.sde_sample_freq,
         "-1 (once per rollout) or >= 1 (steps)"),
        (p.algorithm in ALGORITHMS, "ppo.algorithm", p.algorithm, f"one of {', '.join(ALGORITHMS)}"),
        (p.lstm_hidden >= 1, "ppo.lstm_hidden", p.lstm_hidden, ">= 1"),
        (p.lstm_layers >= 1, "ppo.lstm_layers", p.lstm_layers, ">= 1"),
        (not (p.shared_lstm and p.critic_lstm), "ppo.critic_lstm", p.critic_lstm,
         "false when ppo.shared_lstm is true (the critic reads the actor's LSTM)"),
        (f.obs_statistics in OBS_STATISTICS, "finetune.obs_statistics", f.obs_statistics,
         f"one of {', '.join(OBS_STATISTICS)}"),
        (math.isfinite(f.log_std), "finetune.log_std", f.log_std, "a finite number (log std of the actions)"),
        (f.max_action_std is None or f.max_action_std > 0, "finetune.max_action_std", f.max_action_std,
         "> 0 (or null: the source's action std)"),
        (f.min_obs_std > 0, "finetune.min_obs_std", f.min_obs_std, "> 0"),
        (f.critic_warmup_rollouts >= 0, "finetune.critic_warmup_rollouts", f.critic_warmup_rollouts, ">= 0"),
        (f.eval_episodes >= 0, "finetune.eval_episodes", f.eval_episodes, ">= 0 (0: no measurement)"),
        (f.bc_coef >= 0, "finetune.bc_coef", f.bc_coef, ">= 0"),
        (f.bc_decay_steps >= 1, "finetune.bc_decay_steps", f.bc_decay_steps, ">= 1"),
        (f.bc_steps >= 0, "finetune.bc_steps", f.bc_steps, ">= 0"),
        (f.bc_batch_size >= 1, "finetune.bc_batch_size", f.bc_batch_size, ">= 1"),
        (f.bc_learning_rate > 0, "finetune.bc_learning_rate", f.bc_learning_rate, "> 0"),
        (f.bc_seq_len >= 1, "finetune.bc_seq_len", f.bc_seq_len, ">= 1"),
        (p.n_steps >= 1, "ppo.n_steps", p.n_steps, ">= 1"),
        (p.n_epochs >= 1, "ppo.n_epochs", p.n_epochs, ">= 1"),
        (p.activation in ACTIVATIONS, "ppo.activation", p.activation, f"one of {', '.join(ACTIVATIONS)}"),
        (len(p.net_arch) >= 1 and all(h > 0 for h in p.net_arch), "ppo.net_arch", list(p.net_arch),
         "a non-empty list of positive layer sizes"),
        (r.total_steps >= 1, "run.total_steps", r.total_steps, ">= 1"),
        (r.num_envs >= 1, "run.num_envs", r.num_envs, ">= 1"),
        # after n_steps and num_envs, so that a bad one of those is named rather than batch_size
        (1 <= p.batch_size <= p.n_steps * r.num_envs, "ppo.batch_size", p.batch_size,
         f"between 1 and the rollout size n_steps * num_envs = {p.n_steps * r.num_envs}"),
        (r.nthread >= 0, "run.nthread", r.nthread, ">= 0 (0: every core)"),
        (r.torch_threads >= 0, "run.torch_threads", r.torch_threads, ">= 0 (0: every core)"),
        (r.checkpoint_every >= 0, "run.checkpoint_every", r.checkpoint_every, ">= 0"),
        (r.keep_checkpoints == 0 or r.keep_checkpoints >= 2, "run.keep_checkpoints", r.keep_checkpoints,
         "0 (keep every checkpoint) or at least 2 (a corrupt latest checkpoint needs one to fall back to)"),
        (r.video_every >= 0, "run.video_every", r.video_every, ">= 0 (0: no clips)"),
        (r.video_seconds > 0, "run.video_seconds", r.video_seconds, "> 0"),
        (16 <= r.video_width <= 4096 and r.video_width % 2 == 0, "run.video_width", r.video_width,
         "an even number from 16 to 4096"),
        (16 <= r.video_height <= 4096 and r.video_height % 2 == 0, "run.video_height", r.video_height,
         "an even number from 16 to 4096"),
        (r.eval_episodes >= 0, "run.eval_episodes", r.eval_episodes, ">= 0"),
        (r.best_every >= 0, "run.best_every", r.best_every, ">= 0 (0: no best model)"),
        (r.best_episodes >= 1, "run.best_episodes", r.best_episodes, ">= 1"),
        (r.best_by in BEST_BY, "run.best_by", r.best_by, f"one of {', '.join(BEST_BY)}"),
        (math.isfinite(r.best_min_forward_velocity) and r.best_min_forward_velocity >= 0,
         "run.best_min_forward_velocity", r.best_min_forward_velocity, "a number >= 0 (m/s; 0: no floor)"),
        (0 <= r.best_min_survival <= 1, "run.best_min_survival", r.best_min_survival,
         "a number from 0 to 1 (a survival rate; 0: no floor)"),
        (t.decimation >= 1, "task.decimation", t.decimation, ">= 1"),
        (t.physics.timestep > 0, "task.physics.timestep", t.physics.timestep, "> 0"),
        # at least one control step per episode (max_episode_steps >= 1); the slack absorbs float
        # rounding, e.g. of 0.005 x 4 against 0.02
        (t.episode_seconds >= t.control_dt * (1 - 1e-9), "task.episode_seconds", t.episode_seconds,
         f"at least one control period ({period})"),
        (t.action_scale > 0, "task.action_scale", t.action_scale, "> 0 (rad per unit action)"),
        *_command_range_checks("task.commands", t.commands),
        (t.commands.resample_seconds >= 0, "task.commands.resample_seconds", t.commands.resample_seconds,
         ">= 0 (s; 0: one command per episode)"),
        (t.termination.base_contact_force >= 0, "task.termination.base_contact_force",
         t.termination.base_contact_force, ">= 0 (N)"),
        (t.termination.grace_steps >= 0, "task.termination.grace_steps", t.termination.grace_steps, ">= 0"),
        (t.reset.joint_pos_noise >= 0, "task.reset.joint_pos_noise", t.reset.joint_pos_noise, ">= 0 (rad)"),
        (t.reset.base_vel_noise >= 0, "task.reset.base_vel_noise", t.reset.base_vel_noise, ">= 0"),
        (t.reset.yaw_range >= 0, "task.reset.yaw_range", t.reset.yaw_range, ">= 0 (rad)"),
        (t.pushes.force >= 0, "task.pushes.force", t.pushes.force, ">= 0 (N; 0: no pushes)"),
        (t.randomization_pool >= 1, "task.randomization_pool", t.randomization_pool, ">= 1 (models)"),
        (0 <= t.latency.range_s[0] <= t.latency.range_s[1] <= t.control_dt + 1e-12, "task.latency.range_s",
         list(t.latency.range_s), f"[lo, hi] with 0 <= lo <= hi <= one control period ({period})"),
        (t.pushes.interval_s > 0, "task.pushes.interval_s", t.pushes.interval_s, "> 0"),
        (t.pushes.duration_s > 0, "task.pushes.duration_s", t.pushes.duration_s, "> 0"),
        *_curriculum_checks("task.curriculum", t.curriculum),
        *[check for i, st in enumerate(t.curriculum.stages) for check in (
            (st.tolerance >= 0, f"task.curriculum.stages[{i}].tolerance", st.tolerance, ">= 0 (m)"),
            (st.min_steps >= 0, f"task.curriculum.stages[{i}].min_steps", st.min_steps, ">= 0"),
            (st.push_force >= 0, f"task.curriculum.stages[{i}].push_force", st.push_force, ">= 0 (N)"),
        )],
        *_curriculum_checks("task.command_curriculum", t.command_curriculum),
        *[check for i, st in enumerate(t.command_curriculum.stages)
          for check in _command_range_checks(f"task.command_curriculum.stages[{i}]", st)],
        (v.episodes >= 1, "task.validation.episodes", v.episodes, ">= 1"),
        (v.max_steps >= 1, "task.validation.max_steps", v.max_steps, ">= 1"),
        (v.seed_episodes >= 1, "task.validation.seed_episodes", v.seed_episodes, ">= 1"),
        (v.long_steps >= 1, "task.validation.long_steps", v.long_steps, ">= 1"),
        (0 <= v.min_lasting_episodes <= v.episodes, "task.validation.min_lasting_episodes", v.min_lasting_episodes,
         f"between 0 and task.validation.episodes = {v.episodes}"),
        (v.height_range[0] <= v.height_range[1], "task.validation.height_range", list(v.height_range),
         "[lo, hi] with lo <= hi ([0, 0]: no check)"),
        (v.push_force >= 0, "task.validation.push_force", v.push_force, ">= 0 (N)"),
        (v.push_interval_s > 0, "task.validation.push_interval_s", v.push_interval_s, "> 0"),
        (v.push_duration_s > 0, "task.validation.push_duration_s", v.push_duration_s, "> 0"),
        (0 <= v.mass_range < 1, "task.validation.mass_range", v.mass_range, "in [0, 1) (masses x U(1 - r, 1 + r))"),
        (0 <= v.friction_range < 1, "task.validation.friction_range", v.friction_range,
         "in [0, 1) (friction x U(1 - r, 1 + r))"),
        (0 <= v.min_survival <= 1, "task.validation.min_survival", v.min_survival, "in [0, 1]"),
        (0 <= v.max_early_termination <= 1, "task.validation.max_early_termination", v.max_early_termination,
         "in [0, 1]"),
    ]
    for ok, key, value, valid in checks:
        if not ok:
            raise LegkitError(f"invalid {key} = {value}: must be {valid}")
    for name in p.actor_observations:
        if name not in t.observations:
            raise LegkitError(f"ppo.actor_observations: '{name}' is not one of the task's observation terms; "
                              f"valid: {', '.join(t.observations)}")
    if len(set(p.actor_observations)) != len(p.actor_observations):
        raise LegkitError(f"invalid ppo.actor_observations = {list(p.actor_observations)}: must name each term once")
    if p.estimator and not p.actor_observations:
        raise LegkitError("ppo.estimator needs ppo.actor_observations: the estimator predicts, for an actor that "
                          "reads only those terms, the terms it cannot read")
    if len(set(p.estimator)) != len(p.estimator):
        raise LegkitError(f"invalid ppo.estimator = {list(p.estimator)}: must name each term once")
    for name in p.estimator:
        if name not in t.observations or name in p.actor_observations:
            valid = [n for n in t.observations if n not in p.actor_observations]
            raise LegkitError(f"ppo.estimator: '{name}' must be one of the task's observation terms that the actor "
                              f"does not read; valid: {', '.join(valid) or 'none'}")
    if p.symmetry:
        check_symmetry(t)
    if p.use_sde and (p.actor_observations or p.estimator or p.symmetry):
        raise LegkitError("ppo.use_sde cannot be combined with ppo.actor_observations, ppo.estimator or ppo.symmetry "
                          "(legkit's asymmetric policy draws plain gaussian noise); leave one of them out")
    if p.algorithm == "recurrent_ppo":
        custom = [k for k, on in (("ppo.estimator", p.estimator), ("ppo.symmetry", p.symmetry)) if on]
        if custom:
            raise LegkitError(f"ppo.algorithm = recurrent_ppo cannot be combined with {', '.join(custom)}: those "
                              "build legkit's asymmetric MLP policy for PPO; use ppo.algorithm=ppo or leave them out")
        if p.actor_observations and p.shared_lstm:
            raise LegkitError("ppo.shared_lstm = true cannot be combined with ppo.actor_observations: the critic "
                              "would read the actor's LSTM, which sees only the actor's terms; set "
                              "ppo.shared_lstm=false")
    if f.bc_policy is not None:
        custom = [k for k, on in (("ppo.estimator", p.estimator),
                                  ("ppo.fixed_scales", p.fixed_scales and f.obs_statistics != "read")) if on]
        if custom:
            raise LegkitError(f"finetune.bc_policy cannot be combined with {', '.join(custom)}: the cloned actor "
                              "reads no estimate, and its observations are normalized by its own statistics (under "
                              "finetune.obs_statistics=read, fixed scales apply to the inputs it does not read)")
    if f.from_run is not None and f.bc_policy is not None:
        raise LegkitError("finetune.from_run and finetune.bc_policy both name where the network starts: set one of "
                          "them (the other null)")
    if f.first is not None and (f.from_run is not None or f.bc_policy is not None):
        other = "finetune.from_run" if f.from_run is not None else "finetune.bc_policy"
        raise LegkitError(f"finetune.first and {other} both name where the network starts (this run starts from "
                          f"its first stage's model): set one of them (the other null); a first stage may start "
                          f"from a run or a clone in its own file")
    if f.from_checkpoint is not None and f.from_run is None:
        raise LegkitError("finetune.from_checkpoint names a checkpoint of finetune.from_run, which is null: set "
                          "finetune.from_run=RUN too (or finetune.from_checkpoint=null)")
    if f.max_action_std is not None and f.from_run is None and f.first is None:
        raise LegkitError(f"finetune.max_action_std = {f.max_action_std} caps the action std copied from another "
                          "run's model: it needs finetune.from_run or finetune.first (a clone's std is "
                          "finetune.log_std, a fresh network's ppo.log_std_init), or finetune.max_action_std=null")
    if p.action_std_cap is not None and p.use_sde:
        raise LegkitError(f"ppo.action_std_cap = {list(p.action_std_cap)} caps a state-independent action std, and "
                          "ppo.use_sde is true (gSDE's log std scales features, not actions): set one of them off")
    if f.max_action_std is not None and p.use_sde:
        raise LegkitError(f"finetune.max_action_std = {f.max_action_std} caps a state-independent action std, and "
                          "ppo.use_sde is true (gSDE's log std scales features, not actions): set one of them off")
    if f.reset_action_net and f.bc_policy is None:
        raise LegkitError("finetune.reset_action_net starts the output layer of a cloned actor afresh: it needs "
                          "finetune.bc_policy (or set finetune.reset_action_net=false)")
    if f.demos is not None and f.bc_policy is None:
        raise LegkitError("finetune.demos adds a BC regularizer to fine-tuning a cloned policy: it needs "
                          "finetune.bc_policy (or set finetune.demos=null)")
    for key, path in (("finetune.bc_policy", f.bc_policy), ("finetune.demos", f.demos),
                      ("finetune.from_run", f.from_run), ("finetune.first", f.first)):
        if path is not None and not path.strip():
            raise LegkitError(f"invalid {key} = '{path}': must be a path (or null for none)")
    for name in p.fixed_scales:
        if name not in FIXED_SCALE_TERMS or name not in t.observations:
            valid = [n for n in FIXED_SCALE_TERMS if n in t.observations]
            raise LegkitError(f"ppo.fixed_scales: '{name}' cannot have a fixed scale in this task; valid: "
                              f"{', '.join(valid) or 'none'}")
    check_commands(t)
    robot = get_robot(t.robot)  # unknown robots fail here, before a run folder is created
    for i, st in enumerate(t.curriculum.stages):
        if robot.max_base_height and st.target > robot.max_base_height:
            raise LegkitError(
                f"invalid task.curriculum.stages[{i}].target = {st.target}: the {robot.name}'s base cannot be "
                f"higher than {robot.max_base_height} m with its feet on the ground; must be <= {robot.max_base_height}")
    for name in t.observations:
        if name not in OBSERVATIONS:
            raise LegkitError(f"unknown observation term '{name}'; valid terms: {', '.join(OBSERVATIONS)}")
    for name in t.observation_blind:
        if name not in t.observations:
            raise LegkitError(f"task.observation_blind: '{name}' is not one of the task's observation terms; "
                              f"valid: {', '.join(t.observations)}")
    for name, width in t.observation_noise.items():
        if name not in t.observations:
            raise LegkitError(f"task.observation_noise.{name}: '{name}' is not one of the task's observation terms; "
                              f"valid: {', '.join(t.observations)}")
        if not width >= 0:
            raise LegkitError(f"invalid task.observation_noise.{name} = {width}: must be >= 0 (the noise half-width)")
    for i, st in enumerate(t.reward_stages):
        if not st.step >= 0:
            raise LegkitError(f"invalid task.reward_stages[{i}].step = {st.step}: must be >= 0 (environment steps)")
    check_reward_table(staged_rewards(t.rewards, t.reward_stages))  # every stage's parameters, named if wrong
    return replace(cfg, task=replace(t, rewards=check_reward_table(t.rewards)))


def check_symmetry(t: TaskConfig) -> None:
    """Raise a LegkitError unless task `t`'s robot declares a mirror and every observation term has one."""
    robot = get_robot(t.robot)
    if not robot.mirror_joints:
        raise LegkitError(f"ppo.symmetry needs a robot with a left-right mirror; the {robot.name} declares none "
                          "(RobotSpec.mirror_joints)")
    for name in t.observations:
        if name not in REFLECTED:
            raise LegkitError(f"ppo.symmetry: observation term '{name}' has no left-right reflection; terms with one: "
                              f"{', '.join(REFLECTED)}")
    try:
        term_reflections(t)
    except ValueError as e:
        raise LegkitError(f"ppo.symmetry: {e}") from None


def build_config(task_name: str, config_file: str | None = None, sets: list[str] | None = None,
                 base: dict | None = None) -> Config:
    """Resolve a run's config: task factory <- packaged YAML <- user YAML <- --set overrides."""
    if task_name not in TASKS:
        raise LegkitError(f"unknown task '{task_name}'; valid tasks: {', '.join(sorted(TASKS))}")
    tree = base if base is not None else {"task_name": task_name, "task": to_dict(get_task(task_name))}
    packaged = default_config_file(task_name)
    if base is None and packaged.exists():
        tree = deep_merge(tree, load_yaml(str(packaged)))
    if config_file:
        tree = deep_merge(tree, load_yaml(config_file))
    tree = apply_sets(tree, list(sets or []))
    if tree.get("task_name", task_name) != task_name:
        raise LegkitError(f"config names task '{tree['task_name']}' but the run is for '{task_name}'")
    return validate(from_dict(Config, tree))
