"""finetune.first: one `legkit train` trains a first stage in RUN/first/ and starts the run from its model.

Real MuJoCo and SB3 on go2-walk, tiny settings (8 robots, 256-step rollouts, a checkpoint per rollout): the run
and its first stage are ordinary run folders, the main stage starts from the first stage's weights, a kill in
the first stage is resumed from its checkpoint (by --resume and by --supervise), a finished first stage is never
trained again, and every refusal is one line before any folder is made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3 import PPO

from cli_helpers import one_error_line, snapshot
from legkit.cli import main
from legkit.config import deep_merge
from legkit.train.checkpoints import listed, step_of
from legkit.train.trainer import read_normalization

SMALL = {"ppo": {"n_steps": 32, "batch_size": 128, "net_arch": [16]},
         "run": {"num_envs": 8, "checkpoint_every": 256, "eval_episodes": 1, "best_every": 0, "video_every": 0,
                 "torch_threads": 1, "nthread": 1}}
FIRST = {"task": {"episode_seconds": 1, "commands": {"lin_vel_x": [0.0, 0.0]}},
         **SMALL, "run": {**SMALL["run"], "total_steps": 768}}
"""The first stage: standing still (no forward command), 768 steps: checkpoints at 256, 512 and 768."""
MAIN = {"task": {"episode_seconds": 1}, **SMALL, "run": {**SMALL["run"], "total_steps": 768},
        "finetune": {"first": "first.yaml"}}
"""The main stage: walking, starting from the first stage; first.yaml is read from this file's folder."""


def _write(folder: Path, name: str, tree: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(tree))
    return folder / name


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    """main.yaml and first.yaml in a folder of their own (not the current directory)."""
    folder = tmp_path_factory.mktemp("stage-configs")
    _write(folder, "first.yaml", FIRST)
    return _write(folder, "main.yaml", MAIN)


@pytest.fixture(scope="module")
def two_stage(configs, tmp_path_factory) -> Path:
    """A two-stage run whose main stage (only) has --steps 512 and a learning rate too small to move its weights."""
    runs = tmp_path_factory.mktemp("stage-runs")
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(runs), "--seed", "5", "--steps", "512",
                 "--set", "ppo.learning_rate=1e-9", "--no-progress"]) == 0
    (run,) = list(runs.iterdir())
    return run


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in PPO.load(str(path), device="cpu").policy.state_dict().items()}


