"""Sensor models (sim/sensors.py) on tiny MJCF scenes built here: a floor, a box robot on a free joint that
carries the sensor sites, and walls or boxes as obstacles."""

from __future__ import annotations

import math
import threading

import mujoco
import numpy as np
import pytest

from legkit import LegkitError
from legkit.runtime import attitude_step, projected_gravity
from legkit.sim.sensors import (
    FULLPHYSICS,
    NO_ECHO,
    STANDARD_GRAVITY,
    CameraConfig,
    DepthCamera,
    Imu,
    ImuConfig,
    RayScene,
    SampleAndHold,
    Ultrasonic,
    UltrasonicConfig,
    camera_rate,
    measure_rate,
    pixel_directions,
    read_sensors,
    render_depth_gl,
)

SENSOR_X = 0.11
"""World x of the sonar and camera sites when the robot stands at the origin (m)."""
ZERO_NOISE = UltrasonicConfig(noise_std=0.0)


def scene_xml(obstacles: str = "") -> str:
    """Floor + robot (torso, a head that encloses the sensor sites, a visor in front of them on a child body)."""
    return f"""
<mujoco>
  <worldbody>
    <geom name="floor" type="plane" size="0 0 0.1"/>
    {obstacles}
    <body name="robot" pos="0 0 0.3">
      <freejoint/>
      <geom name="torso" type="box" size="0.1 0.05 0.03"/>
      <body name="head" pos="0.1 0 0">
        <geom name="head" type="sphere" size="0.03"/>
        <site name="sonar" pos="0.01 0 0"/>
        <site name="camera" pos="0.01 0 0"/>
        <body name="visor" pos="0.08 0 0">
          <geom name="visor" type="box" size="0.005 0.02 0.02" contype="0" conaffinity="0"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>"""


def wall(d: float, name: str = "wall") -> str:
    """A big wall square to +x whose face is `d` m in front of the sensors of a robot at the origin."""
    return f'<geom name="{name}" type="box" pos="{SENSOR_X + d + 0.05} 0 1" size="0.05 4 2"/>'


def model_of(obstacles: str = "") -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(scene_xml(obstacles))


def states(model: mujoco.MjModel, poses: list[tuple[tuple[float, float, float], float]]) -> np.ndarray:
    """State rows (N, nstate) of robots at (position, yaw in degrees)."""
    data = mujoco.MjData(model)
    rows = []
    for pos, yaw in poses:
        mujoco.mj_resetData(model, data)
        data.qpos[:3] = pos
        data.qpos[3:7] = [math.cos(math.radians(yaw) / 2), 0.0, 0.0, math.sin(math.radians(yaw) / 2)]
        row = np.empty(mujoco.mj_stateSize(model, FULLPHYSICS))
        mujoco.mj_getState(model, data, row, FULLPHYSICS)
        rows.append(row)
    return np.array(rows)


def at(*xs: float, z: float = 0.3) -> list[tuple[tuple[float, float, float], float]]:
    return [((x, 0.0, z), 0.0) for x in xs]


def sonar_read(obstacles: str, config: UltrasonicConfig = ZERO_NOISE, z: float = 0.3) -> float:
    model = model_of(obstacles)
    return float(Ultrasonic(RayScene(model), config).read(states(model, at(0.0, z=z)))[0])


# -- ultrasonic ----------------------------------------------------------------------------------

def test_sonar_reads_a_wall_at_its_distance():
    assert sonar_read(wall(1.2)) == pytest.approx(1.2, abs=1e-6)
    assert sonar_read(wall(0.5)) == pytest.approx(0.5, abs=1e-6)


def test_sonar_reports_no_echo_beyond_the_driver_timeout():
    assert sonar_read(wall(2.85)) == pytest.approx(2.85, abs=1e-6)
    assert sonar_read(wall(2.95)) == NO_ECHO  # inside the datasheet's 4 m, past the driver's 2.9 m
    assert sonar_read(wall(3.2)) == NO_ECHO
    assert sonar_read("") == NO_ECHO  # nothing but the floor, met at grazing incidence: no echo


def test_sonar_clamps_to_the_minimum_range():
    assert sonar_read(wall(0.01)) == pytest.approx(0.02)


