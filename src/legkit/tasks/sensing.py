"""The robot's own sensors as observation terms: a 6-axis IMU, an ultrasonic range, a depth camera and touch
sensors (sim/sensors.py models them), each read at its own rate and held between reads, and the obstacle
arena's contacts (sim/arena.py). The env calls `reset` and `update`; the observation terms `imu`,
`ultrasonic`, `camera` and `touch` read what `update` wrote into the BatchState.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from legkit import LegkitError
from legkit.sim.sensors import (CameraConfig, DepthCamera, Imu, ImuConfig, RayScene, SampleAndHold, Ultrasonic,
                                UltrasonicConfig, read_sensors)


@dataclass(frozen=True)
class SensorsConfig:
    """Which of the robot's sensors a task reads (`task.sensors.*`); none by default."""

    imu: ImuConfig | None = None
    """The 6-axis IMU (accelerometer m/s^2, gyroscope rad/s, in the IMU's frame): the `imu` term."""
    ultrasonic: UltrasonicConfig | None = None
    """The ultrasonic range: the `ultrasonic` term, [echo flag, distance m (max range when no echo)]."""
    camera: CameraConfig | None = None
    """The depth camera: the `camera` term, height x width depths, row by row."""
    touch: tuple[str, ...] = ()
    """MuJoCo touch sensors read as the `touch` term (N), e.g. ("head_touch",)."""

    @property
    def any(self) -> bool:
        return bool(self.imu or self.ultrasonic or self.camera or self.touch)


class Sensors:
    """The configured sensors of one batch: built once, read every control step at their own rates."""

    def __init__(self, cfg: SensorsConfig, batch) -> None:
        m, n, dt, rng = batch.model, batch.num_envs, batch.dt, batch.rng
        self.batch, self.cfg = batch, cfg
        s = batch.state
        self.imu = self._imu_hold = None
        if cfg.imu is not None:
            self.imu = Imu(m, n, cfg.imu)
            self._imu_hold = SampleAndHold.at_rate(n, (6,), cfg.imu.rate_hz, dt)
            s.imu = self._imu_hold.value
        scene = RayScene(m, batch.robot.base_body) if cfg.ultrasonic or cfg.camera else None
        self.sonar = self._sonar_hold = None
        if cfg.ultrasonic is not None:
            self.sonar = Ultrasonic(scene, cfg.ultrasonic)
            self._sonar_hold = SampleAndHold.at_rate(n, (2,), cfg.ultrasonic.rate_hz, dt)
            s.ultrasonic = self._sonar_hold.value
        self.camera = self._camera_hold = None
        if cfg.camera is not None:
            self.camera = DepthCamera(scene, cfg.camera)
            size = cfg.camera.width * cfg.camera.height
            # Staggered: each robot's frame comes at its own step, so the rays' cost spreads evenly over steps.
            self._camera_hold = SampleAndHold.at_rate(n, (size,), cfg.camera.rate_hz, dt, rng=rng)
            s.camera = self._camera_hold.value
        self._touch = None
        if cfg.touch:
            self._touch, dim = read_sensors(m, cfg.touch, key="task.sensors.touch")
            s.touch = np.zeros((n, dim))

    def reset(self, ids: np.ndarray) -> None:
        """Fresh readings at the robots' next step (nothing held over from their last episode)."""
        for hold in (self._imu_hold, self._sonar_hold, self._camera_hold):
            if hold is not None:
                hold.reset(ids)
        if self.imu is not None:
            self.imu.reset(ids, self.batch.rng)

    def update(self) -> None:
        """Read every sensor that is due this control step into the BatchState."""
        b, s = self.batch, self.batch.state
        sim, rng = b.sim, b.rng
        mocap = sim.mocap
        if self.imu is not None:
            self._imu_hold.step(lambda ids: self.imu.read(sim.sensordata[ids], rng, env_ids=ids))
        if self.sonar is not None:
            self._sonar_hold.step(lambda ids: self.sonar.features(
                self.sonar.read(sim.state[ids], rng, None if mocap is None else mocap[ids])))
        if self.camera is not None:
            self._camera_hold.step(lambda ids: self.camera.read(
                sim.state[ids], rng, None if mocap is None else mocap[ids]).reshape(len(ids), -1))
        if self._touch is not None:
            np.take(sim.sensordata, self._touch, axis=1, out=s.touch)


def check_sensor_terms(observations: tuple[str, ...], cfg: SensorsConfig) -> None:
    """A sensor observation term needs its sensor configured: say which key turns it on."""
    need = {"imu": cfg.imu, "ultrasonic": cfg.ultrasonic, "camera": cfg.camera, "touch": cfg.touch or None}
    for term, sensor in need.items():
        if term in observations and sensor is None:
            raise LegkitError(f"observation term '{term}' reads a sensor the task does not configure: set "
                              f"task.sensors.{term} (the robot must carry it)")
