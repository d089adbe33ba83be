"""The pipeline's configuration: one dataclass per stage, addressed on the command line as `--set STAGE.KEY=VALUE`.

The fine-tuning is `legkit train` of the packaged recipe pidog-arena (configs/recipes/): a first stage that turns on
the spot on open ground (pidog-turn), started from the cloned MLP, then the arena, started from the first stage's
model; the pipeline reads the camera in both as heights above the floor, normalized by the sensor's own scale
(finetune.camera_depth, camera_scale; camera_noise adds noise), and in the arena stage charges falls more
(finetune.fall_cost), runs longer episodes (finetune.episode_seconds) and caps the action noise
(finetune.action_std_cap). The collect and imitate stages run the task as the recipe sets it, so that the
demonstrations, the clone and the fine-tuning share one observation layout (`pipeline_task`; the clone reads the
behaviour and the clock, not the camera); the demonstrations are recorded at the task's own action scale (the sit
pose fits), and the fine-tuning converts the clone's actions to the recipe's.
More settings pass through: `--set finetune.ppo.learning_rate=1e-4` (any `task.`, `ppo.` or `run.` key under
`finetune.`) becomes `--set ppo.learning_rate=1e-4` of both stages, and the keys of the start from the cloned
policy (`--set finetune.bc_coef=0.5`) go to the first stage. What ties the fine-tuning to the cloned policy (its
file, the demonstrations, the network's shape) is the pipeline's own: `first_sets`. Every key and value is checked
before a stage runs.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from legkit import LegkitError
from legkit.config import apply_sets, from_dict, parse_set, to_dict
from legkit.imitate.bc import DEFAULT_NET_ARCH, KINDS
from legkit.imitate.collect import PIDOG_BEHAVIOURS
from legkit.imitate.start import units_differ
from legkit.sim.sensors import DEPTH_MODES
from legkit.tasks import get_task
from legkit.train.config import BEST_BY, FinetuneConfig, build_config, recipe_file

STAGES = ("collect", "imitate", "finetune", "package")
"""The stages, in the order they run; each reads what the ones before it wrote."""
FOLDERS = {"collect": "collect", "imitate": "imitate", "finetune": "finetune", "package": "final_model"}
"""Each stage's outputs: EXPERIMENT/FOLDER/."""
TASK = "pidog-run"
"""The task every stage runs in: demonstrations, cloning, fine-tuning and export share its observations."""
RECIPE, FIRST_RECIPE = "pidog-arena", "pidog-turn"
"""The fine-tuning's packaged recipes (legkit/configs/recipes/): the arena stage, and the first stage it names."""
FINETUNE_KIND = "mlp"
"""The clone the fine-tuning starts from: the recipe's symmetric actor reads a subset of the observation, which an
MLP clone of those terms fits (an LSTM clone reads the whole observation, and RecurrentPPO has no symmetric actor)."""
TRAIN_SECTIONS = ("task", "ppo", "run")
"""`finetune.<section>.KEY` goes to `legkit train --set <section>.KEY`."""
CLONE_KEYS = ("finetune.bc_policy", "finetune.demos", "finetune.log_std", "finetune.obs_statistics",
              "finetune.reset_action_net", "ppo.algorithm", "ppo.net_arch", "ppo.activation", "ppo.lstm_hidden",
              "ppo.lstm_layers")
"""legkit train keys the pipeline sets from the cloned policy and its own settings (first_sets): not to be given."""
OTHER_STARTS = ("finetune.from_run", "finetune.from_checkpoint", "finetune.first")
"""legkit train keys of a start other than the clone: the pipeline's fine-tuning starts from its clone."""
START_KEYS = tuple(f.name for f in fields(FinetuneConfig) if f"finetune.{f.name}" not in CLONE_KEYS + OTHER_STARTS)
"""legkit train's finetune.* keys (the start from the cloned policy) that `--set finetune.KEY` passes on."""


