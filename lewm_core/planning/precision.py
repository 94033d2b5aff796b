"""Planning precision: float32 or bfloat16 for the rollout of CEM's candidates.

bfloat16 matmuls run several times faster than float32 on CPUs with bf16 matrix units and
slower on others, so `dtype="auto"` measures before it picks (`choose_dtype`). REPRODUCTION.md
("Planning speed") holds the rates and plan times measured, and the success rates in both.
"""

from __future__ import annotations

import os

import torch

from lewm_core.errors import UserError
from lewm_core.planning.cem_config import BF16_MIN_SPEEDUP, PRECISION_CHOICES
from lewm_core.world_model.cpu_kernels import bf16_probe, forced_plain

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = PRECISION_CHOICES
assert set(DTYPE_CHOICES) == {"auto", *DTYPES}


def bf16_matmul_speedup() -> float:
    """This CPU's bfloat16 / float32 matmul rate (`cpu_kernels.bf16_probe`, measured once per
    process, under a second); 0.0 where bfloat16 matmuls do not run. Never raises.

    Nothing but a measurement settles it: CPUs with AMX multiply bfloat16 many times faster
    than float32, CPUs with AVX512-BF16 but no AMX slower, CPUs without AVX-512 far slower
    (REPRODUCTION.md "Planning speed"; `bench/plan.py` measures a machine).
    """
    return bf16_probe().speedup


def choose_dtype(device: torch.device | str = "cpu") -> tuple[str, str]:
    """The planning precision `dtype="auto"` picks on `device`, and why (one line).

    bfloat16 where the hardware multiplies it fast (a CUDA GPU that supports it; a CPU on which
    a bfloat16 matmul, measured once, runs at least BF16_MIN_SPEEDUP times faster than a float32
    one), else float32. LEWM_PLAN_DTYPE (float32 | bfloat16) overrides it; LEWM_CPU_KERNELS=plain
    keeps a CPU on float32.
    """
    forced = os.environ.get("LEWM_PLAN_DTYPE")
    if forced:
        if forced not in DTYPES:
            raise UserError(
                f"LEWM_PLAN_DTYPE={forced!r} is not a planning precision; use float32 or bfloat16"
            )
        return forced, f"LEWM_PLAN_DTYPE={forced}"
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "this GPU supports bfloat16"
        return "float32", "this GPU does not support bfloat16"
    if device.type != "cpu":
        return "float32", f"no bfloat16 measurement for {device.type}"
    if forced_plain():
        return "float32", "LEWM_CPU_KERNELS=plain"
    probe = bf16_probe()
    if not probe.runs:
        return "float32", probe.reason
    rates = (
        f"bfloat16 matmul {probe.speedup:.2g}x float32 ({probe.bf16_gflops:.1f} against "
        f"{probe.fp32_gflops:.0f} GFLOP/s at {probe.n})"
    )
    if probe.speedup >= BF16_MIN_SPEEDUP:
        return "bfloat16", f"{rates}, at least {BF16_MIN_SPEEDUP}x"
    return "float32", f"{rates}, under {BF16_MIN_SPEEDUP}x"


def default_dtype(device: torch.device | str = "cpu") -> str:
    """The planning precision `dtype="auto"` picks on `device` (`choose_dtype` says why)."""
    return choose_dtype(device)[0]
