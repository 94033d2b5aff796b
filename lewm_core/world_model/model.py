"""LeWorldModel (LeWM): a JEPA world model trained end-to-end from pixels.

Read top to bottom:

    pixels (B, T, H, W, 3) uint8
      -> encoder (ViT-Tiny CLS token, or a small CNN)       (B*T, enc_width)
      -> projector  Linear -> BatchNorm1d -> GELU -> Linear  (B, T, D)          = "emb"
    action blocks (B, T, frameskip * action_dim)
      -> action encoder  Conv1d(k=1) -> Linear -> SiLU -> Linear               (B, T, D)
    predictor: causal transformer over one token per frame, AdaLN-zero conditioned on the
      action of that frame, then pred_proj (same shape as the projector)       (B, T, D) = "pred"
    pred[:, t] is the prediction of emb[:, t + 1].

The loss (prediction MSE + lambda * SIGReg) lives in the trainer; this file only has the model,
`parameter_counts` and `recalibrate_batchnorm`. The rollout's fast path for planning (the same
numbers with less work, and the CPU kernels it uses) lives in `fast_rollout`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lewm_core.world_model.config import CNN_GRID, ModelConfig
from lewm_core.world_model.fast_rollout import rollout_fast

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- encoder: ViT


class ViTBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x: Tensor) -> Tensor:  # (N, L, W) -> (N, L, W)
        n, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (N, heads, L, head_dim)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(n, length, width))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTEncoder(nn.Module):
    """ViT with a CLS token; (N, 3, H, W) normalised pixels -> (N, width) CLS output."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.enc_width
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, w))
        self.blocks = nn.ModuleList(
            ViTBlock(w, cfg.enc_heads, cfg.enc_mlp) for _ in range(cfg.enc_depth)
        )
        self.norm = nn.LayerNorm(w)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, P, W)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


# --------------------------------------------------------------------------- encoder: CNN


class CNNEncoder(nn.Module):
    """Stride-2 3x3 convs (GroupNorm + GELU each), flatten, Linear -> (N, enc_width).

    One conv per `cfg.cnn_channels` entry; the config holds enough of them to bring the map to
    CNN_GRID x CNN_GRID cells or fewer (64 px: 4 convs, 4 x 4; 128 px: 5, 4 x 4; 96 px: 5, 3 x 3),
    so every pixel's detail reaches the Linear at any resolution. `cfg.cnn_pool` (models trained
    above 64 px before that rule, as their config.json records) average-pools the larger map of
    their 4 convs to CNN_GRID x CNN_GRID instead: they load and run unchanged.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in cfg.cnn_channels:
            layers += [
                nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(math.gcd(8, c), c),
                nn.GELU(),
            ]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(CNN_GRID) if cfg.cnn_pool else nn.Identity()
        side = CNN_GRID if cfg.cnn_pool else cfg.cnn_map_side
        self.fc = nn.Linear(c_in * side * side, cfg.enc_width)

    def forward(self, x: Tensor) -> Tensor:  # (N, 3, H, W) -> (N, enc_width)
        return self.fc(self.pool(self.convs(x)).flatten(1))


# --------------------------------------------------------------------------- projector, actions


def make_projector(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> GELU -> Linear, applied to (N, d_in)."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, d_out)
    )


class ActionEncoder(nn.Module):
    """(B, T, frameskip * action_dim) action blocks -> (B, T, D).

    Conv1d(k=1) over the time axis (a per-frame linear map) -> Linear -> SiLU -> Linear.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.conv = nn.Conv1d(cfg.action_block_dim, cfg.action_conv, kernel_size=1)
        self.fc1 = nn.Linear(cfg.action_conv, cfg.action_mlp)
        self.fc2 = nn.Linear(cfg.action_mlp, cfg.latent_dim)

    def forward(self, a: Tensor) -> Tensor:
        a = self.conv(a.transpose(1, 2)).transpose(1, 2)  # (B, T, action_conv)
        return self.fc2(F.silu(self.fc1(a)))


# --------------------------------------------------------------------------- predictor


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class PredictorBlock(nn.Module):
    """DiT block with AdaLN-zero: per-token shift/scale/gate from the action embedding."""

    def __init__(self, width: int, heads: int, head_dim: int, mlp: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, head_dim, dropout
        inner = heads * head_dim
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)
        self.drop = nn.Dropout(dropout)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.adaln[1].weight)
        nn.init.zeros_(self.adaln[1].bias)

    def attention(self, x: Tensor) -> Tensor:  # (B, T, W) -> (B, T, W), causal
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, head_dim)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.drop(self.proj(a.transpose(1, 2).reshape(b, t, -1)))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:  # x, c: (B, T, W)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c).chunk(6, dim=-1)
        x = x + gate1 * self.attention(modulate(self.norm1(x), shift1, scale1))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2 * self.drop(self.fc2(self.drop(F.gelu(self.fc1(h)))))


