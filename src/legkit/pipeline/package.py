"""What final_model/ says in words: metadata.json (sensors and units, joint order, servo limits, control rate),
README.md (running the policy on the robot with legkit.runtime) and SUMMARY.md (every stage's metrics).

All of it is read from the export's policy.json (legkit.export.policy) and the pipeline's record, so that it cannot
disagree with what was exported.
"""

from __future__ import annotations

from pathlib import Path

from legkit.train.checkpoints import atomic_write
from legkit.train.runs import write_json


def write_metadata(folder: Path, spec: dict) -> dict:
    """metadata.json: a digest of policy.json for whoever wires the robot."""
    recurrent = spec.get("recurrent")
    meta = {
        "robot": spec["robot"], "task": spec["task"], "control_rate_hz": spec["control"]["rate_hz"],
        "joint_order": [j["name"] for j in spec["joints"]],
        "servo_limits": [{"joint": j["name"], "range_rad": j["range"], "torque_limit_Nm": j["torque_limit"],
                          "max_speed_rad_s": j.get("max_speed"), "home_rad": j["home"]} for j in spec["joints"]],
        "sensors": [{k: t[k] for k in ("name", "start", "size", "units", "source", "provided_by")}
                    for t in spec["observation"]["terms"]],
        "observation_size": spec["observation"]["size"],
        "action": {"size": len(spec["joints"]), "range": [-1.0, 1.0], "targets": spec["control"]["targets"],
                   "action_scale": spec["control"].get("action_scale")},
        "memory": None if not recurrent else {
            "type": recurrent["type"], "layers": recurrent["layers"], "hidden_size": recurrent["hidden_size"],
            "kept_by": "runtime.py (zero after reset())"},
        "files": {"policy.onnx": "ONNX graph: raw observation in (normalization inside), action and joint targets out",
                  "policy.pt": "the same graph as TorchScript",
                  "policy.json": "the full export record (legkit.runtime reads it)",
                  "runtime.py": "legkit.runtime: runs policy.onnx with numpy and onnxruntime only",
                  "model.zip": "the trained Stable-Baselines3 model", "vecnormalize.pkl": "its observation normalizer"},
    }
    write_json(folder / "metadata.json", meta)
    return meta


def write_readme(folder: Path, spec: dict) -> None:
    """README.md: how to run the policy on the robot, with one line per reading it needs."""
    terms = spec["observation"]["terms"]
    readings = [t for t in terms if t["provided_by"] != "runtime"]
    calls = [f'        "behaviour": "{t.get("trained") or t["components"][0]}",' if t["name"] == "behaviour" else
             f'        "{t["name"]}": read_{t["name"]}(),' for t in readings]
    width = max(50, max(len(c) for c in calls) + 2)  # the comments in one column with the snippet's own
    lines = [f'{c:<{width}}# ' + ("the behaviour asked for, by name (or its one-hot)" if t["name"] == "behaviour" else
             f'{t["size"]} value{"s" if t["size"] != 1 else ""}' + (f', {t["units"]}' if t["units"] else ""))
             for c, t in zip(calls, readings)]
    memory = ("\nThe policy is an LSTM: the runtime keeps its memory (h, c) from step to step and zeroes it at "
              "reset().\n" if spec.get("recurrent") else "")
    load = "sb3_contrib.RecurrentPPO.load" if spec.get("recurrent") else "PPO.load"
    rate = spec["control"]["rate_hz"]
    text = f"""# {spec['robot']} policy ({spec['task']})

The policy of this folder runs on the robot with `runtime.py` (legkit.runtime: numpy and onnxruntime, nothing
else; `pip install numpy onnxruntime`). Copy the folder to the robot and run, at {rate:g} Hz:

```python
import time

from runtime import PolicyRuntime                 # the runtime.py of this folder

policy = PolicyRuntime("final_model")             # policy.onnx + policy.json
policy.reset()                                    # at every start: previous action, clock, memory zero
period = 1.0 / policy.rate_hz                     # {rate:g} Hz
while True:
    start = time.monotonic()
    targets = policy.step({{                       # readings by name: policy.inputs lists them
{chr(10).join(lines)}
    }})
    set_servo_angles(targets)                     # rad, in policy.joint_names order
    time.sleep(max(0.0, period - (time.monotonic() - start)))
```

`read_*` and `set_servo_angles` are the robot's own drivers: each reading as the policy was trained on it (the
runtime's docstring shows the driver-level forms it also takes, e.g. the ultrasonic in cm and the camera's image as
rows x columns; `policy.example_readings()` gives a valid dict). What each reading is (units, frame, where it comes
from) is in metadata.json (`sensors`) and policy.json (`observation.terms`, `sensors`); the joint order and the
servo limits (range, torque, speed: drive the servos no faster) are in metadata.json too. Joint angles are
absolute: the runtime subtracts the home pose itself. Readings marked "runtime" in metadata.json (the previous
action, the clock) are kept by the runtime: call step() at the control rate.
{memory}
Files: policy.onnx (the normalizer is inside the graph), policy.pt (TorchScript), model.zip and vecnormalize.pkl
(the trained Stable-Baselines3 model: `{load}`, `VecNormalize.load`), metadata.json, policy.json, runtime.py,
SUMMARY.md (what every stage of the pipeline measured).
"""
    atomic_write(folder / "README.md", text.encode())


