"""The robot's own sensors as observation terms: a 6-axis IMU, an ultrasonic range, a depth camera and touch
sensors (sim/sensors.py models them), each read at its own rate and held between reads, and the obstacle
arena's contacts (sim/arena.py). The env calls `reset` and `update`; the observation terms `imu`,
`ultrasonic`, `camera` and `touch` read what `update` wrote into the BatchState. With the IMU comes `attitude`:
the gravity direction as a complementary filter of the IMU's readings estimates it (legkit.runtime.attitude_step,
which an exported policy's runtime runs the same way), since the PiDog's IMU gives no orientation of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from legkit import LegkitError
from legkit.runtime import attitude_step
from legkit.sim.sensors import (STANDARD_GRAVITY, CameraConfig, DepthCamera, Imu, ImuConfig, RayScene, SampleAndHold,
                                Ultrasonic, UltrasonicConfig, read_sensors)


@dataclass(frozen=True)
class SensorsConfig:
    """Which of the robot's sensors a task reads (`task.sensors.*`); none by default."""

    imu: ImuConfig | None = None
    """The 6-axis IMU (accelerometer m/s^2, gyroscope rad/s, in the IMU's frame): the `imu` term, and the
    `attitude` term filtered from it."""
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
            self._imu_frame = _imu_frame(m, cfg.imu, batch.robot.base_body)
        # The rays are cast on as many threads as the physics runs on (between physics steps, so they share cores)
        threads = max(1, batch.sim.nthread)
        scene = RayScene(m, batch.robot.base_body, nthread=threads) if cfg.ultrasonic or cfg.camera else None
        self.scene = scene
        """The ray scene the sonar and the camera share (None without them)."""
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

    def _at_reset(self, ids: np.ndarray) -> np.ndarray:
        """Sensor rows of robots just reset: MuJoCo's sensordata is zero until their first step, and an IMU never
        reads zero: it reads what it would at the reset pose, the specific force opposite to gravity and the base's
        turn rate, in the IMU's frame (an IMU on another body than the base keeps the zeros)."""
        rows = self.batch.sim.sensordata[ids].copy()
        if self._imu_frame is not None:
            s = self.batch.state
            rows[:, self.imu.index[:3]] = (-STANDARD_GRAVITY * s.projected_gravity[ids]) @ self._imu_frame
            rows[:, self.imu.index[3:]] = s.base_ang_vel[ids] @ self._imu_frame
        return rows

    def reset(self, ids: np.ndarray) -> None:
        """Fresh readings at the robots' next step (nothing held over from their last episode)."""
        for hold in (self._imu_hold, self._sonar_hold, self._camera_hold):
            if hold is not None:
                hold.reset(ids)
        if self.imu is not None:
            self.imu.reset(ids, self.batch.rng)

    def update(self, reset_ids: np.ndarray | None = None) -> None:
        """Read every sensor that is due this control step into the BatchState; with `reset_ids`, the robots just
        reset read afresh and no other robot's sensors advance (a reset within a step is not another step)."""
        b, s = self.batch, self.batch.state
        sim, rng = b.sim, b.rng
        mocap = sim.mocap

        def advance(hold: SampleAndHold, read) -> None:
            if reset_ids is None:
                hold.step(read)
            else:
                hold.refresh(reset_ids, read)

        if self.imu is not None:
            advance(self._imu_hold, lambda ids: self.imu.read(
                sim.sensordata[ids] if reset_ids is None else self._at_reset(ids), rng, env_ids=ids))
            gain = self.cfg.imu.attitude_gain
            if reset_ids is None:
                s.attitude[:] = attitude_step(s.attitude, s.imu, b.dt, gain)
            elif len(reset_ids):  # a new episode's estimate starts from the accelerometer
                s.attitude[reset_ids] = attitude_step(s.attitude[reset_ids], s.imu[reset_ids], b.dt, gain,
                                                      fresh=np.ones(len(reset_ids), dtype=bool))
        if self.sonar is not None:
            advance(self._sonar_hold, lambda ids: self.sonar.features(
                self.sonar.read(sim.state[ids], rng, None if mocap is None else mocap[ids])))
        if self.camera is not None:
            advance(self._camera_hold, lambda ids: self.camera.read(
                sim.state[ids], rng, None if mocap is None else mocap[ids]).reshape(len(ids), -1))
        if self._touch is not None:
            np.take(sim.sensordata, self._touch, axis=1, out=s.touch)


def _imu_frame(model, cfg: ImuConfig, base_body: str) -> np.ndarray | None:
    """The IMU site's axes in the base's frame (3, 3), columns x, y, z; None when the site is on another body."""
    sensor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, cfg.accelerometer)
    site = int(model.sensor_objid[sensor])
    if model.body(int(model.site_bodyid[site])).name != base_body:
        return None
    frame = np.zeros(9)
    mujoco.mju_quat2Mat(frame, model.site_quat[site])
    return frame.reshape(3, 3)


def check_sensor_terms(observations: tuple[str, ...], cfg: SensorsConfig) -> None:
    """A sensor observation term needs its sensor configured: say which key turns it on."""
    need = {"imu": ("imu", cfg.imu), "attitude": ("imu", cfg.imu), "ultrasonic": ("ultrasonic", cfg.ultrasonic),
            "camera": ("camera", cfg.camera), "touch": ("touch", cfg.touch or None)}
    for term, (key, sensor) in need.items():
        if term in observations and sensor is None:
            raise LegkitError(f"observation term '{term}' reads a sensor the task does not configure: set "
                              f"task.sensors.{key} (the robot must carry it)")
