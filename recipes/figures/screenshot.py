"""A screenshot of the lab for the README: the Plan page after one plan with a shipped model.

Starts `streamlit run app/Home.py` on a free port (the shipped models, the repository's data
and runs folders), opens the Plan page in headless Chromium (Debian's `chromium`, through
Playwright), plans one task from the model's held-out sample and saves the page as PNG.

    python -m recipes.figures.screenshot --out docs/figures/lab_plan.png
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from recipes.figures.common import ROOT


def _lab_server():
    """bench/lab_server.py (free ports, health checks, Chromium's flags), loaded from its file
    as the browser tests load it: bench/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("lab_server", ROOT / "bench" / "lab_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def screenshot(out: Path, budget: int = 20) -> Path:
    """Plan one task on the Plan page (step budget `budget`) and save the page to `out`."""
    from playwright.sync_api import expect, sync_playwright

    server = _lab_server()
    port = server.free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app/Home.py", "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(f"{url}/_stcore/health", proc, timeout=90, interval=0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=server.CHROMIUM, args=server.CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"{url}/plan?source=dataset")
            box = page.get_by_label("Step budget", exact=True)
            box.fill(str(budget))
            box.press("Tab")
            page.get_by_role("button", name="Plan", exact=True).click()
            steps = page.locator("[data-testid='stMetric']", has_text="Steps")
            expect(steps).to_be_visible(timeout=300_000)
            page.wait_for_selector(server.IDLE)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
            browser.close()
    finally:
        server.stop(proc)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "lab_plan.png")
    parser.add_argument("--budget", type=int, default=20, help="the plan's step budget")
    args = parser.parse_args(argv)
    print(screenshot(args.out, args.budget))
    return 0


if __name__ == "__main__":
    sys.exit(main())
