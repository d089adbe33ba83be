"""`legkit diagnose`: each failure mode, on a synthetic run folder written here, is flagged by its own check alone.

The folders have the real layout: config.yaml (the shipped go2-walk's), meta.json, eval.json with the metric names
of legkit.evaluate.metrics, episodes.csv with EpisodeLogger's columns, and a TensorBoard event file.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from legkit.cli import main
from legkit.evaluate import diagnose as dg
from legkit.train.runs import pretrained_root

TERMS = ("track_lin_vel", "track_ang_vel", "lin_vel_z", "ang_vel_xy", "orientation", "base_height", "base_too_low",
         "torques", "action_rate", "feet_air_time", "undesired_contacts", "termination")
"""go2-walk's reward terms, in its order (the columns after EpisodeLogger's own)."""
HEALTHY_EVAL = {"episodes": 20, "mean_forward_velocity": 0.73, "mean_command_velocity": 0.74,
                "velocity_tracking_rms": 0.11, "survival_rate": 1.0, "early_termination_rate": 0.0,
                "mean_time_to_fall_s": None, "mean_base_height": 0.277, "base_height_std": 0.003,
                "mean_action_magnitude": 0.65, "mean_return": 35.4, "energy_per_metre_J": 231.0,
                "mean_episode_length_s": 20.0, "episode_limit_s": 20.0}
N_EPISODES = 400
STEPS_PER_EPISODE_ROW = 7500
"""Environment steps between two rows of the synthetic episodes.csv (3 M steps in all)."""


def rising(x: np.ndarray) -> np.ndarray:
    """Learning progress 0..1 over training fraction x: still climbing at the end."""
    return 1.0 / (1.0 + np.exp(-(x - 0.5) / 0.12))


def term_means(progress: np.ndarray, rng: np.random.Generator, penalties: dict | None = None) -> dict:
    """Per-episode reward term sums: task rewards grow with `progress`, penalties stay (overridable)."""
    n = len(progress)
    out = {t: np.zeros(n) for t in TERMS}
    out["track_lin_vel"] = 20.0 * progress + rng.normal(0.0, 1.0, n)
    out["track_ang_vel"] = 8.0 * progress + rng.normal(0.0, 0.3, n)
    out["feet_air_time"] = 2.0 * progress
    out["torques"] = np.full(n, -2.0)
    out["action_rate"] = np.full(n, -1.0)
    out["orientation"] = np.full(n, -0.5)
    for name, value in (penalties or {}).items():
        out[name] = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    return out


def write_episodes(path: Path, terms: dict, mean_action: float = 0.65, mean_height: float = 0.27,
                   stage: np.ndarray | None = None) -> None:
    """episodes.csv as EpisodeLogger writes it: its columns, then one column per reward term."""
    n = len(terms["track_lin_vel"])
    reward = sum(terms[t] for t in TERMS)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "reward", "length", "time", "terminated", "mean_height", "mean_action",
                    "curriculum_stage", *TERMS])
        for i in range(n):
            w.writerow([(i + 1) * STEPS_PER_EPISODE_ROW, f"{reward[i]:.4f}", 1000, 20.0, 0, f"{mean_height:.4f}",
                        f"{mean_action:.4f}", "" if stage is None else int(stage[i]),
                        *(f"{terms[t][i]:.4f}" for t in TERMS)])


def write_tb(folder: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """A TensorBoard event file in folder/PPO_1, as SB3's logger leaves it."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder / "PPO_1"))
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def std_curve(end: float, points: int = 40) -> list[tuple[int, float]]:
    """train/std from legkit's start (exp(-0.5)) to `end`, over 3 M steps."""
    steps = np.linspace(6144, N_EPISODES * STEPS_PER_EPISODE_ROW, points).astype(int)
    return [(int(s), float(v)) for s, v in zip(steps, np.geomspace(0.606, end, points))]


