"""Load: N concurrent browser sessions against one `streamlit run app/Home.py`.

Usage: ``python bench/load.py [--sessions 10] [--duration 120] [--seed 0] [--plan-budget 10]``.

One headless Chromium (Debian's, /usr/bin/chromium) with N browser contexts (N independent
sessions) drives one lab server for `--duration` seconds. Each session, from its own seeded
random stream, repeatedly:
  - switches to a random page and waits for it to render;
  - plans on the Plan page (step budget `--plan-budget`, the default model and CEM) and waits
    for the rollout;
  - on the Train page starts a short training run (20 steps, 1 thread) under its own name or a
    name shared by all sessions, resumes the shared run, or stops the run it watches.
Meanwhile a sampler reads /proc every 0.2 s: the server's resident memory and that of its
children (the training jobs), and how many `lewm train` processes write each run folder.

Passes when no page shows an exception box, every plan completes, and no run folder ever has
more than one training job. The server gets empty temporary data and runs folders (one small
Two-Room dataset is collected into data/ first); the shipped models come from assets/models.
Prints a table per session, then a summary; the last stdout line is a JSON object with
`peak_rss_mib` (VmHWM of the server), `children_peak_rss_mib`, `plans_completed`, ...
Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from lab_server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    ROOT,
    free_port,
    memory_mib,
    stop,
    wait_healthy,
)

RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
PAGES = ("Welcome", "Environments", "Data", "Train", "Plan", "Decode", "Latent space", "Surprise")
SHARED_RUN = "load-shared"
ACTION_TIMEOUT_MS = 300_000


# --------------------------------------------------------------------------- processes
def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren...), from /proc."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def _is_lewm(pid: int) -> bool:
    try:
        return b"lewm_core" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def train_jobs() -> dict[str, list[str]]:
    """{run folder: the live `lewm_core train` processes writing it, as "pid/ppid/state"}."""
    found: dict[str, list[str]] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[-1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in ("Z", "X") or b"lewm_core" not in args or b"train" not in args:
            continue
        if b"--out" in args:
            out = args[args.index(b"--out") + 1].decode(errors="replace")
            found.setdefault(out, []).append(f"{cmdline.parent.name}/{fields[1]}/{fields[0]}")
    # A job's own short-lived children (a fork before its exec, e.g. ctypes' `ldconfig -p`)
    # show the job's command line: count the top-level processes only.
    for out, procs in found.items():
        pids = {p.split("/")[0] for p in procs}
        found[out] = [p for p in procs if p.split("/")[1] not in pids]
    return found


class Sampler(threading.Thread):
    """Samples the server's and its children's memory and the training jobs every 0.2 s."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.pid = server_pid
        self.stop = threading.Event()
        self.peak_total_rss = 0.0  # server + children, sampled
        self.children_hwm: dict[int, float] = {}  # child pid -> its VmHWM (last seen)
        self.max_jobs_per_folder = 0
        self.max_jobs = 0
        self.doubles: list[str] = []  # samples where one folder had several jobs

    def run(self) -> None:
        while not self.stop.is_set():
            total = memory_mib(self.pid).get("VmRSS", 0.0)
            for kid in descendants(self.pid):
                if not _is_lewm(kid):  # e.g. a fork not yet exec'ed: its parent's memory
                    continue
                st = memory_mib(kid)
                total += st.get("VmRSS", 0.0)
                if "VmHWM" in st:
                    self.children_hwm[kid] = max(self.children_hwm.get(kid, 0.0), st["VmHWM"])
            self.peak_total_rss = max(self.peak_total_rss, total)
            jobs = train_jobs()
            counts = [len(v) for v in jobs.values()]
            self.max_jobs_per_folder = max([self.max_jobs_per_folder, *counts])
            self.max_jobs = max(self.max_jobs, sum(counts))
            for folder, procs in jobs.items():
                if len(procs) > 1:
                    self.doubles.append(f"{Path(folder).name}: {' '.join(procs)}")
            self.stop.wait(0.2)


