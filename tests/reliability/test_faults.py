"""Faults: `lewm collect` and `lewm train` killed with SIGKILL or SIGINT at random (seeded)
moments and at every atomic rename. Afterwards every file is whole and loadable, temporaries are
gone (a SIGKILL may leave one: the next command on that folder deletes it), `--resume` finishes
the run having lost at most one checkpoint interval, and metrics.jsonl holds every step once.

Short by default (a few kill points); `--full` / LEWM_RELIABILITY_FULL=1: 10+ per command.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from reliability_tools import (
    RECORD,
    alive,
    assert_clean_error,
    check_dataset,
    check_run_folder,
    children_of,
    eval_steps,
    file_hashes,
    finish,
    full_mode,
    kill_group,
    run_lewm,
    start_lewm,
    state_step,
    temporaries,
    train_steps,
    wait_until,
)

from lewm_core.atomic import TMP_MARK, atomic_path, remove_stale_temporaries
from lewm_core.cli import main as cli

SEED = 20260  # all kill moments derive from it
FULL_KILLS = 10  # kill points per signal and command in the full suite

# collection killed at random moments: long enough (a few seconds) to be hit while writing
COLLECT = {"env": "pusht", "episodes": 160, "steps": 50}
# training: the tiny dataset, batch 8, a checkpoint every CKPT steps, one metrics row per step
STEPS, CKPT = 30, 5
RENAME_STEPS, RENAME_CKPT = 12, 4  # 3 checkpoints x 3 files + the summary = 10 renames


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    full = full_mode(metafunc.config)
    n = FULL_KILLS if full else 1
    if "collect_kill" in metafunc.fixturenames:
        points = [(sig, i) for sig in ("SIGKILL", "SIGINT") for i in range(n)]
        metafunc.parametrize("collect_kill", points, ids=[f"{s}-{i}" for s, i in points])
    if "collect_rename" in metafunc.fixturenames:
        metafunc.parametrize("collect_rename", ["before", "after"] if full else ["before"])
    if "train_chain" in metafunc.fixturenames:
        chains = [("SIGKILL",) * n, ("SIGINT",) * n] if full else [("SIGKILL", "SIGINT")]
        metafunc.parametrize("train_chain", chains, ids=["-".join(c[:2]) for c in chains])
    if "train_rename" in metafunc.fixturenames:
        points = (
            [(k, w) for k in range(1, 11) for w in ("before", "after")] if full else [(1, "after")]
        )
        metafunc.parametrize("train_rename", points, ids=[f"{k}-{w}" for k, w in points])


@pytest.fixture(scope="module")
def tiny_h5(tiny_run: dict) -> str:
    return str(tiny_run["h5"])


# --------------------------------------------------------------------------- collect
def _collect_args(out: Path, workers: int, seed: int = 1) -> list[str]:
    c = COLLECT
    return [
        "collect",
        "--env",
        c["env"],
        "--episodes",
        str(c["episodes"]),
        "--steps",
        str(c["steps"]),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
    ]


def _small_collect(out: Path, log_dir: Path, name: str) -> None:
    args = ["collect", "--env", "tworoom", "--episodes", "2", "--steps", "10", "--out", str(out)]
    rc, _, err = run_lewm([*args, "--overwrite", "--quiet"], log_dir, name=name)
    assert rc == 0, err


def test_collect_survives_kill(collect_kill: tuple[str, int], tmp_path: Path) -> None:
    sig_name, i = collect_kill
    rng = random.Random(f"{SEED}-collect-{sig_name}-{i}")
    workers, delay = rng.choice([1, 2]), rng.uniform(0.0, 2.5)
    out = tmp_path / "d.h5"
    _small_collect(out, tmp_path, "old")  # --overwrite must keep it whole until the new one is
    old = file_hashes(out)

    proc = start_lewm(_collect_args(out, workers), tmp_path)
    if sig_name == "SIGINT":  # a Ctrl-C once the command runs (not in Python's own start-up)
        wait_until(lambda: bool(temporaries(tmp_path)), 60, proc)
    time.sleep(delay)
    kids = children_of(proc.pid)
    if sig_name == "SIGKILL":
        os.kill(proc.pid, signal.SIGKILL)  # the parent alone: its workers must notice
    else:
        kill_group(proc, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    rc, _, err = finish(proc, 60)
    assert wait_until(lambda: not any(alive(k) for k in kids), 15), "workers outlived the parent"

    replaced = file_hashes(out) != old
    if replaced:
        check_dataset(out, COLLECT["episodes"], COLLECT["steps"])
    if sig_name == "SIGINT":
        if rc != 0:
            assert rc == 130 and not replaced, (rc, err)
            line = [ln for ln in err.splitlines() if ln.strip()]
            assert line == ["error: interrupted; nothing half-written was kept"], err
        assert not temporaries(tmp_path)
    else:
        assert rc in (-signal.SIGKILL, 0), (rc, err)
        assert len(temporaries(tmp_path)) <= 1
        _small_collect(out, tmp_path, "next")  # the next collection to that file cleans up
        assert not temporaries(tmp_path)
    RECORD[f"collect {sig_name} kills survived"] += 1


def test_collect_killed_at_rename(collect_rename: str, tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    opts = ["--die-at-replace", "1", "--die-when", collect_rename]
    args = ["collect", "--env", "tworoom", "--episodes", "3", "--steps", "10", "--out", str(out)]
    rc, _, _ = run_lewm([*args, "--quiet"], tmp_path, runner_opts=opts)
    assert rc == -signal.SIGKILL
    if collect_rename == "before":
        assert not out.exists() and len(temporaries(tmp_path)) == 1
        check_dataset(temporaries(tmp_path)[0], 3, 10)  # the temporary itself was complete
        rc, _, err = run_lewm([*args, "--quiet"], tmp_path, name="next")  # no --overwrite
        assert rc == 0, err
    check_dataset(out, 3, 10)
    assert not temporaries(tmp_path)
    RECORD["collect rename kills survived"] += 1


# --------------------------------------------------------------------------- train
def _train_args(h5: str, run: Path, steps: int = STEPS, every: int = CKPT) -> list[str]:
    return [
        "train",
        "--data",
        h5,
        "--out",
        str(run),
        "--max-steps",
        str(steps),
        "--batch-size",
        "8",
        "--checkpoint-every",
        str(every),
        "--threads",
        "1",
        "--seed",
        "0",
        "--quiet",
        "--json",
    ]


def _next_args(h5: str, run: Path, **kw) -> list[str]:
    """Resume if the run has a checkpoint, else start it again (nothing to resume yet)."""
    if (run / "trainer_state.safetensors").exists():
        return ["train", "--out", str(run), "--resume", "--threads", "1", "--quiet", "--json"]
    return _train_args(h5, run, **kw)


def _reached(progress: Path) -> int:
    """The last step the trainer finished (fault_runner --progress), 0 before the first."""
    try:
        lines = progress.read_text().split()
    except OSError:
        return 0
    return int(lines[-1]) if lines else 0


def _new_eval(run: Path, after: int) -> bool:
    """Has the running trainer logged an evaluation row (a checkpoint) after step `after`?"""
    try:
        text = (run / "metrics.jsonl").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # being written
            continue
        if "val_pred_loss" in row and row["step"] > after:
            return True
    return False


def _check_finished(run: Path, out: str, steps: int, every: int, stops: set[int]) -> None:
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["steps"] == steps and not summary["stopped_early"]
    found = check_run_folder(run, allow_temporaries=False)
    assert found["state_step"] == steps and found["model_step"] == steps
    assert train_steps(run) == list(range(1, steps + 1)), "a step missing or logged twice"
    evals = eval_steps(run)
    assert evals == sorted(set(evals)) and evals[-1] == steps, evals
    assert all(s % every == 0 or s in stops for s in evals), (evals, stops)


def test_train_kill_chain(
    train_chain: tuple[str, ...], tiny_h5: str, tmp_path: Path, full: bool
) -> None:
    """Kill one run again and again (each time after a random step), resuming in between.
    In the full suite every third launch loads its batches in 2 DataLoader worker processes."""
    run = tmp_path / "run"
    total = max(STEPS, 8 * len(train_chain))  # room for every kill (a Ctrl-C keeps each step)
    stops: set[int] = set()  # where a Ctrl-C saved a checkpoint (an evaluation row there)
    for i, sig_name in enumerate(train_chain):
        rng = random.Random(f"{SEED}-train-{sig_name}-{i}")
        start = state_step(run)
        if start >= total - 1:  # (Ctrl-C stops at the step reached: nothing left to kill)
            break
        target = rng.randint(start + 1, min(total - 1, start + 2 * CKPT))
        # when: after a random step, or while a checkpoint is written (its evaluation row is
        # out, the files not yet): odd kills of the full chains, and the short chain's Ctrl-C
        during_checkpoint = i % 2 == 1
        progress = tmp_path / f"progress{i}"
        opts = ["--log-every", "1", "--progress", str(progress)]
        workers = ["--loader-workers", "2"] if full and i % 3 == 2 else []
        args = _next_args(tiny_h5, run, steps=total) + workers
        proc = start_lewm(args, tmp_path, runner_opts=opts, name=f"k{i}")
        if during_checkpoint:
            # (this process has made a step: stale rows of the last kill are dropped by then)
            wait_until(lambda s=start, p=progress: _reached(p) and _new_eval(run, s), 180, proc)
        else:
            wait_until(lambda t=target, p=progress: _reached(p) >= t, 180, proc)
            time.sleep(rng.uniform(0.0, 0.3))
        kill_group(proc, getattr(signal, sig_name))
        rc, _, err = finish(proc, 120)
        found = check_run_folder(run, allow_temporaries=sig_name == "SIGKILL")
        saved, last = found.get("state_step", 0), max(train_steps(run), default=0)
        if rc == 0:  # it finished before the signal came
            assert saved == total
        elif sig_name == "SIGINT":  # Ctrl-C: a checkpoint at the step reached, nothing lost
            line = assert_clean_error(rc, err, "interrupted at step")
            assert int(re.search(r"step (\d+)", line).group(1)) == saved == last, (line, last)
            assert "--resume" in line and not found["temporaries"]
            stops.add(saved)
        else:
            assert rc == -signal.SIGKILL, (rc, err)
            assert last - saved <= CKPT, f"lost {last - saved} steps (checkpoint every {CKPT})"
        RECORD[f"train {sig_name} kills survived"] += 1
        if rc == 0:
            break
    again = _next_args(tiny_h5, run, steps=total)
    rc, out, err = run_lewm(again, tmp_path, runner_opts=["--log-every", "1"])
    assert rc == 0, err
    _check_finished(run, out, total, CKPT, stops)


def test_train_killed_at_rename(train_rename: tuple[int, str], tiny_h5: str, tmp_path: Path):
    """SIGKILL just before / after the k-th atomic rename (trainer state, model, config per
    checkpoint, then the summary): the next `lewm train` (--resume when there is a checkpoint)
    finishes the run."""
    k, when = train_rename
    run = tmp_path / "run"
    args = _train_args(tiny_h5, run, RENAME_STEPS, RENAME_CKPT)
    opts = ["--log-every", "1", "--die-at-replace", str(k), "--die-when", when]
    rc, _, err = run_lewm(args, tmp_path, runner_opts=opts)
    assert rc == -signal.SIGKILL, err
    found = check_run_folder(run, allow_temporaries=True)
    assert len(found["temporaries"]) == (1 if when == "before" else 0)
    last = max(train_steps(run), default=0)
    assert last - found.get("state_step", 0) <= RENAME_CKPT

    again = _next_args(tiny_h5, run, steps=RENAME_STEPS, every=RENAME_CKPT)
    rc, out, err = run_lewm(again, tmp_path, runner_opts=["--log-every", "1"], name="next")
    assert rc == 0, err
    _check_finished(run, out, RENAME_STEPS, RENAME_CKPT, set())
    RECORD["train rename kills survived"] += 1


def test_copied_run_resumes_in_its_own_folder(tiny_run: dict, tmp_path: Path, capsys) -> None:
    """`--resume` writes into --out, not into the folder the run was first trained in."""
    original = Path(tiny_run["run"])
    before = file_hashes(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    argv = ["train", "--out", str(copy), "--resume", "--max-steps", "22", "--quiet", "--json"]
    rc = cli.main(argv)
    out = capsys.readouterr().out
    assert rc == 0
    assert json.loads(out.splitlines()[-1])["run"] == str(copy)
    assert state_step(copy) == 22
    assert file_hashes(original) == before, "the original run folder was written to"


# --------------------------------------------------------------------------- temporaries
def test_stale_temporaries_only_of_dead_writers(tmp_path: Path) -> None:
    """remove_stale_temporaries deletes what killed writers left, never a live writer's file."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], text=True, capture_output=True
    ).stdout.strip()
    names = {
        f".model.safetensors{TMP_MARK}{dead}-abc.safetensors": True,  # killed writer
        ".config.json.tmp-zz9.json": True,  # older name without a pid
        f".metrics.jsonl{TMP_MARK}{os.getpid()}-abc.jsonl": False,  # this process: writing
        f".x.h5{TMP_MARK}1-abc.h5": False,  # pid 1 lives
    }
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / "model.safetensors").write_text("kept")
    removed = {p.name for p in remove_stale_temporaries(tmp_path)}
    assert removed == {n for n, stale in names.items() if stale}
    assert (tmp_path / "model.safetensors").exists()
    # an atomic write in progress survives a clean-up of its folder, and ends up renamed
    with atomic_path(tmp_path / "live.json") as tmp:
        tmp.write_text("{}")
        assert remove_stale_temporaries(tmp_path) == []
    assert (tmp_path / "live.json").read_text() == "{}"
    assert oct((tmp_path / "live.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
