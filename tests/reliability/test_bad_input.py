"""Bad input, fuzzed with hypothesis (derandomized: the same examples on every run).

- Truncated, bit-flipped, random, empty, foreign and subtly mangled HDF5 files into every
  command that reads a dataset (train, eval --data, probe, tsne, decoder-train, straightness).
- Random bytes, wrong shapes, wrong dtypes, missing and extra keys, NaN, another preset's
  weights and absurd configs into every checkpoint loader (`load_model`, `load_decoder`,
  `train --resume`), and through the commands that use them.
- Absurd command-line values (negative sizes, NaN learning rate, resolution 0, huge batch...).

Always: exit status 2 with exactly one line `error: ...`, no traceback, no hang (pytest-timeout),
and nothing that existed before is modified (SHA-256 of the inputs before and after). A damaged
file that still happens to be a usable dataset or model may also succeed (exit status 0).
The commands run in-process (`lewm_core.cli.main.main`); `test_bad_input_in_subprocess` runs a few
as real processes. Short: a handful of examples per target; full (`--full`): many more.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_tools import RECORD, ROOT, assert_clean_error, file_hashes, lewm_env
from safetensors.torch import load_file, save_file

from lewm_core.cli import main as cli
from lewm_core.data.collect import FORMAT
from lewm_core.data.dataset import REQUIRED_KEYS
from lewm_core.errors import UserError
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.model import LeWM

pytestmark = pytest.mark.timeout(900)

SHORT, FULL = 4, 40  # examples per target


def examples(full: bool, short: int = SHORT, many: int = FULL) -> settings:
    """Hypothesis settings: `short` or (full suite) `many` examples; LEWM_FUZZ_SCALE=k multiplies
    the full counts (a deeper search, e.g. before a release)."""
    scale = float(os.environ.get("LEWM_FUZZ_SCALE", "1"))
    return settings(
        max_examples=int(many * scale) if full else short,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """`lewm <argv>` in this process: (exit status, stdout, stderr). Any exception other than
    the CLI's own (a traceback for the user) propagates and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except SystemExit as e:  # argparse's one-line errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def check_outcome(rc: int, err: str, before: dict, after: dict, must_fail: bool) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert rc in (0, 2), (rc, err[-2000:])
    if rc == 2 or must_fail:
        assert_clean_error(rc, err)
        assert after == before, "a failed command modified an existing file"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def inputs(tiny_run: dict, tmp_path_factory) -> dict:
    """The tiny dataset's bytes, and a slim copy of the tiny model (config + weights, plus a
    2-step decoder) that the commands may read."""
    base = tmp_path_factory.mktemp("bad-input")
    model = base / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_run["run"]) / name, model / name)
    decoder = base / "with-decoder"
    shutil.copytree(model, decoder)
    argv = ["decoder-train", "--checkpoint", str(decoder), "--data", str(tiny_run["h5"])]
    rc, _, err = run_main([*argv, "--steps", "2", "--frames", "32", "--val-frames", "8", "--quiet"])
    assert rc == 0, err
    vit = LeWM(ModelConfig.preset("lab-vit", action_dim=2)).state_dict()
    return {
        "h5": Path(tiny_run["h5"]),
        "h5_bytes": Path(tiny_run["h5"]).read_bytes(),
        "run": Path(tiny_run["run"]),
        "model": model,
        "decoder": decoder,
        "vit_state": vit,
        "base": base,
    }


# --------------------------------------------------------------------------- datasets
MUTATIONS = (
    "drop_key",
    "pixels_float",
    "pixels_3d",
    "pixels_32px",
    "pixels_4ch",
    "action_width_0",
    "action_width_7",
    "action_int",
    "action_nan",
    "state_width_0",
    "state_nan",
    "sim_state_width_1",
    "ep_offset_negative",
    "ep_offset_huge",
    "ep_len_zero",
    "ep_len_huge",
    "ep_len_negative",
    "ep_arrays_empty",
    "ep_arrays_mismatched",
    "rows_zero",
    "attr_drop",
    "attr_garbage",
)
ATTRS = ("format", "env", "resolution", "state_quantities", "angle_quantities", "action_dim")