# --------------------------------------------------------------------------- sessions
@dataclass
class Stats:
    session: int
    actions: int = 0
    page_switches: int = 0
    plans_clicked: int = 0
    plans_completed: int = 0
    plan_s: list[float] = field(default_factory=list)
    train_started: int = 0
    train_refused: int = 0  # "already running" / "already holds a run": the lock said no
    train_resumed: int = 0
    train_stopped: int = 0
    exceptions: int = 0
    failures: list[str] = field(default_factory=list)


async def _idle(page, timeout: float = ACTION_TIMEOUT_MS) -> None:
    await page.wait_for_selector(IDLE, timeout=timeout)


async def _rerun_done(page, start_timeout_ms: float = 15_000) -> None:
    """After a click: wait for the script run it triggers to start (if not already over), then
    for the page to be idle again."""
    try:
        await page.wait_for_selector(RUNNING, timeout=start_timeout_ms)
    except Exception:  # noqa: BLE001 - a fast rerun may be over before we look
        pass
    await _idle(page)


async def _goto_page(page, title: str) -> None:
    await page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
    if title != "Welcome":
        await page.get_by_role("heading", name=title, exact=True).wait_for(
            timeout=ACTION_TIMEOUT_MS
        )
    await _rerun_done(page)


async def _exceptions(page) -> int:
    return await page.locator("[data-testid='stException']").count()


async def _settle(page, locator, value: str) -> None:
    """Type `value` into a number input (then Enter) and wait until the page shows it idle."""
    if await locator.input_value() != value:
        await locator.fill(value)
        await locator.press("Enter")
        await _rerun_done(page)


async def _plan(page, stats: Stats, budget: int, seed: int) -> None:
    """Plan on the Plan page with a new seed: the result counts once it is shown for these
    settings (the previous one, if any, is marked stale until then)."""
    await _goto_page(page, "Plan")
    plan = page.get_by_role("button", name="Plan", exact=True)
    await plan.wait_for(timeout=ACTION_TIMEOUT_MS)
    await _settle(page, page.get_by_label("Step budget", exact=True), str(budget))
    await _settle(page, page.get_by_label("Seed", exact=True), str(seed))
    stale = page.get_by_text("The settings changed since this plan")
    result = page.locator("[data-testid='stMetric']", has_text="Plan time")
    stats.plans_clicked += 1
    t0 = time.perf_counter()
    await plan.click()
    deadline = time.monotonic() + ACTION_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:  # the result of these settings, on an idle page
        if await result.count() and not await stale.count() and await page.locator(IDLE).count():
            stats.plans_completed += 1
            stats.plan_s.append(time.perf_counter() - t0)
            return
        await asyncio.sleep(0.25)
    shown = " | ".join(await _alert_texts(page))[:200]
    stats.failures.append(f"plan {stats.plans_clicked} showed no result (alerts: {shown!r})")


async def _alert_texts(page) -> list[str]:
    return await page.locator("[data-testid='stAlert']").all_inner_texts()


async def _train(page, url: str, runs: Path, stats: Stats, rng: random.Random, n: int) -> None:
    # a fresh page load: a new server session that watches the shared run (?run=)
    await page.goto(f"{url}/train?run={SHARED_RUN}")
    await page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=ACTION_TIMEOUT_MS)
    await _rerun_done(page)
    what = rng.choice(["start", "start", "start_shared", "resume", "stop"])
    if what == "resume" or what == "stop":
        label = "Resume" if what == "resume" else "Stop (keeps a checkpoint)"
        button = page.get_by_role("button", name=label)
        if await button.count() and await button.first.is_enabled():
            await button.first.click()
            await _rerun_done(page, start_timeout_ms=120_000)
            texts = " ".join(await _alert_texts(page))
            if "already" in texts or "did not start" in texts:
                stats.train_refused += 1
            elif what == "resume":
                stats.train_resumed += 1
            else:
                stats.train_stopped += 1
            return
        what = "start"
    name = SHARED_RUN if what == "start_shared" else f"load-s{stats.session}-{n}"
    await page.get_by_label("Max steps", exact=True).fill("20")
    await page.get_by_label("Batch size", exact=True).fill("8")
    await page.get_by_label("Run name", exact=True).fill(name)
    await page.get_by_text("Advanced").first.click()
    await page.get_by_label("CPU threads", exact=True).fill("1")
    clicked = time.time()
    await page.get_by_role("button", name="Start training").click()
    # the outcome: a refusal on the page, or the job's lock file written after the click (the
    # success message only shows on the next full rerun); the server may be slow under load
    deadline = time.monotonic() + ACTION_TIMEOUT_MS / 1000
    texts = ""
    while time.monotonic() < deadline:
        texts = " ".join(await _alert_texts(page))
        if "already" in texts:
            stats.train_refused += 1
            await _idle(page)
            return
        if _fresh_job(runs / name, clicked):
            stats.train_started += 1
            await _idle(page)
            return
        await asyncio.sleep(0.5)
    stats.failures.append(f"start {name}: neither started nor refused ({texts[:100]!r})")


