"""Declare a setting once: its default, a help line and its limits, on a config dataclass field.

A config class (`TrainConfig`, `CEMConfig`, ...) declares each field with `knob(...)`; then

- the command line builds its flags from the fields (`add_flags`: `--batch-size` from
  `batch_size`, the help line and the limits in the flag's help),
- the checks name the flag and the limits (`check_knobs`, `check_value`),
- the lab's widgets and the demo's inputs read the same limits and help (`knobs_of`),

so a limit changed in the dataclass changes everywhere at once.

    @dataclass
    class CEMConfig:
        samples: int = knob(300, "CEM candidates per iteration", lo=1, hi=100_000)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lewm_core.errors import UserError

_META = "lewm_knob"


@dataclass(frozen=True)
class Knob:
    """What one config field declares about itself (read with `knobs_of`)."""

    name: str
    kind: type  # int, float, bool or str: what a flag parses and a widget shows
    default: Any
    help: str
    lo: float | None = None  # inclusive limits; None = unbounded on that side
    hi: float | None = None
    choices: tuple | None = None
    optional: bool = False  # None is a valid value (e.g. "the model's default", "every core")
    lo_open: bool = False  # the limit itself is outside: lr in (0, 1)
    hi_open: bool = False
    metavar: str | None = None  # what the flag's value is called in --help (e.g. MODEL_FOLDER)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def limits_text(self) -> str:
        """'1 to 100', 'at least 1', '' (for a help line or an error)."""
        fmt = "{:,}" if self.kind is int else "{:g}"
        if self.lo_open or self.hi_open:  # words say which ends are allowed
            ends = []
            if self.lo is not None:
                ends.append(f"{'above' if self.lo_open else 'at least'} {fmt.format(self.lo)}")
            if self.hi is not None:
                ends.append(f"{'below' if self.hi_open else 'at most'} {fmt.format(self.hi)}")
            return " and ".join(ends)
        if self.lo is not None and self.hi is not None:
            return f"{fmt.format(self.lo)} to {fmt.format(self.hi)}"
        if self.lo is not None:
            return f"at least {fmt.format(self.lo)}"
        if self.hi is not None:
            return f"at most {fmt.format(self.hi)}"
        return ""

    def check(self, value: Any, flag: str | None = None) -> None:
        """Raise UserError naming the flag and its limits when `value` is outside them."""
        name = flag or self.flag
        if value is None:
            if self.optional:
                return
            raise UserError(f"{name} needs a value")
        if self.choices is not None:
            if value not in self.choices:
                choices = ", ".join(map(str, self.choices))
                raise UserError(f"{name} must be one of {choices} (got {value!r})")
            return
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{name} must be a number (got {value!r})")
            if self.kind is int and not float(value).is_integer():
                raise UserError(f"{name} must be a whole number (got {value!r})")
            if not math.isfinite(value):
                raise UserError(f"{name} must be a finite number (got {value!r})")
            below = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
            above = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
            if below or above:
                raise UserError(f"{name} must be {self.limits_text()} (got {value:g})")


def knob(
    default: Any,
    help: str,
    *,
    kind: type | None = None,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple | None = None,
    optional: bool | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    metavar: str | None = None,
) -> Any:
    """A dataclass field carrying its help line and limits (see the module docstring).

    `kind` defaults to the type of `default`; give it when the default is None. `lo`/`hi` are
    inclusive unless `lo_open`/`hi_open` (then the value must be strictly inside). `metavar`
    names the flag's value in --help."""
    kind = kind or type(default)
    if kind not in (int, float, bool, str):
        raise TypeError(f"knob kind must be int, float, bool or str, not {kind}")
    meta = dict(kind=kind, help=help, lo=lo, hi=hi, choices=choices, metavar=metavar)
    meta.update(lo_open=lo_open, hi_open=hi_open)
    meta["optional"] = default is None if optional is None else optional
    return dataclasses.field(default=default, metadata={_META: meta})


def same_knob(cls: Any, name: str) -> Any:
    """A dataclass field declaring the knob `name` of `cls` again, default, help and limits
    included: for a class that holds some of another's settings (a model's recorded planning
    defaults, some of `CEMConfig`'s), so that their limits stay declared in one place."""
    for f in dataclasses.fields(cls):
        if f.name == name and _META in f.metadata:
            return dataclasses.field(default=f.default, metadata={_META: dict(f.metadata[_META])})
    raise KeyError(f"{cls.__name__} declares no knob {name!r}")


def knobs_of(cls: Any) -> dict[str, Knob]:
    """{field name: Knob} of a dataclass (class or instance), in declaration order."""
    out = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META)
        if meta is not None:
            out[f.name] = Knob(name=f.name, default=f.default, **meta)
    return out


def check_knobs(config: Any, flags: dict[str, str] | None = None) -> None:
    """Check every knob of a config instance; `flags` renames a field's flag in the message."""
    for name, k in knobs_of(config).items():
        k.check(getattr(config, name), (flags or {}).get(name))


def check_value(cls: Any, name: str, value: Any, flag: str | None = None) -> None:
    """Check one value against the limits `cls` declares for field `name`."""
    knobs_of(cls)[name].check(value, flag)


def _parse(k: Knob):
    if k.kind is float:

        def finite(text: str) -> float:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number") from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a finite number")
            return value

        return finite
    return k.kind


def _with_notes(text: str, notes: list[str]) -> str:
    """`text (note; note)`, or the notes joined into the parenthesis `text` already ends with."""
    if not notes:
        return text
    if text.endswith(")"):
        return f"{text[:-1]}; {'; '.join(notes)})"
    return f"{text} ({'; '.join(notes)})"


def add_flags(
    parser: argparse.ArgumentParser,
    cls: Any,
    names: list[str] | tuple[str, ...] | None = None,
    *,
    unset: bool = False,
    help_suffix: dict[str, str] | None = None,
    types: dict[str, Any] | None = None,
) -> None:
    """Add one flag per knob of `cls` (all, or `names` in that order).

    The flag's help is the knob's help line plus its limits and default. With `unset=True`
    every flag defaults to None, so the caller can tell "not given" from a value (a preset or a
    model's shipped setting fills it); bool knobs become `store_true` flags. `types` gives a
    flag its own parser (e.g. a path check) instead of the knob kind's."""
    ks = knobs_of(cls)
    for name in names or list(ks):
        k = ks[name]
        extra = (help_suffix or {}).get(name, "")
        text = k.help.replace("%", "%%")  # argparse formats help lines with %
        if k.kind is bool:
            parser.add_argument(
                k.flag,
                action="store_true",
                default=None if unset else k.default,
                help=text + extra,
            )
            continue
        parts = [text]
        if k.limits_text():
            parts.append(k.limits_text())
        if not unset and k.default is not None:
            parts.append(f"default {k.default}")
        parser.add_argument(
            k.flag,
            type=(types or {}).get(name) or _parse(k),
            choices=k.choices,
            metavar=k.metavar,
            default=None if unset else k.default,
            help=_with_notes(parts[0], parts[1:]) + extra,
        )


def values_from(args: argparse.Namespace, cls: Any, names: list[str] | tuple[str, ...]) -> dict:
    """{name: value} of the flags `add_flags` added, leaving out the ones not given (None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
