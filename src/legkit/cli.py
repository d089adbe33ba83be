"""The `legkit` command. Every subcommand is a thin call into the rooms below it."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from legkit import EVAL_SEED, LegkitError, __version__

if TYPE_CHECKING:
    from legkit.train.config import Config
    from legkit.train.resume import ResumePlan
    from legkit.train.runs import Policy
    from legkit.train.supervise import Supervision
    from legkit.train.trainer import ModelStart
    from legkit.train.wandb_log import WandbSettings


class _Failed(Exception):
    """A check ran and failed: exit code 1 (bad input is 2)."""


def count(text: str) -> int:
    """A whole number as people type it: 3000000, 3_000_000, 3e6 or 1.5e6 (argparse type)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number (e.g. 3000000, 3e6)") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of steps")
    return int(value)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like every other legkit error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"legkit: error: {message} (see '{self.prog} --help')\n")


def cmd_list(args: argparse.Namespace) -> None:
    from legkit.robots import ROBOTS
    from legkit.tasks import TASKS, get_task
    from legkit.train.config import default_recipe
    from legkit.train.runs import pretrained_names

    print("robots:")
    for name, spec in ROBOTS.items():
        print(f"  {name:<16} {spec.description}")
    print("tasks:")
    for name, (_, desc) in TASKS.items():
        stages = len(get_task(name).curriculum.stages)  # counted from the task, so that it cannot go stale
        recipe = default_recipe(name)
        trained = f"; trained by its recipe configs/recipes/{recipe.name}" if recipe else ""
        print(f"  {name:<16} {desc}{f' ({stages} curriculum stages)' if stages else ''}{trained}")
    print("pretrained policies:")
    for name in pretrained_names() or ["(none)"]:
        print(f"  pretrained:{name}")


def cmd_train(args: argparse.Namespace) -> None:
    from legkit.train.config import config_file, default_recipe

    if args.config:
        args.config = config_file(args.config)  # a file, or a packaged recipe by name
    elif args.task and not args.resume and (recipe := default_recipe(args.task)) is not None:
        args.config = str(recipe)  # the task's own recipe (go2-joystick: two stages)
        print(f"config: the packaged recipe {args.task} ({args.config}); --config FILE or NAME trains otherwise")
    if args.seeds is not None:
        return _train_seeds(args)
    if args.jobs is not None:
        raise LegkitError("--jobs runs seeds in parallel: give it with --seeds")
    with contextlib.ExitStack() as held:  # the run's lock (train/lock.py): from before the run is read to the end
        _train_command(args, held)


def _size_sets(args: argparse.Namespace) -> list[str]:
    """The --set strings of a train command: its --set, then what --steps and --envs stand for."""
    sets = list(args.set or [])
    if args.steps is not None:
        sets.append(f"run.total_steps={args.steps}")
    if args.envs is not None:
        sets.append(f"run.num_envs={args.envs}")
    return sets


def _physics_sets(args: argparse.Namespace, sets: list[str], resolve) -> list[str]:
    """`sets`, then with --physics NAME the preset's --set strings for the task that `resolve(sets)` (a Config)
    runs, so that the run's config records them like any --set (legkit.tasks.config.physics_preset_sets)."""
    if not getattr(args, "physics", None):
        return sets
    from legkit.sim.scene import physics_preset
    from legkit.tasks.config import physics_preset_sets

    physics_preset(args.physics)  # an unknown name fails before any config is read
    preset = physics_preset_sets(args.physics, resolve(sets).task, sets)
    print(f"physics preset {args.physics}: {', '.join(preset)}")
    return [*sets, *preset]


def _policy_sets(args: argparse.Namespace, policy: Policy) -> list[str]:
    """The --set strings for a saved policy's task: --set, then what --physics stands for on it."""
    from legkit.evaluate.rollout import load_run_config

    return _physics_sets(args, list(args.set or []), lambda s: load_run_config(policy, s))


def _train_seeds(args: argparse.Namespace) -> None:
    """`--seeds`: the config checked once, a parent folder, one `legkit train` process per seed, then statistics."""
    from legkit.evaluate.aggregate import format_group, load_seed_group
    from legkit.train.config import build_config
    from legkit.train.runs import new_run_dir
    from legkit.train.seeds import parse_seeds, train_seeds

    seeds = parse_seeds(args.seeds)
    clash = [flag for flag, given in (("--seed", args.seed is not None), ("--resume", args.resume),
                                      ("--run-folder", args.run_folder)) if given]
    if clash:
        raise LegkitError(f"--seeds trains one run per seed: it cannot be combined with {', '.join(clash)}")
    if not args.task:
        raise LegkitError("name a task to train with --seeds (see 'legkit list')")
    jobs = 1 if args.jobs is None else args.jobs
    if jobs < 1:
        raise LegkitError(f"--jobs must be >= 1, got {jobs}")
    jobs = min(jobs, len(seeds))
    sets = _physics_sets(args, _size_sets(args), lambda s: build_config(args.task, args.config, s))
    cfg = build_config(args.task, args.config, sets)  # bad input: one line, before any folder is made
    if cfg.finetune.bc_policy is not None:  # and the cloned policy's files, once for every seed
        from legkit.imitate.start import prepare

        prepare(cfg)
    if cfg.finetune.from_run is not None:  # and the source run's model, once for every seed
        from legkit.train.from_run import prepare as prepare_from_run

        prepare_from_run(cfg)
    if cfg.finetune.first is not None:  # and the first stage's config; each seed's run trains its own
        from legkit.train.stages import first_config

        first_config(cfg, args.config, sets)
    child = [args.task, *(["--config", str(Path(args.config).resolve())] if args.config else []),
             *[a for s in sets for a in ("--set", s)]]
    if args.no_progress or jobs > 1:
        child.append("--no-progress")
    if args.supervise:
        child.append("--supervise")
    if args.max_restarts is not None:
        child += ["--max-restarts", str(args.max_restarts)]
    if args.chunk_steps is not None:
        child += ["--chunk-steps", str(args.chunk_steps)]
    if args.wandb is not None:
        child += ["--wandb", args.wandb] if args.wandb else ["--wandb"]
    parent = new_run_dir(f"{args.name or args.task}-seeds", Path(args.runs))
    print(f"seed group: {parent} ({len(seeds)} seeds, {jobs} at a time)")
    codes = train_seeds(parent, seeds, child, jobs, {"task": args.task, "command": " ".join(sys.argv)})
    print(format_group(load_seed_group(parent)))
    failed = [s for s, c in codes.items() if c != 0]
    if failed:
        print(f"legkit: seeds {', '.join(map(str, failed))} failed; their output is above"
              + (f" and in {parent / 'logs'}" if jobs > 1 else ""), file=sys.stderr)
        raise _Failed


