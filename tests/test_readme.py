"""The README is a landing page: short, every picture and link it shows exists, and its
citation is the one the model cards use (`lewm_core.paper`)."""

from __future__ import annotations

import re

from lewm_testing import ROOT

from lewm_core import paper

README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target)


def test_every_relative_link_and_picture_exists():
    text = README.read_text()
    targets = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://"))]
    assert any(t.startswith("docs/figures/") for t in targets)  # it shows pictures
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert missing == []


def test_citation_is_the_papers_entry():
    block = re.search(r"```bibtex\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    assert block.group(1).strip() == paper.bibtex()


def test_it_stays_a_landing_page():
    text = README.read_text()
    assert len(text.split()) <= 1400
    assert "make lab" in text and "make test" in text  # the two commands, and CI's
    assert text.index("make lab") < text.index("## Results at a glance")
