"""The Data, Train and Plan pages: AppTest (in-process) and one real-browser run of Plan.

The app's folders are pointed at temporary ones (LEWM_DATA_DIR, LEWM_RUNS_DIR, LEWM_ASSETS_DIR).
The model is a lab model trained here for a few steps on a tiny Two-Room dataset with one torch
thread: the pages only need a real, loadable model (planning quality is tested elsewhere), and
`trained_run` (300 steps) takes minutes on a busy 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from lewm_testing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    HOME,
    IDLE,
    button,
    lab_dirs,
    open_page,
    serve_streamlit,
)
from streamlit.testing.v1 import AppTest

from lewm_core.data.dataset import open_dataset
from lewm_core.training import jobs

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run: dict) -> dict:
    """Empty data/runs/assets folders for the app, plus the tiny model and dataset to copy in."""
    dirs = lab_dirs(tmp_path, monkeypatch)
    return {**dirs, **tiny_run}


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


# --------------------------------------------------------------------------- Data
def test_data_page_collects_and_browses(lab: dict) -> None:
    at = open_page("views/data.py")
    assert any("No dataset" in t for t in _texts(at.info))
    at.number_input(key="data_episodes").set_value(3)
    at.number_input(key="data_steps").set_value(20)
    at.text_input(key="data_name").input("mini")
    button(at, "Collect").click().run()
    assert not at.exception and not at.error, at.error
    assert (lab["data_dir"] / "mini.h5").exists()
    assert any("mini" in t for t in _texts(at.success))
    table = at.dataframe[0].value
    assert list(table["dataset"]) == ["mini"] and int(table["episodes"][0]) == 3
    assert at.selectbox(key="data_browse_w").value == "mini"
    assert at.get("plotly_chart"), "actions/state plot missing"
    assert at.query_params["dataset"] in ("mini", ["mini"])

    caption = [c.value for c in at.caption if c.value.startswith("Action taken")]
    at.slider(key="data_t_w").set_value(19).run()
    caption2 = [c.value for c in at.caption if c.value.startswith("Action taken")]
    assert not at.exception and caption != caption2

    # bad names and an existing name: a message, no traceback, nothing written
    for bad, expected in (("../evil", "not a valid"), ("mini", "already exists")):
        at.text_input(key="data_name").input(bad)
        button(at, "Collect").click().run()
        assert not at.exception
        assert any(expected in t for t in _texts(at.error)), _texts(at.error)
    assert sorted(p.name for p in lab["data_dir"].iterdir()) == ["mini.h5"]

    # another data policy: refused for a task without it, recorded in the file for Push-T
    at.text_input(key="data_name").input("")
    at.selectbox(key="data_policy").set_value("expert")
    button(at, "Collect").click().run()
    assert any("tworoom has the data policies default" in t for t in _texts(at.error))
    at.selectbox(key="data_env").set_value("pusht")
    button(at, "Collect").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    with open_dataset(lab["data_dir"] / "pusht-3x20-s0-expert.h5") as f:
        assert f.attrs["policy"] == "lewm_core.envs.make_policy('pusht', policy='expert')"


# --------------------------------------------------------------------------- Train
def test_train_page_starts_and_monitors_a_job(lab: dict) -> None:
    runs_dir = lab["runs_dir"]
    shutil.copy(lab["h5"], lab["data_dir"] / "tiny.h5")
    shutil.copytree(lab["run"], runs_dir / "tiny-run")
    at = open_page("views/train.py")
    assert not at.error
    assert at.selectbox(key="train_run_w").value == "tiny-run"
    assert at.get("plotly_chart"), "curves of the existing run missing"

    at.text_input(key="train_name").input("a/b")
    button(at, "Start training").click().run()
    assert not at.exception and any("not a valid" in t for t in _texts(at.error))

    at.number_input(key="train_max_steps").set_value(3)
    at.number_input(key="train_epochs").set_value(7)
    at.number_input(key="train_batch").set_value(8)
    at.number_input(key="train_threads").set_value(1)
    at.text_input(key="train_name").input("ui-run")
    button(at, "Start training").click().run()
    run = runs_dir / "ui-run"
    try:
        assert not at.exception and not at.error, _texts(at.error)
        assert (run / jobs.JOB_FILE).exists()
        assert at.selectbox(key="train_run_w").value == "ui-run"
        assert at.query_params["run"] in ("ui-run", ["ui-run"])
        # the same name again: refused with a message (running, or already holding a run)
        button(at, "Start training").click().run()
        assert not at.exception
        assert any("already" in t for t in _texts(at.error)), _texts(at.error)

        deadline = time.monotonic() + 60
        while jobs.job_status(run)["running"] and time.monotonic() < deadline:
            time.sleep(0.5)
        at.run()
        assert not at.exception
        badges = [m.value for m in at.markdown if "-badge[" in m.value]
        assert any(b.startswith(":green-badge[") and "finished" in b for b in badges), badges
        assert int(next(m for m in at.metric if m.label == "Step").value) == 3
        # the page's epochs reach the trainer (a small dataset needs more than the preset's)
        assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 7

        at.multiselect(key="train_compare_w").select("tiny-run").run()
        assert not at.exception and at.get("plotly_chart")
    finally:
        if jobs.job_status(run)["running"]:
            jobs.stop_training(run, timeout=30)


# --------------------------------------------------------------------------- Plan
def _tiny_cem(at: AppTest) -> AppTest:
    at.radio(key="plan_cem_w").set_value("custom")
    at.number_input(key="plan_samples").set_value(32)
    at.number_input(key="plan_iters").set_value(2)
    at.number_input(key="plan_elites").set_value(8)
    at.number_input(key="plan_budget").set_value(10)
    return at.run()


def test_plan_page_without_models(lab: dict) -> None:
    at = open_page("views/plan.py")
    assert any("No model" in t for t in _texts(at.info))


def test_plan_page_plans(lab: dict) -> None:
    shutil.copytree(lab["run"], lab["runs_dir"] / "tiny-run")
    at = open_page("views/plan.py")
    assert not at.error
    assert at.selectbox(key="plan_model_w").value == "run:tiny-run"
    kinds = [c.value for c in at.caption if "This goal is of kind" in c.value]
    assert len(kinds) == 1 and ("**met**" in kinds[0] or "**move**" in kinds[0])  # Two-Room's
    _tiny_cem(at)
    assert not at.exception and not at.error
    assert not [m for m in at.metric if m.label == "Steps"]  # nothing planned yet
    button(at, "Plan").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    steps = int(next(m for m in at.metric if m.label == "Steps").value)
    assert 1 <= steps <= 10
    badges = [m.value for m in at.markdown if "-badge[" in m.value]
    assert len(badges) == 1
    median = next(m for m in at.metric if m.label == "Plan time (median)").value
    assert median.endswith(" ms")
    assert at.slider(key="plan_frame_w").value == steps  # the slider starts at the last frame
    assert at.get("plotly_chart"), "CEM convergence plot missing"
    assert at.query_params["cem"] in ("custom", ["custom"])
    assert at.selectbox(key="plan_sampling:run:tiny-run").value == "block"  # none recorded

    # the seed goes to the URL and marks the shown result as stale
    at.number_input(key="plan_seed_w").set_value(3).run()
    assert at.query_params["seed"] in ("3", ["3"])
    assert any("settings changed" in t for t in _texts(at.info))
    # start/goal from the model's own dataset (its config points at the tiny dataset)
    at.radio(key="plan_source_w").set_value("dataset").run()
    assert not at.exception and not at.error and not at.warning


def test_plan_page_starts_on_the_models_planning_defaults(lab: dict) -> None:
    """A model shipped with `--sampling independent --objective min --receding-horizon 2`
    opens the page on those settings."""
    run = lab["runs_dir"] / "tiny-independent"
    shutil.copytree(lab["run"], run)
    config = json.loads((run / "config.json").read_text())
    planning = {"sampling": "independent", "objective": "min", "receding_horizon": 2}
    (run / "config.json").write_text(json.dumps({**config, "planning": planning}))
    at = open_page("views/plan.py")
    assert at.selectbox(key="plan_model_w").value == "run:tiny-independent"
    assert not at.exception and not at.error
    assert at.selectbox(key="plan_sampling:run:tiny-independent").value == "independent"
    assert at.selectbox(key="plan_objective:run:tiny-independent").value == "min"
    assert at.number_input(key="plan_receding:run:tiny-independent").value == 2


def test_plan_page_reads_url(lab: dict) -> None:
    shutil.copytree(lab["run"], lab["runs_dir"] / "tiny-run")
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("views/plan.py")
    at.query_params.update({"seed": "7", "cem": "paper", "source": "dataset"})
    at.run()
    assert not at.exception
    assert at.number_input(key="plan_seed_w").value == 7
    assert at.radio(key="plan_cem_w").value == "paper"
    assert at.radio(key="plan_source_w").value == "dataset"


# --------------------------------------------------------------------------- real browser
@pytest.mark.browser
def test_plan_page_in_browser(request: pytest.FixtureRequest, lab: dict, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    shutil.copytree(lab["run"], lab["runs_dir"] / "tiny-run")
    url = serve_streamlit(request, tmp_path)
    idle = IDLE
    shot = Path(os.environ.get("LEWM_PLAN_SCREENSHOT", tmp_path / "plan.png"))
    args = CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(90_000)
            page.goto(url)
            page.wait_for_selector(idle)
            page.locator("[data-testid='stSidebarNav'] a", has_text="Plan").click()
            plan = page.get_by_role("button", name="Plan", exact=True)
            expect(plan).to_be_visible(timeout=30_000)
            page.wait_for_selector(idle)
            budget = page.get_by_label("Step budget")
            budget.fill("10")
            budget.press("Enter")
            page.wait_for_selector(idle)
            plan.click()
            steps = page.locator("[data-testid='stMetric']", has_text="Steps")
            # the MPC run plans several times: seconds per plan on a CPU without bf16 units
            expect(steps).to_be_visible(timeout=120_000)
            page.wait_for_selector(idle)
            rollout = page.locator("[data-testid='stImage']", has_text="rollout, step")
            expect(rollout).to_be_visible(timeout=30_000)
            expect(rollout.locator("img")).to_have_count(1, timeout=30_000)
            assert page.locator("[data-testid='stException']").count() == 0
            assert "seed=0" in page.url and "model=run" in page.url
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
