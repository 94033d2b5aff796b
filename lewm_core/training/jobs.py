"""Background training jobs: `lewm train` as a detached process whose state lives on disk.

    start_training(run_dir, data=..., ...)  launch `lewm train` detached; writes run_dir/job.json
    job_status(run_dir)                     running?, pid, last metrics row, step / total
    stop_training(run_dir, timeout)         SIGINT (the CLI saves a checkpoint), then SIGTERM
    resume_training(run_dir)                start again with --resume

The child runs in its own session (process group), with stdout and stderr appended to
`run_dir/train.log`. `run_dir/job.json` (written atomically) is the lock: pid, process start time,
command, log offset. A second start in the same folder is refused while the recorded process is
alive; a lock whose process is gone is stale and is replaced. Nothing is kept in memory that a
later call needs (except handles to reap finished children), so a page reload, a new browser
session or a restarted app finds a running job again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lewm_core.atomic import write_json
from lewm_core.errors import UserError
from lewm_core.folders import (
    CONFIG_FILE,
    JOB_FILE,
    LOG_FILE,
    METRICS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
)

_GUARD_FILE = ".job.lock"  # flock'ed while a start checks and writes the lock

# A run folder without job.json whose metrics changed this recently is being trained by someone
# else (e.g. `lewm train` in a terminal): resuming it would start a second trainer on it.
FOREIGN_QUIET_S = 30.0

# Processes started by this Python process: polled so that finished ones do not linger as zombies.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Job:
    """A launched training job (what `job.json` records)."""

    run_dir: Path
    pid: int
    started: float
    command: list[str]

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE


# --------------------------------------------------------------------------- processes
def _proc_start_ticks(pid: int) -> int | None:
    """The kernel's start time of process `pid` (Linux), to tell it from a later reuse of pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; fields after its ')' are space separated
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall: starttime
    except (IndexError, ValueError):
        return None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _reap() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Is process `pid` running (not a zombie, and the same process if `start_ticks` is given)?"""
    _reap()
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if _proc_state(pid) in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # our own finished child: reap it
        return False
    if start_ticks is not None:
        now = _proc_start_ticks(pid)
        if now is not None and now != start_ticks:
            return False  # the pid was reused by another process
    return True


def _recently_written(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


# --------------------------------------------------------------------------- lock file
def read_job(run_dir: str | os.PathLike) -> dict | None:
    """The parsed `job.json` of `run_dir`, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / JOB_FILE
    try:
        job = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return job if isinstance(job, dict) and isinstance(job.get("pid"), int) else None


def _job_alive(job: dict | None) -> bool:
    return job is not None and pid_alive(job["pid"], job.get("proc_start"))


