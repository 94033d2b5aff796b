"""What the command groups of `lewm` share: argument types, range checks, Ctrl-C handling,
episode progress bars and the JSON output line.

Each type turns one flag's text into a value or raises `argparse.ArgumentTypeError` with a
one-line reason (the parser prints it and exits 2)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading

from lewm_core.atomic import jsonable
from lewm_core.errors import UserError


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


def check_range(flag: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise UserError(f"{flag} must be between {lo} and {hi} (got {value})")


@contextlib.contextmanager
def sigint_flag():
    """Record Ctrl-C (SIGINT) in the yielded list instead of raising KeyboardInterrupt at once.

    The command checks the list at safe points and stops there. A KeyboardInterrupt raised at
    an arbitrary moment may land inside a finalizer or a library callback, which swallows it
    (then a parallel collection waited forever for the episodes of its interrupted workers),
    or between two updates that belong together. Outside the main thread (the lab) nothing is
    installed. Installed even when a parent process ignored SIGINT for us.
    """
    hits: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def episode_progress(total: int, desc: str, quiet: bool):
    """Yield a `progress(done, total)` callback that draws a tqdm bar of episodes; Ctrl-C
    stops between two episodes (KeyboardInterrupt from the callback: the writer then removes
    its temporary file)."""
    from tqdm import tqdm

    with (
        sigint_flag() as interrupted,
        tqdm(total=total, unit="ep", desc=desc, disable=quiet) as bar,
    ):

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            if interrupted:
                raise KeyboardInterrupt

        yield progress


def say_to_stderr(quiet: bool):
    """A `say(message)` that writes one line to stderr unless `quiet`."""

    def say(msg: str) -> None:
        if not quiet:
            sys.stderr.write(f"{msg}\n")
            sys.stderr.flush()

    return say


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a finite positive number")
    return value


MODEL_FOLDER_HELP = "model folder (a run or a shipped model: config.json + model.safetensors)"
SEED_HELP = "random seed (0 to 2**32 - 1); the same seed gives the same result"


def add_model_flag(parser: argparse.ArgumentParser, help: str = MODEL_FOLDER_HELP) -> None:
    """`--checkpoint`: the model folder a command reads (required)."""
    parser.add_argument("--checkpoint", required=True, type=path_arg, help=help)


def add_seed_flag(parser: argparse.ArgumentParser, help: str = SEED_HELP) -> None:
    """`--seed`: an integer in [0, 2**32 - 1], default 0; `help` says what it draws."""
    parser.add_argument("--seed", type=seed_arg, default=0, help=help)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """`--quiet` and `--json`, which every command that reports numbers takes."""
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or messages on stderr"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the result as one JSON object, the last line on stdout",
    )
