"""Which CPU kernels this process may use, each probed once, by running it, never by CPU name.

Three choices depend on the processor and the PyTorch build. None is read from /proc/cpuinfo or
from an instruction-set name, so nothing here assumes x86: an ARM laptop gets the same probes.

- Fused linear + GELU (`fused_linear_gelu`): the oneDNN op `torch.ops.mkldnn._linear_pointwise`,
  which `lewm_core.world_model.fast_rollout.linear_gelu` uses for bfloat16 (the predictor's MLP
  in the rollout that planning runs). The probe runs it on tiny tensors and compares it with
  the plain `F.gelu(F.linear(...))`. A missing op, a RuntimeError
  (oneDNN has no such kernel on this CPU: a bfloat16 inner product on AVX2 without AVX-512 fails
  with "could not create a primitive descriptor") or a wrong answer all mean the plain two calls.
- bfloat16 matmuls (`bf16_probe`): whether a small one runs and matches float32 to bfloat16
  rounding, and its rate against float32 here, timed on (512, 512) products and, where
  bfloat16 is not far slower, on (1024, 1024) ones (`bf16_probe` says how long each is timed);
  where bfloat16 is emulated (an AVX2 CPU without AVX-512) the first size settles it.
- torch.compile (`compile_blocked`): a probe would compile a graph (seconds to a minute), so the
  planner tries it on its first plan; where the compiler fails, the failure is recorded here
  and every later planner of the process plans eagerly, with one warning for the process.

LEWM_CPU_KERNELS=plain (read once per process) forces the plain path of all three: no fused op,
float32 unless bfloat16 is asked for by name, no compilation. The default, auto, probes.
"""

from __future__ import annotations

import functools
import os
import platform
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lewm_core.errors import UserError

KERNEL_MODES = ("auto", "plain")  # values of LEWM_CPU_KERNELS
BF16_SCREEN = 0.25  # bfloat16 below this fraction of float32's matmul rate is not timed further


def kernel_mode_from(value: str | None) -> str:
    """The kernel mode a LEWM_CPU_KERNELS value names (unset or empty: auto)."""
    mode = (value or "auto").strip().lower()
    if mode not in KERNEL_MODES:
        raise UserError(
            f"LEWM_CPU_KERNELS={value!r} is not a kernel mode; use {' or '.join(KERNEL_MODES)}"
        )
    return mode


@functools.cache
def forced_plain() -> bool:
    """True when LEWM_CPU_KERNELS=plain forces the plain path (read once per process)."""
    return kernel_mode_from(os.environ.get("LEWM_CPU_KERNELS")) == "plain"


# --------------------------------------------------------------------------- one warning each

_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(key: str, message: str) -> None:
    """A RuntimeWarning `message`, the first time this process warns under `key`."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def first_line(err: BaseException, limit: int = 200) -> str:
    """'Type: first line of the message' of an exception, at most `limit` characters of it; of
    a line over 100 characters, its first sentence (oneDNN appends advice on its debug log)."""
    text = (str(err).strip().splitlines() or [""])[0]
    if len(text) > 100 and ". " in text:
        text = text.split(". ")[0]
    return f"{type(err).__name__}: {text[:limit]}"


# --------------------------------------------------------------------------- matmul timing


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a GPU runs asynchronously); a no-op on the CPU.
    Every timing of this project (benches, `matmul_gflops`) brackets its clock with it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    n: int = 2048,
    secs: float = 2.0,
    warmup: int = 3,
) -> float:
    """Sustained GFLOP/s of an (n, n) @ (n, n) matmul in `dtype` on `device`, timed over about
    `secs` seconds (at least one product) after `warmup` untimed products."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(warmup):
        a @ b
    synchronize(device)
    reps, t0 = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - t0 < secs:
        a @ b
        reps += 1
    synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


# --------------------------------------------------------------------------- fused linear + GELU


@dataclass(frozen=True)
class KernelStatus:
    """Whether a kernel may be used in this process, and why (one line)."""

    usable: bool
    reason: str


