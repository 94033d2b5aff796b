"""Public mode (LEWM_PUBLIC=1, app/lab_public.py): a shared server that survives its visitors.

The switch and the queue of training jobs (`lewm_core.training.job_queue.JobQueue`, real `lewm
train` processes), the lab's pages in AppTest (two sessions: their files land in their own scratch
folders, the second training start waits in the queue and then starts by itself), a real
Streamlit server in headless Chromium (no developer toolbar; a visitor's scratch folder deleted
after they leave) and the Gradio demo's queue (positions through `gradio_client`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from lewm_testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HOME,
    IDLE,
    ROOT,
    button,
    lab_dirs,
    serve,
    serve_gradio,
    stop,
)
from streamlit.testing.v1 import AppTest

from lewm_core.errors import UserError
from lewm_core.training import jobs
from lewm_core.training.job_queue import JobQueue

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def app_modules(monkeypatch: pytest.MonkeyPatch):
    """(lab_public, lab_store), imported as Home.py imports them: the very modules the AppTest
    sessions of this process use."""
    from app import lab_public, lab_store

    return lab_public, lab_store


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.3)


def _stop_all(run_dirs) -> None:
    for run in run_dirs:
        if jobs.job_status(run)["running"]:
            jobs.stop_training(run, timeout=30)


# --------------------------------------------------------------------------- the switch
def test_switch_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, app_modules) -> None:
    lab_store = app_modules[1]
    monkeypatch.setattr(lab_store, "_scratch", None)  # no browser session here
    for value, public in (("", False), ("0", False), ("no", False), ("1", True), ("True", True)):
        monkeypatch.setenv("LEWM_PUBLIC", value)
        assert lab_store.public_mode() is public
    monkeypatch.setenv("LEWM_PUBLIC", "maybe")
    with pytest.raises(UserError, match="neither 1"):
        lab_store.public_mode()
    for value, limit in (("", 1), ("0", 0), ("3", 3)):
        monkeypatch.setenv("LEWM_PUBLIC_JOBS", value)
        assert lab_store.public_job_limit() == limit
    for bad in ("-1", "5", "two"):
        monkeypatch.setenv("LEWM_PUBLIC_JOBS", bad)
        with pytest.raises(UserError, match="0 to 4"):
            lab_store.public_job_limit()
    # outside a browser session (the Gradio demo, a script) public runs and data are temporary
    monkeypatch.setenv("LEWM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("LEWM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEWM_PUBLIC", "0")
    assert lab_store.runs_dir() == (tmp_path / "runs").resolve()
    monkeypatch.setenv("LEWM_PUBLIC", "1")
    runs, data = lab_store.runs_dir(), lab_store.data_dir()
    assert runs.is_dir() and data.is_dir() and runs.parent == data.parent
    assert tmp_path not in runs.parents and ROOT not in runs.parents


# --------------------------------------------------------------------------- the queue
def test_job_queue_bounds_and_orders_jobs(tiny_run: dict, tmp_path: Path) -> None:
    data = tiny_run["h5"]
    kwargs = dict(data=data, max_steps=100_000, batch_size=8, threads=1, checkpoint_every=1000)
    runs = {name: tmp_path / name for name in ("a", "b", "c", "d")}
    with pytest.raises(UserError, match="switched off"):
        JobQueue(0).submit("x", runs["a"], **kwargs)
    q = JobQueue(1)
    try:
        assert q.submit("alice", runs["a"], **kwargs) == 0  # a free slot: started at once
        assert jobs.job_status(runs["a"])["running"]
        assert q.submit("bob", runs["b"], **kwargs) == 1
        assert q.submit("carol", runs["c"], **kwargs) == 2
        assert (q.position("bob"), q.position("carol"), q.position("alice")) == (1, 2, None)
        assert q.counts() == (1, 2)
        with pytest.raises(UserError, match="still training"):
            q.submit("alice", runs["d"], **kwargs)
        with pytest.raises(UserError, match="already waiting"):
            q.submit("bob", runs["d"], **kwargs)
        with pytest.raises(UserError, match="does not exist"):  # refused before it waits
            q.submit("dave", runs["d"], **{**kwargs, "data": tmp_path / "none.h5"})
        q.advance()  # no free slot: nothing starts
        assert not runs["b"].exists() and q.outcome("bob") is None
        assert q.cancel("carol") and q.position("carol") is None and not q.cancel("carol")

        jobs.stop_training(runs["a"], timeout=30)  # the slot frees up: bob is next
        q.advance()
        started = q.outcome("bob")
        assert isinstance(started, jobs.Job) and started.run_dir == runs["b"].absolute()
        assert jobs.job_status(runs["b"])["running"] and q.counts() == (1, 0)
        assert q.outcome("bob") is None  # told once
        assert not runs["c"].exists()
    finally:
        _stop_all(runs.values())


# --------------------------------------------------------------------------- the lab's pages
@pytest.fixture
def public_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_modules) -> dict:
    """The lab's shared folders (which must stay empty), public mode with one training slot."""
    lab_public, lab_store = app_modules
    dirs = lab_dirs(tmp_path, monkeypatch)
    monkeypatch.setenv("LEWM_PUBLIC", "1")
    monkeypatch.setenv("LEWM_PUBLIC_JOBS", "1")
    monkeypatch.setattr(lab_public, "_queue", None)  # a fresh queue with this limit
    monkeypatch.setattr(lab_store, "_scratch", None)
    return {**dirs, "lab_public": lab_public}


