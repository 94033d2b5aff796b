"""The lab on a fresh clone: empty data and runs folders, only the shipped models. Every page
shows its figure in a real browser (Debian's Chromium through Playwright), not just no exception
box: Decode, Latent space and Plan's dataset source read the shipped models' held-out samples and
say so; Data collects a small dataset and Train trains a few steps on it, as a new user would.

Pages are opened by their URL (with the settings the pages read from it: few points, few
episodes) so that each check stays short on a 2-core machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lewm_testing import CHROMIUM, CHROMIUM_ARGS, IDLE, serve_streamlit

from lewm_core.training import jobs

os.environ.setdefault("MUJOCO_GL", "egl")
PLOT = "[data-testid='stPlotlyChart']"
IMAGE = "[data-testid='stImage'] img"
SAMPLE_NOTE = "Frames from the model's held-out sample"  # models.frames_or_stop's caption


@pytest.fixture
def fresh_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Empty data and runs folders for the lab; the shipped models as they are in assets/."""
    dirs = {name: tmp_path / name for name in ("data", "runs")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("LEWM_DATA_DIR", str(dirs["data"]))
    monkeypatch.setenv("LEWM_RUNS_DIR", str(dirs["runs"]))
    monkeypatch.delenv("LEWM_ASSETS_DIR", raising=False)
    monkeypatch.setenv("LEWM_APP_THREADS", "1")
    return dirs


def _fill(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")  # commit the value (inside a form too) before anything is clicked


@pytest.mark.browser
def test_every_page_shows_its_figure_with_only_the_shipped_models(
    request: pytest.FixtureRequest, fresh_lab: dict[str, Path], tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    url = serve_streamlit(request, tmp_path)
    shots = Path(os.environ.get("LEWM_SCREENSHOT_DIR", tmp_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(120_000)

            def visit(path: str) -> None:
                page.goto(f"{url}/{path}")
                page.wait_for_selector(IDLE)

            def settled(name: str) -> None:
                page.wait_for_selector(IDLE)
                assert page.locator("[data-testid='stException']").count() == 0, name
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            def shows(selector: str, at_least: int = 1, timeout: int = 120_000) -> None:
                expect(page.locator(selector).nth(at_least - 1)).to_be_visible(timeout=timeout)

            visit("")  # Welcome: text, the rollouts and the diagram, a link to every page
            expect(page.get_by_role("heading", name="LeWM Lab")).to_be_visible()
            shows(IMAGE, at_least=2)
            for title in ("Environments", "Data", "Train", "Plan", "Decode", "Latent space"):
                expect(page.locator("[data-testid='stPageLink']", has_text=title)).to_be_visible()
            settled("welcome")

            visit("environments")  # the task's frame
            shows(IMAGE)
            settled("environments")

            visit("data")  # nothing to browse yet; a small collection, then its plots
            expect(page.get_by_text("No dataset in", exact=False)).to_be_visible()
            _fill(page, "Episodes", 6)
            _fill(page, "Steps / episode", 40)
            page.get_by_role("button", name="Collect").click()
            shows(PLOT)
            shows(IMAGE)
            settled("data")
            assert [p.name for p in fresh_lab["data"].iterdir()] == ["tworoom-6x40-s0.h5"]

            visit("train")  # a few steps on that dataset; the curves appear as it trains
            _fill(page, "Max steps", 3)
            _fill(page, "Batch size", 8)
            page.get_by_role("button", name="Start training").click()
            shows(PLOT, timeout=240_000)
            settled("train")

            visit("plan?source=dataset")  # start and goal from Two-Room's held-out sample
            note = "Start and goal from the model's held-out sample"
            expect(page.get_by_text(note, exact=False)).to_be_visible()
            shows(IMAGE, at_least=2)
            _fill(page, "Step budget", 5)
            page.get_by_role("button", name="Plan", exact=True).click()
            steps = page.locator("[data-testid='stMetric']", has_text="Steps")
            expect(steps).to_be_visible(timeout=180_000)  # seconds per plan on a busy CPU
            shows(PLOT)
            settled("plan")

            visit("decode")  # an episode of the sample, three ways, and its PSNR curve
            expect(page.get_by_text(SAMPLE_NOTE, exact=False)).to_be_visible()
            shows(IMAGE, at_least=3)
            shows(PLOT)
            settled("decode")

            visit("latent?points=150")  # the t-SNE map of sample frames
            expect(page.get_by_text(SAMPLE_NOTE, exact=False)).to_be_visible()
            page.get_by_role("button", name="Compute the map").click()
            shows(PLOT)
            shows(IMAGE)  # the frame of the chosen point
            settled("latent")

            visit("surprise?episodes=2&steps=6")  # a short experiment and its curve
            page.get_by_role("button", name="Run the experiment").click()
            shows(PLOT)
            settled("surprise")
        finally:
            browser.close()
            for run in fresh_lab["runs"].iterdir():
                if jobs.job_status(run)["running"]:
                    jobs.stop_training(run, timeout=30)