def _linear_pointwise():
    """The oneDNN fused linear op of this PyTorch build, or None where the build lacks it."""
    namespace = getattr(torch.ops, "mkldnn", None)
    return getattr(namespace, "_linear_pointwise", None) if namespace is not None else None


def fused_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """GELU(x @ weight.T + bias) in one oneDNN call; (..., in) -> (..., out). Unguarded: call
    it only where `fused_linear_gelu_status(x.dtype).usable` (it raises elsewhere)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")


@functools.cache
def fused_linear_gelu_status(dtype: torch.dtype = torch.bfloat16) -> KernelStatus:
    """Whether the fused linear + GELU runs on this CPU in `dtype` and gives the plain numbers.

    Runs it once per process and dtype on a (2, 3, 32) input and a 32 -> 48 layer and compares
    it with `F.gelu(F.linear(...))` computed in float32 from the same `dtype` values (to the
    dtype's rounding: 4 of its epsilons of the largest output)."""
    if forced_plain():
        return KernelStatus(False, "LEWM_CPU_KERNELS=plain forces the plain path")
    if _linear_pointwise() is None:
        return KernelStatus(False, "this PyTorch build has no oneDNN fused linear op")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, generator=gen).to(dtype)
    weight = (torch.randn(48, 32, generator=gen) / 32**0.5).to(dtype)
    bias = torch.randn(48, generator=gen).to(dtype)
    try:
        with torch.no_grad():
            got = fused_linear_gelu(x, weight, bias)
    except (RuntimeError, TypeError) as err:  # no kernel for this CPU or dtype; another signature
        return KernelStatus(False, f"the fused op does not run here ({first_line(err)})")
    ref = F.gelu(F.linear(x.float(), weight.float(), bias.float()))
    if got.shape != ref.shape or got.dtype != dtype:
        return KernelStatus(False, f"the fused op returned {got.dtype} {tuple(got.shape)}")
    err = float((got.float() - ref).abs().max())
    tol = 4 * torch.finfo(dtype).eps * float(ref.abs().max())
    if not err <= tol:  # also catches NaN
        return KernelStatus(False, f"the fused op is off by {err:.3g} (tolerance {tol:.3g})")
    return KernelStatus(True, "the fused op ran and matched the plain computation")


# --------------------------------------------------------------------------- bfloat16 matmuls


@dataclass(frozen=True)
class Bf16Probe:
    """What a bfloat16 matmul does on this CPU.

    runs: a small bfloat16 matmul ran and matched float32 to bfloat16 rounding; speedup: its
    rate over float32's (0.0 where it does not run), bf16_gflops and fp32_gflops those rates,
    measured on (n, n) products; reason: the error where it does not run.
    """

    runs: bool
    speedup: float = 0.0
    bf16_gflops: float = 0.0
    fp32_gflops: float = 0.0
    n: int = 0
    reason: str = ""