def _session(page: str) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=180).run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _scratch(at: AppTest) -> Path:
    from app import lab_public  # the app's own module, as Home.py imports it

    return lab_public.scratch_root() / at.session_state[lab_public.SCRATCH_KEY]


def _collect(at: AppTest, name: str) -> None:
    at.number_input(key="data_episodes").set_value(4)
    at.number_input(key="data_steps").set_value(20)
    at.text_input(key="data_name").input(name)
    button(at, "Collect").click().run()
    assert not at.exception and not at.error, _texts(at.error)


def test_public_pages_scratch_and_queue(public_lab: dict) -> None:
    lab_public = public_lab["lab_public"]
    alice, bob = _session("views/data.py"), _session("views/data.py")
    assert any("Public server" in t for t in _texts(alice.caption))
    _collect(alice, "mine")
    _collect(bob, "mine")  # the same name: each visitor has their own folder
    for at in (alice, bob):
        assert (_scratch(at) / "data" / "mine.h5").is_file()
    assert _scratch(alice) != _scratch(bob)
    # a dataset over the public limit is refused with the limit and the fix
    alice.number_input(key="data_episodes").set_value(1000)
    alice.number_input(key="data_steps").set_value(100)
    alice.text_input(key="data_name").input("big")
    button(alice, "Collect").click().run()
    most = f"at most {lab_public.PUBLIC_MAX_FRAMES:,} frames at 64 px"
    assert any(most in t for t in _texts(alice.error)), _texts(alice.error)

    runs = [_scratch(at) / "runs" / "r" for at in (alice, bob)]
    try:
        for at in (alice, bob):
            at.switch_page("views/train.py").run()
            assert not at.exception
            assert any("0 of 1 training slot" in t or "1 of 1" in t for t in _texts(at.caption))
            at.number_input(key="train_max_steps").set_value(lab_public.PUBLIC_MAX_STEPS + 1)
            at.text_input(key="train_name").input("r")
            button(at, "Start training").click().run()
            most = f"at most {lab_public.PUBLIC_MAX_STEPS:,} steps"
            assert any(most in t for t in _texts(at.error)), _texts(at.error)
            at.number_input(key="train_max_steps").set_value(lab_public.PUBLIC_MAX_STEPS)
            at.number_input(key="train_batch").set_value(8)
            at.number_input(key="train_epochs").set_value(1000)
        button(alice, "Start training").click().run()
        assert not alice.exception and not alice.error, _texts(alice.error)
        assert jobs.job_status(runs[0])["running"]
        button(bob, "Start training").click().run()
        assert not bob.exception and not bob.error, _texts(bob.error)
        # the queue panel says where bob stands; the page's message too, from the next run on
        assert any("number **1** in the queue" in t for t in _texts(bob.info)), _texts(bob.info)
        assert any("1 of 1 training slot(s) in use, 1 waiting" in t for t in _texts(bob.caption))
        assert not runs[1].exists()
        for at, message in ((alice, "Started training run 'r'"), (bob, "number 1 in the queue")):
            at.run()
            assert any(message in t for t in _texts(at.success) + _texts(at.info)), message

        jobs.stop_training(runs[0], timeout=60)  # alice's slot frees up: bob's run starts
        _wait(lambda: runs[1].exists(), 30, "bob's queued run started by the sweeper")
        bob.run()
        assert not bob.exception and not bob.error, _texts(bob.error)
        assert any("Your queued run 'r' has started" in t for t in _texts(bob.success))
        assert bob.selectbox(key="train_run_w").value == "r"
        bob_job = jobs.read_job(runs[1])
        assert bob_job["command"][-2:] == ["--threads", "1"]  # the public cap

        # bob leaves (Streamlit releases his session's folder) and the time to reconnect passes:
        # the sweep stops his job and deletes his folder; alice's stays
        from streamlit import config as st_config

        ttl = st_config.get_option("server.disconnectedSessionTTL")
        st_config.set_option("server.disconnectedSessionTTL", 0)
        try:
            lab_public._release(bob.session_state[lab_public.SCRATCH_KEY])
            time.sleep(0.1)
            lab_public.sweep()
        finally:
            st_config.set_option("server.disconnectedSessionTTL", ttl)
        assert not runs[1].parents[1].exists()
        assert not jobs.pid_alive(bob_job["pid"], bob_job.get("proc_start"))
        assert (runs[0].parents[1] / "data" / "mine.h5").is_file()
    finally:
        _stop_all(run for run in runs if run.exists())
    # nothing was written into the lab's shared folders
    for key in ("data_dir", "runs_dir", "assets_dir"):
        assert list(public_lab[key].iterdir()) == [], key