def _mangle(path: Path, what: str, data: st.DataObject) -> None:
    """Apply mutation `what` to the (valid) dataset at `path`."""
    with h5py.File(path, "r+") as f:
        n = f["pixels"].shape[0]

        def replace(key: str, value) -> None:
            del f[key]
            f[key] = value

        if what == "drop_key":
            del f[data.draw(st.sampled_from(REQUIRED_KEYS), label="key")]
        elif what == "pixels_float":
            replace("pixels", f["pixels"][:].astype(np.float32))
        elif what == "pixels_3d":
            replace("pixels", f["pixels"][:, :, :, 0])
        elif what == "pixels_32px":
            replace("pixels", f["pixels"][:, ::2, ::2])
        elif what == "pixels_4ch":
            replace("pixels", np.concatenate([f["pixels"][:], f["pixels"][..., :1]], -1))
        elif what == "action_width_0":
            replace("action", np.zeros((n, 0), np.float32))
        elif what == "action_width_7":
            replace("action", np.zeros((n, 7), np.float32))
        elif what == "action_int":
            replace("action", (f["action"][:] * 100).astype(np.int64))
        elif what == "action_nan":
            a = f["action"][:]
            a[data.draw(st.integers(0, n - 1), label="row")] = np.nan
            replace("action", a)
        elif what == "state_width_0":
            replace("state", np.zeros((n, 0), np.float32))
        elif what == "state_nan":
            replace("state", np.full(f["state"].shape, np.nan, np.float32))
        elif what == "sim_state_width_1":
            replace("sim_state", np.zeros((n, 1)))
        elif what == "ep_offset_negative":
            replace("ep_offset", f["ep_offset"][:] - 10**6)
        elif what == "ep_offset_huge":
            replace("ep_offset", f["ep_offset"][:] + 2**40)
        elif what == "ep_len_zero":
            replace("ep_len", np.zeros_like(f["ep_len"][:]))
        elif what == "ep_len_huge":
            replace("ep_len", f["ep_len"][:] + 10**9)
        elif what == "ep_len_negative":
            replace("ep_len", -f["ep_len"][:])
        elif what == "ep_arrays_empty":
            replace("ep_offset", np.zeros(0, np.int64))
            replace("ep_len", np.zeros(0, np.int64))
        elif what == "ep_arrays_mismatched":
            replace("ep_len", f["ep_len"][:-1])
        elif what == "rows_zero":
            for key in ("pixels", "action", "state", "sim_state"):
                replace(key, f[key][:0])
        elif what == "attr_drop":
            key = data.draw(st.sampled_from(ATTRS), label="attr")
            if key in f.attrs:
                del f.attrs[key]
        elif what == "attr_garbage":
            key = data.draw(st.sampled_from(ATTRS), label="attr")
            value = data.draw(
                st.one_of(
                    st.text(max_size=20),
                    st.integers(-(2**40), 2**40),
                    st.just("{not json"),
                    st.just('{"agent_pos": [0, 999]}'),
                    st.just("[]"),
                ),
                label="value",
            )
            f.attrs[key] = value


def _foreign(path: Path, data: st.DataObject) -> None:
    """An HDF5 file with random datasets and attributes (maybe claiming to be a LeWM dataset)."""
    keys = data.draw(
        st.lists(st.sampled_from((*REQUIRED_KEYS, "obs", "images")), unique=True, max_size=8),
        label="keys",
    )
    with h5py.File(path, "w") as f:
        for key in keys:
            shape = tuple(data.draw(st.lists(st.integers(0, 6), max_size=4), label=f"{key} shape"))
            dtype = data.draw(st.sampled_from(["u1", "f4", "f8", "i8", "S4"]), label="dtype")
            f.create_dataset(key, shape=shape, dtype=dtype)
        if data.draw(st.booleans(), label="claims the format"):
            f.attrs["format"] = FORMAT
            f.attrs["env"] = data.draw(st.sampled_from(["tworoom", "nope", ""]), label="env")


DATASET_KINDS = ("truncated", "bitflip", "random", "empty", "folder", "foreign", "mangled")