def _fresh_job(run: Path, since: float) -> bool:
    """Does run/job.json record a job started after `since` (wall clock)?"""
    try:
        return json.loads((run / "job.json").read_text())["started"] >= since - 1
    except (OSError, ValueError, KeyError, TypeError):
        return False


async def session(
    browser, url: str, runs: Path, i: int, seed: int, deadline: float, budget: int
) -> Stats:
    stats = Stats(i)
    rng = random.Random(f"{seed}-{i}")
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        await page.goto(url)
        await page.get_by_role("heading", name="LeWM Lab").wait_for()
        await _idle(page)
        n = 0
        while time.monotonic() < deadline:
            action = rng.choices(["switch", "plan", "train"], weights=[4, 2, 2])[0]
            n += 1
            try:
                if action == "switch":
                    await _goto_page(page, rng.choice(PAGES))
                    stats.page_switches += 1
                elif action == "plan":
                    await _plan(page, stats, budget, rng.randrange(1000))
                else:
                    await _train(page, url, runs, stats, rng, n)
            except Exception as e:  # noqa: BLE001 - a timeout is a failure to report
                stats.failures.append(f"{action}: {type(e).__name__}: {str(e).splitlines()[0]}")
            stats.actions += 1
            stats.exceptions += await _exceptions(page)
    finally:
        await context.close()
    return stats


async def drive(
    url: str, runs: Path, sessions: int, duration: float, seed: int, budget: int
) -> list[Stats]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            deadline = time.monotonic() + duration
            return list(
                await asyncio.gather(
                    *(
                        session(browser, url, runs, i, seed, deadline, budget)
                        for i in range(sessions)
                    )
                )
            )
        finally:
            await browser.close()


# --------------------------------------------------------------------------- main
def _stop_jobs(runs: Path) -> int:
    """Stop every training job still running in runs/ (they outlive the server); count them."""
    from lewm_core.errors import UserError
    from lewm_core.training import jobs

    stopped = 0
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        if jobs.job_status(run)["running"]:
            try:
                jobs.stop_training(run, timeout=60)
                stopped += 1
            except UserError:
                pass
    return stopped


