"""`legkit tune`: the objective and its pruning, the search space, trial failures, best.yaml, concurrent workers,
and bad input. Real Optuna, real storages (SQLite, journal file), real training of tiny trials."""

from __future__ import annotations

import json
import math
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from cli_helpers import LEGKIT, one_error_line, run_legkit, snapshot
from legkit.cli import main
from legkit.tasks import get_task
from legkit.train.config import build_config
from legkit.tune.objective import Pruning, nominal_step, shortfall, trial_value
from legkit.tune.show import OUTPUT_KEYS
from legkit.tune.space import Space, load_space
from legkit.tune.study import Record, check_record, pruner

SETTINGS = {"run.best_every": 1024, "run.best_episodes": 1, "run.checkpoint_every": 1024, "run.eval_episodes": 0,
            "run.torch_threads": 1, "run.nthread": 1, "task.episode_seconds": 1, "ppo.n_epochs": 1}
"""Tiny trials: 2048 steps, one evaluation episode of 1 s every 1024 steps, one epoch per update."""
TINY_SPACE = {
    "settings": SETTINGS,
    "pruner": {"startup_trials": 1, "warmup_steps": 0},
    "params": {
        "ppo.learning_rate": {"low": 1.0e-4, "high": 1.0e-3, "log": True},
        "ppo.n_steps": {"choices": [32, 64]},
        "ppo.net_arch": {"choices": [[32, 32], [64]]},
        "task.rewards.track_lin_vel.weight": {"low": 1.0, "high": 2.0},
    },
}
TINY = ["--steps", "2048", "--envs", "8", "--set", "ppo.batch_size=128"]


def _space_file(path: Path, tree: dict) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _trials(url: str, name: str) -> list:
    from legkit.tune.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url)).trials


# -- (1) the objective and the pruner, on synthetic evaluations ----------------------------------------------

def test_shortfall_and_value_rank_near_misses_before_standing_still():
    bar = get_task("go2-walk").success  # mean_forward_velocity >= 0.5 and survival_rate >= 0.95
    assert shortfall({"mean_forward_velocity": 0.6, "survival_rate": 1.0}, bar) == 0.0
    assert shortfall({"mean_forward_velocity": 0.25, "survival_rate": 1.0}, bar) == pytest.approx(0.25)
    assert shortfall({"mean_forward_velocity": -0.1, "survival_rate": 1.0}, bar) == pytest.approx(0.5)  # clipped
    assert shortfall({"mean_forward_velocity": 0.0, "survival_rate": 0.0}, bar) == pytest.approx(1.0)
    assert shortfall({"survival_rate": 1.0}, bar) == pytest.approx(0.5)  # a missing metric counts as missed
    rms = get_task("go2-joystick").success  # survival_rate >= 0.95 and velocity_tracking_rms <= 0.4
    assert shortfall({"survival_rate": 1.0, "velocity_tracking_rms": 0.5}, rms) == pytest.approx(0.125)
    budget = 1_000_000
    met = trial_value(400_512, {"mean_forward_velocity": 0.7, "survival_rate": 1.0}, bar, budget)
    near = trial_value(budget, {"mean_forward_velocity": 0.4, "survival_rate": 1.0}, bar, budget)
    still = trial_value(budget, {"mean_forward_velocity": 0.0, "survival_rate": 1.0}, bar, budget)
    fallen = trial_value(budget, {"mean_forward_velocity": 0.0, "survival_rate": 0.0}, bar, budget)
    assert (met, near, still, fallen) == (400_512, pytest.approx(1.1e6), pytest.approx(1.5e6), pytest.approx(2e6))
    assert trial_value(budget + 768, {"mean_forward_velocity": 0.7, "survival_rate": 1.0}, bar, budget) == budget
    assert [nominal_step(s, 1000, 5000) for s in (1064, 2000, 4999, 5064)] == [1000, 2000, 4000, 5000]


