"""The fast rollout: `LeWM.rollout(mode="fast")`, the numbers of the naive rollout with less work.

Why it exists: planning (CEM) rolls out hundreds of candidate action sequences per iteration,
mostly on the CPU. There the tensors are small (a few tokens per candidate) and the fixed cost of
each kernel call, more than the arithmetic, sets the time. The model in `model.py` is the paper's
and is what training runs; this module recomputes its predictor's output for inference:

- every block's AdaLN modulations once per action, all blocks in one matmul
  (`modulations`), instead of once per step and block;
- keys and values cached while the history window grows, and the last block and `pred_proj` run
  on the newest token only (`incremental_block_forward`, `rollout_fast`);
- attention over a handful of keys written out as small matmuls or elementwise passes
  (`window_attention`, `newest_token_attention`, `softmax_short`) instead of the fused
  attention kernel, whose fixed cost per call dominates at these lengths;
- for bfloat16 on the CPU, the MLP's first linear layer and its GELU in one oneDNN call
  (`linear_gelu`).

The last is the one choice that depends on the machine: `cpu_kernels.fused_linear_gelu_status`
runs the fused op once per process and `linear_gelu` uses it only where it ran and agreed with
the plain computation (never under LEWM_CPU_KERNELS=plain, nor while torch.compile traces).
Every other step is the same arithmetic on every device. The tests compare this path with the
naive rollout; `bench/plan.py` times both (REPRODUCTION.md, "Planning speed", has its figures).

This module does not import `model.py` (which calls it): the predictor, its blocks and the
model arrive as arguments and are read by attribute.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lewm_core.world_model.cpu_kernels import fused_linear_gelu, fused_linear_gelu_status

# --------------------------------------------------------------------------- small kernels


def softmax_short(x: Tensor, dim: int) -> Tensor:
    """`x.softmax(dim)` written out (max, exp, sum), for a `dim` of a few elements.

    On the CPU the fused softmax kernel vectorises along `dim`; with 3 elements there these four
    elementwise passes are faster.
    """
    e = (x - x.amax(dim, keepdim=True)).exp()
    return e / e.sum(dim, keepdim=True)


def window_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """Softmax attention over a handful of keys, as two small batched matmuls.

    q: (B, h, Q, d); k, v: (B, h, P, d) with P <= history (a few tokens). `causal` masks key
    j > query i (Q == P). Returns (B, h, Q, d), equal to `F.scaled_dot_product_attention`.
    The softmax runs in float32.
    """
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5  # (B, h, Q, P)
    if causal:
        n = q.shape[2]
        mask = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
    return softmax_short(scores, -1).to(v.dtype) @ v


def newest_token_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of one query over a handful of keys, token-major, written out elementwise.

    q: (B, 1, h, d); k, v: (B, P, h, d), P <= history. Returns (B, 1, h, d), equal to
    softmax(q k^T / sqrt(d)) v per head. With one key the softmax weight is exactly 1 and the
    output is v. No transposes to head-major layout and no batched matmuls of 1 x P matrices.
    """
    if k.shape[1] == 1:
        return v
    scores = (q * k).float().sum(-1) * q.shape[-1] ** -0.5  # (B, P, h)
    weights = scores.softmax(1).to(v.dtype)
    return (weights.unsqueeze(-1) * v).sum(1, keepdim=True)


def linear_gelu(x: Tensor, layer: nn.Linear, allow_fused: bool = True) -> Tensor:
    """`F.gelu(layer(x))` (exact, erf GELU); (..., in) -> (..., out).

    For bfloat16 on the CPU this is one oneDNN call with the bias and GELU fused into the
    matmul (`cpu_kernels.fused_linear_gelu`), which skips two passes over the wide hidden
    activations, where the probe `cpu_kernels.fused_linear_gelu_status` found that it runs here
    and gives the plain numbers (not on a CPU without AVX-512, nor under
    LEWM_CPU_KERNELS=plain). Elsewhere, while compiling, or with `allow_fused=False`, the plain
    two calls.
    """
    if (
        allow_fused
        and x.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and fused_linear_gelu_status(x.dtype).usable
    ):
        return fused_linear_gelu(x, layer.weight, layer.bias)
    return F.gelu(layer(x))


# --------------------------------------------------------------------------- AdaLN, stacked

# predictor -> ((dtype, device, (data_ptr, version) of each AdaLN parameter), stacked weight)
_stacked_adaln_cache: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Tensor]] = (
    weakref.WeakKeyDictionary()
)