def _train_command(args: argparse.Namespace, held: contextlib.ExitStack) -> None:
    import copy

    from legkit.config import load_yaml
    from legkit.train import stages
    from legkit.train.config import build_config
    from legkit.train.resume import plan_resume
    from legkit.train.lock import hold_run
    from legkit.train.runs import CONFIG, new_run_dir, resolve_run
    from legkit.train.wandb_log import wandb_settings

    wandb = wandb_settings(args.wandb) if args.wandb is not None else None  # installed? (imports it: before a fork)
    sets = _size_sets(args)
    if args.seed is not None:
        sets.append(f"run.seed={args.seed}")
    # Everything is checked before a run folder is made or a saved file is touched.
    plan, first = None, None  # first: what is left of the stage finetune.first trains before this run
    if args.resume:
        if args.task or args.config or args.name:
            raise LegkitError("--resume continues a run with its saved config; give only --steps or --set with it")
        if args.resume.startswith("pretrained:"):
            raise LegkitError("a pretrained policy cannot be resumed; train a new run with legkit train TASK")
        run = resolve_run(args.resume)
        held.enter_context(hold_run(run))  # one trainer per run: before the resume reads or repairs it
        saved_tree = load_yaml(str(run / CONFIG))
        task_name = saved_tree.get("task_name", "")
        saved = build_config(task_name, base=copy.deepcopy(saved_tree))
        sets = _physics_sets(args, sets, lambda s: build_config(task_name, sets=s, base=copy.deepcopy(saved_tree)))
        cfg = build_config(task_name, sets=sets, base=copy.deepcopy(saved_tree))
        if cfg.finetune.first is not None and not stages.main_begun(run):  # cut before its main stage began
            first = stages.resume_first(run, saved, cfg)
        else:
            plan = plan_resume(run, saved, cfg)  # train() rewrites config.yaml once the checkpoint has loaded
    else:
        if not args.task:
            raise LegkitError("name a task to train (see 'legkit list'), or --resume RUN")
        sets = _physics_sets(args, sets, lambda s: build_config(args.task, args.config, s))
        cfg = build_config(args.task, args.config, sets)
        if cfg.finetune.first is not None:
            first = stages.FirstStage(stages.first_config(cfg, args.config, sets))
    todo = first is not None and not first.done  # the first stage is trained (or resumed) before this run
    _check_run(cfg, plan)
    from legkit.train.trainer import model_start

    start = model_start(cfg, resumed=plan is not None)  # with finetune.first: made once the first stage is trained
    first_start = None
    if todo:
        _check_run(first.cfg, first.plan)
        first_start = model_start(first.cfg, resumed=first.plan is not None)
    supervision = _supervision(args, [cfg, *([first.cfg] if todo else [])])
    if not args.resume and args.run_folder:  # a seed of `--seeds`: the folder its parent chose
        run = Path(args.run_folder)
        try:
            run.mkdir(parents=True)
        except FileExistsError:
            raise LegkitError(f"run folder '{run}' exists; a new run never reuses one") from None
        held.enter_context(hold_run(run))
    elif not args.resume:
        run = new_run_dir(args.name or args.task, Path(args.runs))
        held.enter_context(hold_run(run))
    print(f"run folder: {run}")
    try:
        if todo:
            if not args.resume:
                stages.begin(run, first.cfg, cfg)
            print(f"first stage (finetune.first = {cfg.finetune.first}): {run / stages.FIRST}")
            _train_run(args, first.cfg, run / stages.FIRST, first.plan, first_start, supervision, wandb, run)
        if first is not None:
            start = stages.main_start(run, cfg)
            print(f"main stage: {run}")
        _train_run(args, cfg, run, plan, start, supervision, wandb)
    except BaseException:
        if not args.resume and not stages.began(run):  # failed before training began: leave no folder behind
            import shutil

            shutil.rmtree(run, ignore_errors=True)
        raise


def _check_run(cfg: Config, plan: ResumePlan | None) -> None:
    """What must hold before a run of `cfg` trains, new or resumed as `plan` says; one line otherwise."""
    from legkit.media.video import TrainingClips

    if cfg.run.stop_on_success and not (cfg.run.best_every and cfg.task.success.bounds()):
        raise LegkitError("run.stop_on_success needs the periodic evaluation (run.best_every > 0) and a success bar "
                          f"(task.success; this task's: {cfg.task.success.describe()})")
    if cfg.run.video_every and cfg.run.video_every <= cfg.run.total_steps:
        TrainingClips.for_run(cfg).check()  # no OpenGL: say so now, not after the first million steps
    if plan is None and cfg.task.gait is not None:  # a residual task: its baseline must walk the right way
        from legkit.evaluate.scripted import check_baseline

        speed = check_baseline(cfg)
        if speed is not None:
            print(f"baseline {cfg.task.gait.type}: {speed:+.3f} m/s along the commanded direction")


