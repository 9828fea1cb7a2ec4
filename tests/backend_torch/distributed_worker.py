"""One rank of the distributed tests: ``torchrun --standalone --nproc_per_node 2 distributed_worker.py SCENARIO OUT``.

Each rank runs SCENARIO on CPU with the gloo backend and writes what it saw to
``OUT/SCENARIO-RANK.json`` for the test (tests/backend_torch/test_distributed.py)
to check.  Real FSDP2 / FSDP1 / DDP wrapping and real optimizer steps.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import paramgate

warnings.filterwarnings("ignore")  # FSDP1's deprecation notice and gloo's chatter are not what is tested


class Block(nn.Module):
    """A frozen projection and a trainable one in one module: what FSDP1 cannot flatten together."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(8, 8)
        self.head = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.frozen(x)))


def backbone_and_head() -> nn.Module:
    torch.manual_seed(0)  # the same weights on every rank, as a checkpoint load would give
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    model[0].requires_grad_(False)
    model[2].requires_grad_(False)
    return model


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 2) -> None:
    generator = torch.Generator().manual_seed(dist.get_rank())
    for _ in range(steps):
        x = torch.randn(4, 8, generator=generator)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()


def fsdp2(rank: int) -> dict:
    from torch.distributed.fsdp import fully_shard

    model = backbone_and_head()
    whole = paramgate.audit(backbone_and_head()).totals
    for layer in (model[0], model[2], model[4]):
        fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.AdamW(paramgate.trainable(model), lr=0.1, weight_decay=0.01)
    report = paramgate.audit(model, opt)
    report.show()  # printed once, by rank 0
    snap = paramgate.snapshot(model, opt)
    train(model, opt)
    clean = snap.verify(model)
    if rank == 1:
        with torch.no_grad():
            model[2].weight.to_local()[0, 0] += 1.0  # one frozen shard changes, on rank 1 only
    corrupted = snap.verify(model)
    return {
        "audit": report.to_dict(),
        "whole_totals": whole.to_dict(),
        "placements": [p.placement for p in snap.prints],
        "clean": clean.to_dict(),
        "corrupted": corrupted.to_dict(),
    }


def ddp(rank: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(backbone_and_head())
    opt = torch.optim.SGD(paramgate.trainable(model), lr=0.1, momentum=0.9)
    snap = paramgate.snapshot(model, opt)
    train(model, opt)
    clean = snap.verify(model)
    if rank == 1:
        with torch.no_grad():
            model.module[0].bias[0] = 7.0  # rank 1's replica of a frozen parameter drifts away
    diverged = snap.verify(model)
    caught = None
    try:
        with paramgate.guard(model, opt):
            train(model, opt, 1)
    except paramgate.FrozenParameterChanged as exc:  # every rank raises, so none trains on alone
        caught = [f.code for f in exc.report.findings]
    return {"clean": clean.to_dict(), "diverged": diverged.to_dict(), "guard": caught}


def fsdp1(rank: int) -> dict:
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from paramgate_torch import fsdp_preflight

    model = nn.Sequential(Block(), Block())
    predicted = [f.to_dict() for f in fsdp_preflight(model, ModuleWrapPolicy({Block}))]
    try:
        FullyShardedDataParallel(
            model, use_orig_params=False, auto_wrap_policy=ModuleWrapPolicy({Block}), device_id=torch.device("cpu")
        )
        refused = None
    except ValueError as exc:
        refused = str(exc)
    fixed = nn.Sequential(Block(), Block())
    fixed_findings = fsdp_preflight(fixed, ModuleWrapPolicy({nn.Linear}))
    FullyShardedDataParallel(
        fixed, use_orig_params=False, auto_wrap_policy=ModuleWrapPolicy({nn.Linear}), device_id=torch.device("cpu")
    )
    return {"predicted": predicted, "refused": refused, "fixed": [f.code for f in fixed_findings]}


def rank_raises(rank: int) -> dict:
    model = backbone_and_head()
    snap = paramgate.snapshot(model)
    if rank == 1:
        model[0].weight = nn.Parameter(torch.empty(16, 8, device="meta"), requires_grad=False)
    try:
        snap.verify(model)
    except paramgate.ParamGateError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None}


def rank_dies(rank: int) -> dict:
    import time

    model = backbone_and_head()
    snap = paramgate.snapshot(model)
    if rank == 1:
        os._exit(3)  # dies without a word, before the check
    start = time.monotonic()
    try:
        snap.verify(model)
    except paramgate.DistributedError as exc:
        return {"error": type(exc).__name__, "message": str(exc), "waited": time.monotonic() - start}
    return {"error": None}


SCENARIOS = {"fsdp2": fsdp2, "ddp": ddp, "fsdp1": fsdp1, "rank_raises": rank_raises, "rank_dies": rank_dies}


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    result = SCENARIOS[scenario](rank)
    (out / f"{scenario}-{rank}.json").write_text(json.dumps(result))
    if scenario != "rank_dies":
        dist.barrier()
        dist.destroy_process_group()
    # Leave without interpreter teardown: a DDP run's background threads can make the C++ runtime abort
    # ("terminate called without an active exception") while Python shuts down, after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