def test_one_command_trains_the_first_stage_then_the_run_from_its_model(two_stage, tmp_path):
    run, first = two_stage, two_stage / "first"
    # RUN/first is an ordinary, finished run: its own file's settings, the run's seed; --steps and --set not applied
    cfg = yaml.safe_load((first / "config.yaml").read_text())
    assert cfg["run"]["total_steps"] == 768 and cfg["run"]["seed"] == 5 and cfg["ppo"]["learning_rate"] == 5e-4
    assert cfg["task"]["commands"]["lin_vel_x"] == [0.0, 0.0] and cfg["finetune"]["first"] is None
    assert [step_of(c) for c in listed(first / "checkpoints")] == [256, 512, 768]
    assert json.loads((first / "meta.json").read_text())["finished"] is True
    assert (first / "model.zip").exists() and (first / "eval.json").exists()

    # RUN's config records finetune.first as given; meta.json says where the start came from
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["finetune"]["first"] == "first.yaml" and cfg["run"]["total_steps"] == 512
    meta = json.loads((run / "meta.json").read_text())
    assert meta["started_from"] == {"first": "first.yaml", "run": str(first.resolve()), "checkpoint": "final",
                                    "step": 768, "unblinded": [], "blinded": []}
    assert meta["step"] == 512 and meta["finished"] is True and meta["seed"] == 5

    # the main stage started from the first stage's weights (its own learning rate barely moves them) and statistics
    ours, theirs = _weights(run / "model.zip"), _weights(first / "model.zip")
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, err_msg=name)
    fresh = _weights(next(iter(listed(first / "checkpoints"))) / "model.zip")  # the first stage did learn
    assert any(np.abs(fresh[k] - theirs[k]).max() > 1e-4 for k in theirs)
    ours_n, theirs_n = (read_normalization(p / "vecnormalize.pkl") for p in (run, first))
    assert ours_n.obs_rms.count > theirs_n.obs_rms.count  # continued from the first stage's count

    # the run's model is the main stage's: eval, video and export use it as any run's
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    result = json.loads((run / "eval-final.json").read_text())
    assert result["policy"] == str(run) and result["checkpoint"] == "final" and result["step"] == 512
    assert main(["video", str(run), "--seconds", "0.5", "--width", "160", "--height", "120",
                 "--out", str(tmp_path / "v.mp4")]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0


def test_a_kill_in_the_first_stage_is_resumed_from_its_checkpoint(configs, tmp_path, monkeypatch, capfd):
    runs = tmp_path / "runs"
    # a real kill -9 of the training process at step 600 of the first stage, after its checkpoint at 512
    monkeypatch.setenv("LEGKIT_TEST_CRASH_AT", "600")
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(runs), "--no-progress",
                 "--supervise", "--max-restarts", "0"]) == 2
    monkeypatch.delenv("LEGKIT_TEST_CRASH_AT")
    (run,) = list(runs.iterdir())
    assert f"continue with legkit train --resume {run} --supervise" in capfd.readouterr().err  # RUN, not RUN/first
    assert [step_of(c) for c in listed(run / "first" / "checkpoints")] == [256, 512]
    assert not (run / "first" / "model.zip").exists() and not (run / "meta.json").exists()

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    out = capfd.readouterr().out
    assert "resuming" in out and "from step_000000512 (512 steps)" in out
    meta = json.loads((run / "first" / "meta.json").read_text())
    assert meta["finished"] is True and meta["step"] == 768
    assert [r["step"] for r in meta["resumes"]] == [512]
    assert [step_of(c) for c in listed(run / "first" / "checkpoints")] == [256, 512, 768]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["finished"] is True and meta["step"] == 768 and meta["started_from"]["step"] == 768
    assert "resumes" not in meta  # the main stage began once, from the finished first stage

    # killed in the main stage: it resumes as any run, and the finished first stage is not touched
    first_before = snapshot(run / "first")
    assert main(["train", "--resume", str(run), "--steps", "1024", "--no-progress"]) == 0
    assert snapshot(run / "first") == first_before
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] == 1024 and [r["step"] for r in meta["resumes"]] == [768]


def test_a_first_stage_cut_before_its_final_model_is_finished_without_training(two_stage, tmp_path):
    """A kill between the last checkpoint and the final model: the resume writes the final model from it."""
    run = shutil.copytree(two_stage, tmp_path / "run")
    for name in ("model.zip", "vecnormalize.pkl", "meta.json", "eval.json", "episodes.csv"):
        (run / name).unlink()
    for name in ("checkpoints", "tb"):
        shutil.rmtree(run / name)
    for name in ("model.zip", "vecnormalize.pkl", "eval.json"):
        (run / "first" / name).unlink()
    last = _weights(run / "first" / "checkpoints" / "step_000000768" / "model.zip")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    meta = json.loads((run / "first" / "meta.json").read_text())
    assert meta["resumes"][-1]["step"] == 768 and meta["step"] == 768 and meta["finished"] is True
    final = _weights(run / "first" / "model.zip")
    assert all(np.array_equal(final[k], last[k]) for k in last) and (run / "first" / "eval.json").exists()
    assert json.loads((run / "meta.json").read_text())["started_from"]["step"] == 768


def test_a_first_stage_cut_before_its_first_checkpoint_starts_again(two_stage, tmp_path):
    run = tmp_path / "run"
    (run / "first").mkdir(parents=True)  # what a kill right after the run was laid out leaves
    for name in ("config.yaml", "first/config.yaml"):
        shutil.copy(two_stage / name, run / name)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    meta = json.loads((run / "first" / "meta.json").read_text())
    assert meta["finished"] is True and meta["step"] == 768 and "resumes" not in meta
    assert json.loads((run / "meta.json").read_text())["started_from"]["step"] == 768


