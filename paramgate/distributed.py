"""Many processes, one verdict: what the core needs from a distributed run.

Under ``torchrun`` (or any launcher) every rank calls the same ``snapshot`` /
``verify`` / ``guard`` on its own part of the model.  A verify fingerprints what
this rank holds (its shard of a sharded parameter, its replica of a replicated
one) and then exchanges a small payload with every other rank: the findings it
made and the digests of its frozen replicated tensors.  Every rank ends with the
same report, naming the rank where something changed, and every rank raises
together, so training stops everywhere at once.

The exchange is the only collective step.  It carries a few bytes per tensor
(never data), and its waits are bounded: a rank that fails or goes silent makes
the others raise :class:`~paramgate.DistributedError` naming it, instead of
hanging.  The framework's adapter provides the :class:`World` (see
:class:`~paramgate.protocol.HasWorld`); the core imports no framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from paramgate.findings import Finding

__all__ = ["World", "merge_findings", "replica_findings"]


@runtime_checkable
class World(Protocol):
    """This process's place among the ranks of a distributed run, and a bounded all-gather."""

    @property
    def rank(self) -> int:
        """This process's rank, 0-based."""
        ...

    @property
    def size(self) -> int:
        """How many ranks take part."""
        ...

    def exchange(self, payload: object) -> list[object]:
        """Every rank's ``payload`` (a small picklable object), indexed by rank.

        Every rank must call it the same number of times.  Waits are bounded:
        when a rank does not deliver in time, raise
        :class:`~paramgate.DistributedError` naming it.
        """
        ...


def merge_findings(per_rank: Sequence[Sequence[Finding]], size: int) -> list[Finding]:
    """One list of findings from every rank's own.

    A finding every rank made alike (a replicated parameter moved by the
    optimizer everywhere) is kept once, without a rank; the others keep the rank
    that made them.
    """
    ranks_of: dict[tuple[str, str | None, str], list[int]] = {}
    first: dict[tuple[str, str | None, str], Finding] = {}
    for rank, findings in enumerate(per_rank):
        for f in findings:
            key = (f.code, f.name, f.message)
            ranks_of.setdefault(key, []).append(rank)
            first.setdefault(key, f)
    merged = []
    for key, ranks in ranks_of.items():
        f = first[key]
        if len(ranks) == size:
            merged.append(f)
            continue
        for rank in ranks:
            merged.append(
                Finding(
                    f.code,
                    f.severity,
                    f.name,
                    f"on rank {rank}: {f.message}",
                    f"第 {rank} 号进程：{f.message_zh}" if f.message_zh else "",
                    rank,
                )
            )
    return merged


def replica_findings(per_rank: Sequence[dict[str, bytes]]) -> list[Finding]:
    """PG107 for every frozen replicated tensor whose digest is not the same on every rank."""
    names: dict[str, None] = {}
    for digests in per_rank:
        names.update(dict.fromkeys(digests))
    findings = []
    for name in names:
        groups: dict[bytes | None, list[int]] = {}
        for rank, digests in enumerate(per_rank):
            groups.setdefault(digests.get(name), []).append(rank)
        if len(groups) < 2:
            continue
        # The largest group is taken as the reference; the others diverged from it.
        ordered = sorted(groups.values(), key=lambda ranks: (-len(ranks), ranks))
        described = "; ".join(
            "ranks " + ", ".join(map(str, ranks)) if len(ranks) > 1 else f"rank {ranks[0]}" for ranks in ordered
        )
        odd = sorted(r for ranks in ordered[1:] for r in ranks)
        findings.append(
            Finding(
                "PG107",
                "error",
                name,
                f"frozen parameter {name} should be identical on every rank (a replica), but its bits differ: "
                f"{described} hold different copies (rank(s) {', '.join(map(str, odd))} diverged). Something "
                "changed it on some ranks only (a rank-dependent in-place write, a load on one rank, a "
                "broadcast skipped): find the writer, or re-broadcast it from rank 0 before training",
                f"冻结参数 {name} 本应在每个进程上完全相同（副本），但比特不一致：{described} 持有不同的副本。"
                "请找出只在部分进程上改写它的代码，或在训练前从 0 号进程重新广播",
            )
        )
    return findings
