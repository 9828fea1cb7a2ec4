"""The documentation site: every page is in mkdocs.yml's nav, and every page runs where its framework is.

``mkdocs build --strict`` (the nox session ``docs``) checks links and anchors; these
tests need no mkdocs, so every environment checks that the nav and the pages agree
and that a page importing a framework says so (else it would fail, less clearly, in
the environments without that framework).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("**/*.md"))
FENCE = re.compile(r"^```(\w[\w-]*)?\n(.*?)^```", re.S | re.M)
REQUIRES = re.compile(r"<!-- paramgate-docs: requires (\w+) -->")
IMPORT = re.compile(r"^\s*(?:import|from)\s+(torch|mindspore|jax|optax|flax)\b", re.M)
PROVIDED_BY = {"optax": "jax", "flax": "jax"}  # one environment holds the whole JAX stack


def _nav() -> list[str]:
    """The pages mkdocs.yml's nav lists, as paths relative to docs/ (a plain reading: no YAML library needed)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    return re.findall(r"^\s+-\s+(?:.*:\s+)?(\S+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav_once_and_every_nav_entry_exists():
    nav = _nav()
    twice = sorted({p for p in nav if nav.count(p) > 1})
    assert twice == [], "pages listed twice in mkdocs.yml's nav"
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert sorted(pages - set(nav)) == [], "pages under docs/ missing from mkdocs.yml's nav"
    assert sorted(set(nav) - pages) == [], "nav entries in mkdocs.yml with no page under docs/"


def test_the_cookbook_has_its_pages():
    cookbook = {Path(p).stem for p in _nav() if p.startswith("cookbook/")}
    expected = {"index", "freeze-backbone", "lora", "gradual-unfreezing", "decay-groups", "batchnorm", "distributed"}
    assert cookbook >= expected


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_that_imports_a_framework_requires_it(page):
    text = page.read_text(encoding="utf-8")
    imported = {
        PROVIDED_BY.get(name, name)
        for kind, block in FENCE.findall(text)
        if kind == "python"
        for name in IMPORT.findall(block)
    }
    required = set(REQUIRES.findall(text))
    assert imported <= required, f"{page.name} imports {sorted(imported - required)} without a requires marker"
    if page.parent.name == "cookbook":
        assert len(required) <= 1, f"{page.name}: a cookbook page runs in one framework's environment"