def test_supervised_crashes_in_both_stages_are_survived(configs, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("LEGKIT_TEST_CRASH_AT", "600")  # each stage's first process dies at step 600
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(runs), "--no-progress",
                 "--supervise"]) == 0
    (run,) = list(runs.iterdir())
    for folder in (run / "first", run):
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["finished"] is True and meta["step"] == 768
        assert [r["step"] for r in meta["restarts"]] == [512], folder
    assert json.loads((run / "meta.json").read_text())["started_from"]["run"] == str((run / "first").resolve())


def test_seeds_each_train_their_own_first_stage(configs, tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(runs), "--seeds", "3",
                 "--steps", "256", "--set", "run.eval_episodes=0", "--no-progress"]) == 0
    (parent,) = list(runs.iterdir())
    run = parent / "seed-3"
    assert yaml.safe_load((run / "first" / "config.yaml").read_text())["run"]["seed"] == 3
    assert (run / "first" / "model.zip").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seed"] == 3 and meta["step"] == 256 and meta["started_from"]["step"] == 768


# -- refusals: one line, exit 2, no folder ------------------------------------------------------------

REFUSED = {
    "missing file": ({}, {"finetune": {"first": "nope.yaml"}}, "finetune.first 'nope.yaml': no file"),
    "unknown key": ({"ppo": {"n_stepz": 3}}, {}, "n_stepz"),
    "another task": ({"task_name": "pidog-run"}, {}, "config names task 'pidog-run'"),
    "a first stage of its own": ({"finetune": {"first": "first.yaml"}}, {}, "names a first stage itself"),
    "with from_run": ({}, {"finetune": {"first": "first.yaml", "from_run": "runs/x"}},
                      "finetune.first and finetune.from_run both name where the network starts"),
    "with bc_policy": ({}, {"finetune": {"first": "first.yaml", "bc_policy": "bc.pt"}},
                       "finetune.first and finetune.bc_policy both name where the network starts"),
    "network": ({"ppo": {"net_arch": [32]}}, {}, "was trained with ppo.net_arch = [32] but this run has [16]"),
    "algorithm": ({"ppo": {"algorithm": "recurrent_ppo"}}, {}, "is a recurrent_ppo model but this run's "
                                                                "ppo.algorithm is ppo"),
    "observations": ({"task": {"observations": ["base_ang_vel", "projected_gravity", "command", "joint_pos",
                                                "joint_vel", "last_action"]}}, {},
                     "does not take this run's observations"),
}


@pytest.mark.parametrize("first_change, main_change, message", REFUSED.values(), ids=REFUSED.keys())
def test_a_first_stage_that_cannot_be_is_one_line_before_any_folder(tmp_path, capfd, first_change, main_change,
                                                                    message):
    _write(tmp_path, "first.yaml", deep_merge(FIRST, first_change))
    config = _write(tmp_path, "main.yaml", deep_merge(MAIN, main_change))
    runs = tmp_path / "runs"
    capfd.readouterr()
    assert main(["train", "go2-walk", "--config", str(config), "--runs", str(runs), "--no-progress"]) == 2
    line = one_error_line(capfd.readouterr().err)
    assert message in line and "finetune." in line, line
    assert not runs.exists()


def test_a_relative_path_set_on_the_command_line_is_read_from_the_current_directory(configs, tmp_path, capfd,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # main.yaml's folder has first.yaml; the current directory does not
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(tmp_path / "runs"),
                 "--set", "finetune.first=first.yaml", "--no-progress"]) == 2
    assert "finetune.first 'first.yaml': no file first.yaml" in one_error_line(capfd.readouterr().err)
    assert main(["train", "go2-walk", "--config", str(configs), "--runs", str(tmp_path / "runs"),
                 "--seeds", "0,1", "--set", "finetune.first=first.yaml"]) == 2
    assert "finetune.first 'first.yaml': no file" in one_error_line(capfd.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_a_resume_cannot_change_or_drop_the_first_stage(two_stage, tmp_path, capfd):
    run = shutil.copytree(two_stage, tmp_path / "run")
    before = snapshot(run)
    capfd.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "1024", "--set", "finetune.first=null"]) == 2
    assert "--set finetune.first cannot change on resume" in one_error_line(capfd.readouterr().err)
    assert snapshot(run) == before