class Predictor(nn.Module):
    """Causal transformer over (B, T <= history, D) latents conditioned on (B, T, D) actions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.pred_width
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.history, w))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            PredictorBlock(w, cfg.pred_heads, cfg.pred_head_dim, cfg.pred_mlp, cfg.dropout)
            for _ in range(cfg.pred_depth)
        )
        self.norm = nn.LayerNorm(w)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        x = z + self.pos_embed[:, : z.shape[1]]
        for block in self.blocks:
            x = block(x, c)
        return self.norm(x)


# --------------------------------------------------------------------------- the world model


class LeWM(nn.Module):
    """LeWorldModel: encoder + projector, action encoder, predictor + pred_proj."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else ModelConfig()
        self.cfg = cfg
        self.encoder = ViTEncoder(cfg) if cfg.encoder == "vit" else CNNEncoder(cfg)
        self.projector = make_projector(cfg.enc_width, cfg.proj_hidden, cfg.latent_dim)
        self.action_encoder = ActionEncoder(cfg)
        self.predictor = Predictor(cfg)
        self.pred_proj = make_projector(cfg.pred_width, cfg.proj_hidden, cfg.latent_dim)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    # ------------------------------------------------------------------ encoders
    def encode(self, pixels: Tensor) -> Tensor:
        """Frames -> latents.

        pixels: (B, T, H, W, 3) or (B, H, W, 3); uint8 in [0, 255] (float in [0, 1] also
        accepted). H = W = cfg.image_size. Returns (B, T, D) or (B, D).
        """
        if pixels.dim() not in (4, 5) or pixels.shape[-1] != 3:
            raise ValueError(
                f"pixels must be (B, T, H, W, 3) or (B, H, W, 3), got {tuple(pixels.shape)}"
            )
        s = self.cfg.image_size
        if pixels.shape[-3] != s or pixels.shape[-2] != s:
            raise ValueError(
                f"pixels are {pixels.shape[-3]}x{pixels.shape[-2]} but the model expects "
                f"{s}x{s} (cfg.image_size): resize the frames"
            )
        lead = pixels.shape[:-3]
        x = pixels.reshape(-1, s, s, 3).permute(0, 3, 1, 2)  # (N, 3, H, W)
        dtype = self.pixel_mean.dtype
        x = x.to(dtype) / 255.0 if x.dtype == torch.uint8 else x.to(dtype)
        x = (x - self.pixel_mean) / self.pixel_std
        z = self.projector(self.encoder(x))  # (N, D)
        return z.reshape(*lead, z.shape[-1])

    def encode_actions(self, actions: Tensor) -> Tensor:
        """(B, T, frameskip * action_dim) z-scored action blocks -> (B, T, D)."""
        if actions.dim() != 3 or actions.shape[-1] != self.cfg.action_block_dim:
            raise ValueError(
                f"actions must be (B, T, {self.cfg.action_block_dim}) action blocks "
                f"(frameskip * action_dim), got {tuple(actions.shape)}"
            )
        return self.action_encoder(actions.to(self.pixel_mean.dtype))

    # ------------------------------------------------------------------ predictor
    def _predict_hidden(self, latents: Tensor, action_emb: Tensor) -> Tensor:
        """(B, T, D) latents, (B, T, D) action embeddings -> (B, T, D) predictor output."""
        t = latents.shape[1]
        if not 1 <= t <= self.cfg.history:
            raise ValueError(f"predictor takes 1..{self.cfg.history} frames (history), got {t}")
        if action_emb.shape[:2] != latents.shape[:2]:
            raise ValueError(
                f"latents {tuple(latents.shape)} and actions {tuple(action_emb.shape)} must share "
                "(B, T)"
            )
        return self.predictor(latents, action_emb)

    def _pred_proj(self, h: Tensor) -> Tensor:  # (..., D) -> (..., D), BatchNorm on flat rows
        return self.pred_proj(h.reshape(-1, h.shape[-1])).reshape(h.shape)

    def predict(
        self, latents: Tensor, actions: Tensor | None = None, *, action_emb: Tensor | None = None
    ) -> Tensor:
        """Causal one-step prediction (teacher forcing).

        latents: (B, T, D) with T <= history; actions: (B, T, frameskip * action_dim) action
        blocks, or pass `action_emb` (B, T, D) already encoded. Returns (B, T, D): output t
        is the prediction of latent t + 1 from latents[:, :t+1] and actions[:, :t+1].
        """
        if (actions is None) == (action_emb is None):
            raise ValueError("pass exactly one of actions (raw blocks) or action_emb")
        if action_emb is None:
            action_emb = self.encode_actions(actions)
        return self._pred_proj(self._predict_hidden(latents, action_emb))

    def rollout(self, latents: Tensor, action_blocks: Tensor, mode: str = "fast") -> Tensor:
        """Autoregressive prediction of H future latents.

        latents: (B, T0, D) context, T0 >= 1 (a batch of 1 is broadcast to the actions' batch,
        e.g. 300 CEM candidates). action_blocks: (B, T0 - 1 + H, frameskip * action_dim); the
        first T0 - 1 are the actions between the context frames, action T0 - 1 + k leads to
        future latent k. Each step sees the last `history` latents (and their actions).
        Returns (B, H, D).

        mode "naive" does what the public code does: every step recomputes the whole window
        and runs pred_proj on every token. mode "fast" (inference, eval mode) computes the same
        numbers with less work (`fast_rollout.rollout_fast`): AdaLN modulations once per
        action, cached keys/values while the window grows, the last layer and pred_proj on the
        newest token only. In train mode both run the naive loop.
        """
        if mode not in ("fast", "naive"):
            raise ValueError(f"unknown rollout mode '{mode}'; choose fast or naive")
        t0 = latents.shape[1]
        horizon = action_blocks.shape[1] - (t0 - 1)
        if t0 < 1 or horizon < 1:
            raise ValueError(
                f"rollout needs T0 >= 1 context latents and T0 - 1 + H (H >= 1) action blocks, "
                f"got latents {tuple(latents.shape)}, actions {tuple(action_blocks.shape)}"
            )
        b = action_blocks.shape[0]
        if latents.shape[0] != b:
            if latents.shape[0] != 1:
                raise ValueError(
                    f"latents batch {latents.shape[0]} must be 1 or match actions batch {b}"
                )
            latents = latents.expand(b, -1, -1)
        act = self.encode_actions(action_blocks)  # (B, T0 - 1 + H, D)
        if mode == "naive" or self.training:
            return self._rollout_naive(latents, act, horizon)
        return rollout_fast(self, latents, act, horizon)

    def _rollout_naive(self, latents: Tensor, act: Tensor, horizon: int) -> Tensor:
        hist, t0 = self.cfg.history, latents.shape[1]
        seq, out = list(latents.unbind(1)), []
        for k in range(horizon):
            end = t0 + k  # number of known latents; predict latent index `end`
            start = max(0, end - hist)
            z = torch.stack(seq[start:end], dim=1)
            nxt = self._pred_proj(self._predict_hidden(z, act[:, start:end]))[:, -1]
            seq.append(nxt)
            out.append(nxt)
        return torch.stack(out, dim=1)

    def forward(
        self, pixels: Tensor, actions: Tensor, rollout_steps: int = 0, rollout_context: int = 1
    ) -> dict[str, Tensor]:
        """Teacher-forced pass over a clip, and optionally an autoregressive rollout.

        pixels (B, T, H, W, 3) uint8, actions (B, T, frameskip * action_dim). Returns emb
        (B, T, D) and pred (B, T' - 1, D) with T' = min(T, history + 1): pred[:, t] predicts
        emb[:, t + 1] from the true latents up to t (teacher forcing, the published loss).
        rollout_steps K > 0 also returns rollout (B, K, D): emb[:, c : c + K] predicted from
        the first c = rollout_context true latents alone, each prediction fed back as the next
        step's input, as planning does (needs T >= c + K).
        """
        emb = self.encode(pixels)
        t = min(emb.shape[1], self.cfg.history + 1)
        out = {"emb": emb, "pred": self.predict(emb[:, : t - 1], actions[:, : t - 1])}
        if rollout_steps > 0:
            c, k = rollout_context, rollout_steps
            if c < 1 or c + k > emb.shape[1]:
                raise ValueError(
                    f"a rollout of {k} steps from {c} frames needs clips of at least {c + k} "
                    f"frames, got {emb.shape[1]}"
                )
            out["rollout"] = self.rollout(emb[:, :c], actions[:, : c - 1 + k])
        return out