def _bf16_matches() -> str:
    """'' where bfloat16 matmul and linear run and match float32, else what went wrong."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 64, generator=gen), torch.randn(64, 32, generator=gen)
    bias = torch.randn(64, generator=gen)
    lo_a, lo_b, lo_bias = a.bfloat16(), b.bfloat16(), bias.bfloat16()
    try:
        prod = (lo_a @ lo_b).float()
        lin = F.linear(lo_b.T, lo_a, lo_bias).float()
    except (RuntimeError, TypeError) as err:
        return f"a bfloat16 matmul does not run here ({first_line(err)})"
    ref = lo_a.float() @ lo_b.float()
    ref_lin = F.linear(lo_b.float().T, lo_a.float(), lo_bias.float())
    for got, want in ((prod, ref), (lin, ref_lin)):
        err = float((got - want).abs().max())
        if not err <= 0.02 * float(want.abs().max()):
            return f"a bfloat16 matmul is off by {err:.3g} here"
    return ""


@functools.cache
def bf16_probe() -> Bf16Probe:
    """Whether bfloat16 matmuls run on this CPU and how fast against float32 (once per process).

    Rates on (512, 512) products timed 0.05 s each; where bfloat16 reaches BF16_SCREEN of the
    float32 rate there, again on (1024, 1024) products timed 0.1 s each (the larger size is the
    one the planner's choice rests on; the smaller keeps the probe short where bfloat16 is
    emulated). Never raises: an error is reported in `reason`. Not affected by
    LEWM_CPU_KERNELS: it measures, and `lewm_core.planning.precision.default_dtype` decides.
    """
    problem = _bf16_matches()
    if problem:
        return Bf16Probe(False, reason=problem)
    cpu = torch.device("cpu")
    try:
        n, secs = 512, 0.05
        fp32 = matmul_gflops(cpu, torch.float32, n=n, secs=secs, warmup=1)
        bf16 = matmul_gflops(cpu, torch.bfloat16, n=n, secs=secs, warmup=1)
        if bf16 >= BF16_SCREEN * fp32:
            n, secs = 1024, 0.1
            bf16 = matmul_gflops(cpu, torch.bfloat16, n=n, secs=secs, warmup=1)
            fp32 = matmul_gflops(cpu, torch.float32, n=n, secs=secs, warmup=1)
    except (RuntimeError, TypeError) as err:
        return Bf16Probe(False, reason=f"a bfloat16 matmul failed when timed ({first_line(err)})")
    return Bf16Probe(True, bf16 / fp32, bf16, fp32, n)


def bf16_request_check(probe: Bf16Probe) -> str | None:
    """What to say when bfloat16 is asked for by name on the CPU of `probe`.

    Raises UserError (naming --dtype float32) where bfloat16 matmuls do not run; returns a
    one-line warning where they run slower than float32; None where they run at least as fast.
    """
    if not probe.runs:
        raise UserError(
            f"bfloat16 cannot plan on this CPU: {probe.reason}; use --dtype float32 "
            "(or LEWM_PLAN_DTYPE=float32)"
        )
    if probe.speedup >= 1.0:
        return None
    return (
        f"bfloat16 matmuls run at {probe.speedup:.2g}x the float32 rate on this CPU "
        f"({probe.bf16_gflops:.1f} against {probe.fp32_gflops:.0f} GFLOP/s): planning in "
        "bfloat16 works but is slower; --dtype float32 plans faster here"
    )


# --------------------------------------------------------------------------- torch.compile

_compile_failures: dict[str, str] = {}  # device type -> the first failure's line


def record_compile_failure(device_type: str, reason: str) -> None:
    """Note that torch.compile failed in this process on `device_type` ("cpu", "cuda";
    `reason`: one line); later planners there plan eagerly without trying again."""
    _compile_failures.setdefault(device_type, reason)


def compile_blocked(device_type: str = "cpu") -> str | None:
    """Why planners on `device_type` must not compile in this process (one line), or None
    where they may. LEWM_CPU_KERNELS=plain blocks the CPU only."""
    if device_type == "cpu" and forced_plain():
        return "LEWM_CPU_KERNELS=plain forces eager planning"
    if device_type in _compile_failures:
        return f"torch.compile failed earlier in this process ({_compile_failures[device_type]})"
    return None


# --------------------------------------------------------------------------- summary


def machine_description(device: torch.device | None = None) -> str:
    """The processor (and GPU, for a CUDA device) a run used, for its summary and model card,
    e.g. 'AMD EPYC 9B14; x86_64, PyTorch CPU capability AVX512, 2 threads; 2 cores'."""
    model = platform.processor() or "unknown processor"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() it is
    text = f"{model}; {cpu_description()}; {os.cpu_count()} cores"
    if device is not None and device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def cpu_description() -> str:
    """This machine in a few words: architecture, the vector level PyTorch dispatches to,
    threads (e.g. 'x86_64, PyTorch CPU capability AVX512, 2 threads')."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    return (
        f"{platform.machine() or 'unknown'}, PyTorch CPU capability {capability}, "
        f"{torch.get_num_threads()} threads"
    )
