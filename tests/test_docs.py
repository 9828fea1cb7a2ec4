"""Every ```python block in README.md and docs/ runs, and the README shows real output."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from paramgate.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
FENCE = re.compile(r"^```(\w[\w-]*)?\n(.*?)^```", re.S | re.M)
REQUIRES = re.compile(r"<!-- paramgate-docs: requires (\w+) -->")
"""A page whose examples need a framework says so; it runs in that framework's environment."""


def _blocks(page: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(page.read_text(encoding="utf-8")) if kind == lang]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_and_print_what_the_page_shows(page, capsys):
    """Blocks share one namespace per page; a ```text block right after a block that
    prints is that block's output, verbatim."""
    text = page.read_text(encoding="utf-8")
    for needed in REQUIRES.findall(text):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{page.name} needs {needed}, which this environment does not have")
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    fences = FENCE.findall(text)
    for number, (kind, block) in enumerate(fences):
        if kind != "python":
            continue
        try:
            exec(compile(block, f"{page.name}[block {number}]", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{page.name} python block {number} failed: {type(exc).__name__}: {exc}\n{block}")
        printed = capsys.readouterr().out.rstrip()
        following = fences[number + 1] if number + 1 < len(fences) else None
        if printed and following is not None and following[0] == "text":
            assert printed == following[1].rstrip(), f"{page.name}: the output shown after block {number} is stale"


def test_readme_shows_the_real_demo_output(capsys):
    main(["demo"])
    real = capsys.readouterr().out.rstrip()
    shown = [b.rstrip() for b in _blocks(ROOT / "README.md", "text")]
    assert real in shown, "README.md's demo output is stale: paste the output of `paramgate demo`"
