"""`legkit bench`: throughput of the physics, the batched env, PPO and the hand-built path, in one run.

(a) physics limit: BatchSim (mujoco.batch.Batch) re-stepping the batch states the env visits, 1 core and all cores;
(b) the batched LegkitVecEnv stepping random actions;
(c) PPO end to end (collection + updates), as `legkit train` runs it;
(d) the same task as a single-robot gymnasium env in SB3's DummyVecEnv and SubprocVecEnv.
All rates are control steps per second (one step = one robot advanced by one policy period).
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import replace

import mujoco
import numpy as np
import torch

from legkit import LegkitError
from legkit.envs.gym_env import LegkitGymEnv
from legkit.envs.vec_env import LegkitVecEnv
from legkit.sim.batch import BatchSim
from legkit.sim.scene import PHYSICS_PRESETS, preset_decimation
from legkit.sim.terrain import TerrainConfig
from legkit.tasks.config import TaskConfig, physics_preset_sets
from legkit.train.callbacks import TorchThreads
from legkit.train.config import Config, build_config

FIELDS = ("physics_1core", "physics_all_cores", "env", "ppo", "dummy_vec_env", "subproc_vec_env")


def _rate(fn, steps_per_call: int, seconds: float, min_calls: int = 3) -> float:
    """Call fn repeatedly for about `seconds` (at least `min_calls` times); return steps per second."""
    fn()  # warm-up
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return calls * steps_per_call / (time.perf_counter() - t0)


def physics_limit(env: LegkitVecEnv, seconds: float, nthread: int) -> float:
    """Raw rollout rate from the env's current batch states under its last controls (control steps/s)."""
    b = env.batch
    sim = BatchSim(b.model, b.num_envs, b.task.decimation, nthread=nthread)
    snapshot = b.sim.state.copy()
    ctrl = b._ctrl.copy()

    def run() -> None:
        np.copyto(sim.state, snapshot)  # same states every call: the env's own workload
        sim.step(ctrl)

    try:
        return _rate(run, b.num_envs, seconds)
    finally:
        sim.close()


def env_rate(env: LegkitVecEnv, seconds: float, rng: np.random.Generator) -> float:
    """LegkitVecEnv.step with uniform random actions (control steps/s)."""
    actions = rng.uniform(-1, 1, (64, env.num_envs, env.batch.action_dim)).astype(np.float32)
    k = [0]

    def run() -> None:
        env.step(actions[k[0] % 64])
        k[0] += 1

    return _rate(run, env.num_envs, seconds, min_calls=20)


def ppo_rate(cfg: Config, num_envs: int, seconds: float) -> float:
    """PPO training steps per second, rollouts and updates, as `legkit train` runs it."""
    from stable_baselines3.common.vec_env import VecNormalize

    from legkit.train.trainer import _build_model

    cfg = replace(cfg, run=replace(cfg.run, num_envs=num_envs),
                  ppo=replace(cfg.ppo, batch_size=min(cfg.ppo.batch_size, cfg.ppo.n_steps * num_envs)))
    env = VecNormalize(LegkitVecEnv(cfg.task, num_envs, seed=0), gamma=cfg.ppo.gamma)
    model = _build_model(cfg, env)
    per_rollout = cfg.ppo.n_steps * num_envs
    threads = TorchThreads(os.cpu_count() or 1)
    model.learn(per_rollout, callback=threads)  # warm-up
    rollouts, t0 = 0, time.perf_counter()
    while rollouts < 2 or time.perf_counter() - t0 < seconds:
        model.learn(per_rollout, callback=threads, reset_num_timesteps=False)
        rollouts += 1
    rate = rollouts * per_rollout / (time.perf_counter() - t0)
    env.close()
    return rate