@contextlib.contextmanager
def _guard(run_dir: Path):
    """Serialise starts in one run folder (two clicks, two browser tabs)."""
    import fcntl

    with open(run_dir / _GUARD_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- start
def _arg(flag: str, value: Any) -> list[str]:
    return [] if value is None else [flag, str(value)]


def check_start(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    resume: bool = False,
    threads: int | None = None,
) -> None:
    """Raise UserError if `start_training` with these arguments would be refused at once."""
    run_dir = Path(run_dir).absolute()
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file; give a folder for the run")
    if resume:
        if not (run_dir / STATE_FILE).exists():
            raise UserError(f"nothing to resume in {run_dir} (no {STATE_FILE}); start a new run")
    else:
        if data is None:
            raise UserError("a new run needs a dataset (the .h5 file written by `lewm collect`)")
        data = Path(data).absolute()
        if not data.is_file():
            raise UserError(f"dataset {data} does not exist; collect one first")
        if (run_dir / CONFIG_FILE).exists() or (run_dir / STATE_FILE).exists():
            raise UserError(
                f"run folder {run_dir} already holds a run; resume it or choose another name"
            )
    if threads is not None and threads < 1:
        raise UserError(f"threads must be at least 1 (got {threads})")


def start_training(
    run_dir: str | os.PathLike,
    data: str | os.PathLike | None = None,
    preset: str = "lab",
    max_steps: int | None = None,
    sigreg_weight: float | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    epochs: int | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    threads: int | None = None,
    python: str | None = None,
) -> Job:
    """Launch `lewm train` for `run_dir` as a detached background process; return its Job.

    A new run needs `data` (a dataset from `lewm collect`) and an empty or new `run_dir`;
    `resume=True` continues the checkpoint in `run_dir` (`max_steps` may raise its step target).
    `threads` caps the job's CPU threads (default: all cores). Raises UserError when a job is
    already running there or the request cannot start; errors found by the trainer itself show
    in `job_status(run_dir)["error"]` and `train.log`.
    """
    run_dir = Path(run_dir).absolute()
    check_start(run_dir, data, resume, threads)
    data = None if data is None else Path(data).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)

    args = ["train", "--out", str(run_dir), "--quiet"]
    if resume:
        args += ["--resume"] + _arg("--max-steps", max_steps)
    else:
        args += ["--data", str(data), "--preset", preset]
        args += _arg("--max-steps", max_steps) + _arg("--sigreg-weight", sigreg_weight)
        args += _arg("--seed", seed) + _arg("--batch-size", batch_size) + _arg("--lr", lr)
        args += _arg("--epochs", epochs) + _arg("--checkpoint-every", checkpoint_every)
    args += _arg("--threads", threads)
    command = [python or sys.executable, "-m", "lewm_core", *args]

    with _guard(run_dir):
        old = read_job(run_dir)
        if _job_alive(old):
            raise UserError(
                f"a training job is already running in {run_dir} (pid {old['pid']}); "
                "stop it first or wait for it to finish"
            )
        if old is None and resume and _recently_written(run_dir / METRICS_FILE, FOREIGN_QUIET_S):
            raise UserError(
                f"{run_dir} was written to less than {FOREIGN_QUIET_S:.0f} s ago by a training "
                "this lab did not start (a `lewm train` in a terminal?); stop it or wait"
            )
        if old is not None or (run_dir / JOB_FILE).exists():
            (run_dir / JOB_FILE).unlink(missing_ok=True)  # stale: its process is gone

        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = str(Path(__file__).resolve().parents[1])  # so the child imports this lewm_core
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        log_path = run_dir / LOG_FILE
        started = time.time()
        with open(log_path, "ab") as log:
            offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            log.write(f"--- {stamp} lewm {' '.join(args)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        record = {
            "pid": proc.pid,
            "proc_start": _proc_start_ticks(proc.pid),
            "started": started,
            "command": command,
            "args": args,
            "resume": resume,
            "max_steps": max_steps,
            "log_offset": offset,
        }
        write_json(run_dir / JOB_FILE, record)
    return Job(run_dir, proc.pid, started, command)


def resume_training(
    run_dir: str | os.PathLike,
    max_steps: int | None = None,
    threads: int | None = None,
    python: str | None = None,
) -> Job:
    """Continue the run in `run_dir` from its checkpoint (`lewm train --resume`)."""
    return start_training(run_dir, max_steps=max_steps, resume=True, threads=threads, python=python)