def _supervision(args: argparse.Namespace, cfgs: list[Config]) -> Supervision | None:
    """The Supervision that --supervise, --max-restarts and --chunk-steps ask for, checked against every config in
    `cfgs` (the run's stages); None without them."""
    if not (args.supervise or args.max_restarts is not None or args.chunk_steps is not None):
        return None
    from legkit.train.supervise import Supervision

    given = {"max_restarts": args.max_restarts} if args.max_restarts is not None else {}
    supervision = Supervision(chunk_steps=args.chunk_steps, **given)
    for cfg in cfgs:
        supervision.check(cfg)
    return supervision


def _train_run(args: argparse.Namespace, cfg: Config, run: Path, plan: ResumePlan | None, start: ModelStart | None,
               supervision: Supervision | None, wandb: WandbSettings | None, resume_as: Path | None = None) -> None:
    """Train run folder `run` (new, or resumed as `plan` says), then report its best model and evaluate it;
    `resume_as`: the folder `legkit train --resume` continues it as (a first stage's: its run's)."""
    from legkit.evaluate.best import BestModel
    from legkit.media.video import TrainingClips
    from legkit.train.runs import write_json
    from legkit.train.trainer import train

    clips = TrainingClips.for_run(cfg)
    observers = (_success_stop(cfg.task.success),) if cfg.run.stop_on_success else ()
    best = (BestModel(cfg, run, cfg.run.best_every, cfg.run.best_episodes, observers),) if cfg.run.best_every else ()
    if supervision is None:
        meta = train(cfg, run, resume=plan, progress_bar=not args.no_progress, render_clip=clips,
                     extra_callbacks=best, wandb=wandb, start=start)
    else:  # each stretch of training in a child process (it gets its own copy of `best`)
        from legkit.train.supervise import supervise

        meta = supervise(run, cfg, plan, lambda p, chunk: train(
            cfg, run, resume=p, progress_bar=not args.no_progress, render_clip=clips, extra_callbacks=best,
            chunk_steps=chunk, wandb=wandb, start=start), supervision, resume_as)
    if best and best[0].stopped_by and supervision is None:
        saved = json.loads((run / "meta.json").read_text())  # stop_on_success: fewer steps than asked, on purpose
        write_json(run / "meta.json", {**saved, "stopped_by": best[0].stopped_by})
    print(f"trained {meta['step']} steps in {meta['wall_time_s']:.0f} s")
    if best and (best[0].history or (supervision is not None and (run / "best" / "meta.json").exists())):
        kept = json.loads((run / "best" / "meta.json").read_text())
        print(f"best model: step {kept['step']} (mean return {kept['eval']['mean_return']:.1f} over "
              f"{kept['eval']['episodes']} evaluation episodes), in {run / 'best'}; use --checkpoint best")
    if cfg.run.eval_episodes:
        _evaluate_and_save(run, None, cfg.run.eval_episodes, [], run / "eval.json")


def _success_stop(bar):
    """A BestModel observer that ends training at the first evaluation meeting `bar` (run.stop_on_success)."""
    def stop_on_success(step: int, metrics: dict) -> bool:
        if bar.met(metrics):
            print(f"success bar ({bar.describe()}) met at step {step:,}: training stops here (run.stop_on_success)")
            return False
        return True
    return stop_on_success


def _evaluate_and_save(run: Path, checkpoint: str | None, episodes: int, sets: list[str], out: Path | None,
                       seed: int = EVAL_SEED) -> dict:
    from legkit.evaluate import evaluate, format_table
    from legkit.train.runs import find_policy, write_json

    policy = find_policy(run, checkpoint)
    result = evaluate(policy, episodes, sets, seed=seed)
    other = "" if seed == EVAL_SEED else f", seed {seed}"
    print(f"evaluation of {policy.folder} ({policy.label}, {episodes} episodes{other}, deterministic)")
    print(format_table(result["metrics"]))
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")
    return result