def make_run(root: Path, name: str, *, eval_metrics: dict | None = HEALTHY_EVAL, terms: dict | None = None,
             progress: np.ndarray | None = None, std_end: float = 0.35, meta: dict | None = None,
             config_edit=None, extra_tb: dict | None = None, mean_action: float = 0.65, final_model: bool = True,
             seed: int = 0, stage: np.ndarray | None = None) -> Path:
    """A finished go2-walk run folder: healthy unless the arguments say otherwise."""
    run = root / name
    run.mkdir(parents=True)
    config = yaml.safe_load((pretrained_root() / "go2-walk" / "config.yaml").read_text())
    if config_edit is not None:
        config_edit(config)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    steps = N_EPISODES * STEPS_PER_EPISODE_ROW
    (run / "meta.json").write_text(json.dumps(meta if meta is not None else
                                              {"task": config["task_name"], "robot": "go2", "seed": 0,
                                               "control_dt": 0.02, "action_scale": 0.5, "step": steps,
                                               "finished": True}))
    if eval_metrics is not None:
        (run / "eval.json").write_text(json.dumps({"task": config["task_name"], "policy": str(run),
                                                   "checkpoint": "final", "step": steps, "seed": 12345,
                                                   "overrides": [], "metrics": eval_metrics}))
    rng = np.random.default_rng(seed)
    if terms is None:
        x = np.linspace(0.0, 1.0, N_EPISODES)
        terms = term_means(rising(x) if progress is None else progress, rng)
    write_episodes(run / "episodes.csv", terms, mean_action=mean_action, stage=stage)
    write_tb(run / "tb", {"train/std": std_curve(std_end), "stats/bad_actions": [(steps, 0.0)],
                          "stats/bad_physics": [(steps, 0.0)], **(extra_tb or {})})
    if final_model:
        (run / "model.zip").write_bytes(b"synthetic")
    return run


def verdicts(run: Path, window: int = dg.DEFAULT_WINDOW) -> dict[str, str]:
    result = dg.diagnose(run, str(run), window=window)
    return {c["name"]: c["verdict"] for c in result["checks"]}


def flagged(v: dict[str, str]) -> dict[str, str]:
    """The checks that did not pass (n/a aside)."""
    return {k: x for k, x in v.items() if x in ("fail", "warn")}


# -- each failure mode, and only it -----------------------------------------------------------------

def test_healthy_run_passes_every_check(tmp_path):
    v = verdicts(make_run(tmp_path, "healthy"))
    assert flagged(v) == {}
    assert v["residual_usage"] == "n/a"  # go2-walk has no gait
    assert all(x == "pass" for k, x in v.items() if k != "residual_usage"), v