def test_sonar_hears_the_nearest_surface_in_its_cone_only():
    # a pole 1 m ahead: its near face at bearing 14 degrees left is inside the 15 degree cone; at 24 outside
    def pole(bearing_deg: float) -> str:
        y = math.tan(math.radians(bearing_deg))
        return f'<geom name="pole" type="box" pos="{SENSOR_X + 1.0 + 0.03} {y} 0.5" size="0.03 0.03 0.5"/>'

    behind = wall(2.0)
    assert sonar_read(behind) == pytest.approx(2.0, abs=1e-6)
    # the ring ray at 15 degrees meets the pole's face (1.0 m ahead) at 1.0 / cos(15)
    assert sonar_read(behind + pole(14.0)) == pytest.approx(1.0 / math.cos(math.radians(15.0)), abs=1e-6)
    assert sonar_read(behind + pole(24.0)) == pytest.approx(2.0, abs=1e-6)
    # one thin ray (no rings) misses the pole inside the cone: the cone is what hears it
    thin = UltrasonicConfig(noise_std=0.0, rings=0)
    assert sonar_read(behind + pole(14.0), thin) == pytest.approx(2.0, abs=1e-6)


def test_sonar_ignores_the_robots_own_geoms():
    model = model_of(wall(1.2))
    scene = RayScene(model)
    names = {model.geom(int(g)).name for g in scene.robot_geoms}
    assert names == {"torso", "head", "visor"}  # the whole tree, not only the root body
    # the sites sit inside the head sphere and the visor blocks the beam 0.075 m ahead: both are skipped
    assert sonar_read(wall(1.2)) == pytest.approx(1.2, abs=1e-6)
    # the same visor fixed to the world is an obstacle, and is heard: its face 0.175 m ahead of the origin
    post = '<geom name="post" type="box" pos="0.18 0 0.3" size="0.005 0.02 0.02"/>'
    assert sonar_read(wall(1.2) + post) == pytest.approx(0.175 - SENSOR_X, abs=1e-6)
    # the caller's model is not changed by the scene's exclusion
    assert (model.geom_group == 0).all()


def test_rays_see_invisible_collision_geoms_but_not_invisible_decorations():
    glass = wall(1.0, "glass").replace("/>", ' rgba="1 1 1 0"/>')  # collides, drawn fully transparent
    assert sonar_read(wall(2.0) + glass) == pytest.approx(1.0, abs=1e-6)
    ghost = glass.replace("/>", ' contype="0" conaffinity="0"/>')  # neither collides nor shows
    assert sonar_read(wall(2.0) + ghost) == pytest.approx(2.0, abs=1e-6)


def test_sonar_hears_the_floor_when_pitched_down():
    # pitched 60 degrees down from 0.3 m: the steepest ring ray (75 degrees) meets the floor at 15 degrees off
    # its normal, inside max_incidence
    model = model_of("")
    data = mujoco.MjData(model)
    data.qpos[:3] = [0.0, 0.0, 0.3]
    pitch = math.radians(60.0)
    data.qpos[3:7] = [math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0]  # +pitch about y tips +x down
    mujoco.mj_kinematics(model, data)
    height = data.site("sonar").xpos[2]
    row = np.empty(mujoco.mj_stateSize(model, FULLPHYSICS))
    mujoco.mj_getState(model, data, row, FULLPHYSICS)
    reading = Ultrasonic(RayScene(model), ZERO_NOISE).read(row[None])[0]
    assert reading == pytest.approx(height / math.sin(math.radians(75.0)), abs=1e-6)


def test_sonar_noise_only_on_valid_readings():
    model = model_of(wall(1.0))
    sonar = Ultrasonic(RayScene(model), UltrasonicConfig(noise_std=0.01))
    poses = at(*([0.0] * 200)) + at(*([-3.0] * 50))  # 2.0 m behind: past the timeout
    reading = sonar.read(states(model, poses), np.random.default_rng(0))
    assert np.std(reading[:200]) == pytest.approx(0.01, rel=0.25)
    assert np.mean(reading[:200]) == pytest.approx(1.0, abs=0.003)
    assert (reading[200:] == NO_ECHO).all()
    with pytest.raises(LegkitError, match="rng"):
        sonar.read(states(model, at(0.0)))


def test_sonar_features_flag_no_echo_and_keep_the_distance_continuous():
    sonar = Ultrasonic(RayScene(model_of()), ZERO_NOISE)
    feats = sonar.features(np.array([1.5, NO_ECHO, 0.02]))
    assert feats.dtype == np.float32
    np.testing.assert_allclose(feats, [[1.0, 1.5], [0.0, 2.9], [1.0, 0.02]], atol=1e-6)


# -- depth camera --------------------------------------------------------------------------------

def camera_image(obstacles: str, config: CameraConfig, poses=None) -> np.ndarray:
    model = model_of(obstacles)
    return DepthCamera(RayScene(model), config).read(states(model, poses or at(0.0)))


ODD = CameraConfig(width=17, height=13)  # odd sizes: a pixel on the optical axis


