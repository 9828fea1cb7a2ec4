"""The HTML audit page: ``render_html`` and ``paramgate audit --html``, checked in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import paramgate
from paramgate.cli import main
from paramgate.html import render_html
from paramgate_numpy import Momentum, Parameter

HOSTILE = 'a<b>&"c'
HOSTILE_PATH = "misc." + HOSTILE


def _data(page: str) -> dict[str, object]:
    m = re.search(r'<script type="application/json" id="paramgate-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))  # type: ignore[no-any-return]


def test_page_is_self_contained():
    model = [Parameter(np.zeros((2, 3), np.float32), "backbone.w", requires_grad=False), Parameter(np.ones(2), "h.b")]
    page = render_html(paramgate.audit(model, Momentum(model, 0.1, 0.9)))
    assert page.startswith("<!DOCTYPE html>")
    for bad in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert bad not in page
    data = _data(page)
    tree = data["tree"]
    assert isinstance(tree, dict)
    assert [c["name"] for c in tree["children"]] == ["backbone", "h"]
    backbone = tree["children"][0]
    assert (backbone["role"], backbone["numel"], backbone["size"]) == ("frozen", 6, "24 B")
    assert tree["role"] == "mixed" and tree["roles"] == {"trainable": 2, "frozen": 6, "state": 0}


def test_hostile_names_are_escaped():
    name = HOSTILE + "</script><script>alert(1)</script>"
    model = [Parameter(np.zeros(2), name, requires_grad=False)]
    page = render_html(paramgate.audit(model, Momentum(model, 0.1, 0.9)))
    assert "</script><script>alert" not in page
    assert "<b>" not in page
    data = _data(page)
    leaf = data["tree"]["children"][0]  # type: ignore[index]
    # "a<b>&"c</script>..." splits on "/" into "a<b>&"c<" and "script>...".
    assert leaf["path"] == 'a<b>&"c<'
    findings = data["findings"]
    assert isinstance(findings, list) and findings[0]["name"] == name


def test_slash_separated_names():
    model = [Parameter(np.zeros(4, np.float32), "enc/layer_0/kernel"), Parameter(np.zeros(1), "enc/bias")]
    page = render_html(paramgate.audit(model, Momentum(model, 0.1, 0.9)))
    enc = _data(page)["tree"]["children"][0]  # type: ignore[index]
    assert enc["path"] == "enc" and [c["path"] for c in enc["children"]] == ["enc/layer_0", "enc/bias"]
    assert enc["children"][0]["children"][0]["param"]["shape"] == [4]


def test_cli_html_unwritable_path(tmp_path, capsys):
    factory = _write_factory(tmp_path)
    assert main(["audit", factory, "--html", str(tmp_path / "missing" / "dir" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paramgate: error: --html ") and "cannot write" in err


FACTORY = """
import numpy as np
from paramgate_numpy import Momentum, Parameter

def build():
    rng = np.random.default_rng(0)
    model = [
        Parameter(rng.random((8, 3, 3, 3), dtype=np.float32), "backbone.conv1.weight", requires_grad=False),
        Parameter(np.zeros(8, np.float32), "backbone.conv1.bias", requires_grad=False),
        Parameter(np.zeros(8, np.float32), "backbone.bn1.running_mean", requires_grad=False),
        Parameter(np.zeros((8, 2), np.float32), "head.dense.weight"),
        Parameter(np.zeros(2, np.float32), "head.dense.bias"),
        Parameter(np.zeros(1, np.float32), 'misc.a<b>&"c', requires_grad=False),
    ]
    return model, Momentum(model, 0.01, 0.9, weight_decay=0.01)
"""


def _write_factory(tmp_path: Path) -> str:
    path = tmp_path / "pgfactory.py"
    path.write_text(textwrap.dedent(FACTORY), encoding="utf-8")
    return f"{path}:build"


class _DOM(HTMLParser):
    """Collects every element with its attributes and its own text (plus the text of its descendants)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[dict[str, object]] = []
        self._stack: list[dict[str, object]] = []

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el: dict[str, object] = {"tag": tag, "attrs": dict(attrs), "text": [], "children": []}
        if self._stack:
            self._stack[-1]["children"].append(el)  # type: ignore[attr-defined]
        self.elements.append(el)
        if tag not in self.VOID:
            self._stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for el in self._stack:
            el["text"].append(data)  # type: ignore[attr-defined]


