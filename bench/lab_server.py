"""Lab servers in a subprocess, watched from outside: shared by the browser benchmarks
(`bench/app.py`, `bench/load.py`, `bench/deploy_memory.py`, which import it as a sibling) and the
browser tests (`tests/lewm_testing.py` loads it from its file).

Chromium is Debian's (`/usr/bin/chromium`; `playwright install` cannot download here), started
with the flags this machine needs. Nothing here imports Streamlit, Gradio or Playwright.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"  # the script run finished


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, interval: float) -> None:
    """Return once GET `url` answers 200; RuntimeError if `proc` exits or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited (status {proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not healthy within {timeout:.0f} s")
        time.sleep(interval)


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if `proc` has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident set) of `pid` in MiB, from /proc (empty if it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out
