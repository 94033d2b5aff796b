"""Public mode of the lab (LEWM_PUBLIC=1): a shared server that survives its visitors.

    setup()          Home.py, every script run: in public mode, hides the developer toolbar and
                     gives this browser session its scratch folder (lab_store's runs and data)
    start_training(run, **kwargs), resume_training(run, ...)
                     the Train page's starts: at once in the private lab; in public mode through
                     the process's `JobQueue` (LEWM_PUBLIC_JOBS at once, one per visitor,
                     at most PUBLIC_MAX_STEPS steps on PUBLIC_JOB_THREADS thread)
    queue_panel(run_key, message_key)
                     the Train page's view of the queue: slots in use, the visitor's position
    check_collect(episodes, steps, resolution), notice()
                     the Data page's limit on a dataset's size, and where a visitor's files go

Every scratch folder lies in one temporary folder of the server process. A session's folder is
released when its browser disconnects (Streamlit drops the session's resources), kept for
Streamlit's `server.disconnectedSessionTTL` seconds in case it reconnects, then its training job
is stopped and the folder deleted; all are deleted at exit. A background thread does both, and
starts queued jobs as slots free up, every SWEEP_S seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import streamlit as st
from streamlit import config as st_config

from app import lab_store, ui
from lewm_core.errors import UserError
from lewm_core.training import jobs
from lewm_core.training.job_queue import JobQueue

# training steps of one run: the Train page's default, so that one visitor holds a training slot
# for minutes, not hours (docs/deploy.md has the measured speed of a public job)
PUBLIC_MAX_STEPS = 1000
PUBLIC_JOB_THREADS = 1  # CPU threads of one training job
# a dataset's frames x (resolution / 64)^2: 20,000 frames at 64 px, 5,000 at 128 px
PUBLIC_MAX_FRAMES = 20_000
SWEEP_S = 2.0  # how often the background thread starts queued jobs and deletes left folders
SCRATCH_KEY = "lewm_public_scratch"  # session_state: this session's scratch folder name

_lock = threading.Lock()
_root: Path | None = None
_released: dict[str, float] = {}  # scratch name -> when its session let it go (monotonic)
_queue: JobQueue | None = None
_sweeper: threading.Thread | None = None


# --------------------------------------------------------------------------- scratch folders
def scratch_root() -> Path:
    """The server's folder of scratch folders (created on first use, deleted at exit)."""
    global _root
    with _lock:
        if _root is None:
            _root = Path(tempfile.mkdtemp(prefix="lewm-public-")).resolve()
            atexit.register(_delete_all)
        return _root


def queue() -> JobQueue:
    """The process's training queue (LEWM_PUBLIC_JOBS slots)."""
    global _queue
    with _lock:
        if _queue is None:
            _queue = JobQueue(lab_store.public_job_limit())
        return _queue


def _owner() -> str:
    """This browser session's scratch folder name (kept across reruns and reconnects)."""
    if SCRATCH_KEY not in st.session_state:
        st.session_state[SCRATCH_KEY] = uuid.uuid4().hex
    return st.session_state[SCRATCH_KEY]


def _release(name: str) -> None:
    """The session let its folder go (disconnected): its waiting start leaves the queue."""
    with _lock:
        _released[name] = time.monotonic()
    queue().cancel(name)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _hold(name: str) -> str:
    """Held once per connected session: a reconnect takes its folder back."""
    with _lock:
        _released.pop(name, None)
    return name


def session_scratch() -> Path:
    """This browser session's scratch folder (runs/ and data/ inside)."""
    name = _hold(_owner())
    path = scratch_root() / name
    path.mkdir(exist_ok=True)
    return path


def _stop_jobs(folder: Path) -> None:
    for run in (folder / "runs").glob("*"):
        if jobs.job_status(run)["running"]:
            with contextlib.suppress(UserError):
                jobs.stop_training(run, timeout=10)


