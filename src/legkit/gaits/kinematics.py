"""Leg kinematics read from the compiled robot model: batched forward and closed-form inverse kinematics.

Every leg is the chain of bodies from the robot's base body down to one of its foot geoms (`RobotSpec.feet`),
one hinge joint per body. Link offsets, joint axes and joint ranges come from the MjModel, never from numbers
written here. Arrays are batched over any leading shape: q (..., legs, dof) in rad, p (..., legs, 3) in m,
positions of the foot geom's centre in the base frame (x forward, y left, z up).

Two leg types:
    LegKinematics   3 DOF: abduction about x, hip pitch and knee about y, a lateral offset between the
                    abduction and thigh joints (the Go2).
    PlanarLeg2      2 DOF: hip pitch and knee about y, the foot in a fixed vertical plane (the PiDog).
"""

from __future__ import annotations

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.robots.base import RobotSpec

TOLERANCE = 1e-6
"""A target counts as reached when the foot lands within this distance of it (m)."""

_TWO_PI = 2.0 * np.pi


def rot_x(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) about x by `angle` (rad, broadcast over the leading shape)."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(np.broadcast_arrays(x, c * y - s * z, s * y + c * z), axis=-1)


def rot_y(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) about y by `angle` (rad, broadcast over the leading shape)."""
    c, s = np.cos(angle), np.sin(angle)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(np.broadcast_arrays(c * x + s * z, y, -s * x + c * z), axis=-1)


def _violation(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """How far (rad) q lies outside [lo, hi]; 0 inside."""
    return np.maximum(lo - q, 0.0) + np.maximum(q - hi, 0.0)


def _into_range(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The representative of angle q (mod 2 pi) nearest to [lo, hi], and its violation (rad)."""
    best = np.mod(q + np.pi, _TWO_PI) - np.pi
    bad = _violation(best, lo, hi)
    for shift in (-_TWO_PI, _TWO_PI):
        cand = best + shift
        v = _violation(cand, lo, hi)
        better = v < bad - 1e-12
        best, bad = np.where(better, cand, best), np.where(better, v, bad)
    return best, bad


class _Planar:
    """Two links turning about y, seen in the xz plane: link 1 from the hip-pitch joint to the knee, link 2 from
    the knee to the foot. (x, z) pairs are read as angles atan2(z, x); a rotation by theta about y turns an
    angle beta into beta - theta."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, sign: np.ndarray, lo: np.ndarray, hi: np.ndarray):
        # upper, lower: (L, 3) link vectors at zero angles; sign: (L, 2) axis signs (+1: +y);
        # lo, hi: (L, 2) joint ranges of (hip pitch, knee).
        self.l1 = np.hypot(upper[:, 0], upper[:, 2])
        self.l2 = np.hypot(lower[:, 0], lower[:, 2])
        self.b1 = np.arctan2(upper[:, 2], upper[:, 0])
        self.b2 = np.arctan2(lower[:, 2], lower[:, 0])
        self.sign, self.lo, self.hi = sign, lo, hi
        # gamma = angle of link 2 relative to link 1 = b2 - b1 - theta_knee, over the knee range
        knee = np.sort(np.stack([sign[:, 1] * lo[:, 1], sign[:, 1] * hi[:, 1]]), axis=0)
        g_lo, g_hi = self.b2 - self.b1 - knee[1], self.b2 - self.b1 - knee[0]
        straight = np.ceil(g_lo / _TWO_PI) <= np.floor(g_hi / _TWO_PI)
        folded = np.ceil((g_lo - np.pi) / _TWO_PI) <= np.floor((g_hi - np.pi) / _TWO_PI)
        ends = np.stack([self._reach(g_lo), self._reach(g_hi)])
        self.rmax = np.where(straight, self.l1 + self.l2, ends.max(axis=0))
        """Longest hip-to-foot distance in the plane the knee range allows (m), per leg."""
        self.rmin = np.where(folded, np.abs(self.l1 - self.l2), ends.min(axis=0))
        """Shortest hip-to-foot distance in the plane the knee range allows (m), per leg."""

    def _reach(self, gamma: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.l1**2 + self.l2**2 + 2 * self.l1 * self.l2 * np.cos(gamma), 0.0))

    def solve(self, px: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hip pitch, knee) reaching planar target (px, pz) relative to the hip-pitch joint, and the hip
        pitch's range violation (rad). The knee is clipped to its range; the hip pitch is not (yet)."""
        r2 = px**2 + pz**2
        cos_g = np.clip((r2 - self.l1**2 - self.l2**2) / (2 * self.l1 * self.l2), -1.0, 1.0)
        g = np.arccos(cos_g)
        lo, hi = self.lo[:, 1], self.hi[:, 1]
        # the two knee solutions (elbow one way or the other): keep the one in range, ties to the range middle
        k_a, v_a = _into_range(self.sign[:, 1] * (self.b2 - self.b1 - g), lo, hi)
        k_b, v_b = _into_range(self.sign[:, 1] * (self.b2 - self.b1 + g), lo, hi)
        mid = 0.5 * (lo + hi)
        take_b = (v_b < v_a - 1e-12) | ((np.abs(v_b - v_a) <= 1e-12) & (np.abs(k_b - mid) < np.abs(k_a - mid)))
        knee = np.clip(np.where(take_b, k_b, k_a), lo, hi)
        gam = self.b2 - self.b1 - self.sign[:, 1] * knee
        theta1 = self.b1 + np.arctan2(self.l2 * np.sin(gam), self.l1 + self.l2 * np.cos(gam)) - np.arctan2(pz, px)
        hip, hip_violation = _into_range(self.sign[:, 0] * theta1, self.lo[:, 0], self.hi[:, 0])
        return hip, knee, hip_violation


