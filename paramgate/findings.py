"""Finding codes and the :class:`Finding` record.

Codes are stable: new ones are added, none is ever renumbered.  ``PG0xx`` come
from an audit (before training), ``PG1xx`` from verifying a snapshot (after).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CODES", "CodeInfo", "Finding", "Severity"]

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class CodeInfo:
    """What a finding code means, in English and in Chinese."""

    code: str
    title: str
    title_zh: str


CODES: dict[str, CodeInfo] = {
    info.code: info
    for info in (
        CodeInfo("PG001", "frozen parameter handed to the optimizer", "冻结参数被交给了优化器"),
        CodeInfo("PG002", "trainable parameter missing from the optimizer", "可训练参数不在优化器中"),
        CodeInfo("PG003", "optimizer or group with no parameters", "优化器或参数组为空"),
        CodeInfo("PG004", "the same parameter twice in the optimizer", "同一参数在优化器中出现多次"),
        CodeInfo(
            "PG005", "shared storage under different flags (tied weights)", "共享存储的参数标记不一致（权重绑定）"
        ),
        CodeInfo("PG006", "nothing trainable at all", "没有任何可训练参数"),
        CodeInfo("PG007", "optimizer holds a tensor that is not in the model", "优化器持有模型之外的张量"),
        CodeInfo("PG008", "two different parameters share one name", "两个不同参数同名"),
        CodeInfo("PG009", "frozen normalization layer in train mode", "冻结的归一化层处于训练模式（统计量仍会更新）"),
        CodeInfo("PG010", "trainable set inferred from the optimizer", "可训练集合是从优化器推断出来的"),
        CodeInfo("PG011", "FSDP unit mixes frozen and trainable parameters", "FSDP 单元混合了冻结参数和可训练参数"),
        CodeInfo("PG101", "frozen parameter changed", "冻结参数发生了变化"),
        CodeInfo("PG102", "trainable parameter never changed", "可训练参数从未变化"),
        CodeInfo("PG103", "statistics changed", "统计量（如滑动均值/方差）发生了变化"),
        CodeInfo("PG104", "parameter added or removed since the snapshot", "快照之后参数被增加或删除"),
        CodeInfo("PG105", "shape or dtype changed since the snapshot", "快照之后形状或数据类型发生了变化"),
        CodeInfo("PG106", "moved between host and device: bits not compared", "在主机与设备之间移动过：未比较比特"),
        CodeInfo("PG107", "replicas of a frozen parameter differ between ranks", "冻结参数在各进程上的副本不一致"),
    )
}
"""Every finding code paramgate emits, with its one-line title."""


@dataclass(frozen=True)
class Finding:
    """One thing the gate found.

    ``name`` is the parameter (or optimizer group, or argument) the finding is
    about; ``message`` says what is wrong and what to do, ``message_zh`` says the
    same in Chinese (empty when no translation exists).  ``rank`` is the rank of a
    distributed run where it was found, None when it holds on every rank (or the
    run is not distributed).
    """

    code: str
    severity: Severity
    name: str | None
    message: str
    message_zh: str = ""
    rank: int | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}; known codes: {', '.join(CODES)}")

    @property
    def title(self) -> str:
        """The code's one-line English title."""
        return CODES[self.code].title

    def text(self, lang: str = "en") -> str:
        """The message in ``lang`` ("en" or "zh"), falling back to English."""
        return self.message_zh if lang == "zh" and self.message_zh else self.message

    def to_dict(self) -> dict[str, object]:
        """The finding as JSON-ready data with stable keys."""
        return {
            "code": self.code,
            "severity": self.severity,
            "name": self.name,
            "title": self.title,
            "message": self.message,
            "rank": self.rank,
        }