def _delete(name: str) -> None:
    folder = scratch_root() / name
    _stop_jobs(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _delete_all() -> None:
    if _root is not None:
        for folder in _root.glob("*"):
            _stop_jobs(folder)
        shutil.rmtree(_root, ignore_errors=True)


def sweep() -> None:
    """Start queued jobs as slots free up; delete the folders released longer than the TTL."""
    queue().advance()
    ttl = float(st_config.get_option("server.disconnectedSessionTTL"))
    now = time.monotonic()
    with _lock:
        gone = [name for name, since in _released.items() if now - since > ttl]
        for name in gone:
            del _released[name]
    for name in gone:
        _delete(name)


def _sweep_forever() -> None:
    while True:
        time.sleep(SWEEP_S)
        with contextlib.suppress(Exception):  # a failed sweep is retried at the next one
            sweep()


# --------------------------------------------------------------------------- the switch
def setup() -> None:
    """Home.py, every script run. Private lab: nothing. Public mode: this session's scratch
    folder backs lab_store's runs and data folders, the developer toolbar ("Deploy") is hidden,
    and the background sweeper runs. A bad LEWM_PUBLIC or LEWM_PUBLIC_JOBS stops the app with
    the message."""
    global _sweeper
    try:
        public = lab_store.public_mode()
        if public:
            lab_store.public_job_limit()  # checked on every run, though read once by queue()
    except UserError as e:
        ui.show_error(e)
        st.stop()
    if not public:
        return
    lab_store.set_scratch(session_scratch)
    with _lock:
        if _sweeper is None:
            _sweeper = threading.Thread(target=_sweep_forever, name="lewm-public", daemon=True)
            _sweeper.start()
    if st_config.get_option("client.toolbarMode") != "viewer":
        # sent to the browser when a run starts: this run began with the old mode, so rerun
        st.set_option("client.toolbarMode", "viewer")
        st.rerun()


def notice() -> None:
    """In public mode, one line saying where this visitor's files go."""
    if lab_store.public_mode():
        st.caption(
            ":material/public: Public server: your datasets and runs live in a scratch folder "
            "of this browser session, deleted a few minutes after you leave."
        )


def check_collect(episodes: int, steps: int, resolution: int) -> None:
    """In public mode, UserError if a dataset would exceed PUBLIC_MAX_FRAMES (64 px frames)."""
    if not lab_store.public_mode():
        return
    weight = episodes * steps * (resolution / 64) ** 2
    if weight > PUBLIC_MAX_FRAMES:
        most = int(PUBLIC_MAX_FRAMES / (resolution / 64) ** 2)
        raise UserError(
            f"this public server collects at most {most:,} frames at {resolution} px "
            f"({episodes * steps:,} asked): lower the episodes or the steps per episode"
        )


# --------------------------------------------------------------------------- training
def start_training(run: Path, **kwargs) -> tuple[str, str]:
    """Start `jobs.start_training(run, **kwargs)`; in public mode through the queue.

    Returns (message kind, text) for the page: "success" when started, "info" when queued.
    Raises UserError when refused (bad request, the public limits, training switched off).
    """
    if kwargs.get("resume"):
        started = f"Resumed '{run.name}' up to step {kwargs.get('max_steps')}."
    else:
        started = f"Started training run '{run.name}' in the background."
    if not lab_store.public_mode():
        jobs.start_training(run, **kwargs)
        return "success", started
    max_steps = kwargs.get("max_steps")
    if max_steps is None or max_steps > PUBLIC_MAX_STEPS:
        raise UserError(
            f"this public server trains a run for at most {PUBLIC_MAX_STEPS:,} steps: set Max "
            f"steps to {PUBLIC_MAX_STEPS:,} or fewer"
        )
    kwargs["threads"] = PUBLIC_JOB_THREADS
    q = queue()
    if q.limit == 0:
        raise UserError("training is switched off on this public server (LEWM_PUBLIC_JOBS=0)")
    position = q.submit(_owner(), run, **kwargs)
    if position == 0:
        return "success", started
    return "info", (
        f"All {q.limit} training slot(s) are in use: run '{run.name}' is number {position} in "
        "the queue and starts by itself when a slot frees up."
    )


def resume_training(run: Path, max_steps: int | None = None, threads: int | None = None):
    """`jobs.resume_training`, through the queue in public mode; as `start_training`."""
    return start_training(run, resume=True, max_steps=max_steps, threads=threads)


def _queue_view(run_key: str, message_key: str) -> None:
    q, owner = queue(), _owner()
    outcome = q.outcome(owner)
    if isinstance(outcome, UserError):
        ui.show_error(UserError(f"your queued run could not start: {outcome}"))
    elif outcome is not None:
        name = outcome.run_dir.name
        st.session_state[message_key] = ("success", f"Your queued run '{name}' has started.")
        st.session_state[run_key] = name
        st.rerun(scope="app")  # the page again: the new run in the list, its curves
    running, waiting = q.counts()
    request = q.waiting(owner)
    st.caption(
        f":material/public: Public server: {running} of {q.limit} training slot(s) in use, "
        f"{waiting} waiting. A run trains at most {PUBLIC_MAX_STEPS:,} steps on "
        f"{PUBLIC_JOB_THREADS} CPU thread, in a scratch folder of this browser session."
    )
    if request is not None:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.info(
            f"Run '{request.run_dir.name}' is number **{q.position(owner)}** in the queue: it "
            "starts by itself when a slot frees up (keep this tab open).",
            icon=":material/hourglass_top:",
        )
        if c2.button("Cancel", key="train_queue_cancel"):
            q.cancel(owner)
            st.rerun(scope="app")


def queue_panel(run_key: str, message_key: str) -> None:
    """The Train page's queue view in public mode (polls every 2 s while the visitor waits).

    When the visitor's queued run starts, the page shows it: `run_key` is the run picker's
    session_state key, `message_key` the page's one-time (kind, text) message.
    """
    if not lab_store.public_mode():
        return
    waiting = queue().waiting(_owner()) is not None
    st.fragment(run_every=2 if waiting else None)(_queue_view)(run_key, message_key)
