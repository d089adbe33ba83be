"""The policy shipped inside legkit loads with plain SB3 and walks under `legkit eval`."""

from __future__ import annotations

import json

import pytest
import yaml
from stable_baselines3 import PPO

from legkit.cli import main
from legkit.train.runs import pretrained_names, resolve_run


def test_go2_walk_is_shipped():
    assert "go2-walk" in pretrained_names()
    folder = resolve_run("pretrained:go2-walk")
    for name in ("model.zip", "vecnormalize.pkl", "config.yaml", "meta.json", "eval.json"):
        assert (folder / name).is_file(), name
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 2_000_000, f"pretrained policy is {size} bytes; ship small files only"
    model = PPO.load(folder / "model.zip", device="cpu")
    assert model.observation_space.shape == (48,) and model.action_space.shape == (12,)


def test_eval_pretrained_walks(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "pretrained:go2-walk", "--episodes", "4", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    # The bar of the walking issue: >= 0.5 m/s forward under a 0.5-1.0 m/s command, no falls.
    assert metrics["mean_forward_velocity"] >= 0.5
    assert metrics["survival_rate"] == 1.0
    assert 0.22 <= metrics["mean_base_height"] <= 0.32


def test_unknown_pretrained_lists_available(capsys):
    assert main(["eval", "pretrained:nope"]) == 2
    err = capsys.readouterr().err
    assert "pretrained" in err and "go2-walk" in err


@pytest.mark.parametrize("spec", ["pretrained:go2-walk"])
def test_pretrained_cannot_be_resumed(spec, capsys):
    assert main(["train", "--resume", spec]) == 2
    assert "cannot be resumed" in capsys.readouterr().err


def test_humanoid_stand_is_shipped_and_stands(tmp_path):
    folder = resolve_run("pretrained:humanoid-stand")
    for name in ("model.zip", "vecnormalize.pkl", "config.yaml", "meta.json", "eval.json", "validate.json"):
        assert (folder / name).is_file(), name
    out = tmp_path / "eval.json"
    assert main(["eval", "pretrained:humanoid-stand", "--episodes", "3", "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    # evaluated at the curriculum's final 1.28 m target: no falls in 15 s, torso within 2 cm of it
    assert metrics["survival_rate"] == 1.0
    assert 1.26 <= metrics["mean_base_height"] <= 1.30


def test_go2_joystick_is_shipped_blind_and_follows_commands(tmp_path):
    """The shipped joystick policy reads only what a Go2 measures (its base velocity is estimated inside the
    actor) and walks the way it is told: forward, slowly forward, backward and sideways, one at a time."""
    folder = resolve_run("pretrained:go2-joystick")
    for name in ("model.zip", "vecnormalize.pkl", "config.yaml", "meta.json", "eval.json", "validate.json",
                 "sweep.json"):
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    meta = json.loads((folder / "meta.json").read_text())
    assert "base_lin_vel" not in meta["actor_observations"] and meta["estimated_observations"] == ["base_lin_vel"]
    assert meta["symmetric_actor"] is True
    fixed = ["task.command_curriculum.stages=[]", "task.commands.standing_share=0",
             "task.commands.single_axis_share=0", "task.commands.resample_seconds=0"]
    for i, command in enumerate(((1.0, 0.0, 0.0), (0.2, 0.0, 0.0), (-0.5, 0.0, 0.0), (0.0, -0.5, 0.0))):
        out = tmp_path / f"eval-{i}.json"
        sets = fixed + [f"task.commands.lin_vel_x=[{command[0]},{command[0]}]",
                        f"task.commands.lin_vel_y=[{command[1]},{command[1]}]", "task.commands.ang_vel_yaw=[0,0]"]
        # 10 episodes, as the issue measures. Under 0.2 m/s none of 100 episodes averages under 0.1 m/s; the two
        # policies shipped before stood through about 3 and 21 in 100 (docs/results.md, thirty-first and
        # twenty-fifth sessions), which 2 episodes can hit
        args = ["eval", "pretrained:go2-joystick", "--episodes", "10", "--json", str(out)]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0
        metrics = json.loads(out.read_text())["metrics"]
        assert metrics["survival_rate"] == 1.0
        assert metrics["linear_velocity_tracking_rms"] <= 0.25, (command, metrics["linear_velocity_tracking_rms"])
        if command[0] != 0:  # slow and backward commands are walked, not stood through (the old dead zone)
            assert metrics["mean_forward_velocity"] / command[0] >= 0.5, (command, metrics["mean_forward_velocity"])


def test_pidog_is_shipped_and_runs_the_arena_on_what_it_senses(tmp_path):
    """The shipped PiDog policy (`legkit pipeline pidog`'s, packaged from the arena stage of the recipe
    pidog-arena) loads with plain SB3, its actor reads only the PiDog's own sensors and its command (the critic
    also read the arena's layout in training), the camera as heights above the floor at the sensor's own scale,
    and it walks forward among obstacles without falling."""
    folder = resolve_run("pretrained:pidog")
    for name in ("model.zip", "vecnormalize.pkl", "config.yaml", "meta.json", "eval.json"):
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_500_000
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["task"] == "pidog-run" and meta["symmetric_actor"] is True
    assert set(meta["actor_observations"]) == {"imu", "attitude", "ultrasonic", "camera", "touch", "joint_pos",
                                               "joint_vel", "behaviour", "clock", "command"}
    assert "obstacle_map" in [name for name, _, _ in meta["obs_layout"]]  # the critic's alone
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["task"]["sensors"]["camera"]["depth"] == "height" and config["ppo"]["fixed_scales"] == ["camera"]
    PPO.load(folder / "model.zip", device="cpu")
    out = tmp_path / "eval.json"
    assert main(["eval", "pretrained:pidog", "--episodes", "2", "--set", "task.episode_seconds=10",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["policy"] == "pretrained:pidog"  # the name, not the folder legkit is installed in
    metrics = record["metrics"]
    assert metrics["survival_rate"] == 1.0
    assert metrics["mean_forward_velocity"] >= 0.05, metrics["mean_forward_velocity"]
    assert "collisions_per_episode" in metrics  # evaluated in the obstacle arena