def bad_dataset(data: st.DataObject, valid: bytes, folder: Path) -> tuple[Path, bool]:
    """A damaged or foreign dataset file in `folder`; (its path, whether it must be refused)."""
    kind = data.draw(st.sampled_from(DATASET_KINDS), label="kind")
    path = folder / "bad.h5"
    if kind == "truncated":
        path.write_bytes(valid[: data.draw(st.integers(0, len(valid) - 1), label="size")])
        return path, True
    if kind == "bitflip":
        buf = bytearray(valid)
        flips = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255))
        for offset, x in data.draw(st.lists(flips, min_size=1, max_size=32), label="flips"):
            buf[offset] ^= x
        path.write_bytes(bytes(buf))
        return path, False
    if kind == "random":
        raw = data.draw(st.binary(min_size=1, max_size=4096), label="bytes")
        path.write_bytes(raw)
        return path, True
    if kind == "empty":
        path.write_bytes(b"")
        return path, True
    if kind == "folder":
        path.mkdir()
        return path, True
    if kind == "foreign":
        _foreign(path, data)
        return path, False
    path.write_bytes(valid)
    _mangle(path, data.draw(st.sampled_from(MUTATIONS), label="mutation"), data)
    return path, False


def _dataset_argv(command: str, data: Path, model: Path, folder: Path) -> list[str]:
    ckpt = ["--checkpoint", str(model), "--data", str(data)]
    small = {
        "train": [
            "train",
            "--data",
            str(data),
            "--out",
            str(folder / "run"),
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--checkpoint-every",
            "2",
            "--threads",
            "1",
        ],
        "eval": [
            "eval",
            *ckpt,
            "--episodes",
            "1",
            "--samples",
            "8",
            "--elites",
            "2",
            "--iterations",
            "1",
            "--budget",
            "5",
            "--goal-offset",
            "5",
            "--video-dir",
            str(folder / "videos"),
        ],
        "probe": ["probe", *ckpt, "--train-frames", "20", "--test-frames", "5", "--no-mlp"],
        "tsne": ["tsne", *ckpt, "--points", "20", "--perplexity", "5"],
        "decoder-train": [
            "decoder-train",
            *ckpt,
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--frames",
            "16",
            "--val-frames",
            "4",
        ],
        "straightness": ["straightness", *ckpt, "--episodes", "2", "--no-untrained"],
        "collect-planned": [
            "collect-planned",
            *ckpt,
            "--episodes",
            "1",
            "--budget",
            "5",
            "--goal-offset",
            "5",
            "--out",
            str(folder / "planned.h5"),
        ],
    }
    return [*small[command], "--quiet"]


DATASET_COMMANDS = ("train", "eval", "probe", "tsne", "decoder-train", "straightness")
DATASET_COMMANDS += ("collect-planned",)


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_bad_datasets(command: str, inputs: dict, full: bool, tmp_path: Path) -> None:
    model = inputs["model"]

    @examples(full)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        path, must_fail = bad_dataset(data, inputs["h5_bytes"], folder)
        watched = [model] + ([path] if path.is_file() else [])
        before = file_hashes(*watched)
        rc, _, err = run_main(_dataset_argv(command, path, model, folder))
        check_outcome(rc, err, before, file_hashes(*watched), must_fail)
        if rc == 2 and command == "train":
            assert not (folder / "run" / "trainer_state.safetensors").exists()
        RECORD["datasets fuzzed"] += 1
        RECORD["datasets refused (exit 2)"] += rc == 2
        shutil.rmtree(folder)

    fuzz()


