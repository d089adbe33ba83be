"""TaskConfig: everything that defines what a robot learns, as typed data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from legkit import LegkitError
from legkit.gaits.params import GaitParams
from legkit.sim.arena import ArenaConfig
from legkit.sim.randomize import PhysicsRandomization
from legkit.sim.scene import PhysicsConfig, physics_preset, preset_decimation
from legkit.sim.terrain import TerrainConfig
from legkit.tasks.commands import CommandConfig
from legkit.tasks.curriculum import CommandCurriculumConfig, CurriculumConfig
from legkit.tasks.events import LatencyConfig, PushConfig
from legkit.tasks.ground import HeightScanConfig, TerrainCurriculumConfig
from legkit.tasks.sensing import SensorsConfig
from legkit.tasks.observations import HistoryConfig
from legkit.tasks.terms import RewardStage, RewardTerm, staged_rewards


@dataclass(frozen=True)
class TerminationConfig:
    """When an episode ends in a fall (terminated, as opposed to truncated at the time limit)."""

    min_base_height: float = 0.12
    """Terminate when the base is below this height (m)."""
    base_contact_force: float = 1.0
    """Terminate when the trunk touches the ground with more than this force (N)."""
    grace_steps: int = 20
    """No fall terminations during this many control steps after a reset."""
    max_tilt: float = 3.1416
    """Terminate when the base's up axis tilts more than this (rad) from vertical (pi: never): a fall for robots
    whose body contact cannot tell the ground from an obstacle."""


@dataclass(frozen=True)
class ResetConfig:
    """Randomization of the initial state."""

    joint_pos_noise: float = 0.1
    """Uniform noise on joint positions around the home pose (rad)."""
    base_vel_noise: float = 0.1
    """Uniform noise on base linear and angular velocity (m/s, rad/s)."""
    yaw_range: float = 3.1416
    """Uniform initial heading in [-yaw_range, yaw_range] (rad)."""


@dataclass(frozen=True)
class Scenario:
    """One robustness scenario of `legkit validate`: the task with `sets` applied (the same strings as
    `--set`), judged on survival and velocity tracking."""

    name: str
    """Short name printed in the table, e.g. "friction 0.3"."""
    sets: tuple[str, ...] = ()
    """Config overrides that make the scenario, e.g. ("task.randomization.friction=[0.3,0.3]",)."""
    min_survival: float = 0.9
    """Pass when at least this fraction of episodes does not fall."""
    max_tracking_rms: float | None = None
    """Pass when the RMS error of the planar velocity (vx, vy) against the command is at most this (m/s);
    None skips the check."""


@dataclass(frozen=True)
class SweepBar:
    """One figure of `legkit eval --sweep`: under the sweep command `command`, the metric `metric` (a key of the
    command's metrics, e.g. "lin_vel_tracking_rms") must lie in [low, high]; a bound left None is not checked."""

    command: str
    """A command of the sweep (legkit.evaluate.sweep.SWEEP), e.g. "forward_0.2"."""
    metric: str
    """The measured quantity, e.g. "mean_forward_velocity" (m/s), "survival_rate" (0-1)."""
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ValidationConfig:
    """`legkit validate`: scenarios and pass/fail thresholds (lengths in control steps)."""

    episodes: int = 10
    """Episodes of the nominal scenario, and of the push and randomization scenarios."""
    max_steps: int = 5000
    """Length limit of validation episodes."""
    min_length: int = 1200
    """An episode 'lasts' when it is longer than this."""
    min_lasting_episodes: int = 6
    """Pass when at least this many nominal episodes last."""
    height_range: tuple[float, float] = (0.0, 0.0)
    """Pass when the nominal mean base height is within this range (m); (0, 0) skips the check."""
    max_height_std: float = 0.08
    """Pass when the nominal base-height std is below this (m)."""
    max_early_termination: float = 0.2
    """Pass when fewer nominal episodes than this fraction end in a fall."""
    no_fall_before: int = 500
    """Pass when no nominal episode falls within this many steps."""
    min_forward_velocity: float | None = None
    """Pass when the nominal mean forward velocity reaches this (m/s); None skips the check."""
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    """Seeds of the seed scenario, each run with `seed_episodes` episodes."""
    seed_episodes: int = 4
    long_steps: int = 10000
    """Length of the single long episode that must not fall."""
    push_force: float = 100.0
    """Horizontal push on the base (N), in a random direction."""
    push_interval_s: float = 3.0
    push_duration_s: float = 0.1
    mass_range: float = 0.1
    """Body masses scaled by U(1 - r, 1 + r) in the randomization scenario."""
    friction_range: float = 0.2
    """Friction scaled by U(1 - r, 1 + r) in the randomization scenario."""
    min_survival: float = 0.8
    """Pass the seed, push and randomization scenarios when this fraction of episodes does not fall."""
    robustness: tuple[Scenario, ...] = ()
    """Robustness scenarios (pushes, friction, payload, motor strength, latency, noise...), each run for
    `episodes` episodes of `max_steps` steps; none by default."""
    sweep_bars: tuple[SweepBar, ...] = ()
    """The figures `legkit eval --sweep` marks each command against (met or missed); none by default."""


@dataclass(frozen=True)
class SuccessBar:
    """When a task counts as learnt: what the periodic evaluation during training must reach, every set
    bound at once. "Time to walk" (legkit.evaluate.success) is the first step at which it does. Bounds left
    None are not checked; a bar with none set is never reached."""

    min_forward_velocity: float | None = None
    """Mean forward velocity (m/s) at least this."""
    min_survival: float | None = None
    """Fraction of evaluation episodes that do not fall, at least this."""
    max_tracking_rms: float | None = None
    """Velocity tracking RMS error at most this."""
    min_base_height: float | None = None
    """Mean base height (m) at least this."""

    def bounds(self) -> list[tuple[str, str, float]]:
        """(metric name, '>=' or '<=', value) of every set bound."""
        pairs = (("mean_forward_velocity", ">=", self.min_forward_velocity), ("survival_rate", ">=", self.min_survival),
                 ("velocity_tracking_rms", "<=", self.max_tracking_rms), ("mean_base_height", ">=", self.min_base_height))
        return [(k, op, float(v)) for k, op, v in pairs if v is not None]

    def met(self, metrics: dict) -> bool:
        """Whether `metrics` (legkit.evaluate.metrics names) meet every set bound (and at least one is set)."""
        bounds = self.bounds()
        return bool(bounds) and all(metrics.get(k) is not None and (metrics[k] >= v if op == ">=" else metrics[k] <= v)
                                    for k, op, v in bounds)

    def describe(self) -> str:
        return " and ".join(f"{k} {op} {v:g}" for k, op, v in self.bounds()) or "none (never met)"


@dataclass(frozen=True)
class TaskConfig:
    """A task: robot, physics, control, commands, observations, rewards and terminations."""

    robot: str = "go2"
    """Robot name from the registry (`legkit list`)."""
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    decimation: int = 4
    """Physics steps per control step: 4 x 0.005 s = 50 Hz policy."""
    episode_seconds: float = 20.0
    """Episodes are truncated (not terminated) at this length (s)."""
    action_scale: float = 0.5
    """Joint target = home + action_scale * action, with actions in [-1, 1] (rad)."""
    commands: CommandConfig = field(default_factory=CommandConfig)
    observations: tuple[str, ...] = (
        "base_lin_vel", "base_ang_vel", "projected_gravity", "command", "joint_pos", "joint_vel", "last_action",
    )
    """Observation terms, in order (see legkit.tasks.observations)."""
    rewards: dict[str, RewardTerm] = field(default_factory=dict)
    """Reward weight table: term name -> weight and parameters (see legkit.tasks.rewards)."""
    reward_stages: tuple[RewardStage, ...] = ()
    """Reward parameters that change at given training steps (legkit.train.callbacks.RewardStages);
    evaluation always scores with the last stage's."""
    reward_scale_by_dt: bool = True
    """Multiply every weight by the control period, so weights are per second."""
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    reset: ResetConfig = field(default_factory=ResetConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    """Height curriculum (no stages: none)."""
    command_curriculum: CommandCurriculumConfig = field(default_factory=CommandCurriculumConfig)
    """Command ranges widened stage by stage as tracking succeeds (no stages: none; its first stage's
    ranges replace `commands`' while it runs). At most one of the two curricula."""
    pushes: PushConfig = field(default_factory=PushConfig)
    """Random pushes on the base during episodes (off by default)."""
    randomization: PhysicsRandomization = field(default_factory=PhysicsRandomization)
    """Per-robot physics drawn at every reset from a pool of randomized models (off by default): e.g.
    `task.randomization.friction=[0.3,1.2]`, `payload=[0,3]` (kg), `kp_scale=[0.85,1.15]`."""
    randomization_pool: int = 64
    """Models in that pool (memory and build time grow with it: about 0.8 MB and 1 ms per Go2 model)."""
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    """Actuation latency (off by default): `task.latency.range_s=[0,0.02]`."""
    observation_history: HistoryConfig = field(default_factory=HistoryConfig)
    """What the `history` observation term keeps (used only when `observations` lists `history`)."""
    observation_noise: dict[str, float] = field(default_factory=dict)
    """Uniform noise added to observation terms, term name -> half-width in the term's units (e.g.
    `task.observation_noise.joint_vel=1.5`); none by default."""
    observation_blind: tuple[str, ...] = ()
    """Observation terms that read 0 (after noise): the term keeps its place in the observation, so a policy
    built for the full layout (a cloned one) still fits, but it carries no information. For ablations, e.g.
    `task.observation_blind=[camera]`: what a sensor adds, measured with everything else the same."""
    gait: GaitParams | None = None
    """A scripted gait under the policy (residual learning, legkit.gaits): joint target = the gait's target +
    action_scale * action, and the `gait_phase` observation term. None: targets around the home pose."""
    behaviours: tuple[str, ...] = ()
    """The behaviours the `behaviour` observation term names, one-hot in this order (e.g. the scripted gaits a
    policy imitates: walk_forward, sit, ...); empty without the term."""
    behaviour: str = ""
    """The behaviour every robot is asked for (one of `behaviours`): the `behaviour` term's hot entry."""
    clock_period: float = 0.0
    """Period (s) of the `clock` observation term (sin, cos of a phase that starts at 0 at every reset): a
    periodic behaviour's beat, e.g. the cycle of the gait a policy imitates; 0 without the term."""
    baseline_min_speed: float = 0.05
    """With a gait: training starts only if the gait alone (zero residual) moves at least this fast (m/s) along
    the commanded direction (legkit.evaluate.scripted.check_baseline); 0 turns the check off."""
    terrain: TerrainConfig = field(default_factory=TerrainConfig)
    """The ground: a plane (default), generated tiles in difficulty rows, or a heightmap file (sim/terrain.py)."""
    terrain_curriculum: TerrainCurriculumConfig = field(default_factory=TerrainCurriculumConfig)
    """Per-robot terrain levels on tiles, and the evaluation row (tasks/ground.py)."""
    height_scan: HeightScanConfig = field(default_factory=HeightScanConfig)
    """The grid of the `height_scan` observation term."""
    arena: ArenaConfig = field(default_factory=ArenaConfig)
    """Obstacles placed anew for every episode of every robot (off by default; sim/arena.py)."""
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    """The robot's own sensors read as observation terms (IMU, ultrasonic, camera, touch; tasks/sensing.py)."""
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    success: SuccessBar = field(default_factory=SuccessBar)
    """What the periodic evaluation must reach for the task to count as learnt ("time to walk")."""

    @property
    def control_dt(self) -> float:
        """Control period (s)."""
        return self.physics.timestep * self.decimation

    @property
    def max_episode_steps(self) -> int:
        """Control steps per episode before truncation."""
        return int(round(self.episode_seconds / self.control_dt))


def undisturbed(task: TaskConfig, pushes: PushConfig | None = None) -> TaskConfig:
    """`task` without its training disturbances: pushes (its own and its curriculum stages'), physics
    randomization, latency and observation noise; with `pushes` if given.

    Evaluation, validation and videos set their own disturbances: a policy trained with pushes
    is judged undisturbed unless a scenario (or a `--set`) disturbs it. On a terrain, every robot starts on the
    evaluation row (task.terrain_curriculum.eval_row), not where a curriculum would put it. Rewards are the last reward
    stage's, so that every evaluation of a run scores with one reward.
    """
    stages = tuple(replace(st, push_force=0.0) for st in task.curriculum.stages)
    return replace(task, pushes=pushes or PushConfig(), curriculum=replace(task.curriculum, stages=stages),
                   terrain_curriculum=replace(task.terrain_curriculum, enabled=False),
                   randomization=PhysicsRandomization(), latency=LatencyConfig(), observation_noise={},
                   rewards=staged_rewards(task.rewards, task.reward_stages), reward_stages=())


PRESET_KEYS = ("task.physics.timestep", "task.physics.iterations", "task.physics.ls_iterations", "task.decimation")
"""The config keys a physics preset sets."""


def physics_preset_sets(name: str, task: TaskConfig, sets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The `--set` strings of physics preset `name` (sim.scene.PHYSICS_PRESETS) for `task`: the preset's timestep
    and solver iterations, and the decimation that keeps task.control_dt. `sets` are the other overrides of the
    same command (`task` already has them): one naming a key the preset sets is an error, not silently lost."""
    preset = physics_preset(name)
    decimation = preset_decimation(name, task.control_dt)
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if key in PRESET_KEYS:
            raise LegkitError(f"--set {key} and --physics {name} both set {key}; give one of them (the preset sets "
                              f"{', '.join(PRESET_KEYS)})")
    return [f"task.physics.timestep={preset.timestep!r}", f"task.physics.iterations={preset.iterations}",
            f"task.physics.ls_iterations={preset.ls_iterations}", f"task.decimation={decimation}"]