def test_stands_still(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_forward_velocity": 0.01}  # the seed project's 0.010 m/s
    assert flagged(verdicts(make_run(tmp_path, "still", eval_metrics=ev))) == {"stands_still": "fail"}


def test_slow_but_falling_is_not_standing_still(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_forward_velocity": 0.05, "survival_rate": 0.3, "early_termination_rate": 0.7}
    assert verdicts(make_run(tmp_path, "falls", eval_metrics=ev))["stands_still"] == "warn"


def test_walks_backwards(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_forward_velocity": -0.3}
    assert flagged(verdicts(make_run(tmp_path, "back", eval_metrics=ev))) == {"walks_backwards": "fail"}


def test_backward_drift_within_tolerance_is_standing_still(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_forward_velocity": -0.0044}  # the seed project's baseline gait
    assert flagged(verdicts(make_run(tmp_path, "drift", eval_metrics=ev))) == {"stands_still": "fail"}


def test_lies_down(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_base_height": 0.12}
    run = make_run(tmp_path, "low", eval_metrics=ev)
    assert flagged(verdicts(run)) == {"lies_down": "fail"}
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "lies_down")
    assert check["numbers"]["standing_height"] == 0.27  # legkit.robots.get_robot("go2").standing_height
    assert "task.rewards.base_height.weight (now -30)" in check["suggestion"]


def test_lies_down_from_training_heights_without_an_evaluation(tmp_path):
    run = make_run(tmp_path, "low-train", eval_metrics=None)
    rows = (run / "episodes.csv").read_text().replace(",0.2700,", ",0.1000,")
    (run / "episodes.csv").write_text(rows)
    v = verdicts(run)
    assert v["lies_down"] == "fail" and v["stands_still"] == "n/a"


def test_penalty_dominates(tmp_path):
    rng = np.random.default_rng(0)
    terms = term_means(rising(np.linspace(0, 1, N_EPISODES)), rng, penalties={"torques": -150.0})
    run = make_run(tmp_path, "penalty", terms=terms)
    assert flagged(verdicts(run)) == {"reward_dominance": "fail"}
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "reward_dominance")
    assert "torques" in check["evidence"] and "task.rewards.torques.weight (now -0.0002)" in check["suggestion"]
    assert check["numbers"]["shares"]["torques"] > dg.DOMINANCE_SHARE


def test_rise_then_collapse(tmp_path):
    x = np.linspace(0, 1, N_EPISODES)
    progress = np.where(x < 0.5, 0.05 + 0.95 * x / 0.5, 1.0 - 0.7 * (x - 0.5) / 0.5)  # up to 1, down to 0.3
    v = verdicts(make_run(tmp_path, "collapse", progress=progress))
    assert flagged(v) == {"collapse": "fail"}
    assert v["plateau"] == "n/a"  # a fall is the collapse's finding, not a plateau


def test_collapse_while_the_terrain_gets_harder_only_warns(tmp_path):
    """A terrain curriculum (go2-rough, go2-residual) lowers the training return as robots reach harder rows."""
    x = np.linspace(0, 1, N_EPISODES)
    progress = np.where(x < 0.5, 0.05 + 0.95 * x / 0.5, 1.0 - 0.7 * (x - 0.5) / 0.5)
    levels = [(int(s), float(v)) for s, v in zip(np.linspace(7500, 3e6, 40), np.linspace(0.0, 4.0, 40))]
    run = make_run(tmp_path, "rough", progress=progress, extra_tb={"curriculum/terrain_level": levels})
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "collapse")
    assert check["verdict"] == "warn" and "curriculum/terrain_level rose" in check["evidence"]


def test_plateau(tmp_path):
    x = np.linspace(0, 1, N_EPISODES)
    progress = np.minimum(1.0, 0.05 + x / 0.3)  # learned in the first 30 % of the steps, nothing after
    assert flagged(verdicts(make_run(tmp_path, "plateau", progress=progress))) == {"plateau": "warn"}


def test_returns_that_first_sink_are_no_collapse(tmp_path):
    """The first episodes of a locomotion run fall within a few steps and collect little penalty: the return
    sinks before it rises (every go2-walk run does). Its early maximum is no learning to collapse from."""
    x = np.linspace(0, 1, N_EPISODES)
    rng = np.random.default_rng(1)
    terms = term_means(rising(x), rng, penalties={"torques": -2.0 - 25.0 * np.minimum(1.0, x / 0.15)})
    v = verdicts(make_run(tmp_path, "sink", terms=terms))
    assert v["collapse"] == "pass" and v["plateau"] == "pass"


def test_a_reward_stage_is_no_collapse(tmp_path):
    """task.reward_stages sharpening the tracking reward lowers every later return: episodes from before the change
    (and those under way at it) are left out of the curve."""
    x = np.linspace(0, 1, N_EPISODES)
    progress = rising(x * 1.6) * np.where(x < 0.6, 1.0, 0.6)  # the change at 60 % costs 40 % of the return
    change = int(0.6 * N_EPISODES * STEPS_PER_EPISODE_ROW)

    def staged(c):
        c["task"]["reward_stages"] = [{"step": change, "params": {"track_lin_vel": {"sigma": 0.1}}}]
        c["run"]["num_envs"] = 16  # one episode (1000 steps) under way at the change spans 16,000 steps
    run = make_run(tmp_path, "staged", progress=progress, config_edit=staged)
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "collapse")
    assert check["verdict"] == "pass" and "the rewards changed at step" in check["evidence"]


def test_policy_std_collapse(tmp_path):
    run = make_run(tmp_path, "std-low", std_end=0.02)
    assert flagged(verdicts(run)) == {"policy_std": "fail"}
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "policy_std")
    assert check["numbers"]["tag"] == "train/std" and check["numbers"]["final"] == pytest.approx(0.02, rel=1e-3)
    assert "ppo.ent_coef (now 0.002)" in check["suggestion"]