def _writable_file(arg: str, flag: str) -> Path:
    """`arg` as an output file whose folder exists, checked before any work is done."""
    out = Path(arg)
    if out.is_dir():
        raise LegkitError(f"{flag} '{arg}' is a folder; give a file name such as {Path(arg) / 'result.json'}")
    folder = out.parent
    if not folder.is_dir():
        raise LegkitError(f"{flag} '{arg}': the folder '{folder}' does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK):
        raise LegkitError(f"{flag} '{arg}': the folder '{folder}' is not writable")
    return out


def _intact_policy(run: Path, checkpoint: str | None) -> Policy:
    """The policy `checkpoint` of `run`, checked against its checksums; one warning line per corrupt newer
    checkpoint that 'latest' skipped (legkit.train.runs.find_intact_policy)."""
    from legkit.train.runs import find_intact_policy

    policy, skipped = find_intact_policy(run, checkpoint)
    for folder, problem in skipped:
        print(f"legkit: warning: checkpoint {folder.name} is corrupt ({problem}); using {policy.label}, "
              "the newest intact one", file=sys.stderr)
    return policy


def eval_json_name(label: str, sets: list[str], seed: int = EVAL_SEED) -> str:
    """RUN/eval-<checkpoint>[-seed-<seed>][-set-<hash>].json: beside the training's own eval.json, never over it."""
    name = f"eval-{label}" + ("" if seed == EVAL_SEED else f"-seed-{seed}")
    if not sets:
        return f"{name}.json"
    import hashlib

    digest = hashlib.sha1("\n".join(sets).encode()).hexdigest()[:8]
    return f"{name}-set-{digest}.json"


def cmd_eval(args: argparse.Namespace) -> None:
    from legkit.train.runs import resolve_run, write_json

    run = resolve_run(args.run)
    if args.episodes < 1:
        raise LegkitError(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:
        raise LegkitError(f"--seed must be a whole number >= 0, got {args.seed}")
    policy = _intact_policy(run, args.checkpoint)
    sets = _policy_sets(args, policy)
    if args.json:
        out = _writable_file(args.json, "--json")
    elif args.run.startswith("pretrained:"):
        out = None
    else:  # the training's eval.json stays the run's own evaluation
        label = policy.label
        out = run / eval_json_name(f"{label}-sweep" if args.sweep else label, sets, args.seed)
    if not args.sweep:
        _evaluate_and_save(run, None if policy.label == "final" else policy.label, args.episodes, sets, out,
                           args.seed)
        return
    from legkit.evaluate.sweep import SWEEP, format_sweep, sweep

    print(f"command sweep of {policy.folder} ({policy.label}, {len(SWEEP)} commands x {args.episodes} episodes, "
          "deterministic)")
    result = sweep(policy, args.episodes, sets, seed=args.seed)
    print(format_sweep(result))
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")


def cmd_validate(args: argparse.Namespace) -> None:
    from legkit.evaluate.validate import format_checks, validate
    from legkit.train.runs import resolve_run, write_json

    run = resolve_run(args.run)
    policy = _intact_policy(run, args.checkpoint)
    out = _writable_file(args.json, "--json") if args.json else None
    result = validate(policy, _policy_sets(args, policy), robustness_only=args.robustness_only)
    print(f"validation of {policy.folder} ({policy.label})")
    print(format_checks(result))
    if out is None and not args.run.startswith("pretrained:"):
        # the robustness scenarios alone never replace a whole suite's record
        out = run / (f"validate-robustness-{policy.label}.json" if args.robustness_only else "validate.json")
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")
    if not result["passed"]:
        raise _Failed()


def cmd_diagnose(args: argparse.Namespace) -> None:
    from legkit.evaluate.diagnose import diagnose, format_diagnosis
    from legkit.train.runs import PRETRAINED_PREFIX, resolve_run, write_json

    run = resolve_run(args.run)
    out = _writable_file(args.json, "--json") if args.json else None
    result = diagnose(run, args.run, window=args.window)
    print(format_diagnosis(result))
    if out is None and not args.run.startswith(PRETRAINED_PREFIX) and os.access(run, os.W_OK):
        out = run / "diagnose.json"
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")
    if not result["passed"]:
        raise _Failed()


def cmd_export(args: argparse.Namespace) -> None:
    from legkit.export.policy import FORMATS, export_policy, onnx_latency, runtime_latency
    from legkit.train.runs import PRETRAINED_PREFIX, resolve_run

    if args.format not in FORMATS:
        raise LegkitError(f"--format {args.format} is not an export format; valid: {', '.join(FORMATS)}")
    run = resolve_run(args.run)
    policy = _intact_policy(run, args.checkpoint)
    if args.out:
        out = Path(args.out)
    elif args.run.startswith(PRETRAINED_PREFIX):
        out = Path(f"export-{args.run[len(PRETRAINED_PREFIX):]}")
    else:
        out = run / f"export-{policy.label}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LegkitError(f"--out {out} already exists and is not empty; choose another folder or remove it "
                          "(an export is never overwritten)")
    spec = export_policy(policy, out, args.format)
    par = spec["parity"]
    print(f"exported {policy.folder} ({policy.label}) to {out} ({args.format})")
    print(f"inputs: {', '.join(t['name'] for t in spec['observation']['terms'])} ({spec['observation']['size']} values)"
          + (f"; needs an estimator for {', '.join(spec['observation']['needs_estimator'])}"
             if spec["observation"]["needs_estimator"] else ""))
    print(f"parity: max |export - SB3| = {par['max_abs_diff']:.2e} on {par['observations']} observations "
          f"(tolerance {par['tolerance']:g})")
    if args.format == "onnx":
        lat, step = onnx_latency(out / "policy.onnx", spec["observation"]["size"]), runtime_latency(out)
        print(f"latency, batch 1, one thread: onnxruntime median {lat['median_us']:.1f} us, p99 {lat['p99_us']:.1f} us; "
              f"whole runtime step median {step['median_us']:.1f} us, p99 {step['p99_us']:.1f} us")


def cmd_sim2sim(args: argparse.Namespace) -> None:
    from legkit.evaluate.metrics import format_table
    from legkit.export.sim2sim import read_export, sim2sim
    from legkit.robots import get_robot
    from legkit.train.runs import write_json

    export = Path(args.export)
    spec = read_export(export)
    if args.episodes < 1:
        raise LegkitError(f"--episodes must be at least 1, got {args.episodes}")
    model = Path(args.model) if args.model else get_robot(spec["robot"]).xml()
    if not model.is_file():
        raise LegkitError(f"--model {model} is not a file; give the MJCF (.xml) of a {spec['robot']}")
    command = None
    if args.command is not None:
        try:
            command = tuple(float(x) for x in args.command.split(","))
        except ValueError:
            command = ()
        if len(command) != 3:
            raise LegkitError(f"--command {args.command} is not vx,vy,yaw (three numbers: m/s, m/s, rad/s)")
    if args.against and command is None:
        raise LegkitError("--against needs --command vx,vy,yaw: both sides must run the same command")
    out = _writable_file(args.json, "--json") if args.json else None
    ref = None
    if args.against:  # eval first: sim2sim starts each episode where eval's started (paired episodes)
        from legkit.evaluate.metrics import compute_metrics
        from legkit.export.sim2sim import eval_reference

        trace = eval_reference(args.against, command, args.episodes, args.seconds)
        ref = compute_metrics(trace)
    result = sim2sim(export, model, args.episodes, command, args.seconds, args.seed, file_physics=args.file_physics,
                     starts=trace.start if ref is not None else None)
    where = "its own model" if not args.model else str(model)
    print(f"sim2sim of {export} on {where} ({args.episodes} episodes"
          + (f", command {list(command)}" if command else ", commands drawn from the exported ranges")
          + (", ground plane added" if result["ground_added"] else "") + ")")
    if result["physics_changed"]:
        print("simulator options as trained (--file-physics keeps the file's): " + ", ".join(
            f"{k} {v[1]} (file: {v[0]})" for k, v in result["physics_changed"].items()))
    print(format_table(result["metrics"]))
    if args.against:
        from legkit.export.sim2sim import against_eval

        result["against"] = against_eval(args.against, ref, result)
        print(f"against legkit eval of {args.against} under the same command ({args.episodes} episodes, each "
              "started from the same initial state on both sides):")
        for key, row in result["against"]["metrics"].items():
            rel = f"{row['relative']:+.1%}" if row["relative"] is not None else "-"
            print(f"  {key:<30} eval {row['eval']:.3f}  sim2sim {row['sim2sim']:.3f}  ({rel})")
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")


def cmd_bench(args: argparse.Namespace) -> None:
    from legkit.evaluate.bench import format_bench, run_bench

    try:
        envs = tuple(int(x) for x in args.envs.split(","))
    except ValueError:
        raise LegkitError(f"--envs must be comma-separated integers such as 64,256,1024, got '{args.envs}'") from None
    if not envs or min(envs) < 1:
        raise LegkitError(f"--envs must be positive integers, got '{args.envs}'")
    if args.seconds <= 0:
        raise LegkitError(f"--seconds must be positive, got {args.seconds}")
    if args.json:
        _writable_file(args.json, "--json")
    if args.physics == "all":  # every preset in one run, interleaved, so that their rates compare
        from legkit.evaluate.bench import bench_presets, format_presets

        result = bench_presets(args.task, envs, args.seconds)
        print(format_presets(result))
    else:
        from legkit.train.config import build_config

        sets = _physics_sets(args, [], lambda s: build_config(args.task, sets=s))
        result = run_bench(args.task, envs, args.seconds, hand_envs=args.hand_envs, include_ppo=not args.no_ppo,
                           sets=sets)
        print(format_bench(result))
    if args.json:
        from legkit.train.runs import write_json

        write_json(Path(args.json), result)
        print(f"wrote {args.json}")


# -- media: videos, progression, plots, report, viewer -------------------------------------------------

def _video_spec(args: argparse.Namespace, quality: str = "high"):
    from legkit.media.render import FIXED_SIDE, CameraConfig
    from legkit.media.video import VideoSpec, check_spec

    spec = VideoSpec(seconds=args.seconds, width=args.width, height=args.height, fps=args.fps, quality=quality,
                     camera=FIXED_SIDE if args.camera == "fixed" else CameraConfig(),
                     overlay=not getattr(args, "no_overlay", False),
                     camera_inset=not getattr(args, "no_camera_inset", False))
    check_spec(spec)
    return spec


def _mp4_out(arg: str | None, default: Path) -> Path:
    out = Path(arg) if arg else default
    if out.suffix.lower() != ".mp4":
        raise LegkitError(f"--out must name an .mp4 file, got '{out}'")
    return out


def cmd_video(args: argparse.Namespace) -> None:
    from legkit.media.video import video_of_policy
    from legkit.train.runs import PRETRAINED_PREFIX, resolve_run

    spec = _video_spec(args)
    run = resolve_run(args.run)
    policy = _intact_policy(run, args.checkpoint)
    default = (Path(f"{args.run[len(PRETRAINED_PREFIX):]}.mp4") if args.run.startswith(PRETRAINED_PREFIX)
               else run / "videos" / f"video-{policy.label}.mp4")
    out = _mp4_out(args.out, default)
    n = video_of_policy(policy, spec, out, _policy_sets(args, policy), seed=args.seed)
    print(f"wrote {out} ({n} frames, {spec.width}x{spec.height} at {spec.fps} fps, {policy.label} policy)")


def cmd_progression(args: argparse.Namespace) -> None:
    from legkit.media.progression import render_progression, select_snapshots
    from legkit.train.runs import PRETRAINED_PREFIX, resolve_run

    spec = _video_spec(args)
    run = resolve_run(args.run)
    wanted = [w.strip() for w in args.checkpoints.split(",") if w.strip()] if args.checkpoints else None
    snaps = select_snapshots(run, wanted, args.count)
    default = (Path("progression.mp4") if args.run.startswith(PRETRAINED_PREFIX) else run / "videos" / "progression.mp4")
    out = _mp4_out(args.out, default)
    print(f"rendering steps {', '.join(f'{s.step:,}' for s in snaps)}")
    n = render_progression(snaps, spec, out, list(args.set or []), seed=args.seed)
    print(f"wrote {out} ({n} frames, {len(snaps)} checkpoints)")


def _default_media_dir(specs: list[str], name: str) -> Path:
    """RUN/<name> for one run folder, ./<name> otherwise (several runs, or a packaged policy)."""
    from legkit.evaluate.aggregate import is_seed_group
    from legkit.train.runs import PRETRAINED_PREFIX, resolve_run

    if len(specs) == 1 and is_seed_group(Path(specs[0])):
        return Path(specs[0]) / name
    if len(specs) == 1 and not specs[0].startswith(PRETRAINED_PREFIX):
        return resolve_run(specs[0]) / name
    return Path(name)


def cmd_plots(args: argparse.Namespace) -> None:
    from legkit.media.plots import evaluate_checkpoints, load_run, plot_runs

    if args.eval_episodes < 0:
        raise LegkitError(f"--eval-episodes must be 0 or more, got {args.eval_episodes}")
    runs = [load_run(r) for r in args.runs]
    out = Path(args.out) if args.out else _default_media_dir(args.runs, "plots")
    if args.eval_episodes:
        for run in runs:
            evaluate_checkpoints(run, args.eval_episodes, progress=print)
    written = plot_runs(runs, out)
    if not written:
        raise LegkitError("nothing to plot: the runs have no episodes.csv, TensorBoard logs or evaluations")
    for path in written.values():
        print(f"wrote {path}")


def cmd_report(args: argparse.Namespace) -> None:
    from legkit.media.report import build_report
    from legkit.media.video import VideoSpec, check_spec

    video = None
    if args.video_seconds > 0:
        video = VideoSpec(seconds=args.video_seconds, width=args.width, height=args.height, fps=args.fps)
        check_spec(video)
    out = Path(args.out) if args.out else _default_media_dir(args.runs, "report")
    page = build_report(args.runs, out, eval_episodes=args.eval_episodes, video=video)
    print(f"wrote {page} and {page.with_name('SUMMARY.md')}")


def cmd_play(args: argparse.Namespace) -> None:
    from legkit.media.viewer import NO_DISPLAY, has_display, play
    from legkit.train.runs import resolve_run

    if not has_display():  # before loading anything
        raise LegkitError(NO_DISPLAY)
    policy = _intact_policy(resolve_run(args.run), args.checkpoint)
    shown = play(policy, list(args.set or []), seconds=args.seconds, seed=args.seed)
    print(f"played {shown:.1f} s of {policy.folder} ({policy.label})")


def _add_media_parsers(sub) -> None:
    def video_args(p, seconds: float, width: int, height: int) -> None:
        p.add_argument("--seconds", type=float, default=seconds, help=f"length (default {seconds:g})")
        p.add_argument("--width", type=int, default=width, help=f"pixels, even (default {width})")
        p.add_argument("--height", type=int, default=height, help=f"pixels, even (default {height})")
        p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
        p.add_argument("--camera", choices=("follow", "fixed"), default="follow",
                       help="follow the robot smoothly (default), or watch its whole walk from one place")
        p.add_argument("--seed", type=int, default=0, help="seed of the reset pose and command (default 0)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key, e.g. the command")

    v = sub.add_parser("video", help="render an MP4 of a policy offscreen (no display needed)")
    v.add_argument("run", help="run folder or pretrained:NAME")
    v.add_argument("--checkpoint", help="step number, 'latest' or 'best' (default: the final model)")
    v.add_argument("--out", help="MP4 file (default: RUN/videos/video-<checkpoint>.mp4, or ./NAME.mp4)")
    video_args(v, 10.0, 1280, 720)
    v.add_argument("--no-overlay", action="store_true", help="no time and velocity text")
    v.add_argument("--no-camera-inset", action="store_true",
                   help="no inset of the robot's depth camera image (shown when the task has a camera term)")
    v.add_argument("--physics", metavar="NAME", help=PHYSICS_HELP)
    v.set_defaults(func=cmd_video)

    g = sub.add_parser("progression", help="one MP4 of several checkpoints of a run side by side")
    g.add_argument("run", help="run folder")
    g.add_argument("--checkpoints", help="comma-separated steps (or 'final'); default: --count spread evenly")
    g.add_argument("--count", type=int, default=6, help="how many checkpoints when not listed (default 6)")
    g.add_argument("--out", help="MP4 file (default: RUN/videos/progression.mp4)")
    video_args(g, 8.0, 1280, 720)
    g.set_defaults(func=cmd_progression)

    pl = sub.add_parser("plots", help="PNG training curves of one run, or several overlaid")
    pl.add_argument("runs", nargs="+", metavar="RUN", help="run folders (several: overlaid)")
    pl.add_argument("--out", help="folder (default: RUN/plots, or ./plots for several runs)")
    pl.add_argument("--eval-episodes", type=int, default=0,
                    help="also evaluate every checkpoint with this many episodes (default 0: only eval.json)")
    pl.set_defaults(func=cmd_plots)

    r = sub.add_parser("report", help="a self-contained HTML report (and SUMMARY.md) of one run or several")
    r.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders or pretrained:NAME (several: compared); or the parent folders of "
                        "legkit train --seeds, aggregated over their seeds (several groups: compared)")
    r.add_argument("--out", help="folder (default: RUN/report, or ./report for several runs)")
    r.add_argument("--eval-episodes", type=int, default=5,
                   help="episodes per checkpoint for the evaluation-over-training plot (0: skip; default 5)")
    r.add_argument("--video-seconds", type=float, default=8.0, help="length of the embedded video (0: none)")
    r.add_argument("--width", type=int, default=640, help="video width (default 640)")
    r.add_argument("--height", type=int, default=360, help="video height (default 360)")
    r.add_argument("--fps", type=int, default=30, help="video frames per second (default 30)")
    r.set_defaults(func=cmd_report)

    p = sub.add_parser("play", help="watch a policy in MuJoCo's interactive viewer (needs a display)")
    p.add_argument("run", help="run folder or pretrained:NAME")
    p.add_argument("--checkpoint", help="step number, 'latest' or 'best' (default: the final model)")
    p.add_argument("--seconds", type=float, help="close after this much simulated time (default: when closed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reset pose and command (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key, e.g. the command")
    p.set_defaults(func=cmd_play)


