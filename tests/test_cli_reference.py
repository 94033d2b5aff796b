"""docs/cli.md is the page `lewm_core.cli.reference` writes from the parser, and every flag of
every command has a help line (a flag without one would leave an empty cell on that page)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lewm_core.cli import reference
from lewm_core.cli.main import build_parser
from lewm_core.envs import ENV_NAMES, POLICIES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _flags(name: str) -> dict[str, argparse.Action]:
    _, sub = reference._subcommands(build_parser())[name]
    return {a.option_strings[0]: a for a in sub._actions if a.option_strings}


def test_committed_page_is_the_generated_one(tmp_path):
    assert reference.main(["--check", str(PAGE)]) == 0, "docs/cli.md is stale: run `make docs`"
    stale = tmp_path / "cli.md"
    stale.write_text(PAGE.read_text().replace("| `--episodes`", "| `--episode`", 1))
    assert reference.main(["--check", str(stale)]) == 1


def test_every_command_and_flag_is_on_the_page():
    page = PAGE.read_text()
    for name, (_, sub) in reference._subcommands(build_parser()).items():
        assert f"## lewm {name}\n" in page
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in ("-h", "--help"):
                    continue
                assert f"`{flag}`" in page, (name, flag)


def test_every_flag_has_a_help_line():
    missing = [
        (name, action.option_strings[0])
        for name, (_, sub) in reference._subcommands(build_parser()).items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert missing == []


def test_collect_help_names_every_env_and_policy():
    flags = _flags("collect")
    assert all(name in flags["--env"].help for name in ENV_NAMES)
    others = {p for names in POLICIES.values() for p in names if p != "default"}
    assert all(p in flags["--policy"].help for p in others)


def test_table_cells_escape_pipes():
    parser = argparse.ArgumentParser(prog="lewm")
    sub = parser.add_subparsers().add_parser("demo", help="a demo")
    sub.add_argument("--mode", choices=("a", "b"), default="a", help="a | b")
    page = reference.markdown(parser)
    assert "| `--mode` `{a,b}` | `a` | a \\| b |" in page
