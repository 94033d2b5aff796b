"""The named presets, model and training side together: `paper`, `lab`, `lab-vit`.

One row per preset: the model sizes (fields of `world_model.config.ModelConfig` that differ from
its defaults, which are the paper's) and the training settings (fields of
`training.config.TrainConfig`), with where they come from. `ModelConfig.preset(name)` and
`TrainConfig.from_preset(name, ...)` both read this table; a flag or `--arch` given on the
command line changes one value on top.

Plain data: this module imports nothing, so the model's config (which must not import the
training package) and the training config can both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """One named setting of the model and of its training."""

    name: str
    source: str  # where the numbers come from, in one line
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields off its defaults
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields


# The small CNN-encoder model of the lab: trains on a two-core CPU in minutes.
_LAB_MODEL: dict[str, Any] = dict(
    image_size=64,
    encoder="cnn",
    cnn_channels=(32, 64, 128, 256),
    latent_dim=192,
    proj_hidden=512,
    pred_depth=4,
    pred_heads=4,
    pred_head_dim=48,
    pred_mlp=768,
    dropout=0.1,
    history=3,
)
# Peak lr 1e-3, weight decay 0.05, a short warm-up then cosine: what trains the lab models.
_LAB_TRAIN: dict[str, Any] = dict(
    lr=1e-3, weight_decay=0.05, batch_size=64, epochs=10, warmup_frac=0.03
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "paper",
            "the published LeWM: ViT-Tiny encoder at 224 px and its optimiser (hours on a GPU)",
            model={},
            train=dict(lr=5e-5, weight_decay=1e-3, batch_size=128, epochs=10, warmup_frac=0.01),
        ),
        Preset(
            "lab",
            "chosen to train on two CPU cores in minutes: a CNN encoder at 64 px",
            model=_LAB_MODEL,
            train=_LAB_TRAIN,
        ),
        Preset(
            "lab-vit",
            "as `lab` with a small ViT encoder (patch 8, 4 layers, width 128) in place of the CNN",
            model={
                **_LAB_MODEL,
                "encoder": "vit",
                "patch_size": 8,
                "enc_width": 128,
                "enc_depth": 4,
                "enc_heads": 4,
                "enc_mlp": 512,
            },
            train=_LAB_TRAIN,
        ),
    )
}

PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
