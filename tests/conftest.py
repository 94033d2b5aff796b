"""Shared fixtures: a small real Two-Room dataset and a lab model trained on it (once)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from lewm_core.collect import CollectSpec, collect  # noqa: E402


@pytest.fixture(scope="session")
def tworoom_h5(tmp_path_factory) -> str:
    """60 Two-Room episodes of 60 steps at 64 px (real env, real policy, real HDF5)."""
    out = tmp_path_factory.mktemp("data") / "tworoom.h5"
    collect(CollectSpec("tworoom", episodes=60, steps=60, resolution=64, seed=0), out, workers=1)
    return str(out)


@pytest.fixture(scope="session")
def trained_run(tworoom_h5, tmp_path_factory) -> dict:
    """A lab-preset model trained with SIGReg for 300 steps on `tworoom_h5`; its summary + path."""
    from lewm_core.trainer import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("runs") / "sigreg"
    cfg = TrainConfig.from_preset(
        "lab", tworoom_h5, str(out), max_steps=300, batch_size=32, checkpoint_every=1000
    )
    trainer = Trainer(cfg)
    untrained = trainer.evaluate()
    summary = trainer.run()
    return {"path": str(out), "summary": summary, "untrained": untrained, "trainer": trainer}
