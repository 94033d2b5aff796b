"""Every CEM setting is declared once (`CEMConfig`'s knobs) and the planning flags of `lewm
eval`, `lewm collect-planned` and `lewm ship`, a model's recorded `PlanningDefaults` and the
checks all read it: a limit changed there changes everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from lewm_core.cli.main import build_parser
from lewm_core.cli.planning import CEM_FLAGS
from lewm_core.errors import UserError
from lewm_core.knobs import knobs_of
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.world_model.checkpoint import PlanningDefaults, planning_defaults

KNOBS = knobs_of(CEMConfig)


def _subcommand(name: str):
    return build_parser()._subparsers._group_actions[0].choices[name]


def test_every_cem_setting_is_a_knob_with_help_and_limits() -> None:
    assert list(KNOBS) == [f.name for f in dataclasses.fields(CEMConfig)]
    for k in KNOBS.values():
        assert k.help and (k.choices or k.limits_text()), k.name
        k.check(k.default)  # every default lies inside its own limits
    paper = CEMConfig()
    assert (paper.samples, paper.iterations, paper.elites, paper.horizon) == (300, 30, 30, 5)
    assert (paper.receding_horizon, paper.context, paper.objective) == (5, 1, "last")


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(samples=0), "CEM samples must be 1 to 100,000"),
        (dict(samples=100_001), "CEM samples must be 1 to 100,000"),
        (dict(iterations=0), "CEM iterations must be 1 to 10,000"),
        (dict(horizon=101), "CEM horizon must be 1 to 100"),
        (dict(init_std=0.0), "CEM init std must be above 0"),
        (dict(sampling="gaussian"), "CEM sampling must be one of block, independent"),
        (dict(context=0), "CEM context must be 1 to 64"),
        (dict(samples=10, elites=11), r"CEM elites must be at most the samples \(10\)"),
        (dict(horizon=3, receding_horizon=4), "receding horizon 4 exceeds the horizon 3"),
    ],
)
def test_validate_names_the_setting_and_its_limits(setting: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        CEMConfig(**setting).validate()


def test_planning_flags_are_built_from_the_knobs() -> None:
    """Same flags, defaults and choices as the knobs; the budget defaults to the paper's, the
    model-default flags to None (the model's recorded setting fills them)."""
    for command in ("eval", "collect-planned"):
        actions = {a.dest: a for a in _subcommand(command)._actions}
        for name in CEM_FLAGS:
            k, action = KNOBS[name], actions[name]
            assert action.option_strings == [k.flag]
            assert tuple(action.choices or ()) == tuple(k.choices or ())
            assert k.help.split(";")[0] in action.help
            if k.lo is not None:
                assert k.limits_text() in action.help
        budget = {n: actions[n].default for n in ("samples", "iterations", "elites", "horizon")}
        assert budget == dict(samples=300, iterations=30, elites=30, horizon=5)
        for name in ("receding_horizon", "context", "sampling", "objective"):
            assert actions[name].default is None and "the model's" in actions[name].help
    ship = {a.dest: a for a in _subcommand("ship")._actions}
    for name in (f.name for f in dataclasses.fields(PlanningDefaults)):
        assert ship[name].option_strings == [KNOBS[name].flag] and ship[name].default is None


def test_recorded_planning_defaults_share_the_knobs() -> None:
    recorded = knobs_of(PlanningDefaults)
    assert list(recorded) == ["sampling", "context", "objective", "receding_horizon"]
    assert all(recorded[n] == KNOBS[n] for n in recorded)
    assert PlanningDefaults() == PlanningDefaults(*(KNOBS[n].default for n in recorded))


@pytest.mark.parametrize(
    "planning, message",
    [
        ({"sampling": "gaussian"}, "planning sampling must be one of block, independent"),
        ({"objective": 3}, "planning objective must be one of last, min"),
        ({"context": 4}, r"context 4; use a whole number between 1 and 3 \(the model's history"),
        ({"receding_horizon": 6}, "receding horizon 6; use a whole number between 1 and 5"),
        ({"receding_horizon": True}, "receding horizon True"),
        ({"horizon": 3}, r"unknown keys \['horizon'\]"),
    ],
)
def test_a_bad_recorded_default_names_the_entry_and_the_fix(planning: dict, message) -> None:
    meta = {"model": {"history": 3}, "planning": planning}
    with pytest.raises(UserError, match=message) as raised:
        planning_defaults(meta)
    assert "remove" in str(raised.value)


def test_recorded_defaults_build_the_cem_config() -> None:
    meta = {"model": {"history": 3}, "planning": {"context": 3, "receding_horizon": 2}}
    recorded = planning_defaults(meta)
    assert recorded == PlanningDefaults("block", 3, "last", 2)
    cem = recorded.cem_config(samples=64, elites=None, horizon=1)
    assert (cem.samples, cem.elites, cem.context, cem.horizon) == (64, 30, 3, 1)
    assert cem.receding_horizon == 1, "capped at the horizon"
