"""Report output formats: GitHub annotations, colour, human sizes, Markdown, JSON."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import numpy as np
import pytest

import paramgate
from paramgate.cli import main
from paramgate.findings import Finding
from paramgate.records import ParamRecord
from paramgate.report import AuditReport, InvarianceReport, Totals, dtype_itemsize, human_bytes
from paramgate_numpy import Momentum, Parameter

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _record(name: str, numel: int = 4, dtype: str = "float32", role: str = "trainable") -> ParamRecord:
    return ParamRecord(name, (numel,), dtype, numel, role == "trainable", role)  # type: ignore[arg-type]


def _report(findings: tuple[Finding, ...]) -> AuditReport:
    params = (_record("w"), _record("b", role="frozen"))
    return AuditReport("numpy", params, None, None, findings, Totals(4, 4, 0, 8))


MIXED = (
    Finding("PG001", "error", "w", "frozen w is in group 0: 100% wrong\nsecond line\r"),
    Finding("PG006", "warning", None, "nothing trainable"),
    Finding("PG010", "info", None, "inferred, from: the optimizer"),
)


def test_github_annotations_one_line_per_finding_with_escaping():
    assert _report(MIXED).render_github().splitlines() == [
        "::error title=PG001 frozen parameter handed to the optimizer::"
        "frozen w is in group 0: 100%25 wrong%0Asecond line%0D",
        "::warning title=PG006 nothing trainable at all::nothing trainable",
        "::notice title=PG010 trainable set inferred from the optimizer::inferred, from: the optimizer",
    ]
    assert _report(()).render_github() == ""


def test_github_properties_escape_colons_commas_and_percent():
    out = _report(MIXED[:1]).render_github(file="C:/a,b%/train.py", line=7)
    assert out.startswith(
        "::error file=C%3A/a%2Cb%25/train.py,line=7,title=PG001 frozen parameter handed to the optimizer::"
    )
    assert out.endswith("\n") and out.count("\n") == 1


def test_github_annotations_for_the_invariance_report_name_the_rank():
    report = InvarianceReport("numpy", 3, (Finding("PG101", "error", "w", "w changed", rank=1),), rank=1, world_size=2)
    assert report.render_github() == "::error title=PG101 frozen parameter changed::rank 1: w changed\n"
    assert InvarianceReport("numpy", 3, ()).render_github() == ""


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from paramgate_numpy import Momentum, Parameter


            def build():
                frozen = Parameter(np.zeros(3, np.float32), "backbone.w", requires_grad=False)
                head = Parameter(np.zeros(2, np.float32), "head.w")
                return [frozen, head], Momentum([frozen, head], learning_rate=0.1, momentum=0.9, weight_decay=0.01)


            def clean():
                head = Parameter(np.zeros(2, np.float32), "head.w")
                return [head], Momentum([head], learning_rate=0.1, momentum=0.9)
            """
        )
    )
    return "train.py"