def test_pruner_stops_trials_that_fall_behind_the_median_after_warmup():
    """Synthetic evaluations through the real observer and legkit's MedianPruner: which trials stop, and when."""
    bar = get_task("go2-walk").success
    every, budget = 1000, 5000
    space = Space(params=(), pruner={"startup_trials": 2, "warmup_steps": 2000})
    study = optuna.create_study(direction="minimize", pruner=pruner(space))

    def trial(velocities: list[float], survival: float = 1.0) -> Pruning:
        t = study.ask()
        observer = Pruning(t, bar, budget, every)
        for k, v in enumerate(velocities, start=1):
            step = k * every + 64  # evaluations come at the first update past each multiple
            if observer(step, {"mean_forward_velocity": v, "survival_rate": survival}) is False:
                break
        if observer.pruned_at is not None:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, observer.value)
        return observer

    slow = trial([0.1, 0.2, 0.3, 0.4, 0.45])  # never meets the bar: 5000 * (1 + 0.05)
    assert slow.pruned_at is None and slow.met_at is None and slow.value == pytest.approx(5250)
    assert slow.reported == {1000, 2000, 3000, 4000, 5000}
    quick = trial([0.1, 0.3, 0.6, 0.6, 0.6])  # meets it at the third evaluation: stops there
    assert quick.met_at == 3064 and quick.value == 3064 and quick.step == 3064 and quick.pruned_at is None
    # its value holds at the later steps too (the median there counts it)
    assert study.trials[1].intermediate_values == {1000: 7000, 2000: 6000, 3000: 3064, 4000: 3064, 5000: 3064}
    still = trial([0.0] * 5)  # standing: worse than both at 1000, but within the warmup; pruned at 2000
    assert still.pruned_at == 2000 and still.step == 2064
    fast = trial([0.2, 0.4, 0.55, 0.6, 0.6])  # better than the median at every step: never pruned
    assert fast.pruned_at is None and fast.met_at == 3064
    fallen = trial([0.3] * 5, survival=0.2)  # falls: pruned at the first step past the warmup
    assert fallen.pruned_at == 2000
    states = [t.state for t in study.trials]
    P, C = optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE
    assert states == [C, C, P, C, P]
    assert study.best_trial.number == 1 and study.best_value == 3064


def test_no_trial_is_pruned_before_the_startup_trials_are_complete():
    bar = get_task("go2-walk").success
    good, bad = {"mean_forward_velocity": 0.4, "survival_rate": 1.0}, {"mean_forward_velocity": 0.0, "survival_rate": 0.0}
    study = optuna.create_study(direction="minimize", pruner=pruner(Space(params=(), pruner={"startup_trials": 2,
                                                                                             "warmup_steps": 0})))

    def run(metrics: dict) -> Pruning:
        observer = Pruning(study.ask(), bar, 3000, 1000)
        for k in (1, 2, 3):
            if not observer(k * 1000, metrics):
                break
        if observer.pruned_at is None:
            study.tell(observer.trial, observer.value)
        else:
            study.tell(observer.trial, state=optuna.trial.TrialState.PRUNED)
        return observer

    run(good)
    assert run(bad).pruned_at is None  # one complete trial: still starting up, never pruned
    assert run(bad).pruned_at == 1000  # two complete: worse than their median, pruned at its first evaluation


# -- the search space ----------------------------------------------------------------------------------------

def test_go2_walk_space_is_valid_and_holds_the_shipped_config_as_trial_zero():
    space = load_space("go2-walk")
    shipped = build_config("go2-walk")
    record = Record("go2-walk", shipped.run.total_steps, (), space.to_dict())
    check_record(record, "go2-walk.tune.yaml")  # every bound, choice and enqueued value through --set
    keys = set(space.keys())
    for needed in ("ppo.learning_rate", "ppo.n_steps", "ppo.batch_size", "ppo.n_epochs", "ppo.net_arch",
                   "ppo.ent_coef", "ppo.gamma", "ppo.gae_lambda", "task.rewards.track_lin_vel.weight"):
        assert needed in keys
    assert sum(k.startswith("task.rewards.") for k in keys) >= 4
    (baseline,) = space.enqueue
    assert set(baseline) == keys
    weights = {n: {"weight": t.weight} for n, t in shipped.task.rewards.items()}
    tree = {"ppo": vars(shipped.ppo), "task": {"rewards": weights}}
    for p in space.params:
        node = tree
        for part in p.key.split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        value = list(node) if isinstance(node, tuple) else node
        assert baseline[p.key] == value, p.key
        assert p.contains(value), f"{p.key} = {value} is outside the space"
        if p.kind != "categorical":  # near the middle (of the log range for log scales)
            lo, hi, x = (map(math.log, (p.low, p.high, value)) if p.log else (p.low, p.high, value))
            assert 0.25 <= (x - lo) / (hi - lo) <= 0.75, p.key


