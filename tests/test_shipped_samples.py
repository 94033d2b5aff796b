"""Held-out samples: every shipped model carries one, the analysis commands read it where the
model's dataset is not on disk and say so, and `lewm sample` / `lewm ship` make and keep it.

The CLI tests run in an empty temporary folder with the shipped model folders addressed by
absolute path, so no data/ of a developer's checkout is found; `decoder-train` writes its decoder
beside the model, so it trains on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from lewm_testing import ROOT, run_cli

from lewm_core.data.collect import dataset_layout, episode_seed, run_episode
from lewm_core.data.dataset import open_dataset
from lewm_core.data.samples import (
    SAMPLE_SEED_BASE,
    SAMPLE_SPLIT,
    check_sample,
    resolve_frames,
)
from lewm_core.envs import make, make_policy
from lewm_core.errors import UserError
from lewm_core.shipping import write_card
from lewm_core.world_model.checkpoint import load_model

os.environ.setdefault("MUJOCO_GL", "egl")
ASSETS = ROOT / "assets" / "models"
ENVS = ("tworoom", "pusht", "reacher", "cube")


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder (no data/), with LEWM_DATA_DIR pointing at an empty folder."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("LEWM_DATA_DIR", str(work / "data"))
    return work


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the shipped samples
@pytest.mark.parametrize("env_name", ENVS)
def test_shipped_sample_is_held_out_frames_of_the_models_task(env_name: str, tmp_path, monkeypatch):
    """sample.json describes sample.h5; the file has `lewm collect`'s layout at the model's
    resolution, gzip-compressed and a few MB; its first episode is the env's data policy run from
    seed 2**31 (replayed here in the real simulator), a seed no collected episode can have; the
    committed model card is what `write_card` writes and names the sample."""
    folder = ASSETS / env_name
    info = check_sample(folder)
    config = json.loads((folder / "config.json").read_text())
    assert info["env"] == env_name and info["resolution"] == config["model"]["image_size"]
    assert info["episode_seed_base"] == SAMPLE_SEED_BASE == 2**31
    assert 2_000 <= info["frames"] == info["episodes"] * info["steps"] <= 12_000
    size = (folder / "sample.h5").stat().st_size
    assert size == info["bytes"] < 4.5e6
    layout = dataset_layout(env_name, info["resolution"])
    with open_dataset(folder / "sample.h5") as f:
        assert f["pixels"].compression == "gzip" and f["sim_state"].compression == "gzip"
        assert f["state"].shape[1] == layout["state_dim"]
        assert f["sim_state"].shape[1] == layout["sim_dim"]
        assert json.loads(f.attrs["state_quantities"]) == layout["state_quantities"]
        assert list(f["ep_len"][:]) == [info["steps"]] * info["episodes"]
        first = {k: f[k][: info["steps"]] for k in ("pixels", "state", "sim_state", "action")}
    env = make(env_name, resolution=info["resolution"])
    seed = SAMPLE_SEED_BASE
    replay = run_episode(env, make_policy(env_name, env, seed), info["steps"], seed)
    env.close()
    # What the model sees and what the policy did replay exactly; the simulator's own floats
    # (MuJoCo's Cube and Reacher) differ in their last bits between CPUs (max 9e-9 in sim_state
    # between two AMD EPYC machines), so the states are compared to 1e-6.
    for key in ("pixels", "action"):
        assert np.array_equal(replay[key], first[key]), key
    for key in ("state", "sim_state"):
        np.testing.assert_allclose(replay[key], first[key], rtol=1e-6, atol=1e-6, err_msg=key)
    # every seed `lewm collect` gives an episode is 31 bits: below the sample's
    rng = np.random.default_rng(0)
    for s, k in rng.integers(0, 2**32, size=(200, 2)):
        assert episode_seed(int(s), int(k) % 100_000) < SAMPLE_SEED_BASE
    copy = tmp_path / env_name
    shutil.copytree(folder, copy)
    monkeypatch.chdir(tmp_path)  # no data/<env>.h5 here: the card's recipe is config.json's
    write_card(copy)
    card = (folder / "MODEL_CARD.md").read_text()
    assert (copy / "MODEL_CARD.md").read_text() == card
    assert "## Held-out sample" in card and f"{info['frames']:,} frames" in card


# --------------------------------------------------------------------------- the CLI without data
@pytest.mark.parametrize("env_name", ENVS)
def test_probe_without_data_reads_the_shipped_sample(env_name: str, empty_cwd: Path, capsys):
    model = ASSETS / env_name
    argv = ["probe", "--checkpoint", str(model), "--no-mlp", "--train-frames", "400"]
    rc, out, err = run_cli([*argv, "--test-frames", "200", "--quiet", "--json"], capsys)
    assert rc == 0, err
    note = f"frames: {model}/sample.h5, the model's held-out sample (its dataset data/"
    assert out.startswith(note) and "600 frames" in out.splitlines()[0]
    result = _last_json(out)
    assert result["data_source"] == "sample" and result["data"] == str(model / "sample.h5")
    assert result["train_frames"] == 400 and result["test_frames"] == 200
    # the positions a shipped model's latent holds show on frames it never saw
    main = {"tworoom": "agent_pos", "pusht": "block_pos", "reacher": "fingertip_pos"}
    name = main.get(env_name, "ee_pos")
    trained, floor = result["linear"][name]["r"], result["untrained"]["linear"][name]["r"]
    assert trained > floor, (name, trained, floor)


def test_tsne_straightness_and_decoder_train_without_data(empty_cwd: Path, capsys):
    pusht = ASSETS / "pusht"
    argv = ["tsne", "--checkpoint", str(pusht), "--points", "150", "--quiet", "--json"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert out.startswith(f"frames: {pusht}/sample.h5, the model's held-out sample")
    assert _last_json(out)["data_source"] == "sample" and "150 frames" in out

    reacher = ASSETS / "reacher"
    argv = ["straightness", "--checkpoint", str(reacher), "--episodes", "3", "--json"]
    rc, out, err = run_cli([*argv, "--quiet"], capsys)
    assert rc == 0, err
    result = _last_json(out)
    assert result["data_source"] == "sample" and result["episodes"] == 3
    assert out.startswith(f"frames: {reacher}/sample.h5, the model's held-out sample")

    cube = empty_cwd / "cube"  # decoder-train writes beside the model: a copy
    shutil.copytree(ASSETS / "cube", cube)
    argv = ["decoder-train", "--checkpoint", str(cube), "--steps", "2", "--frames", "64"]
    rc, out, err = run_cli([*argv, "--val-frames", "16", "--quiet", "--json"], capsys)
    assert rc == 0, err
    assert out.startswith(f"frames: {cube}/sample.h5, the model's held-out sample")
    assert _last_json(out)["data_source"] == "sample"
    train = json.loads((cube / "decoder.json").read_text())["train"]
    assert train["data"] == str(cube / "sample.h5") and train["data_source"] == "sample"


def test_data_overrides_the_sample_and_a_run_without_either_fails(
    tiny_run: dict, empty_cwd: Path, capsys
):
    """`--data` wins over the sample; a run whose dataset is gone and that has no sample fails
    with an error naming both fixes; the same run with a sample made by `lewm sample` works."""
    run = empty_cwd / "runs" / "tiny"
    shutil.copytree(tiny_run["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["data"]["path"] = "data/gone.h5"
    (run / "config.json").write_text(json.dumps(config))
    argv = ["probe", "--checkpoint", str(run), "--no-mlp", "--train-frames", "50"]
    rc, _, err = run_cli([*argv, "--test-frames", "20", "--quiet"], capsys)
    assert rc == 2
    assert "data/gone.h5 was not found" in err and "--data" in err and "lewm sample" in err

    rc, out, err = run_cli(
        ["sample", "--checkpoint", str(run), "--episodes", "4", "--steps", "30", "--quiet"], capsys
    )
    assert rc == 0, err
    assert f"wrote {run}/sample.h5: 4 episodes x 30 steps (120 frames" in out
    assert not (run / "MODEL_CARD.md").exists()  # a run has no card to write again
    rc, out, err = run_cli([*argv, "--test-frames", "100", "--quiet", "--json"], capsys)
    assert rc == 0, err
    result = _last_json(out)
    assert result["data_source"] == "sample"
    assert result["test_frames"] == 30  # one of the 4 episodes: SAMPLE_SPLIT's quarter
    assert SAMPLE_SPLIT == (0.25, 0)

    rc, out, err = run_cli([*argv, "--data", str(tiny_run["h5"]), "--json", "--quiet"], capsys)
    assert rc == 0, err
    assert _last_json(out)["data_source"] == "given"
    assert out.startswith(f"frames: {tiny_run['h5']}, given with --data")


# --------------------------------------------------------------------------- making one
def test_lewm_sample_writes_a_collect_layout_file_atomically(tiny_run: dict, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    base = ["sample", "--checkpoint", str(run)]
    for bad, says in (
        (["--episodes", "1"], "between 2 and 1000"),
        (["--episodes", "2000", "--steps", "100"], "between 2 and 1000"),
        (["--episodes", "500", "--steps", "400"], "at most 100,000 frames"),
        (["--steps", "1"], "--steps must be between 2"),
        (["--policy", "expert"], "tworoom has the data policies default"),
    ):
        rc, _, err = run_cli([*base, *bad, "--quiet"], capsys)
        assert rc == 2 and says in err, (bad, err)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(("sample", "."))) == []

    rc, out, err = run_cli([*base, "--episodes", "3", "--steps", "25", "--quiet", "--json"], capsys)
    assert rc == 0, err
    info = _last_json(out)
    assert info == json.loads((run / "sample.json").read_text())
    assert (info["episodes"], info["steps"], info["frames"]) == (3, 25, 75)
    assert info["policy"] == "lewm_core.envs.make_policy('tworoom')"
    with h5py.File(tiny_run["h5"], "r") as a, h5py.File(run / "sample.h5", "r") as b:
        assert sorted(a) == sorted(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape[1:] == b[key].shape[1:]
        assert set(a.attrs) - {"seed"} <= set(b.attrs)
        assert b.attrs["episode_seed_base"] == SAMPLE_SEED_BASE
    rc, _, err = run_cli([*base, "--episodes", "3", "--steps", "25", "--quiet"], capsys)
    assert rc == 2 and "--overwrite" in err
    rc, _, err = run_cli([*base, "--episodes", "2", "--steps", "25", "--overwrite"], capsys)
    assert rc == 0, err
    assert check_sample(run)["episodes"] == 2
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]
    frames = resolve_frames(load_model(run), None)  # the run's dataset is still on disk
    assert frames.source == "dataset" and frames.split == load_model(run).split


def test_ship_carries_and_keeps_the_sample_and_names_it_in_the_card(
    tiny_run: dict, tmp_path: Path, capsys
):
    """A sample made on a run travels with `lewm ship`; shipping again (other weights of the same
    task) keeps it; the card names it; a folder whose sample is of another task loses it."""
    from lewm_core.shipping import ship

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    rc, _, err = run_cli(
        ["sample", "--checkpoint", str(run), "--episodes", "2", "--steps", "30"], capsys
    )
    assert rc == 0, err
    out = ship(run, tmp_path / "shipped")
    assert (out / "sample.h5").read_bytes() == (run / "sample.h5").read_bytes()
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Held-out sample" in card and "2 episodes x 30 steps (60 frames" in card
    recipe = json.loads((out / "config.json").read_text())["data"]["recipe"]
    assert recipe["num_episodes"] == 12 and recipe["steps"] == 40  # the tiny dataset's
    for name in ("sample.h5", "sample.json"):
        (run / name).unlink()
    (out / "model.safetensors").write_bytes(b"other weights shipped earlier")
    ship(run, out)
    assert check_sample(out)["episodes"] == 2
    info = json.loads((out / "sample.json").read_text())
    (out / "sample.json").write_text(json.dumps({**info, "env": "pusht"}))
    ship(run, out)
    assert not (out / "sample.h5").exists() and not (out / "sample.json").exists()
    assert "Held-out sample" not in (out / "MODEL_CARD.md").read_text()
    with pytest.raises(UserError, match="no held-out sample"):
        check_sample(out)


def test_sample_of_a_policy_that_ends_its_episodes_keeps_their_lengths(tmp_path):
    """pusht-v1's expert ends each episode at the goal: its sample holds episodes of varying
    length, and sample.json counts the frames written, not episodes x steps."""
    import shutil

    from lewm_core.data.dataset import episode_lengths
    from lewm_core.data.samples import collect_sample, sample_path

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(ROOT / "assets/models/pusht-v1/config.json", folder / "config.json")
    info = collect_sample(folder, 3, 300, policy="expert")
    lengths = episode_lengths(sample_path(folder))
    assert len(lengths) == 3 and lengths.max() <= 300 and len(set(lengths)) > 1
    assert info["frames"] == int(lengths.sum()) < 3 * 300
