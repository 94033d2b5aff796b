"""The `lewm` command line: JSON summaries, and bad input as one clear line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LEWM = [sys.executable, "-m", "lewm_core"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl"}
    return subprocess.run(
        [*LEWM, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def assert_clean_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_model_info_paper_counts():
    proc = run("model-info", "--preset", "paper", "--action-dim", "2", "--json")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["params_total"] == 18_034_478
    assert info["params_encoder"] == 5_501_376 and info["params_predictor"] == 10_791_360
    assert info["params_projector"] == 792_768 and info["params_action_encoder"] == 156_206


def test_collect_json_and_overwrite_protection(tmp_path):
    out = tmp_path / "d.h5"
    proc = run(
        "collect",
        "--env",
        "tworoom",
        "--episodes",
        "3",
        "--steps",
        "12",
        "--out",
        str(out),
        "--quiet",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["steps"] == 36
    before = out.read_bytes()
    assert_clean_error(run("collect", "--env", "tworoom", "--out", str(out)), "--overwrite")
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["collect", "--env", "nope", "--out", "x.h5"], "unknown env 'nope'"),
        (["collect", "--env", "tworoom", "--resolution", "0", "--out", "x.h5"], "resolution 0"),
        (["collect", "--env", "tworoom", "--resolution", "999", "--out", "x.h5"], "resolution 999"),
        (["collect", "--env", "tworoom", "--episodes", "-4", "--out", "x.h5"], "--episodes"),
        (["collect", "--env", "tworoom", "--out", "/proc/nope/x.h5"], "/proc/nope"),
        (["train", "--data", "missing.h5", "--out", "r"], "does not exist"),
        (["train", "--data", "x.h5", "--out", "r", "--lr", "nan"], "not a finite number"),
        (["eval", "--checkpoint", "no-such-run"], "not a run folder"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    assert_clean_error(run(*args, cwd=tmp_path), needle)
    assert not (tmp_path / "x.h5").exists()


def test_train_refuses_foreign_hdf5(tmp_path):
    import h5py

    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["pixels"] = [1, 2, 3]
    assert_clean_error(
        run("train", "--data", str(tmp_path / "foreign.h5"), "--out", str(tmp_path / "r")),
        "not a LeWM dataset",
    )
    assert not (tmp_path / "r").exists()


def test_train_schedule_and_preload_flags_reach_the_run(tworoom_h5, tmp_path):
    """--warmup-frac and --preload-max-gb are saved in the run's config; out of range: one line."""
    out = tmp_path / "r"
    common = ("train", "--data", tworoom_h5, "--out", str(out), "--max-steps", "2")
    bad = run(*common, "--warmup-frac", "1.5", "--quiet")
    assert_clean_error(bad, "--warmup-frac must be 0 to 1 (got 1.5)")
    assert_clean_error(
        run(*common, "--preload-max-gb", "-1", "--quiet"), "--preload-max-gb must be at least 0"
    )
    assert not (out / "config.json").exists()
    flags = ("--warmup-frac", "0.5", "--preload-max-gb", "0", "--batch-size", "8", "--quiet")
    proc = run(*common, *flags, "--json")
    assert proc.returncode == 0, proc.stderr
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["warmup_frac"] == 0.5 and train["preload_max_gb"] == 0.0


def test_arch_changes_one_size_of_the_preset_and_the_run_records_it(tworoom_h5, tmp_path):
    """--arch KEY=VALUE builds the preset with that field changed (model-info counts it, a run
    saves it in config.json and loads back with it); bad settings: one line, nothing written."""
    big = ("--arch", "pred_depth=6", "--arch", "pred_heads=16", "--arch", "pred_head_dim=64")
    info = json.loads(run("model-info", "--preset", "lab", *big, "--arch", "pred_mlp=2048",
                          "--json").stdout.splitlines()[-1])  # fmt: skip
    assert info["params_predictor"] == 10_791_360  # the paper's predictor on the lab encoder
    out = tmp_path / "r"
    common = ("train", "--data", tworoom_h5, "--out", str(out), "--max-steps", "2", "--quiet")
    for arch, needle in [
        ("pred_depth", "is not KEY=VALUE"),
        ("pred_depth=two", "pred_depth takes int"),
        ("image_size=32", "set by the dataset"),
        ("colour=red", "unknown model field 'colour'"),
        ("pred_depth=0", "pred_depth must be a positive int"),
    ]:
        assert_clean_error(run(*common, "--arch", arch), needle)
    assert not out.exists() or not (out / "config.json").exists()
    proc = run(*common, "--batch-size", "8", "--arch", "pred_depth=2", "--arch", "dropout=0.2")
    assert proc.returncode == 0, proc.stderr
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["pred_depth"] == 2 and model["dropout"] == 0.2 and model["encoder"] == "cnn"
    assert_clean_error(run("train", "--out", str(out), "--resume", *big), "cannot change a run")
