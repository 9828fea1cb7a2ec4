"""Reports: what an audit found before training, and what a verify found after.

Both reports hold plain data only (names, shapes, counts, findings), never a
tensor, so keeping one around keeps no model alive.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from paramgate.findings import CODES, Finding
from paramgate.records import GroupRecord, ParamRecord

__all__ = ["SCHEMA_VERSION", "AuditReport", "InvarianceReport", "Totals", "dtype_itemsize", "human_bytes"]

SCHEMA_VERSION = 1
"""Version of the JSON produced by ``to_dict()``; bumped on any incompatible change."""

_ROLE_ZH = {"trainable": "可训练", "frozen": "冻结", "state": "统计量"}
_SEVERITY_ZH = {"error": "错误", "warning": "警告", "info": "提示"}

# ANSI styles, applied only when a caller asks for colour (a terminal without NO_COLOR).
_STYLE = {
    "error": "1;31",
    "warning": "33",
    "info": "36",
    "frozen": "34",
    "trainable": "32",
    "state": "35",
    "title": "1",
    "ok": "32",
    "bad": "1;31",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

_ITEMSIZE = {
    "float64": 8,
    "double": 8,
    "float32": 4,
    "float": 4,
    "tfloat32": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "int64": 8,
    "long": 8,
    "int32": 4,
    "int": 4,
    "int16": 2,
    "short": 2,
    "int8": 1,
    "uint64": 8,
    "uint32": 4,
    "uint16": 2,
    "uint8": 1,
    "bool": 1,
    "bool_": 1,
    "complex64": 8,
    "complex128": 16,
    "cfloat": 8,
    "cdouble": 16,
}
_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

_GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def dtype_itemsize(dtype: str) -> int | None:
    """Bytes per element of a dtype named like ``float32``, ``torch.bfloat16`` or ``Float16``; None if unknown."""
    name = dtype.rsplit(".", 1)[-1].strip().lower()
    if name.startswith("float8"):
        return 1  # float8_e4m3fn, float8_e5m2, float8_e4m3fnuz, ...
    return _ITEMSIZE.get(name)


def human_bytes(n: int) -> str:
    """A byte count in binary units: ``0 B``, ``1023 B``, ``1.0 KiB``, ``6.8 KiB``, ``2.0 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if round(value, 1) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _size(numel: int, dtype: str) -> str:
    itemsize = dtype_itemsize(dtype)
    return "?" if itemsize is None else human_bytes(numel * itemsize)


def _paint(text: str, style: str, color: bool) -> str:
    return f"\x1b[{_STYLE[style]}m{text}\x1b[0m" if color and text else text


def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def _github_lines(findings: Sequence[Finding], file: str | None, line: int | None) -> str:
    """One GitHub Actions workflow command per finding (``::error title=PG001 ...::message``)."""
    out = []
    for f in findings:
        props = []
        if file is not None:
            props.append(f"file={_github_property(file)}")
            if line is not None:
                props.append(f"line={line}")
        props.append(f"title={_github_property(f'{f.code} {f.title}')}")
        message = f.message if f.rank is None else f"rank {f.rank}: {f.message}"
        out.append(f"::{_GITHUB_LEVEL[f.severity]} {','.join(props)}::{_github_data(message)}")
    return "".join(f"{command}\n" for command in out)


@dataclass(frozen=True)
class Totals:
    """Element counts by role; each tensor counted once, however many names it has."""

    trainable: int
    frozen: int
    state: int
    parameters: int

    @property
    def all(self) -> int:
        """Every element of every tensor: trainable + frozen + state."""
        return self.trainable + self.frozen + self.state

    @property
    def trainable_pct(self) -> float:
        """Trainable elements as a percentage of :attr:`all` (0.0 for an empty model)."""
        return 100.0 * self.trainable / self.all if self.all else 0.0

    def to_dict(self) -> dict[str, object]:
        """The totals as JSON-ready data with stable keys."""
        return {
            "trainable": self.trainable,
            "frozen": self.frozen,
            "state": self.state,
            "all": self.all,
            "trainable_pct": round(self.trainable_pct, 6),
        }


