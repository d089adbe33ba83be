"""The `legkit` command. Every subcommand is a thin call into the rooms below it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from legkit import LegkitError, __version__


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like every other legkit error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"legkit: error: {message} (see '{self.prog} --help')\n")


def cmd_list(args: argparse.Namespace) -> None:
    from legkit.robots import ROBOTS
    from legkit.tasks import TASKS
    from legkit.train.runs import pretrained_names

    print("robots:")
    for name, spec in ROBOTS.items():
        print(f"  {name:<16} {spec.description}")
    print("tasks:")
    for name, (_, desc) in TASKS.items():
        print(f"  {name:<16} {desc}")
    print("pretrained policies:")
    for name in pretrained_names() or ["(none)"]:
        print(f"  pretrained:{name}")


def cmd_train(args: argparse.Namespace) -> None:
    from legkit.config import load_yaml
    from legkit.train.config import build_config
    from legkit.train.runs import CONFIG, new_run_dir, resolve_run
    from legkit.train.trainer import train

    sets = list(args.set or [])
    if args.steps is not None:
        sets.append(f"run.total_steps={args.steps}")
    if args.envs is not None:
        sets.append(f"run.num_envs={args.envs}")
    if args.seed is not None:
        sets.append(f"run.seed={args.seed}")
    if args.resume:
        if args.task or args.config or args.name:
            raise LegkitError("--resume continues a run with its saved config; give only --steps or --set with it")
        run = resolve_run(args.resume)
        if args.resume.startswith("pretrained:"):
            raise LegkitError("a pretrained policy cannot be resumed; train a new run with legkit train TASK")
        saved = load_yaml(str(run / CONFIG))
        cfg = build_config(saved.get("task_name", ""), sets=sets, base=saved)
        resume = True  # train() rewrites config.yaml once the checkpoint has loaded
    else:
        if not args.task:
            raise LegkitError("name a task to train (see 'legkit list'), or --resume RUN")
        cfg = build_config(args.task, args.config, sets)
        run = new_run_dir(args.name or args.task, Path(args.runs))
        resume = False
    print(f"run folder: {run}")
    meta = train(cfg, run, resume=resume, progress_bar=not args.no_progress)
    print(f"trained {meta['step']} steps in {meta['wall_time_s']:.0f} s")
    if cfg.run.eval_episodes:
        _evaluate_and_save(run, None, cfg.run.eval_episodes, [], run / "eval.json")


def _evaluate_and_save(run: Path, checkpoint: str | None, episodes: int, sets: list[str], out: Path | None) -> dict:
    from legkit.evaluate import evaluate, format_table
    from legkit.train.runs import find_policy, write_json

    policy = find_policy(run, checkpoint)
    result = evaluate(policy, episodes, sets)
    print(f"evaluation of {policy.folder} ({policy.label}, {episodes} episodes, deterministic)")
    print(format_table(result["metrics"]))
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")
    return result


def cmd_eval(args: argparse.Namespace) -> None:
    from legkit.train.runs import resolve_run

    run = resolve_run(args.run)
    if args.episodes < 1:
        raise LegkitError(f"--episodes must be at least 1, got {args.episodes}")
    out = Path(args.json) if args.json else (None if args.run.startswith("pretrained:") else run / "eval.json")
    _evaluate_and_save(run, args.checkpoint, args.episodes, list(args.set or []), out)


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
    result = run_bench(args.task, envs, args.seconds, hand_envs=args.hand_envs, include_ppo=not args.no_ppo)
    print(format_bench(result))
    if args.json:
        from legkit.train.runs import write_json

        write_json(Path(args.json), result)
        print(f"wrote {args.json}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="legkit", description="Train simulated legged robots with RL on MuJoCo, fast on a CPU.")
    p.add_argument("--version", action="version", version=f"legkit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a policy (or --resume a run)")
    t.add_argument("task", nargs="?", help="task name, e.g. go2-walk (see legkit list)")
    t.add_argument("--steps", type=int, help="total environment steps")
    t.add_argument("--envs", type=int, help="robots simulated together")
    t.add_argument("--seed", type=int)
    t.add_argument("--config", help="YAML file overriding the task's defaults")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    t.add_argument("--name", help="run name (default: the task name)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its latest checkpoint")
    t.add_argument("--runs", default="runs", help="folder for new runs (default: runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run or pretrained:NAME with deterministic rollouts")
    e.add_argument("run", help="run folder or pretrained:NAME")
    e.add_argument("--episodes", type=int, default=20)
    e.add_argument("--checkpoint", help="step number or 'latest' (default: the final model)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key for evaluation")
    e.add_argument("--json", help="write the result here (default: RUN/eval.json)")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="measure physics, env, PPO and hand-built throughput in one run")
    b.add_argument("--task", default="go2-walk")
    b.add_argument("--envs", default="64,256,1024", help="comma-separated batch sizes")
    b.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    b.add_argument("--hand-envs", type=int, default=8, help="envs of the DummyVecEnv/SubprocVecEnv baselines")
    b.add_argument("--no-ppo", action="store_true", help="skip the PPO measurement")
    b.add_argument("--json", help="write the results as JSON")
    b.set_defaults(func=cmd_bench)

    ls = sub.add_parser("list", help="robots, tasks and pretrained policies")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LegkitError as exc:
        print(f"legkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("legkit: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
