"""Shared fixtures: a small real Two-Room dataset and a lab model trained on it (once)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from lewm_core.data.collect import CollectSpec, collect  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        help="run the full reliability suite (tests/reliability): more kill points and examples",
    )


@pytest.fixture(scope="session")
def tworoom_h5(tmp_path_factory) -> str:
    """60 Two-Room episodes of 60 steps at 64 px (real env, real policy, real HDF5)."""
    out = tmp_path_factory.mktemp("data") / "tworoom.h5"
    collect(CollectSpec("tworoom", episodes=60, steps=60, resolution=64, seed=0), out, workers=1)
    return str(out)


@pytest.fixture(scope="session")
def trained_run(tworoom_h5, tmp_path_factory) -> dict:
    """A lab-preset model trained with SIGReg for 300 steps on `tworoom_h5`; its summary + path."""
    from lewm_core.training.config import TrainConfig
    from lewm_core.training.trainer import Trainer

    out = tmp_path_factory.mktemp("runs") / "sigreg"
    cfg = TrainConfig.from_preset(
        "lab", tworoom_h5, str(out), max_steps=300, batch_size=32, checkpoint_every=1000
    )
    trainer = Trainer(cfg)
    untrained = trainer.evaluate()
    summary = trainer.run()
    return {"path": str(out), "summary": summary, "untrained": untrained, "trainer": trainer}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """A tiny dataset (12 x 40 Two-Room steps) and a lab model trained 20 steps on it, 1 thread.

    For tests that need a real model that loads (the lab pages), not one that plans well.
    """
    from lewm_core.training.config import TrainConfig
    from lewm_core.training.trainer import Trainer

    base = tmp_path_factory.mktemp("tiny")
    data = base / "tiny.h5"
    collect(CollectSpec("tworoom", episodes=12, steps=40, resolution=64, seed=0), data)
    cfg = TrainConfig.from_preset(
        "lab",
        str(data),
        str(base / "tiny-run"),
        max_steps=20,
        batch_size=8,
        checkpoint_every=10,
        threads=1,
    )
    Trainer(cfg).run()
    return {"h5": data, "run": base / "tiny-run"}