def test_training_switched_off(public_lab: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEWM_PUBLIC_JOBS", "0")
    at = _session("views/data.py")
    _collect(at, "mine")
    at.switch_page("views/train.py").run()
    at.text_input(key="train_name").input("r")
    button(at, "Start training").click().run()
    assert any("training is switched off" in t for t in _texts(at.error)), _texts(at.error)
    assert not (_scratch(at) / "runs" / "r").exists()


def test_a_bad_switch_stops_the_app(public_lab: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value, message in (
        ("LEWM_PUBLIC", "maybe", "neither 1"),
        ("LEWM_PUBLIC_JOBS", "9", "0 to 4"),
    ):
        monkeypatch.setenv(var, value)
        at = AppTest.from_file(HOME, default_timeout=120).run()
        assert not at.exception
        assert any(message in t for t in _texts(at.error)), _texts(at.error)
        assert not at.title  # the page did not run
        monkeypatch.setenv(var, "1")


# --------------------------------------------------------------------------- a real server
def _streamlit(request, tmp_path: Path, name: str, env: dict[str, str]):
    cmd = [sys.executable, "-m", "streamlit", "run", HOME, "--server.headless", "true"]
    cmd += ["--server.port", "{port}", "--browser.gatherUsageStats", "false"]
    cmd += ["--server.disconnectedSessionTTL", "2"]
    return serve(request, tmp_path, cmd, "/_stcore/health", name, env)


@pytest.mark.browser
def test_public_server_in_browser(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """No "Deploy" toolbar for visitors (the private lab on 127.0.0.1 shows it); a visitor's
    dataset lands in their scratch folder, which is deleted once they have left."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    private = _streamlit(request, tmp_path, "private", {"LEWM_PUBLIC": "0"})[0]
    public, server = _streamlit(
        request, tmp_path, "public", {"LEWM_PUBLIC": "1", "TMPDIR": str(scratch_parent)}
    )
    deploy = "[data-testid='stAppDeployButton']"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(private)
            page.wait_for_selector(IDLE)
            # the developer toolbar, for contrast
            expect(page.locator(deploy)).to_be_visible(timeout=60_000)
            page.close()

            context = browser.new_context(viewport={"width": 1600, "height": 1200})
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{public}/data")
            expect(page.get_by_text("Public server", exact=False)).to_be_visible(timeout=120_000)
            page.wait_for_selector(IDLE)
            expect(page.locator(deploy)).to_have_count(0)
            page.get_by_role("spinbutton", name="Episodes", exact=True).fill("2")
            page.get_by_role("spinbutton", name="Steps / episode", exact=True).fill("10")
            page.get_by_role("textbox", name="Dataset name", exact=True).fill("visitor")
            page.get_by_role("button", name="Collect", exact=True).click()
            expect(page.get_by_text("Wrote visitor.h5")).to_be_visible(timeout=120_000)
            files = list(scratch_parent.glob("lewm-public-*/*/data/visitor.h5"))
            assert len(files) == 1, list(scratch_parent.rglob("*"))
            folder = files[0].parents[1]
            context.close()  # the visitor leaves: kept 2 s for a reconnect, then deleted
            _wait(lambda: not folder.exists(), 30, "the left visitor's folder deleted")

            page = browser.new_page()  # a visitor still there when the server stops
            page.goto(f"{public}/data")
            page.wait_for_selector(IDLE)
            assert len(list(scratch_parent.glob("lewm-public-*/*"))) == 1
        finally:
            browser.close()
    stop(server)
    assert not list(scratch_parent.iterdir())  # every scratch folder deleted at exit


# --------------------------------------------------------------------------- the Gradio demo
def test_gradio_demo_queues_plans(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """One plan at a time (default_concurrency_limit=1); the others wait and are told where."""
    from gradio_client import Client
    from gradio_client.utils import Status

    url = serve_gradio(request, tmp_path, {"LEWM_APP_THREADS": "1"})
    client = Client(url, verbose=False)
    first = client.submit("tworoom", 0, 300, 10, 50, api_name="/plan")
    _wait(lambda: first.status().code == Status.PROCESSING, 120, "the first plan running")
    later = [client.submit("tworoom", s, 16, 1, 2, api_name="/plan") for s in (1, 2)]
    seen = set()  # the places of the two later requests while both wait
    deadline = time.monotonic() + 300
    while not first.done() and time.monotonic() < deadline:
        statuses = [job.status() for job in later]
        if all(st.code == Status.IN_QUEUE and st.rank is not None for st in statuses):
            seen.add(tuple(sorted(st.rank for st in statuses)))
        time.sleep(0.05)
    results = [job.result(timeout=300) for job in (first, *later)]
    assert [r[3]["seed"] for r in results] == [0, 1, 2]
    # each waiting request is told its own place (0-based; the page shows "queue: 1/2", "2/2")
    assert (0, 1) in seen, seen
