"""The stages' own work, each run in a child process by the pipeline (legkit.pipeline.runner):

    python -m legkit.pipeline.stages STAGE EXPERIMENT

The stage works in EXPERIMENT/STAGE.partial/ with the config recorded for it in pipeline.json, prints its
progress, and ends by writing metrics.json there. What it has done survives a kill: collect keeps one file per
behaviour, imitate a checkpoint per epoch; package starts again (it is quick). Fine-tuning is `legkit train`
itself (legkit.pipeline.runner.finetune_command).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from legkit import LegkitError
from legkit.config import from_dict
from legkit.pipeline.config import TASK, CollectSettings, ImitateSettings, PackageSettings, pipeline_task
from legkit.pipeline.state import output, partial, read_state
from legkit.train.runs import write_json

METRICS = "metrics.json"
DEMOS = "demos.npz"
BC_FILE = "best.pt"
RUN = "run"
"""finetune/run/: the fine-tuning's legkit run folder."""


def say(text: str) -> None:
    print(text, flush=True)


def collect_stage(work: Path, cfg: CollectSettings) -> dict:
    """Demonstrations of every behaviour into parts/BEHAVIOUR.npz (kept across a kill), then merged into demos.npz."""
    from legkit.imitate.collect import PIDOG_BEHAVIOURS, CollectConfig, collect
    from legkit.imitate.demos import load_demos, save_demos, summary

    task = pipeline_task()
    parts = work / "parts"
    parts.mkdir(exist_ok=True)
    t0, per = time.time(), {}
    for i, name in enumerate(cfg.behaviours):
        part = parts / f"{name}.npz"
        where = f"behaviour {i + 1}/{len(cfg.behaviours)} {name}"
        if part.exists():
            per[name] = load_demos(part).meta["summary"][name]
            say(f"{where}: kept from the previous attempt ({per[name]['samples']} samples)")
            continue
        start = time.time()
        # a seed per behaviour (seed + its index): its starts do not depend on what was collected before it
        settings = CollectConfig(seconds=cfg.seconds_per_behaviour, episode_seconds=cfg.episode_seconds,
                                 joint_pos_noise=cfg.joint_pos_noise, joint_vel_noise=cfg.joint_vel_noise,
                                 action_noise=cfg.action_noise, seed=cfg.seed + i)
        try:
            per[name] = collect(TASK, task, {name: PIDOG_BEHAVIOURS[name]}, settings, part)[name]
        except LegkitError as exc:
            raise LegkitError(f"collect {name}: {exc}") from None
        s, vx = per[name], per[name]["mean_forward_velocity"]
        say(f"{where}: {s['episodes']} episodes kept, {s['fallen']} fell, {s['samples']} samples, "
            f"{'-' if vx is None else f'{vx:+.3f}'} m/s ({time.time() - start:.1f} s)")
    demos = [load_demos(parts / f"{name}.npz") for name in cfg.behaviours]
    meta = {**demos[0].meta, "gaits": list(cfg.behaviours), "summary": per,
            "behaviours": {k: v for d in demos for k, v in d.meta["behaviours"].items()}}
    if any(d.meta["obs_layout"] != meta["obs_layout"] for d in demos):
        raise LegkitError("the behaviours' demonstrations have different observation layouts; collect them again "
                          "with --from collect")
    offsets = np.cumsum([0] + [int(d.episode.max()) + 1 for d in demos[:-1]])
    save_demos(work / DEMOS, np.concatenate([d.obs for d in demos]), np.concatenate([d.action for d in demos]),
               np.concatenate([np.full(len(d.obs), g, np.int16) for g, d in enumerate(demos)]),
               np.concatenate([d.episode + off for d, off in zip(demos, offsets)]), meta)
    sizes = summary(load_demos(work / DEMOS))
    say("samples per behaviour:")
    for name, s in sizes["gaits"].items():
        say(f"  {name:<14} {s['samples']:>7} samples in {s['episodes']:>3} episodes ({per[name]['fallen']} fell)")
    say(f"  {'all':<14} {sizes['samples']:>7} samples in {sizes['episodes']:>3} episodes: {DEMOS}")
    write_json(work / "summary.json", {**sizes, "collect": per})
    return {"samples": sizes["samples"], "episodes": sizes["episodes"], "obs_dim": sizes["obs_dim"],
            "seconds": round(time.time() - t0, 1),
            "per_behaviour": {n: {**sizes["gaits"][n], "fallen": per[n]["fallen"],
                                  "forward_velocity": per[n]["mean_forward_velocity"]} for n in cfg.behaviours}}


def after_collect(work: Path) -> None:
    """The per-behaviour files are in demos.npz now."""
    shutil.rmtree(work / "parts", ignore_errors=True)


