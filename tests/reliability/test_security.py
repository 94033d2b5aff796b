"""Security: no unpickling anywhere, no upload without a limit, no name that leaves its folder.

- The source (lewm_core/, decoder/, app/, bench/, research/, recipes/) is walked with `ast`:
  `pickle.load(s)` (and its relatives: dill, joblib, shelve, marshal, pandas.read_pickle,
  `yaml.load` without a safe loader), `torch.load` without `weights_only=True` and
  `np.load(..., allow_pickle=True)` fail the test, whatever the import aliases.
- Uploads: the lab has no upload widget (no `st.file_uploader`, no Gradio File/Upload); the test
  fails if one appears, so that adding one comes with a size limit and validation (and then a
  `server.maxUploadSize` in .streamlit/config.toml, checked here when that file exists).
- Run and dataset names typed in the lab (`models.check_name` / `run_path` / `dataset_path`):
  `../`, absolute paths, backslashes, NUL, over-long names and symlinks out are refused; fuzzed.
- The CLI's --out: never clobbers what exists without being asked, NUL and over-long names are
  one-line errors.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_tools import RECORD, ROOT, assert_clean_error, file_hashes

from lewm_core.cli import main as cli
from lewm_core.errors import UserError

SOURCE_DIRS = ("lewm_core", "decoder", "app", "bench", "research", "recipes")

# callee (fully qualified) -> what must hold for the call to be safe (None: never safe)
UNSAFE_ALWAYS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cPickle.load",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "shelve.open",
    "marshal.load",
    "marshal.loads",
    "pandas.read_pickle",
    "numpy.lib.format.read_array",  # allow_pickle=True by default
}
UPLOAD_WIDGETS = {
    "streamlit.file_uploader",
    "streamlit.camera_input",
    "gradio.File",
    "gradio.UploadButton",
    "gradio.Files",
}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> qualified name, from the module's imports (`import numpy as np`,
    `from pickle import loads as l`)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualified(func: ast.expr, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    head = aliases.get(func.id, func.id)
    return ".".join([head, *reversed(parts)])


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_calls(source: str, filename: str = "<string>") -> list[str]:
    """The unsafe deserialisation and upload calls in `source`, as 'file:line: callee (why)'."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, aliases)
        if name is None:
            continue
        name = name.replace("np.", "numpy.", 1) if name.startswith("np.") else name
        name = name.replace("st.", "streamlit.", 1) if name.startswith("st.") else name
        name = name.replace("gr.", "gradio.", 1) if name.startswith("gr.") else name
        why = None
        if name in UNSAFE_ALWAYS:
            why = "unpickles"
        elif name == "torch.load" and not _is_const(_kw(node, "weights_only"), True):
            why = "torch.load without weights_only=True"
        elif name == "numpy.load" and not _is_const(_kw(node, "allow_pickle"), False):
            if _kw(node, "allow_pickle") is not None:
                why = "numpy.load with allow_pickle"
        elif name == "yaml.load":
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if not (loader is not None and "Safe" in ast.unparse(loader)):
                why = "yaml.load without a safe loader"
        elif name in UPLOAD_WIDGETS or name.endswith(".file_uploader"):
            why = "an upload widget"
        if why:
            found.append(f"{filename}:{node.lineno}: {name} ({why})")
    return found


def source_files() -> list[Path]:
    files = []
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_the_checker_catches_unsafe_calls() -> None:
    bad = """
import pickle, torch, yaml
import numpy as np
import pickle as pk
from pickle import loads as l
from torch import load
import streamlit as st
pickle.load(f); pk.loads(b); l(b)
torch.load(p); torch.load(p, weights_only=False); load(p)
np.load(p, allow_pickle=True)
yaml.load(s)
st.file_uploader("model")
"""
    found = unsafe_calls(bad)
    assert len(found) == 9, found
    good = """
import torch, yaml
import numpy as np
torch.load(p, weights_only=True); np.load(p); np.load(p, allow_pickle=False)
yaml.load(s, Loader=yaml.SafeLoader); yaml.safe_load(s)
"""
    assert unsafe_calls(good) == []


def test_no_unpickling_in_the_source() -> None:
    files = source_files()
    assert len(files) > 30, "the source folders moved?"
    found = []
    for path in files:
        found += unsafe_calls(path.read_text(), str(path.relative_to(ROOT)))
    RECORD["source files scanned"] += len(files)
    assert not [f for f in found if "upload" not in f], found


def test_no_upload_without_a_limit() -> None:
    """No upload widget in the lab or the Gradio demo; were one added, a size limit must be
    configured in .streamlit/config.toml (Streamlit's default is 200 MB) -- and validation."""
    uploads = []
    for path in source_files():
        uploads += [f for f in unsafe_calls(path.read_text(), str(path)) if "upload" in f]
    config = ROOT / ".streamlit" / "config.toml"
    if uploads:
        assert config.exists(), f"uploads {uploads} but no .streamlit/config.toml size limit"
    if config.exists():
        import tomllib

        server = tomllib.loads(config.read_text()).get("server", {})
        if uploads:
            assert 0 < server.get("maxUploadSize", 200) <= 50, "server.maxUploadSize (MB)"
    assert not uploads, f"upload widgets need a size limit and validation first: {uploads}"