@dataclass(frozen=True)
class CollectSettings:
    """Scripted-gait demonstrations (legkit.imitate.collect)."""

    behaviours: tuple[str, ...] = tuple(PIDOG_BEHAVIOURS)
    """Behaviours demonstrated, each a scripted gait (walk_forward, walk_backward, trot_forward, turn_left,
    turn_right, stand, sit)."""
    seconds_per_behaviour: float = 120.0
    """Demonstrated time per behaviour (s): the seed's 2 minutes each."""
    episode_seconds: float = 10.0
    """Length of one demonstration episode (s)."""
    joint_pos_noise: float = 0.01
    """Gaussian noise std on the recorded joint positions (rad)."""
    joint_vel_noise: float = 0.1
    """Gaussian noise std on the recorded joint velocities (rad/s)."""
    action_noise: float = 0.0
    """Gaussian noise std (rad) on the joint targets the scripted gait executes, the recorded action staying the
    gait's own (DART): demonstrations of getting back onto the gait. Episodes that fall are not kept."""
    seed: int = 0


@dataclass(frozen=True)
class ImitateSettings:
    """Behaviour cloning (legkit.imitate.bc) and its closed-loop check on every demonstrated behaviour."""

    kinds: tuple[str, ...] = ("lstm", "mlp")
    """The clones trained, each into imitate/KIND/ with its closed-loop check: lstm (the seed's LSTM(64) ->
    Dense(32)) and mlp. The fine-tuning starts from the MLP, which must be among them."""
    epochs: int = 200
    """At most this many passes over the training episodes."""
    patience: int = 20
    """Stop after this many epochs without a lower validation loss (0: never)."""
    batch_size: int = 1024
    lr: float = 1e-3
    seq_len: int = 32
    """LSTM: steps of truncated backpropagation through time."""
    val_fraction: float = 0.2
    """Share of each behaviour's episodes held out for validation (whole episodes)."""
    lstm_hidden: int = 64
    inputs: tuple[str, ...] = ("behaviour", "clock")
    """Observation terms the clone reads (empty: all). The scripted gaits act on the behaviour and the clock
    alone, so a clone of those reproduces them closed loop; the other inputs (camera, IMU, ultrasonic, joints)
    enter through weights held at zero, which fine-tuning may grow. A clone of every input copies the joint
    encoders and loses the moving gaits (docs/results.md)."""
    seed: int = 0
    eval_robots: int = 8
    """Robots per behaviour in the closed-loop evaluation (0: none)."""
    eval_seconds: float = 10.0
    """Length of each closed-loop episode (s)."""