# --------------------------------------------------------------------------- checkpoints
def _mutate_tensors(
    state: dict[str, torch.Tensor], data: st.DataObject, other: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """One damage to a state dict: drop, add, reshape, retype, NaN, another preset's weights."""
    what = data.draw(
        st.sampled_from(
            ["drop", "extra", "reshape", "dtype", "nan", "other_preset", "empty", "scalar"]
        ),
        label="tensor damage",
    )
    state = dict(state)
    key = data.draw(st.sampled_from(sorted(state)), label="tensor")
    if what == "drop":
        del state[key]
    elif what == "extra":
        state["extra.weight"] = torch.zeros(3)
    elif what == "reshape":
        state[key] = torch.zeros(state[key].numel() + 1)
    elif what == "dtype":
        dtype = data.draw(
            st.sampled_from([torch.float16, torch.float64, torch.int32, torch.uint8, torch.bool]),
            label="dtype",
        )
        state[key] = state[key].to(dtype)
    elif what == "nan":
        t = state[key].clone().float().reshape(-1)
        if t.numel():
            t[0] = float("nan")
        state[key] = t.reshape(state[key].shape)
    elif what == "other_preset":
        state = dict(other)
    elif what == "empty":
        state = {"nothing": torch.zeros(1)}
    elif what == "scalar":
        state[key] = torch.tensor(1.0)
    return state


def _damage_file(path: Path, data: st.DataObject, other: dict[str, torch.Tensor]) -> None:
    """Damage safetensors file `path`: its bytes, or one tensor."""
    how = data.draw(st.sampled_from(["bytes", "truncate", "empty", "tensors"]), label="how")
    raw = path.read_bytes()
    if how == "bytes":
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=512), label="bytes"))
    elif how == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="size")])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
        save_file(_mutate_tensors(load_file(str(path)), data, other), str(path), metadata=meta)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _damage_config(path: Path, data: st.DataObject) -> None:
    """Damage a run's config.json: garbage, missing keys, absurd model sizes, bad statistics."""
    config = json.loads(path.read_text())
    how = data.draw(
        st.sampled_from(["garbage", "json", "drop", "model_field", "action_stats"]), label="how"
    )
    if how == "garbage":
        path.write_bytes(data.draw(st.binary(max_size=256), label="bytes"))
        return
    if how == "json":
        config = data.draw(JSON, label="config")
    elif how == "drop":
        config.pop(data.draw(st.sampled_from(["model", "action_stats", "data"]), label="key"))
    elif how == "model_field":
        field = data.draw(st.sampled_from(sorted(config["model"])), label="field")
        config["model"][field] = data.draw(
            st.one_of(st.integers(-3, 3), st.sampled_from([10**4, 10**6, 10**9]), JSON),
            label="value",
        )
    else:
        stats = config["action_stats"]
        which = data.draw(st.sampled_from(["mean", "std"]), label="stat")
        stats[which] = data.draw(
            st.sampled_from([[], [0.0], [0.0, 0.0, 0.0], [float("nan")] * 2, [0.0, -1.0], "x"]),
            label="value",
        )
    path.write_text(json.dumps(config))


def test_bad_model_checkpoints(inputs: dict, full: bool, tmp_path: Path) -> None:
    """config.json + model.safetensors into `load_model` (every command and lab page that loads
    a model) and through `lewm straightness` / `lewm probe` in-process."""
    from lewm_core.world_model.checkpoint import load_model

    @examples(full, short=8, many=80)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
        shutil.copytree(inputs["model"], folder)
        if data.draw(st.booleans(), label="damage the weights"):
            _damage_file(folder / "model.safetensors", data, inputs["vit_state"])
        else:
            _damage_config(folder / "config.json", data)
        before = file_hashes(folder)
        try:
            loaded = load_model(folder)
        except UserError as e:
            assert "\n" not in str(e) and str(e)
            loaded = None
        if loaded is not None:  # usable after all: it must be consistent
            assert len(loaded.action_stats.mean) == loaded.config.action_dim
        command = data.draw(st.sampled_from(["straightness", "probe"]), label="command")
        argv = [command, "--checkpoint", str(folder), "--data", str(inputs["h5"]), "--quiet"]
        if command == "straightness":
            argv += ["--episodes", "2", "--no-untrained"]
        else:
            argv += ["--train-frames", "20", "--test-frames", "5", "--no-mlp"]
        rc, _, err = run_main(argv)
        check_outcome(rc, err, before, file_hashes(folder), must_fail=loaded is None)
        RECORD["model checkpoints fuzzed"] += 1
        RECORD["model checkpoints refused (exit 2)"] += rc == 2
        shutil.rmtree(folder.parent)

    fuzz()


def test_bad_decoders(inputs: dict, full: bool, tmp_path: Path) -> None:
    """decoder.json + decoder.safetensors into `load_decoder` (the Decode page)."""
    from decoder.train import load_decoder

    @examples(full, short=4, many=40)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
        shutil.copytree(inputs["decoder"], folder)
        if data.draw(st.booleans(), label="damage the weights"):
            _damage_file(folder / "decoder.safetensors", data, inputs["vit_state"])
        else:
            meta = json.loads((folder / "decoder.json").read_text())
            field = data.draw(st.sampled_from(sorted(meta["config"])), label="field")
            meta["config"][field] = data.draw(
                st.one_of(st.integers(-2, 2), st.sampled_from([10**5, 10**9]), JSON), label="v"
            )
            (folder / "decoder.json").write_text(json.dumps(meta))
        try:
            decoder = load_decoder(folder)
        except UserError as e:
            assert "\n" not in str(e) and str(e)
        else:
            assert not decoder.training
        RECORD["decoders fuzzed"] += 1
        shutil.rmtree(folder.parent)

    fuzz()


