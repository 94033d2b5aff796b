"""Lab responsiveness in a real browser (Debian's headless Chromium through Playwright).

Usage: ``python bench/app.py [--repeats 3] [--gradio] [--memory-sessions 10]``.

Measures, with the app's default settings, on a fresh server each repeat:
  first_page_s             `streamlit run app/Home.py` started -> the Welcome page fully rendered
                           (its content visible and Streamlit's running indicator gone)
  plan_click_to_rollout_s  Plan page, the Plan button clicked -> the rollout shown (first plan of
                           the session; `plan_click_to_idle_s`: until the page is idle again,
                           `plan_click_to_idle_again_s`: a second click, same settings)
With ``--gradio`` the same two numbers for ``app/gradio_app.py`` (page -> Plan button visible;
click -> rollout strip shown; `gradio_plan_click_to_rollout_warm_s`: a second click, seed 1).
With ``--memory-sessions N`` one more `streamlit run` serves N browser sessions at once, each
visiting every page and planning once on the Plan page, and the server's peak resident memory
(VmHWM) is reported.

The server gets empty data and runs folders (as on a fresh Space: only the shipped models), and
inherits this environment (LEWM_APP_THREADS etc.). Prints a table; the last stdout line is a
JSON object {"first_page_s": .., "plan_click_to_rollout_s": .., "target_s": 3.0, ...} (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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

TARGET_S = 3.0
TIMEOUT_MS = 180_000
PAGES = ("Environments", "Data", "Train", "Plan", "Decode", "Latent space", "Surprise")


# --------------------------------------------------------------------------- servers
class Server:
    """A server subprocess on a free port, stopped on exit; `started` is its perf_counter."""

    def __init__(self, kind: str, folders: Path, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if kind == "streamlit":
            cmd = [sys.executable, "-m", "streamlit", "run", "app/Home.py"]
            cmd += ["--server.headless", "true", "--server.port", str(self.port)]
            cmd += ["--browser.gatherUsageStats", "false"]
            self.health = "/_stcore/health"
        else:
            cmd = [sys.executable, "app/gradio_app.py", "--port", str(self.port)]
            self.health = "/gradio_api/info"
        env = {
            **os.environ,
            "MUJOCO_GL": "egl",
            "LEWM_DATA_DIR": str(folders / "data"),
            "LEWM_RUNS_DIR": str(folders / "runs"),
        }
        self.log = open(log, "w")  # noqa: SIM115 (closed in __exit__)
        self.cmd, self.env = cmd, env

    def __enter__(self) -> Server:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log
        )
        return self

    def wait_healthy(self, timeout: float = 120) -> float:
        """Seconds from start until the health URL answers 200."""
        try:
            wait_healthy(self.url + self.health, self.proc, timeout, interval=0.05)
        except RuntimeError as e:
            raise RuntimeError(f"{e}, see {self.log.name}") from None
        return time.perf_counter() - self.started

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)
        self.log.close()


# --------------------------------------------------------------------------- streamlit
def _streamlit_idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=TIMEOUT_MS)


def _goto_page(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()


def streamlit_once(browser, folders: Path, log: Path) -> dict[str, float]:
    """One fresh `streamlit run`: first page, then two Plan clicks with the default settings."""
    from playwright.sync_api import expect

    with Server("streamlit", folders, log) as server:
        context = browser.new_context(viewport={"width": 1600, "height": 1200})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        healthy = server.wait_healthy()
        page.goto(server.url)
        expect(page.get_by_role("heading", name="LeWM Lab")).to_be_visible()
        expect(page.get_by_text("The pages", exact=True)).to_be_visible()
        _streamlit_idle(page)
        first_page = time.perf_counter() - server.started

        _goto_page(page, "Plan")
        button = page.get_by_role("button", name="Plan", exact=True)
        expect(button).to_be_visible()
        _streamlit_idle(page)
        rollout = page.locator("[data-testid='stImage']", has_text="rollout, step")
        t0 = time.perf_counter()
        button.click()
        expect(rollout).to_be_visible()
        shown = time.perf_counter() - t0
        _streamlit_idle(page)
        idle = time.perf_counter() - t0
        # again with the same settings: the old result stays on the page during the rerun, so
        # the end is the rerun's end (the page idle again)
        t0 = time.perf_counter()
        button.click()
        page.wait_for_selector(IDLE.replace("notRunning", "running"), timeout=TIMEOUT_MS)
        _streamlit_idle(page)
        again = time.perf_counter() - t0
        result_text = page.locator("[data-testid='stMetric']").all_inner_texts()
        context.close()
    return {
        "healthy_s": healthy,
        "first_page_s": first_page,
        "plan_click_to_rollout_s": shown,
        "plan_click_to_idle_s": idle,
        "plan_click_to_idle_again_s": again,
        "metrics": " | ".join(t.replace("\n", " ") for t in result_text),
    }


def memory_sessions(browser, folders: Path, log: Path, sessions: int) -> dict[str, float]:
    """One `streamlit run` serving `sessions` browser sessions at once; its peak RSS (MiB).

    Every session opens the lab, visits each page (all sessions load a page at the same time)
    and plans once on the Plan page (the plans run concurrently).
    """
    from playwright.sync_api import expect

    peak = {"VmRSS": 0.0}
    stop = threading.Event()

    with Server("streamlit", folders, log) as server:
        server.wait_healthy()

        def sample() -> None:  # VmHWM is exact; VmRSS sampled for the timeline
            while not stop.is_set():
                try:
                    rss = memory_mib(server.proc.pid)["VmRSS"]
                    peak["VmRSS"] = max(peak["VmRSS"], rss)
                except OSError:
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        contexts = [
            browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)
        ]
        pages = [c.new_page() for c in contexts]
        for p in pages:
            p.set_default_timeout(TIMEOUT_MS)
            p.goto(server.url, wait_until="commit")
        for p in pages:
            expect(p.get_by_role("heading", name="LeWM Lab")).to_be_visible()
            _streamlit_idle(p)
        one_session = memory_mib(server.proc.pid)
        by_page = {}  # {page: VmRSS and VmHWM once every session has shown it}
        for title in PAGES:
            for p in pages:
                _goto_page(p, title)
            for p in pages:
                expect(p.get_by_role("heading", name=title, exact=True)).to_be_visible()
                _streamlit_idle(p)
            if title == "Plan":
                for p in pages:
                    p.get_by_role("button", name="Plan", exact=True).click()
                for p in pages:
                    rollout = p.locator("[data-testid='stImage']", has_text="rollout, step")
                    expect(rollout).to_be_visible()
                    _streamlit_idle(p)
            by_page[title] = {k: round(v, 1) for k, v in memory_mib(server.proc.pid).items()}
        errors = sum(p.locator("[data-testid='stException']").count() for p in pages)
        end = memory_mib(server.proc.pid)
        stop.set()
        sampler.join()
        for c in contexts:
            c.close()
    return {
        "sessions": sessions,
        "peak_rss_mib": end["VmHWM"],
        "rss_after_mib": end["VmRSS"],
        "rss_sessions_open_mib": one_session["VmRSS"],
        "exceptions_on_pages": errors,
        "mib_after_page": by_page,
    }


# --------------------------------------------------------------------------- gradio
def gradio_once(browser, folders: Path, log: Path) -> dict[str, float]:
    """One fresh `python app/gradio_app.py`: first page, then Plan clicks for seeds 0 and 1."""
    from playwright.sync_api import expect

    with Server("gradio", folders, log) as server:
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        healthy = server.wait_healthy()
        page.goto(server.url)
        expect(page.locator("#plan-button")).to_be_visible()
        first_page = time.perf_counter() - server.started
        clicks = []
        summary = page.locator("#plan-summary")
        for seed in (0, 1):  # the second plan (model loaded) is of seed 1: a new summary
            if seed:
                page.get_by_label("Seed").fill(str(seed))
            t0 = time.perf_counter()
            page.locator("#plan-button").click()
            expect(summary).to_contain_text(f"seed {seed}:")
            expect(page.locator("#rollout-strip img")).to_be_visible()
            clicks.append(time.perf_counter() - t0)
        text = summary.inner_text()
        context.close()
    return {
        "healthy_s": healthy,
        "first_page_s": first_page,
        "plan_click_to_rollout_s": clicks[0],
        "plan_click_to_rollout_warm_s": clicks[1],
        "metrics": text.replace("\n", " "),
    }


# --------------------------------------------------------------------------- main
def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _repeat(fn: Callable[[], dict], repeats: int, name: str) -> list[dict]:
    runs = []
    for i in range(repeats):
        runs.append(fn())
        r = runs[-1]
        again = next(k for k in r if k.endswith(("_warm_s", "_again_s")))
        print(
            f"  {name} run {i + 1}: first page {r['first_page_s']:.2f} s, plan click -> "
            f"rollout {r['plan_click_to_rollout_s']:.2f} s, again {r[again]:.2f} s; "
            f"{r['metrics']}",
            file=sys.stderr,
            flush=True,
        )
    return runs


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the table and the JSON line; return the JSON object."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh servers per app (median)")
    ap.add_argument("--gradio", action="store_true", help="also measure app/gradio_app.py")
    ap.add_argument("--memory-sessions", type=int, default=0, metavar="N", help="peak RSS check")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if not Path(CHROMIUM).exists():
        ap.error(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)  # assertions wait as long as page actions
    out: dict = {"load_avg_1min_before": round(os.getloadavg()[0], 2)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        folders = Path(tmp)
        for sub in ("data", "runs"):
            (folders / sub).mkdir()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            runs = _repeat(
                lambda: streamlit_once(browser, folders, folders / "streamlit.log"),
                args.repeats,
                "streamlit",
            )
            for key in (
                "first_page_s",
                "plan_click_to_rollout_s",
                "plan_click_to_idle_s",
                "plan_click_to_idle_again_s",
                "healthy_s",
            ):
                out[key] = round(_median(runs, key), 3)
            rows += [
                ("streamlit: server start -> Welcome page rendered", out["first_page_s"]),
                ("  of which: server start -> health check answers", out["healthy_s"]),
                ("streamlit: Plan click -> rollout shown (first)", out["plan_click_to_rollout_s"]),
                ("streamlit: Plan click -> page idle (first)", out["plan_click_to_idle_s"]),
                ("streamlit: Plan click -> page idle (again)", out["plan_click_to_idle_again_s"]),
            ]
            if args.gradio:
                g = _repeat(
                    lambda: gradio_once(browser, folders, folders / "gradio.log"),
                    args.repeats,
                    "gradio",
                )
                out["gradio_first_page_s"] = round(_median(g, "first_page_s"), 3)
                out["gradio_plan_click_to_rollout_s"] = round(
                    _median(g, "plan_click_to_rollout_s"), 3
                )
                out["gradio_plan_click_to_rollout_warm_s"] = round(
                    _median(g, "plan_click_to_rollout_warm_s"), 3
                )
                rows += [
                    ("gradio: server start -> page rendered", out["gradio_first_page_s"]),
                    (
                        "gradio: Plan click -> rollout shown (first)",
                        out["gradio_plan_click_to_rollout_s"],
                    ),
                    (
                        "gradio: Plan click -> rollout shown (again)",
                        out["gradio_plan_click_to_rollout_warm_s"],
                    ),
                ]
            if args.memory_sessions:
                mem = memory_sessions(
                    browser, folders, folders / "memory.log", args.memory_sessions
                )
                out["memory"] = mem
                rows += [
                    (
                        f"streamlit: {mem['sessions']} sessions open, RSS MiB",
                        mem["rss_sessions_open_mib"],
                    ),
                    (f"streamlit: {mem['sessions']} sessions, peak RSS MiB", mem["peak_rss_mib"]),
                ]
        finally:
            browser.close()
    out["target_s"] = TARGET_S
    out["repeats"] = args.repeats
    out["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  value (median of {args.repeats}, seconds unless MiB)")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:.2f}")
    load = f"{out['load_avg_1min_before']} before, {out['load_avg_1min_after']} after"
    print(f"target: Plan click -> rollout <= {TARGET_S:.1f} s; 1-min load average {load}")
    if args.memory_sessions:
        for title, mib in out["memory"]["mib_after_page"].items():
            print(f"  after {title}: RSS {mib['VmRSS']:.0f} MiB, peak {mib['VmHWM']:.0f} MiB")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
