"""Helpers of the reliability suite: launching and killing `lewm`, checking what it left behind.

Imported by name (pytest puts this folder on sys.path). `RECORD` counts what the suite tried
(kill points survived, inputs fuzzed); the conftest prints it at the end of the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("fault_runner.py")
FULL_ENV = "LEWM_RELIABILITY_FULL"
RECORD: Counter = Counter()

# Files a training run folder may hold (anything else is a leftover).
RUN_FILES = {
    "config.json",
    "model.safetensors",
    "trainer_state.safetensors",
    "metrics.jsonl",
    "train_summary.json",
}


def full_mode(config) -> bool:
    """The full suite: `--full`, LEWM_RELIABILITY_FULL=1 or a -m expression that selects it."""
    if os.environ.get(FULL_ENV, "") not in ("", "0"):
        return True
    if config.getoption("--full", default=False):
        return True
    expr = config.getoption("markexpr", default="") or ""
    return "reliability_full" in expr and "not reliability_full" not in expr


def lewm_env() -> dict[str, str]:
    """The environment of a `lewm` subprocess: this one, one thread, this checkout first."""
    env = dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_lewm(
    args: list[str], log_dir: Path, runner_opts: list[str] | None = None, name: str = "lewm"
) -> subprocess.Popen:
    """Start `lewm <args>` in its own session; stdout/stderr go to log_dir/<name>.{out,err}.

    With `runner_opts` (fault_runner.py options) it runs through the fault runner, else as
    `python -m lewm_core`.
    """
    if runner_opts is None:
        cmd = [sys.executable, "-m", "lewm_core", *args]
    else:
        cmd = [sys.executable, str(RUNNER), *runner_opts, "--", *args]
    out = open(log_dir / f"{name}.out", "w")  # noqa: SIM115 (closed by finish)
    err = open(log_dir / f"{name}.err", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=lewm_env(), stdout=out, stderr=err, start_new_session=True
    )
    proc.log_files = (out, err)  # type: ignore[attr-defined]
    proc.log_paths = (Path(out.name), Path(err.name))  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for `proc` (killing its process group after `timeout` s: a hang fails the test);
    return (exit status, stdout, stderr)."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{proc.args} did not finish within {timeout:.0f} s") from None
    for f in proc.log_files:  # type: ignore[attr-defined]
        f.close()
    out, err = (p.read_text(errors="replace") for p in proc.log_paths)  # type: ignore[attr-defined]
    return rc, out, err


def run_lewm(
    args: list[str], log_dir: Path, timeout: float = 300, **kwargs
) -> tuple[int, str, str]:
    """Run `lewm <args>` to the end (see `start_lewm`)."""
    return finish(start_lewm(args, log_dir, **kwargs), timeout)


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(stat.parent.name))
    return kids


def alive(pid: int) -> bool:
    """Is `pid` a running process (not a zombie)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll `predicate` every 20 ms until it holds (True), `proc` exits or `timeout` (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.02)
    return False


def temporaries(folder: Path) -> list[Path]:
    """The atomic-write temporaries in `folder` (`.<name>.tmp-<pid>-...`)."""
    from lewm_core.atomic import TMP_MARK

    return sorted(p for p in folder.iterdir() if p.name.startswith(".") and TMP_MARK in p.name)


def file_hashes(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under `paths` (files or folders), by path."""
    out = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def assert_clean_error(rc: int, err: str, needle: str | None = None) -> str:
    """Exit status 2 and exactly one stderr line `error: ...` (containing `needle`), no
    traceback; returns the line."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, f"exit status {rc}, stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------- datasets
def check_dataset(path: Path, episodes: int, steps: int) -> None:
    """`path` opens with `open_dataset` and holds `episodes` whole episodes of `steps` steps."""
    from lewm_core.data.dataset import open_dataset

    with open_dataset(path) as f:
        assert f["pixels"].shape[0] == episodes * steps
        assert int(f.attrs["episodes"]) == episodes and len(f["ep_len"]) == episodes
        _ = f["pixels"][:]  # every chunk decompresses
        _ = f["sim_state"][:]


# --------------------------------------------------------------------------- run folders
def metrics_rows(run: Path) -> list[dict]:
    """The rows of run/metrics.jsonl; every line must be a complete JSON object."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        row = json.loads(line)  # a torn line fails here
        assert isinstance(row, dict) and isinstance(row.get("step"), int), (i, line)
        rows.append(row)
    return rows


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in metrics_rows(run) if "loss" in r]


def eval_steps(run: Path) -> list[int]:
    return [r["step"] for r in metrics_rows(run) if "val_pred_loss" in r]


def state_step(run: Path) -> int:
    """The step of run/trainer_state.safetensors (0 when there is none)."""
    from safetensors import safe_open

    path = run / "trainer_state.safetensors"
    if not path.exists():
        return 0
    with safe_open(str(path), "pt") as f:
        return int(json.loads(f.metadata()["trainer"])["step"])


def check_run_folder(run: Path, allow_temporaries: bool) -> dict:
    """Every file of a run folder is complete and loadable; returns what was found.

    config.json and train_summary.json parse, model.safetensors loads with its config through
    `lewm_core.world_model.checkpoint.load_model`, trainer_state.safetensors loads and gives a
    resume config, every metrics.jsonl line parses. Temporaries only where `allow_temporaries`.
    """
    from safetensors.torch import load_file

    from lewm_core.training.state import resume_config
    from lewm_core.world_model.checkpoint import load_model

    temps = temporaries(run) if run.exists() else []
    assert allow_temporaries or not temps, f"temporaries left: {temps}"
    names = {p.name for p in run.iterdir()} - {p.name for p in temps} if run.exists() else set()
    assert names <= RUN_FILES, f"unexpected files {names - RUN_FILES}"
    found = {"files": sorted(names), "temporaries": [p.name for p in temps]}
    for name in ("config.json", "train_summary.json"):
        if name in names:
            assert isinstance(json.loads((run / name).read_text()), dict)
    if {"config.json", "model.safetensors"} <= names:
        loaded = load_model(run)
        found["model_step"] = loaded.meta.get("step")
    if "trainer_state.safetensors" in names:
        assert load_file(str(run / "trainer_state.safetensors"))
        resume_config(run)
        found["state_step"] = state_step(run)
    metrics_rows(run)
    return found


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process group of `proc` (its own session), as a terminal's Ctrl-C."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
