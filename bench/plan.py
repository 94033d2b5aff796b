"""Time of one full CEM plan (300 samples x 30 iterations, horizon 5) per preset and rollout mode.

    python bench/plan.py [--preset lab|paper|all] [--repeats 3] [--iterations 30]
                         [--device auto|cpu|cuda] [--no-compile] [--json]

Runs on every CPU: each kernel choice is probed first (`lewm_core.world_model.cpu_kernels`) and the
output says what was chosen and why: the precision (bfloat16 only where a bfloat16 matmul measured
here runs at least 1.5x faster than float32), the linear + GELU (the fused oneDNN op where it
runs here, else the plain two calls) and the rollout (compiled or eager). LEWM_CPU_KERNELS=plain
forces the plain path of all three.

Measures, in one run on this machine, the median seconds per plan of:
  naive float32   what the public code does: every step recomputes the whole history window
                  and runs pred_proj on every token (the baseline);
  fast float32    the same numbers with less work (AdaLN once per action, cached keys/values,
                  last layer and pred_proj on the newest token, attention over <= 3 keys
                  written out);
  fast bfloat16   the fast rollout on a bfloat16 copy of the model (`Planner(dtype=...)`);
                  skipped where bfloat16 matmuls are emulated (under a quarter of float32's
                  rate: on an AVX2 CPU without AVX-512 about 1%) or do not run;
  compiled        the fast rollout in the chosen precision through torch.compile
                  (`Planner(compile_rollout=True)`, `lewm eval --compile`); its first plan,
                  which compiles, is reported apart (`compile_first_plan_s`). `--no-compile`
                  skips it.
`fast_context3_s` is the eager fast rollout planning from three observed frames (`lewm eval
--context 3`, Reacher's default), `context3_over_eager` its ratio to `fast_eager_s`.
`fast_eager_s` is the fast rollout in the precision `planning.precision.choose_dtype` picks for
the device; `fast_s` is the faster of it and the compiled rollout (`fast_mode` says which), and
`speedup` is naive_s / fast_s (`speedup_eager` for the eager rollout alone). FLOPs are counted
with torch's FlopCounterMode over one full plan in float32 (bfloat16 does the same arithmetic,
but the counter does not see the fused oneDNN op); the bound is fast FLOPs / the matmul rate
(2048^3) measured in the same run in the chosen precision. The targets (issue #9: every preset
>= 3x its naive mode, the paper preset <= 6 s) are checked on `fast_s` of full plans
(`--iterations 30`). The last stdout line with --json is a JSON object (for one preset: fast_s,
naive_s, speedup, flops_fast, flops_naive, bound_s, the choices and their reasons, ...; for
several: {"presets": [...]}).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from lewm_core.data.dataset import ActionStats
from lewm_core.planning.cem import Planner
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.precision import choose_dtype
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.cpu_kernels import (
    BF16_SCREEN,
    bf16_probe,
    compile_blocked,
    cpu_description,
    forced_plain,
    fused_linear_gelu_status,
    matmul_gflops,
    synchronize,
)
from lewm_core.world_model.model import LeWM

VARIANTS = (("naive", "float32"), ("fast", "float32"), ("fast", "bfloat16"))


def make_planner(
    preset: str,
    mode: str,
    cem: CEMConfig,
    dtype: str = "float32",
    device: str = "cpu",
    compile_rollout: bool = False,
) -> Planner:
    """A planner over a randomly initialised model of `preset` (timing does not need training)."""
    torch.manual_seed(0)
    model = LeWM(ModelConfig.preset(preset)).eval().to(device)
    with torch.no_grad():  # non-zero AdaLN so actions matter, as in a trained model
        for blk in model.predictor.blocks:
            blk.adaln[1].weight.normal_(0, 0.02)
    stats = ActionStats(np.zeros(2, np.float32), np.ones(2, np.float32))
    return Planner(
        model, stats, cem, rollout_mode=mode, dtype=dtype, compile_rollout=compile_rollout
    )


def time_plan(
    planner: Planner, repeats: int, count_flops: bool = True, context: int = 1
) -> tuple[float, int | None, float]:
    """(median seconds of one full plan over `repeats`, FLOPs of one plan or None without
    `count_flops`, first plan's s).

    The first (warm-up) plan is not in the median; with a compiled rollout it includes the
    compilation. `context` k > 1 plans from k observed latents and the k - 1 blocks between
    them (`lewm eval --context k`).
    """
    cfg, dev = planner.model.cfg, planner.device
    z0, zg = (
        torch.randn(context, cfg.latent_dim, device=dev),
        torch.randn(cfg.latent_dim, device=dev),
    )
    past = torch.randn(context - 1, cfg.frameskip * cfg.action_dim, device=dev)
    start = z0 if context > 1 else z0[0]

    def plan(seed: int) -> None:
        gen = torch.Generator(dev).manual_seed(seed)
        planner.plan(start, zg, generator=gen, keep_history=False, context_blocks=past)

    t_first = time.perf_counter()
    plan(0)
    first_s = time.perf_counter() - t_first
    times = []
    for r in range(repeats):
        synchronize(dev)
        t0 = time.perf_counter()
        plan(r)
        synchronize(dev)
        times.append(time.perf_counter() - t0)
    if not count_flops:
        return statistics.median(times), None, first_s
    with FlopCounterMode(display=False) as counter:
        plan(0)
    return statistics.median(times), counter.get_total_flops(), first_s


def probe_choices(device: str, compile_requested: bool) -> dict:
    """What this run plans with on `device`, each with why (one line): the precision, whether
    fast bfloat16 is timed, the linear + GELU path of the precision, and whether to compile."""
    dtype, dtype_why = choose_dtype(device)
    out = {"cpu": cpu_description(), "kernels": "plain" if forced_plain() else "auto"}
    out.update(fast_dtype=dtype, fast_dtype_reason=dtype_why)
    if device == "cuda":
        out.update(time_bf16=True, bf16_reason="timed on the GPU")
        out.update(linear_gelu="plain", linear_gelu_reason="the fused op is a CPU one")
    else:
        probe = bf16_probe()
        native = probe.runs and probe.speedup >= BF16_SCREEN
        out["bf16_speedup"] = probe.speedup
        out["time_bf16"] = native or dtype == "bfloat16"
        out["bf16_reason"] = (
            f"bfloat16 matmul {probe.speedup:.2g}x float32 at {probe.n}"
            if probe.runs
            else probe.reason
        )
        if not out["time_bf16"]:
            out["bf16_reason"] += f": emulated (under {BF16_SCREEN}x), not timed"
        fused = fused_linear_gelu_status(torch.bfloat16)
        path = "fused" if fused.usable else "plain"
        if dtype == "bfloat16":
            out.update(linear_gelu=path, linear_gelu_reason=fused.reason)
        else:
            why = f"float32 is never fused; bfloat16 would be {path}: {fused.reason}"
            out.update(linear_gelu="plain", linear_gelu_reason=why)
    blocked = compile_blocked(device)
    out["compile"] = compile_requested and blocked is None
    out["compile_reason"] = (
        "--no-compile" if not compile_requested else blocked or "torch.compile requested"
    )
    return out


def bench(
    preset: str, repeats: int, rates: dict[str, float], device: str, choices: dict, cem: CEMConfig
) -> dict:
    """The VARIANTS of one preset that `choices` times (and, where it compiles, the fast rollout
    of the chosen precision through torch.compile), measured one after the other in this
    process; `fast_s` is the faster of the eager and the compiled fast rollout."""
    seconds, flops = {}, {}
    for mode, dtype in VARIANTS:
        if dtype == "bfloat16" and not choices["time_bf16"]:
            seconds[mode, dtype] = None
            continue
        planner = make_planner(preset, mode, cem, dtype, device)
        # FLOPs in float32: the same arithmetic as bfloat16's, all of it visible to the counter
        # (the fused oneDNN linear + GELU of bfloat16 is not)
        count = dtype == "float32"
        seconds[mode, dtype], counted, _ = time_plan(planner, repeats, count_flops=count)
        if count:
            flops[mode] = counted
        del planner
    best = choices["fast_dtype"]
    fast_eager_s, naive_s = seconds["fast", best], seconds["naive", "float32"]
    compiled_s, first_s = None, None
    mode_why = f"eager ({choices['compile_reason']})"
    if choices["compile"]:
        planner = make_planner(preset, "fast", cem, best, device, compile_rollout=True)
        compiled_s, _, first_s = time_plan(planner, repeats, count_flops=False)
        if not planner.compiled:  # compilation failed and it planned eagerly
            compiled_s = None
            mode_why = "eager (torch.compile failed here; the planner fell back)"
        del planner
    context = CEMConfig(samples=cem.samples, iterations=cem.iterations, context=3)
    planner = make_planner(preset, "fast", context, best, device)
    context3_s, _, _ = time_plan(planner, repeats, count_flops=False, context=3)
    del planner
    use_compiled = compiled_s is not None and compiled_s < fast_eager_s
    if compiled_s is not None:
        faster, slower = ("compiled", "eager") if use_compiled else ("eager", "compiled")
        pair = sorted((compiled_s, fast_eager_s))
        mode_why = f"{faster} ({pair[0]:.2f} s against {slower} {pair[1]:.2f} s)"
    fast_s = compiled_s if use_compiled else fast_eager_s
    bound_s = flops["fast"] / (rates[best] * 1e9)
    full = (cem.samples, cem.iterations) == (300, 30)
    bf16_s = seconds["fast", "bfloat16"]
    return {
        "preset": preset,
        "device": device,
        **{k: v for k, v in choices.items() if k not in ("compile", "time_bf16")},
        "cem": f"{cem.samples}x{cem.iterations}, horizon {cem.horizon}",
        "fast_mode": "compiled" if use_compiled else "eager",
        "fast_mode_reason": mode_why,
        "fast_s": fast_s,
        "naive_s": naive_s,
        "speedup": naive_s / fast_s,
        "fast_eager_s": fast_eager_s,
        "speedup_eager": naive_s / fast_eager_s,
        "fast_float32_s": seconds["fast", "float32"],
        "fast_bfloat16_s": bf16_s,
        "speedup_float32": naive_s / seconds["fast", "float32"],
        "fast_compiled_s": compiled_s,
        "speedup_compiled": naive_s / compiled_s if compiled_s is not None else None,
        "compile_first_plan_s": first_s,
        "fast_context3_s": context3_s,
        "context3_over_eager": context3_s / fast_eager_s,
        "flops_fast": flops["fast"],
        "flops_naive": flops["naive"],
        "bound_s": bound_s,
        "fast_over_bound": fast_s / bound_s,
        "meets_target": (
            naive_s / fast_s >= 3.0 and (preset != "paper" or fast_s <= 6.0) if full else None
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="all", choices=("lab", "paper", "lab-vit", "all"))
    p.add_argument("--repeats", type=int, default=3, help="timed plans per variant (>= 1)")
    p.add_argument(
        "--iterations",
        type=int,
        default=CEMConfig.iterations,
        help="CEM iterations per plan (>= 1; the default is the full plan the targets are for)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the fast rollout through torch.compile (whose first plan compiles)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.iterations < 1:
        p.error("--iterations must be at least 1")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    dev = torch.device(device)
    choices = probe_choices(device, args.compile)
    rates = {"float32": matmul_gflops(dev)}
    if choices["time_bf16"]:  # an emulated bfloat16 matmul runs at ~1 GFLOP/s: a small one
        native = device == "cuda" or choices["bf16_speedup"] >= BF16_SCREEN
        n = 2048 if native else 512
        rates["bfloat16"] = matmul_gflops(dev, torch.bfloat16, n=n, warmup=3 if native else 1)
    cem = CEMConfig(iterations=args.iterations)
    presets = ["lab", "paper"] if args.preset == "all" else [args.preset]
    rows = [bench(name, args.repeats, rates, device, choices, cem) for name in presets]
    bf16_rate = (
        f"{rates['bfloat16']:.0f} GFLOP/s"
        if "bfloat16" in rates
        else f"{bf16_probe().bf16_gflops:.1f} GFLOP/s at {bf16_probe().n} (probe)"
    )
    print(
        f"{device}: {choices['cpu']}; matmul float32 {rates['float32']:.0f} GFLOP/s, "
        f"bfloat16 {bf16_rate}; LEWM_CPU_KERNELS={choices['kernels']}"
    )
    print(f"precision: {choices['fast_dtype']} ({choices['fast_dtype_reason']})")
    print(f"linear+GELU: {choices['linear_gelu']} ({choices['linear_gelu_reason']})")
    for r in rows:
        print(f"{r['preset']} rollout: {r['fast_mode_reason']}")
    print(f"CEM {rows[0]['cem']}")
    print(
        f"{'preset':7s} {'naive f32':>9s} {'fast f32':>8s} {'fast bf16':>9s} {'compiled':>8s} "
        f"{'fast':>5s} {'speedup':>7s} {'GFLOP fast':>10s} {'GFLOP naive':>11s} {'bound s':>7s} "
        f"{'x bound':>7s} {'target':>6s}"
    )

    def cell(value: float | None, width: int) -> str:
        return f"{'-':>{width}s}" if value is None else f"{value:{width}.2f}"

    for r in rows:
        target = {True: "met", False: "missed", None: "n/a"}[r["meets_target"]]
        print(
            f"{r['preset']:7s} {r['naive_s']:9.2f} {r['fast_float32_s']:8.2f} "
            f"{cell(r['fast_bfloat16_s'], 9)} {cell(r['fast_compiled_s'], 8)} {r['fast_s']:5.2f} "
            f"{r['speedup']:7.2f} {r['flops_fast'] / 1e9:10.0f} {r['flops_naive'] / 1e9:11.0f} "
            f"{r['bound_s']:7.2f} {r['fast_over_bound']:7.2f} {target:>6s}"
        )
    print(
        f"fast = the faster of fast {rows[0]['fast_dtype']} eager and compiled; speedup = naive "
        "float32 / fast; bound = fast FLOPs at the matmul rate of that precision; target: >= 3x "
        "the naive mode, and <= 6 s for paper (full 300 x 30 plans only)"
    )
    if not choices["time_bf16"]:
        print(f"fast bf16 not timed: {choices['bf16_reason']}")
    for r in rows:
        print(
            f"{r['preset']}: planning from 3 observed frames (--context 3) "
            f"{r['fast_context3_s']:.2f} s, {r['context3_over_eager']:.2f}x the eager fast plan "
            "from one"
        )
    for r in rows:
        if r["fast_compiled_s"] is not None:
            print(
                f"{r['preset']}: eager {r['fast_eager_s']:.2f} s ({r['speedup_eager']:.2f}x), "
                f"compiled {r['fast_compiled_s']:.2f} s ({r['speedup_compiled']:.2f}x); the "
                f"first compiled plan (compiling) took {r['compile_first_plan_s']:.1f} s"
            )
    if args.json:
        out = dict(rows[0]) if len(rows) == 1 else {"presets": rows}
        out.update(matmul_fp32_gflops=rates["float32"], matmul_bf16_gflops=rates.get("bfloat16"))
        print(json.dumps(out))


if __name__ == "__main__":
    main()
