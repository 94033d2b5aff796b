"""Time of one full CEM plan (300 samples x 30 iterations, horizon 5) per preset and rollout mode.

    python bench/plan.py [--preset lab|paper|all] [--repeats 3] [--json]

Measures, in one run on this machine: the median seconds per plan with the `fast` rollout and
with the `naive` one (what the public code does), their ratio, the FLOPs of each (counted with
torch's FlopCounterMode over one full plan), and the FLOP lower bound: fast FLOPs / the matmul
rate measured in the same run (fp32 and bf16). The last stdout line with --json is a JSON object
(for one preset: fast_s, naive_s, speedup, flops_fast, flops_naive, bound_s, ...).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import matmul_gflops  # noqa: E402

from lewm_core.config import ModelConfig  # noqa: E402
from lewm_core.data import ActionStats  # noqa: E402
from lewm_core.model import LeWM  # noqa: E402
from lewm_core.planning import CEMConfig, Planner  # noqa: E402


def make_planner(preset: str, mode: str, cem: CEMConfig) -> Planner:
    torch.manual_seed(0)
    model = LeWM(ModelConfig.preset(preset)).eval()
    with torch.no_grad():  # non-zero AdaLN so actions matter, as in a trained model
        for blk in model.predictor.blocks:
            blk.adaln[1].weight.normal_(0, 0.02)
    stats = ActionStats(np.zeros(2, np.float32), np.ones(2, np.float32))
    return Planner(model, stats, cem, rollout_mode=mode)


def time_plan(planner: Planner, repeats: int) -> tuple[float, int]:
    d = planner.model.cfg.latent_dim
    z0, zg = torch.randn(d), torch.randn(d)
    planner.plan(z0, zg, generator=torch.Generator().manual_seed(0), keep_history=False)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        planner.plan(z0, zg, generator=torch.Generator().manual_seed(r), keep_history=False)
        times.append(time.perf_counter() - t0)
    with FlopCounterMode(display=False) as counter:
        planner.plan(z0, zg, generator=torch.Generator().manual_seed(0), keep_history=False)
    return statistics.median(times), counter.get_total_flops()


def bench(preset: str, repeats: int, fp32_gflops: float, bf16_gflops: float) -> dict:
    cem = CEMConfig()
    fast_s, flops_fast = time_plan(make_planner(preset, "fast", cem), repeats)
    naive_s, flops_naive = time_plan(make_planner(preset, "naive", cem), repeats)
    return {
        "preset": preset,
        "cem": f"{cem.samples}x{cem.iterations}, horizon {cem.horizon}",
        "fast_s": fast_s,
        "naive_s": naive_s,
        "speedup": naive_s / fast_s,
        "flops_fast": flops_fast,
        "flops_naive": flops_naive,
        "bound_s": flops_fast / (fp32_gflops * 1e9),
        "bound_bf16_s": flops_fast / (bf16_gflops * 1e9),
        "fast_over_bound": fast_s / (flops_fast / (fp32_gflops * 1e9)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="all", choices=("lab", "paper", "lab-vit", "all"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    fp32 = matmul_gflops(torch.device("cpu"))
    bf16 = matmul_gflops(torch.device("cpu"), torch.bfloat16)
    presets = ["lab", "paper"] if args.preset == "all" else [args.preset]
    rows = [bench(name, args.repeats, fp32, bf16) for name in presets]
    print(f"threads {torch.get_num_threads()}; matmul fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f}")
    print(
        f"{'preset':7s} {'fast s':>7s} {'naive s':>8s} {'speedup':>7s} {'GFLOP fast':>10s} "
        f"{'GFLOP naive':>11s} {'bound s':>8s} {'x bound':>7s}"
    )
    for r in rows:
        print(
            f"{r['preset']:7s} {r['fast_s']:7.2f} {r['naive_s']:8.2f} {r['speedup']:7.2f} "
            f"{r['flops_fast'] / 1e9:10.0f} {r['flops_naive'] / 1e9:11.0f} {r['bound_s']:8.2f} "
            f"{r['fast_over_bound']:7.2f}"
        )
    if args.json:
        out = dict(rows[0]) if len(rows) == 1 else {"presets": rows}
        out.update(matmul_fp32_gflops=fp32, matmul_bf16_gflops=bf16)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
