"""Training throughput per preset, next to the machine's plain matmul rate measured in the same run.

    python bench/train.py [--presets lab,paper] [--steps 10] [--json]

For each preset: clips/s of full training steps (forward, SIGReg, backward, AdamW) on random
frames, the FLOPs of one step (counted by torch's FlopCounterMode), the achieved GFLOP/s and its
ratio to a plain fp32 matmul's GFLOP/s (the physical limit here). On a CUDA device it also reports
bf16-autocast throughput (what `lewm train` uses on a GPU) and, for each row, clips/s per GPU: the
benchmark runs one process on one GPU, so with N GPUs under torchrun (global batch N times larger)
expect up to N times the per-GPU figure. The last stdout line with --json is a JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lewm_core.training.trainer import pick_device
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.cpu_kernels import matmul_gflops, synchronize
from lewm_core.world_model.model import LeWM
from lewm_core.world_model.sigreg import sigreg

BATCH = {"lab": 64, "lab-vit": 64, "paper": 16}


def train_step_fn(model: LeWM, opt, batch: int, device: torch.device, autocast: bool):
    cfg = model.cfg
    s = cfg.image_size
    pixels = torch.randint(0, 256, (batch, 4, s, s, 3), dtype=torch.uint8, device=device)
    actions = torch.randn(batch, 4, cfg.action_block_dim, device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(pixels, actions)
        emb = out["emb"].float()
        loss = ((out["pred"].float() - emb[:, 1:]) ** 2).mean() + 0.09 * sigreg(emb.transpose(0, 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def bench_preset(name: str, device: torch.device, steps: int, autocast: bool) -> dict:
    model = LeWM(ModelConfig.preset(name)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = BATCH.get(name, 32)
    step = train_step_fn(model, opt, batch, device, autocast)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    dt = (time.perf_counter() - t0) / steps
    row = {
        "preset": name,
        "batch": batch,
        "clips_per_s": batch / dt,
        "step_s": dt,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / dt / 1e9,
        "autocast_bf16": autocast,
    }
    if device.type == "cuda":  # one process on one GPU
        row["clips_per_s_per_gpu"] = batch / dt
        row["gpu"] = torch.cuda.get_device_name(device)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="lab,paper")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = pick_device(args.device)
    peak = matmul_gflops(device)
    rows = []
    for name in args.presets.split(","):
        rows.append(bench_preset(name, device, args.steps, autocast=False))
        if device.type == "cuda":
            rows.append(bench_preset(name, device, args.steps, autocast=True))
    print(f"device {device}, threads {torch.get_num_threads()}, fp32 matmul {peak:.0f} GFLOP/s")
    print(
        f"{'preset':8s} {'batch':>5s} {'clips/s':>8s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} "
        f"{'of matmul':>9s}"
    )
    for r in rows:
        r["fraction_of_matmul"] = r["gflops"] / peak
        print(
            f"{r['preset']:8s} {r['batch']:5d} {r['clips_per_s']:8.1f} "
            f"{r['gflop_per_step']:10.1f} {r['gflops']:8.1f} {r['fraction_of_matmul']:9.0%}"
            + (" bf16" if r["autocast_bf16"] else "")
        )
    if device.type == "cuda":
        print(f"clips/s above are per GPU ({torch.cuda.get_device_name(device)}, one process)")
    if args.json:
        print(json.dumps({"device": str(device), "matmul_gflops": peak, "presets": rows}))


if __name__ == "__main__":
    main()
