"""Load: bench/load.py for a short while (the full 120 s, 10 sessions: RELIABILITY.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_tools import RECORD, ROOT, lewm_env


@pytest.mark.slow
@pytest.mark.browser
def test_load_bench_short() -> None:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is not installed")
    cmd = [sys.executable, "bench/load.py", "--sessions", "4", "--duration", "30"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=lewm_env(), capture_output=True, text=True, timeout=900
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and result["ok"], proc.stdout[-3000:]
    assert result["sessions"] == 4 and result["exceptions"] == 0
    assert result["plans_completed"] == result["plans_clicked"]
    assert result["max_jobs_per_run_folder"] <= 1 and result["jobs_running_at_end"] >= 0
    assert 0 < result["peak_rss_mib"] < 8192
    RECORD["browser sessions held"] += result["sessions"]
