"""`legkit bench` in a short mode: every field is present and sane. No timing is asserted."""

from __future__ import annotations

import json
import math

from legkit.cli import main
from legkit.evaluate.bench import FIELDS

RATIOS = ("env_over_limit", "ppo_over_limit", "env_over_dummy", "env_over_subproc")


def test_bench_json_has_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--envs", "4,8", "--seconds", "0.05", "--hand-envs", "2", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "phys 1c" in printed and "env/lim" in printed
    result = json.loads(out.read_text())
    assert result["task"] == "go2-walk"
    assert result["machine"]["cores"] >= 1 and result["machine"]["mujoco"]
    assert [r["num_envs"] for r in result["results"]] == [4, 8]
    for row in result["results"]:
        for key in (*FIELDS, *RATIOS, "peak_rss_mb"):
            value = row[key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
        assert math.isclose(row["env_over_limit"], row["env"] / row["physics_all_cores"])
        assert math.isclose(row["env_over_dummy"], row["env"] / row["dummy_vec_env"])


def test_bench_rejects_bad_envs(capsys):
    assert main(["bench", "--envs", "64,abc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--envs" in err[0] and "64,256,1024" in err[0]