def test_camera_centre_pixel_reads_the_wall_and_rays_spread_over_the_field_of_view():
    d, high = 1.2, at(0.0, z=1.0)  # 1 m up: every pixel sees the wall, none the floor
    img = camera_image(wall(d), ODD, high)[0]
    assert img.shape == (13, 17) and img.dtype == np.float32
    assert img[6, 8] == pytest.approx(d, abs=1e-5)
    f = ODD.focal_px
    assert math.degrees(2 * math.atan(0.5 * ODD.width / f)) == pytest.approx(65.0)
    for col in (0, 3, 12, 16):  # the centre row: pixel at horizontal angle a reads d / cos(a)
        a = math.atan((col + 0.5 - 8.5) / f)
        assert img[6, col] == pytest.approx(d / math.cos(a), abs=1e-5)
    # a corner pixel: the angle off the axis combines both
    corner = pixel_directions(ODD)[0, 0]
    assert img[0, 0] == pytest.approx(d / corner[0], abs=1e-5)
    # planar depth: a wall square to the axis reads d everywhere
    planar = camera_image(wall(d), CameraConfig(width=17, height=13, depth="planar"), high)[0]
    np.testing.assert_allclose(planar, d, atol=1e-5)


def test_camera_left_is_plus_y_and_up_is_plus_z():
    # a pole 20 degrees to the left (+y) appears left of the centre column; a roof above, in the top rows
    y = math.tan(math.radians(20.0))
    pole = f'<geom name="pole" type="box" pos="{SENSOR_X + 1.0} {y} 0.5" size="0.02 0.02 0.5"/>'
    bare = camera_image(wall(2.0), ODD)[0]
    changed = camera_image(wall(2.0) + pole, ODD)[0] != bare
    cols = np.flatnonzero(changed.any(axis=0))
    expected = int(8.5 - y * ODD.focal_px)  # the column whose rays have bearing 20 degrees left
    assert len(cols) and cols.max() < 8 and expected in cols
    roof = f'<geom name="roof" type="box" pos="{SENSOR_X + 1.0} 0 0.8" size="0.3 1 0.05"/>'
    changed = camera_image(wall(2.0) + roof, ODD)[0] != bare
    rows = np.flatnonzero(changed.any(axis=1))
    assert len(rows) and rows.max() < 6  # only above the centre row


def test_camera_sees_an_obstacle_placed_in_front_and_clips_at_max_depth():
    far = camera_image(wall(5.0), CameraConfig())
    assert (far == 3.0).sum() > 0 and far.max() == pytest.approx(3.0)
    box = f'<geom name="box" type="box" pos="{SENSOR_X + 0.6} 0 0.3" size="0.1 0.1 0.1"/>'
    near = camera_image(wall(5.0) + box, CameraConfig())
    changed = near != far
    assert changed.sum() >= 4
    assert near[changed].min() == pytest.approx(0.5, abs=0.05)  # the box's front face, 0.5 m ahead
    normalized = camera_image(wall(5.0) + box, CameraConfig(normalize=True))
    np.testing.assert_allclose(normalized, near / 3.0, rtol=1e-6)


def test_supersampled_camera_sees_a_thin_post_between_pixel_centres_at_its_depth():
    # 16 columns over 65 degrees (focal length 12.6 pixels): the centre columns' rays leave at +-2.3 degrees, 4 cm
    # off the axis 1 m ahead. A 3 cm post (the arena's thickest) on the axis 1 m ahead falls between them: one ray
    # per pixel misses it; 3 x 3 rays per pixel (the innermost at +-0.76 degrees, 1.3 cm off the axis there) see
    # it in the two centre columns, at its face's range.
    d = 1.0
    post = f'<geom name="post" type="box" pos="{SENSOR_X + d + 0.015} 0 0.3" size="0.015 0.015 0.3"/>'
    bare = camera_image(wall(2.0), CameraConfig())[0]
    single = camera_image(wall(2.0) + post, CameraConfig())[0]
    np.testing.assert_array_equal(single, bare)  # missed
    cfg = CameraConfig(supersample=3)
    bare3 = camera_image(wall(2.0), cfg)[0]
    seen = camera_image(wall(2.0) + post, cfg)[0]
    assert seen.shape == (12, 16)
    changed = np.abs(seen - bare3) > 1e-3
    assert np.flatnonzero(changed.any(axis=0)).tolist() == [7, 8]
    nearest = d / math.cos(math.atan((1 / 3 - 0.5) / cfg.focal_px))  # the sub-ray 1/6 pixel off the axis
    assert seen[6, 7] == pytest.approx(nearest, abs=2e-3) and seen[6, 8] == pytest.approx(nearest, abs=2e-3)
    # every pixel reads the nearest of its rays, and with 3 x 3 one of them is its centre ray: never farther
    assert (bare3 <= bare + 1e-6).all() and (bare3 < bare - 1e-3).any()