def test_cli_github_format_points_at_the_factory(script, capsys):
    assert main(["audit", f"{script}:build", "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("::") for line in lines)
    assert lines[0].startswith("::error file=train.py,line=6,title=PG001 frozen parameter handed to the optimizer::")
    assert "backbone.w" in lines[0]
    assert main(["audit", f"{script}:clean", "--format", "github"]) == 0
    assert capsys.readouterr().out == ""


def _buggy_report() -> AuditReport:
    frozen = Parameter(np.zeros((3, 4), np.float32), "backbone.weight", requires_grad=False)
    head = Parameter(np.zeros(2, np.float64), "head.bias")
    return paramgate.audit([frozen, head], Momentum([frozen, head], learning_rate=0.1, momentum=0.9, weight_decay=0.01))


def test_colour_adds_escapes_and_nothing_else():
    report = _buggy_report()
    for lang in ("en", "zh"):
        coloured = report.render(lang, color=True)
        assert "\x1b[" in coloured
        assert ANSI.sub("", coloured) == report.render(lang)
    assert "\x1b[1;31mERROR\x1b[0m PG001" in report.render(color=True)
    assert "\x1b[" not in report.render() and "\x1b[" not in str(report)
    inv = InvarianceReport("numpy", 2, (Finding("PG101", "error", "w", "w changed"),))
    assert "\x1b[" in inv.render(color=True) and ANSI.sub("", inv.render(color=True)) == inv.render()


def test_coloured_columns_line_up_by_visible_width():
    coloured = _buggy_report().render(color=True).splitlines()
    visible = [ANSI.sub("", line) for line in coloured]
    col = visible[1].index("role")
    assert visible[3][col:].startswith("frozen") and visible[4][col:].startswith("trainable")
    assert visible[3].index("group 0") == visible[4].index("group 0") == visible[1].index("optimizer")


def test_cli_colour_only_on_a_terminal_without_no_color(script, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    main(["audit", f"{script}:build"])
    assert "\x1b[" not in capsys.readouterr().out  # capsys is not a terminal

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    main(["audit", f"{script}:build"])
    assert "\x1b[" in capsys.readouterr().out

    monkeypatch.setenv("NO_COLOR", "1")
    main(["audit", f"{script}:build"])
    assert "\x1b[" not in capsys.readouterr().out

    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    main(["audit", f"{script}:build"])
    assert "\x1b[" in capsys.readouterr().out


def test_force_color_colours_a_pipe_but_no_color_wins(script, capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    main(["audit", f"{script}:build"])
    assert "\x1b[" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    main(["audit", f"{script}:build"])
    assert "\x1b[" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (6963, "6.8 KiB"),
        (1536 * 1024, "1.5 MiB"),
        (2 * 1024**3, "2.0 GiB"),
        (1024**2 - 1, "1.0 MiB"),
        (5 * 1024**6, "5.0 EiB"),
    ],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_dtype_itemsize_covers_common_names():
    assert dtype_itemsize("float32") == 4 and dtype_itemsize("torch.bfloat16") == 2
    assert dtype_itemsize("Float16") == 2 and dtype_itemsize("float8_e4m3fn") == 1
    assert dtype_itemsize("bool") == 1 and dtype_itemsize("complex128") == 16 and dtype_itemsize("uint16") == 2
    assert dtype_itemsize("int64") == 8 and dtype_itemsize("int8") == 1
    assert dtype_itemsize("quint4x2") is None


def test_size_column_in_human_units():
    params = (
        _record("w", 1741, "float32"),  # 6,964 bytes
        _record("bf", 1024, "bfloat16"),
        _record("mask", 10, "bool"),
        _record("odd", 10, "mystery"),
    )
    report = AuditReport("numpy", params, None, None, (), Totals(2785, 0, 0, 2785))
    lines = report.render().splitlines()
    assert lines[1].split() == ["parameter", "shape", "dtype", "numel", "size", "role", "optimizer"]
    assert "6.8 KiB" in lines[3] and "2.0 KiB" in lines[4] and "10 B" in lines[5]
    # Right-aligned: every size ends in the same column as the header's "size".
    end = lines[1].index("size") + len("size")
    assert lines[3][:end].endswith("6.8 KiB") and lines[5][:end].endswith("10 B") and lines[6][:end].endswith("?")
    assert "大小" in report.render("zh")


def test_a_200_character_name_keeps_columns_aligned():
    long = "x" * 200
    model = [Parameter(np.zeros((8, 2), np.float32), long), Parameter(np.zeros(2, np.float32), "b")]
    for color in (False, True):
        lines = [ANSI.sub("", line) for line in paramgate.audit(model).render(color=color).splitlines()]
        col = lines[1].index("shape")
        assert col == 202
        assert lines[3][col:].startswith("[8, 2]") and lines[4][col:].startswith("[2]")
        role = lines[1].index("role")
        assert lines[3][role:].startswith("trainable") and lines[4][role:].startswith("trainable")


def test_invariance_markdown():
    clean = InvarianceReport("numpy", 4, ())
    assert clean.render_markdown() == (
        "### paramgate invariance check (numpy): ✅ frozen parameters unchanged\n\n4 tensors checked.\n\nNo findings.\n"
    )
    bad = InvarianceReport("numpy", 4, (Finding("PG101", "error", "w", "w changed | a lot"),), rank=0, world_size=2)
    md = bad.render_markdown()
    assert md.startswith("### paramgate invariance check (numpy, rank 0 of 2): ❌ frozen parameters changed")
    assert "| error | PG101 | `w` | w changed \\| a lot |" in md


def test_json_keeps_its_schema_version():
    data = json.loads(_buggy_report().to_json())
    assert data["schema"] == "paramgate.audit" and data["schema_version"] == 1
    assert "size" not in data["params"][0]  # the JSON schema is unchanged