# --------------------------------------------------------------------------- helpers


def parameter_counts(model: LeWM) -> dict[str, int]:
    """Parameter counts in total and per part."""

    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {
        "params_total": count(model),
        "params_encoder": count(model.encoder),
        "params_predictor": count(model.predictor),
        "params_projector": count(model.projector),
        "params_action_encoder": count(model.action_encoder),
        "params_pred_proj": count(model.pred_proj),
    }


@torch.no_grad()
def recalibrate_batchnorm(
    model: LeWM, batches: Iterable[tuple[Tensor, Tensor]], num_batches: int
) -> int:
    """Re-estimate BatchNorm running statistics with frozen weights.

    Resets every BatchNorm's running mean/var, then runs `forward(pixels, actions)` on up to
    `num_batches` batches with the BatchNorm layers in train mode (cumulative average,
    momentum=None) and everything else (dropout) in eval mode. Running stats lag fast-moving
    weights during training, which breaks eval-mode prediction; call this before planning.
    Restores the model's train/eval mode and BatchNorm momenta. Returns the batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    device = model.pixel_mean.device
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    used = 0
    try:
        with torch.no_grad():  # statistics only: no autograd graph (memory, time)
            for pixels, actions in batches:
                if used >= num_batches:
                    break
                model(pixels.to(device), actions.to(device))
                used += 1
    finally:
        for bn, momentum in zip(bns, momenta, strict=True):
            bn.momentum = momentum
        model.train(was_training)
    return used
