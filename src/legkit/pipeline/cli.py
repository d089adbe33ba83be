"""`legkit pipeline`: the subcommand's arguments and what it does (registered by legkit.cli)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from legkit import LegkitError
from legkit.pipeline.config import START_KEYS, STAGES, keys

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

DESCRIPTION = """\
Run the PiDog pipeline into RUNS/pipeline/NAME/: collect (scripted-gait demonstrations), imitate (behaviour
cloning of an LSTM and an MLP, each with its closed-loop check), finetune (PPO from the cloned MLP: the packaged
recipe pidog-arena, turning on the spot first, then the obstacle arena) and package (final_model/:
ONNX, TorchScript, model.zip, metadata, README, SUMMARY.md). Each stage runs in its own process with its own log
(logs/STAGE.log); pipeline.json records every stage's status, times, settings and metrics.

Run the same command again after a failure or a kill: finished stages are kept, a stage that died resumes from
its checkpoint. Changing a setting of a stage that ran needs --from STAGE, which redoes that stage and the ones
after it; their old outputs are replaced only once the new ones are whole.
"""


def epilog() -> str:
    import textwrap

    return "settings (--set STAGE.KEY=VALUE):\n" + "\n".join(
        textwrap.fill(", ".join(keys(stage)), 108, initial_indent=f"  {stage + ':':<10} ", subsequent_indent=" " * 13)
        for stage in STAGES) + (
        "\n  finetune.task./ppo./run.KEY go to both stages of legkit train as --set KEY (e.g.\n"
        f"  finetune.ppo.learning_rate=1e-4), and finetune.{START_KEYS[0]} ... {START_KEYS[-1]} to the first\n"
        "  stage's finetune.* keys (the start from the cloned policy)"
        "\n\nexamples:\n  legkit pipeline pidog --name dog1\n"
        "  legkit pipeline pidog --name quick --set collect.seconds_per_behaviour=30 --set finetune.steps=200000\n"
        "  legkit pipeline pidog --name dog1 --from imitate --set imitate.kinds=[mlp]\n"
        "  legkit pipeline pidog --name blind --to finetune --set \"finetune.task.observation_blind=[camera]\"")


def add_parser(sub) -> None:
    """Register `legkit pipeline` on the CLI's subparsers."""
    p = sub.add_parser("pipeline", help="the PiDog pipeline in one command: collect, imitate, finetune, package",
                       description=DESCRIPTION, epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pipeline", choices=("pidog",), help="which pipeline (pidog)")
    p.add_argument("--name", required=True, help="the experiment: RUNS/pipeline/NAME (run again to resume it)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--from", dest="redo", choices=STAGES, metavar="STAGE",
                       help=f"redo STAGE and every stage after it ({', '.join(STAGES)})")
    which.add_argument("--only", choices=STAGES, metavar="STAGE",
                       help="run STAGE alone: redone if it was done, resumed if it died (the stages before it must be "
                            "done; the ones after it run again next time)")
    p.add_argument("--to", choices=STAGES, metavar="STAGE",
                   help="stop after STAGE (with or without --from): e.g. --to finetune for an ablation that is not "
                        "packaged")
    p.add_argument("--set", action="append", metavar="STAGE.KEY=VALUE", help="change a setting (repeatable; see below)")
    p.add_argument("--runs", default="runs", help="folder of the runs (default: runs)")
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> None:
    from legkit.cli import _Failed
    from legkit.pipeline.runner import StageFailed, experiment_folder, run

    if not NAME.fullmatch(args.name):
        raise LegkitError(f"--name '{args.name}' must be letters, digits, '.', '_' or '-' (a folder name), "
                          "starting with a letter or digit")
    folder = experiment_folder(Path(args.runs), args.name)
    try:
        run(folder, list(args.set or []), args.redo, args.only, command=" ".join(sys.argv), to=args.to)
    except StageFailed as exc:
        print(f"legkit: {exc}", file=sys.stderr)
        raise _Failed from None
