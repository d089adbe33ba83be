"""GaitParams: a scripted gait as typed data (`task.gait.*`), its leg phase patterns and per-robot defaults.

Conventions (x forward, y left, z up; legs in the robot's `feet` order, FL, FR, RL, RR for the Go2):

    phase        one number per robot in [0, 1), advanced by dt / cycle_time.
    leg phase    (phase - offset[leg]) mod 1: a leg touches down when its phase is 0, is in stance while it is
                 below duty_factor and swings for the rest. `offset` is the fraction of a cycle a leg lags FL.
    strokes      step_length, lateral and turning are the stance strokes: how far a planted foot moves
                 relative to the body during its stance (signed). The body then moves at
                 step_length / (duty_factor * cycle_time) m/s, so a negative step_length walks backward.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from legkit import LegkitError

GAIT_TYPES = ("walk", "trot", "pace", "bound", "stand", "sit")
"""Valid values of GaitParams.type."""

STATIC_TYPES = ("stand", "sit")
"""Gait types that hold a pose: the feet never leave the ground and the strokes are ignored."""

PHASE_OFFSETS: dict[str, tuple[float, float, float, float]] = {
    # Fraction of a cycle each leg (FL, FR, RL, RR) lags FL; legs with equal offsets move together.
    "walk": (0.0, 0.5, 0.75, 0.25),  # four-beat lateral sequence: RL, FL, RR, FR touch down a quarter apart
    "trot": (0.0, 0.5, 0.5, 0.0),    # diagonal pairs FL+RR and FR+RL
    "pace": (0.0, 0.5, 0.0, 0.5),    # same-side pairs FL+RL and FR+RR
    "bound": (0.0, 0.0, 0.5, 0.5),   # front pair, then rear pair
    "stand": (0.0, 0.0, 0.0, 0.0),
    "sit": (0.0, 0.0, 0.0, 0.0),
}

MIN_WALK_DUTY = 0.75
"""A walk keeps at least three feet on the ground: duty_factor >= 0.75 with four evenly spaced legs."""


@dataclass(frozen=True)
class GaitParams:
    """One scripted gait. The defaults are the Go2 trot (see `default_gait`)."""

    type: str = "trot"
    """Phase pattern: walk, trot, pace, bound (moving gaits) or stand, sit (static poses)."""
    body_height: float = 0.28
    """Height (m) of the base origin above flat ground while the feet stand (for the Go2 the hip joints lie in
    the base origin's plane, so it is also the hip height). Foot centres are held at body_height minus the foot
    radius below it. The Go2's home pose (0, 0.9, -1.8) puts the base 0.287 m up."""
    step_length: float = 0.20
    """Forward stance stroke (m): a planted foot moves from +step_length/2 to -step_length/2 (x, relative to its
    neutral point under the hip) during stance. Negative walks backward."""
    step_height: float = 0.08
    """Swing apex (m): the highest point of a swinging foot above the ground."""
    cycle_time: float = 0.5
    """Duration (s) of one gait cycle (a stride: every leg swings once)."""
    duty_factor: float = 0.5
    """Fraction of a cycle each foot spends in stance, in (0, 1); at least 0.75 for a walk."""
    lateral: float = 0.0
    """Sideways stance stroke (m), like step_length along y: positive moves the body left."""
    turning: float = 0.0
    """Yaw stance stroke (rad): the body turns this much about its origin relative to a planted foot during its
    stance; positive turns left (counter-clockwise seen from above)."""
    pitch: float = 0.0
    """Body pitch (rad), positive nose up: the ground and the swing lift are tilted by it in the base frame.
    The sit pose is made by this and a low body_height (rear hips lower than front hips)."""
    transition_time: float = 1.0
    """Time (s) of the smooth transition from the robot's home pose to a static pose (stand, sit) after a
    reset; 0 jumps. Moving gaits start at once."""

    def __post_init__(self) -> None:
        numbers = ("body_height", "step_length", "step_height", "cycle_time", "duty_factor", "lateral", "turning",
                   "pitch", "transition_time")
        for name in numbers:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LegkitError(f"invalid task.gait.{name} = {value!r}: must be a finite number")
        checks = [
            (self.type in GAIT_TYPES, "type", self.type, f"one of {', '.join(GAIT_TYPES)}"),
            (self.body_height > 0, "body_height", self.body_height, "> 0 (m)"),
            (0 <= self.step_height < self.body_height, "step_height", self.step_height,
             f">= 0 and below task.gait.body_height = {self.body_height} (m)"),
            (self.cycle_time > 0, "cycle_time", self.cycle_time, "> 0 (s)"),
            (0 < self.duty_factor < 1, "duty_factor", self.duty_factor, "in (0, 1)"),
            (self.type != "walk" or self.duty_factor >= MIN_WALK_DUTY, "duty_factor", self.duty_factor,
             f">= {MIN_WALK_DUTY} for a walk (three feet on the ground), or use a trot"),
            (abs(self.turning) <= math.pi / 2, "turning", self.turning, "in [-pi/2, pi/2] (rad per stance)"),
            (abs(self.pitch) < math.pi / 2, "pitch", self.pitch, "in (-pi/2, pi/2) (rad)"),
            (self.transition_time >= 0, "transition_time", self.transition_time, ">= 0 (s; 0: no transition)"),
        ]
        for ok, key, value, valid in checks:
            if not ok:
                raise LegkitError(f"invalid task.gait.{key} = {value!r}: must be {valid}")

    @property
    def static(self) -> bool:
        """Whether the gait holds a pose (stand, sit) rather than stepping."""
        return self.type in STATIC_TYPES

    @property
    def offsets(self) -> tuple[float, float, float, float]:
        """Phase lag of each leg (FL, FR, RL, RR), fraction of a cycle."""
        return PHASE_OFFSETS[self.type]

    @property
    def speed(self) -> tuple[float, float, float]:
        """Body velocity the strokes ask for: (vx m/s, vy m/s, yaw rate rad/s); zero for static poses."""
        if self.static:
            return (0.0, 0.0, 0.0)
        stance = self.duty_factor * self.cycle_time
        return (self.step_length / stance, self.lateral / stance, self.turning / stance)


_GO2 = GaitParams()  # the trot: 2 strides/s, 0.2 m strokes, 8 cm foot clearance
GAIT_DEFAULTS: dict[str, dict[str, GaitParams]] = {
    # Measured on flat ground (`legkit gait go2 --gait G`, docs/results.md): the stance legs' PD (Kp 50) gives way
    # under a two-leg stance, the base rides about 5 cm under body_height and the feet slip, so a stroke moves
    # the body at about half its stroke speed; strokes under about 0.15 m are lost almost whole (0.1 m: 0.07 m/s).
    "go2": {
        "trot": _GO2,
        "walk": dataclasses.replace(_GO2, type="walk", cycle_time=1.0, duty_factor=0.75, step_height=0.06),
        "pace": dataclasses.replace(_GO2, type="pace", step_height=0.06),
        "bound": dataclasses.replace(_GO2, type="bound", cycle_time=0.4, step_height=0.06),
        "stand": dataclasses.replace(_GO2, type="stand", step_length=0.0, step_height=0.0),
        # base 0.22 m up pitched 0.5 rad nose up: front hips 0.32 m, rear hips 0.13 m above the ground
        "sit": dataclasses.replace(_GO2, type="sit", body_height=0.22, pitch=0.5, step_length=0.0, step_height=0.0),
    },
    # The PiDog (2-DOF planar legs, PlanarLeg2). The maker's gaits (FACTS, body height 0.080, lift 0.020): trot in
    # diagonal pairs, stroke 0.100, cycle 0.54 s (0.37 m/s kinematic); walk one leg at a time in the maker's order
    # 1, 4, 2, 3 = FL, RR, FR, RL (legkit's walk phases: FL 0, RR 0.25, FR 0.5, RL 0.75), stroke 0.080, cycle 1.3 s.
    # Run open loop through legkit's trajectories (`legkit.gaits`), the maker's numbers fall over in simulation:
    # the trot asks 19.6 rad/s of the hips (servos: 7.47), a two-leg stance at 0.080 asks 0.19-0.32 N*m of the knees
    # (stall 0.22), and with no abduction a two-leg stance on a 0.098-wide robot tips over within its 0.27 s (it
    # falls even with 5 N*m servos). The defaults below keep the patterns and the lift, and are what stays up open
    # loop: a higher body (straighter legs, less knee torque), 0.04 strokes, long stances (trot duty 0.7: both
    # diagonals down 40% of the time), a trot cycle of 0.6 s (0.54 s fails at some frictions). Measured on flat
    # ground (50 Hz, head and tail at home, 20 s; with the servo speed limit in brackets): trot 0.098 (0.083) m/s
    # for 0.095 asked, backward -0.107 (-0.104); walk 0.037 (0.037) m/s for 0.038 asked.
    "pidog": {
        "trot": GaitParams(type="trot", body_height=0.095, step_length=0.04, step_height=0.02, cycle_time=0.6,
                           duty_factor=0.7),
        "walk": GaitParams(type="walk", body_height=0.095, step_length=0.04, step_height=0.02, cycle_time=1.3,
                           duty_factor=0.8),
        # pace (same-side pairs) and bound (front pair, rear pair) keep nearly all feet down: a 0.098-wide robot on
        # one side's feet, or a 0.117-long one on one end's, tips within a tenth of a second. Open loop both stay up
        # but wobble and advance erratically (20 s: pace -0.003 (0.05) m/s, bound 0.087 (0.03) m/s): starting
        # points for a residual policy, not gaits to rely on.
        "pace": GaitParams(type="pace", body_height=0.09, step_length=0.03, step_height=0.015, cycle_time=0.4,
                           duty_factor=0.85),
        "bound": GaitParams(type="bound", body_height=0.095, step_length=0.04, step_height=0.02, cycle_time=0.54,
                            duty_factor=0.9),
        "stand": GaitParams(type="stand", body_height=0.09, step_length=0.0, step_height=0.0, cycle_time=0.54,
                            duty_factor=0.7),
        # base 0.075 m up pitched 0.4 rad nose up: front hips 0.098 m, rear hips 0.052 m above the ground
        "sit": GaitParams(type="sit", body_height=0.075, pitch=0.4, step_length=0.0, step_height=0.0, cycle_time=0.54,
                          duty_factor=0.7),
    },
}
"""Sensible parameters per robot and gait type."""


def default_gait(robot: str, type: str = "trot") -> GaitParams:
    """The default GaitParams of gait `type` for robot `robot` (a registry name such as "go2")."""
    if robot not in GAIT_DEFAULTS:
        raise LegkitError(f"no default gaits for robot '{robot}'; robots with default gaits: "
                          f"{', '.join(sorted(GAIT_DEFAULTS))}")
    if type not in GAIT_DEFAULTS[robot]:
        raise LegkitError(f"unknown gait type '{type}'; valid types: {', '.join(GAIT_TYPES)}")
    return GAIT_DEFAULTS[robot][type]