def hand_built_rate(task_name: str, num_envs: int, seconds: float, subproc: bool,
                    task: TaskConfig | None = None) -> float:
    """The seed projects' way: one gymnasium env per robot inside DummyVecEnv or SubprocVecEnv (of `task`, the
    task's config, when given; else its registered one)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    fns = [lambda: LegkitGymEnv(task_name, task) for _ in range(num_envs)]
    venv = SubprocVecEnv(fns, start_method="fork") if subproc else DummyVecEnv(fns)
    venv.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (64, num_envs, venv.action_space.shape[0])).astype(np.float32)
    k = [0]

    def run() -> None:
        venv.step(actions[k[0] % 64])
        k[0] += 1

    try:
        return _rate(run, num_envs, seconds, min_calls=20)
    finally:
        venv.close()


def contacts_per_step(env: LegkitVecEnv, sample: int = 64) -> float:
    """Mean number of contacts MuJoCo keeps per robot at the batch's current states (up to `sample` robots)."""
    b = env.batch
    data = mujoco.MjData(b.model)
    counts = []
    for state in b.sim.state[:sample]:
        mujoco.mj_setState(b.model, data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(b.model, data)
        counts.append(data.ncon)
    return float(np.mean(counts))


def _warm(env: LegkitVecEnv, rng: np.random.Generator) -> None:
    """Reach a typical mix of standing, stepping and fallen robots."""
    env.reset()
    for _ in range(50):
        env.step(rng.uniform(-1, 1, (env.num_envs, env.batch.action_dim)).astype(np.float32))


def camera_costs(env: LegkitVecEnv, seconds: float) -> dict | None:
    """Frames per second of the task's depth camera for one robot at a time: ray cast (mj_multiRay, what legkit
    uses) against an OpenGL depth render of the same size from the robot's MJCF camera (None where no GL)."""
    from legkit.sim.sensors import camera_rate

    b = env.batch
    cam = b.task.sensors.camera
    if cam is None:
        return None
    rays = camera_rate(b.model, 16, seconds, cam, b.robot.base_body, states=b.sim.state[:16])
    out = {"camera": f"{cam.width}x{cam.height}", "raycast_fps": rays.robots_per_s, "gl_fps": None}
    name = b.robot.extra.get("camera")
    try:
        import importlib

        from legkit.media.render import gl_backend

        out["gl_backend"] = gl_backend()
        gl = importlib.import_module(f"mujoco.{out['gl_backend']}").GLContext(cam.width, cam.height)
    except Exception as exc:  # noqa: BLE001 - no OpenGL here: the ray cast alone is measured
        out["gl_error"] = str(exc).splitlines()[0]
        return out
    m, data = b.model, mujoco.MjData(b.model)
    gl.make_current()
    try:
        con = mujoco.MjrContext(m, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)
        scene, option, camera = mujoco.MjvScene(m, maxgeom=1000), mujoco.MjvOption(), mujoco.MjvCamera()
        camera.type, camera.fixedcamid = mujoco.mjtCamera.mjCAMERA_FIXED, mujoco.mj_name2id(
            m, mujoco.mjtObj.mjOBJ_CAMERA, name)
        rect, depth = mujoco.MjrRect(0, 0, cam.width, cam.height), np.empty((cam.height, cam.width), np.float32)

        def frames() -> None:  # what a GL camera costs per robot: its pose, the scene, the render, the read-back
            for row in b.sim.state[:16]:
                mujoco.mj_setState(m, data, row, mujoco.mjtState.mjSTATE_FULLPHYSICS)
                mujoco.mj_kinematics(m, data)
                mujoco.mj_camlight(m, data)
                mujoco.mjv_updateScene(m, data, option, None, camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
                mujoco.mjr_render(rect, scene, con)
                mujoco.mjr_readPixels(None, depth, rect, con)

        out["gl_fps"] = _rate(frames, min(16, len(b.sim.state)), seconds)
        con.free()
    finally:
        gl.free()
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children (MB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def run_bench(task_name: str = "go2-walk", envs: tuple[int, ...] = (64, 256, 1024), seconds: float = 3.0,
              hand_envs: int = 8, include_ppo: bool = True, sets: list[str] | None = None) -> dict:
    """Measure every rate for each batch size; one dict per size plus machine facts. `sets`: --set overrides of
    the task (e.g. a physics preset's), applied to every path."""
    cfg = build_config(task_name, sets=sets)
    cores = os.cpu_count() or 1
    torch.set_num_threads(1)
    rows = []
    dummy = hand_built_rate(task_name, hand_envs, seconds, subproc=False, task=cfg.task)
    subproc = hand_built_rate(task_name, hand_envs, seconds, subproc=True, task=cfg.task)
    for n in envs:
        env = LegkitVecEnv(cfg.task, n, seed=0)
        rng = np.random.default_rng(0)
        _warm(env, rng)
        row = {"num_envs": n, "contacts": contacts_per_step(env)}
        row["physics_1core"] = physics_limit(env, seconds, nthread=0)
        row["physics_all_cores"] = physics_limit(env, seconds, nthread=cores)
        row["env"] = env_rate(env, seconds, rng)
        if n == envs[0]:
            row["camera_costs"] = camera_costs(env, seconds)
        env.close()
        if cfg.task.terrain.kind != "plane":  # what the terrain costs: the same task on flat ground
            flat = LegkitVecEnv(replace(cfg.task, terrain=TerrainConfig()), n, seed=0)
            _warm(flat, np.random.default_rng(0))
            row["flat_contacts"] = contacts_per_step(flat)
            row["flat_physics_all_cores"] = physics_limit(flat, seconds, nthread=cores)
            row["flat_env"] = env_rate(flat, seconds, np.random.default_rng(0))
            row["terrain_cost"] = row["flat_env"] / row["env"]
            flat.close()
        row["ppo"] = ppo_rate(cfg, n, seconds) if include_ppo else None
        row["dummy_vec_env"], row["subproc_vec_env"] = dummy, subproc
        lim = row["physics_all_cores"]
        row["env_over_limit"] = row["env"] / lim
        row["ppo_over_limit"] = row["ppo"] / lim if row["ppo"] is not None else None
        row["env_over_dummy"] = row["env"] / dummy
        row["env_over_subproc"] = row["env"] / subproc
        row["peak_rss_mb"] = peak_rss_mb()
        rows.append(row)
    return {
        "task": task_name, "seconds": seconds, "hand_built_envs": hand_envs, "overrides": list(sets or []),
        "machine": _machine(),
        "decimation": cfg.task.decimation, "timestep": cfg.task.physics.timestep, "terrain": cfg.task.terrain.kind,
        "results": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def format_bench(result: dict) -> str:
    """The bench table: rates in control steps/s, ratios, peak memory."""
    head = (f"{'envs':>6} {'phys 1c':>9} {'phys all':>9} {'env':>9} {'ppo':>9} {'dummy':>8} {'subproc':>8} "
            f"{'env/lim':>8} {'ppo/lim':>8} {'env/dum':>8} {'env/sub':>8} {'rss MB':>7}")
    lines = [f"legkit bench: {result['task']}, {result['machine']['cores']} cores, control steps/s "
             f"(decimation {result['decimation']} x {result['timestep']} s); hand-built paths use "
             f"{result['hand_built_envs']} envs", head]
    for r in result["results"]:
        ppo = f"{r['ppo']:9.0f}" if r["ppo"] is not None else f"{'-':>9}"
        ppo_ratio = f"{r['ppo_over_limit']:8.0%}" if r["ppo_over_limit"] is not None else f"{'-':>8}"
        lines.append(
            f"{r['num_envs']:>6} {r['physics_1core']:9.0f} {r['physics_all_cores']:9.0f} {r['env']:9.0f} {ppo} "
            f"{r['dummy_vec_env']:8.0f} {r['subproc_vec_env']:8.0f} {r['env_over_limit']:8.0%} {ppo_ratio} "
            f"{r['env_over_dummy']:7.1f}x {r['env_over_subproc']:7.1f}x {r['peak_rss_mb']:7.0f}"
        )
    for r in result["results"]:
        c = r.get("camera_costs")
        if c:
            gl = (f"{c['gl_fps']:.0f} ({c['gl_backend']})" if c["gl_fps"] else f"- ({c.get('gl_error', 'no GL')})")
            lines.append(f"depth camera {c['camera']}, frames/s for one robot: ray cast {c['raycast_fps']:.0f}, "
                         f"OpenGL render {gl}")
    lines.append("contacts per robot: " + ", ".join(f"{r['num_envs']} envs {r['contacts']:.1f}" for r in result["results"]))
    if any("terrain_cost" in r for r in result["results"]):
        lines.append(f"terrain ({result['terrain']}) against flat ground, the same task and batch:")
        for r in result["results"]:
            lines.append(f"  {r['num_envs']:>5} envs: env {r['env']:.0f} vs flat {r['flat_env']:.0f} steps/s "
                         f"({r['terrain_cost']:.2f}x the time per step); physics {r['physics_all_cores']:.0f} vs "
                         f"{r['flat_physics_all_cores']:.0f}; contacts {r['contacts']:.1f} vs {r['flat_contacts']:.1f}")
    return "\n".join(lines)


def _machine() -> dict:
    return {"cores": os.cpu_count() or 1, "platform": platform.platform(), "processor": platform.machine(),
            "python": platform.python_version(), "mujoco": mujoco.__version__, "torch": torch.__version__}


def bench_presets(task_name: str = "go2-walk", envs: tuple[int, ...] = (64, 256, 1024), seconds: float = 3.0,
                  sets: list[str] | None = None) -> dict:
    """`legkit bench --physics all`: the batched env's and the physics' rates (control steps/s) under every physics
    preset (sim.scene.PHYSICS_PRESETS) that fits the task's control period, the presets interleaved at each batch
    size so that a change in the machine's load touches them alike. `sets`: other --set overrides of the task."""
    base = build_config(task_name, sets=sets)
    cores = os.cpu_count() or 1
    torch.set_num_threads(1)
    configs, skipped = {}, {}
    for name in PHYSICS_PRESETS:
        try:
            preset_decimation(name, base.task.control_dt)
        except LegkitError as exc:  # the preset's step does not divide the control period: it does not fit
            skipped[name] = str(exc)
            continue
        preset = physics_preset_sets(name, base.task, sets or [])
        configs[name] = build_config(task_name, sets=[*(sets or []), *preset])
    rows = []
    for n in envs:
        for name, cfg in configs.items():
            env = LegkitVecEnv(cfg.task, n, seed=0)
            rng = np.random.default_rng(0)
            _warm(env, rng)
            p = cfg.task.physics
            rows.append({"preset": name, "num_envs": n, "timestep": p.timestep, "decimation": cfg.task.decimation,
                         "iterations": p.iterations, "ls_iterations": p.ls_iterations,
                         "contacts": contacts_per_step(env), "physics_all_cores": physics_limit(env, seconds, cores),
                         "env": env_rate(env, seconds, rng)})
            env.close()
    for r in rows:  # each preset's speed against the most faithful one measured, at the same batch size
        ref = next(x for x in rows if x["num_envs"] == r["num_envs"])
        r["speedup"] = r["env"] / ref["env"]
    return {"task": task_name, "seconds": seconds, "control_dt": base.task.control_dt, "overrides": list(sets or []),
            "machine": _machine(), "results": rows, "skipped": skipped, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def format_presets(result: dict) -> str:
    """The preset table: per batch size and preset, its step, solver iterations, contacts per robot, rates, and its
    env rate over the first preset's (production's, unless it does not fit)."""
    rows = result["results"]
    first = rows[0]["preset"] if rows else "-"
    head = (f"{'envs':>6} {'preset':<11} {'step ms':>7} {'decim':>5} {'iters':>6} {'contacts':>8} "
            f"{'phys all':>9} {'env':>9} {'vs ' + first:>14}")
    lines = [f"legkit bench --physics all: {result['task']}, {result['machine']['cores']} cores, control steps/s at a "
             f"{result['control_dt'] * 1000:g} ms control period", head]
    for r in rows:
        lines.append(f"{r['num_envs']:>6} {r['preset']:<11} {r['timestep'] * 1000:7g} {r['decimation']:>5} "
                     f"{r['iterations']:>3}/{r['ls_iterations']:<2} {r['contacts']:8.1f} {r['physics_all_cores']:9.0f} "
                     f"{r['env']:9.0f} {r['speedup']:13.2f}x")
    for name, why in result["skipped"].items():
        lines.append(f"{name}: not measured ({why})")
    return "\n".join(lines)
