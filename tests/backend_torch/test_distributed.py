"""The gate under torch.distributed: 2 ranks launched with torchrun (gloo, CPU), real FSDP2 / FSDP1 / DDP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import paramgate

WORKER = Path(__file__).with_name("distributed_worker.py")
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def _run(scenario: str, tmp_path: Path, *, timeout: float = 120, env: dict | None = None, extra=()) -> tuple:
    """Launch two ranks; return torchrun's exit status and output, and each rank's result (None if it wrote none)."""
    assert TORCHRUN, "torchrun is not on PATH next to this Python"
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", *extra, str(WORKER), scenario, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test instead of the whole run
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    results = []
    for rank in (0, 1):
        path = tmp_path / f"{scenario}-{rank}.json"
        results.append(json.loads(path.read_text()) if path.exists() else None)
    return proc.returncode, proc.stdout + proc.stderr, results


def test_fsdp2_counts_global_sizes_once_and_names_the_rank_whose_shard_changed(tmp_path):
    code, output, (r0, r1) = _run("fsdp2", tmp_path)
    assert code == 0, output
    for r, rank in ((r0, 0), (r1, 1)):
        audit = r["audit"]
        assert audit["ok"] and audit["world"] == {"rank": rank, "size": 2}
        assert audit["totals"] == r["whole_totals"]  # global sizes, as if unsharded: nothing counted twice
        assert [p["numel"] for p in audit["params"]] == [128, 16, 256, 16, 64, 4]
        assert set(r["placements"]) == {"sharded"}
        assert r["clean"]["ok"] and r["clean"]["findings"] == []
        # The same verdict on every rank: rank 1's shard of 2.weight changed.
        findings = r["corrupted"]["findings"]
        assert [(f["code"], f["name"], f["rank"]) for f in findings] == [("PG101", "2.weight", 1)]
        assert findings[0]["message"].startswith("on rank 1: frozen parameter 2.weight changed")
    assert output.count("paramgate audit (torch, rank 0 of 2)") == 1  # report.show(): rank 0 only
    assert "rank 1 of 2" not in output


def test_ddp_replicas_that_diverge_are_pg107_naming_the_rank(tmp_path):
    code, output, (r0, r1) = _run("ddp", tmp_path)
    assert code == 0, output
    for r in (r0, r1):
        assert r["clean"]["ok"], r["clean"]
        findings = [(f["code"], f["name"], f["rank"]) for f in r["diverged"]["findings"]]
        assert findings == [("PG101", "module.0.bias", 1), ("PG107", "module.0.bias", None)]
        pg107 = r["diverged"]["findings"][1]["message"]
        assert "rank 0; rank 1 hold different copies (rank(s) 1 diverged)" in pg107
        # A replica that differed before the guard's snapshot: both ranks raise, from PG107 alone.
        assert r["guard"] == ["PG107"]


def test_fsdp1_preflight_predicts_the_units_fsdp_refuses(tmp_path):
    code, output, (r0, _) = _run("fsdp1", tmp_path)
    assert code == 0, output
    assert [(f["code"], f["name"]) for f in r0["predicted"]] == [("PG011", "0"), ("PG011", "1")]
    message = r0["predicted"][0]["message"]
    assert "0.frozen.weight" in message and "0.head.weight" in message and "use_orig_params=False" in message
    assert r0["refused"] is not None and "requires_grad" in r0["refused"]  # FSDP's own refusal, as predicted
    assert r0["fixed"] == []  # and the fix the message gives wraps fine


def test_a_rank_that_raises_during_verify_is_named_on_the_others(tmp_path):
    code, output, (r0, r1) = _run("rank_raises", tmp_path, env={"PARAMGATE_DISTRIBUTED_TIMEOUT": "60"})
    assert code == 0, output
    assert r1["error"] == "InvalidParameterError"
    assert r0["error"] == "DistributedError"
    assert r0["message"].startswith("verify failed on rank 1: InvalidParameterError: '0.weight' is on the meta device")


def test_a_rank_that_dies_does_not_hang_the_others(tmp_path):
    # torchrun tears the survivors down at its next health check after a rank dies; a long interval lets
    # rank 0 reach its own deadline first, which is what is tested.
    code, _, (r0, r1) = _run(
        "rank_dies", tmp_path, env={"PARAMGATE_DISTRIBUTED_TIMEOUT": "2"}, extra=("--monitor-interval", "20")
    )
    assert r1 is None and code != 0
    assert r0["error"] == "DistributedError"
    assert r0["message"].startswith("rank 1 went silent: no verdict within 2 s of rank 0's")
    assert 1.9 < r0["waited"] < 15


def test_zero3_placeholders_are_counted_by_ds_numel_and_fingerprinted_by_their_partition():
    # DeepSpeed's ZeRO-3 leaves an empty Parameter with ds_numel / ds_shape / ds_tensor attached;
    # the same attributes on a real Parameter stand in for it (DeepSpeed itself is not installed).
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    for layer in model:
        for p in list(layer.parameters()):
            full = p.detach().clone()
            p.data = torch.empty(0)
            p.ds_numel, p.ds_shape, p.ds_tensor = full.numel(), full.shape, full.reshape(-1)[: full.numel() // 2]
    model[0].requires_grad_(False)
    report = paramgate.audit(model, paramgate.trainable(model))
    assert report.ok
    assert [(r.name, r.numel, r.shape) for r in report.params] == [
        ("0.weight", 12, (3, 4)),
        ("0.bias", 3, (3,)),
        ("1.weight", 6, (2, 3)),
        ("1.bias", 2, (2,)),
    ]
    assert (report.totals.frozen, report.totals.trainable) == (15, 8)
    assert "ZeRO-3" in report.params[0].note
    snap = paramgate.snapshot(model)
    assert {p.placement for p in snap.prints} == {"sharded"}
    with torch.no_grad():
        model[0].weight.ds_tensor[0] += 1
    assert snap.verify(model).changed == ["0.weight"]


def test_without_distributed_the_reports_have_no_world(tmp_path):
    model = nn.Linear(2, 2)
    report = paramgate.audit(model)
    assert (report.rank, report.world_size, report.to_dict()["world"]) == (None, 1, None)
    out = tmp_path / "shown.txt"
    with out.open("w") as f:
        report.show(f)
    assert out.read_text().startswith("paramgate audit (torch)\n")


@pytest.mark.parametrize("policy", [None, {nn.Linear}, lambda m: isinstance(m, nn.Linear)])
def test_fsdp_preflight_without_mixed_units_finds_nothing(policy):
    from paramgate_torch import fsdp_preflight

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)
    findings = fsdp_preflight(model, policy)
    assert [f.name for f in findings] == ([None] if policy is None else [])


def test_fsdp_preflight_rejects_a_policy_it_cannot_read():
    from paramgate_torch import fsdp_preflight

    with pytest.raises(paramgate.InvalidArgumentError, match="auto_wrap_policy"):
        fsdp_preflight(nn.Linear(2, 2), "transformer")


def test_the_distributed_recipe_prints_what_the_docs_show(tmp_path):
    page = (Path(__file__).resolve().parents[2] / "docs" / "distributed.md").read_text(encoding="utf-8")
    script, shown = re.search(r"^```py-torchrun\n(.*?)^```\n\n```text\n(.*?)^```", page, re.S | re.M).groups()
    (tmp_path / "finetune.py").write_text(script)
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", str(tmp_path / "finetune.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip() == shown.rstrip(), "docs/distributed.md shows stale output for its torchrun recipe"