# --------------------------------------------------------------------------- status
def read_metrics(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(train rows, checkpoint rows) of `metrics.jsonl`; a half-written last line is skipped."""
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text()
    except OSError:
        return [], []
    train, evals = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        if "loss" in row:
            train.append(row)
        elif "val_pred_loss" in row:
            evals.append(row)
    return train, evals


def _log_since(run_dir: Path, offset: int, limit: int = 20_000) -> str:
    path = run_dir / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(offset, end - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _total_steps(run_dir: Path, job: dict | None) -> int | None:
    if job and job.get("max_steps"):
        return int(job["max_steps"])
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
        if not (job and summary_is_older(run_dir, job)):
            return int(summary["total_steps"])
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        train = json.loads((run_dir / CONFIG_FILE).read_text())["train"]
        if train.get("max_steps"):
            return int(train["max_steps"])
    return None


def summary_is_older(run_dir: Path, job: dict) -> bool:
    try:
        return (run_dir / SUMMARY_FILE).stat().st_mtime < float(job.get("started", 0))
    except OSError:
        return True


def job_status(run_dir: str | os.PathLike) -> dict:
    """Where the job of `run_dir` stands, read from disk.

    Keys: running (bool), state ("running", "finished", "stopped", "failed", "idle"), pid,
    started, command, step (last step logged: training row or checkpoint), total (the step
    target, when known), last_metrics (last training row of metrics.jsonl), last_eval (last
    checkpoint row), checkpoint (a loadable model is on disk), resumable, foreign_active (no
    job.json but metrics.jsonl written in the last 30 s: trained from elsewhere), error (the CLI's
    `error:` line, if it exited with one), log_tail (last lines of this job's train.log).
    """
    run_dir = Path(run_dir)
    job = read_job(run_dir)
    running = _job_alive(job)
    train, evals = read_metrics(run_dir)
    log = _log_since(run_dir, int(job.get("log_offset", 0))) if job else ""
    errors = [ln[len("error: ") :] for ln in log.splitlines() if ln.startswith("error: ")]
    error = errors[-1] if errors else None
    if running:
        state = "running"
    elif job is None:
        state = "idle"
    elif error is not None:
        state = "stopped" if "interrupted" in error else "failed"
    elif not summary_is_older(run_dir, job):
        state = "finished"
    else:
        state = "failed"  # gone without a summary or a message (killed)
        error = "the training process ended without a summary (killed?); see train.log"
    tail = "\n".join(log.splitlines()[-15:])
    return {
        "running": running,
        "state": state,
        "pid": job["pid"] if job else None,
        "started": job.get("started") if job else None,
        "command": job.get("command") if job else None,
        "step": max([r["step"] for r in (train[-1:] + evals[-1:])], default=0),
        "total": _total_steps(run_dir, job),
        "last_metrics": train[-1] if train else None,
        "last_eval": evals[-1] if evals else None,
        "checkpoint": (run_dir / "model.safetensors").exists() and (run_dir / CONFIG_FILE).exists(),
        "resumable": (run_dir / STATE_FILE).exists(),
        # no job.json, yet metrics are being written: someone else trains this folder
        "foreign_active": job is None
        and _recently_written(run_dir / METRICS_FILE, FOREIGN_QUIET_S),
        "error": error,
        "log_tail": tail,
    }


# --------------------------------------------------------------------------- stop
def _wait_dead(pid: int, start_ticks: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, start_ticks):
            return True
        time.sleep(0.1)
    return not pid_alive(pid, start_ticks)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the job leads its own process group
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_training(run_dir: str | os.PathLike, timeout: float = 120.0) -> dict:
    """Stop the job of `run_dir`: SIGINT (the CLI saves a checkpoint and exits), wait `timeout`
    seconds, then SIGTERM (and SIGKILL 10 s later). Returns `job_status` plus `signal`, the
    last signal needed. Raises UserError when no job is running there.
    """
    run_dir = Path(run_dir)
    job = read_job(run_dir)
    if not _job_alive(job):
        raise UserError(f"no training job is running in {run_dir}")
    pid, ticks = job["pid"], job.get("proc_start")
    used = "SIGINT"
    _signal(pid, signal.SIGINT)
    if not _wait_dead(pid, ticks, timeout):
        used = "SIGTERM"
        _signal(pid, signal.SIGTERM)
        if not _wait_dead(pid, ticks, 10.0):
            used = "SIGKILL"
            _signal(pid, signal.SIGKILL)
            _wait_dead(pid, ticks, 10.0)
    status = job_status(run_dir)
    status["signal"] = used
    return status