class _Legs:
    """What both leg types share: names, joint order and ranges, the foot geometry."""

    dof: int

    def __init__(self, legs: tuple[str, ...], joint_names: tuple[tuple[str, ...], ...], joint_index: np.ndarray,
                 lower: np.ndarray, upper: np.ndarray, foot_radius: np.ndarray):
        self.legs = tuple(legs)
        """Leg names (the foot geoms), in the robot's `feet` order."""
        self.joint_names = tuple(tuple(j) for j in joint_names)
        """Joint names per leg, from the base outwards, shape (legs, dof)."""
        self.joint_index = np.asarray(joint_index, dtype=np.int64)
        """Position of each leg joint in RobotSpec.joints (the action order), shape (legs, dof)."""
        self.lower = np.asarray(lower, dtype=np.float64)
        """Joint range lower ends (rad), shape (legs, dof)."""
        self.upper = np.asarray(upper, dtype=np.float64)
        """Joint range upper ends (rad), shape (legs, dof)."""
        self.foot_radius = np.asarray(foot_radius, dtype=np.float64)
        """Radius of each foot (m; 0 for a point foot): the foot centre stands this high above the ground."""
        shape = (len(self.legs), self.dof)
        for name in ("joint_index", "lower", "upper"):
            if getattr(self, name).shape != shape:
                raise LegkitError(f"{type(self).__name__}: {name} must have shape {shape} (legs, dof), "
                                  f"got {getattr(self, name).shape}")
        if np.any(self.lower > self.upper):
            raise LegkitError(f"{type(self).__name__}: joint ranges must satisfy lower <= upper")

    @property
    def num_legs(self) -> int:
        return len(self.legs)

    def _check_q(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        if q.shape[-2:] != (self.num_legs, self.dof):
            raise LegkitError(f"joint angles must have shape (..., {self.num_legs}, {self.dof}), got {q.shape}")
        return q

    def _check_p(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if p.shape[-2:] != (self.num_legs, 3):
            raise LegkitError(f"foot positions must have shape (..., {self.num_legs}, 3), got {p.shape}")
        return p

    def fk(self, q: np.ndarray) -> np.ndarray:  # pragma: no cover - each leg type defines it
        raise NotImplementedError

    def _finish(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clip q to the joint ranges; a leg is 'clipped' when its foot misses the target by > TOLERANCE."""
        q = np.clip(q, self.lower, self.upper)
        clipped = np.linalg.norm(self.fk(q) - p, axis=-1) > TOLERANCE
        return q, clipped

    def to_joints(self, q: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Scatter leg angles q (N, legs, dof) into joint vectors (N, J) in RobotSpec.joints order; joints that
        belong to no leg keep their value in `base` (shape (J,), e.g. the home pose)."""
        q = self._check_q(q)
        out = np.tile(np.asarray(base, dtype=np.float64), (q.shape[0], 1))
        out[:, self.joint_index.reshape(-1)] = q.reshape(q.shape[0], -1)
        return out

    def from_joints(self, joints: np.ndarray) -> np.ndarray:
        """Gather leg angles (N, legs, dof) from joint vectors (N, J) in RobotSpec.joints order."""
        return np.asarray(joints, dtype=np.float64)[..., self.joint_index]


class LegKinematics(_Legs):
    """3-DOF legs: abduction about x at `hip_pos`, then (after `thigh_offset`, along y) hip pitch about y, then
    (after `calf_offset`) the knee about y, then `foot_offset` to the foot centre. All body frames unrotated.

    The inverse is closed form: the knee from the hip-to-foot distance, the abduction from the foot's lateral
    offset, the hip pitch from the direction in the leg plane. Of the solutions, the one within the joint
    ranges is returned (for the Go2 the knee range is negative: knee backward); of two abduction branches the
    one with the foot below the thigh joint when both fit.
    """

    dof = 3

    def __init__(self, legs: tuple[str, ...], joint_names: tuple[tuple[str, ...], ...], joint_index: np.ndarray,
                 hip_pos: np.ndarray, thigh_offset: np.ndarray, calf_offset: np.ndarray, foot_offset: np.ndarray,
                 axis_sign: np.ndarray, lower: np.ndarray, upper: np.ndarray, foot_radius: np.ndarray):
        super().__init__(legs, joint_names, joint_index, lower, upper, foot_radius)
        self.hip_pos = np.asarray(hip_pos, dtype=np.float64)
        """Abduction joint in the base frame (m), shape (legs, 3)."""
        self.thigh_offset = np.asarray(thigh_offset, dtype=np.float64)
        """Hip-pitch joint relative to the abduction joint (m), (legs, 3); along y only."""
        self.calf_offset = np.asarray(calf_offset, dtype=np.float64)
        """Knee relative to the hip-pitch joint at zero angles (m), (legs, 3)."""
        self.foot_offset = np.asarray(foot_offset, dtype=np.float64)
        """Foot centre relative to the knee at zero angles (m), (legs, 3)."""
        self.axis_sign = np.asarray(axis_sign, dtype=np.float64)
        """+1 or -1 per joint: the joint axis is +-x (abduction) or +-y (hip pitch, knee), (legs, 3)."""
        if np.any(np.abs(self.thigh_offset[:, [0, 2]]) > 1e-12):
            raise LegkitError("LegKinematics needs the hip-pitch joint straight beside the abduction joint "
                              f"(thigh offset along y only), got {self.thigh_offset.tolist()}")
        self.lateral = self.thigh_offset[:, 1] + self.calf_offset[:, 1] + self.foot_offset[:, 1]
        """Distance (m) of the leg plane from the abduction joint along the leg's y axis (+ left legs)."""
        self._planar = _Planar(self.calf_offset, self.foot_offset, self.axis_sign[:, 1:], self.lower[:, 1:],
                               self.upper[:, 1:])
        # reachable feet lie in a shell about the abduction joint: |p - hip|^2 = r^2 + lateral^2
        self._r_in = np.hypot(self._planar.rmin, self.lateral)
        self._r_out = np.hypot(self._planar.rmax, self.lateral)

    @property
    def anchor(self) -> np.ndarray:
        """Where a foot hangs in the base frame at zero abduction, less its height: (hip x, hip y + lateral,
        hip z), shape (legs, 3). Gaits put the foot's neutral point below it."""
        return self.hip_pos + np.stack([np.zeros_like(self.lateral), self.lateral, np.zeros_like(self.lateral)], 1)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Foot centres in the base frame (..., legs, 3) (m) of joint angles q (..., legs, 3) (rad)."""
        theta = self._check_q(q) * self.axis_sign
        knee = self.calf_offset + rot_y(self.foot_offset, theta[..., 2])
        return self.hip_pos + rot_x(self.thigh_offset + rot_y(knee, theta[..., 1]), theta[..., 0])

    def ik(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint angles (..., legs, 3) (rad) putting the foot centres at p (..., legs, 3) (base frame, m), and a
        boolean mask (..., legs) of the legs that cannot reach their target. Out of reach (too far, too close)
        the target moves to the nearest point of the reachable shell; then joints stop at their limits."""
        p = self._check_p(p)
        v = p - self.hip_pos
        n = np.linalg.norm(v, axis=-1, keepdims=True)
        down = np.array([0.0, 0.0, -1.0])
        v = np.where(n > 1e-12, v / np.maximum(n, 1e-12), down) * np.clip(n, self._r_in[:, None], self._r_out[:, None])
        # the foot can come no nearer to the abduction axis than the leg plane's offset
        D = self.lateral
        rho = np.hypot(v[..., 1], v[..., 2])
        # on the abduction axis itself: put the foot level with it, in the leg plane (abduction 0)
        level = np.stack([np.where(D >= 0, 1.0, -1.0), np.zeros_like(D)], axis=-1)
        yz = np.where((rho > 1e-12)[..., None], v[..., 1:] / np.maximum(rho, 1e-12)[..., None], level)
        rho = np.maximum(rho, np.abs(D))
        x_lo = np.sqrt(np.maximum(self._r_in**2 - rho**2, 0.0))
        x_hi = np.sqrt(np.maximum(self._r_out**2 - rho**2, 0.0))
        vx = np.where(v[..., 0] >= 0, 1.0, -1.0) * np.clip(np.abs(v[..., 0]), x_lo, x_hi)
        vy, vz = yz[..., 0] * rho, yz[..., 1] * rho
        # abduction: rotating by -theta0 about x must bring the foot to y = D, two branches theta0 = phi +- alpha
        phi = np.arctan2(vz, vy)
        alpha = np.arccos(np.clip(D / np.maximum(rho, 1e-12), -1.0, 1.0))
        solutions, violations = [], []
        for branch in (1.0, -1.0):  # +1: the foot below the thigh joint in the leg frame, preferred on ties
            abd, abd_violation = _into_range(self.axis_sign[:, 0] * (phi + branch * alpha), self.lower[:, 0],
                                             self.upper[:, 0])
            hip, knee, hip_violation = self._planar.solve(vx, -branch * rho * np.sin(alpha))
            solutions.append(np.stack([abd, hip, knee], axis=-1))
            violations.append(abd_violation + hip_violation)
        above = violations[1] < violations[0] - 1e-12
        return self._finish(np.where(above[..., None], solutions[1], solutions[0]), p)


class PlanarLeg2(_Legs):
    """2-DOF planar legs: hip pitch about y at `hip_pos`, knee about y after `calf_offset`, foot centre after
    `foot_offset`. The foot moves in the vertical plane y = hip y + calf y + foot y of its leg.

    The inverse is closed form (two-link planar); a target off the leg plane goes to the plane, one out of
    reach to the nearest reachable distance from the hip, then joints stop at their limits."""

    dof = 2

    def __init__(self, legs: tuple[str, ...], joint_names: tuple[tuple[str, ...], ...], joint_index: np.ndarray,
                 hip_pos: np.ndarray, calf_offset: np.ndarray, foot_offset: np.ndarray, axis_sign: np.ndarray,
                 lower: np.ndarray, upper: np.ndarray, foot_radius: np.ndarray):
        super().__init__(legs, joint_names, joint_index, lower, upper, foot_radius)
        self.hip_pos = np.asarray(hip_pos, dtype=np.float64)
        """Hip-pitch joint in the base frame (m), shape (legs, 3)."""
        self.calf_offset = np.asarray(calf_offset, dtype=np.float64)
        """Knee relative to the hip-pitch joint at zero angles (m), (legs, 3)."""
        self.foot_offset = np.asarray(foot_offset, dtype=np.float64)
        """Foot centre relative to the knee at zero angles (m), (legs, 3)."""
        self.axis_sign = np.asarray(axis_sign, dtype=np.float64)
        """+1 or -1 per joint: the joint axis is +y or -y, (legs, 2)."""
        self.lateral = self.calf_offset[:, 1] + self.foot_offset[:, 1]
        """Offset (m) of the leg plane from the hip along y."""
        self._planar = _Planar(self.calf_offset, self.foot_offset, self.axis_sign, self.lower, self.upper)

    @classmethod
    def from_lengths(cls, hip_pos: np.ndarray, upper_length: float, lower_length: float, lower: np.ndarray,
                     upper: np.ndarray, foot_radius: float = 0.0) -> PlanarLeg2:
        """Legs hanging straight down at zero angles, links `upper_length` and `lower_length` (m), axes +y;
        hip_pos (legs, 3), joint ranges lower/upper (legs, 2). Joint order: leg by leg, hip then knee."""
        hip_pos = np.asarray(hip_pos, dtype=np.float64)
        L = hip_pos.shape[0]
        legs = tuple(f"leg{i}" for i in range(L))
        return cls(legs, tuple((f"{leg}_hip", f"{leg}_knee") for leg in legs), np.arange(2 * L).reshape(L, 2),
                   hip_pos, np.tile([0.0, 0.0, -upper_length], (L, 1)), np.tile([0.0, 0.0, -lower_length], (L, 1)),
                   np.ones((L, 2)), lower, upper, np.full(L, foot_radius))

    @property
    def anchor(self) -> np.ndarray:
        """The hip-pitch joint moved into the leg plane, (legs, 3); gaits put the foot's neutral point below it."""
        return self.hip_pos + np.stack([np.zeros_like(self.lateral), self.lateral, np.zeros_like(self.lateral)], 1)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """Foot centres in the base frame (..., legs, 3) (m) of joint angles q (..., legs, 2) (rad)."""
        theta = self._check_q(q) * self.axis_sign
        return self.hip_pos + rot_y(self.calf_offset + rot_y(self.foot_offset, theta[..., 1]), theta[..., 0])

    def ik(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint angles (..., legs, 2) (rad) putting the foot centres at p (..., legs, 3) (base frame, m), and a
        boolean mask (..., legs) of the legs that cannot reach their target."""
        p = self._check_p(p)
        px, pz = p[..., 0] - self.hip_pos[:, 0], p[..., 2] - self.hip_pos[:, 2]
        r = np.hypot(px, pz)
        scale = np.clip(r, self._planar.rmin, self._planar.rmax) / np.maximum(r, 1e-12)
        px, pz = np.where(r > 1e-12, px * scale, 0.0), np.where(r > 1e-12, pz * scale, -self._planar.rmin)
        hip, knee, _ = self._planar.solve(px, pz)
        return self._finish(np.stack([hip, knee], axis=-1), p)


def _leg_chains(model: mujoco.MjModel, robot: RobotSpec) -> list[tuple[int, list[int], list[int]]]:
    """Per foot of `robot`: (foot geom id, body ids from the base outwards, their hinge joint ids)."""
    base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, robot.base_body)
    if base < 0:
        raise LegkitError(f"the model has no base body '{robot.base_body}' of robot '{robot.name}'")
    if not robot.feet:
        raise LegkitError(f"robot '{robot.name}' names no feet (RobotSpec.feet); gaits need them")
    chains = []
    for foot in robot.feet:
        geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, foot)
        if geom < 0:
            raise LegkitError(f"the model has no foot geom '{foot}' of robot '{robot.name}'")
        bodies, b = [], int(model.geom_bodyid[geom])
        while b not in (base, 0):
            bodies.append(b)
            b = int(model.body_parentid[b])
        if b != base:
            raise LegkitError(f"foot geom '{foot}' does not hang from base body '{robot.base_body}'")
        bodies.reverse()
        joints = []
        for body in bodies:
            ids = np.flatnonzero(model.jnt_bodyid == body)
            if len(ids) != 1 or int(model.jnt_type[ids[0]]) != int(mujoco.mjtJoint.mjJNT_HINGE):
                raise LegkitError(f"leg body '{model.body(body).name}' of foot '{foot}' must have exactly one "
                                  f"hinge joint, has {len(ids)} joints")
            joints.append(int(ids[0]))
        chains.append((geom, bodies, joints))
    return chains


def _axis_sign(model: mujoco.MjModel, joint: int, axis: int) -> float:
    """+1 or -1 when the joint's axis is +- the base axis `axis` (0: x, 1: y); a LegkitError otherwise."""
    a = model.jnt_axis[joint]
    sign = 1.0 if a[axis] > 0 else -1.0
    if np.linalg.norm(a - sign * np.eye(3)[axis]) > 1e-9:
        raise LegkitError(f"joint '{model.joint(joint).name}' has axis {a.tolist()}; the leg kinematics need "
                          f"{'+-x' if axis == 0 else '+-y'} here")
    return sign


def leg_kinematics(model: mujoco.MjModel, robot: RobotSpec) -> LegKinematics | PlanarLeg2:
    """The leg kinematics of `robot`, read from its compiled model: LegKinematics for 3-joint legs,
    PlanarLeg2 for 2-joint legs."""
    chains = _leg_chains(model, robot)
    dofs = {len(joints) for _, _, joints in chains}
    if dofs not in ({2}, {3}):
        raise LegkitError(f"robot '{robot.name}': legs have {sorted(dofs)} joints; the gait kinematics support "
                          "legs of 3 joints (abduction, hip pitch, knee) or 2 (hip pitch, knee), all alike")
    dof = dofs.pop()
    names, index, lower, upper, radius, offsets, signs = [], [], [], [], [], [], []
    for geom, bodies, joints in chains:
        for b in bodies:
            if np.linalg.norm(model.body_quat[b] - [1.0, 0.0, 0.0, 0.0]) > 1e-9:
                raise LegkitError(f"leg body '{model.body(b).name}' is rotated (quat {model.body_quat[b].tolist()}); "
                                  "the leg kinematics need unrotated leg bodies")
        for j in joints:
            if np.linalg.norm(model.jnt_pos[j]) > 1e-12:
                raise LegkitError(f"joint '{model.joint(j).name}' sits off its body origin; the leg kinematics "
                                  "need joints at the body origins")
        jnames = tuple(model.joint(j).name for j in joints)
        missing = [n for n in jnames if n not in robot.joints]
        if missing:
            raise LegkitError(f"leg joint '{missing[0]}' is not among robot '{robot.name}' joints "
                              f"({', '.join(robot.joints)})")
        names.append(jnames)
        index.append([robot.joints.index(n) for n in jnames])
        limited = model.jnt_limited[joints].astype(bool)
        lower.append(np.where(limited, model.jnt_range[joints, 0], -np.pi))
        upper.append(np.where(limited, model.jnt_range[joints, 1], np.pi))
        is_round = int(model.geom_type[geom]) in (int(mujoco.mjtGeom.mjGEOM_SPHERE), int(mujoco.mjtGeom.mjGEOM_CAPSULE))
        radius.append(float(model.geom_size[geom, 0]) if is_round else 0.0)
        offsets.append([model.body_pos[b].copy() for b in bodies] + [model.geom_pos[geom].copy()])
        axes = (0, 1, 1) if dof == 3 else (1, 1)
        signs.append([_axis_sign(model, j, a) for j, a in zip(joints, axes)])
    offsets = np.asarray(offsets)  # (legs, dof + 1, 3): each body in its parent, then the foot in the last body
    legs = tuple(robot.feet)
    if dof == 3:
        return LegKinematics(legs, tuple(names), np.asarray(index), offsets[:, 0], offsets[:, 1], offsets[:, 2],
                             offsets[:, 3], np.asarray(signs), np.asarray(lower), np.asarray(upper),
                             np.asarray(radius))
    return PlanarLeg2(legs, tuple(names), np.asarray(index), offsets[:, 0], offsets[:, 1], offsets[:, 2],
                      np.asarray(signs), np.asarray(lower), np.asarray(upper), np.asarray(radius))
