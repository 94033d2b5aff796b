"""The CNN encoder's resolution is a real choice: one more stride-2 stage per doubling above 64 px
and no pooling, so every pixel's detail can reach the latent; the models recorded with the
earlier encoder (4 stages, the map average-pooled to 4 x 4 above 64 px) load and run as before."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lewm_core.data.dataset import ActionStats
from lewm_core.world_model.checkpoint import load_model, save_model
from lewm_core.world_model.config import ModelConfig, parse_arch_override
from lewm_core.world_model.model import LeWM, parameter_counts

SHIPPED = sorted(p for p in (Path(__file__).parent.parent / "assets" / "models").iterdir())


def pixels(n: int, size: int, seed: int = 0) -> Tensor:
    """(n, size, size, 3) uint8 frames."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)


def earlier_encoder(state: dict[str, Tensor], x: Tensor) -> Tensor:
    """The CNN encoder as written before stages followed the resolution, from its weights:
    (N, 3, H, W) normalised pixels -> (N, enc_width). Stride-2 3x3 convs (GroupNorm, GELU),
    the map average-pooled to 4 x 4 where it is larger, flatten, Linear."""
    i = 0
    while f"convs.{3 * i}.weight" in state:
        w = state[f"convs.{3 * i}.weight"]
        x = F.conv2d(x, w, state[f"convs.{3 * i}.bias"], stride=2, padding=1)
        c = w.shape[0]
        g = state[f"convs.{3 * i + 1}.weight"], state[f"convs.{3 * i + 1}.bias"]
        x = F.gelu(F.group_norm(x, math.gcd(8, c), *g))
        i += 1
    if x.shape[-1] > 4:
        x = F.adaptive_avg_pool2d(x, 4)
    return F.linear(x.flatten(1), state["fc.weight"], state["fc.bias"])


