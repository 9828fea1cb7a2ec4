"""Reports: what an audit found before training, and what a verify found after.

Both reports hold plain data only (names, shapes, counts, findings), never a
tensor, so keeping one around keeps no model alive.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from paramgate.findings import CODES, Finding
from paramgate.records import GroupRecord, ParamRecord

__all__ = ["SCHEMA_VERSION", "AuditReport", "InvarianceReport", "Totals"]

SCHEMA_VERSION = 1
"""Version of the JSON produced by ``to_dict()``; bumped on any incompatible change."""

_ROLE_ZH = {"trainable": "可训练", "frozen": "冻结", "state": "统计量"}
_SEVERITY_ZH = {"error": "错误", "warning": "警告", "info": "提示"}


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
    # CJK characters take two terminal columns.
    return sum(2 if "\u1100" <= ch <= "\uffdc" else 1 for ch in text)


def _findings_lines(findings: Sequence[Finding], lang: str) -> list[str]:
    if not findings:
        return ["没有发现问题。" if lang == "zh" else "No findings."]
    lines = []
    for f in findings:
        severity = _SEVERITY_ZH[f.severity] if lang == "zh" else f.severity.upper()
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

    def render(self, lang: str = "en") -> str:
        """A plain-text report for a terminal, in English ("en") or Chinese ("zh")."""
        zh = lang == "zh"
        header = (
            ["参数", "形状", "类型", "元素数", "角色", "优化器"]
            if zh
            else ["parameter", "shape", "dtype", "numel", "role", "optimizer"]
        )
        rows = []
        for p in self.params:
            name = p.name + (f" (= {', '.join(p.aliases)})" if p.aliases else "")
            role = _ROLE_ZH[p.role] if zh else p.role
            rows.append([name, str(list(p.shape)), p.dtype, f"{p.numel:,d}", role, self._where(p, lang)])
        where = _where_label(self.framework, self.rank, self.world_size, zh)
        title = f"paramgate 审计（{where}）" if zh else f"paramgate audit ({where})"
        lines = [title, *_table(header, rows, right=frozenset({3}))]
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
        lines += _findings_lines(self.findings, lang)
        return "\n".join(lines)

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
        if self.findings:
            lines += ["| severity | code | name | message |", "|---|---|---|---|"]
            for f in self.findings:
                msg = f.message.replace("|", "\\|")
                lines.append(f"| {f.severity} | {f.code} | `{f.name or ''}` | {msg} |")
        else:
            lines.append("No findings.")
        return "\n".join(lines) + "\n"

    def show(self, file: TextIO | None = None, *, lang: str = "en", all_ranks: bool = False) -> None:
        """Print :meth:`render` once per run: in a distributed run on rank 0 only, unless ``all_ranks``."""
        _show(self.render(lang), self.rank, file, all_ranks)

    def __str__(self) -> str:
        return self.render()


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

    def render(self, lang: str = "en") -> str:
        """A plain-text verdict, in English ("en") or Chinese ("zh")."""
        where = _where_label(self.framework, self.rank, self.world_size, lang == "zh")
        if lang == "zh":
            head = f"不变性检查（{where}）：检查了 {self.checked} 个张量，" + (
                "冻结参数逐位未变。" if self.ok else "冻结参数被改动了！"
            )
        else:
            head = f"invariance check ({where}): {self.checked} tensors checked, " + (
                "every frozen parameter is bit-for-bit unchanged." if self.ok else "frozen parameters CHANGED."
            )
        return "\n".join([head, *_findings_lines(self.findings, lang)])

    def show(self, file: TextIO | None = None, *, lang: str = "en", all_ranks: bool = False) -> None:
        """Print :meth:`render` once per run: in a distributed run on rank 0 only, unless ``all_ranks``."""
        _show(self.render(lang), self.rank, file, all_ranks)

    def __str__(self) -> str:
        return self.render()