def test_bad_trainer_states(inputs: dict, full: bool, tmp_path: Path) -> None:
    """trainer_state.safetensors (tensors and metadata) into `lewm train --resume`."""
    from safetensors import safe_open

    run = inputs["run"]
    with safe_open(str(run / "trainer_state.safetensors"), "pt") as f:
        step = json.loads(f.metadata()["trainer"])["step"]

    @examples(full, short=4, many=40)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
        shutil.copytree(run, folder)
        state = folder / "trainer_state.safetensors"
        if data.draw(st.booleans(), label="damage the tensors"):
            _damage_file(state, data, {f"model.{k}": v for k, v in inputs["vit_state"].items()})
        else:
            with safe_open(str(state), "pt") as f:
                meta = json.loads(f.metadata()["trainer"])
            tensors = load_file(str(state))
            key = data.draw(st.sampled_from(["step", "config", "whole"]), label="metadata")
            if key == "whole":
                meta = data.draw(JSON, label="metadata")
            elif key == "step":
                meta["step"] = data.draw(st.one_of(st.integers(-5, 5), JSON), label="step")
            else:
                field = data.draw(st.sampled_from(sorted(meta["config"])), label="field")
                meta["config"][field] = data.draw(JSON, label="value")
            save_file(tensors, str(state), metadata={"trainer": json.dumps(meta)})
        before = file_hashes(folder)
        argv = ["train", "--out", str(folder), "--resume", "--max-steps", str(step), "--quiet"]
        rc, _, err = run_main([*argv, "--threads", "1"])
        check_outcome(rc, err, before, file_hashes(folder), must_fail=False)
        RECORD["trainer states fuzzed"] += 1
        RECORD["trainer states refused (exit 2)"] += rc == 2
        shutil.rmtree(folder.parent)

    fuzz()