def test_the_pidog_recipe_names_a_first_stage_that_fits():
    from legkit.train.config import build_config, recipe_file
    from legkit.train.stages import first_config

    recipe = recipe_file("pidog-arena")  # packaged: the pipeline's fine-tuning runs it
    cfg = build_config("pidog-run", str(recipe))
    first = first_config(cfg, str(recipe), [])
    assert cfg.finetune.first == "pidog-turn.yaml" and first.task.commands.lin_vel_x == (0.0, 0.0)
    assert first.run.total_steps == 3_000_000 and first.task.arena.enabled is False


def test_the_trainer_alone_refuses_a_first_stage_it_would_skip(tmp_path):
    from legkit import LegkitError
    from legkit.train.config import build_config
    from legkit.train.trainer import train

    cfg = build_config("go2-walk", sets=["finetune.first=first.yaml"])
    with pytest.raises(LegkitError, match="asks for a first stage"):
        train(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_go2_joystick_recipe_starts_from_the_shipped_base_or_a_first_stage_that_fits(tmp_path):
    """docs/recipes/go2-joystick-slow.yaml fine-tunes pretrained:go2-joystick-base (the model really loads and
    trains), and its documented alternative, the base trained first from go2-joystick-base.yaml, fits it too."""
    from legkit.train.config import build_config
    from legkit.train.stages import check_stage, first_config

    recipe = Path(__file__).parents[1] / "docs" / "recipes" / "go2-joystick-slow.yaml"
    runs = tmp_path / "runs"
    assert main(["train", "go2-joystick", "--config", str(recipe), "--steps", "2048", "--envs", "8", "--runs",
                 str(runs), "--no-progress", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
                 "--set", "run.video_every=0", "--set", "run.torch_threads=1", "--set", "ppo.n_steps=64",
                 "--set", "ppo.batch_size=256"]) == 0
    (run,) = list(runs.iterdir())
    meta = json.loads((run / "meta.json").read_text())
    assert Path(meta["started_from"]["run"]).name == "go2-joystick-base" and meta["started_from"]["step"] == 18001920
    sets = ["finetune.from_run=null", f"finetune.first={recipe.parent / 'go2-joystick-base.yaml'}"]
    cfg = build_config("go2-joystick", str(recipe), sets)
    first = first_config(cfg, str(recipe), sets)
    check_stage(first, cfg, "finetune.first")
    assert first.run.total_steps == 18_000_000 and first.task.commands.lin_vel_x == (-1.0, 2.0)
    assert cfg.task.commands.lin_vel_x == (-0.6, 0.6) and cfg.run.total_steps == 4_000_000


def test_legkit_train_go2_joystick_runs_its_recipe_in_two_stages(tmp_path, capsys):
    """`legkit train go2-joystick` without --config runs the packaged recipe configs/recipes/go2-joystick.yaml: the
    task's training (8 M steps over its command curriculum, with base_height at -30 and feet_clearance,
    go2-joystick-base.yaml) in RUN/first/, then 3 M steps over the whole range with more slow draws at the sharper
    kernel from it, the action std capped at 0.15 and its cap falling to 0.01. Trained here with a tiny first stage
    given on the command line; the packaged first stage is checked to fit."""
    from legkit.train.config import build_config, default_recipe, recipe_file
    from legkit.train.stages import check_stage, first_config

    recipe = default_recipe("go2-joystick")
    assert recipe == recipe_file("go2-joystick") and default_recipe("go2-walk") is None
    cfg = build_config("go2-joystick", str(recipe))
    first = first_config(cfg, str(recipe), [])
    check_stage(first, cfg, "finetune.first")
    assert first.run.total_steps == 8_000_000 and first.finetune.first is None
    assert first.task.commands.lin_vel_x == (-1.0, 2.0) and len(first.task.command_curriculum.stages) == 3
    assert first.task.rewards["track_lin_vel"].params["sigma"] == 0.25 and first.ppo.learning_rate == 5e-4
    assert first.task.rewards["base_height"].weight == -30.0 and first.ppo.action_std_cap is None
    assert first.task.rewards["feet_clearance"].params == {"target": 0.08, "min_command": 0.1}
    assert cfg.run.total_steps == 3_000_000 and cfg.task.commands.lin_vel_x == (-1.0, 2.0)
    assert cfg.task.commands.slow_share == 0.3 and cfg.task.rewards["feet_clearance"].params["min_command"] == 0.3
    assert cfg.task.command_curriculum.stages == () and cfg.task.rewards["track_lin_vel"].params["sigma"] == 0.1
    assert cfg.ppo.action_std_cap == (0.15, 0.01)  # its first clamp caps the copied std: no max_action_std needed
    assert cfg.finetune.max_action_std is None

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("run: {total_steps: 1024, num_envs: 8}\nppo: {n_steps: 64, batch_size: 256}\n")
    runs = tmp_path / "runs"
    capsys.readouterr()
    assert main(["train", "go2-joystick", "--set", f"finetune.first={tiny}", "--steps", "1024", "--envs", "8",
                 "--runs", str(runs), "--no-progress", "--set", "run.eval_episodes=0", "--set", "run.best_every=0",
                 "--set", "run.video_every=0", "--set", "run.torch_threads=1", "--set", "ppo.n_steps=64",
                 "--set", "ppo.batch_size=256"]) == 0
    assert f"config: the packaged recipe go2-joystick ({recipe})" in capsys.readouterr().out
    (run,) = list(runs.iterdir())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["task"]["commands"]["slow_share"] == 0.3 and saved["ppo"]["learning_rate"] == 1e-4
    assert saved["ppo"]["action_std_cap"] == [0.15, 0.01]
    first_saved = yaml.safe_load((run / "first" / "config.yaml").read_text())
    assert first_saved["task"]["commands"]["lin_vel_x"] == [-1.0, 2.0] and (run / "first" / "model.zip").is_file()
    assert json.loads((run / "meta.json").read_text())["started_from"]["first"] == str(tiny)


def _training_settings(cfg) -> dict:
    """`cfg`'s task and PPO settings as flat keys, reward parameters completed with their terms' defaults: what
    training reads. Evaluation-only sections (validation, success) are left out."""
    import inspect

    from legkit.config import to_dict
    from legkit.tasks.rewards import REWARDS
    from legkit.train.resume import flatten

    tree = to_dict(cfg)
    for name, term in tree["task"]["rewards"].items():
        fn = REWARDS[name]
        sig = inspect.signature(fn.__call__ if isinstance(fn, type) else fn)
        defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
        term["params"] = {**defaults, **term.get("params", {})}
    for key in ("validation", "success"):
        tree["task"].pop(key)
    return flatten({"task": tree["task"], "ppo": tree["ppo"]})


@pytest.mark.parametrize("name,task,recipe", [
    ("go2-walk", "go2-walk", None),
    ("go2-rough", "go2-rough", None),
    ("go2-residual", "go2-residual", None),
    ("humanoid-stand", "humanoid-stand", None),
    ("go2-joystick-base", "go2-joystick", "docs/recipes/go2-joystick-base.yaml"),
    ("go2-joystick", "go2-joystick", "src/legkit/configs/recipes/go2-joystick.yaml"),  # `legkit train go2-joystick`
])
def test_a_shipped_policy_is_what_its_documented_command_trains_today(name, task, recipe):
    """A default changed since a policy was trained (a reward parameter, a curriculum) must be pinned in the recipe
    that documents how to reproduce it: the recipe's task and PPO settings equal the shipped run's, every reward
    parameter counted at its term's default where a side leaves it out."""
    from legkit.config import from_dict, load_yaml
    from legkit.train.config import Config, build_config, validate
    from legkit.train.runs import pretrained_root

    root = Path(__file__).parents[1]
    shipped = _training_settings(validate(from_dict(Config, load_yaml(str(pretrained_root() / name / "config.yaml")))))
    built = _training_settings(build_config(task, str(root / recipe) if recipe else None))
    differ = {k: (shipped.get(k), built.get(k)) for k in shipped.keys() | built.keys()
              if shipped.get(k) != built.get(k)}
    assert not differ, differ
