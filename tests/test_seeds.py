"""Several seeds: statistics against hand-computed values, time to success, `train --seeds` and its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cli_helpers import SMOKE, one_error_line, run_legkit
from legkit import LegkitError
from legkit.evaluate.aggregate import bootstrap_ci, interquartile_mean, load_seed_group, summarize
from legkit.evaluate.success import COLUMNS, append_evaluation, read_evaluations, time_to_success
from legkit.tasks.config import SuccessBar
from legkit.train.seeds import parse_seeds

WALK_BAR = SuccessBar(min_forward_velocity=0.5, min_survival=0.95)


# -- statistics on synthetic numbers ------------------------------------------------------------------

def test_mean_and_std_are_the_sample_statistics():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4 and s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5.0 / 3.0))  # sum of squares 5, n - 1 = 3


@pytest.mark.parametrize("values, iqm", [
    ([1, 2, 3], 2.0),  # under 4 values nothing is dropped
    ([1, 2, 3, 4], 2.5),  # drop 1 and 4
    ([1, 2, 3, 4, 100], 3.0),  # drop 1 and 100: the outlier is gone
    ([1, 2, 3, 4, 5, 6, 7, 100], 4.5),  # drop two at each end
])
def test_interquartile_mean_drops_a_quarter_at_each_end(values, iqm):
    assert interquartile_mean(np.array(values, float)) == pytest.approx(iqm)


def test_bootstrap_interval_of_a_constant_is_the_constant():
    assert bootstrap_ci(np.full(5, 0.7)) == pytest.approx((0.7, 0.7))


def test_bootstrap_interval_of_many_normal_samples_matches_the_normal_theory():
    v = np.random.default_rng(3).normal(10.0, 2.0, size=400)
    lo, hi = bootstrap_ci(v)
    half = 1.96 * np.std(v, ddof=1) / np.sqrt(len(v))  # the textbook 95% interval of a mean
    assert lo == pytest.approx(np.mean(v) - half, abs=0.1 * half)
    assert hi == pytest.approx(np.mean(v) + half, abs=0.1 * half)


def test_bootstrap_interval_of_three_seeds_lies_between_their_extremes_and_is_repeatable():
    v = [0.61, 0.72, 0.55]
    lo, hi = bootstrap_ci(np.array(v))
    assert min(v) - 1e-12 <= lo < np.mean(v) < hi <= max(v) + 1e-12  # all-equal resamples: the extremes
    assert bootstrap_ci(np.array(v)) == (lo, hi)


def test_missing_values_are_left_out_and_counted():
    s = summarize([None, 4.0, float("nan"), 6.0])
    assert s.n == 2 and s.mean == 5.0
    assert math.isnan(summarize([None]).mean) and summarize([None]).n == 0
    assert math.isnan(summarize([3.0]).std)  # one seed has no spread


# -- time to success ------------------------------------------------------------------------------------

def _rows(*points):
    return [{"step": s, "wall_time_s": s / 1000.0, "mean_forward_velocity": v, "survival_rate": surv}
            for s, v, surv in points]


def test_time_to_success_is_the_first_evaluation_meeting_every_bound():
    rows = _rows((250_000, 0.2, 1.0), (500_000, 0.6, 0.9), (750_000, 0.55, 0.95), (1_000_000, 0.3, 1.0))
    t = time_to_success(rows, WALK_BAR)
    assert (t.step, t.wall_time_s, t.evaluated_to) == (750_000, 750.0, 1_000_000)  # 500k falls too often


def test_never_reached_has_no_time_and_says_how_far_it_looked():
    t = time_to_success(_rows((250_000, 0.2, 1.0), (500_000, 0.49, 1.0)), WALK_BAR)
    assert t.step is None and t.evaluated_to == 500_000
    assert time_to_success([], WALK_BAR).evaluated_to == 0
    assert not SuccessBar().met({"survival_rate": 1.0})  # a bar with no bound is never met


def test_evaluations_csv_round_trip(tmp_path):
    append_evaluation(tmp_path, 500, 1.5, {"mean_return": 3.0, "survival_rate": 1.0, "mean_forward_velocity": 0.6,
                                          "velocity_tracking_rms": None, "mean_base_height": 0.27})
    append_evaluation(tmp_path, 100, 0.5, {"mean_forward_velocity": float("nan")})
    rows = read_evaluations(tmp_path)
    assert [r["step"] for r in rows] == [100, 500]
    assert rows[0]["mean_forward_velocity"] is None and rows[1]["velocity_tracking_rms"] is None
    assert rows[1]["mean_forward_velocity"] == 0.6 and rows[1]["wall_time_s"] == 1.5


def test_evaluations_csv_keeps_the_columns_of_its_first_row(tmp_path):
    """Collisions and the stall share are columns when the run's first evaluation has them (an arena's task); a
    file begun without them (a run from before they were written, resumed) keeps its header, and its rows stay
    readable."""
    arena = {"mean_return": 3.0, "survival_rate": 1.0, "collisions_per_episode": 2.5, "stalled_time_share": 0.1}
    (tmp_path / "arena").mkdir()
    append_evaluation(tmp_path / "arena", 100, 1.0, arena)
    append_evaluation(tmp_path / "arena", 200, 2.0, {**arena, "collisions_per_episode": 0.5})
    rows = read_evaluations(tmp_path / "arena")
    assert [r["collisions_per_episode"] for r in rows] == [2.5, 0.5] and rows[0]["stalled_time_share"] == 0.1

    old = tmp_path / "old"
    old.mkdir()
    (old / "evaluations.csv").write_text(",".join(COLUMNS) + "\n100,1.0,3.0,1.0,0.1,0.2,0.09\n")
    append_evaluation(old, 200, 2.0, arena)
    header = (old / "evaluations.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    rows = read_evaluations(old)
    assert [r["step"] for r in rows] == [100, 200] and rows[1]["mean_return"] == 3.0
    assert all("collisions_per_episode" not in r for r in rows)

    plain = tmp_path / "plain"
    plain.mkdir()
    append_evaluation(plain, 100, 1.0, {"mean_return": 3.0, "stalled_time_share": None})
    assert (plain / "evaluations.csv").read_text().splitlines()[0].split(",") == list(COLUMNS)


@pytest.mark.parametrize("text, seeds", [("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]), ("3, 7-8", [3, 7, 8])])
def test_seed_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["a", "1,1", "-1", "4-2", ""])
def test_bad_seed_lists(text):
    with pytest.raises(LegkitError, match="--seeds"):
        parse_seeds(text)


# -- the command ----------------------------------------------------------------------------------------

def test_train_seeds_makes_one_run_per_seed_and_report_aggregates_them(tmp_path):
    args = [a for a in SMOKE if a != "--no-progress"]
    r = run_legkit(*args, "--seeds", "0,1", "--jobs", "2", "--set", "run.video_every=0", "--runs", str(tmp_path),
                   cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (parent,) = tmp_path.glob("go2-walk-seeds-*")
    info = json.loads((parent / "seeds.json").read_text())
    assert info["seeds"] == [0, 1] and info["runs"] == {"0": {"run": "seed-0", "exit_code": 0},
                                                        "1": {"run": "seed-1", "exit_code": 0}}
    for seed in (0, 1):
        meta = json.loads((parent / f"seed-{seed}" / "meta.json").read_text())
        assert meta["seed"] == seed and meta["finished"]
        assert read_evaluations(parent / f"seed-{seed}")  # the periodic evaluations behind time to success
        assert (parent / "logs" / f"seed-{seed}.log").stat().st_size > 0  # parallel: each seed's output in a log
    assert "survival" in r.stdout and "of 2 reached" in r.stdout  # the statistics, printed at the end
    group = load_seed_group(parent)
    evals = [json.loads((parent / f"seed-{s}" / "eval.json").read_text())["metrics"] for s in (0, 1)]
    stats = group.stats()
    assert stats["survival_rate"].mean == pytest.approx(np.mean([e["survival_rate"] for e in evals]))
    assert stats["mean_base_height"].std == pytest.approx(np.std([e["mean_base_height"] for e in evals], ddof=1))

    r = run_legkit("report", str(parent), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    agg = json.loads((parent / "report" / "aggregate.json").read_text())
    assert [s["seed"] for s in agg[0]["seeds"]] == [0, 1]
    assert (parent / "report" / "plots" / "seeds.png").stat().st_size > 10_000
    page = (parent / "report" / "report.html").read_text()
    assert "95% CI" in page and "seed-1" in page


def test_seeds_bad_input_is_one_line_and_makes_no_folder(tmp_path):
    for args, words in ((["--seeds", "0,0"], "names a seed twice"), (["--seeds", "0", "--seed", "3"], "--seed"),
                        (["--seeds", "0,1", "--jobs", "0"], "--jobs must be >= 1"),
                        (["--seeds", "0", "--set", "ppo.nope=1"], "nope"), (["--jobs", "2"], "give it with --seeds")):
        r = run_legkit("train", "go2-walk", *args, "--runs", str(tmp_path / "runs"), cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert words in one_error_line(r.stderr), (args, r.stderr)
    assert not (tmp_path / "runs").exists()


def test_report_refuses_a_mix_of_seed_groups_and_runs(tmp_path):
    group = tmp_path / "g"
    group.mkdir()
    (group / "seeds.json").write_text("{}")
    r = run_legkit("report", str(group), "pretrained:go2-walk", cwd=tmp_path)
    assert r.returncode == 2 and "not both" in one_error_line(r.stderr)


def test_stop_on_success_ends_training_at_the_first_evaluation_meeting_the_bar(tmp_path):
    r = run_legkit(*SMOKE, "--steps", "8192", "--set", "run.stop_on_success=true", "--set", "run.video_every=0",
                   "--set", "task.success.min_forward_velocity=null", "--set", "task.success.min_survival=0.0",
                   "--runs", str(tmp_path), cwd=tmp_path)  # a bar every policy meets: stop at the first evaluation
    assert r.returncode == 0, r.stderr
    (run,) = tmp_path.glob("go2-walk-*")
    meta = json.loads((run / "meta.json").read_text())
    rows = read_evaluations(run)
    assert len(rows) == 1 and meta["stopped_by"] == "stop_on_success"
    assert rows[0]["step"] <= meta["step"] < 8192
    assert "training stops here" in r.stdout


def test_stop_on_success_without_a_bar_is_one_line(tmp_path):
    r = run_legkit(*SMOKE, "--set", "run.stop_on_success=true", "--set", "task.success.min_forward_velocity=null",
                   "--set", "task.success.min_survival=null", "--runs", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "success bar" in one_error_line(r.stderr)
    assert not list(tmp_path.glob("go2-walk-*"))
