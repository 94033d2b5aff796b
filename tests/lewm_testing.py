"""Helpers shared by several test modules (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lewm_core.cli import main as cli


def load_script(path: str) -> ModuleType:
    """The script at `path` (relative to the repository root: `bench/x.py`, `research/x.py`)
    imported as a module named after its file, without putting its folder on sys.path. A script
    that imports a sibling (bench/app.py: `lab_server`) is run as a subprocess instead."""
    file = Path(__file__).resolve().parents[1] / path
    name = file.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# the lab-server helpers the browser benchmarks use too (bench/lab_server.py)
_lab_server = load_script("bench/lab_server.py")
CHROMIUM, CHROMIUM_ARGS, IDLE = _lab_server.CHROMIUM, _lab_server.CHROMIUM_ARGS, _lab_server.IDLE
ROOT, free_port = _lab_server.ROOT, _lab_server.free_port
stop, wait_healthy = _lab_server.stop, _lab_server.wait_healthy

HOME = str(ROOT / "app" / "Home.py")
GRADIO_APP = str(ROOT / "app" / "gradio_app.py")


def run_script(*args: str) -> dict:
    """Run `python ARGS...` from the repository root (a bench/ or research/ script); assert it
    exits 0 and return its last stdout line, a JSON object."""
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run one `lewm` command in-process; return (exit status, stdout, stderr)."""
    rc = cli.main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def serve(
    request: pytest.FixtureRequest,
    log_dir: Path,
    cmd: list[str],
    health_path: str,
    name: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[str, subprocess.Popen]:
    """Start server `cmd` (which must listen on the port it is given through its arguments),
    wait until GET `health_path` answers 200, return (its URL, its process).

    `cmd` holds the placeholder "{port}", replaced by a free port. The server inherits this
    process's environment (e.g. the LEWM_* folders a test set) plus `extra_env`, logs to
    `log_dir/<name>.log` and is stopped by a finalizer of `request`.
    """
    port = free_port()
    cmd = [part.replace("{port}", str(port)) for part in cmd]
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed by the finalizer)
    env = {**os.environ, "MUJOCO_GL": "egl", **(extra_env or {})}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)

    def stop_server() -> None:
        stop(proc)
        log.close()

    request.addfinalizer(stop_server)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}{health_path}", proc, timeout, interval=0.3)
    except RuntimeError as e:
        log.flush()
        pytest.fail(f"{name}: {e}: {log_path.read_text()[-3000:]}")
    return url, proc


def serve_streamlit(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Start `streamlit run app/Home.py` on a free port, wait until healthy, return its URL.

    The server inherits this process's environment (e.g. the LEWM_* folders a test set) and is
    stopped by a finalizer of `request`.
    """
    cmd = [sys.executable, "-m", "streamlit", "run", HOME, "--server.headless", "true"]
    cmd += ["--server.port", "{port}", "--browser.gatherUsageStats", "false"]
    return serve(request, tmp_path, cmd, "/_stcore/health", "streamlit")[0]


def serve_gradio(
    request: pytest.FixtureRequest, log_dir: Path, extra_env: dict[str, str] | None = None
) -> str:
    """Start `python app/gradio_app.py` on a free port (models loaded on first use), return its
    URL once its API answers; stopped by a finalizer of `request` (any fixture scope)."""
    cmd = [sys.executable, GRADIO_APP, "--port", "{port}", "--no-warm-up"]
    return serve(request, log_dir, cmd, "/gradio_api/info", "gradio", extra_env)[0]


def open_page(path: str, timeout: int = 120):
    """An AppTest of the lab switched to page `path` (e.g. "views/plan.py"), no exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(HOME, default_timeout=timeout).run()
    assert not at.exception
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def button(at, label: str):
    """The button labelled `label` of an AppTest."""
    return next(b for b in at.button if b.label == label)


def lab_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty data/runs/assets folders under `tmp_path`, set as the app's folders (1 thread)."""
    dirs = {f"{k}_dir": tmp_path / k for k in ("data", "runs", "assets")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("LEWM_DATA_DIR", str(dirs["data_dir"]))
    monkeypatch.setenv("LEWM_RUNS_DIR", str(dirs["runs_dir"]))
    monkeypatch.setenv("LEWM_ASSETS_DIR", str(dirs["assets_dir"]))
    monkeypatch.setenv("LEWM_APP_THREADS", "1")
    return dirs