# --------------------------------------------------------------------------- absurd values
ABSURD = [
    (["collect", "--env", "tworoom", "--episodes", "-3"], "--episodes"),
    (["collect", "--env", "tworoom", "--episodes", "0"], "--episodes"),
    (["collect", "--env", "tworoom", "--episodes", "99999999999"], "--episodes"),
    (["collect", "--env", "tworoom", "--steps", "1"], "--steps"),
    (["collect", "--env", "tworoom", "--steps", "10000000"], "--steps"),
    (["collect", "--env", "tworoom", "--resolution", "0"], "resolution 0"),
    (["collect", "--env", "tworoom", "--resolution", "-64"], "resolution -64"),
    (["collect", "--env", "tworoom", "--resolution", "100000"], "resolution 100000"),
    (["collect", "--env", "tworoom", "--workers", "0"], "--workers"),
    (["collect", "--env", "tworoom", "--workers", "1000000"], "--workers"),
    (["collect", "--env", "tworoom", "--seed", "-1"], "--seed"),
    (["collect", "--env", "tworoom", "--seed", "1e9"], "--seed"),
    (["collect", "--env", "nope"], "unknown env"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--lr", "-0.1"], "--lr"),
    (["train", "--lr", "5"], "--lr"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--batch-size", "-8"], "--batch-size"),
    (["train", "--batch-size", "1000000000"], "--batch-size"),
    (["train", "--batch-size", "60000"], "--batch-size"),
    (["train", "--max-steps", "0"], "--max-steps"),
    (["train", "--max-steps", "-1"], "--max-steps"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--threads", "1000000"], "--threads"),
    (["train", "--loader-workers", "-1"], "--loader-workers"),
    (["train", "--weight-decay", "-1"], "--weight-decay"),
    (["train", "--weight-decay", "nan"], "--weight-decay"),
    (["train", "--sigreg-weight", "-1"], "--sigreg-weight"),
    (["train", "--sigreg-weight", "1e12"], "--sigreg-weight"),
    (["train", "--seed", "-7"], "--seed"),
    (["train", "--preset", "huge"], "--preset"),
    (["eval", "--episodes", "0"], "--episodes"),
    (["eval", "--episodes", "-5"], "--episodes"),
    (["eval", "--samples", "0"], "--samples"),
    (["eval", "--samples", "1000000000"], "--samples"),
    (["eval", "--elites", "0"], "elites"),
    (["eval", "--elites", "301"], "elites"),
    (["eval", "--iterations", "0"], "--iterations"),
    (["eval", "--horizon", "0"], "--horizon"),
    (["eval", "--horizon", "100000"], "--horizon"),
    (["eval", "--receding-horizon", "0"], "--receding-horizon"),
    (["eval", "--receding-horizon", "6"], "--receding-horizon must be between 1 and 5"),
    (["eval", "--objective", "mean"], "--objective"),
    (["eval", "--budget", "0"], "--budget"),
    (["eval", "--budget", "-5"], "--budget"),
    (["eval", "--goal-offset", "-3"], "--goal-offset"),
    (["eval", "--videos", "-1"], "--videos"),
    (["eval", "--seed", "-1"], "--seed"),
    (["model-info", "--action-dim", "0"], "--action-dim"),
    (["model-info", "--action-dim", "-2"], "--action-dim"),
    (["model-info", "--action-dim", "1000000000"], "--action-dim"),
    (["probe", "--train-frames", "-1"], "--train-frames"),
    (["probe", "--test-frames", "0"], "--test-frames"),
    (["probe", "--alpha", "nan"], "--alpha"),
    (["probe", "--alpha", "-1"], "--alpha"),
    (["tsne", "--points", "0"], "--points"),
    (["tsne", "--points", "-5"], "--points"),
    (["tsne", "--perplexity", "0"], "--perplexity"),
    (["tsne", "--perplexity", "nan"], "--perplexity"),
    (["tsne", "--neighbors", "0"], "--neighbors"),
    (["tsne", "--neighbors", "-3"], "--neighbors"),
    (["tsne", "--color", "nope"], "nope"),
    (["tsne", "--out", "coords.txt"], "--out"),
    (["surprise", "--episodes", "1"], "--episodes"),
    (["surprise", "--episodes", "100000000"], "--episodes"),
    (["surprise", "--steps", "0"], "--steps"),
    (["surprise", "--steps", "100000000"], "--steps"),
    (["surprise", "--perturb-step", "-1"], "--perturb-step"),
    (["straightness", "--episodes", "0"], "--episodes"),
    (["decoder-train", "--steps", "0"], "--steps"),
    (["decoder-train", "--batch-size", "0"], "--batch-size"),
    (["decoder-train", "--batch-size", "1000000000"], "--batch-size"),
    (["decoder-train", "--lr", "nan"], "--lr"),
    (["decoder-train", "--frames", "-4"], "--frames"),
    (["collect-planned", "--episodes", "0"], "--episodes"),
    (["collect-planned", "--budget", "1"], "--budget"),
    (["collect-planned", "--goal-offset", "0"], "--goal-offset"),
    (["collect-planned", "--goal-kind", "nope"], "goal kind nope"),
    (["collect-planned", "--receding-horizon", "9"], "--receding-horizon"),
    (["collect-planned", "--context", "99"], "--context"),
]


def _complete(argv: list[str], inputs: dict, folder: Path) -> list[str]:
    """`argv` with the arguments its command requires (a fresh --out, the tiny model/data)."""
    command, h5, model = argv[0], str(inputs["h5"]), str(inputs["model"])
    if command == "collect":
        return [*argv, "--out", str(folder / "x.h5"), "--quiet"]
    if command == "train":
        return [*argv, "--data", h5, "--out", str(folder / "run"), "--quiet"]
    if command == "model-info":
        return argv
    if command == "collect-planned":
        return [
            *argv,
            "--checkpoint",
            model,
            "--data",
            h5,
            "--out",
            str(folder / "p.h5"),
            "--quiet",
        ]
    extra = ["--data", h5] if command in ("probe", "tsne", "straightness", "decoder-train") else []
    return [*argv, "--checkpoint", model, *extra, "--quiet"]


@pytest.mark.parametrize("argv, needle", ABSURD, ids=[" ".join(a) for a, _ in ABSURD])
def test_absurd_values(argv: list[str], needle: str, inputs: dict, tmp_path: Path) -> None:
    before = file_hashes(inputs["model"], inputs["h5"])
    rc, _, err = run_main(_complete(argv, inputs, tmp_path))
    assert_clean_error(rc, err, needle)
    assert file_hashes(inputs["model"], inputs["h5"]) == before
    assert not list(tmp_path.iterdir()), "a refused command wrote something"
    RECORD["absurd values refused"] += 1


def test_absurd_integers_fuzzed(inputs: dict, full: bool, tmp_path: Path) -> None:
    """Any integer for the size options of collect and train: out of range -> one-line error;
    in range is not tried here (it would run)."""
    options = {
        ("collect", "--episodes"): (1, 1_000_000),
        ("collect", "--steps"): (2, 10_000),
        ("collect", "--resolution"): (32, 224),
        ("collect", "--workers"): (1, 64),
        ("train", "--batch-size"): (1, 65536),
        ("train", "--max-steps"): (1, None),
        ("train", "--epochs"): (1, None),
        ("train", "--checkpoint-every"): (1, None),
        ("train", "--threads"): (1, 1024),
    }
    names = sorted(options)

    @examples(full, short=12, many=120)
    @given(which=st.sampled_from(names), value=st.integers(-(2**70), 2**70))
    def fuzz(which: tuple[str, str], value: int) -> None:
        lo, hi = options[which]
        if lo <= value and (hi is None or value <= hi):
            value = lo - 1 - abs(value)
        command, flag = which
        base = [command, "--env", "tworoom"] if command == "collect" else [command]
        argv = _complete([*base, flag, str(value)], inputs, tmp_path)
        rc, _, err = run_main(argv)
        assert_clean_error(rc, err)
        assert not list(tmp_path.iterdir())
        RECORD["absurd values refused"] += 1

    fuzz()


def test_bad_input_in_subprocess(inputs: dict, tmp_path: Path) -> None:
    """A few of the above as real processes: the same single line on stderr, status 2."""
    bad = tmp_path / "bad.h5"
    bad.write_bytes(inputs["h5_bytes"][:5000])
    runs = [
        (["train", "--data", str(bad), "--out", str(tmp_path / "r")], "not a readable HDF5"),
        (["eval", "--checkpoint", str(bad)], "not a run folder"),
        (["collect", "--env", "tworoom", "--resolution", "0", "--out", "x.h5"], "resolution 0"),
    ]
    for argv, needle in runs:
        proc = subprocess.run(
            [sys.executable, "-m", "lewm_core", *argv],
            cwd=tmp_path,
            env=lewm_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_clean_error(proc.returncode, proc.stderr, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]
    assert ROOT.exists()


# --------------------------------------------------------------------------- the lab
LAB_PAGES = (
    "views/data.py",
    "views/latent.py",
    "views/train.py",
    "views/decode.py",
    "views/plan.py",
)


def test_lab_pages_with_damaged_files(
    inputs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages that list and read datasets and models, with damaged ones among the good:
    a message where needed, never an exception box."""
    from lewm_testing import lab_dirs, open_page

    dirs = lab_dirs(tmp_path, monkeypatch)
    data, runs = dirs["data_dir"], dirs["runs_dir"]
    (data / "truncated.h5").write_bytes(inputs["h5_bytes"][: len(inputs["h5_bytes"]) // 2])
    (data / "random.h5").write_bytes(bytes(range(256)) * 8)
    (data / "empty.h5").write_bytes(b"")
    shutil.copy(inputs["h5"], data / "garbled.h5")
    with h5py.File(data / "garbled.h5", "r+") as f:
        f.attrs["state_quantities"] = "{not json"
    shutil.copy(inputs["h5"], data / "tiny.h5")
    shutil.copytree(inputs["decoder"], runs / "good")
    for name in ("truncated", "garbled"):  # models whose dataset is damaged (listed first)
        shutil.copytree(inputs["decoder"], runs / f"a-{name}-data")
        config = json.loads((runs / f"a-{name}-data" / "config.json").read_text())
        config["data"]["path"] = str(data / f"{name}.h5")
        (runs / f"a-{name}-data" / "config.json").write_text(json.dumps(config))
    shutil.copytree(inputs["model"], runs / "bad-weights")
    (runs / "bad-weights" / "model.safetensors").write_bytes(b"\x00" * 100)
    shutil.copytree(inputs["model"], runs / "bad-config")
    (runs / "bad-config" / "config.json").write_text('{"model": {"pred_depth": 1000000}}')
    shutil.copytree(inputs["model"], runs / "foreign-weights")
    save_file(inputs["vit_state"], str(runs / "foreign-weights" / "model.safetensors"))
    before = file_hashes(data, runs)
    for page in LAB_PAGES:
        at = open_page(page)  # asserts no exception
        assert not at.exception, (page, at.exception)
        RECORD["lab pages with damaged files"] += 1
    assert file_hashes(data, runs) == before