def test_low_obstacle_is_missed_by_the_sonar_but_seen_by_the_camera():
    # the head 0.1 m above the floor; a 1.5 cm kerb 0.3 m ahead lies under the sonar's 15 degree cone (whose
    # lowest ray is 1.96 cm up there), and its top is met at grazing incidence: no echo. The camera sees it.
    kerb = f'<geom name="kerb" type="box" pos="{SENSOR_X + 0.3 + 0.1} 0 0.0075" size="0.1 1 0.0075"/>'
    assert sonar_read("", z=0.1) == NO_ECHO
    assert sonar_read(kerb, z=0.1) == NO_ECHO
    free = camera_image("", CameraConfig(), at(0.0, z=0.1))[0]
    seen = camera_image(kerb, CameraConfig(), at(0.0, z=0.1))[0]
    changed = np.abs(seen - free) > 1e-3
    assert changed.any()
    assert (seen[changed] < free[changed]).all()  # the kerb stands in front of the floor those pixels saw
    assert np.flatnonzero(changed.any(axis=1)).min() >= 6  # below the horizon
    # a taller box at the same place rises into the cone and is heard
    box = f'<geom name="box" type="box" pos="{SENSOR_X + 0.3 + 0.1} 0 0.1" size="0.1 1 0.1"/>'
    assert sonar_read(box, z=0.1) == pytest.approx(0.3, abs=1e-6)


def test_height_camera_reads_the_floor_as_zero_and_a_kerb_at_its_height_however_the_body_pitches():
    # the head 0.1 m up; a 4 cm kerb whose near face is 0.3 m ahead and 0.2 m deep. Floor pixels read 0 whether the
    # body is level or pitched 10 degrees nose-down; the kerb's pixels read its top (0.04) or its face (0..0.04).
    kerb = f'<geom name="kerb" type="box" pos="{SENSOR_X + 0.3 + 0.1} 0 0.02" size="0.1 1 0.02"/>'
    cfg = CameraConfig(depth="height")
    model = model_of(kerb)
    cam = DepthCamera(RayScene(model), cfg)
    level = at(0.0, z=0.1)
    data = mujoco.MjData(model)
    data.qpos[:3] = [0.0, 0.0, 0.1]
    pitch = math.radians(10.0)
    data.qpos[3:7] = [math.cos(pitch / 2), 0.0, math.sin(pitch / 2), 0.0]
    row = np.empty(mujoco.mj_stateSize(model, FULLPHYSICS))
    mujoco.mj_getState(model, data, row, FULLPHYSICS)
    imgs = cam.read(np.concatenate([states(model, level), row[None]]))
    depth = DepthCamera(RayScene(model), CameraConfig()).read(states(model, level))[0]
    dirs = pixel_directions(cfg)
    for img in imgs:
        floor = (img < 1e-6)
        kerb_px = ~floor & (img < 0.3)
        assert floor.any() and kerb_px.any()
        assert img.max() == pytest.approx(0.04, abs=1e-6)  # nothing but the floor and the kerb in view
        np.testing.assert_allclose(img[floor], 0.0, atol=1e-6)
    # level: each kerb pixel's height is the camera's 0.1 m plus its depth times its ray's vertical component
    hit = imgs[0] > 1e-6
    np.testing.assert_allclose(imgs[0][hit], 0.1 + depth[hit] * dirs[..., 2][hit], atol=1e-5)
    # pixels above the horizon that meet nothing within max_depth read 0, as the floor
    assert (imgs[0][:5] == 0.0).all() and (depth[:5] == 3.0).all()
    # a thin post between the pixel centres: with 3 x 3 rays per pixel its top is the pixel's height
    post = f'<geom name="post" type="box" pos="{SENSOR_X + 1.015} 0 0.3" size="0.015 0.015 0.3"/>'
    seen = camera_image(post, CameraConfig(depth="height", supersample=3), at(0.0, z=0.1))[0]
    assert np.flatnonzero((seen > 0.05).any(axis=0)).tolist() == [7, 8]
    with pytest.raises(LegkitError, match="normalize"):
        CameraConfig(depth="height", normalize=True)