def test_a_std_held_low_by_its_cap_is_no_collapse(tmp_path):
    """ppo.action_std_cap lowers the std on purpose: at the cap it passes; under a cap far above it, it collapsed."""
    held = make_run(tmp_path, "held", std_end=0.02, extra_tb={"schedule/action_std_cap": std_curve(0.02)})
    check = next(c for c in dg.diagnose(held, "x")["checks"] if c["name"] == "policy_std")
    assert check["verdict"] == "pass" and "ppo.action_std_cap" in check["evidence"], check
    assert check["numbers"]["cap"] == pytest.approx(0.02, rel=1e-3)
    steps = [s for s, _ in std_curve(0.02)]
    loose = make_run(tmp_path, "loose", std_end=0.02,
                     extra_tb={"schedule/action_std_cap": [(steps[0], 0.5), (steps[-1], 0.5)]})
    assert flagged(verdicts(loose)) == {"policy_std": "fail"}


def test_policy_std_explosion(tmp_path):
    assert flagged(verdicts(make_run(tmp_path, "std-high", std_end=3.0))) == {"policy_std": "fail"}


def test_saturated_actions(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_action_magnitude": 0.97}
    assert flagged(verdicts(make_run(tmp_path, "sat", eval_metrics=ev, mean_action=0.97))) == \
        {"action_saturation": "warn"}


def _residual_config(c: dict) -> None:
    """go2-residual as its config.yaml would hold it: a scripted trot, the action a residual of 0.25 rad."""
    c["task_name"] = "go2-residual"
    c["task"]["gait"] = {"type": "trot", "body_height": 0.28, "step_length": 0.1, "step_height": 0.08,
                         "cycle_time": 0.5, "duty_factor": 0.5}
    c["task"]["action_scale"] = 0.25


def test_unused_residual(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_action_magnitude": 0.005}
    run = make_run(tmp_path, "residual", eval_metrics=ev, mean_action=0.005, config_edit=_residual_config)
    v = verdicts(run)
    assert flagged(v) == {"residual_usage": "fail"}
    assert v["action_saturation"] == "n/a"  # the action is the residual: residual_usage judges it
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "residual_usage")
    assert "task.gait (trot)" in check["evidence"] and check["numbers"]["residual_scale"] == 0.25


def test_used_residual_passes(tmp_path):
    ev = {**HEALTHY_EVAL, "mean_action_magnitude": 0.3}
    assert flagged(verdicts(make_run(tmp_path, "residual-ok", eval_metrics=ev, config_edit=_residual_config))) == {}


def test_residual_detected_from_the_real_task_config(tmp_path):
    """The config.yaml that `legkit train go2-residual` writes (task.gait set) makes a residual run."""
    from legkit.tasks import TASKS
    from legkit.train.config import build_config, to_dict

    if "go2-residual" not in TASKS:
        pytest.skip("no go2-residual task in this tree")
    real = to_dict(build_config("go2-residual"))
    ev = {**HEALTHY_EVAL, "mean_action_magnitude": 0.005}
    run = make_run(tmp_path, "go2-residual", eval_metrics=ev, config_edit=lambda c: c.update(real))
    assert flagged(verdicts(run)) == {"residual_usage": "fail"}


def test_residual_from_training_alone(tmp_path):
    """Without an evaluation only a tiny training mean tells an unused residual: exploration noise adds to it."""
    run = make_run(tmp_path, "residual-noisy", eval_metrics=None, mean_action=0.3, config_edit=_residual_config)
    assert verdicts(run)["residual_usage"] == "n/a"
    run = make_run(tmp_path, "residual-idle", eval_metrics=None, mean_action=0.005, config_edit=_residual_config)
    assert verdicts(run)["residual_usage"] == "fail"


def test_window_sets_the_end_of_training(tmp_path, capsys):
    rng = np.random.default_rng(0)
    late = np.where(np.arange(N_EPISODES) >= N_EPISODES - 30, -150.0, -2.0)  # a penalty in the last 30 episodes
    run = make_run(tmp_path, "late-penalty", terms=term_means(rising(np.linspace(0, 1, N_EPISODES)), rng,
                                                              penalties={"torques": late}))
    assert verdicts(run, window=30)["reward_dominance"] == "fail"
    assert verdicts(run)["reward_dominance"] == "pass"  # diluted over the default 100 episodes
    assert main(["diagnose", str(run), "--window", "30", "--json", str(tmp_path / "w.json")]) == 1
    assert json.loads((tmp_path / "w.json").read_text())["window"] == 30


NAN_REASON = ("NaN guard stopped training: non-finite network weight mlp_extractor.policy_net.0.weight at step 2504; "
              "nothing more was saved, the last good checkpoint is runs/x/checkpoints/step_000002048")


@pytest.mark.parametrize("record", ["tune", "seed-log", "tb"])
def test_nan_stop(tmp_path, record):
    """What a NaN stop leaves: no final model and meta.json finished false; the reason is in a tune trial's
    meta.json, in a seed group's log, or as non-finite values in the TensorBoard scalars."""
    meta = {"task": "go2-walk", "robot": "go2", "finished": False, "started": "2026-12-02T10:00:00"}
    if record == "tune":
        meta["tune"] = {"study": "s", "trial": 3, "state": "failed", "reason": NAN_REASON}
    extra = {"train/value_loss": [(2048, 0.5), (2432, float("nan"))]} if record == "tb" else None
    root = tmp_path / "group"
    run = make_run(root, "seed-0", eval_metrics=None, meta=meta, extra_tb=extra, final_model=False)
    if record == "seed-log":
        (root / "logs").mkdir()
        (root / "logs" / "seed-0.log").write_text(f"run folder: {run}\nlegkit: error: {NAN_REASON}\n")
    v = verdicts(run)
    assert flagged(v) == {"nan_stop": "fail"}, v


def test_stopped_run_without_a_record_warns(tmp_path):
    meta = {"task": "go2-walk", "robot": "go2", "finished": False}
    run = make_run(tmp_path, "stopped", eval_metrics=None, meta=meta, final_model=False)
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "nan_stop")
    assert check["verdict"] == "warn" and "does not record why" in check["evidence"]
    (run / "train.lock").write_text(f"{os.getpid()}\n")  # a live process holds it: still training
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "nan_stop")
    assert check["verdict"] == "n/a" and "being trained now" in check["evidence"]


