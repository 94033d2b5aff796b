"""The command-line reference, `docs/cli.md`, written from the `lewm` parser itself.

Every command, flag, default, choice and help line comes from `build_parser()`, so the page
cannot drift from the command line: tests/test_cli_reference.py fails when the committed page
differs from what this module writes (`make docs` writes it again).

    python -m lewm_core.cli.reference --out docs/cli.md
    python -m lewm_core.cli.reference --check docs/cli.md   # exit 1 if the page is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lewm_core.atomic import write_bytes
from lewm_core.cli.main import build_parser

INTRO = """\
# `lewm` command-line reference

Generated from the parser by `make docs` (`python -m lewm_core.cli.reference --out
docs/cli.md`); do not edit by hand. `lewm --help` and `lewm <command> --help` print the same.

Commands that report numbers take `--json`: their last stdout line is then one JSON object.
Bad input prints one line `error: <problem and fix>` on stderr and exits with status 2.
`python -m lewm_core` runs the same command line.
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """{name: (one-line help, sub-parser)} in the order `lewm --help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (helps.get(name, ""), p) for name, p in action.choices.items()}
    raise ValueError("the parser has no sub-commands")


def _cell(text: str) -> str:
    """`text` made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings)
    if action.nargs == 0:  # store_true and friends take no value
        return names
    metavar = action.metavar or action.dest.upper()
    if action.choices is not None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    many = " ..." if action.nargs in ("+", "*") else ""
    return f"{names} `{metavar}{many}`"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or action.default is None:
        return ""
    return f"`{action.default}`"


def _help(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if isinstance(action, argparse._AppendAction):
        text += " (repeatable)" if "repeatable" not in text else ""
    return _cell(text)


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    required = [a for a in parser._actions if a.required and a.option_strings]
    words = [f"lewm {name}"] + [
        f"{a.option_strings[0]} {a.metavar or a.dest.upper()}" for a in required
    ]
    optional = [a for a in parser._actions if not a.required and a.option_strings]
    if len(optional) > 1:  # more than -h
        words.append("[options]")
    return " ".join(words)


def markdown(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference page of `parser` (default: the full `lewm` parser) as Markdown."""
    parser = parser or build_parser()
    commands = _subcommands(parser)
    out = [INTRO, "| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#lewm-{name}) | {_cell(text)} |" for name, (text, _) in commands.items()]
    for name, (text, sub) in commands.items():
        out += ["", f"## lewm {name}", "", f"{text[:1].upper()}{text[1:]}.", ""]
        out += ["```", _synopsis(name, sub), "```", ""]
        out += ["| flag | default | what it does |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            out.append(f"| {_flag(action)} | {_default(action)} | {_help(action)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the page to this file")
    where.add_argument("--check", type=Path, help="exit 1 if this file is not the current page")
    args = p.parse_args(argv)
    page = markdown()
    if args.out:
        write_bytes(args.out, page.encode())
        return 0
    if not args.check.exists() or args.check.read_text() != page:
        sys.stderr.write(f"error: {args.check} is stale; write it again with `make docs`\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