@dataclass(frozen=True)
class FinetuneSettings:
    """PPO of the recipe pidog-arena started from the cloned MLP (`legkit train pidog-run --config pidog-arena`)."""

    turn_steps: int = 3_000_000
    """Environment steps of the first stage (pidog-turn: turning on the spot on open ground), which starts from the
    clone (0: no first stage; the arena stage starts from the clone)."""
    steps: int = 4_000_000
    """Environment steps of the arena stage, started from the first stage's model (about 16 minutes on the 2-core
    VM)."""
    envs: int = 256
    """Robots simulated together."""
    checkpoint_every: int = 500_000
    """Steps between checkpoints: how much a killed fine-tuning loses."""
    best_every: int = 500_000
    """Steps between evaluations that keep the best model of each stage (0: none): the packaged policy is the arena
    stage's best one (finetune.best_by)."""
    best_episodes: int = 32
    """Episodes of each of those evaluations: a PiDog's falls and collisions vary from one obstacle layout to the
    next, and the best model is chosen on them."""
    best_by: str = "speed"
    """What makes the arena stage's model the best (run.best_by): "speed", the fastest forward among those whose
    robots survive at least finetune.best_min_survival of those episodes; "survival" (the recipe's), the
    survival rate, ties broken by the mean return; or "return". Ranked by survival the pipeline kept its 2.5 M model
    (1.42-1.45 times the trot's speed on held-out layouts) over its final one (1.58-1.63 times, 98-99%): one fall
    in 32 episodes apart (docs/results.md, thirty-seventh session)."""
    best_min_survival: float = 0.95
    """The arena stage's survival floor under the best model (run.best_min_survival; 0: none): the issue's bar."""
    final_eval_episodes: int = 10
    """Episodes of the evaluation at the end of each stage (eval.json)."""
    log_std: float = -1.0
    """Log std of the actions when the clone is loaded: the recipe's (std 0.37 on actions in [-1, 1]), as a fresh
    network's. The scripted gaits the clone copies fall under far less noise than any exploration, and starts at
    std 0.14 and 0.02 did not keep them; a fresh network's start falls under this noise too, and recovers
    (docs/results.md)."""
    reset_action_net: bool = True
    """Start the actor's output layer as PPO builds it (near-zero actions: the home pose) under the clone's hidden
    layers. The clone's own output (its gait, or its stand) leads the fine-tuning into a crouched, slow walk: 0.036
    m/s on held-out layouts against 0.086 with the reset (docs/results.md, thirty-second session). The clone's
    return as loaded is still measured first (finetune/run/first/finetune.json, return_start)."""
    obs_statistics: str = "read"
    """legkit train's finetune.obs_statistics for the start from the clone: "read" normalizes the inputs the clone
    reads (the behaviour, the clock) by the demonstrations' statistics and every other input by the fine-tuning's
    own; "frozen" keeps the demonstrations' statistics for every input (a sensor that never moved in them then sits
    at the clip)."""
    added_units: int = 0
    """Hidden units added to each of the cloned MLP's layers in the fine-tuned actor (and its critic): the clone
    fills each layer's first units, the added ones start as a fresh network's, weighted zero into the clone's
    units and the actions, so that the start acts as the clone does and the fine-tuning has a fresh network's
    units to learn balance with (the clone reads only the behaviour and the clock)."""
    camera_depth: str = "height"
    """What the camera's pixels read in both stages (task.sensors.camera.depth): "height", each pixel the height
    above the floor of what it sees (the floor 0, a 4 cm curb 0.04, however the body pitches), or "range" (the
    recipe's own), the distance along each pixel's ray. With "range" the pipeline's policy walked 1.23-1.29 times
    the trot's speed and collided 0.49-0.97 times as often; with "height" 1.8 times and 0.02-0.08 times, falling
    in 6-10% of the episodes until a fall cost more (fall_cost; docs/results.md, thirty-fifth session). A `--set
    finetune.task.sensors.camera.depth=...` overrides it."""
    camera_noise: float = 0.0
    """Gaussian noise std (m) on every camera pixel in both stages (task.sensors.camera.noise_std; the recipe's is
    0). Trained with 1 cm of it the fine-tuning stalled: 0.048 m/s on held-out layouts with the camera's running
    statistics; with its fixed scale too, it fell in 19-100% of its evaluation episodes up to 1.5 M steps, when it
    was stopped (docs/results.md, thirty-sixth session). The policy trained without it, at the camera's fixed scale (camera_scale), holds up under 1 and 2 cm
    of it."""
    camera_scale: str = "fixed"
    """How both stages normalize the camera's pixels: "fixed", by the sensor's own scale (`ppo.fixed_scales=[camera]`:
    a height pixel around the floor, 0, with a 5 cm std), or "running", by running statistics of the rollouts (the
    recipe's). A height pixel mostly sees the floor, so its running std is millimetres: the policy trained so fell in
    every episode under 1 cm of noise per pixel, where the one trained at the fixed scale kept 98-99% survival and
    its speed under 1 and 2 cm (docs/results.md, thirty-sixth session)."""
    fall_cost: float = -80.0
    """The arena stage's cost of a fall (task.rewards.termination.weight; the recipe's, and the first stage's, is
    -40). With the height camera the policy gets round what it sees by turning, and at -40 it turned fast enough
    to tip over in 6-10% of the episodes; at -80 it survives 95.5-98% at the same speed (docs/results.md,
    thirty-fifth session). A `--set finetune.task.rewards.termination.weight=...` overrides it (both stages)."""
    episode_seconds: float = 30.0
    """The arena stage's episode length (s; task.episode_seconds; the recipe's 20). The arena's walls stand 2 m ahead
    of the spawn: in 20 s episodes a policy met them too seldom to learn to walk on along them, and stopped there
    in 60% of the held-out episodes (docs/results.md, thirty-seventh session). Evaluate with `--set
    task.episode_seconds=20` to compare with the scripted trot's 20 s episodes."""
    action_std_cap: tuple[float, float] | None = (0.3, 0.05)
    """The arena stage's cap on the action std, falling geometrically from the first to the second over the stage
    (ppo.action_std_cap; null: none, the recipe's). Uncapped, the exploration noise (std 0.3) walks the robot
    while its mean action, which an evaluation and the robot use, stalled 42% of the time by 3.5 M steps
    (docs/results.md, thirty-seventh session)."""
    bc_term: bool = False
    """Add the decaying behaviour-cloning term on the demonstrations to the first stage (finetune.bc_coef...). It
    pulls the actor back to the clone's output, the start that leads the fine-tuning into a crouched, slow walk
    (see reset_action_net): off by default (docs/results.md)."""
    train: tuple[str, ...] = ()
    """Further `legkit train --set` strings, given as finetune.ppo.KEY=VALUE (or task./run.) for both stages and
    finetune.KEY for the first stage's finetune.KEY (e.g. bc_coef)."""