def imitate_stage(work: Path, cfg: ImitateSettings, demos_path: Path) -> dict:
    """Behaviour cloning of each kind into KIND/ (continued from its checkpoint.pt after a kill), each followed by
    the closed-loop check per behaviour."""
    import torch

    from legkit.imitate.bc import CHECKPOINT, load_bc, train_bc
    from legkit.imitate.demos import load_demos
    from legkit.pipeline.closed_loop import closed_loop

    torch.set_num_threads(1)  # a small network: one thread is several times faster than two (measured, 2 cores)
    demos = load_demos(demos_path)
    out: dict = {}
    for kind in cfg.kinds:
        folder = work / kind
        folder.mkdir(exist_ok=True)
        if (folder / METRICS).exists():
            out[kind] = json.loads((folder / METRICS).read_text())
            say(f"{kind}: cloned in an earlier attempt (best epoch {out[kind]['best_epoch']})")
            continue
        if (folder / CHECKPOINT).exists():
            saved = torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=True)
            say(f"{kind}: resuming behaviour cloning after epoch {len(saved['train_losses'])} (from its {CHECKPOINT})")
        t0 = time.time()

        def progress(epoch: int, train: float, val: float, kind: str = kind, t0: float = t0) -> None:
            say(f"{kind} epoch {epoch}/{cfg.epochs}: training loss {train:.3e}, validation loss {val:.3e} "
                f"({time.time() - t0:.0f} s)")

        result = train_bc(demos, kind, out=folder, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                          seq_len=cfg.seq_len, val_fraction=cfg.val_fraction, patience=cfg.patience, seed=cfg.seed,
                          lstm_hidden=cfg.lstm_hidden, progress=progress, resume=True, inputs=cfg.inputs)
        bc_seconds = time.time() - t0
        say(f"{kind}: best epoch {result.best_epoch} (validation loss {result.best_val_loss:.3e})"
            f"{', stopped early' if result.stopped_early else ''}; {kind}/{BC_FILE}, final.pt, losses.png")
        metrics = {"kind": kind, "epochs": len(result.train_losses), "best_epoch": result.best_epoch,
                   "best_val_loss": result.best_val_loss, "final_train_loss": result.train_losses[-1],
                   "final_val_loss": result.val_losses[-1], "stopped_early": result.stopped_early,
                   "train_episodes": len(result.train_episodes), "val_episodes": len(result.val_episodes),
                   "seconds": round(bc_seconds, 1)}
        if cfg.eval_robots:
            say(f"{kind} closed loop: the cloned policy against each scripted gait, {cfg.eval_robots} robots x "
                f"{cfg.eval_seconds:g} s from the same starts")
            t1 = time.time()

            def show(name: str, m: dict) -> None:
                rms = "-" if m["joint_rms"] is None else f"{m['joint_rms']:.3f}"
                vx = "-" if m["forward_velocity"] is None else f"{m['forward_velocity']:+.3f}"
                say(f"  {name:<14} survival {m['survival']:.0%} (scripted {m['scripted_survival']:.0%}), joint RMS "
                    f"{rms} rad, forward {vx} m/s (scripted {m['scripted_forward_velocity'] or 0:+.3f})")

            loop = closed_loop(load_bc(folder / BC_FILE), pipeline_task(), list(demos.gaits), cfg.eval_robots,
                               cfg.eval_seconds, cfg.seed, progress=show)
            write_json(folder / "closed_loop.json", loop)
            metrics["closed_loop"] = loop
            metrics["closed_loop_seconds"] = round(time.time() - t1, 1)
        write_json(folder / METRICS, metrics)  # this kind is done: a resume keeps it
        out[kind] = metrics
    return out


def package_stage(work: Path, cfg: PackageSettings, run: Path) -> dict:
    """final_model/: the policy as ONNX (normalizer inside) and TorchScript, model.zip, metadata.json, README.md."""
    from legkit.export.policy import export_policy
    from legkit.pipeline.package import write_metadata, write_readme
    from legkit.train.runs import find_intact_policy

    policy, _ = find_intact_policy(run, None if cfg.checkpoint == "final" else "best")
    say(f"packaging {policy.folder} ({policy.label}, step {policy.step})")
    onnx = export_policy(policy, work, "onnx", cfg.parity_samples)
    say(f"ONNX: {onnx['onnx']['file']}, parity {onnx['parity']['max_abs_diff']:.2e} on "
        f"{onnx['parity']['observations']} observations")
    aside = work / ".torchscript"
    script = export_policy(policy, aside, "torchscript", cfg.parity_samples)
    (aside / script["torchscript"]["file"]).replace(work / script["torchscript"]["file"])
    shutil.rmtree(aside)
    say(f"TorchScript: {script['torchscript']['file']}, parity {script['parity']['max_abs_diff']:.2e}")
    shutil.copyfile(policy.model, work / "model.zip")
    shutil.copyfile(policy.norm, work / "vecnormalize.pkl")
    write_metadata(work, onnx)
    write_readme(work, onnx)
    return {"source": str(policy.folder), "checkpoint": policy.label, "step": policy.step,
            "onnx_parity_max_abs_diff": onnx["parity"]["max_abs_diff"],
            "torchscript_parity_max_abs_diff": script["parity"]["max_abs_diff"],
            "parity_observations": onnx["parity"]["observations"], "parity_tolerance": onnx["parity"]["tolerance"],
            "observation_size": onnx["observation"]["size"], "control_rate_hz": onnx["control"]["rate_hz"]}


def main(argv: list[str]) -> int:
    stage, folder = argv[0], Path(argv[1])
    state = read_state(folder)
    if state is None:
        raise LegkitError(f"'{folder}' holds no pipeline.json")
    work = partial(folder, stage)
    settings = state["stages"][stage]["config"]
    if (work / METRICS).exists():  # finished before its process was stopped: nothing is left to do
        say(f"{stage}: finished in an earlier attempt")
    elif stage == "collect":
        metrics = collect_stage(work, from_dict(CollectSettings, settings))
    elif stage == "imitate":
        metrics = imitate_stage(work, from_dict(ImitateSettings, settings), output(folder, "collect") / DEMOS)
    elif stage == "package":
        metrics = package_stage(work, from_dict(PackageSettings, settings), output(folder, "finetune") / RUN)
    else:
        raise LegkitError(f"stage '{stage}' does not run here; valid: collect, imitate, package")
    if not (work / METRICS).exists():
        write_json(work / METRICS, metrics)
    if stage == "collect":
        after_collect(work)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LegkitError as exc:
        print(f"legkit: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
