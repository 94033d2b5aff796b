"""The reliability suite: every test here is marked `reliability` (and `reliability_full` when the
full suite runs: `pytest tests/reliability --full`, LEWM_RELIABILITY_FULL=1, or
`-m reliability_full`). The short suite runs with the other tests; the full one kills at 10+
moments per command and fuzzes more examples. The session ends with one line of what was tried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_tools import RECORD, full_mode

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    full = full_mode(config)
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
            if full:
                item.add_marker(pytest.mark.reliability_full)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not RECORD:
        return
    mode = "full" if full_mode(config) else "short"
    items = ", ".join(f"{k} {v}" for k, v in sorted(RECORD.items()))
    terminalreporter.write_line(f"reliability ({mode}): {items}")
    report = os.environ.get("LEWM_RELIABILITY_REPORT")
    if report:
        with open(report, "a") as f:
            f.write(json.dumps({"mode": mode, **RECORD}) + "\n")


@pytest.fixture(scope="session")
def full(pytestconfig: pytest.Config) -> bool:
    return full_mode(pytestconfig)