def _ok(findings: Sequence[Finding]) -> bool:
    return not any(f.severity == "error" for f in findings)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int]) -> list[str]:
    # Widths come from the data, so long names never push columns out of line.
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            cells.append(pad + cell if i in right else cell + pad)
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _width(text: str) -> int:
    # CJK characters take two terminal columns; ANSI colour codes take none.
    return sum(2 if "\u1100" <= ch <= "\uffdc" else 1 for ch in _ANSI.sub("", text))


def _findings_lines(findings: Sequence[Finding], lang: str, color: bool = False) -> list[str]:
    if not findings:
        return ["没有发现问题。" if lang == "zh" else "No findings."]
    lines = []
    for f in findings:
        severity = _paint(_SEVERITY_ZH[f.severity] if lang == "zh" else f.severity.upper(), f.severity, color)
        title = CODES[f.code].title_zh if lang == "zh" else f.title
        subject = f" {f.name}" if f.name else ""
        lines.append(f"{severity} {f.code}{subject}: {title}")
        if lang == "zh":
            lines.append(f"    {f.text(lang)}")
        else:
            lines += textwrap.wrap(f.text(lang), width=100, initial_indent="    ", subsequent_indent="    ")
    return lines


@dataclass(frozen=True)
class AuditReport:
    """What the optimizer will and will not touch, and what is wrong with that.

    Built by :func:`paramgate.audit`.  ``groups`` is None when no optimizer was
    given.  ``ok`` is True when no finding is an error.
    """

    framework: str
    params: tuple[ParamRecord, ...]
    groups: tuple[GroupRecord, ...] | None
    optimizer: str | None
    findings: tuple[Finding, ...]
    totals: Totals
    rank: int | None = None
    world_size: int = 1

    @property
    def ok(self) -> bool:
        """True when no finding has severity "error"."""
        return _ok(self.findings)

    def codes(self) -> list[str]:
        """The finding codes, in report order (with repeats)."""
        return [f.code for f in self.findings]

    def peft_line(self) -> str:
        """PEFT's ``print_trainable_parameters`` line, counted the same way.

        PEFT counts parameters only (not buffers), each tensor once.
        """
        pct = 100 * self.totals.trainable / self.totals.parameters if self.totals.parameters else 0.0
        return (
            f"trainable params: {self.totals.trainable:,d} || all params: {self.totals.parameters:,d}"
            f" || trainable%: {pct:.4f}"
        )

    def to_dict(self) -> dict[str, object]:
        """The whole report as JSON-ready data with stable keys and a schema version."""
        return {
            "schema": "paramgate.audit",
            "schema_version": SCHEMA_VERSION,
            "framework": self.framework,
            "ok": self.ok,
            "totals": self.totals.to_dict(),
            "params": [p.to_dict() for p in self.params],
            "optimizer": None
            if self.groups is None
            else {"type": self.optimizer, "groups": [g.to_dict() for g in self.groups]},
            "findings": [f.to_dict() for f in self.findings],
            "world": _world(self.rank, self.world_size),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def _where(self, p: ParamRecord, lang: str) -> str:
        if self.groups is None:
            return "?"
        if p.group is None:
            return "-"
        return f"组 {p.group}" if lang == "zh" else f"group {p.group}"

    def render(self, lang: str = "en", color: bool = False) -> str:
        """A plain-text report for a terminal, in English ("en") or Chinese ("zh").

        ``color`` adds ANSI colours (severities, roles); the command line asks for it
        only when writing to a terminal and ``NO_COLOR`` is unset.  Without the escape
        codes the text is exactly the uncoloured report.
        """
        zh = lang == "zh"
        header = (
            ["参数", "形状", "类型", "元素数", "大小", "角色", "优化器"]
            if zh
            else ["parameter", "shape", "dtype", "numel", "size", "role", "optimizer"]
        )
        rows = []
        for p in self.params:
            name = p.name + (f" (= {', '.join(p.aliases)})" if p.aliases else "")
            role = _paint(_ROLE_ZH[p.role] if zh else p.role, p.role, color)
            size = _size(p.numel, p.dtype)
            rows.append([name, str(list(p.shape)), p.dtype, f"{p.numel:,d}", size, role, self._where(p, lang)])
        where = _where_label(self.framework, self.rank, self.world_size, zh)
        title = _paint(f"paramgate 审计（{where}）" if zh else f"paramgate audit ({where})", "title", color)
        lines = [title, *_table(header, rows, right=frozenset({3, 4}))]
        t = self.totals
        if zh:
            lines.append(
                f"合计: 可训练 {t.trainable:,d} ({t.trainable_pct:.2f}%) | 冻结 {t.frozen:,d}"
                f" | 统计量 {t.state:,d} | 全部 {t.all:,d}"
            )
        else:
            lines.append(
                f"totals: trainable {t.trainable:,d} ({t.trainable_pct:.2f}%) | frozen {t.frozen:,d}"
                f" | state {t.state:,d} | all {t.all:,d}"
            )
        lines.append(self.peft_line())
        if self.groups is not None:
            lines.append(f"优化器: {self.optimizer}" if zh else f"optimizer: {self.optimizer}")
            for g in self.groups:
                lines.append("  " + _group_line(g, zh))
        else:
            lines.append("未提供优化器：只检查了模型本身。" if zh else "no optimizer given: checked the model alone.")
        lines += _findings_lines(self.findings, lang, color)
        return "\n".join(lines)

    def render_github(self, file: str | None = None, line: int | None = None) -> str:
        """The findings as GitHub Actions workflow commands, one line each.

        Errors become ``::error``, warnings ``::warning`` and info ``::notice``
        annotations titled with the code, e.g.
        ``::error title=PG001 frozen parameter handed to the optimizer::frozen parameter ...``.
        ``file`` and ``line`` (the training script and its factory) place the
        annotations on that line of a pull request's diff.  Empty when nothing was found.
        """
        return _github_lines(self.findings, file, line)

    def render_markdown(self) -> str:
        """The report as GitHub-flavoured Markdown (CI job summaries, PR comments)."""
        status = "✅ ok" if self.ok else "❌ errors found"
        lines = [f"### paramgate audit ({self.framework}): {status}", ""]
        lines.append("| parameter | shape | dtype | numel | role | optimizer |")
        lines.append("|---|---|---|---:|---|---|")
        for p in self.params:
            name = p.name + (f" (= {', '.join(p.aliases)})" if p.aliases else "")
            lines.append(
                f"| `{name}` | {list(p.shape)} | {p.dtype} | {p.numel:,d} | {p.role} | {self._where(p, 'en')} |"
            )
        t = self.totals
        lines += [
            "",
            f"**trainable** {t.trainable:,d} ({t.trainable_pct:.2f}%) · **frozen** {t.frozen:,d}"
            f" · **state** {t.state:,d} · **all** {t.all:,d}",
            "",
        ]
        lines += _markdown_findings(self.findings)
        return "\n".join(lines) + "\n"

    def show(self, file: TextIO | None = None, *, lang: str = "en", all_ranks: bool = False) -> None:
        """Print :meth:`render` once per run: in a distributed run on rank 0 only, unless ``all_ranks``."""
        _show(self.render(lang), self.rank, file, all_ranks)

    def __str__(self) -> str:
        return self.render()


def _markdown_findings(findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return ["No findings."]
    lines = ["| severity | code | name | message |", "|---|---|---|---|"]
    for f in findings:
        msg = f.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {f.severity} | {f.code} | `{f.name or ''}` | {msg} |")
    return lines


def _world(rank: int | None, size: int) -> dict[str, int] | None:
    return None if rank is None else {"rank": rank, "size": size}


def _where_label(framework: str, rank: int | None, size: int, zh: bool) -> str:
    if rank is None:
        return framework
    return f"{framework}，第 {rank} 号进程，共 {size} 个" if zh else f"{framework}, rank {rank} of {size}"


def _show(text: str, rank: int | None, file: TextIO | None, all_ranks: bool) -> None:
    if rank not in (None, 0) and not all_ranks:
        return  # every rank holds the same verdict: one copy in the log is enough
    print(text, file=sys.stdout if file is None else file, flush=True)


def _group_line(g: GroupRecord, zh: bool) -> str:
    # Settings the optimizer does not have (None) are left out: Adam has no momentum, a list no settings yet.
    named = (("lr", g.lr), ("momentum", g.momentum), ("weight_decay", g.weight_decay), *g.options.items())
    settings = [f"{k}={v}" for k, v in named if v is not None]
    params = ", ".join(g.params) or ("（空）" if zh else "(empty)")
    label = f"组 {g.index}" if zh else f"group {g.index}"
    return f"{label}: {' '.join([*settings, '->', params])}"


@dataclass(frozen=True)
class InvarianceReport:
    """What changed between a snapshot and now.

    ``changed`` lists frozen parameters whose bits changed (PG101),
    ``statistics_changed`` statistics that changed (PG103).  ``ok`` is True when
    no finding is an error.
    """

    framework: str
    checked: int
    findings: tuple[Finding, ...]
    rank: int | None = None
    world_size: int = 1

    @property
    def ok(self) -> bool:
        """True when no finding has severity "error"."""
        return _ok(self.findings)

    @property
    def changed(self) -> list[str]:
        """Names of frozen parameters whose bits changed (PG101)."""
        return [f.name for f in self.findings if f.code == "PG101" and f.name]

    @property
    def statistics_changed(self) -> list[str]:
        """Names of statistics tensors that changed (PG103)."""
        return [f.name for f in self.findings if f.code == "PG103" and f.name]

    def codes(self) -> list[str]:
        """The finding codes, in report order (with repeats)."""
        return [f.code for f in self.findings]

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-ready data with stable keys and a schema version."""
        return {
            "schema": "paramgate.invariance",
            "schema_version": SCHEMA_VERSION,
            "framework": self.framework,
            "ok": self.ok,
            "checked": self.checked,
            "findings": [f.to_dict() for f in self.findings],
            "world": _world(self.rank, self.world_size),
        }

    def render(self, lang: str = "en", color: bool = False) -> str:
        """A plain-text verdict, in English ("en") or Chinese ("zh"); ``color`` adds ANSI colours."""
        where = _where_label(self.framework, self.rank, self.world_size, lang == "zh")
        verdict = "ok" if self.ok else "bad"
        if lang == "zh":
            head = f"不变性检查（{where}）：检查了 {self.checked} 个张量，" + _paint(
                "冻结参数逐位未变。" if self.ok else "冻结参数被改动了！", verdict, color
            )
        else:
            head = f"invariance check ({where}): {self.checked} tensors checked, " + _paint(
                "every frozen parameter is bit-for-bit unchanged." if self.ok else "frozen parameters CHANGED.",
                verdict,
                color,
            )
        return "\n".join([head, *_findings_lines(self.findings, lang, color)])

    def render_markdown(self) -> str:
        """The verdict as GitHub-flavoured Markdown (CI job summaries, PR comments)."""
        status = "✅ frozen parameters unchanged" if self.ok else "❌ frozen parameters changed"
        where = _where_label(self.framework, self.rank, self.world_size, False)
        lines = [f"### paramgate invariance check ({where}): {status}", "", f"{self.checked} tensors checked.", ""]
        lines += _markdown_findings(self.findings)
        return "\n".join(lines) + "\n"

    def render_github(self, file: str | None = None, line: int | None = None) -> str:
        """The findings as GitHub Actions workflow commands, one line each (see :meth:`AuditReport.render_github`)."""
        return _github_lines(self.findings, file, line)

    def show(self, file: TextIO | None = None, *, lang: str = "en", all_ranks: bool = False) -> None:
        """Print :meth:`render` once per run: in a distributed run on rank 0 only, unless ``all_ranks``."""
        _show(self.render(lang), self.rank, file, all_ranks)

    def __str__(self) -> str:
        return self.render()