# -- (2) a tiny real study, --show, best.yaml, and training it --------------------------------------------

@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Three tiny trials in the default storage (RUNS/tune/optuna.db); torch threads set by --set, as this
    machine's own setting."""
    root = tmp_path_factory.mktemp("tiny")
    settings = {k: v for k, v in SETTINGS.items() if k != "run.torch_threads"}
    space = _space_file(root / "tiny.tune.yaml", {**TINY_SPACE, "settings": settings})
    runs = root / "runs"
    assert main(["tune", "go2-walk", "--trials", "3", *TINY, "--set", "run.torch_threads=1", "--space", str(space),
                 "--runs", str(runs)]) == 0
    return root, runs


def test_every_trial_is_an_ordinary_run_folder(tiny_study, capfd):
    root, runs = tiny_study
    assert (runs / "tune" / "optuna.db").is_file()
    from legkit.tune.storage import open_storage

    study = optuna.load_study(study_name="go2-walk", storage=open_storage(f"sqlite:///{runs / 'tune' / 'optuna.db'}"))
    record = study.user_attrs["legkit"]
    assert record["task"] == "go2-walk" and record["steps"] == 2048
    assert record["sets"] == ["ppo.batch_size=128", "run.num_envs=8"]  # the machine's threads are not the study's
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2]
    folders = sorted((runs / "tune" / "go2-walk").iterdir())
    assert [f.name for f in folders] == ["trial-0000", "trial-0001", "trial-0002"]
    for t, folder in zip(trials, folders):
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert t.user_attrs["run"] == str(folder.resolve())
        for name in ("config.yaml", "meta.json", "evaluations.csv", "episodes.csv", "model.zip", "vecnormalize.pkl"):
            assert (folder / name).is_file(), name
        assert any((folder / "tb").rglob("events.out.tfevents.*"))
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["tune"]["study"] == "go2-walk" and meta["tune"]["trial"] == t.number
        assert meta["tune"]["state"] == t.state.name.lower()
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        assert cfg["run"]["video_every"] == 0 and cfg["run"]["total_steps"] == 2048
        assert cfg["run"]["torch_threads"] == 1 and cfg["run"]["num_envs"] == 8
        assert cfg["ppo"]["n_steps"] == t.params["ppo.n_steps"]
        assert cfg["ppo"]["learning_rate"] == pytest.approx(t.params["ppo.learning_rate"])
        assert not (folder / "videos").exists()
    capfd.readouterr()
    assert main(["eval", str(folders[0]), "--episodes", "1", "--set", "task.episode_seconds=0.2"]) == 0
    assert "evaluation of" in capfd.readouterr().out