# --------------------------------------------------------------------------- names
@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """app/models.py (the names the pages use) with runs/ and data/ in tmp_path."""
    for sub in ("runs", "data"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv("LEWM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LEWM_DATA_DIR", str(tmp_path / "data"))
    from app import models as app_models

    return app_models


ESCAPES = [
    "..",
    "../x",
    "../../etc/passwd",
    "a/../../b",
    "/etc/passwd",
    "/tmp",
    "a/b",
    "a\\..\\b",
    "..\\x",
    "x\x00y",
    "\x00",
    "",
    "   ",
    ".",
    ".hidden",
    "-rf",
    "~",
    "~root",
    "a" * 65,
    "a" * 10_000,
    "a..b",
    "x\ny",
    "ｘ",  # a full-width letter
    "．．",  # full-width dots
    "%2e%2e",
    "C:\\Windows",
]


@pytest.mark.parametrize("name", ESCAPES, ids=[repr(n)[:30] for n in ESCAPES])
def test_names_cannot_escape(models, name: str, tmp_path: Path) -> None:
    for make in (models.run_path, models.dataset_path):
        with pytest.raises(UserError) as e:
            make(name)
        assert len(str(e.value)) < 400
        if name.isprintable():  # (a name with a newline is echoed as typed: shown in a box)
            assert "\n" not in str(e.value)
    RECORD["hostile names refused"] += 1


def test_good_names_stay_inside(models, tmp_path: Path) -> None:
    runs, data = (tmp_path / "runs").resolve(), (tmp_path / "data").resolve()
    assert models.run_path("tworoom-lab_1.2") == runs / "tworoom-lab_1.2"
    assert models.dataset_path("tworoom") == data / "tworoom.h5"
    assert models.dataset_path("tworoom.h5") == data / "tworoom.h5"
    assert models.run_path("  padded  ") == runs / "padded"


def test_symlink_out_of_the_folder_is_refused(models, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs" / "link").symlink_to(outside)
    with pytest.raises(UserError, match="leave the folder"):
        models.run_path("link")


def test_fuzzed_names_stay_inside(models, tmp_path: Path, full: bool) -> None:
    runs, data = (tmp_path / "runs").resolve(), (tmp_path / "data").resolve()
    alphabet = st.sampled_from(list("abZ09._-/\\~ \x00\n:%") + ["..", "．", "é"])

    @settings(
        max_examples=400 if full else 60,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(name=st.one_of(st.text(max_size=80), st.lists(alphabet, max_size=70).map("".join)))
    def fuzz(name: str) -> None:
        for make, folder in ((models.run_path, runs), (models.dataset_path, data)):
            try:
                path = make(name)
            except UserError:
                continue
            assert path.parent == folder, (name, path)
            assert path.name not in (".", "..") and "/" not in path.name
            assert "\x00" not in path.name and "\\" not in path.name
            assert len(path.name) <= 67  # 64 characters and ".h5"
        RECORD["names fuzzed"] += 1

    fuzz()


# --------------------------------------------------------------------------- the CLI's --out
def _main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, err.getvalue()


def test_cli_out_never_clobbers(tiny_run: dict, tmp_path: Path) -> None:
    h5, run = Path(tiny_run["h5"]), Path(tiny_run["run"])
    existing = tmp_path / "existing.h5"
    existing.write_bytes(b"precious")
    folder = tmp_path / "folder"
    folder.mkdir()
    before = file_hashes(existing, run, h5)
    cases = [
        (["collect", "--env", "tworoom", "--out", str(existing)], "--overwrite"),
        (["collect", "--env", "tworoom", "--out", str(folder)], "is a folder"),
        (["collect", "--env", "tworoom", "--out", str(existing / "x.h5")], "not a folder"),
        (["collect", "--env", "tworoom", "--out", "x\x00y.h5"], "NUL"),
        (["collect", "--env", "tworoom", "--out", "a" * 300 + ".h5"], "too long"),
        (["collect", "--env", "tworoom", "--out", "/proc/nope/x.h5"], "/proc/nope"),
        (["train", "--data", str(h5), "--out", str(run)], "--resume"),
        (["train", "--data", str(h5), "--out", str(existing)], "is a file"),
        (["train", "--data", str(h5), "--out", "r\x00"], "NUL"),
        (["train", "--data", "d\x00.h5", "--out", str(tmp_path / "r")], "NUL"),
        (["eval", "--checkpoint", "../" * 2000 + "x"], "too long"),
        (["tsne", "--checkpoint", str(run), "--out", str(tmp_path / "no" / "x.csv")], "folder"),
    ]
    for argv, needle in cases:
        rc, err = _main([*argv, "--quiet"] if argv[0] != "eval" else argv)
        assert_clean_error(rc, err, needle)
        RECORD["hostile --out refused"] += 1
    assert file_hashes(existing, run, h5) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5", "folder"]
    assert not os.path.exists("x\x00y.h5".split("\x00")[0])


def test_app_folders_come_from_the_environment_only(models, tmp_path: Path) -> None:
    """The lab writes runs and datasets only under LEWM_RUNS_DIR / LEWM_DATA_DIR."""
    assert models.runs_dir() == (tmp_path / "runs").resolve()
    assert models.data_dir() == (tmp_path / "data").resolve()
    assert sys.modules["app.models"] is models
