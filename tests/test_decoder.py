"""The visualisation decoder: shapes, PSNR, a short training run, decoded rollouts."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lewm_testing import run_cli  # noqa: E402

from decoder.model import DecoderConfig, LatentDecoder, patchify, unpatchify
from decoder.rollout import decode_rollout, episode_clip
from decoder.train import (
    DECODER_CONFIG,
    DECODER_WEIGHTS,
    decode_images,
    finite_mean,
    load_decoder,
    psnr,
    train_decoder,
)
from lewm_core.errors import UserError
from lewm_core.world_model.checkpoint import load_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_copy(trained_run, tmp_path_factory) -> Path:
    """A copy of the trained run (the decoder is saved beside the model)."""
    dst = tmp_path_factory.mktemp("dec") / "run"
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(trained_run["path"]) / name, dst / name)
    return dst


def test_decoder_shapes_and_range():
    cfg = DecoderConfig(latent_dim=16, image_size=32, patch_size=8, width=32, depth=2, heads=4)
    dec = LatentDecoder(cfg)
    out = dec(torch.randn(3, 16))
    assert out.shape == (3, 32, 32, 3) and 0.0 <= out.min() and out.max() <= 1.0
    mean = torch.rand(32, 32, 3) * 0.8 + 0.1
    dec.set_output_bias(mean)
    # With the head's weights zeroed the output is exactly the mean image.
    with torch.no_grad():
        dec.head.weight.zero_()
    assert torch.allclose(dec(torch.randn(2, 16)), mean.expand(2, -1, -1, -1), atol=1e-3)
    with pytest.raises(ValueError):
        dec(torch.randn(3, 15))
    with pytest.raises(ValueError):
        DecoderConfig(image_size=60, patch_size=8)


def test_patchify_round_trip():
    x = torch.arange(2 * 16 * 16 * 3, dtype=torch.float32).reshape(2, 16, 16, 3)
    p = patchify(x, 4)
    assert p.shape == (2, 16, 48)
    assert torch.equal(p[0, 1], x[0, 0:4, 4:8].reshape(-1))  # patch (row 0, col 1)
    assert torch.equal(unpatchify(p, 4), x)


def test_psnr_known_values():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = np.full((2, 4, 4, 3), 16, np.uint8)
    assert np.allclose(psnr(a, b), 10 * math.log10(255**2 / 256))  # 24.048 dB
    assert np.isinf(psnr(a, a)).all()
    assert psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 0.1), max_val=1.0) == pytest.approx(20.0)
    assert finite_mean(np.array([np.inf, 10.0, 20.0])) == 15.0 and finite_mean([np.inf]) is None
    with pytest.raises(ValueError):
        psnr(a, b[:1])


def test_train_decoder_saves_and_loads(run_copy):
    seen = []
    res = train_decoder(
        run_copy,
        steps=4,
        batch_size=8,
        frames=64,
        val_frames=16,
        progress=lambda s, n, l: seen.append(s),
    )
    assert seen == [1, 2, 3, 4] and res["steps"] == 4 and res["train_frames"] == 64
    assert math.isfinite(res["train_loss"]) and res["val_psnr"] > 10.0
    assert (run_copy / DECODER_WEIGHTS).exists() and (run_copy / DECODER_CONFIG).exists()
    saved = json.loads((run_copy / DECODER_CONFIG).read_text())
    assert saved["config"]["latent_dim"] == 192 and saved["train"]["steps"] == 4
    dec = load_decoder(run_copy)
    assert not dec.training
    imgs = decode_images(dec, np.zeros((3, 192), np.float32))
    assert imgs.shape == (3, 64, 64, 3) and imgs.dtype == np.uint8


def test_decode_rollout(run_copy):
    if not (run_copy / DECODER_WEIGHTS).exists():
        train_decoder(run_copy, steps=2, batch_size=8, frames=32, val_frames=8)
    loaded = load_model(run_copy)
    dec = load_decoder(run_copy)
    data = loaded.meta["data"]["path"]
    frames, blocks = episode_clip(data, 2, loaded.action_stats, frameskip=5, start=3, frames=6)
    assert frames.shape == (6, 64, 64, 3) and blocks.shape == (5, 10)
    out = decode_rollout(loaded, dec, frames, blocks)
    for k in ("original", "autoencoded", "predicted"):
        assert out[k].shape == (6, 64, 64, 3) and out[k].dtype == np.uint8
    assert np.array_equal(out["original"], frames)
    assert np.array_equal(out["predicted"][0], out["autoencoded"][0])
    assert out["psnr_autoencoded"].shape == (6,) and out["psnr_predicted"].shape == (6,)
    assert np.allclose(out["psnr_autoencoded"], psnr(out["autoencoded"], frames))
    assert out["latent_error"][0] == 0.0 and out["latent_error"].shape == (6,)
    full, _ = episode_clip(data, 2, loaded.action_stats, frameskip=5)
    assert len(full) == 12  # 60 steps at frameskip 5
    with pytest.raises(UserError, match="out of range"):
        episode_clip(data, 999, loaded.action_stats)
    with pytest.raises(UserError, match="fits"):
        episode_clip(data, 0, loaded.action_stats, frames=50)
    with pytest.raises(UserError, match="action blocks"):
        decode_rollout(loaded, dec, frames, blocks[:2])


def test_missing_decoder_and_cli(run_copy, tmp_path, capsys, trained_run):
    with pytest.raises(UserError, match="decoder-train"):
        load_decoder(trained_run["path"])
    rc, _, err = run_cli(["decoder-train", "--checkpoint", str(tmp_path / "none")], capsys)
    assert rc == 2 and "not a run folder" in err
    argv = ["decoder-train", "--checkpoint", str(run_copy), "--steps", "2", "--batch-size", "4"]
    rc, out, _ = run_cli(
        [*argv, "--frames", "16", "--val-frames", "4", "--quiet", "--json"], capsys
    )
    assert rc == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert res["steps"] == 2 and "val_psnr" in res