def test_show_writes_best_yaml_that_train_reproduces(tiny_study, capfd):
    root, runs = tiny_study
    capfd.readouterr()
    assert main(["tune", "--show", "go2-walk", "--runs", str(runs)]) == 0
    out = capfd.readouterr().out
    assert "trial  state" in out and "learning_rate" in out and "parameter importances" in out
    assert len([line for line in out.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])]) == 3
    folder = runs / "tune" / "go2-walk"
    for png in ("history.png", "importances.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    best_yaml = folder / "best.yaml"
    trials = _trials(f"sqlite:///{runs / 'tune' / 'optuna.db'}", "go2-walk")
    best = min((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert f"trial {best.number} of study 'go2-walk'" in best_yaml.read_text()
    tree = yaml.safe_load(best_yaml.read_text())
    assert set(tree) <= {"ppo", "run", "task"} and not set(tree.get("run", {})) & set(OUTPUT_KEYS)

    again = root / "again"
    assert main(["train", "go2-walk", "--config", str(best_yaml), "--runs", str(again), "--set", "run.eval_episodes=0",
                 "--set", "run.torch_threads=1", "--no-progress"]) == 0
    (trained,) = list(again.iterdir())
    mine = yaml.safe_load((trained / "config.yaml").read_text())
    theirs = yaml.safe_load((Path(best.user_attrs["run"]) / "config.yaml").read_text())
    assert mine["ppo"] == theirs["ppo"] and mine["task"] == theirs["task"]
    assert {k: v for k, v in mine["run"].items() if k not in OUTPUT_KEYS} == \
        {k: v for k, v in theirs["run"].items() if k not in OUTPUT_KEYS}
    for key, value in best.params.items():  # the tuned keys themselves
        section, *rest = key.split(".")
        node = mine[section]
        for part in rest:
            node = node[part]
        assert node == (yaml.safe_load(value) if isinstance(value, str) else pytest.approx(value)), key
    assert json.loads((trained / "meta.json").read_text())["step"] == 2048


# -- (6) failing trials are recorded with their reason; the study goes on ------------------------------------

FAILING_SPACE = {
    "settings": SETTINGS,
    "pruner": {"startup_trials": 1, "warmup_steps": 0},
    "params": {
        "task.success.min_forward_velocity": {"choices": [-10.0, 10.0]},  # the bar: met at once, or never
        "ppo.n_steps": {"choices": [8, 64]},
        "ppo.batch_size": {"choices": [64, 256]},
        "ppo.learning_rate": {"choices": [0.0005, 1.0e10]},
        "task.rewards.track_lin_vel.weight": {"choices": [1.5, 1.0e308]},
        "task.rewards.track_ang_vel.weight": {"choices": [0.5, 1.0e308]},
    },
    "enqueue": [  # each value is valid alone (checked before the study starts); these trials fail anyway
        {"ppo.n_steps": 8, "ppo.batch_size": 256},  # a batch larger than the rollout (8 x 16 robots)
        {"ppo.n_steps": 64, "ppo.batch_size": 64, "task.rewards.track_lin_vel.weight": 1.0e308,
         "task.rewards.track_ang_vel.weight": 1.0e308},  # the reward overflows float32: the NaN guard
        {"ppo.n_steps": 64, "ppo.batch_size": 64, "ppo.learning_rate": 1.0e10},  # torch raises on the next step
        {"ppo.n_steps": 64, "ppo.batch_size": 64},  # meets the bar at its first evaluation
        {"ppo.n_steps": 64, "ppo.batch_size": 64, "task.success.min_forward_velocity": 10.0},  # worse: pruned
    ],
}


@pytest.fixture(scope="module")
def failing_study(tmp_path_factory):
    """A study whose first three trials fail (bad config, NaN, crash), whose fourth meets an easy bar (survival
    >= 0.5) and whose fifth, held to an impossible one, is pruned at its first evaluation."""
    root = tmp_path_factory.mktemp("failing")
    space = _space_file(root / "failing.tune.yaml", {**FAILING_SPACE, "enqueue": [
        {"ppo.learning_rate": 0.0005, "task.rewards.track_lin_vel.weight": 1.5,
         "task.rewards.track_ang_vel.weight": 0.5, "task.success.min_forward_velocity": -10.0, **e}
        for e in FAILING_SPACE["enqueue"]]})
    runs = root / "runs"
    url = f"sqlite:///{root / 'failing.db'}"
    args = ["tune", "go2-walk", "--trials", "5", "--steps", "2048", "--envs", "16",
            "--set", "task.success={min_survival: 0.5}", "--space", str(space), "--runs", str(runs),
            "--storage", url, "--study", "fails"]
    assert main(args) == 0
    return root, runs, url


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_failed_trials_keep_their_reason_and_the_study_goes_on(failing_study, capfd):
    root, runs, url = failing_study
    trials = _trials(url, "fails")
    F, C, P = optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert [t.state for t in trials] == [F, F, F, C, P]
    bad, nan, crash, good, pruned = trials
    assert bad.user_attrs["reason"].startswith("bad config: invalid ppo.batch_size = 256")
    assert bad.user_attrs.get("run") is None and not (runs / "tune" / "fails" / "trial-0000").exists()
    assert "NaN guard stopped training" in nan.user_attrs["reason"]
    assert crash.user_attrs["reason"].startswith("crash: ValueError")
    assert "ValueError" in crash.user_attrs["traceback"] and 'File "' in crash.user_attrs["traceback"]
    for t in (nan, crash):  # training had begun: the folder stays, saying why it failed
        meta = json.loads((Path(t.user_attrs["run"]) / "meta.json").read_text())
        assert meta["tune"]["state"] == "failed" and meta["tune"]["reason"] in t.user_attrs["reason"]
    # The last trial met the bar (survival >= 0.5) at its first evaluation and stopped right there.
    assert good.value == 1024 and good.user_attrs["outcome"] == "met the bar at step 1,024"
    run = Path(good.user_attrs["run"])
    rows = (run / "evaluations.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("1024,")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["step"] < 2048 and meta["tune"]["value"] == 1024 and (run / "model.zip").is_file()
    # Pruned at 1024: 2048 x (1 + 0.5) (velocity missed, survival met) is worse than the other trial's 1024 there.
    assert pruned.value == 3072 and pruned.user_attrs["reason"].startswith("pruned at step 1,024: value 3,072")
    run = Path(pruned.user_attrs["run"])
    meta = json.loads((run / "meta.json").read_text())
    assert meta["tune"]["state"] == "pruned" and meta["step"] < 2048 and (run / "checkpoints").is_dir()
    capfd.readouterr()  # an ordinary run: it resumes from its last checkpoint to the trial's budget
    assert main(["train", "--resume", str(run), "--steps", "2048", "--no-progress"]) == 0
    assert json.loads((run / "meta.json").read_text())["step"] >= 2048
    capfd.readouterr()
    assert main(["tune", "--show", "fails", "--storage", url, "--out", str(root / "shown")]) == 0
    out = capfd.readouterr().out
    for t in (bad, nan, crash, pruned):
        assert t.user_attrs["reason"] in out
    assert "need at least 2 complete trials" in out and (root / "shown" / "best.yaml").is_file()


def test_trials_of_a_fine_tuning_all_start_from_the_run_it_names(tiny_study, tmp_path):
    """finetune.from_run in a study: every trial starts from that run's final model (as legkit train would),
    recorded in its meta.json; not a fresh network that ignores the setting."""
    _, runs = tiny_study
    source = runs / "tune" / "go2-walk" / "trial-0000"
    arch = yaml.safe_load((source / "config.yaml").read_text())["ppo"]["net_arch"]
    space = _space_file(tmp_path / "ft.yaml", {
        "settings": {**SETTINGS, "ppo.net_arch": arch}, "pruner": {"startup_trials": 2, "warmup_steps": 0},
        "params": {"ppo.learning_rate": {"low": 1.0e-5, "high": 1.0e-4, "log": True}}})
    out = tmp_path / "runs"
    assert main(["tune", "go2-walk", "--trials", "2", *TINY, "--space", str(space), "--runs", str(out),
                 "--set", f"finetune.from_run={source}"]) == 0
    folders = sorted((out / "tune" / "go2-walk").iterdir())
    assert len(folders) == 2
    for folder in folders:
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["tune"]["state"] in ("complete", "pruned"), meta["tune"]
        assert "trial-0000" in json.dumps(meta["started_from"]), meta["started_from"]


# -- (5) bad input: one line, exit 2, nothing created --------------------------------------------------------

def _refused(args: list[str], capfd, *roots: Path) -> str:
    before = snapshot(*roots)
    capfd.readouterr()
    assert main(args) == 2
    line = one_error_line(capfd.readouterr().err)
    assert snapshot(*roots) == before, "a refused command changed files"
    return line


def test_unknown_parameter_is_refused_before_anything_is_made(tmp_path, capfd):
    space = _space_file(tmp_path / "typo.yaml", {**TINY_SPACE, "params": {
        **TINY_SPACE["params"], "ppo.learning_rat": {"low": 1.0e-4, "high": 1.0e-3}}})
    line = _refused(["tune", "go2-walk", "--trials", "1", *TINY, "--space", str(space), "--runs", str(tmp_path / "r")],
                    capfd, tmp_path)
    assert "parameter ppo.learning_rat" in line and "valid keys under ppo:" in line and "learning_rate" in line
    assert not (tmp_path / "r").exists()
    reward = _space_file(tmp_path / "reward.yaml", {**TINY_SPACE, "params": {"task.rewards.walk_fast.weight": {
        "low": 1.0, "high": 2.0}}})
    line = _refused(["tune", "go2-walk", "--trials", "1", *TINY, "--space", str(reward), "--runs", str(tmp_path / "r")],
                    capfd, tmp_path)
    assert "walk_fast" in line and "valid terms:" in line and "track_lin_vel" in line


def test_a_fine_tuning_start_that_cannot_be_used_is_refused_before_any_trial(tmp_path, capfd):
    space = _space_file(tmp_path / "tiny.yaml", TINY_SPACE)
    args = ["tune", "go2-walk", "--trials", "1", *TINY, "--space", str(space), "--runs", str(tmp_path / "r")]
    line = _refused([*args, "--set", f"finetune.from_run={tmp_path / 'nothing'}"], capfd, tmp_path)
    assert "finetune.from_run" in line and "nothing" in line
    first = tmp_path / "first.yaml"
    first.write_text("run: {total_steps: 2048}\n")
    line = _refused([*args, "--set", f"finetune.first={first}"], capfd, tmp_path)
    assert "finetune.first" in line and "finetune.from_run=RUN/first" in line, line
    assert not (tmp_path / "r").exists()


def test_task_without_a_search_space_is_refused(tmp_path, capfd):
    line = _refused(["tune", "humanoid-stand", "--trials", "1", "--runs", str(tmp_path / "r")], capfd, tmp_path)
    assert "has no search space" in line and "humanoid-stand.tune.yaml" in line and "--space" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


@pytest.mark.parametrize("storage, needle", [
    ("postgresql://postgres@127.0.0.1:{port}/optuna", "Connection refused"),  # a server that is not there
    ("sqlite:///{tmp}/missing/optuna.db", "does not exist"),  # a SQLite file in a folder that does not exist
    ("journal:{tmp}/missing/journal.log", "does not exist"),
    ("optuna.db", "not a storage URL"),
])
def test_storage_that_cannot_be_opened_is_refused(storage, needle, tmp_path, capfd):
    space = _space_file(tmp_path / "tiny.yaml", TINY_SPACE)
    url = storage.format(port=_closed_port(), tmp=tmp_path)
    line = _refused(["tune", "go2-walk", "--trials", "1", *TINY, "--space", str(space), "--runs", str(tmp_path / "r"),
                     "--storage", url], capfd, tmp_path)
    assert needle in line and "--storage" in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "missing").exists()


def test_study_of_another_task_is_refused(failing_study, tmp_path, capfd):
    root, runs, url = failing_study
    space = _space_file(tmp_path / "stand.yaml", {"settings": {"run.best_every": 1024},
                                                  "params": {"ppo.learning_rate": {"low": 1.0e-4, "high": 1.0e-3}}})
    line = _refused(["tune", "humanoid-stand", "--trials", "1", "--steps", "2048", "--space", str(space),
                     "--runs", str(runs), "--storage", url, "--study", "fails"], capfd, root, tmp_path)
    assert "study 'fails' exists for task 'go2-walk', not 'humanoid-stand'" in line
    line = _refused(["tune", "go2-walk", "--trials", "1", "--steps", "4096", "--runs", str(runs), "--storage", url,
                     "--study", "fails"], capfd, root)
    assert "trains each trial 2,048 steps" in line  # a worker joining with other settings
    line = _refused(["tune", "--show", "nope", "--storage", url], capfd, root)
    assert "no study 'nope'" in line and "fails" in line


# -- (3) two worker processes on one storage -----------------------------------------------------------------

@pytest.mark.parametrize("storage", ["default", "journal"])
def test_two_workers_share_one_study_without_losing_or_repeating_a_trial(storage, tmp_path):
    space = _space_file(tmp_path / "tiny.yaml", TINY_SPACE)
    runs = tmp_path / "runs"
    url = f"sqlite:///{runs / 'tune' / 'optuna.db'}" if storage == "default" else f"journal:{tmp_path / 'study.log'}"
    extra = [] if storage == "default" else ["--storage", url]
    done = run_legkit("tune", "go2-walk", "--trials", "4", "--jobs", "2", *TINY, "--space", str(space),
                      "--runs", str(runs), "--study", "par", *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[worker 0]" in done.stdout and "[worker 1]" in done.stdout
    trials = _trials(url, "par")
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both worker processes ran trials
    folders = {t.user_attrs["run"] for t in trials}
    on_disk = {str(p.resolve()) for p in (runs / "tune" / "par").iterdir() if p.name.startswith("trial-")}
    assert len(folders) == 4 and folders == on_disk  # one folder per trial, one trial per folder
    for t in trials:
        meta = json.loads((Path(t.user_attrs["run"]) / "meta.json").read_text())
        assert meta["tune"]["trial"] == t.number and meta["tune"]["study"] == "par"
        assert yaml.safe_load((Path(t.user_attrs["run"]) / "config.yaml").read_text())["run"]["nthread"] == 1
    starts = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    assert any(b[0] < a[1] for a, b in zip(starts, starts[1:])), "the workers never trained at the same time"


# -- (4) a real PostgreSQL server, two workers on it -----------------------------------------------------------

def _postgres_program(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's postgresql package puts it."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    return None


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of its own in tmp_path (unix socket only, no TCP), stopped afterwards: its URL.
    initdb refuses to run as root, so as root the server runs as the `postgres` system user."""
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian/Ubuntu: apt-get install postgresql; `make test` installs it "
                    "when run as root)")
    root = tmp_path / "pg"
    root.mkdir()
    as_user, opened = [], {}
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' system user to run the server as")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root, and there is no runuser to run the server as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
        os.chown(root, user.pw_uid, user.pw_gid)
        top = Path(tempfile.gettempdir()).resolve()
        for folder in root.resolve().parents:  # the server's user must get through the (0700) folders above it
            if folder == top or top not in folder.parents:
                break
            mode = folder.stat().st_mode & 0o7777
            if not mode & 0o001:
                opened[folder] = mode
                folder.chmod(mode | 0o001)  # search only: names inside stay unlisted
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=''", "start"], check=True, capture_output=True,
                       timeout=120)
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={port}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True,
                           timeout=120)
        for folder, mode in opened.items():
            folder.chmod(mode)


def test_two_workers_share_one_study_on_a_real_postgresql_server(postgres, tmp_path, capfd):
    space = _space_file(tmp_path / "tiny.yaml", TINY_SPACE)
    runs = tmp_path / "runs"
    args = ["tune", "go2-walk", "--trials", "1", *TINY, "--space", str(space), "--runs", str(runs),
            "--storage", postgres, "--study", "pg"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    workers = [subprocess.Popen([str(LEGKIT), *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]  # two machines, as it were
    outs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outs]
    assert sorted("(new)" in out for out, _ in outs) == [False, True]  # one made the study, the other joined it
    trials = _trials(postgres, "pg")
    assert sorted(t.number for t in trials) == [0, 1]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    folders = {t.user_attrs["run"] for t in trials}
    assert folders == {str(p.resolve()) for p in (runs / "tune" / "pg").iterdir()} and len(folders) == 2
    capfd.readouterr()
    assert main(["tune", "--show", "pg", "--storage", postgres, "--out", str(tmp_path / "shown")]) == 0
    out = capfd.readouterr().out
    assert "study 'pg' in postgresql+psycopg://postgres@/postgres" in out and "2 trials" in out
    assert (tmp_path / "shown" / "best.yaml").is_file()


def test_the_cli_starts_without_importing_optuna(tmp_path):
    """Optuna (and SQLAlchemy) load only when `legkit tune` runs: every other command starts as fast as before."""
    code = ("import sys; from legkit.cli import build_parser; build_parser(); "
            "print(sorted({'optuna', 'sqlalchemy'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