def write_summary(path: Path, state: dict) -> None:
    """SUMMARY.md: every stage's status, time, settings and metrics, from pipeline.json."""
    out = [f"# Pipeline {state['pipeline']} '{state['name']}'", "",
           f"legkit {state.get('legkit_version')}, git {state.get('git_revision') or '-'}; created {state['created']}.",
           "", "| stage | status | duration (s) | attempts | ended |", "| --- | --- | --- | --- | --- |"]
    for stage, rec in state["stages"].items():
        out.append(f"| {stage} | {rec['status']} | {rec.get('duration_s', '-')} | {len(rec.get('attempts', []))} "
                   f"| {rec.get('ended', '-')} |")
    for stage, rec in state["stages"].items():
        out += ["", f"## {stage}", "", "settings: " + ", ".join(f"{k}={_fmt(v)}" for k, v in rec["config"].items()), ""]
        out += _metrics_md(rec.get("metrics") or {})
    atomic_write(path, ("\n".join(out) + "\n").encode())


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return "-" if value is None else str(value)


def _metrics_md(metrics: dict, prefix: str = "") -> list[str]:
    """Scalars as a two-column table; {row: {column: value}} mappings (per behaviour) as tables of their own; a
    mapping deeper than that (one clone's metrics, its closed loop inside) as a section of its own."""
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    out = ["| metric | value |", "| --- | --- |", *[f"| {k} | {_fmt(v)} |" for k, v in scalars.items()]
           ] if scalars else []
    for key, table in metrics.items():
        if not isinstance(table, dict):
            continue
        if any(isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()) for v in table.values()):
            out += ["", f"{prefix}{key}:", "", *_metrics_md(table, f"{prefix}{key}.")]
            continue
        rows = {r: v for r, v in table.items() if isinstance(v, dict)}
        flat = {r: v for r, v in table.items() if not isinstance(v, dict)}
        out += ["", f"{prefix}{key}:", ""]
        if flat:
            out += ["| metric | value |", "| --- | --- |", *[f"| {k} | {_fmt(v)} |" for k, v in flat.items()]]
        if rows:
            cols = list(dict.fromkeys(c for v in rows.values() for c in v))
            out += [""] if flat else []
            out += ["| | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 1) + "|"]
            out += [f"| {r} | " + " | ".join(_fmt(v.get(c)) for c in cols) + " |" for r, v in rows.items()]
    return out
