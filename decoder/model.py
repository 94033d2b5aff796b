"""The visualisation decoder: one LeWM latent (B, D) -> an image (B, H, W, 3).

    latent z (B, D)
      -> Linear(D, K * width), split into K key/value tokens (+ learned token embedding), LN
    patch queries (P, width): one learnable query per output patch (P = (H / patch)^2)
      -> `depth` x [ q + CrossAttention(LN(q), kv);  q + MLP(LN(q)) ]      (B, P, width)
      -> LayerNorm -> Linear(width, patch * patch * 3) + per-pixel bias     (B, P, p*p*3)
      -> sigmoid, patches reassembled into the image                        (B, H, W, 3)

The output is in [0, 1] (pixel / 255, sigmoid head), channels last like the dataset's frames.
It is the paper's design (196 queries for 16x16 patches of a 224 px image; cross-attention to the
embedding, residual MLP layers, a linear head per patch) at a size that trains in minutes on a
CPU at 64 px (patch 8 -> 64 queries, width 128, 3 layers: ~0.5M parameters). The per-pixel
logit bias starts at the mean training frame (`set_output_bias`), so the layers only have to
learn what differs from the average image: the moving parts. The decoder is only for looking at
latents: it is trained after the world model, on its frozen encoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class DecoderConfig:
    """Architecture of a `LatentDecoder`."""

    latent_dim: int = 192
    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    depth: int = 3
    heads: int = 4
    latent_tokens: int = 4  # K: the latent is projected to K key/value tokens
    mlp_ratio: float = 2.0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "image_size", "patch_size", "width", "depth", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid DecoderConfig: {name} must be a positive integer")
        if not isinstance(self.latent_tokens, int) or not isinstance(self.mlp_ratio, int | float):
            raise ValueError("invalid DecoderConfig: latent_tokens and mlp_ratio must be numbers")
        checks = [
            (
                max(self.latent_dim, self.width) <= 16384 and self.image_size <= 1024,
                "latent_dim and width at most 16384, image_size at most 1024",
            ),
            (self.depth <= 64 and self.heads <= 256, "depth at most 64, heads at most 256"),
            (self.latent_tokens <= 1024 and self.mlp_ratio <= 64, "latent_tokens, mlp_ratio"),
            (self.latent_dim >= 1, "latent_dim must be >= 1"),
            (self.patch_size >= 1, "patch_size must be >= 1"),
            (
                self.image_size >= self.patch_size and self.image_size % self.patch_size == 0,
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}",
            ),
            (self.heads >= 1 and self.width % self.heads == 0, "width must divide by heads"),
            (self.depth >= 1, "depth must be >= 1"),
            (self.latent_tokens >= 1, "latent_tokens must be >= 1"),
            (self.mlp_ratio > 0, "mlp_ratio must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid DecoderConfig: {message}")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DecoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DecoderConfig field(s): {', '.join(unknown)}")
        return cls(**d)


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, H, W, C) -> (B, (H/p)*(W/p), p*p*C), the inverse of the decoder's reassembly."""
    b, h, w, ch = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, ch).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * ch)


def unpatchify(patches: Tensor, patch: int) -> Tensor:
    """(B, g*g, p*p*C) -> (B, g*p, g*p, C); inverse of `patchify` for square images."""
    b, n, d = patches.shape
    g = round(n**0.5)
    ch = d // (patch * patch)
    x = patches.reshape(b, g, g, patch, patch, ch).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, g * patch, g * patch, ch)


class CrossAttentionLayer(nn.Module):
    """q + MHA(LN(q), kv, kv); then q + MLP(LN(q)). q: (B, P, W), kv: (B, K, W) -> (B, P, W)."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp), nn.GELU(), nn.Linear(mlp, width))

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class LatentDecoder(nn.Module):
    """Latent (B, D) -> image (B, H, W, 3) in [0, 1]; see the module docstring."""

    def __init__(self, cfg: DecoderConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else DecoderConfig()
        self.cfg = cfg
        w, k = cfg.width, cfg.latent_tokens
        self.queries = nn.Parameter(torch.zeros(1, cfg.num_patches, w))
        self.to_kv = nn.Linear(cfg.latent_dim, k * w)
        self.token_embed = nn.Parameter(torch.zeros(1, k, w))
        self.kv_norm = nn.LayerNorm(w)
        mlp = max(1, round(cfg.mlp_ratio * w))
        self.layers = nn.ModuleList(
            CrossAttentionLayer(w, cfg.heads, mlp) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.patch_size * cfg.patch_size * 3)
        # Per-pixel logit bias (P, p*p*3), started at the mean frame by `set_output_bias`.
        self.pixel_bias = nn.Parameter(torch.zeros(cfg.num_patches, cfg.patch_size**2 * 3))
        nn.init.trunc_normal_(self.queries, std=0.02)
        nn.init.trunc_normal_(self.token_embed, std=0.02)

    def set_output_bias(self, mean_image: Tensor) -> None:
        """Start the output at `mean_image` (H, W, 3) in [0, 1] (e.g. the mean training frame)."""
        c = self.cfg
        if tuple(mean_image.shape) != (c.image_size, c.image_size, 3):
            raise ValueError(f"mean_image must be ({c.image_size}, {c.image_size}, 3)")
        logit = torch.logit(mean_image.float().clamp(1e-3, 1 - 1e-3))
        with torch.no_grad():
            self.pixel_bias.copy_(patchify(logit[None], c.patch_size)[0])
            self.head.bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        """z: (B, D) latents -> (B, H, W, 3) float images in [0, 1]."""
        if z.dim() != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(
                f"decoder takes latents (B, {self.cfg.latent_dim}), got {tuple(z.shape)}"
            )
        b, c = z.shape[0], self.cfg
        kv = self.kv_norm(self.to_kv(z).view(b, c.latent_tokens, c.width) + self.token_embed)
        q = self.queries.expand(b, -1, -1)
        for layer in self.layers:
            q = layer(q, kv)
        patches = torch.sigmoid(self.head(self.norm(q)) + self.pixel_bias)  # (B, P, p*p*3)
        return unpatchify(patches, c.patch_size)