def test_short_run_says_na_instead_of_guessing(tmp_path):
    rng = np.random.default_rng(0)
    terms = {t: v[:50] for t, v in term_means(rising(np.linspace(0, 0.2, 400)), rng).items()}
    v = verdicts(make_run(tmp_path, "short", terms=terms))
    assert v["collapse"] == "n/a" and v["plateau"] == "n/a"  # 50 episodes: not 4 windows of 20
    assert v["reward_dominance"] in ("pass", "warn", "fail")  # 50 episodes are enough for shares
    terms = {t: v[:10] for t, v in terms.items()}
    v = verdicts(make_run(tmp_path, "shorter", terms=terms, eval_metrics=None))
    assert {k: v[k] for k in ("reward_dominance", "collapse", "plateau", "lies_down", "action_saturation")} == \
        dict.fromkeys(("reward_dominance", "collapse", "plateau", "lies_down", "action_saturation"), "n/a")


def test_missing_pieces_are_na_and_named(tmp_path):
    run = make_run(tmp_path, "bare")
    for name in ("episodes.csv", "eval.json"):
        (run / name).unlink()
    import shutil

    shutil.rmtree(run / "tb")
    result = dg.diagnose(run, "x")
    assert result["passed"]
    assert {c["name"] for c in result["checks"] if c["verdict"] == "n/a"} >= {
        "stands_still", "walks_backwards", "reward_dominance", "collapse", "plateau", "policy_std"}
    assert "episodes.csv" in result["not_available"] and "tb/ (TensorBoard scalars)" in result["not_available"]


