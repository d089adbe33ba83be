"""`legkit pipeline pidog`: the four stages into one experiment folder, reruns, --only/--from, bad input, and a
kill -9 in the middle of a stage that the next run resumes. Real MuJoCo and SB3, tiny settings."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_helpers import LEGKIT, snapshot

from legkit.cli import main
from legkit.train.trainer import read_normalization

TINY = [f"--set={s}" for s in (
    "collect.behaviours=[trot_forward,stand]", "collect.seconds_per_behaviour=2", "collect.episode_seconds=1",
    "imitate.epochs=3", "imitate.eval_robots=2", "imitate.eval_seconds=1",
    "finetune.turn_steps=1024", "finetune.steps=2048", "finetune.envs=16", "finetune.checkpoint_every=1024",
    "finetune.best_every=0",
    "finetune.final_eval_episodes=1", "finetune.eval_episodes=1", "finetune.ppo.n_steps=64",
    "finetune.ppo.batch_size=256",
    "finetune.task.episode_seconds=2", "package.checkpoint=final", "package.parity_samples=200")]
STAGE_FOLDERS = ("collect", "imitate", "finetune", "final_model")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pipeline(runs: Path, name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(LEGKIT), "pipeline", "pidog", "--name", name, "--runs", str(runs), *args],
                          env=ENV, capture_output=True, text=True, timeout=timeout)


def record(folder: Path) -> dict:
    return json.loads((folder / "pipeline.json").read_text())


def copy_experiment(src: Path, runs: Path) -> Path:
    dest = runs / "pipeline" / src.name
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """One whole tiny pipeline; tests that change it work on a copy."""
    runs = tmp_path_factory.mktemp("runs")
    done = pipeline(runs, "dog", *TINY)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    return runs / "pipeline" / "dog"


def test_whole_pipeline_writes_the_layout_and_record(experiment):
    assert sorted(p.name for p in experiment.iterdir()) == sorted([*STAGE_FOLDERS, "logs", "pipeline.json"])
    for name in ("demos.npz", "summary.json", "metrics.json"):
        assert (experiment / "collect" / name).is_file()
    for kind in ("lstm", "mlp"):
        for name in ("best.pt", "final.pt", "losses.csv", "losses.png", "closed_loop.json"):
            assert (experiment / "imitate" / kind / name).is_file()
    assert (experiment / "finetune" / "run" / "model.zip").is_file()
    final = experiment / "final_model"
    for name in ("policy.onnx", "policy.pt", "policy.json", "runtime.py", "model.zip", "vecnormalize.pkl",
                 "metadata.json", "README.md", "SUMMARY.md"):
        assert (final / name).is_file(), name
    state = record(experiment)
    assert list(state["stages"]) == ["collect", "imitate", "finetune", "package"]
    for stage, rec in state["stages"].items():
        assert rec["status"] == "done" and rec["duration_s"] > 0 and rec["started"] <= rec["ended"], stage
        assert (experiment / "logs" / f"{stage}.log").read_text().startswith(f"== {stage}: started")
    collect = state["stages"]["collect"]["metrics"]
    assert set(collect["per_behaviour"]) == {"trot_forward", "stand"}
    assert collect["samples"] == sum(b["samples"] for b in collect["per_behaviour"].values()) > 0
    for kind in ("lstm", "mlp"):
        imitate = state["stages"]["imitate"]["metrics"][kind]
        assert imitate["kind"] == kind and imitate["epochs"] == 3 and imitate["val_episodes"] >= 1
        assert set(imitate["closed_loop"]) == {"trot_forward", "stand", "mean"}
        assert 0.0 <= imitate["closed_loop"]["stand"]["survival"] <= 1.0
        assert imitate["closed_loop"]["stand"]["joint_rms"] >= 0.0
    finetune = state["stages"]["finetune"]["metrics"]
    assert finetune["steps"] == 2048 and finetune["algorithm"] == "ppo" and finetune["first_stage"]["steps"] == 1024
    assert "mean_return" in finetune["clone_return_start"]["deterministic"]  # the clone measured as loaded
    assert "mean_return" in finetune["clone_return_after_reset"]["deterministic"]  # then its output layer reset
    # the recipe's two stages: the first (turning, open ground) starts from the cloned MLP, the arena from it
    first = (experiment / "finetune" / "run" / "first" / "config.yaml").read_text()
    assert str((experiment / "imitate" / "mlp" / "best.pt").resolve()) in first  # started from the cloned MLP
    main_config = (experiment / "finetune" / "run" / "config.yaml").read_text()
    assert "obstacle_map" in main_config and "first.yaml" in main_config and "bc_policy: null" in main_config
    assert "symmetry: true" in first and "action_scale: 0.6" in first  # the recipe's actor and scale
    assert "reset_action_net: true" in first and "obs_statistics: read" in first  # the pipeline's start defaults
    # the height camera in both stages, at its own scale; the arena stage's falls cost twice the recipe's
    # (finetune.fall_cost)
    for config in (first, main_config):
        camera = yaml.safe_load(config)["task"]["sensors"]["camera"]
        assert camera["depth"] == "height" and camera["noise_std"] == 0.0, camera
        assert yaml.safe_load(config)["ppo"]["fixed_scales"] == ["camera"]
    norm = read_normalization(experiment / "finetune" / "run" / "vecnormalize.pkl")
    layout = json.loads((experiment / "finetune" / "run" / "meta.json").read_text())["obs_layout"]
    (start, size), = [(int(s), int(k)) for n, s, k in layout if n == "camera"]
    np.testing.assert_allclose(norm.obs_rms.mean[start:start + size], 0.0)  # pinned through both stages
    np.testing.assert_allclose(norm.obs_rms.var[start:start + size], 0.05 ** 2)
    # the arena stage alone caps the action std (finetune.action_std_cap); both stages run the 2 s episodes that
    # finetune.task.episode_seconds asks here, over the arena stage's own finetune.episode_seconds
    arena, turn = yaml.safe_load(main_config), yaml.safe_load(first)
    assert arena["ppo"]["action_std_cap"] == [0.3, 0.05] and turn["ppo"]["action_std_cap"] is None
    assert arena["task"]["episode_seconds"] == turn["task"]["episode_seconds"] == 2.0
    assert re.search(r"termination:\n\s*weight: -40.0", first) and re.search(r"termination:\n\s*weight: -80.0",
                                                                          main_config)
    package = state["stages"]["package"]["metrics"]
    assert package["onnx_parity_max_abs_diff"] <= package["parity_tolerance"]
    assert package["torchscript_parity_max_abs_diff"] <= package["parity_tolerance"]
    summary = (final / "SUMMARY.md").read_text()
    assert all(f"## {stage}" in summary for stage in state["stages"]) and "closed_loop" in summary
    meta = json.loads((final / "metadata.json").read_text())
    assert len(meta["joint_order"]) == len(meta["servo_limits"]) == 12 and meta["control_rate_hz"] == 50.0
    assert "joint_pos" in {s["name"] for s in meta["sensors"]}
    assert "PolicyRuntime" in (final / "README.md").read_text()


def test_the_arena_stage_alone_runs_longer_episodes_under_a_capped_action_std():
    """By default the arena stage runs 30 s episodes (the first stage the recipe's 20) with the action std capped
    from 0.3 to 0.05; `finetune.task.episode_seconds` sets both stages' and wins over finetune.episode_seconds."""
    from legkit.pipeline.config import FIRST_RECIPE, RECIPE, TASK, first_sets, resolve, train_sets
    from legkit.train.config import build_config, recipe_file

    def stages(*sets):
        cfg = resolve(None, list(sets))
        return (build_config(TASK, str(recipe_file(RECIPE)), train_sets(cfg)),
                build_config(TASK, str(recipe_file(FIRST_RECIPE)), first_sets(cfg, Path("c.pt"), Path("d.npz"))))

    arena, turn = stages()
    assert arena.task.episode_seconds == 30.0 and arena.ppo.action_std_cap == (0.3, 0.05)
    assert turn.task.episode_seconds == 20.0 and turn.ppo.action_std_cap is None
    # its best model: the fastest that keeps 95% of its robots up (the first stage's: the recipe's, by survival)
    assert (arena.run.best_by, arena.run.best_min_survival) == ("speed", 0.95)
    assert (turn.run.best_by, turn.run.best_min_survival) == ("survival", 0.0)
    arena, turn = stages("finetune.episode_seconds=25", "finetune.action_std_cap=null")
    assert arena.task.episode_seconds == 25.0 and arena.ppo.action_std_cap is None
    arena, turn = stages("finetune.task.episode_seconds=12")
    assert arena.task.episode_seconds == turn.task.episode_seconds == 12.0


def test_packaged_onnx_gives_the_trained_models_actions(experiment):
    """final_model/policy.onnx, on the demonstrations' observations, acts as final_model/model.zip (PPO: the
    recipe's symmetric asymmetric actor fine-tuned from the cloned MLP) with vecnormalize.pkl."""
    import onnxruntime as ort

    from legkit.train.trainer import load_model

    final = experiment / "final_model"
    spec = json.loads((final / "policy.json").read_text())
    algorithm = json.loads((experiment / "finetune" / "run" / "meta.json").read_text())["algorithm"]
    assert algorithm == "ppo" and not spec.get("recurrent")
    model, norm = load_model(final / "model.zip", algorithm=algorithm), read_normalization(final / "vecnormalize.pkl")
    session = ort.InferenceSession(str(final / "policy.onnx"), providers=["CPUExecutionProvider"])
    obs = np.load(experiment / "collect" / "demos.npz")["obs"][:40]
    want, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
    actor = np.asarray(model.policy.actor_indices)  # the graph takes the actor's terms alone, in order
    assert spec["observation"]["size"] == len(actor) < obs.shape[1]
    got = session.run(None, {"obs": obs[:, actor].astype(np.float32)})[0]
    assert np.abs(got - np.clip(want, -1, 1)).max() < 1e-5 and np.abs(want).max() > 0.01


def test_rerun_keeps_finished_stages(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    before, stages = snapshot(*(folder / s for s in STAGE_FOLDERS)), record(folder)["stages"]
    again = pipeline(tmp_path, "dog")  # the saved settings: nothing to do
    assert again.returncode == 0, again.stderr
    for stage in stages:
        assert f"{stage}: done" in again.stdout and "kept" in again.stdout
    assert snapshot(*(folder / s for s in STAGE_FOLDERS)) == before
    assert record(folder)["stages"] == stages


def test_a_setting_added_since_an_experiment_ran_counts_as_its_default(experiment, tmp_path):
    """An experiment recorded before finetune.added_units existed reruns with nothing to do; asking for another
    value than the default it ran at is a change that needs --from."""
    folder = copy_experiment(experiment, tmp_path)
    state = record(folder)
    for section in (state["config"]["finetune"], state["stages"]["finetune"]["config"]):
        del section["added_units"]
    (folder / "pipeline.json").write_text(json.dumps(state))
    again = pipeline(tmp_path, "dog")
    assert again.returncode == 0 and "finetune: done" in again.stdout, again.stderr
    changed = pipeline(tmp_path, "dog", "--set", "finetune.added_units=8")
    assert changed.returncode == 2 and "finetune.added_units: 0 -> 8" in changed.stderr, changed.stderr


def test_an_experiment_recorded_before_the_height_camera_ran_with_the_range_camera(experiment, tmp_path):
    """finetune.camera_depth, fall_cost, camera_scale, episode_seconds, action_std_cap, best_by and
    best_min_survival came in with new defaults ("height", -80, "fixed", 30 s, a cap from 0.3 to 0.05, speed over
    95% survival); experiments recorded before them saw ranges by running statistics, paid -40 for a fall, ran 20 s
    episodes, explored uncapped and kept the best model by survival, so resuming one as it was needs them set so,
    and the new defaults are a change (--from)."""
    folder = copy_experiment(experiment, tmp_path)
    state = record(folder)
    assert state["config"]["finetune"]["camera_depth"] == "height"
    assert "depth: height" in (folder / "finetune" / "run" / "config.yaml").read_text()
    for section in (state["config"]["finetune"], state["stages"]["finetune"]["config"]):
        for key in ("camera_depth", "fall_cost", "camera_scale", "episode_seconds", "action_std_cap", "best_by",
                    "best_min_survival"):
            del section[key]
    (folder / "pipeline.json").write_text(json.dumps(state))
    changed = pipeline(tmp_path, "dog")
    assert changed.returncode == 2 and "finetune.camera_depth: range -> height" in changed.stderr, changed.stderr
    assert "finetune.fall_cost: -40.0 -> -80.0" in changed.stderr
    assert "finetune.camera_scale: running -> fixed" in changed.stderr
    assert "finetune.episode_seconds: 20.0 -> 30.0" in changed.stderr
    assert "finetune.action_std_cap: (unset) -> [0.3, 0.05]" in changed.stderr
    assert "finetune.best_by: survival -> speed" in changed.stderr
    same = pipeline(tmp_path, "dog", "--set", "finetune.camera_depth=range", "--set", "finetune.fall_cost=-40",
                    "--set", "finetune.camera_scale=running", "--set", "finetune.episode_seconds=20",
                    "--set", "finetune.best_by=survival", "--set", "finetune.best_min_survival=0",
                    "--set", "finetune.action_std_cap=null")
    assert same.returncode == 0 and "finetune: done" in same.stdout, same.stderr


@pytest.mark.parametrize("args, says", [
    (["--set", "imitate.epoch=5"], "valid keys of imitate: imitate.kinds, imitate.epochs"),
    (["--set", "imitate.kinds=[gru]"], "imitate.kinds = ['gru']: must be a list of distinct kinds from mlp, lstm"),
    (["--set", "imitate.kinds=[lstm]"], "imitate.kinds = ['lstm']: must be a list holding mlp"),
    (["--set", "finetune.turn_steps=-1"], "invalid finetune.turn_steps = -1: must be >= 0"),
    (["--set", "finetune.bc_coef=0.5"], "--set finetune.bc_coef: the behaviour-cloning term is off"),
    (["--set", "finetune.log_std=x"], "finetune.log_std' must be a number"),
    (["--set", "finetune.added_units=-1"], "invalid finetune.added_units = -1: must be >= 0"),
    (["--set", "finetune.camera_depth=rgb"],
     "invalid finetune.camera_depth = 'rgb': must be one of range, planar, height"),
    (["--set", "finetune.camera_noise=-0.01"], "invalid finetune.camera_noise = -0.01: must be >= 0 (m"),
    (["--set", "finetune.camera_scale=auto"], "invalid finetune.camera_scale = 'auto': must be fixed or running"),
    (["--set", "finetune.episode_seconds=0"], "invalid finetune.episode_seconds = 0.0: must be > 0 (s)"),
    (["--set", "finetune.best_by=fastest"], "invalid finetune.best_by = 'fastest': must be one of return, survival"),
    (["--set", "finetune.best_min_survival=2"], "invalid finetune.best_min_survival = 2.0: must be a number from 0"),
    (["--set", "finetune.action_std_cap=[0.3,0]"],
     "invalid finetune.action_std_cap = [0.3, 0.0]: must be [start, end], both > 0 (or null: no cap)"),
    (["--set", "finetune.ppo.net_arch=[64]"], "the pipeline sets ppo.net_arch from the cloned policy"),
    (["--set", "finetune.finetune.reset_action_net=false"], "valid keys of finetune"),
    (["--set", "finetune.obs_statistics=moving"], "finetune.obs_statistics"),
    (["--set", "finetune.reset_action_net=maybe"], "finetune.reset_action_net"),
    (["--set", "imitate.epochs=many"], "imitate.epochs' must be an integer"),
    (["--set", "collect.behaviours=[trot_forward,fly]"], "collect.behaviours"),
    (["--set", "collect.action_noise=-0.01"], "invalid collect.action_noise = -0.01: must be >= 0 (rad)"),
    (["--set", "finetune.best_episodes=0"], "invalid finetune.best_episodes = 0: must be >= 1"),
    (["--set", "package.checkpoint=best"], "package.checkpoint = 'best': must be final when finetune.best_every (0)"),
    (["--set", "train.steps=5"], "one of collect, imitate, finetune, package"),
    (["--set", "finetune.ppo.learning_rat=0.1"], "learning_rat"),
    (["--set", "collect.seconds_per_behaviour=3"], "add --from collect"),
    (["--set", "imitate.epochs=4"], "add --from imitate"),
    (["--set", "finetune.task.decimation=2"], "recorded at control_dt 0.02 (s), the task's is 0.01"),
    (["--from", "finetune", "--set", "finetune.task.observation_blind=[camera]"],
     "blind to camera: an ablation, which the package stage cannot export for the robot (its runtime would feed "
     "real readings); add --to finetune"),
    (["--from", "package", "--to", "imitate"], "--to imitate comes before --from package: nothing would run"),
    (["--only", "finetune", "--to", "finetune"], "--only and --to cannot go together"),
])
def test_bad_input_is_one_line_and_changes_nothing(experiment, tmp_path, capsys, args, says):
    folder = copy_experiment(experiment, tmp_path)
    before = snapshot(folder)
    assert main(["pipeline", "pidog", "--name", "dog", "--runs", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("legkit: error: ") and says in err[0], err
    assert snapshot(folder) == before


@pytest.mark.parametrize("args, says", [
    (["--from", "colect"], "invalid choice: 'colect' (choose from 'collect', 'imitate', 'finetune', 'package')"),
    (["--only", "fine"], "invalid choice: 'fine'"),
    (["--from", "imitate", "--only", "imitate"], "not allowed with argument"),
])
def test_bad_stage_names_list_the_stages(tmp_path, capsys, args, says):
    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", "pidog", "--name", "dog", "--runs", str(tmp_path), *args])
    assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "pipeline").exists()


def test_new_experiment_refuses_only_a_later_stage_and_bad_names(tmp_path, capsys):
    assert main(["pipeline", "pidog", "--name", "new", "--runs", str(tmp_path), "--only", "imitate"]) == 2
    assert "--only imitate needs the stages before it done; collect is not" in capsys.readouterr().err
    assert main(["pipeline", "pidog", "--name", "../up", "--runs", str(tmp_path)]) == 2
    assert "--name '../up'" in capsys.readouterr().err
    assert not (tmp_path / "pipeline").exists() and not (tmp_path / "up").exists()


def test_only_redoes_one_stage_and_later_ones_run_next_time(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    collect = snapshot(folder / "collect")
    old_package = (folder / "final_model" / "policy.onnx").stat().st_mtime_ns
    only = pipeline(tmp_path, "dog", "--only", "imitate", "--set", "imitate.epochs=2", "--set", "imitate.kinds=[mlp]")
    assert only.returncode == 0, only.stderr
    state = record(folder)["stages"]
    assert state["imitate"]["status"] == "done" and list(state["imitate"]["metrics"]) == ["mlp"]
    assert state["imitate"]["metrics"]["mlp"]["epochs"] == 2
    assert state["finetune"]["status"] == state["package"]["status"] == "stale"
    assert snapshot(folder / "collect") == collect  # kept as it was
    assert (folder / "final_model" / "policy.onnx").stat().st_mtime_ns == old_package  # stale, not deleted
    later = pipeline(tmp_path, "dog")  # the next plain run redoes what was built on the old imitation
    assert later.returncode == 0, later.stderr
    state = record(folder)["stages"]
    assert all(rec["status"] == "done" for rec in state.values())
    assert "collect: done" in later.stdout and "imitate: done" in later.stdout
    assert "== finetune: started" in later.stdout and "== package: started" in later.stdout
    assert (folder / "final_model" / "policy.onnx").stat().st_mtime_ns != old_package
    assert not [p for p in folder.iterdir() if p.name.endswith((".partial", ".old"))]


def test_from_redoes_a_stage_and_the_ones_after_it(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    kept = snapshot(*(folder / s for s in ("collect", "imitate", "finetune")))
    redo = pipeline(tmp_path, "dog", "--from", "package", "--set", "package.parity_samples=100")
    assert redo.returncode == 0, redo.stderr
    assert snapshot(*(folder / s for s in ("collect", "imitate", "finetune"))) == kept
    package = record(folder)["stages"]["package"]
    assert package["status"] == "done" and package["metrics"]["parity_observations"] == 100
    assert (folder / "logs" / "package.log").read_text().count("== package: started") == 2


def test_to_stops_after_a_stage_so_a_blind_ablation_runs_unpackaged(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    old_package = snapshot(folder / "final_model")
    blind = pipeline(tmp_path, "dog", "--from", "finetune", "--to", "finetune",
                     "--set", "finetune.task.observation_blind=[camera]")
    assert blind.returncode == 0, blind.stderr
    assert "== finetune: started" in blind.stdout and "== package" not in blind.stdout
    state = record(folder)["stages"]
    assert state["finetune"]["status"] == "done" and state["package"]["status"] == "stale"
    run_config = (folder / "finetune" / "run" / "config.yaml").read_text()
    assert re.search(r"observation_blind:\n\s*- camera", run_config)  # the ablation was trained blind
    assert snapshot(folder / "final_model") == old_package  # stale, not deleted
    again = pipeline(tmp_path, "dog")  # packaging it is refused before anything runs
    assert again.returncode == 2 and "add --to finetune" in again.stderr
    assert record(folder)["stages"]["package"]["status"] == "stale"


def wait_for(pattern: str, path: Path, proc: subprocess.Popen, timeout: float = 120) -> re.Match:
    """The first match of `pattern` in the file at `path`, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text()) if path.exists() else None
        if found:
            return found
        assert proc.poll() is None, f"the pipeline ended ({proc.returncode}) before {pattern!r} was logged"
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} did not appear in {path} within {timeout} s")


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def start(runs: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(LEGKIT), "pipeline", "pidog", "--name", name, "--runs", str(runs), *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def test_kill_during_imitation_resumes_from_its_epoch_checkpoint(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    args = ["--only", "imitate", "--set", "imitate.epochs=300", "--set", "imitate.patience=0",
            "--set", "imitate.eval_robots=0", "--set", "imitate.kinds=[mlp]"]
    proc = start(tmp_path, "dog", *args)
    log = folder / "logs" / "imitate.log"
    seen = int(wait_for(r"mlp epoch (2\d)/300", log, proc).group(1))
    kill_group(proc)
    killed = record(folder)["stages"]["imitate"]
    assert killed["status"] == "running" and (folder / "imitate.partial" / "mlp" / "checkpoint.pt").is_file()
    again = pipeline(tmp_path, "dog", *args)  # the same command again
    assert again.returncode == 0, again.stderr
    resumed = int(re.search(r"mlp: resuming behaviour cloning after epoch (\d+)", log.read_text()).group(1))
    # an epoch is logged before its checkpoint is written, so the kill may land between the two
    assert resumed >= seen - 1
    assert f"mlp epoch {resumed + 1}/300" in again.stdout and f"mlp epoch {resumed}/300" not in again.stdout
    with open(folder / "imitate" / "mlp" / "losses.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, 301))
    rec = record(folder)["stages"]["imitate"]
    assert rec["status"] == "done" and [a["outcome"] for a in rec["attempts"]] == ["died", "done"]
    assert rec["attempts"][1]["mode"] == "resume"


def test_kill_during_finetuning_resumes_from_its_checkpoint(experiment, tmp_path):
    folder = copy_experiment(experiment, tmp_path)
    args = ["--only", "finetune", "--set", "finetune.steps=8192"]
    proc = start(tmp_path, "dog", *args)
    checkpoints = folder / "finetune.partial" / "run" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints / "step_000002048").is_dir():
        assert proc.poll() is None and time.monotonic() < deadline, "no second checkpoint of the fine-tuning"
        time.sleep(0.05)
    kill_group(proc)
    again = pipeline(tmp_path, "dog", *args)
    assert again.returncode == 0, again.stderr
    assert re.search(r"resuming .*finetune.partial/run from step_0000\d+ \(\d+ steps\)", again.stdout)
    meta = json.loads((folder / "finetune" / "run" / "meta.json").read_text())
    assert meta["step"] == 8192 and len(meta["resumes"]) == 1
    rec = record(folder)["stages"]["finetune"]
    assert rec["status"] == "done" and rec["metrics"]["resumes"] == 1
    assert record(folder)["stages"]["package"]["status"] == "stale"


def test_kill_during_collection_keeps_the_finished_behaviours(tmp_path):
    args = ["--only", "collect", "--set", "collect.behaviours=[stand,sit,trot_forward]",
            "--set", "collect.seconds_per_behaviour=40", "--set", "collect.episode_seconds=10"]
    proc = start(tmp_path, "dog", *args)
    folder = tmp_path / "pipeline" / "dog"
    wait_for(r"behaviour 1/3 stand: \d+ episodes kept", folder / "logs" / "collect.log", proc)
    kill_group(proc)
    assert (folder / "collect.partial" / "parts" / "stand.npz").is_file()
    again = pipeline(tmp_path, "dog", *args)
    assert again.returncode == 0, again.stderr
    assert "behaviour 1/3 stand: kept from the previous attempt" in again.stdout
    metrics = record(folder)["stages"]["collect"]["metrics"]
    assert list(metrics["per_behaviour"]) == ["stand", "sit", "trot_forward"]
    assert not (folder / "collect" / "parts").exists()


def test_a_failing_stage_stops_the_pipeline_with_its_error(tmp_path):
    one_episode = ["--set", "collect.behaviours=[stand]", "--set", "collect.seconds_per_behaviour=1",
                   "--set", "collect.episode_seconds=1"]
    failed = pipeline(tmp_path, "dog", *one_episode)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith(
        "legkit: stage imitate failed: behaviour cloning validates on whole episodes and needs at least 2")
    folder = tmp_path / "pipeline" / "dog"
    stages = record(folder)["stages"]
    assert stages["collect"]["status"] == "done" and stages["imitate"]["status"] == "failed"
    assert "needs at least 2" in stages["imitate"]["error"] and "finetune" not in stages
    assert "needs at least 2" in (folder / "logs" / "imitate.log").read_text()
    assert (folder / "collect" / "demos.npz").is_file() and not (folder / "imitate").exists()


def test_bc_resumed_from_its_checkpoint_ends_as_an_unbroken_training(experiment, tmp_path):
    import torch

    from legkit.imitate.bc import load_bc, train_bc
    from legkit.imitate.demos import load_demos

    demos = load_demos(experiment / "collect" / "demos.npz")
    train_bc(demos, "lstm", out=tmp_path / "whole", epochs=4, patience=0, resume=True)
    train_bc(demos, "lstm", out=tmp_path / "cut", epochs=2, patience=0, resume=True)
    resumed = train_bc(demos, "lstm", out=tmp_path / "cut", epochs=4, patience=0, resume=True)
    assert len(resumed.train_losses) == 4
    a, b = (load_bc(tmp_path / run / "final.pt").net.state_dict() for run in ("whole", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
