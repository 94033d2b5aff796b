"""Background training jobs (lewm_core.training.jobs): a real tiny `lewm train` started, refused a
second time, stopped with a checkpoint, resumed; and the lock file's edge cases with stand-in
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.errors import UserError
from lewm_core.folders import JOB_FILE, METRICS_FILE, STATE_FILE
from lewm_core.training import jobs

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory) -> Path:
    """6 Two-Room episodes x 30 steps: 55 training clips, enough for batches of 8."""
    out = tmp_path_factory.mktemp("jobs_data") / "tiny.h5"
    collect(CollectSpec("tworoom", episodes=6, steps=30, resolution=64, seed=0), out)
    return out


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _train_steps(run: Path) -> list[int]:
    return [r["step"] for r in jobs.read_metrics(run)[0]]


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable that stands in for the interpreter (it ignores the arguments)."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_start_refuse_stop_resume(tiny_h5: Path, tmp_path: Path) -> None:
    from lewm_core.world_model.checkpoint import load_model

    run = tmp_path / "run"
    # epochs=1000 so that max_steps (not the 10-epoch default) bounds the run
    job = jobs.start_training(
        run,
        data=tiny_h5,
        max_steps=2000,
        epochs=1000,
        batch_size=8,
        checkpoint_every=10,
        seed=0,
        threads=1,
    )
    try:
        record = jobs.read_job(run)
        assert record is not None and record["pid"] == job.pid
        assert "train" in record["args"] and "--quiet" in record["args"]
        assert jobs.job_status(run)["running"]

        with pytest.raises(UserError, match="already running"):
            jobs.start_training(run, data=tiny_h5, max_steps=5, threads=1)
        assert jobs.read_job(run)["pid"] == job.pid  # the refused start left the lock alone

        _wait(
            lambda: jobs.job_status(run)["step"] >= 10 and (run / STATE_FILE).exists(),
            120,
            "the first checkpoint",
        )
        out = jobs.stop_training(run, timeout=60)
    finally:
        if jobs.job_status(run)["running"]:
            jobs.stop_training(run, timeout=5)
    assert out["signal"] == "SIGINT"
    assert not out["running"] and out["state"] == "stopped"
    assert "interrupted" in out["error"] and "--resume" in out["error"]

    loaded = load_model(run)  # the interrupt saved a loadable checkpoint
    assert loaded.env_name == "tworoom"
    saved = json.loads((run / "config.json").read_text())["step"]
    steps = _train_steps(run)
    assert steps and steps == sorted(set(steps)) and steps[-1] <= saved

    target = (saved // 10 + 2) * 10  # metrics rows are logged every 10 steps
    job2 = jobs.resume_training(run, max_steps=target, threads=1)
    assert job2.pid != job.pid
    _wait(lambda: not jobs.job_status(run)["running"], 120, "the resumed run to finish")
    status = jobs.job_status(run)
    assert status["state"] == "finished", status["log_tail"]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == target and not summary["stopped_early"]
    assert summary["machine"].endswith(f"{os.cpu_count()} cores")  # the model card names it
    steps = _train_steps(run)
    assert steps == sorted(set(steps))  # no step logged twice across the resume
    assert steps[-1] == target and any(saved < s for s in steps)
    assert json.loads((run / "config.json").read_text())["step"] == target
    assert load_model(run).env_name == "tworoom"


def test_new_run_refused_in_used_folder(tiny_h5: Path, tmp_path: Path) -> None:
    run = tmp_path / "used"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(UserError, match="already holds a run"):
        jobs.start_training(run, data=tiny_h5)
    with pytest.raises(UserError, match="nothing to resume"):
        jobs.resume_training(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        jobs.start_training(tmp_path / "new", data=tmp_path / "missing.h5")
    assert jobs.job_status(tmp_path / "new")["state"] == "idle"


def test_stale_lock_is_replaced(tiny_h5: Path, tmp_path: Path) -> None:
    run = tmp_path / "stale"
    run.mkdir()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # its pid is dead now
    (run / JOB_FILE).write_text(json.dumps({"pid": done.pid, "started": 0}))
    assert not jobs.job_status(run)["running"]

    # a stand-in interpreter that exits at once: the lock mechanics without a real training
    fake = _fake_python(tmp_path, "exit 0")
    job = jobs.start_training(run, data=tiny_h5, python=fake)
    assert jobs.read_job(run)["pid"] == job.pid != done.pid
    _wait(lambda: not jobs.job_status(run)["running"], 20, "the stand-in to exit")


def test_live_foreign_lock_refuses_and_reused_pid_does_not(tiny_h5: Path, tmp_path: Path) -> None:
    run = tmp_path / "live"
    run.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (run / JOB_FILE).write_text(json.dumps({"pid": sleeper.pid, "started": 0}))
        with pytest.raises(UserError, match=f"already running .*pid {sleeper.pid}"):
            jobs.start_training(run, data=tiny_h5, python=_fake_python(tmp_path, "exit 0"))
        # the same pid with another process start time is a reused pid: the lock is stale
        ticks = jobs._proc_start_ticks(sleeper.pid)
        if ticks is not None:
            lock = {"pid": sleeper.pid, "proc_start": ticks + 1, "started": 0}
            (run / JOB_FILE).write_text(json.dumps(lock))
            assert not jobs.job_status(run)["running"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_escalates_to_sigterm(tiny_h5: Path, tmp_path: Path) -> None:
    run = tmp_path / "stubborn"
    # ignores SIGINT (as a hung trainer would), dies on SIGTERM; it says when the trap is set, so
    # that the SIGINT cannot arrive before it (on a loaded machine it did, and the shell died of it)
    ready = tmp_path / "trap-set"
    fake = _fake_python(tmp_path, f"trap '' INT\ntouch '{ready}'\nsleep 30")
    jobs.start_training(run, data=tiny_h5, python=fake)
    _wait(ready.exists, 20, "the stand-in to ignore SIGINT")
    assert jobs.job_status(run)["running"]
    t0 = time.monotonic()
    out = jobs.stop_training(run, timeout=1.0)
    assert out["signal"] == "SIGTERM" and not out["running"]
    assert time.monotonic() - t0 < 10
    with pytest.raises(UserError, match="no training job is running"):
        jobs.stop_training(run, timeout=1.0)


def test_resume_refused_while_a_foreign_trainer_writes(tmp_path: Path) -> None:
    run = tmp_path / "foreign"
    run.mkdir()
    (run / STATE_FILE).write_bytes(b"x")
    (run / METRICS_FILE).write_text('{"step": 1, "loss": 1.0}\n')  # just written, no job.json
    assert jobs.job_status(run)["foreign_active"]
    with pytest.raises(UserError, match="did not start"):
        jobs.resume_training(run, python=_fake_python(tmp_path, "exit 0"))
    old = time.time() - 2 * jobs.FOREIGN_QUIET_S
    os.utime(run / METRICS_FILE, (old, old))
    assert not jobs.job_status(run)["foreign_active"]
    jobs.resume_training(run, python=_fake_python(tmp_path, "exit 0"))
    _wait(lambda: not jobs.job_status(run)["running"], 20, "the stand-in to exit")