@dataclass(frozen=True)
class PackageSettings:
    """The final_model/ folder (legkit.export)."""

    checkpoint: str = "best"
    """Which policy of the fine-tuning to package: best (by the arena stage's periodic evaluations, as
    finetune.best_by ranks them) or final."""
    parity_samples: int = 10_000
    """Observations on which the exported graphs are checked against the trained model."""


@dataclass(frozen=True)
class PipelineConfig:
    collect: CollectSettings = field(default_factory=CollectSettings)
    imitate: ImitateSettings = field(default_factory=ImitateSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    package: PackageSettings = field(default_factory=PackageSettings)


SETTINGS = {"collect": CollectSettings, "imitate": ImitateSettings, "finetune": FinetuneSettings,
            "package": PackageSettings}


def keys(stage: str) -> list[str]:
    """The --set keys of `stage`, without the stage's name."""
    names = [f.name for f in fields(SETTINGS[stage]) if f.name != "train"]
    return names + ([*START_KEYS, *(f"{s}.KEY" for s in TRAIN_SECTIONS)] if stage == "finetune" else [])


def resolve(base: dict | None, sets: list[str]) -> PipelineConfig:
    """`base` (a saved config tree; None: the defaults) with `sets` applied, checked; a LegkitError names
    what is wrong and what is valid."""
    tree = copy.deepcopy(to_dict(PipelineConfig()) if base is None else base)
    plain, train = [], dict(_split(s) for s in tree.get("finetune", {}).get("train", []) or [])
    for item in sets:
        parts, _ = parse_set(item)
        stage, key = parts[0], ".".join(parts[1:])
        if stage not in STAGES:
            raise LegkitError(f"unknown --set key '{'.'.join(parts)}': a key starts with its stage, one of "
                              f"{', '.join(STAGES)} (e.g. imitate.epochs=100)")
        if stage == "finetune" and (len(parts) > 2 and parts[1] in TRAIN_SECTIONS or key in START_KEYS):
            key = key if len(parts) > 2 else f"finetune.{key}"  # legkit train's own finetune section
            if key in CLONE_KEYS:
                raise LegkitError(f"--set finetune.{'.'.join(parts[1:])}: the pipeline sets {key} from the cloned "
                                  "policy and its own settings (finetune.log_std, finetune.bc_term); change those "
                                  "instead")
            train[key] = _split(item)[1]
        elif len(parts) != 2 or parts[1] not in keys(stage):
            raise LegkitError(f"unknown --set key '{'.'.join(parts)}'; valid keys of {stage}: "
                              f"{', '.join(f'{stage}.{k}' for k in keys(stage))}")
        else:
            plain.append(item)
    tree = apply_sets(tree, plain)
    tree["finetune"]["train"] = [f"{k}={v}" for k, v in train.items()]
    cfg = from_dict(PipelineConfig, tree)
    check(cfg)
    return cfg


def _split(item: str) -> tuple[str, str]:
    """'key=value' -> ('key', 'value')."""
    key, value = str(item).split("=", 1)
    return key.strip(), value


def check(cfg: PipelineConfig) -> None:
    """Ranges and names that a type cannot express; the legkit train keys of the fine-tuning too."""
    c, i, f, p = cfg.collect, cfg.imitate, cfg.finetune, cfg.package
    unknown = [b for b in c.behaviours if b not in PIDOG_BEHAVIOURS]
    checks = [
        (bool(c.behaviours) and not unknown and len(set(c.behaviours)) == len(c.behaviours), "collect.behaviours",
         list(c.behaviours), f"a list of distinct behaviours from {', '.join(PIDOG_BEHAVIOURS)}"),
        (c.episode_seconds > 0, "collect.episode_seconds", c.episode_seconds, "> 0 (s)"),
        (c.seconds_per_behaviour >= c.episode_seconds, "collect.seconds_per_behaviour", c.seconds_per_behaviour,
         f">= collect.episode_seconds = {c.episode_seconds:g} (s)"),
        (c.joint_pos_noise >= 0, "collect.joint_pos_noise", c.joint_pos_noise, ">= 0 (rad)"),
        (c.joint_vel_noise >= 0, "collect.joint_vel_noise", c.joint_vel_noise, ">= 0 (rad/s)"),
        (c.action_noise >= 0, "collect.action_noise", c.action_noise, ">= 0 (rad)"),
        (bool(i.kinds) and all(k in KINDS for k in i.kinds) and len(set(i.kinds)) == len(i.kinds), "imitate.kinds",
         list(i.kinds), f"a list of distinct kinds from {', '.join(KINDS)}"),
        (FINETUNE_KIND in i.kinds, "imitate.kinds", list(i.kinds),
         f"a list holding {FINETUNE_KIND}: the fine-tuning starts from the cloned {FINETUNE_KIND.upper()}"),
        (i.epochs >= 1, "imitate.epochs", i.epochs, ">= 1"),
        (i.patience >= 0, "imitate.patience", i.patience, ">= 0 (0: no early stopping)"),
        (i.batch_size >= 1, "imitate.batch_size", i.batch_size, ">= 1"),
        (i.lr > 0, "imitate.lr", i.lr, "> 0"),
        (i.seq_len >= 1, "imitate.seq_len", i.seq_len, ">= 1"),
        (0 < i.val_fraction < 1, "imitate.val_fraction", i.val_fraction, "in (0, 1)"),
        (i.lstm_hidden >= 1, "imitate.lstm_hidden", i.lstm_hidden, ">= 1"),
        (i.eval_robots >= 0, "imitate.eval_robots", i.eval_robots, ">= 0 (0: no closed-loop evaluation)"),
        (i.eval_seconds > 0, "imitate.eval_seconds", i.eval_seconds, "> 0 (s)"),
        (f.steps >= 1, "finetune.steps", f.steps, ">= 1"),
        (f.turn_steps >= 0, "finetune.turn_steps", f.turn_steps, ">= 0 (0: no first stage)"),
        (f.envs >= 1, "finetune.envs", f.envs, ">= 1"),
        (f.added_units >= 0, "finetune.added_units", f.added_units, ">= 0 (hidden units added to each layer)"),
        (f.fall_cost <= 0, "finetune.fall_cost", f.fall_cost, "<= 0 (a cost: the termination reward's weight)"),
        (f.camera_depth in DEPTH_MODES, "finetune.camera_depth", f.camera_depth, f"one of {', '.join(DEPTH_MODES)}"),
        (f.camera_noise >= 0, "finetune.camera_noise", f.camera_noise, ">= 0 (m: the noise std on each pixel)"),
        (f.camera_scale in ("fixed", "running"), "finetune.camera_scale", f.camera_scale, "fixed or running"),
        (f.episode_seconds > 0, "finetune.episode_seconds", f.episode_seconds, "> 0 (s)"),
        (f.action_std_cap is None or (len(f.action_std_cap) == 2 and min(f.action_std_cap) > 0),
         "finetune.action_std_cap", None if f.action_std_cap is None else list(f.action_std_cap),
         "[start, end], both > 0 (or null: no cap)"),
        (f.checkpoint_every >= 1, "finetune.checkpoint_every", f.checkpoint_every,
         ">= 1 (a killed fine-tuning resumes from its last checkpoint)"),
        (f.best_every >= 0, "finetune.best_every", f.best_every, ">= 0 (0: no best model)"),
        (f.best_episodes >= 1, "finetune.best_episodes", f.best_episodes, ">= 1"),
        (f.best_by in BEST_BY, "finetune.best_by", f.best_by, f"one of {', '.join(BEST_BY)}"),
        (0 <= f.best_min_survival <= 1, "finetune.best_min_survival", f.best_min_survival,
         "a number from 0 to 1 (a survival rate; 0: no floor)"),
        (f.final_eval_episodes >= 0, "finetune.final_eval_episodes", f.final_eval_episodes, ">= 0"),
        (p.checkpoint in ("final", "best"), "package.checkpoint", p.checkpoint, "final or best"),
        (p.checkpoint != "best" or 0 < f.best_every <= f.steps, "package.checkpoint", p.checkpoint,
         f"final when finetune.best_every ({f.best_every}) is 0 or more than finetune.steps ({f.steps}): no best "
         "model is kept"),
        (p.parity_samples >= 1, "package.parity_samples", p.parity_samples, ">= 1"),
    ]
    for ok, key, value, valid in checks:
        if not ok:
            raise LegkitError(f"invalid {key} = {value!r}: must be {valid}")
    bc_keys = [k.split("=", 1)[0] for k in _sections(cfg)[1] if k.startswith("finetune.bc_")]
    if bc_keys and not f.bc_term:
        raise LegkitError(f"--set {', '.join(bc_keys)}: the behaviour-cloning term is off (finetune.bc_term=false), "
                          "so it would not apply; add --set finetune.bc_term=true")
    # The runs the fine-tuning will start, checked now (the cloned policy's files do not exist yet).
    clone, demos = Path("imitate") / FINETUNE_KIND / "best.pt", Path("collect/demos.npz")
    runs = [("finetune", RECIPE, train_sets(cfg, first=None if f.turn_steps else (clone, demos)))]
    if f.turn_steps:
        runs.insert(0, ("finetune (its first stage)", FIRST_RECIPE, first_sets(cfg, clone, demos)))
    recorded = pipeline_task()
    for what, recipe, sets in runs:
        try:
            run = build_config(TASK, str(recipe_file(recipe)), sets)
        except LegkitError as exc:
            raise LegkitError(f"{what}: {exc}") from None
        # The demonstrations are recorded in the pipeline's task: the fine-tuning converts another action scale
        # (the same joint targets), not another control period, and must observe what they recorded.
        wrong = units_differ({"action_scale": recorded.action_scale, "control_dt": recorded.control_dt}, run,
                             convert_scale=True)
        if run.task.observations != recorded.observations:
            wrong.append(f"its observations ({', '.join(run.task.observations)}) are not the demonstrations' "
                         f"({', '.join(recorded.observations)})")
        if wrong:
            raise LegkitError(f"{what}: the cloned policy would not fit: {'; '.join(wrong)}; the collect and "
                              "imitate stages run the recipe's task as it is, so leave these settings out")


def blind_terms(cfg: PipelineConfig) -> list[str]:
    """The observation terms that the arena stage's actor reads as 0 (the camera ablation: `--set
    "finetune.task.observation_blind=[camera]"`). Such a policy is an ablation, which the package stage cannot export
    for the robot."""
    run = build_config(TASK, str(recipe_file(RECIPE)), train_sets(cfg))
    read = run.ppo.actor_observations or run.task.observations
    return [name for name in run.task.observation_blind if name in read]


def pipeline_task():
    """The task the collect and imitate stages run (a TaskConfig): pidog-run as the recipe sets it (observations,
    sensors, arena, rewards), at the task's own action scale, at which the sit pose fits."""
    return replace(build_config(TASK, str(recipe_file(RECIPE))).task, action_scale=get_task(TASK).action_scale)


def _sections(cfg: PipelineConfig) -> tuple[list[str], list[str]]:
    """finetune.train split into (task./ppo./run. sets for both stages, finetune.* sets for the first); the
    camera's settings (finetune.camera_depth, camera_noise, camera_scale) lead the sets of both stages, so that
    finetune.train's own override them."""
    both = [f"task.sensors.camera.depth={cfg.finetune.camera_depth}",
            f"task.sensors.camera.noise_std={cfg.finetune.camera_noise}",
            *(["ppo.fixed_scales=[camera]"] if cfg.finetune.camera_scale == "fixed" else []),
            *(s for s in cfg.finetune.train if not s.startswith("finetune."))]
    return both, [s for s in cfg.finetune.train if s.startswith("finetune.")]


def _run_sets(f: FinetuneSettings, steps: int) -> list[str]:
    return [f"run.total_steps={steps}", f"run.num_envs={f.envs}", f"run.checkpoint_every={f.checkpoint_every}",
            f"run.best_every={f.best_every}", f"run.best_episodes={f.best_episodes}",
            f"run.eval_episodes={f.final_eval_episodes}", "run.video_every=0"]


def train_sets(cfg: PipelineConfig, first: tuple[Path, Path] | None = None) -> list[str]:
    """The `legkit train --set` strings of the arena stage (the recipe pidog-arena), its start apart: the first
    stage (finetune.first, which the runner adds), or with `first` = (clone, demos) the clone itself."""
    f = cfg.finetune
    both, start = _sections(cfg)
    sets = [*_run_sets(f, f.steps), f"task.rewards.termination.weight={f.fall_cost}",
            f"task.episode_seconds={f.episode_seconds}", f"run.best_by={f.best_by}",
            f"run.best_min_survival={f.best_min_survival}",
            f"ppo.action_std_cap={'null' if f.action_std_cap is None else list(f.action_std_cap)}"]
    if first is not None:  # no first stage: the arena stage starts from the clone
        sets += ["finetune.first=null", *clone_sets(cfg, *first, f.steps), *start]
    else:  # the first stage's network
        sets += network_sets(f)
    return [*sets, *both]


def first_sets(cfg: PipelineConfig, bc_path: Path, demos_path: Path) -> list[str]:
    """The `--set` strings over the recipe pidog-turn of the first stage, which starts from the clone `bc_path`."""
    f = cfg.finetune
    both, start = _sections(cfg)
    return [*_run_sets(f, f.turn_steps), *clone_sets(cfg, bc_path, demos_path, f.turn_steps), *start, *both]


def clone_sets(cfg: PipelineConfig, bc_path: Path, demos_path: Path, steps: int) -> list[str]:
    """The `legkit train --set` strings that start a stage from the cloned MLP `bc_path` (network_sets) at
    finetune.log_std, its output layer reset (finetune.reset_action_net) and its inputs' statistics as
    finetune.obs_statistics says, with the decaying behaviour-cloning term on `demos_path` over the
    stage's `steps` when finetune.bc_term is on. The one place these keys are written."""
    f = cfg.finetune
    sets = [f"finetune.bc_policy={json.dumps(str(bc_path))}", f"finetune.log_std={f.log_std}",
            f"finetune.reset_action_net={str(f.reset_action_net).lower()}",
            f"finetune.obs_statistics={f.obs_statistics}", "ppo.algorithm=ppo", *network_sets(f)]
    if f.bc_term:
        sets += [f"finetune.demos={json.dumps(str(demos_path))}", f"finetune.bc_decay_steps={steps}"]
    return sets


def network_sets(f: FinetuneSettings) -> list[str]:
    """The fine-tuned network: the cloned MLP's layers (as train_bc builds it: DEFAULT_NET_ARCH, elu), each with
    finetune.added_units more."""
    arch = [h + f.added_units for h in DEFAULT_NET_ARCH[FINETUNE_KIND]]
    return [f"ppo.net_arch={arch}", "ppo.activation=elu"]


def stage_config(cfg: PipelineConfig, stage: str) -> dict:
    """The part of `cfg` that stage `stage` runs with (compared on a rerun)."""
    return to_dict(getattr(cfg, stage))


BEFORE = {"finetune": {"camera_depth": "range", "fall_cost": -40.0, "camera_scale": "running",
                       "action_std_cap": None, "episode_seconds": 20.0, "best_by": "survival",
                       "best_min_survival": 0.0}}
"""Settings whose default changed when they were added: an experiment recorded before a setting existed ran as
these say, not as the default does."""


def differences(old: dict, new: dict, prefix: str) -> list[str]:
    """`prefix.key: old -> new` for every setting that differs between two configs of stage `prefix`; a setting
    that `old` (recorded before the setting existed) lacks counts as its default, or as BEFORE says."""
    old = {**to_dict(SETTINGS[prefix]()), **BEFORE.get(prefix, {}), **old} if prefix in SETTINGS else old
    keys = sorted(set(old) | set(new))
    return [f"{prefix}.{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in keys if old.get(k) != new.get(k)]


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)
