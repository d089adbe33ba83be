"""Run configuration: building, --set overrides, strict keys and types, range validation, round trips."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from legkit import LegkitError
from legkit.config import from_dict, load_yaml, parse_set, to_dict
from legkit.tasks import TASKS
from legkit.tasks.config import TaskConfig
from legkit.tasks.rewards import REWARDS
from legkit.tasks.terms import RewardTerm
from legkit.train.config import Config, PPOConfig, RunConfig, build_config, default_config_file


def error(sets: list[str], task: str = "go2-walk") -> str:
    with pytest.raises(LegkitError) as err:
        build_config(task, sets=sets)
    return str(err.value)


def test_build_config_go2_walk():
    cfg = build_config("go2-walk")
    assert isinstance(cfg, Config)
    assert cfg.task_name == "go2-walk"
    assert isinstance(cfg.task, TaskConfig) and cfg.task.robot == "go2"
    assert cfg.task.control_dt == pytest.approx(0.02)
    assert cfg.task.max_episode_steps == 1000
    assert set(cfg.task.rewards) <= set(REWARDS) and "track_lin_vel" in cfg.task.rewards
    assert isinstance(cfg.task.rewards["base_height"], RewardTerm)
    assert cfg.task.rewards["base_height"].params == {"target": 0.27}
    # The packaged YAML is applied on top of the dataclass defaults: every key in it is in the result.
    packaged = load_yaml(str(default_config_file("go2-walk")))
    resolved = to_dict(cfg)
    assert packaged, "the packaged go2-walk.yaml is empty"
    for section, values in packaged.items():
        for key, value in values.items():
            assert resolved[section][key] == value, f"{section}.{key}"


def test_set_overrides_apply_with_types():
    cfg = build_config("go2-walk", sets=[
        "ppo.learning_rate=1e-3",  # PyYAML alone reads this as a string
        "ppo.n_steps=64", "run.num_envs=8", "ppo.batch_size=128",
        "ppo.net_arch=[64, 32]", "task.commands.lin_vel_x=[1, 1]", "task.rewards.base_height.params.target=0.3",
        "ppo.target_kl=0.02", "ppo.normalize_reward=false",
    ])
    assert cfg.ppo.learning_rate == pytest.approx(1e-3) and isinstance(cfg.ppo.learning_rate, float)
    assert cfg.ppo.n_steps == 64 and cfg.run.num_envs == 8 and cfg.ppo.batch_size == 128
    assert cfg.ppo.net_arch == (64, 32)
    assert cfg.task.commands.lin_vel_x == (1.0, 1.0) and all(isinstance(v, float) for v in cfg.task.commands.lin_vel_x)
    assert cfg.task.rewards["base_height"] == RewardTerm(-30.0, {"target": 0.3})
    assert cfg.ppo.target_kl == pytest.approx(0.02)
    assert cfg.ppo.normalize_reward is False


def test_configs_are_fresh_copies():
    a = build_config("go2-walk")
    b = build_config("go2-walk", sets=["task.rewards.torques.weight=-1"])
    assert a.task.rewards["torques"].weight == pytest.approx(-2e-4)
    assert b.task.rewards["torques"].weight == -1.0
    assert a.task.rewards is not b.task.rewards


def test_unknown_task_names_valid_tasks():
    msg = error([], task="go2-run")
    assert "'go2-run'" in msg
    for name in TASKS:
        assert name in msg


def test_unknown_key_names_key_and_valid_keys():
    msg = error(["ppo.learning_rat=1"])
    assert "ppo.learning_rat" in msg
    for f in dataclasses.fields(PPOConfig):
        assert f.name in msg


def test_unknown_top_level_and_nested_section_keys():
    msg = error(["trian.steps=1"])
    assert "trian" in msg and all(k in msg for k in ("task_name", "task", "ppo", "run"))
    msg = error(["task.termination.min_height=0.1"])
    assert "task.termination.min_height" in msg and "min_base_height" in msg and "grace_steps" in msg


@pytest.mark.parametrize("item", ["ppo.learning_rate", "=3", "a..b=1", "x=", ".a=1", "a.=1", "ppo.gamma=[1"])
def test_malformed_set(item):
    msg = error([item])
    assert msg.startswith("malformed --set"), msg
    assert item in msg


def test_set_into_a_value_is_malformed():
    msg = error(["ppo.gamma.x=1"])
    assert msg.startswith("malformed --set") and "gamma" in msg


def test_parse_set_reads_yaml_values():
    assert parse_set("a.b.c=0.5") == (["a", "b", "c"], 0.5)
    assert parse_set("x=[1, 2]") == (["x"], [1, 2])
    assert parse_set("x=true") == (["x"], True)
    assert parse_set("x=a=b") == (["x"], "a=b")  # only the first '=' splits


@pytest.mark.parametrize("item,key", [
    ("ppo.n_steps=abc", "ppo.n_steps"),
    ("ppo.n_steps=2.5", "ppo.n_steps"),
    ("ppo.learning_rate=fast", "ppo.learning_rate"),
    ("ppo.learning_rate=1e-3x", "ppo.learning_rate"),
    ("ppo.n_steps=1e3", "ppo.n_steps"),
    ("ppo.normalize_reward=3", "ppo.normalize_reward"),
    ("run.seed=true", "run.seed"),
    ("ppo.net_arch=64", "ppo.net_arch"),
    ("task.commands.lin_vel_x=[1, 2, 3]", "task.commands.lin_vel_x"),
    ("task.robot=[1]", "task.robot"),
])
def test_wrong_type_names_key(item, key):
    msg = error([item])
    assert f"'{key}" in msg, msg


@pytest.mark.parametrize("item,key", [
    ("ppo.ent_coef=-0.01", "ppo.ent_coef"),
    ("ppo.gamma=0", "ppo.gamma"),
    ("ppo.gamma=1.5", "ppo.gamma"),
    ("ppo.gae_lambda=1.01", "ppo.gae_lambda"),
    ("ppo.learning_rate=0", "ppo.learning_rate"),
    ("ppo.activation=gelu", "ppo.activation"),
    ("ppo.net_arch=[]", "ppo.net_arch"),
    ("run.num_envs=0", "run.num_envs"),  # named itself, not through the batch_size check
    ("ppo.n_steps=0", "ppo.n_steps"),
    ("task.episode_seconds=0", "task.episode_seconds"),
])
def test_out_of_range_names_key(item, key):
    msg = error([item])
    assert msg.startswith(f"invalid {key} ="), msg
    assert "must be" in msg


def test_batch_size_larger_than_rollout():
    # 64 steps x 4 robots = 256 samples per rollout
    msg = error(["ppo.n_steps=64", "run.num_envs=4", "ppo.batch_size=257"])
    assert msg.startswith("invalid ppo.batch_size =") and "256" in msg
    cfg = build_config("go2-walk", sets=["ppo.n_steps=64", "run.num_envs=4", "ppo.batch_size=256"])
    assert cfg.ppo.batch_size == 256


def test_boundaries_are_accepted():
    cfg = build_config("go2-walk", sets=["ppo.gamma=1", "ppo.gae_lambda=1", "ppo.ent_coef=0"])
    assert (cfg.ppo.gamma, cfg.ppo.gae_lambda, cfg.ppo.ent_coef) == (1.0, 1.0, 0.0)


def test_unknown_reward_term():
    msg = error(["task.rewards.nope.weight=1"])
    assert "'nope'" in msg
    for name in REWARDS:
        assert name in msg


def test_unknown_reward_param():
    msg = error(["task.rewards.base_height.params.height=0.3"])
    assert "'height'" in msg and "target" in msg


def test_unknown_robot_names_valid_robots():
    msg = error(["task.robot=nope"])
    assert "'nope'" in msg and "go2" in msg


def test_config_file_overrides_and_checks_keys(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("ppo:\n  n_epochs: 3\n  learning_rate: 3e-4\nrun:\n  seed: 9\n")
    cfg = build_config("go2-walk", str(good), sets=["run.seed=10"])
    assert cfg.ppo.n_epochs == 3 and cfg.run.seed == 10  # --set wins over the file
    assert cfg.ppo.learning_rate == pytest.approx(3e-4)  # exponent notation without a dot is a number
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo:\n  n_epoch: 3\n")
    with pytest.raises(LegkitError, match="ppo.n_epoch"):
        build_config("go2-walk", str(bad))
    with pytest.raises(LegkitError, match="does not exist"):
        build_config("go2-walk", str(tmp_path / "missing.yaml"))


def test_round_trip_to_dict_from_dict():
    cfg = build_config("go2-walk", sets=["ppo.learning_rate_final=1e-5", "ppo.net_arch=[32]",
                                         "task.commands.lin_vel_y=[-0.2, 0.2]"])
    tree = to_dict(cfg)
    assert isinstance(tree, dict) and isinstance(tree["task"]["rewards"]["base_height"], dict)
    again = from_dict(Config, tree)
    assert again == cfg
    # ... and through YAML text, as config.yaml is written and read.
    assert from_dict(Config, yaml.safe_load(yaml.safe_dump(tree, sort_keys=False))) == cfg


def test_round_trip_of_defaults():
    cfg = Config(task=TaskConfig(), ppo=PPOConfig(), run=RunConfig())
    assert from_dict(Config, to_dict(cfg)) == cfg


@pytest.mark.parametrize("item,key,valid", [
    ("ppo.max_grad_norm=-1", "ppo.max_grad_norm", "> 0"),
    ("ppo.max_grad_norm=0", "ppo.max_grad_norm", "> 0"),
    ("ppo.vf_coef=-5", "ppo.vf_coef", ">= 0"),
    ("ppo.learning_rate_final=-1e-5", "ppo.learning_rate_final", ">= 0"),
    ("ppo.target_kl=0", "ppo.target_kl", "> 0"),
    ("ppo.target_kl=-0.01", "ppo.target_kl", "> 0"),
    ("task.action_scale=-3", "task.action_scale", "> 0"),
    ("task.action_scale=0", "task.action_scale", "> 0"),
    ("run.nthread=-1", "run.nthread", ">= 0"),
    ("run.torch_threads=-1", "run.torch_threads", ">= 0"),
    ("task.termination.grace_steps=-1", "task.termination.grace_steps", ">= 0"),
    ("task.termination.base_contact_force=-1", "task.termination.base_contact_force", ">= 0"),
    ("task.reset.joint_pos_noise=-0.1", "task.reset.joint_pos_noise", ">= 0"),
    ("task.reset.base_vel_noise=-0.1", "task.reset.base_vel_noise", ">= 0"),
    ("task.reset.yaw_range=-1", "task.reset.yaw_range", ">= 0"),
    ("task.commands.lin_vel_x=[1.0, 0.5]", "task.commands.lin_vel_x", "lo <= hi"),
    ("task.commands.lin_vel_y=[0.2, -0.2]", "task.commands.lin_vel_y", "lo <= hi"),
    ("task.commands.ang_vel_yaw=[0.5, -0.5]", "task.commands.ang_vel_yaw", "lo <= hi"),
    ("task.commands.resample_seconds=-1", "task.commands.resample_seconds", ">= 0"),
    ("task.validation.episodes=0", "task.validation.episodes", ">= 1"),
    ("task.validation.max_steps=0", "task.validation.max_steps", ">= 1"),
    ("task.validation.seed_episodes=0", "task.validation.seed_episodes", ">= 1"),
    ("task.validation.long_steps=0", "task.validation.long_steps", ">= 1"),
    ("task.validation.min_lasting_episodes=11", "task.validation.min_lasting_episodes", "task.validation.episodes"),
    ("task.validation.height_range=[0.3, 0.2]", "task.validation.height_range", "lo <= hi"),
    ("task.validation.push_interval_s=0", "task.validation.push_interval_s", "> 0"),
    ("task.validation.mass_range=1", "task.validation.mass_range", "[0, 1)"),
    ("task.validation.friction_range=-0.1", "task.validation.friction_range", "[0, 1)"),
    ("task.validation.min_survival=1.5", "task.validation.min_survival", "[0, 1]"),
])
def test_signed_fields_name_key_and_valid_range(item, key, valid):
    msg = error([item])
    assert msg.startswith(f"invalid {key} ="), msg
    assert f"must be {valid}" in msg or (valid in msg and "must be" in msg), msg
    assert "\n" not in msg


def test_episode_shorter_than_one_control_period():
    msg = error(["task.episode_seconds=0.001"])
    assert msg.startswith("invalid task.episode_seconds = 0.001:"), msg
    assert "0.02 s" in msg and "physics.timestep 0.005" in msg and "decimation 4" in msg, msg
    msg = error(["task.decimation=10", "task.episode_seconds=0.04"])
    assert "0.05 s" in msg and "decimation 10" in msg, msg


@pytest.mark.parametrize("stage,key", [
    ("{target: 1.2, tolerance: -0.1, min_steps: 10}", "task.curriculum.stages[0].tolerance"),
    ("{target: 1.2, tolerance: 0.1, min_steps: -1}", "task.curriculum.stages[0].min_steps"),
])
def test_curriculum_stage_ranges(stage, key):
    msg = error([f"task.curriculum.stages=[{stage}]"], task="humanoid-stand")
    assert msg.startswith(f"invalid {key} ="), msg
    assert "must be >= 0" in msg


@pytest.mark.parametrize("item,key,valid", [
    ("task.command_curriculum.stages=[{lin_vel_x: [0, 1], max_steps: -5}]",
     "task.command_curriculum.stages[0].max_steps", ">= 0 (0: no cap)"),
    ("task.command_curriculum.stages=[{lin_vel_x: [1, 0]}]", "task.command_curriculum.stages[0].lin_vel_x",
     "[lo, hi] with lo <= hi"),
    ("task.command_curriculum.success_rate=0", "task.command_curriculum.success_rate", "in (0, 1]"),
])
def test_command_curriculum_ranges(item, key, valid):
    msg = error([item], task="go2-joystick")
    assert msg.startswith(f"invalid {key} ="), msg
    assert valid in msg, msg


@pytest.mark.parametrize("item,path,missing", [
    ("task.curriculum.stages=[{target: 1.0}]", "task.curriculum.stages[0]", "tolerance, min_steps"),
    ("task.curriculum.stages=[{target: 1.0, tolerance: 0.1, min_steps: 5}, {tolerance: 0.1}]",
     "task.curriculum.stages[1]", "target, min_steps"),
    ("task.rewards.upright.params={}", "task.rewards.upright", "weight"),
])
def test_missing_required_keys_name_path_and_keys(item, path, missing):
    msg = error([item])
    assert f"'{path}'" in msg and "missing required keys" in msg and missing in msg, msg
    # a list item that is not a mapping is a clean error too
    msg = error(["task.curriculum.stages=[1]"])
    assert "'task.curriculum.stages[0]'" in msg and "mapping" in msg


@pytest.mark.parametrize("item,key,valid", [
    ("task.rewards.track_lin_vel.params.sigma=abc", "task.rewards.track_lin_vel.params.sigma", "a number"),
    ("task.rewards.track_lin_vel.params.sigma=[1]", "task.rewards.track_lin_vel.params.sigma", "a number"),
    ("task.rewards.base_height.params.target=true", "task.rewards.base_height.params.target", "a number"),
    ("task.rewards.sustained_bonus.params.every=2.5", "task.rewards.sustained_bonus.params.every", "an integer"),
])
def test_reward_param_wrong_type_names_term_and_param(item, key, valid):
    msg = error([item], task="humanoid-stand" if "sustained_bonus" in item else "go2-walk")
    assert f"'{key}'" in msg and f"must be {valid}" in msg, msg


@pytest.mark.parametrize("item,key,valid", [
    ("task.rewards.track_lin_vel.params.sigma=0", "task.rewards.track_lin_vel.params.sigma", "> 0"),
    ("task.rewards.track_ang_vel.params.sigma=-0.25", "task.rewards.track_ang_vel.params.sigma", "> 0"),
    ("task.rewards.height_target.params.sigma=0", "task.rewards.height_target.params.sigma", "> 0"),
    ("task.rewards.sustained_bonus.params.every=0", "task.rewards.sustained_bonus.params.every", ">= 1"),
    ("task.rewards.feet_air_time.params.contact_force=-1", "task.rewards.feet_air_time.params.contact_force",
     ">= 0"),
    ("task.rewards.undesired_contacts.params.threshold=-1", "task.rewards.undesired_contacts.params.threshold",
     ">= 0"),
    ("task.rewards.base_height.params.target=.nan", "task.rewards.base_height.params.target", "finite"),
    ("task.rewards.torques.weight=.nan", "task.rewards.torques.weight", "finite"),
    ("task.rewards.torques.weight=-.inf", "task.rewards.torques.weight", "finite"),
    ("task.rewards.lin_vel_progress.params.ceiling=0.5", "task.rewards.lin_vel_progress.params.ceiling", "[1, 5]"),
    ("task.rewards.lin_vel_progress.params.floor=0.5", "task.rewards.lin_vel_progress.params.floor", "[-1, 0]"),
])
def test_reward_param_out_of_range_names_key(item, key, valid):
    humanoid = any(t in item for t in ("sustained_bonus", "height_target"))  # terms of humanoid-stand only
    task = "humanoid-stand" if humanoid else "pidog-run" if "lin_vel_progress" in item else "go2-walk"
    msg = error([item], task=task)
    assert msg.startswith(f"invalid {key} ="), msg
    assert "must be" in msg and valid in msg, msg


def test_reward_params_are_coerced_and_round_trip():
    cfg = build_config("go2-walk", sets=["task.rewards.track_lin_vel.params.sigma=1e-3",
                                         "task.rewards.track_ang_vel.params.sigma=1",
                                         "task.rewards.torques.weight=-1"])
    sigma = cfg.task.rewards["track_lin_vel"].params["sigma"]
    assert sigma == pytest.approx(1e-3) and isinstance(sigma, float)  # a string from YAML, now a number
    assert cfg.task.rewards["track_ang_vel"].params["sigma"] == 1.0
    assert isinstance(cfg.task.rewards["track_ang_vel"].params["sigma"], float)
    assert isinstance(cfg.task.rewards["torques"].weight, float)
    tree = to_dict(cfg)
    assert from_dict(Config, yaml.safe_load(yaml.safe_dump(tree, sort_keys=False))) == cfg
    every = build_config("humanoid-stand").task.rewards["sustained_bonus"].params["every"]
    assert every == 100 and isinstance(every, int)


def test_valid_boundaries_of_signed_fields_are_accepted():
    cfg = build_config("go2-walk", sets=[
        "ppo.vf_coef=0", "run.nthread=0", "run.torch_threads=0", "ppo.learning_rate_final=0", "ppo.target_kl=1e-9",
        "ppo.max_grad_norm=1e-6", "task.action_scale=1e-3", "task.episode_seconds=0.02",
        "task.termination.grace_steps=0", "task.termination.base_contact_force=0", "task.reset.joint_pos_noise=0",
        "task.reset.base_vel_noise=0", "task.reset.yaw_range=0", "task.commands.lin_vel_x=[1, 1]",
        "task.commands.resample_seconds=0", "task.validation.episodes=1", "task.validation.min_lasting_episodes=1",
        "task.validation.max_steps=1", "task.validation.seed_episodes=1", "task.validation.long_steps=1",
        "task.validation.mass_range=0", "task.validation.min_survival=1", "task.validation.height_range=[0.3, 0.3]",
        "task.rewards.track_lin_vel.params.sigma=1e-6", "task.rewards.feet_air_time.params.contact_force=0",
        "task.rewards.feet_air_time.params.threshold=-0.1", "task.rewards.base_height.params.target=-1",
    ])
    assert cfg.task.max_episode_steps == 1
    assert (cfg.ppo.vf_coef, cfg.run.nthread, cfg.run.torch_threads, cfg.ppo.learning_rate_final) == (0, 0, 0, 0)
    cfg = build_config("humanoid-stand", sets=[
        "task.rewards.sustained_bonus.params.every=1", "task.decimation=10", "task.episode_seconds=0.05",
        "task.curriculum.stages=[{target: 1.2, tolerance: 0, min_steps: 0}]",
    ])
    assert cfg.task.max_episode_steps == 1 and cfg.task.curriculum.stages[0].min_steps == 0
    assert cfg.ppo.learning_rate_final is None and cfg.ppo.target_kl is None  # unset is valid


def test_config_names_a_file_or_a_packaged_recipe(tmp_path, monkeypatch):
    from legkit.train.config import config_file, recipe_file, recipes

    assert {"pidog-arena", "pidog-turn"} <= set(recipes())
    assert config_file("pidog-arena") == str(recipe_file("pidog-arena"))
    cfg = build_config("pidog-run", config_file("pidog-arena"))
    assert cfg.task.action_scale == 0.6 and cfg.finetune.first == "pidog-turn.yaml"  # read beside the recipe
    mine = tmp_path / "pidog-arena"  # a file of that name in the working directory wins over the recipe
    mine.write_text("run: {total_steps: 1000}\n")
    monkeypatch.chdir(tmp_path)
    assert config_file("pidog-arena") == "pidog-arena"
    with pytest.raises(LegkitError, match=r"--config 'pidog-arenaa': no such file, nor a packaged recipe "
                                          r"\(go2-joystick, go2-joystick-base, pidog-arena, pidog-turn\)"):
        config_file("pidog-arenaa")
    assert config_file("missing.yaml") == "missing.yaml"  # a path: load_yaml says it is missing
