"""Keep the planner's episodes that met their goal: a subset of a `lewm collect-planned` file.

    python bench/planner_reached.py --planned data/pusht-planned-r1.h5 \
        --out data/pusht-planned-r1-reached.h5 [--overwrite] [--json]

Each episode's task is drawn again from the file's attributes and its stored actions replayed
from the task's start state (`lewm_core.planner_data.episodes_reached`); the episodes that met
the goal at some step are written in the same format (`write_reached`), to train on with
`lewm train --extra-data`. Prints how many were kept; with --json the last stdout line is
{"out", "episodes", "of"}. Files planned before the episode split was recorded in them are
assumed to use the default split (validation fraction 0.1, seed 0); --split F S says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys

from lewm_core.errors import UserError
from lewm_core.planner_data import write_reached


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--planned", required=True, help="a `lewm collect-planned` file")
    p.add_argument("--out", required=True)
    p.add_argument("--split", nargs=2, type=float, default=(0.1, 0), metavar=("FRACTION", "SEED"))
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        split = (args.split[0], int(args.split[1]))
        summary = write_reached(args.planned, args.out, split, overwrite=args.overwrite)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"kept {summary['episodes']} of {summary['of']} episodes in {summary['out']}")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