PHYSICS_HELP = ("physics quality preset: production (1 ms step, 50/50 solver iterations), medium (2 ms, 10/20) or "
                "fast (5 ms, 4/8: the tasks' defaults); sets task.physics.timestep, iterations, ls_iterations and "
                "task.decimation as --set would, the control period unchanged")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="legkit", description="Train simulated legged robots with RL on MuJoCo, fast on a CPU.")
    p.add_argument("--version", action="version", version=f"legkit {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line; or set LEGKIT_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a policy (or --resume a run)")
    t.add_argument("task", nargs="?", help="task name, e.g. go2-walk (see legkit list)")
    t.add_argument("--steps", type=count, help="total environment steps (3000000, 3e6 or 3_000_000)")
    t.add_argument("--envs", type=int, help="robots simulated together")
    t.add_argument("--seed", type=int)
    t.add_argument("--config", help="YAML file overriding the task's defaults, or a packaged recipe's name "
                   "(go2-joystick-base, pidog-arena, pidog-turn...; default: the recipe named as the task, if any: "
                   "go2-joystick)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    t.add_argument("--physics", metavar="NAME", help=PHYSICS_HELP)
    t.add_argument("--name", help="run name (default: the task name)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    t.add_argument("--runs", default="runs", help="folder for new runs (default: runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--supervise", action="store_true",
                   help="train in a child process, restarted from the latest checkpoint when it dies (segfault, "
                        "out-of-memory kill, kill -9); each restart is printed and recorded in meta.json")
    t.add_argument("--max-restarts", type=int, metavar="N", help="crashes a supervised run survives (default 5; "
                                                                 "implies --supervise)")
    t.add_argument("--chunk-steps", type=count, metavar="N",
                   help="a fresh training process every N steps, at the first checkpoint N steps on, against "
                        "leaks (implies --supervise)")
    t.add_argument("--seeds", metavar="LIST",
                   help="train one run per seed (e.g. 0,1,2 or 0-4) in a common parent folder RUNS/NAME-seeds-TIME, "
                        "then print the mean, std, 95%% bootstrap CI and IQM of their final evaluations and time "
                        "to success; legkit report PARENT aggregates them with learning-curve bands")
    t.add_argument("--jobs", type=int, metavar="J",
                   help="with --seeds: train J seeds at once, each on cores/J threads (default 1: one after another)")
    t.add_argument("--run-folder", help=argparse.SUPPRESS)  # a seed of --seeds: this exact new folder
    t.add_argument("--wandb", nargs="?", const="", metavar="MODE",
                   help="also log every TensorBoard scalar and each clip to Weights & Biases (needs pip install "
                        "wandb): MODE online, or offline (no network; 'wandb sync' later); a bare --wandb is online "
                        "unless WANDB_MODE says otherwise. Files in RUN/wandb/, project legkit (or WANDB_PROJECT)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run or pretrained:NAME with deterministic rollouts")
    e.add_argument("run", help="run folder or pretrained:NAME")
    e.add_argument("--episodes", type=int, default=20,
                   help="episodes (default 20); with --sweep, episodes per command: a sweep is usually "
                        "run with --episodes 10")
    e.add_argument("--checkpoint", help="step number, 'latest' or 'best' (default: the final model)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key for evaluation")
    e.add_argument("--seed", type=int, default=EVAL_SEED,
                   help=f"evaluation seed: the episodes' starts, commands and obstacle layouts (default {EVAL_SEED}, "
                        "as every evaluation; another seed gives held-out episodes, e.g. to choose a checkpoint "
                        "without choosing on the figures reported)")
    e.add_argument("--physics", metavar="NAME", help=PHYSICS_HELP + " (e.g. production: the same policy under "
                                                                    "finer physics)")
    e.add_argument("--sweep", action="store_true",
                   help="evaluate under each of a fixed list of commands (stand; forward 0.2, 0.5, 1.0, 1.5, 2.0; "
                        "backward 0.5; sideways +-0.5; yaw +-1.0; forward 1.0 with yaw 0.5), each held for "
                        "whole episodes: one table row and one JSON record per command")
    e.add_argument("--json", help="write the result here (default: RUN/eval-<checkpoint>.json, "
                                  "RUN/eval-<checkpoint>-sweep.json with --sweep; none for pretrained:NAME)")
    e.set_defaults(func=cmd_eval)

    v = sub.add_parser("validate", help="run the task's pass/fail validation suite on a run")
    v.add_argument("run", help="run folder or pretrained:NAME")
    v.add_argument("--checkpoint", help="step number, 'latest' or 'best' (default: the final model)")
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key for validation")
    v.add_argument("--physics", metavar="NAME", help=PHYSICS_HELP)
    v.add_argument("--json", help="write the result here (default: RUN/validate.json)")
    v.add_argument("--robustness-only", action="store_true",
                   help="run only the task's robustness scenarios (e.g. on each checkpoint, to find the first that "
                        "meets them)")
    v.set_defaults(func=cmd_validate)

    dg = sub.add_parser("diagnose", help="check a run for the usual RL failures (stands still, walks backwards, "
                                         "lies down, a dominating penalty, collapse, plateau, policy std, saturated "
                                         "actions or residual, NaN stop); exit 1 when one fails")
    dg.add_argument("run", help="run folder or pretrained:NAME")
    dg.add_argument("--window", type=int, default=100, metavar="N",
                    help="episodes at the end of training that reward shares and training means are taken over, "
                         "and the rolling-mean width of the return curve (default 100)")
    dg.add_argument("--json", help="write the checks here (default: RUN/diagnose.json; none for pretrained:NAME)")
    dg.set_defaults(func=cmd_diagnose)

    x = sub.add_parser("export", help="export a policy as ONNX (or TorchScript) with policy.json and the runtime")
    x.add_argument("run", help="run folder or pretrained:NAME")
    x.add_argument("--checkpoint", help="step number, 'latest' or 'best' (default: the final model)")
    x.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    x.add_argument("--out", help="export folder, new or empty (default: RUN/export-<checkpoint>, or "
                                 "./export-NAME for pretrained:NAME)")
    x.set_defaults(func=cmd_export)

    s2 = sub.add_parser("sim2sim", help="drive an export with legkit.runtime in a plain MuJoCo loop on any MJCF")
    s2.add_argument("export", help="export folder (legkit export)")
    s2.add_argument("--model", help="MJCF of the same robot (default: legkit's own model of it)")
    s2.add_argument("--episodes", type=int, default=10)
    s2.add_argument("--command", help="vx,vy,yaw held for every episode (default: drawn from the exported ranges)")
    s2.add_argument("--seconds", type=float, help="episode length (default: the task's)")
    s2.add_argument("--seed", type=int, default=0)
    s2.add_argument("--against", metavar="RUN", help="also run legkit eval of RUN|pretrained:NAME (the exported "
                                                     "policy) under the same --command, and print both")
    s2.add_argument("--file-physics", action="store_true",
                    help="keep the MJCF's own simulator options (timestep, integrator, solver) instead of the "
                         "ones the policy was trained under")
    s2.add_argument("--json", help="write the result here")
    s2.set_defaults(func=cmd_sim2sim)

    b = sub.add_parser("bench", help="measure physics, env, PPO and hand-built throughput in one run")
    b.add_argument("--task", default="go2-walk")
    b.add_argument("--envs", default="64,256,1024", help="comma-separated batch sizes")
    b.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    b.add_argument("--hand-envs", type=int, default=8, help="envs of the DummyVecEnv/SubprocVecEnv baselines")
    b.add_argument("--no-ppo", action="store_true", help="skip the PPO measurement")
    b.add_argument("--physics", metavar="NAME", help="measure under physics preset NAME (production, medium, fast; "
                                                     "see --physics on train), or 'all': only the env and physics "
                                                     "rates of every preset, side by side")
    b.add_argument("--json", help="write the results as JSON")
    b.set_defaults(func=cmd_bench)

    _add_media_parsers(sub)

    from legkit.evaluate.commands import add_parsers as add_gait_parsers

    add_gait_parsers(sub)
    from legkit.tune.cli import add_parser as add_tune_parser  # Optuna itself loads only when tune runs

    add_tune_parser(sub)
    from legkit.pipeline.cli import add_parser as add_pipeline_parser

    add_pipeline_parser(sub)

    ls = sub.add_parser("list", help="robots, tasks and pretrained policies")
    ls.set_defaults(func=cmd_list)
    return p


def _check_mujoco_gl() -> None:
    """MuJoCo raises at import on a bad MUJOCO_GL, which would stop every command with a traceback."""
    import os
    import platform

    value = os.environ.get("MUJOCO_GL", "").strip().lower()
    valid = {"Linux": ("egl", "osmesa", "glx", "glfw"), "Darwin": ("cgl", "glfw"), "Windows": ("wgl", "glfw")}
    ok = valid.get(platform.system(), ("glfw",)) + ("", "enable", "enabled", "on", "true", "1",
                                                    "disable", "disabled", "off", "false", "0")
    if value not in ok:
        raise LegkitError(f"MUJOCO_GL={value} is not a rendering backend; set one of "
                          f"{', '.join(valid.get(platform.system(), ('glfw',)))}, or unset it")


INTERNAL_ERROR = 3
"""Exit code of an unexpected exception (a bug, or a failure legkit does not know how to explain)."""


VECTOR_OPTIONS = ("--command",)
"""Options whose value may start with a minus sign (`--command -0.5,0,0`: walk backward)."""


def _join_vector_values(argv: list[str]) -> list[str]:
    """`--command -0.5,0,0` as `--command=-0.5,0,0`: argparse reads a value that starts with '-' and is not a plain
    number as an option, and would say the option expected an argument."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if argv[i] in VECTOR_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
            out.append(f"{argv[i]}={nxt}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _join_vector_values(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv or os.environ.get("LEGKIT_DEBUG", "").strip() not in ("", "0")
    args = build_parser().parse_args([a for a in argv if a != "--debug"])  # --debug goes anywhere on the line
    try:
        _check_mujoco_gl()
        args.func(args)
    except LegkitError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"legkit: error: {exc}", file=sys.stderr)
        return 2
    except _Failed:
        return 1
    except KeyboardInterrupt:
        print("legkit: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, a distinct code
        if debug:
            raise
        where = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        print(f"legkit: internal error: {where} (run again with --debug or LEGKIT_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        _report_mujoco_warnings()
    return 0


def _report_mujoco_warnings() -> None:
    """One line on stdout for MuJoCo warnings given outside a training run (those go to RUN/mujoco.log)."""
    if "legkit.sim" not in sys.modules:
        return
    from legkit.sim.log import take_unreported

    warned = take_unreported()
    if warned:
        print(f"mujoco: {len(warned)} physics warning(s), the first: {warned[0]}")


if __name__ == "__main__":
    sys.exit(main())
