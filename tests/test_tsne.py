"""t-SNE of latents: repeatable for a seed, coloured by a state quantity, clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from lewm_testing import run_cli  # noqa: E402

from lewm_core.analysis.tsne import parse_color, trust, tsne_latents, write_tsne
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import load_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_model(trained_run["path"])


def test_tsne_repeatable_with_seed(loaded, tworoom_h5):
    a = tsne_latents(loaded, points=150, seed=3, perplexity=10)
    b = tsne_latents(loaded, points=150, seed=3, perplexity=10)
    c = tsne_latents(loaded, points=150, seed=4, perplexity=10)
    assert a["coords"].shape == (150, 2) and np.isfinite(a["coords"]).all()
    assert np.array_equal(a["coords"], b["coords"]) and np.array_equal(a["rows"], b["rows"])
    assert not np.array_equal(a["rows"], c["rows"])
    assert 0.5 < a["trustworthiness"] <= 1.0
    assert len(np.unique(a["rows"])) == 150
    with h5py.File(tworoom_h5, "r") as f:
        want = f["state"][:][a["rows"], 0]
    assert np.allclose(a["color"], want) and a["color_name"] == "agent_pos[0]"


def test_tsne_untrained_and_outputs(loaded, tmp_path):
    res = tsne_latents(loaded, points=100, seed=0, perplexity=10, untrained=True, color="agent_pos")
    assert res["untrained_coords"].shape == (100, 2)
    assert 0.0 <= res["untrained_trustworthiness"] <= 1.0
    csv = write_tsne(res, tmp_path / "t.csv")
    lines = csv.read_text().splitlines()
    assert lines[0] == "row,x,y,agent_pos[0]" and len(lines) == 101
    npz = np.load(write_tsne(res, tmp_path / "t.npz"))
    assert np.allclose(npz["coords"], res["coords"]) and np.array_equal(npz["rows"], res["rows"])
    with pytest.raises(UserError, match=r"\.csv or \.npz"):
        write_tsne(res, tmp_path / "t.png")


def test_parse_color():
    q = {"agent_pos": [0, 2], "block_angle": [2, 1]}
    assert parse_color("agent_pos", None, q) == ("agent_pos", 0)
    assert parse_color("agent_pos[1]", None, q) == ("agent_pos", 1)
    assert parse_color("agent_pos", "norm", q) == ("agent_pos", "norm")
    assert parse_color("block_angle", None, q) == ("block_angle", 0)
    with pytest.raises(UserError, match="choose one of agent_pos, block_angle"):
        parse_color("block_pos", None, q)
    with pytest.raises(UserError, match="0..1"):
        parse_color("agent_pos[2]", None, q)
    with pytest.raises(UserError, match="index or 'norm'"):
        parse_color("agent_pos", "x", q)


def test_trustworthiness_of_identity_map():
    x = np.random.default_rng(0).normal(size=(60, 2))
    assert trust(x, x, 5) == pytest.approx(1.0)


def test_tsne_cli_json_and_bad_color(trained_run, capsys, tmp_path):
    path = trained_run["path"]
    argv = ["tsne", "--checkpoint", path, "--points", "80", "--perplexity", "10", "--quiet"]
    rc, out, _ = run_cli([*argv, "--json", "--out", str(tmp_path / "m.csv")], capsys)
    assert rc == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert res["points"] == 80 and res["seed"] == 0 and 0 <= res["trustworthiness"] <= 1
    assert (tmp_path / "m.csv").exists()
    rc, _, err = run_cli([*argv, "--color", "block_pos"], capsys)
    assert rc == 2 and "unknown quantity 'block_pos'" in err and "agent_pos" in err
