"""The Decode, Latent space and Surprise pages of the lab (AppTest, in-process).

As in test_app_pages.py, the app's folders point at temporary ones and the model is a lab model
trained a few steps on a tiny Two-Room dataset with one torch thread: the pages need a real,
loadable model, not a good one (the analyses' quality is tested in test_decoder, test_tsne,
test_probing and test_surprise). Every setting is tiny so the file runs in about a minute.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("MUJOCO_GL", "egl")

from lewm_testing import HOME, button, lab_dirs, open_page


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run: dict) -> dict:
    """Empty data/runs/assets folders for the app, with the tiny model copied in as a user run."""
    dirs = lab_dirs(tmp_path, monkeypatch)
    shutil.copytree(tiny_run["run"], dirs["runs_dir"] / "tiny-run")
    return {**dirs, **tiny_run}


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def _captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def _qp(at: AppTest, name: str) -> str:
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


def _no_error(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)


# --------------------------------------------------------------------------- Decode
def test_decode_page_trains_a_decoder_and_decodes(lab: dict) -> None:
    run = lab["runs_dir"] / "tiny-run"
    at = open_page("views/decode.py")
    _no_error(at)
    assert any("no decoder yet" in t for t in _texts(at.info))
    assert not at.get("plotly_chart")
    at.number_input(key="decode_steps").set_value(3)
    at.number_input(key="decode_batch").set_value(8)
    at.number_input(key="decode_frames").set_value(40)
    at.number_input(key="decode_seed_w").set_value(2)
    button(at, "Train a decoder").click().run()
    _no_error(at)
    assert (run / "decoder.safetensors").is_file() and (run / "decoder.json").is_file()
    assert any("Trained the decoder" in t for t in _texts(at.success))
    assert _qp(at, "seed") == "2"
    assert _metric(at, "Frames") == "8"  # 40 raw steps at frameskip 5
    assert _metric(at, "Mean PSNR, predicted").endswith(" dB")
    assert at.get("plotly_chart"), "PSNR chart missing"
    captions = _captions(at)
    assert any(c.startswith("predicted (0 steps") for c in captions), captions

    at.slider(key="decode_frame_w").set_value(5).run()
    _no_error(at)
    captions = _captions(at)
    assert any(c.startswith("predicted (5 steps") for c in captions), captions
    at.number_input(key="decode_ep_w").set_value(3).run()
    at.number_input(key="decode_start_w").set_value(34).run()  # the last start: 2 frames fit
    _no_error(at)
    assert _qp(at, "episode") == "3" and _qp(at, "start") == "34"
    assert _metric(at, "Frames") == "2"


def test_decode_page_leaves_shipped_models_alone(lab: dict) -> None:
    shutil.move(lab["runs_dir"] / "tiny-run", lab["assets_dir"] / "tworoom")
    at = open_page("views/decode.py")
    _no_error(at)
    assert any("shipped model without a decoder" in t for t in _texts(at.info))
    assert not [b for b in at.button if b.label.startswith("Train")]
    assert sorted(p.name for p in (lab["assets_dir"] / "tworoom").iterdir()) == sorted(
        p.name for p in lab["run"].iterdir()
    )


# --------------------------------------------------------------------------- Latent space
def test_latent_page_maps_and_probes(lab: dict) -> None:
    at = open_page("views/latent.py")
    _no_error(at)
    at.number_input(key="latent_points_w").set_value(40)
    at.number_input(key="latent_seed_w").set_value(1)
    at.checkbox(key="latent_untrained_w").check()
    button(at, "Compute the map").click().run()
    _no_error(at)
    assert _metric(at, "Points") == "40"
    assert 0.0 <= float(_metric(at, "Trustworthiness")) <= 1.0
    assert 0.0 <= float(_metric(at, "Untrained encoder")) <= 1.0
    assert len(at.get("plotly_chart")) == 2  # trained and untrained maps
    assert _qp(at, "points") == "40" and _qp(at, "seed") == "1"
    assert _qp(at, "color") == "agent_pos"

    # the point index (the fallback of clicking the map) shows that point's frame
    at.number_input(key="latent_point_w").set_value(7).run()
    _no_error(at)
    captions = _captions(at)
    assert any(c.startswith("point 7: episode") for c in captions), captions
    at.selectbox(key="latent_comp_w").set_value("norm").run()  # recolour without recomputing
    _no_error(at)
    assert not any("settings changed" in t for t in _texts(at.info))

    at.number_input(key="latent_probe_train").set_value(60)
    at.number_input(key="latent_probe_test").set_value(20)
    at.checkbox(key="latent_probe_mlp").uncheck()
    button(at, "Run the probes").click().run()
    _no_error(at)
    table = next(d.value for d in at.dataframe if "linear r" in d.value.columns)
    assert list(table["quantity"]) == ["agent_pos"]
    assert {"linear MSE", "untrained linear r"} <= set(table.columns)
    assert "rest-of-state linear r" not in table.columns  # Two-Room: no other quantity
    assert -1.0 <= float(table["linear r"][0]) <= 1.0

    at.number_input(key="latent_straight_eps").set_value(2)
    button(at, "Measure straightness").click().run()
    _no_error(at)
    assert -1.0 <= float(_metric(at, "Trained encoder")) <= 1.0


# --------------------------------------------------------------------------- Surprise
def test_surprise_page_runs_the_experiment(lab: dict) -> None:
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("views/surprise.py")
    at.query_params.update({"perturbation": "color", "steps": "6", "episodes": "3", "seed": "4"})
    at.run()
    _no_error(at)
    assert at.radio(key="surprise_kind_w").value == "color"
    assert at.number_input(key="surprise_steps_w").value == 6
    assert at.number_input(key="surprise_step_w").value == 3  # steps // 2 by default
    assert at.number_input(key="surprise_seed_w").value == 4
    at.number_input(key="surprise_eps_w").set_value(2)
    at.number_input(key="surprise_step_w").set_value(2)
    button(at, "Run the experiment").click().run()
    _no_error(at)
    p = float(_metric(at, "p-value"))
    assert 0.0 <= p <= 1.0
    assert _metric(at, "Peaks at the perturbation").endswith("%")
    assert at.get("plotly_chart"), "surprise curves missing"
    captions = _captions(at)
    assert any(c.startswith("step 2 (perturbed)") for c in captions), captions
    assert _qp(at, "episodes") == "2" and _qp(at, "step") == "2"

    at.number_input(key="surprise_example_w").set_value(1).run()
    _no_error(at)
    at.number_input(key="surprise_seed_w").set_value(5).run()
    assert any("settings changed" in t for t in _texts(at.info))
