"""Smoke tests: the speed benchmarks (bench/) run for real with a tiny budget and print their JSON
line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lewm_testing import CHROMIUM, ROOT, run_script


def test_bench_envs_smoke():
    out = run_script("bench/envs.py", "--seconds", "0.2", "--collect-episodes", "4", "--json")
    for name in ("tworoom", "pusht", "reacher", "cube"):
        assert out[f"{name}_steps_s"] > 0
    assert out["pusht_collect_episodes"] == 4 and out["pusht_collect_s"] > 0


def _bench_plan_lab(*flags: str) -> dict:
    """bench/plan.py on the lab preset with two CEM iterations per plan: the chosen kernels are
    named with their reasons, and fast, naive and the FLOP bound are reported for this machine."""
    argv = ("--preset", "lab", "--repeats", "1", "--iterations", "2", "--json", *flags)
    out = run_script("bench/plan.py", *argv)
    assert out["fast_s"] > 0 and out["naive_s"] > 0 and out["flops_fast"] < out["flops_naive"]
    assert out["fast_s"] <= out["fast_eager_s"]
    assert out["fast_context3_s"] > 0 and out["context3_over_eager"] > 0
    assert out["bound_s"] > 0 and out["cem"] == "300x2, horizon 5" and out["meets_target"] is None
    assert out["fast_dtype"] in ("float32", "bfloat16") and out["fast_dtype_reason"]
    assert out["linear_gelu"] in ("fused", "plain") and out["linear_gelu_reason"]
    assert out["fast_mode_reason"].startswith(out["fast_mode"])
    return out


def test_bench_plan_lab_smoke():
    """Eager only (`--no-compile`: compiling the lab rollout takes a minute or more on a 2-core
    CPU; tests/test_planning.py compiles a small model, the slow test below the bench's)."""
    out = _bench_plan_lab("--no-compile")
    assert out["fast_mode"] == "eager" and out["fast_compiled_s"] is None
    assert out["fast_mode_reason"] == "eager (--no-compile)"


@pytest.mark.slow
def test_bench_plan_lab_compiled():
    """With torch.compile: the faster of the compiled and the eager rollout is `fast_s`."""
    out = _bench_plan_lab()
    assert out["fast_mode"] in ("eager", "compiled")
    if out["fast_compiled_s"] is not None:
        assert out["compile_first_plan_s"] > 0


def test_bench_plan_runs_with_the_plain_kernels_forced():
    """LEWM_CPU_KERNELS=plain, as on a CPU where no probe passes: float32, plain, eager."""
    env = {k: v for k, v in os.environ.items() if k != "LEWM_PLAN_DTYPE"}
    env.update(MUJOCO_GL="egl", LEWM_CPU_KERNELS="plain")
    argv = ["bench/plan.py", "--preset", "lab", "--repeats", "1", "--iterations", "2", "--json"]
    proc = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kernels"] == "plain" and out["fast_dtype"] == "float32"
    assert out["linear_gelu"] == "plain" and out["fast_mode"] == "eager"
    assert "LEWM_CPU_KERNELS=plain" in out["fast_mode_reason"] and out["fast_compiled_s"] is None
    assert out["fast_s"] > 0 and out["naive_s"] > 0 and 0 < out["bound_s"]
    assert "precision: float32 (LEWM_CPU_KERNELS=plain)" in proc.stdout


@pytest.mark.slow
@pytest.mark.browser
def test_bench_app_smoke():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    out = run_script("bench/app.py", "--repeats", "1")
    assert out["target_s"] == 3.0
    assert 0 < out["first_page_s"] < 120 and 0 < out["plan_click_to_rollout_s"] < 120
