"""The `lewm` command line: collect data, train, inspect and evaluate world models.

Every command that reports numbers takes `--json`: its last stdout line is then one JSON object.
Bad input prints one line `error: <problem and fix>` on stderr and exits with status 2.

Each command group is a module of this package with a `register(sub)` that adds its
sub-commands; packages above the library add theirs through the `lewm.commands` entry point
group (pyproject.toml: the visualisation decoder's `decoder-train`), so the library never
imports them.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from lewm_core.cli import analysis, data, planning, ship, train
from lewm_core.errors import UserError

COMMAND_GROUPS = (data, planning, train, ship, analysis)  # in the order `lewm --help` lists them
ENTRY_POINT_GROUP = "lewm.commands"  # `register(sub)` functions of the packages above


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lewm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in COMMAND_GROUPS:
        group.register(sub)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        ep.load()(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as e:
        rank = os.environ.get("RANK", "0")  # set by torchrun
        if rank in ("", "0"):
            sys.stderr.write(f"error: {e}\n")
        elif not getattr(e, "collective", False):  # all ranks failed alike: rank 0 said it
            sys.stderr.write(f"error: [rank {rank}] {e}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing half-written was kept\n")
        return 130
    except OSError as e:  # a file that could not be read or written (damaged, disk full, ...)
        what = f" ({e.filename})" if getattr(e, "filename", None) else ""
        sys.stderr.write(f"error: {str(e).splitlines()[0][:200]}{what}; check the file\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
