"""Tests of the Streamlit app: AppTest (in-process) and one real-browser run (headless Chromium)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from lewm_testing import CHROMIUM, CHROMIUM_ARGS, HOME, IDLE, ROOT, serve_streamlit
from streamlit.testing.v1 import AppTest

from lewm_core.envs import ENV_NAMES, ENV_TITLES

os.environ.setdefault("MUJOCO_GL", "egl")

ENV_PAGE = "views/environments.py"


def _steps(at: AppTest) -> int:
    return int(next(m for m in at.metric if m.label == "Steps").value)


def _badges(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if "-badge[" in m.value]


@pytest.fixture
def env_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    at.switch_page(ENV_PAGE).run()
    assert not at.exception
    return at


def test_home_runs() -> None:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "LeWM Lab"


def _shipped_lists(at: AppTest) -> tuple[list[str], list[str]]:
    """The Welcome page's list of the tasks with a shipped model, and of those without one."""
    text = " ".join(m.value for e in at.expander for m in e.markdown).replace("\n", " ")
    with_model = re.search(r"Shipped models \(`[^`]+`\): (.*?)\.", text)
    without = re.search(r"No shipped model has learned (.*?): ", text)
    assert with_model, text
    listed = [] if with_model[1] == "none" else with_model[1].split(", ")
    return listed, without[1].split(", ") if without else []


def test_welcome_shows_the_figures_and_which_tasks_have_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hero rollouts and the diagram with their captions from figures.json; the tasks with
    a shipped model read from the models found (assets/models, or LEWM_ASSETS_DIR)."""
    index = json.loads((ROOT / "docs/figures/figures.json").read_text())
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    images = [
        (Path(url).suffix, caption)
        for im in at.image
        for url, caption in zip(im.value, im.captions, strict=True)
    ]
    assert images == [
        (".gif", index["rollouts"]["caption"]),  # a GIF stays a GIF: it plays
        (".png", index["architecture"]["caption"]),
    ]
    shipped = {
        json.loads((folder / "config.json").read_text())["data"]["env"]
        for folder in (ROOT / "assets/models").iterdir()
        if (folder / "model.safetensors").is_file()
    }
    titles = [ENV_TITLES[name] for name in ENV_NAMES]
    assert _shipped_lists(at) == (
        [t for name, t in zip(ENV_NAMES, titles, strict=True) if name in shipped],
        [t for name, t in zip(ENV_NAMES, titles, strict=True) if name not in shipped],
    )
    monkeypatch.setenv("LEWM_ASSETS_DIR", str(tmp_path))  # no model at all
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    assert _shipped_lists(at) == ([], titles)


def test_step_buttons_and_goal(env_page: AppTest) -> None:
    at = env_page
    assert not at.error
    assert _steps(at) == 0
    at.button(key="env_step_1").click().run()
    assert _steps(at) == 1
    at.button(key="env_set_goal").click().run()
    assert any(b.startswith(":green-badge[") for b in _badges(at))
    at.slider(key="env_act_0").set_value(1.0).run()
    at.slider(key="env_act_1").set_value(1.0).run()
    at.button(key="env_step_25").click().run()
    assert _steps(at) == 26
    assert any(b.startswith(":red-badge[") for b in _badges(at))
    at.button(key="env_reset").click().run()
    assert _steps(at) == 0
    assert not at.exception


@pytest.mark.parametrize("name", ENV_NAMES)
def test_each_env_renders(env_page: AppTest, name: str) -> None:
    at = env_page
    at.selectbox(key="env_name_w").select(name).run()
    assert not at.exception and not at.error, f"{name}: {at.exception or at.error}"
    assert at.query_params["env"] in (name, [name])
    at.button(key="env_step_5").click().run()
    at.button(key="env_random").click().run()
    assert _steps(at) == 6
    at.button(key="env_teleport").click().run()
    pickers = [c for c in at.color_picker if c.key and c.key.startswith("env_color_")]
    assert pickers
    pickers[0].pick("#00ff00").run()
    at.selectbox(key="env_res_w").select(96).run()
    assert not at.exception, f"{name}: {at.exception}"
    assert _steps(at) == 0  # a new resolution rebuilds and resets


def test_settings_read_from_url() -> None:
    at = AppTest.from_file(HOME, default_timeout=60)
    at.query_params.update({"env": "pusht", "seed": "7", "res": "128"})
    at.run()
    at.switch_page(ENV_PAGE)
    at.query_params.update({"env": "pusht", "seed": "7", "res": "128"})
    at.run()
    assert not at.exception
    assert at.selectbox(key="env_name_w").value == "pusht"
    assert at.number_input(key="env_seed_w").value == 7
    assert at.selectbox(key="env_res_w").value == 128


# --------------------------------------------------------------------------- real browser
@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return serve_streamlit(request, tmp_path)


@pytest.mark.browser
def test_environments_page_in_browser(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import expect, sync_playwright

    # requested here (not as an argument) so the server only starts when Chromium exists
    url = request.getfixturevalue("server")
    idle = IDLE
    shot = Path(os.environ.get("LEWM_APP_SCREENSHOT", tmp_path / "environments.png"))
    args = CHROMIUM_ARGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_selector(idle)
            page.locator("[data-testid='stSidebarNav'] a", has_text="Environments").click()
            steps = page.locator("[data-testid='stMetric']", has_text="Steps").locator(
                "[data-testid='stMetricValue']"
            )
            expect(steps).to_have_text("0")
            page.wait_for_selector(idle)
            page.get_by_role("button", name="Step", exact=True).click()
            expect(steps).to_have_text("1")
            page.wait_for_selector(idle)
            assert page.locator("[data-testid='stException']").count() == 0
            assert "env=tworoom" in page.url
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