def normalised(model: LeWM, frames: Tensor) -> Tensor:
    """(N, H, W, 3) uint8 -> the (N, 3, H, W) encoder input `model.encode` makes of them."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    return (x - model.pixel_mean) / model.pixel_std


def encoder_state(model: LeWM) -> dict[str, Tensor]:
    return {k[8:]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


# --------------------------------------------------------------------------- new models


@pytest.mark.parametrize(
    "size, channels, side, params_encoder, params_total",
    [
        (64, (32, 64, 128, 256), 4, 1_176_000, 4_396_334),
        (96, (32, 64, 128, 256, 256), 3, 1_422_528, 4_642_862),
        (128, (32, 64, 128, 256, 256), 4, 1_766_592, 4_986_926),
        (224, (32, 64, 128, 256, 256, 256), 4, 2_357_184, 5_577_518),
    ],
)
def test_stages_follow_the_image_size(size, channels, side, params_encoder, params_total):
    """One stride-2 stage (the last width) per doubling above 64 px, until the map is at most
    4 x 4 (96 px: 48, 24, 12, 6, 3; 224 px: ... 7, 4 with padding); the Linear reads it whole."""
    cfg = ModelConfig.preset("lab", image_size=size)
    assert cfg.cnn_channels == channels and cfg.cnn_map_side == side and not cfg.cnn_pool
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    model = LeWM(cfg).eval()
    counts = parameter_counts(model)
    assert (counts["params_encoder"], counts["params_total"]) == (params_encoder, params_total)
    assert isinstance(model.encoder.pool, torch.nn.Identity)
    assert model.encoder.fc.in_features == channels[-1] * side * side
    frames = pixels(2, size)
    with torch.no_grad():
        assert model.encoder.convs(normalised(model, frames)).shape == (2, channels[-1], side, side)
        assert model.encode(frames).shape == (2, cfg.latent_dim)


def test_given_channels_gain_the_missing_stages_and_keep_extra_ones():
    """--arch cnn_channels lists widths: a larger frame adds stages of the last width; more
    stages than the frame needs are kept (64 px with 6: a 1 x 1 map)."""
    narrow = ModelConfig.preset("lab", image_size=128, cnn_channels=(16, 32, 64, 128))
    assert narrow.cnn_channels == (16, 32, 64, 128, 128)
    deep = ModelConfig.preset("lab", cnn_channels=(32, 64, 128, 256, 256, 256))
    assert deep.cnn_channels == (32, 64, 128, 256, 256, 256) and deep.cnn_map_side == 1


def test_pooling_is_a_record_never_a_choice():
    with pytest.raises(ValueError, match="new models do not choose it"):
        parse_arch_override("cnn_pool=true")
    for kwargs in ({"encoder": "cnn", "image_size": 64}, {"encoder": "vit"}):
        with pytest.raises(ValueError, match="cnn_pool=false"):
            ModelConfig(**kwargs, cnn_pool=True)
    with pytest.raises(ValueError, match="cnn_pool must be true or false"):
        ModelConfig(encoder="cnn", cnn_pool="yes")


def test_detail_within_a_pooled_cell_reaches_the_latent():
    """Frames tiled with a 32-px pattern, and the same frames shifted by 16 px: a shift within
    one 2 x 2 block of the pooled 8 x 8 map at 128 px, which the earlier encoder mostly averaged
    away. The new encoder tells them apart as well as it tells apart two different patterns; the
    pooled one far less (the contrast shows the pattern is one pooling loses)."""
    new = ModelConfig.preset("lab", image_size=128)
    pooled = ModelConfig(**{**new.to_dict(), "cnn_channels": (32, 64, 128, 256), "cnn_pool": True})
    ratios = {}
    for name, cfg in (("new", new), ("pooled", pooled)):
        torch.manual_seed(0)
        model = LeWM(cfg).eval()
        shifted = different = 0.0
        for seed in range(4):
            a, c = (pixels(1, 32, seed + k)[0].repeat(4, 4, 1) for k in (0, 100))
            with torch.no_grad():
                za, zb, zc = model.encode(torch.stack([a, a.roll(16, 1), c]))
            shifted += float((za - zb).norm())
            different += float((za - zc).norm())
        ratios[name] = shifted / different
    assert ratios["new"] > 0.7, ratios  # measured 0.97
    assert ratios["pooled"] < 0.5, ratios  # measured 0.29


def test_model_info_shows_the_stages_at_128_px():
    proc = subprocess.run(
        [sys.executable, "-m", "lewm_core", "model-info", "--preset", "lab", "--image-size", "128"]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["image_size"] == 128 and info["cnn_channels"] == [32, 64, 128, 256, 256]
    assert info["cnn_map"] == "4x4" and info["params_total"] == 4_986_926


# --------------------------------------------------------------------------- recorded models


def test_earlier_pooled_run_folder_loads_and_runs_as_before(tmp_path):
    """A run folder of the earlier encoder at 128 px: its config.json (no `cnn_pool` field, 4
    stages) and weights of the 64-px shapes. It loads as the pooled model, its encoder gives what
    the earlier one gave, and saving it again records the pooling."""
    torch.manual_seed(0)
    small = LeWM(ModelConfig.preset("lab", action_dim=2))
    stats = ActionStats(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))
    save_model(tmp_path, small, stats, {"env": "reacher"})
    config = json.loads((tmp_path / "config.json").read_text())
    del config["model"]["cnn_pool"]
    config["model"]["image_size"] = 128
    (tmp_path / "config.json").write_text(json.dumps(config))

    loaded = load_model(tmp_path)
    cfg = loaded.config
    assert cfg.cnn_pool and cfg.cnn_channels == (32, 64, 128, 256) and cfg.image_size == 128
    frames = pixels(3, 128)
    with torch.no_grad():
        got = loaded.model.encoder(normalised(loaded.model, frames))
        want = earlier_encoder(encoder_state(small), normalised(loaded.model, frames))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        small.eval()
        for k, v in small.state_dict().items():  # every weight as recorded, the encoder's too
            assert torch.equal(loaded.model.state_dict()[k], v), k
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).cnn_pool


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_models_encode_as_before(folder):
    """The shipped 64-px models: 4 stages, a 4 x 4 map, no pooling; their encoder is the earlier
    one, number for number."""
    loaded = load_model(folder)
    cfg = loaded.config
    assert (cfg.image_size, cfg.cnn_channels, cfg.cnn_pool) == (64, (32, 64, 128, 256), False)
    frames = pixels(4, 64)
    with torch.no_grad():
        x = normalised(loaded.model, frames)
        got = loaded.model.encoder(x)
        torch.testing.assert_close(got, earlier_encoder(encoder_state(loaded.model), x))
