"""`lewm ship`: copy a trained run to a small model folder with its model card."""

from __future__ import annotations

import argparse
import json

from lewm_core.cli.arguments import path_arg
from lewm_core.errors import UserError
from lewm_core.knobs import add_flags, values_from
from lewm_core.planning.cem_config import CEMConfig


def last_json_line(path: str, command: str) -> dict:
    """The JSON object on the last line of a `--json` output file written by `command`."""
    from pathlib import Path

    text = Path(path).read_text().strip().splitlines() if Path(path).is_file() else []
    if not text:
        raise UserError(f"{path} is missing or empty; write it with `{command} --json > {path}`")
    try:
        result = json.loads(text[-1])
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise UserError(
            f"the last line of {path} is not a JSON object; write it with `{command} --json`"
        )
    return result


def cmd_ship(args: argparse.Namespace) -> None:
    from pathlib import Path

    from lewm_core.shipping import eval_label, ship

    evals = {}
    for path in args.eval or []:
        e = last_json_line(path, "lewm eval")
        evals[eval_label(e, Path(path).stem)] = e
    probe = last_json_line(args.probe, "lewm probe") if args.probe else None
    surprise = last_json_line(args.surprise, "lewm surprise") if args.surprise else None
    out = ship(
        args.run,
        args.out,
        evals,
        planning=values_from(args, CEMConfig, RECORDED),
        probe=probe,
        surprise=surprise,
    )
    print(f"shipped {args.run} to {out}")


RECORDED = ("sampling", "context", "objective", "receding_horizon")  # `PlanningDefaults`' fields


def register(sub) -> None:
    """Add `ship` to the main parser's sub-parsers `sub`."""
    s = sub.add_parser("ship", help="copy a run to a small model folder with a model card")
    s.add_argument("--run", required=True, type=path_arg, help="run folder of `lewm train`")
    s.add_argument("--out", required=True, type=path_arg, help="e.g. assets/models/tworoom")
    s.add_argument("--eval", action="append", help="`lewm eval --json` output file (repeatable)")
    record = (
        "; recorded as the model's default, which `lewm eval`, the lab and the demo start on "
        "(choose it on other episodes than the ones you report, e.g. `lewm eval --seed 1`)"
    )
    add_flags(s, CEMConfig, RECORDED, unset=True, help_suffix=dict.fromkeys(RECORDED, record))
    s.add_argument("--probe", type=path_arg, help="`lewm probe --json` output file on this run")
    s.add_argument(
        "--surprise", type=path_arg, help="`lewm surprise --json` output file on this run"
    )
    s.set_defaults(func=cmd_ship)
