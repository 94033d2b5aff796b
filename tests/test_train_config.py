"""Every training setting declared once (TrainConfig's knobs) and read from there: by the checks,
by `lewm train`'s flags, by the lab's Train page; and the presets in one table."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from lewm_testing import lab_dirs, open_page

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.errors import UserError
from lewm_core.knobs import knobs_of
from lewm_core.presets import PRESETS
from lewm_core.training.config import TRAIN_FLAGS, TrainConfig
from lewm_core.world_model.config import ModelConfig

os.environ.setdefault("MUJOCO_GL", "egl")

KNOBS = knobs_of(TrainConfig)


def _config(**values) -> TrainConfig:
    return TrainConfig(data="d.h5", out="run", **values)


def _train_parser():
    from lewm_core.cli.main import build_parser

    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_every_setting_is_a_knob_with_help_and_every_flag_says_its_limits() -> None:
    plain = {"data", "out", "model_overrides", "extra_data", "extra_repeat"}  # paths, lists
    fields = set(TrainConfig.__dataclass_fields__)
    assert fields - plain == set(KNOBS), "a TrainConfig field without help and limits"
    assert all(k.help for k in KNOBS.values())
    assert set(TRAIN_FLAGS) <= set(KNOBS)
    actions = {a.dest: a for a in _train_parser()._actions}
    for name in TRAIN_FLAGS:
        k = KNOBS[name]
        assert actions[name].option_strings == [k.flag]
        assert actions[name].default is None  # not given: the preset's value stays
        assert k.help.replace("%", "%%").rstrip(")") in actions[name].help
        assert k.limits_text() in actions[name].help


@pytest.mark.parametrize("name", [n for n, k in KNOBS.items() if k.lo is not None])
def test_a_value_past_a_limit_is_refused_naming_the_flag(name: str) -> None:
    k = KNOBS[name]
    edge = k.lo if k.kind is int else float(k.lo)
    past = edge if k.lo_open else edge - 1
    inside = edge if not k.lo_open else (k.lo + k.hi) / 2 if k.hi is not None else edge + 1
    _config(**{name: inside}).validate()  # the limit itself, or inside an open one
    flag = k.flag if name in (*TRAIN_FLAGS, "preset") else name
    with pytest.raises(UserError, match="^" + re.escape(f"{flag} must be {k.limits_text()}")):
        _config(**{name: past}).validate()
    if k.hi is not None:
        with pytest.raises(UserError, match=f"^{flag} must be"):
            _config(**{name: k.hi + 1}).validate()


def test_cross_field_checks_stay() -> None:
    with pytest.raises(UserError, match="--extra-repeat gives 2 numbers for 1"):
        _config(extra_data=["e.h5"], extra_repeat=[1, 2]).validate()
    with pytest.raises(UserError, match="names the --data file itself"):
        _config(extra_data=["d.h5"]).validate()
    with pytest.raises(UserError, match="wrong type"):
        _config(epochs="10").validate()


def test_presets_come_from_one_table() -> None:
    for name, preset in PRESETS.items():
        assert preset.source
        model = ModelConfig.preset(name).to_dict()
        for key, value in preset.model.items():
            assert model[key] == (list(value) if isinstance(value, tuple) else value)
        train = TrainConfig.from_preset(name, "d.h5", "run")
        assert {k: getattr(train, k) for k in preset.train} == preset.train
    assert ModelConfig.preset("paper") == ModelConfig()  # the paper's sizes are the defaults
    # a flag given on top of the preset wins; one not given (None) leaves the preset's
    cfg = TrainConfig.from_preset("paper", "d.h5", "run", lr=1e-4, batch_size=None)
    assert cfg.lr == 1e-4 and cfg.batch_size == PRESETS["paper"].train["batch_size"]


def test_train_page_widgets_take_the_knobs_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = lab_dirs(tmp_path, monkeypatch)
    spec = CollectSpec("tworoom", episodes=2, steps=12, resolution=64, seed=0)
    collect(spec, dirs["data_dir"] / "tiny.h5")
    at = open_page("views/train.py")
    widgets = {
        "train_lambda": "sigreg_weight",
        "train_max_steps": "max_steps",
        "train_epochs": "epochs",
        "train_batch": "batch_size",
        "train_seed": "seed",
        "train_ckpt": "checkpoint_every",
        "train_threads": "threads",
    }
    for key, name in widgets.items():
        w, k = at.number_input(key=key), KNOBS[name]
        assert w.min == k.lo, key
        top = min(k.hi, os.cpu_count() or 1) if name == "threads" else k.hi
        assert w.max == top, key
        assert k.help[1:] in w.help, key