def test_camera_gl_depth_agrees_with_the_ray_cast_image():
    from legkit.media.render import gl_backend

    try:
        backend = gl_backend()
    except LegkitError as exc:
        pytest.skip(f"no OpenGL for offscreen rendering here: {exc}")
    box = f'<geom name="box" type="box" pos="{SENSOR_X + 0.8} 0.2 0.35" size="0.1 0.1 0.2"/>'
    model = model_of(wall(1.5) + box)
    for depth in ("planar", "range"):
        cam = DepthCamera(RayScene(model), CameraConfig(width=32, height=24, depth=depth))
        row = states(model, at(0.0))
        rays = cam.read(row)[0]
        gl = render_depth_gl(cam, row[0], backend)
        assert gl.shape == rays.shape
        err = np.abs(gl - rays)
        # pixels that the box's edges split may differ; everything else agrees to a few mm
        assert np.median(err) < 0.005, depth
        assert np.mean(err < 0.01) > 0.9, depth


def test_batch_gives_each_robot_its_own_reading():
    model = model_of(wall(2.0))
    poses = at(0.0, 0.5, 1.0) + [((0.0, 0.0, 0.3), 180.0), ((0.0, 0.0, 0.3), 90.0)]
    rows = states(model, poses)
    scene = RayScene(model)
    reading = Ultrasonic(scene, ZERO_NOISE).read(rows)
    np.testing.assert_allclose(reading, [2.0, 1.5, 1.0, NO_ECHO, NO_ECHO], atol=1e-6)
    img = DepthCamera(scene, ODD).read(rows)
    np.testing.assert_allclose(img[:3, 6, 8], [2.0, 1.5, 1.0], atol=1e-5)
    # the same robot read alone gives the same image: nothing carries over from the robot before it
    np.testing.assert_array_equal(DepthCamera(scene, ODD).read(rows[1:2])[0], img[1])


def test_threaded_scene_reads_what_one_thread_reads():
    """Robots split over three threads, each casting into its own MjData, read exactly as on one thread."""
    model = model_of(wall(2.0) + '<geom type="box" pos="0.8 0.4 0.1" size="0.05 0.05 0.1"/>')
    rng = np.random.default_rng(0)
    poses = [((x, y, z), yaw) for x, y, z, yaw in zip(rng.uniform(-1, 1, 41), rng.uniform(-1, 1, 41),
                                                      rng.uniform(0.2, 0.5, 41), rng.uniform(-180, 180, 41))]
    rows = states(model, poses)
    one, three = RayScene(model), RayScene(model, nthread=3)
    assert three.shares(41, 17) == [(0, 41)]  # 697 rays: too few to hand any to another thread
    three.MIN_SHARE_RAYS = 100  # split even these few
    assert three.shares(41, 17) == [(0, 14), (14, 27), (27, 41)]
    assert three.shares(12, 17) == [(0, 6), (6, 12)] and three.shares(5, 17) == [(0, 5)]  # 100 rays or more each
    np.testing.assert_array_equal(Ultrasonic(three, ZERO_NOISE).read(rows), Ultrasonic(one, ZERO_NOISE).read(rows))
    image = DepthCamera(three, CameraConfig(supersample=2)).read(rows)
    np.testing.assert_array_equal(image, DepthCamera(one, CameraConfig(supersample=2)).read(rows))
    assert len(np.unique(image.reshape(41, -1), axis=0)) == 41  # every robot saw the floor from its own height
    seen: dict[int, int] = {}
    three.run(lambda data, lo, hi: seen.setdefault(lo, id(data)) and None, 41, 17)
    assert sorted(seen) == [0, 14, 27] and len(set(seen.values())) == 3  # each share on its own MjData
    workers = [t for t in threading.enumerate() if t.name.startswith(three.thread_name + "_")]
    assert len(workers) == 2
    three.close()
    assert not any(t.is_alive() for t in workers)
    np.testing.assert_array_equal(Ultrasonic(three, ZERO_NOISE).read(rows), Ultrasonic(one, ZERO_NOISE).read(rows))
    with pytest.raises(LegkitError, match="nthread >= 1"):
        RayScene(model, nthread=0)


def test_measure_rate_reports_positive_costs():
    model = model_of(wall(2.0))
    cost = measure_rate(Ultrasonic(RayScene(model), ZERO_NOISE), states(model, at(0.0, 0.5)), seconds=0.02)
    assert cost.robots_per_s > 0 and cost.rays_per_s == pytest.approx(17 * cost.robots_per_s)
    assert cost.load_us > 0
    cam = camera_rate(model, n_robots=2, seconds=0.02)
    assert cam.rays_per_s == pytest.approx(192 * cam.robots_per_s)


# -- IMU and named sensors -----------------------------------------------------------------------