def modulations(predictor: nn.Module, c: Tensor) -> list[Tensor]:
    """Every block's AdaLN output for `incremental_block_forward`: (B, L, W) -> depth x (B, L, 6W).

    `predictor` is a `model.Predictor`. Each output equals `block.adaln(c)` with 1 added to both
    scales (so that modulating is one fused multiply-add, `addcmul(shift, x, 1 + scale)`), all
    computed by one matmul: SiLU(c) with two extra input columns of ones, times the blocks' AdaLN
    weights stacked with their biases and the scales' +1 as two extra weight columns
    (zero-padded to a multiple of 32 inputs for the matrix units). No bias pass and no +1 pass
    over the (B, L, depth * 6W) output, which cost more than the matmul itself in bfloat16 on
    the CPU.
    """
    weight = _stacked_adaln(predictor, c.dtype, c.device)
    s = F.silu(c)
    pad = weight.shape[1] - s.shape[-1] - 2
    s = torch.cat([s, s.new_ones(*s.shape[:-1], 2), s.new_zeros(*s.shape[:-1], pad)], -1)
    return list(F.linear(s, weight).split(weight.shape[0] // len(predictor.blocks), dim=-1))


def _stacked_adaln(predictor: nn.Module, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(depth * 6W, K) weights of `modulations`, cached per predictor and rebuilt when
    any AdaLN parameter changes (another tensor, or the same one written in place)."""
    if torch.compiler.is_compiling():  # traced into the graph; no data_ptr guards
        return _build_stacked_adaln(predictor, dtype, device)
    params = [p for blk in predictor.blocks for p in blk.adaln[1].parameters()]
    key = (dtype, device, tuple((p.data_ptr(), p._version) for p in params))
    cached = _stacked_adaln_cache.get(predictor)
    if cached is not None and cached[0] == key:
        return cached[1]
    weight = _build_stacked_adaln(predictor, dtype, device)
    _stacked_adaln_cache[predictor] = (key, weight)
    return weight


def _build_stacked_adaln(predictor: nn.Module, dtype: torch.dtype, device: torch.device) -> Tensor:
    width = predictor.blocks[0].adaln[1].in_features
    k = -(-(width + 2) // 32) * 32
    rows = []
    with torch.no_grad():
        for blk in predictor.blocks:
            lin = blk.adaln[1]
            one = torch.zeros(lin.out_features, device=device)
            one[width : 2 * width] = 1.0  # scale1
            one[4 * width : 5 * width] = 1.0  # scale2
            pad = torch.zeros(lin.out_features, k - width - 2, device=device)
            rows.append(
                torch.cat([lin.weight.float(), lin.bias.float()[:, None], one[:, None], pad], 1)
            )
        return torch.cat(rows).to(dtype)


# --------------------------------------------------------------------------- one block, cached


def incremental_block_forward(
    block: nn.Module, x: Tensor, mod: Tensor, past: tuple[Tensor, Tensor] | None, last_only: bool
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Inference-only forward of a `model.PredictorBlock` on n new tokens after `past`.

    x: (B, n, W) new tokens; mod: (B, n, 6W) their AdaLN output from `modulations`
    (1 added to both scales); past: keys and values (B, P, heads, head_dim) of the P earlier
    tokens (token-major), or None. With `last_only`, queries, output projection and MLP run on
    the newest token alone (its output is all that is used). Returns the output (B, n or 1, W)
    and the keys/values of all P + n tokens. Equals `block.forward` on the full sequence (eval
    mode) to float rounding; each modulation and gated residual is one fused multiply-add.
    """
    b, n, _ = x.shape
    shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
    h = torch.addcmul(shift1, block.norm1(x), scale1)
    q, k, v = block.qkv(h).view(b, n, 3, block.heads, block.head_dim).unbind(2)
    if past is not None:
        k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
    if last_only and n > 1:
        x, q = x[:, -1:], q[:, -1:]
        gate1, shift2, scale2, gate2 = (
            gate1[:, -1:],
            shift2[:, -1:],
            scale2[:, -1:],
            gate2[:, -1:],
        )
    # A single query (the newest token) may see every key; several new tokens with no past
    # are the whole window and attend causally.
    if q.shape[1] == 1:
        a = newest_token_attention(q, k, v)
    else:
        if past is not None:
            raise ValueError("several new tokens after a cache are not supported")
        a = window_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), True)
        a = a.transpose(1, 2)
    x = torch.addcmul(x, gate1, block.proj(a.reshape(b, q.shape[1], -1)))
    h = torch.addcmul(shift2, block.norm2(x), scale2)
    return torch.addcmul(x, gate2, block.fc2(linear_gelu(h, block.fc1))), (k, v)


# --------------------------------------------------------------------------- the rollout


def rollout_fast(model: nn.Module, latents: Tensor, action_emb: Tensor, horizon: int) -> Tensor:
    """`LeWM._rollout_naive`'s H predicted latents, computed with the fast path above.

    model: a `model.LeWM` in eval mode; latents: (B, T0, D) context; action_emb: (B, T0 - 1 + H,
    D) encoded action blocks; horizon: H. Returns (B, H, D). Each step sees the last `history`
    latents; while the window still starts at the first latent, one new token per step runs
    through the blocks against the cached keys/values; once it slides (positions shift), the
    whole window is recomputed.
    """
    hist, t0 = model.cfg.history, latents.shape[1]
    pred = model.predictor
    blocks = pred.blocks
    mods = modulations(pred, action_emb)  # (B, L, 6W) per layer, once per action
    seq, out = list(latents.unbind(1)), []
    cache: list | None = None  # keys/values per layer, valid while the window starts at 0
    for k in range(horizon):
        end = t0 + k
        start = max(0, end - hist)
        if start == 0 and cache is not None:  # growing window: one new token
            new = slice(end - 1, end)
            x = seq[end - 1][:, None] + pred.pos_embed[:, end - 1 : end]
        else:  # first step or sliding window (positions shift): the whole window
            new = slice(start, end)
            x = torch.stack(seq[start:end], dim=1) + pred.pos_embed[:, : end - start]
            cache = None
        kvs = []
        for i, blk in enumerate(blocks):
            past = cache[i] if cache is not None else None
            last = i == len(blocks) - 1
            x, kv = incremental_block_forward(blk, x, mods[i][:, new], past, last)
            kvs.append(kv)
        cache = kvs if start == 0 else None
        nxt = model.pred_proj(pred.norm(x[:, -1]))
        seq.append(nxt)
        out.append(nxt)
    return torch.stack(out, dim=1)
