"""`legkit gait` and `legkit compare`: scripted gaits run and judged like policies, and several side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from legkit import EVAL_SEED, LegkitError


def cmd_gait(args: argparse.Namespace) -> None:
    from legkit.cli import _mp4_out, _video_spec, _writable_file
    from legkit.evaluate import format_table
    from legkit.evaluate.metrics import compute_metrics
    from legkit.evaluate.rollout import rollout_model
    from legkit.evaluate.scripted import (Unnormalized, ZeroResidual, clipped_targets, default_task, gait_config,
                                         scene_config)
    from legkit.evaluate.sweep import format_sweep, sweep_model
    from legkit.robots import get_robot
    from legkit.train.runs import write_json

    robot = get_robot(args.robot).name
    if args.episodes < 1:
        raise LegkitError(f"--episodes must be at least 1, got {args.episodes}")
    out = _writable_file(args.json, "--json") if args.json else None
    video = _mp4_out(args.video, Path()) if args.video else None
    spec = _video_spec(args) if video else None
    sets = list(args.set or [])
    cfg = gait_config(robot, args.gait, scene_config(default_task(robot, args.task)), sets)
    model = ZeroResidual.for_task(cfg.task)
    g = cfg.task.gait
    print(f"{g.type} gait of the {robot} on {cfg.task_name}'s scene ({args.episodes} episodes): step {g.step_length:g} m, "
          f"height {g.step_height:g} m, cycle {g.cycle_time:g} s, duty {g.duty_factor:g}, body {g.body_height:g} m "
          f"(stroke speed {g.speed[0]:.2f} m/s)")
    clipped = clipped_targets(cfg)
    if clipped:
        print(f"legkit: warning: {clipped} leg targets of one {g.type} cycle are out of the {robot}'s reach and are "
              "clipped to the nearest reachable point (shorten task.gait.step_length or step_height, or change "
              "body_height)", file=sys.stderr)
    result = {"robot": robot, "task": cfg.task_name, "gait": {k: getattr(g, k) for k in g.__dataclass_fields__},
              "ik_clipped_per_cycle": clipped, "episodes": args.episodes, "seed": args.seed, "overrides": sets}
    if args.sweep:
        result["commands"] = sweep_model(model, Unnormalized(), cfg, args.episodes, args.seed)
        print(format_sweep(result))
    else:
        result["metrics"] = compute_metrics(rollout_model(model, Unnormalized(), args.episodes, cfg, args.seed))
        print(format_table(result["metrics"]))
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")
    if video is not None:
        from legkit.media.video import policy_actor, render_video

        n = render_video(cfg.task, policy_actor(model, Unnormalized()), spec, video, seed=args.video_seed)
        print(f"wrote {video} ({n} frames)")


def cmd_compare(args: argparse.Namespace) -> None:
    from legkit.cli import _mp4_out, _video_spec
    from legkit.evaluate.compare import compare, compare_video, format_compare, plot_compare
    from legkit.train.runs import write_json

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LegkitError(f"--out '{out}' is a file; give a folder for compare.json, compare.png (and compare.mp4)")
    spec = _video_spec(args) if args.video else None
    sets = list(args.set or [])
    result = compare(args.specs, args.episodes, args.task, sets, seed=args.eval_seed)
    s = result["scene"]
    row = f", row {s['row']}" if s["row"] is not None else ""
    print(f"on {s['task']}'s scene ({s['terrain']}{row}; {args.episodes} episodes of {s['episode_seconds']:g} s, "
          f"seed {args.eval_seed}, deterministic)")
    print(format_compare(result))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", result)
    plot_compare(result, out / "compare.png")
    print(f"wrote {out / 'compare.json'} and {out / 'compare.png'}")
    if spec is not None:
        video = _mp4_out(None, out / "compare.mp4")
        n = compare_video(args.specs, spec, video, args.task, sets, seed=args.seed)
        print(f"wrote {video} ({n} frames)")


def add_parsers(sub) -> None:
    def video_args(p) -> None:
        p.add_argument("--seconds", type=float, default=10.0, help="video length (default 10)")
        p.add_argument("--width", type=int, default=1280, help="video pixels, even (default 1280)")
        p.add_argument("--height", type=int, default=720, help="video pixels, even (default 720)")
        p.add_argument("--fps", type=int, default=30, help="video frames per second (default 30)")
        p.add_argument("--camera", choices=("follow", "fixed"), default="follow", help="video camera (default follow)")

    g = sub.add_parser("gait", help="run a scripted gait as a controller: the eval table, --sweep or a --video")
    g.add_argument("robot", help="robot name (see legkit list)")
    g.add_argument("--gait", default="trot", help="walk, trot, pace, bound, stand or sit (default trot)")
    g.add_argument("--task", help="the task whose scene it runs on (default: the robot's walking task, flat ground)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a task key, e.g. task.gait.step_length=0.15 or task.terrain.kind=tiles")
    g.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    g.add_argument("--seed", type=int, default=EVAL_SEED, help=f"evaluation seed (default {EVAL_SEED}, as legkit eval)")
    g.add_argument("--sweep", action="store_true", help="under each command of the sweep instead")
    g.add_argument("--json", help="write the result to this file")
    g.add_argument("--video", metavar="FILE.mp4", help="also render a video")
    g.add_argument("--video-seed", type=int, default=0, help="seed of the video's reset (default 0)")
    video_args(g)
    g.set_defaults(func=cmd_gait)

    c = sub.add_parser("compare", help="policies and scripted gaits on one scene: same seeds, terrain and commands")
    c.add_argument("specs", nargs="+", metavar="RUN|gait:NAME", help="run folders, pretrained:NAME or gait:NAME")
    c.add_argument("--task", help="the scene's task (default: the first policy's)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a task key of the scene")
    c.add_argument("--episodes", type=int, default=20, help="episodes each (default 20)")
    c.add_argument("--eval-seed", type=int, default=EVAL_SEED,
                   help=f"evaluation seed (default {EVAL_SEED}, as legkit eval)")
    c.add_argument("--out", default="compare", help="folder for compare.json, compare.png (default ./compare)")
    c.add_argument("--video", action="store_true", help="also render the side-by-side compare.mp4")
    c.add_argument("--seed", type=int, default=0, help="seed of the video's reset (default 0)")
    video_args(c)
    c.set_defaults(func=cmd_compare)