IMU_XML = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="0 0 0.1"/>
    <body name="robot" pos="0 0 0.2">
      <freejoint/>
      <geom type="box" size="0.1 0.06 0.03" mass="1"/>
      <site name="imu"/>
      <site name="head_pad" pos="0.1 0 0.03" size="0.02"/>
      <body name="tail" pos="-0.1 0 0">
        <joint name="tail_yaw" type="hinge" axis="0 0 1" damping="1"/>
        <joint name="tail_pitch" type="hinge" axis="0 1 0" damping="1"/>
        <geom type="capsule" fromto="0 0 0 -0.05 0 0" size="0.005" mass="0.01" contype="0" conaffinity="0"/>
      </body>
    </body>
  </worldbody>
  <sensor>
    <touch name="head_touch" site="head_pad"/>
    <accelerometer name="imu_acc" site="imu"/>
    <gyro name="imu_gyro" site="imu"/>
    <jointpos name="tail_yaw_enc" joint="tail_yaw"/>
    <jointpos name="tail_pitch_enc" joint="tail_pitch"/>
  </sensor>
</mujoco>"""

CLEAN = ImuConfig(acc_noise_std=0.0, gyro_noise_std=0.0, acc_bias_std=0.0, gyro_bias_std=0.0)


@pytest.fixture(scope="module")
def imu_model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(IMU_XML)


def settled_sensordata(model: mujoco.MjModel, quats: list[list[float]], heights: list[float]) -> np.ndarray:
    """Sensor rows (N, nsensordata) of the box dropped in each orientation and left to settle for 1 s."""
    rows = []
    for quat, z in zip(quats, heights):
        data = mujoco.MjData(model)
        data.qpos[:3] = [0.0, 0.0, z]
        data.qpos[3:7] = quat
        for _ in range(500):
            mujoco.mj_step(model, data)
        rows.append(data.sensordata.copy())
    return np.array(rows)


def test_imu_at_rest_reads_gravity_up_on_every_axis(imu_model):
    s = math.sqrt(0.5)
    # upright; rolled 90 degrees (body +y up); pitched -90 degrees (body +x up)
    rows = settled_sensordata(imu_model, [[1, 0, 0, 0], [s, s, 0, 0], [s, 0, -s, 0]], [0.035, 0.065, 0.105])
    imu = Imu(imu_model, num_envs=3, config=CLEAN)
    out = imu.read(rows)
    assert out.shape == (3, 6)
    g = float(np.linalg.norm(imu_model.opt.gravity))  # MuJoCo's default 9.81 m/s^2
    np.testing.assert_allclose(out[:, :3], [[0, 0, g], [0, g, 0], [g, 0, 0]], atol=0.05)
    np.testing.assert_allclose(out[:, 3:], 0.0, atol=0.02)


def test_imu_reads_all_three_gyro_components(imu_model):
    data = mujoco.MjData(imu_model)
    data.qpos[:3] = [0.0, 0.0, 1.0]
    data.qvel[3:6] = [0.1, -0.2, 0.3]  # a free joint's angular velocity is in the body frame
    mujoco.mj_forward(imu_model, data)
    out = Imu(imu_model, 1, CLEAN).read(data.sensordata[None])
    np.testing.assert_allclose(out[0, 3:], [0.1, -0.2, 0.3], atol=1e-9)
    # free fall: no specific force beyond the centripetal term of the site's offset from the centre of mass
    np.testing.assert_allclose(out[0, :3], 0.0, atol=1e-3)


def test_imu_clips_at_its_ranges_and_quantizes(imu_model):
    index, dim = read_sensors(imu_model, ["imu_acc", "imu_gyro"])
    rows = np.zeros((2, imu_model.nsensordata))
    rows[0, index] = [30.0, -25.0, 1.0, 50.0, -40.0, 0.5]
    rows[1, index] = [0.0123, 0.0, -19.0, 0.0, 0.001, -34.0]
    out = Imu(imu_model, 2, CLEAN).read(rows)
    full_acc, full_gyro = 2 * STANDARD_GRAVITY, math.radians(2000.0)
    np.testing.assert_allclose(out[0], [full_acc, -full_acc, 1.0, full_gyro, -full_gyro, 0.5])
    np.testing.assert_allclose(out[1], rows[1, index])
    q = Imu(imu_model, 2, ImuConfig(acc_noise_std=0.0, gyro_noise_std=0.0, acc_bias_std=0.0, gyro_bias_std=0.0,
                                    bits=8)).read(rows)
    lsb = 2 * np.repeat([full_acc, full_gyro], 3) / 256
    steps = q / lsb
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert np.abs(q[1] - rows[1, index]).max() <= lsb.max() / 2 + 1e-12
    assert q[1, 0] == 0.0  # 0.0123 m/s^2 is under half a step (0.077)


def test_imu_bias_is_per_robot_and_noise_per_reading(imu_model):
    cfg = ImuConfig(acc_noise_std=0.02, gyro_noise_std=0.001, acc_bias_std=0.2, gyro_bias_std=0.05)
    imu = Imu(imu_model, 2, cfg)
    rng = np.random.default_rng(1)
    imu.reset(np.arange(2), rng)
    assert not np.allclose(imu.bias[0], imu.bias[1])
    rows = np.zeros((2, imu_model.nsensordata))
    reads = np.array([imu.read(rows, rng) for _ in range(400)])  # (400, 2, 6)
    np.testing.assert_allclose(reads.mean(axis=0), imu.bias, atol=0.005)
    np.testing.assert_allclose(reads.std(axis=0), np.tile(imu.noise_std, (2, 1)), rtol=0.2)
    # a subset of robots reads with its own biases
    sub = Imu(imu_model, 2, CLEAN)
    sub.bias[:] = [[1.0] * 6, [2.0] * 6]
    np.testing.assert_allclose(sub.read(rows[:1], env_ids=np.array([1])), [[2.0] * 6])


def test_read_sensors_returns_every_component_in_order(imu_model):
    index, dim = read_sensors(imu_model, ["tail_yaw_enc", "head_touch", "imu_acc", "tail_pitch_enc"])
    assert dim == 6 and len(index) == 6
    data = mujoco.MjData(imu_model)
    data.qpos[:3] = [0.0, 0.0, 1.0]
    data.qpos[7:9] = [0.3, -0.4]
    mujoco.mj_forward(imu_model, data)
    values = data.sensordata[index]
    assert values[0] == pytest.approx(0.3) and values[5] == pytest.approx(-0.4)
    assert values[1] == 0.0  # nothing touches the head
    np.testing.assert_allclose(values[2:5], data.sensor("imu_acc").data)


# -- sample and hold -----------------------------------------------------------------------------

def test_sample_and_hold_reads_every_k_steps_and_holds_between():
    hold = SampleAndHold(num_envs=2, shape=(1,), period=3)
    calls, t = [], [0]

    def read(ids):
        calls.append((t[0], ids.tolist()))
        return np.full((len(ids), 1), float(t[0]))

    seen = []
    for t[0] in range(7):
        seen.append(hold.step(read)[:, 0].copy())
    assert [c[0] for c in calls] == [0, 3, 6]
    np.testing.assert_array_equal(np.array(seen)[:, 0], [0, 0, 0, 3, 3, 3, 6])
    hold.reset(np.array([1]))  # a reset robot reads at once
    t[0] = 7
    out = hold.step(read)
    assert calls[-1] == (7, [1]) and out[0, 0] == 6.0 and out[1, 0] == 7.0


def test_sample_and_hold_fractional_period_keeps_the_mean_rate():
    hold = SampleAndHold.at_rate(num_envs=1, shape=(), rate_hz=20.0, control_dt=0.02)  # 2.5 steps
    count = [0]

    def read(ids):
        count[0] += 1
        return np.zeros(len(ids))

    for _ in range(100):
        hold.step(read)
    assert count[0] == 40
    fast = SampleAndHold.at_rate(num_envs=1, shape=(), rate_hz=100.0, control_dt=0.02)  # faster: every step
    assert fast.period == 1.0


def test_sample_and_hold_refresh_reads_the_reset_robots_only():
    """A reset within a step reads afresh for the reset robots; the others neither read nor advance (before the
    fix, every reset step advanced every robot's sensors once more: up to twice their rate in training)."""
    hold = SampleAndHold(num_envs=2, shape=(1,), period=3)
    calls, t = [], [0]

    def read(ids):
        calls.append((t[0], ids.tolist()))
        return np.full((len(ids), 1), float(t[0]))

    for t[0] in range(2):
        hold.step(read)
    t[0] = 10
    out = hold.refresh(np.array([1]), read)
    assert calls[-1] == (10, [1]) and out[0, 0] == 0.0 and out[1, 0] == 10.0
    for t[0] in range(2, 4):  # robot 0 keeps its schedule (reads at 0, 3); robot 1 reads 3 steps after its refresh
        hold.step(read)
    assert calls[1:] == [(10, [1]), (3, [0])]
    t[0] = 4
    hold.step(read)
    assert calls[-1] == (4, [1])


def test_attitude_filter_turns_with_the_gyro_and_settles_on_the_accelerometer():
    level = attitude_step([0.0, 0.0, -1.0], [0.0, 0.0, 9.81, 0.0, 0.0, 0.0], 0.02, 0.02)
    np.testing.assert_allclose(level, [[0.0, 0.0, -1.0]], atol=1e-12)
    g = np.array([[0.0, 0.0, -1.0]])
    for _ in range(50):  # roll at 1 rad/s for 1 s, the accelerometer given no weight: the gyro alone turns it
        g = attitude_step(g, [0.0, 0.0, 9.81, 1.0, 0.0, 0.0], 0.02, 1e-12)
    np.testing.assert_allclose(g[0], projected_gravity([np.cos(0.5), np.sin(0.5), 0.0, 0.0]), atol=1e-3)
    tilted = -projected_gravity([np.cos(0.2), 0.0, np.sin(0.2), 0.0]) * 9.81  # pitched 0.4 rad, at rest
    g = np.array([[0.0, 0.0, -1.0]])
    for _ in range(250):  # gain 0.02 per 20 ms step: within 1% of the accelerometer's direction after 5 s
        g = attitude_step(g, np.r_[tilted, 0.0, 0.0, 0.0], 0.02, 0.02)
    np.testing.assert_allclose(g[0], -tilted / 9.81, atol=0.01)
    fresh = attitude_step([[0.0, 0.0, -1.0]] * 2, [np.r_[tilted, 0, 0, 0]] * 2, 0.02, 0.02, fresh=[True, False])
    np.testing.assert_allclose(fresh[0], -tilted / 9.81, atol=1e-12)  # a fresh robot starts from the accelerometer
    assert abs(fresh[1, 2] + 1.0) < 0.01


def test_sample_and_hold_staggers_robots():
    hold = SampleAndHold(num_envs=64, shape=(), period=4, rng=np.random.default_rng(0))
    assert 0 < len(hold.due()) < 64


# -- configuration errors ------------------------------------------------------------------------

@pytest.mark.parametrize("make, key", [
    (lambda: UltrasonicConfig(max_range=0.01), "task.sensors.ultrasonic.min_range"),
    (lambda: UltrasonicConfig(half_angle_deg=95.0), "task.sensors.ultrasonic.half_angle_deg"),
    (lambda: UltrasonicConfig(rays_per_ring=2), "task.sensors.ultrasonic.rays_per_ring"),
    (lambda: UltrasonicConfig(max_incidence_deg=0.0), "task.sensors.ultrasonic.max_incidence_deg"),
    (lambda: UltrasonicConfig(noise_std=-1.0), "task.sensors.ultrasonic.noise_std"),
    (lambda: CameraConfig(depth="z"), "task.sensors.camera.depth"),
    (lambda: CameraConfig(width=0), "task.sensors.camera.width"),
    (lambda: CameraConfig(hfov_deg=180.0), "task.sensors.camera.hfov_deg"),
    (lambda: CameraConfig(rate_hz=0.0), "task.sensors.camera.rate_hz"),
    (lambda: ImuConfig(bits=1), "task.sensors.imu.bits"),
    (lambda: ImuConfig(acc_range=0.0), "task.sensors.imu.acc_range"),
    (lambda: ImuConfig(attitude_gain=0.0), "task.sensors.imu.attitude_gain"),
])
def test_bad_config_names_its_key(make, key):
    with pytest.raises(LegkitError, match=key.replace(".", r"\.")):
        make()


def test_camera_depth_error_lists_the_valid_values():
    with pytest.raises(LegkitError, match="range, planar"):
        CameraConfig(depth="z")
    with pytest.raises(LegkitError, match=r"task.sensors.camera.supersample = 0: must be in 1..8"):
        CameraConfig(supersample=0)


def test_missing_sites_and_sensors_name_their_key(imu_model):
    scene = RayScene(model_of())
    with pytest.raises(LegkitError, match=r"task\.sensors\.ultrasonic\.site = 'nose'.*sonar"):
        Ultrasonic(scene, UltrasonicConfig(site="nose"))
    with pytest.raises(LegkitError, match=r"task\.sensors\.camera\.site"):
        DepthCamera(scene, CameraConfig(site="eye"))
    with pytest.raises(LegkitError, match=r"task\.sensors\.imu\.accelerometer.*imu_acc"):
        Imu(imu_model, 1, ImuConfig(accelerometer="acc"))
    with pytest.raises(LegkitError, match=r"task\.sensors\.imu\.gyro = 'imu_acc'.*ACCELEROMETER"):
        Imu(imu_model, 1, ImuConfig(gyro="imu_acc"))
    with pytest.raises(LegkitError, match=r"\(N, \d+\)"):
        Ultrasonic(scene, ZERO_NOISE).read(np.zeros((2, 3)))