def _text(el: dict[str, object]) -> str:
    return "".join(el["text"])  # type: ignore[arg-type]


def _classes(el: dict[str, object]) -> set[str]:
    return set(str(el["attrs"].get("class") or "").split())  # type: ignore[attr-defined]


def _row_text(node: dict[str, object]) -> str:
    """The text of a tree node's own row (not of its subtree)."""
    rows = [c for c in node["children"] if "row" in _classes(c)]  # type: ignore[attr-defined]
    assert len(rows) == 1
    return _text(rows[0])


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        required = {b.strip() for b in os.environ.get("PARAMGATE_REQUIRE_BACKENDS", "").split(",")}
        if "chromium" in required:
            pytest.fail("chromium is required (PARAMGATE_REQUIRE_BACKENDS) but is not installed")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return found


def test_html_page_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    out = tmp_path / "report.html"
    assert main(["audit", _write_factory(tmp_path), "--html", str(out)]) == 1  # PG001 errors: exit code unchanged
    page = out.read_text(encoding="utf-8")
    assert 'data-rendered="true"' not in page and 'class="node' not in page  # only the script draws the tree
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", "--no-first-run"]
    dom = subprocess.run(
        [*cmd, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    parser = _DOM()
    parser.feed(dom)
    body = next(e for e in parser.elements if e["tag"] == "body")
    assert body["attrs"].get("data-rendered") == "true"  # type: ignore[attr-defined]

    nodes = {e["attrs"]["data-path"]: e for e in parser.elements if "node" in _classes(e)}  # type: ignore[index]
    assert {"backbone", "backbone.conv1", "backbone.bn1", "head", "head.dense"} <= set(nodes)
    leaves = {
        "backbone.conv1.weight": ("frozen", "216 el · 864 B", "[8, 3, 3, 3]"),
        "backbone.conv1.bias": ("frozen", "8 el · 32 B", "[8]"),
        "backbone.bn1.running_mean": ("state", "8 el · 32 B", "[8]"),
        "head.dense.weight": ("trainable", "16 el · 64 B", "[8, 2]"),
        "head.dense.bias": ("trainable", "2 el · 8 B", "[2]"),
    }
    for name, (role, size, shape) in leaves.items():
        node = nodes[name]
        assert {"leaf", f"role-{role}"} <= _classes(node), name
        row = _row_text(node)
        assert size in row and shape in row and "float32" in row and role in row, row
        assert "group 0" in row, row
    assert "role-mixed" in _classes(nodes["backbone"])  # frozen weights and statistics
    assert "role-frozen" in _classes(nodes["backbone.conv1"]) and "224 el · 896 B" in _row_text(nodes["backbone.conv1"])
    assert "role-state" in _classes(nodes["backbone.bn1"])
    assert "role-trainable" in _classes(nodes["head"]) and "18 el · 72 B" in _row_text(nodes["head"])
    backbone_row = _row_text(nodes["backbone"])
    assert "232 el · 928 B" in backbone_row and "frozen 224" in backbone_row and "state 8" in backbone_row
    assert "flagged" in _classes(nodes["backbone.conv1.weight"])
    assert 'a<b>&"c' in _row_text(nodes[HOSTILE_PATH])  # shown as text, not parsed as markup
    assert not any(e["tag"] == "b" for e in parser.elements)

    findings = [e for e in parser.elements if "finding" in _classes(e)]
    shown = {(e["attrs"].get("data-code"), e["attrs"].get("data-name")) for e in findings}  # type: ignore[attr-defined]
    assert ("PG001", "backbone.conv1.weight") in shown and ("PG001", "backbone.conv1.bias") in shown
    pg001 = next(e for e in findings if e["attrs"].get("data-name") == "backbone.conv1.weight")  # type: ignore[attr-defined]
    assert "sev-error" in _classes(pg001)
    text = _text(pg001)
    assert "error" in text and "PG001" in text and "frozen parameter handed to the optimizer" in text
    count = next(e for e in parser.elements if e["attrs"].get("id") == "findings-count")  # type: ignore[attr-defined]
    assert _text(count) == str(len(findings))

    subprocess.run(
        [*cmd, f"--screenshot={shot}", "--window-size=1200,800", out.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
