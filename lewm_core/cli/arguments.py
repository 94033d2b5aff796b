"""The command line's argument types and its JSON output, shared by `lewm_core.cli.main` and
`lewm_core.cli.analysis`: each type turns one flag's text into a value or raises
`argparse.ArgumentTypeError` with a one-line reason (the parser prints it and exits 2)."""

from __future__ import annotations

import argparse
import json
import math
import os

from lewm_core.atomic import jsonable


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite number")
    return value


MAX_SEED = 2**32 - 1


def seed_arg(text: str) -> int:
    """A seed: an integer in [0, 2**32 - 1] (numpy's and torch's seeding both accept it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text[:40]} is not in 0..{MAX_SEED}")
    return value


def arch_setting(text: str) -> tuple:
    """One `--arch KEY=VALUE` model-size setting (see `config.parse_arch_override`)."""
    from lewm_core.world_model.config import parse_arch_override

    try:
        return parse_arch_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def path_arg(text: str) -> str:
    """A file or folder path the OS can take: no NUL byte, no over-long name."""
    if "\x00" in text:
        raise argparse.ArgumentTypeError("the path holds a NUL byte")
    raw = os.fsencode(text)
    if len(raw) > 4000 or any(len(part) > 255 for part in raw.split(b"/")):
        raise argparse.ArgumentTypeError(
            f"the path '{text[:40]}...' is too long (at most 255 bytes per name)"
        )
    return text


def emit_json(obj: dict) -> None:
    """Print `obj` as the one-line JSON object that ends a command's output."""
    print(json.dumps(jsonable(obj)), flush=True)