def test_periodic_evaluation_stands_in_for_eval_json(tmp_path):
    """No eval.json (a tune trial): the last row of evaluations.csv, with go2-walk's command from its config."""
    run = make_run(tmp_path, "trial", eval_metrics=None)
    (run / "evaluations.csv").write_text(
        "step,wall_time_s,mean_return,survival_rate,mean_forward_velocity,velocity_tracking_rms,mean_base_height\n"
        "761856,130.9,14.6,1.0,-0.0027,0.60,0.256\n")
    check = next(c for c in dg.diagnose(run, "x")["checks"] if c["name"] == "stands_still")
    assert check["verdict"] == "fail" and check["numbers"]["command_velocity"] == pytest.approx(0.75)


# -- the command ------------------------------------------------------------------------------------

def test_cli_exit_codes_and_json(tmp_path, capsys):
    healthy = make_run(tmp_path, "healthy")
    still = make_run(tmp_path, "still", eval_metrics={**HEALTHY_EVAL, "mean_forward_velocity": 0.01})
    assert main(["diagnose", str(healthy)]) == 0
    out = capsys.readouterr().out
    assert "no failure found" in out and (healthy / "diagnose.json").exists()  # written beside the run by default
    assert main(["diagnose", str(still), "--json", str(tmp_path / "d.json")]) == 1
    out = capsys.readouterr().out
    assert "stands_still" in out and "FAIL" in out and "FAILED: stands_still" in out
    assert not (still / "diagnose.json").exists()  # --json replaces the default
    data = json.loads((tmp_path / "d.json").read_text())
    assert [c["name"] for c in data["checks"]] == [f.__name__ for f in dg.CHECKS]
    assert data["failed"] == ["stands_still"] and data["passed"] is False
    row = data["checks"][0]
    assert set(row) == {"name", "verdict", "evidence", "suggestion", "numbers"}
    assert row["numbers"]["forward_velocity"] == 0.01 and "track_lin_vel" in row["suggestion"]
    assert data["thresholds"]["STAND_STILL_FRACTION"] == dg.STAND_STILL_FRACTION


@pytest.mark.parametrize("args", [["/no/such/run"], ["{tmp}"], ["pretrained:nope"], ["{run}", "--window", "0"],
                                  ["{run}", "--json", "/no/such/folder/d.json"]])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args):
    run = make_run(tmp_path, "healthy")
    argv = ["diagnose", *(a.format(tmp=tmp_path, run=run) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("legkit: error: ")


@pytest.mark.parametrize("name", ["go2-walk", "go2-joystick", "humanoid-stand"])
def test_shipped_policies_pass(name, capsys):
    folder = pretrained_root() / name
    before = sorted(p.name for p in folder.iterdir())
    assert main(["diagnose", f"pretrained:{name}"]) == 0
    assert "no failure found" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing is written into a packaged policy
