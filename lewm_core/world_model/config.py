"""Model configuration for LeWorldModel (LeWM).

`ModelConfig()` is the published architecture (the "paper" preset; `lewm model-info` counts its
parameters). `ModelConfig.preset("lab")` is a small CNN-encoder model that trains on a 2-core CPU,
`ModelConfig.preset("lab-vit")` a small ViT one; the presets' sizes are in `lewm_core.presets`,
beside their training settings. Configs round trip through JSON via `to_dict` / `from_dict`;
every field is validated in `__post_init__`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lewm_core.presets import PRESET_NAMES
from lewm_core.presets import PRESETS as _PRESET_TABLE

PRESETS: tuple[str, ...] = PRESET_NAMES  # the preset names, for the CLI's choices

ENCODERS: tuple[str, ...] = ("vit", "cnn")

# The CNN encoder's stride-2 3x3 convs (padding 1) each take a map of side n to ceil(n / 2). It has
# at least the stages that bring the map reaching its Linear to CNN_GRID cells a side or fewer:
# `cnn_channels` lists the stages' widths, and a larger `image_size` adds stages of its last width
# (64 px: 4 stages, 4 x 4; 96 px: 5, 3 x 3; 128 px: 5, 4 x 4; 224 px: 6, 4 x 4).
CNN_GRID = 4

# CEM action sampling (lewm_core.planning.cem): "block" holds one action per frameskip block,
# "independent" samples every raw action (as published). Here, not in planning, so that the CLI
# and config.json checks name them without importing torch.
SAMPLINGS: tuple[str, ...] = ("block", "independent")

# CEM objective (lewm_core.planning.cem): "last" scores the last predicted latent against the goal's
# (as published); "min" the predicted latent closest to it over the horizon's block boundaries,
# since the success test counts the goal reached at any step.
OBJECTIVES: tuple[str, ...] = ("last", "min")

# Upper bounds of the sizes (far above every preset): a config.json that asks for more is damaged
# or hostile, and refusing it is cheap, whereas building it (even on the meta device: a million
# predictor blocks are a million Python objects) is not.
MAX_WIDTH = 16384
MAX_SIZES: dict[str, int] = {
    "image_size": 1024,
    "patch_size": 1024,
    "enc_depth": 64,
    "pred_depth": 64,
    "enc_heads": 256,
    "pred_heads": 256,
    "pred_head_dim": 1024,
    "action_dim": 1024,
    "frameskip": 64,
    "action_conv": 64,
    "history": 64,
}


@dataclass
class ModelConfig:
    """Architecture of a LeWM model. Defaults are the paper's (ViT-Tiny encoder, 224 px)."""

    # encoder
    image_size: int = 224
    encoder: str = "vit"  # "vit" | "cnn"
    patch_size: int = 14  # vit only
    enc_width: int = 192  # encoder output width (CLS token for vit, final Linear for cnn)
    enc_depth: int = 12  # vit only
    enc_heads: int = 3  # vit only
    enc_mlp: int = 768  # vit only
    # cnn only: the width of each stride-2 conv; stages missing to bring the map to CNN_GRID
    # cells a side are added with the last width when the config is built, so it lists them all
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    # cnn only, a record: average-pool the last map to CNN_GRID x CNN_GRID before the Linear, as
    # the encoder did above 64 px before it had a stage per doubling. Read from the config.json of
    # such models (whose files lack the field); a new model never pools.
    cnn_pool: bool = False
    # projector (encoder output -> latent)
    latent_dim: int = 192
    proj_hidden: int = 2048
    # actions
    action_dim: int = 2  # raw action dimension of the environment
    frameskip: int = 5  # raw actions per frame (one action block = frameskip * action_dim)
    action_conv: int = 10
    action_mlp: int = 768
    # predictor
    pred_width: int = 192  # must equal latent_dim
    pred_depth: int = 6
    pred_heads: int = 16
    pred_head_dim: int = 64
    pred_mlp: int = 2048
    dropout: float = 0.1
    history: int = 3  # frames of context the predictor sees

    def __post_init__(self) -> None:
        if isinstance(self.cnn_channels, list):
            self.cnn_channels = tuple(self.cnn_channels)
        self._validate()
        if self.encoder == "cnn" and not self.cnn_pool:
            missing = cnn_stages_needed(self.image_size) - len(self.cnn_channels)
            self.cnn_channels += self.cnn_channels[-1:] * max(missing, 0)

    # ------------------------------------------------------------------ derived sizes
    @property
    def action_block_dim(self) -> int:
        """Width of one action block: frameskip raw actions concatenated."""
        return self.frameskip * self.action_dim

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def cnn_map_side(self) -> int:
        """Side of the CNN encoder's last conv map (before any legacy pooling)."""
        return cnn_map_side(self.image_size, len(self.cnn_channels))

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """Build a named preset ("paper", "lab", "lab-vit"), with field overrides on top.

        If `latent_dim` is overridden but `pred_width` is not, `pred_width` follows `latent_dim`.
        """
        if name not in _PRESET_TABLE:
            raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}")
        kwargs = {**_PRESET_TABLE[name].model, **overrides}
        if "latent_dim" in overrides and "pred_width" not in overrides:
            kwargs["pred_width"] = overrides["latent_dim"]
        cls._check_keys(kwargs)
        return cls(**kwargs)

    # ------------------------------------------------------------------ serialisation
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def _check_keys(cls, d: dict[str, Any]) -> None:
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown ModelConfig field(s): {', '.join(unknown)}; "
                f"valid fields: {', '.join(cls.field_names())}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; missing keys take the defaults, unknown keys raise ValueError."""
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict expects a dict, got {type(d).__name__}")
        cls._check_keys(d)
        kwargs = dict(d)
        if isinstance(kwargs.get("cnn_channels"), list | tuple):
            kwargs["cnn_channels"] = tuple(kwargs["cnn_channels"])
        if "cnn_pool" not in kwargs:  # written before the field: pooled where the map was larger
            kwargs["cnn_pool"] = _pooled_before_the_field(kwargs)
        return cls(**kwargs)

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        positive_ints = (
            "image_size",
            "patch_size",
            "enc_width",
            "enc_depth",
            "enc_heads",
            "enc_mlp",
            "latent_dim",
            "proj_hidden",
            "action_dim",
            "frameskip",
            "action_conv",
            "action_mlp",
            "pred_width",
            "pred_depth",
            "pred_heads",
            "pred_head_dim",
            "pred_mlp",
            "history",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
            if value > MAX_SIZES.get(name, MAX_WIDTH):  # a damaged or hostile config.json
                raise ValueError(
                    f"ModelConfig.{name} = {value} is beyond any model this code builds "
                    f"(at most {MAX_SIZES.get(name, MAX_WIDTH)})"
                )
        if self.encoder not in ENCODERS:
            raise ValueError(
                f"ModelConfig.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}"
            )
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pred_width != self.latent_dim:
            raise ValueError(
                f"ModelConfig.pred_width ({self.pred_width}) must equal latent_dim "
                f"({self.latent_dim}): set pred_width={self.latent_dim}"
            )
        if self.encoder == "vit":
            if self.image_size % self.patch_size:
                raise ValueError(
                    f"ModelConfig.image_size ({self.image_size}) must be divisible by patch_size "
                    f"({self.patch_size}) for the vit encoder: change image_size or patch_size"
                )
            if self.enc_width % self.enc_heads:
                raise ValueError(
                    f"ModelConfig.enc_width ({self.enc_width}) must be divisible by enc_heads "
                    f"({self.enc_heads}): change enc_width or enc_heads"
                )
        else:
            chans = self.cnn_channels
            if (
                not isinstance(chans, tuple)
                or not 1 <= len(chans) <= 8
                or any(isinstance(c, bool) or not isinstance(c, int) or c <= 0 for c in chans)
                or max(chans) > MAX_WIDTH
            ):
                raise ValueError(
                    f"ModelConfig.cnn_channels must be a non-empty tuple of positive ints, "
                    f"got {chans!r}"
                )
        if not isinstance(self.cnn_pool, bool):
            raise ValueError(f"ModelConfig.cnn_pool must be true or false, got {self.cnn_pool!r}")
        if self.cnn_pool and (
            self.encoder != "cnn"
            or cnn_map_side(self.image_size, len(self.cnn_channels)) <= CNN_GRID
        ):
            raise ValueError(
                "ModelConfig.cnn_pool is the record of a cnn encoder whose last map was larger "
                f"than {CNN_GRID} x {CNN_GRID} (image_size above 64 px with 4 stages); this config "
                "is not one: set cnn_pool=false"
            )


def cnn_map_side(image_size: int, stages: int) -> int:
    """Side of the map after `stages` stride-2 3x3 convs with padding 1: ceil-halved each time."""
    side = image_size
    for _ in range(stages):
        side = -(-side // 2)
    return side


def cnn_stages_needed(image_size: int) -> int:
    """The fewest stride-2 stages that bring an `image_size` frame to CNN_GRID cells a side."""
    stages = 0
    while cnn_map_side(image_size, stages) > CNN_GRID:
        stages += 1
    return stages


def _pooled_before_the_field(d: dict[str, Any]) -> bool:
    """Whether a config.json written before `cnn_pool` existed describes a pooling encoder: a cnn
    whose stages (image_size // 2 ** stages; such configs had image_size divisible by it) left
    more than CNN_GRID cells a side. A malformed dict gives False and fails validation later."""
    defaults = ModelConfig.__dataclass_fields__
    encoder = d.get("encoder", defaults["encoder"].default)
    size = d.get("image_size", defaults["image_size"].default)
    chans = d.get("cnn_channels", defaults["cnn_channels"].default)
    if encoder != "cnn" or not isinstance(size, int) or not isinstance(chans, tuple | list):
        return False
    return 1 <= len(chans) <= 8 and size // 2 ** len(chans) > CNN_GRID


# Fields `lewm train --arch` must not change: the dataset sets them (resolution, action size).
_ARCH_FROM_DATA: tuple[str, ...] = ("image_size", "action_dim")
# Fields only read from the config.json of older models, never chosen.
_ARCH_RECORDED: tuple[str, ...] = ("cnn_pool",)


def parse_arch_override(text: str) -> tuple[str, Any]:
    """One `--arch KEY=VALUE` setting -> (field, value), typed as the `ModelConfig` field.

    `pred_depth=6` -> ("pred_depth", 6); `cnn_channels=32,64,128,256` -> a tuple of ints;
    `dropout=0.2` -> 0.2. Raises ValueError naming the problem and the valid fields. Whether the
    value is in range is checked when the config is built (`ModelConfig.__post_init__`).
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.init}
    settable = [k for k in defaults if k not in _ARCH_FROM_DATA + _ARCH_RECORDED]
    if not sep or not key or not raw:
        raise ValueError(f"'{text[:60]}' is not KEY=VALUE (e.g. pred_depth=6)")
    if key in _ARCH_FROM_DATA:
        raise ValueError(f"{key} is set by the dataset, not by --arch")
    if key in _ARCH_RECORDED:
        raise ValueError(f"{key} records how older models were built; new models do not choose it")
    if key not in defaults:
        raise ValueError(f"unknown model field '{key[:40]}'; valid: {', '.join(settable)}")
    default = defaults[key]
    try:
        if isinstance(default, tuple):
            return key, tuple(int(v) for v in raw.split(","))
        return key, type(default)(raw)
    except ValueError:
        kind = "comma-separated integers" if isinstance(default, tuple) else type(default).__name__
        raise ValueError(f"{key}={raw[:40]}: {key} takes {kind}") from None