def _check_runs(runs: Path) -> list[str]:
    """Every run folder is whole: loadable checkpoints, no temporaries left."""
    from lewm_core.atomic import TMP_MARK
    from lewm_core.errors import UserError
    from lewm_core.world_model.checkpoint import load_model

    problems = []
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        temps = [p.name for p in run.iterdir() if TMP_MARK in p.name]
        if temps:
            problems.append(f"{run.name}: temporaries {temps}")
        if (run / "model.safetensors").exists():
            try:
                load_model(run)
            except UserError as e:
                problems.append(f"{run.name}: {e}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plan-budget", type=int, default=10, help="Plan page step budget")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is not installed", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="lewm-load-"))
    data, runs = tmp / "data", tmp / "runs"
    data.mkdir()
    runs.mkdir()
    env = {
        **os.environ,
        "MUJOCO_GL": "egl",
        "LEWM_DATA_DIR": str(data),
        "LEWM_RUNS_DIR": str(runs),
        "LEWM_APP_THREADS": os.environ.get("LEWM_APP_THREADS", "1"),
    }
    collect = [sys.executable, "-m", "lewm_core", "collect", "--env", "tworoom"]
    collect += ["--episodes", "12", "--steps", "40", "--out", str(data / "tiny.h5"), "--quiet"]
    subprocess.run(collect, cwd=ROOT, env=env, check=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "streamlit.log", "w")  # noqa: SIM115 (closed below)
    cmd = [sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
    sampler = Sampler(server.pid)
    try:
        wait_healthy(f"{url}/_stcore/health", server, timeout=180, interval=0.2)
        sampler.start()
        t0 = time.perf_counter()
        results = asyncio.run(
            drive(url, runs, args.sessions, args.duration, args.seed, args.plan_budget)
        )
        wall = time.perf_counter() - t0
        server_mem = memory_mib(server.pid)
    finally:
        sampler.stop.set()
        still_running = _stop_jobs(runs)
        stop(server, timeout=20)
        log.close()
    problems = _check_runs(runs)

    header = f"{'session':>7} {'actions':>7} {'pages':>5} {'plans':>9} {'plan s':>7} "
    header += f"{'started':>7} {'refused':>7} {'resumed':>7} {'stopped':>7} {'exc':>3} {'fail':>4}"
    print(header)
    for s in results:
        med = statistics.median(s.plan_s) if s.plan_s else float("nan")
        print(
            f"{s.session:>7} {s.actions:>7} {s.page_switches:>5} "
            f"{s.plans_completed:>4}/{s.plans_clicked:<4} {med:>7.1f} {s.train_started:>7} "
            f"{s.train_refused:>7} {s.train_resumed:>7} {s.train_stopped:>7} "
            f"{s.exceptions:>3} {len(s.failures):>4}"
        )
    failures = [f"session {s.session}: {f}" for s in results for f in s.failures]
    problems += [f"several jobs in one run folder: {d}" for d in sampler.doubles[:5]]
    for line in failures + problems:
        print(f"  ! {line}")
    plan_s = [x for s in results for x in s.plan_s]
    total = {
        "sessions": args.sessions,
        "duration_s": round(wall, 1),
        "actions": sum(s.actions for s in results),
        "page_switches": sum(s.page_switches for s in results),
        "plans_clicked": sum(s.plans_clicked for s in results),
        "plans_completed": sum(s.plans_completed for s in results),
        "plan_s_median": round(statistics.median(plan_s), 2) if plan_s else None,
        "plan_s_max": round(max(plan_s), 2) if plan_s else None,
        "train_started": sum(s.train_started for s in results),
        "train_refused": sum(s.train_refused for s in results),
        "train_resumed": sum(s.train_resumed for s in results),
        "train_stopped": sum(s.train_stopped for s in results),
        "exceptions": sum(s.exceptions for s in results),
        "failures": len(failures),
        "max_jobs_per_run_folder": sampler.max_jobs_per_folder,
        "max_concurrent_jobs": sampler.max_jobs,
        "jobs_running_at_end": still_running,
        "run_folder_problems": len(problems),
        "peak_rss_mib": round(server_mem.get("VmHWM", 0.0), 1),
        "rss_end_mib": round(server_mem.get("VmRSS", 0.0), 1),
        "children_peak_rss_mib": round(max(sampler.children_hwm.values(), default=0.0), 1),
        "peak_total_rss_mib": round(sampler.peak_total_rss, 1),
    }
    total["ok"] = (
        total["exceptions"] == 0
        and total["failures"] == 0
        and total["plans_completed"] == total["plans_clicked"]
        and total["max_jobs_per_run_folder"] <= 1
        and not problems
    )
    print(
        f"{total['sessions']} sessions for {total['duration_s']} s: {total['actions']} actions, "
        f"{total['page_switches']} page switches, {total['plans_completed']}/"
        f"{total['plans_clicked']} plans completed (median {total['plan_s_median']} s), "
        f"{total['train_started']} trainings started, {total['train_refused']} refused by the "
        f"lock, {total['train_resumed']} resumed, {total['train_stopped']} stopped; "
        f"{total['exceptions']} exception boxes; at most {total['max_jobs_per_run_folder']} job "
        f"per run folder ({total['max_concurrent_jobs']} at once); server peak RSS "
        f"{total['peak_rss_mib']:.0f} MiB (children {total['children_peak_rss_mib']:.0f} MiB, "
        f"sampled total {total['peak_total_rss_mib']:.0f} MiB)"
    )
    print(json.dumps(total))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}", file=sys.stderr)
    return 0 if total["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
