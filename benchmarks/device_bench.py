"""The device digest (``pgmix64x2`` with torch ops) against the memory-read speed of its device.

``python benchmarks/device_bench.py --device cuda`` on a machine with a GPU (one
prepared run: correctness check, then timings); ``--device cpu`` runs the same
code on the host, which is how it is exercised where no GPU is at hand.  Prints
one JSON object.  The figures that matter are the ratios: hashing speed, eager and
compiled with ``torch.compile``, as a share of the speed of reading the same bytes
on the same device (``t.sum()`` over int64).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from paramgate.fingerprint import pgmix_reference
from paramgate_torch.hashing import device_fingerprint


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 5) -> float:
    """The fastest of ``repeat`` runs, synchronizing the device around each."""
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(device_name: str, mib: int) -> dict[str, object]:
    """Check the device digest against the specification, then time it eager and compiled."""
    device = torch.device(device_name)

    small = torch.randn(1000, device=device)
    expected = pgmix_reference(small.cpu().numpy())  # the host copy is for this check only
    start = time.perf_counter()
    for compiled in (False, True):
        assert device_fingerprint(small, compiled=compiled) == expected, f"compiled={compiled}: digest differs"
    compile_s = time.perf_counter() - start

    words = mib * 2**20 // 8
    data = torch.arange(words, dtype=torch.int64, device=device)
    nbytes = data.numel() * data.element_size()
    device_fingerprint(data, compiled=True)  # the chunk length of a full chunk, compiled once
    read_s = timed(lambda: data.sum(), device)
    eager_s = timed(lambda: device_fingerprint(data, compiled=False), device, repeat=2)
    fused_s = timed(lambda: device_fingerprint(data, compiled=True), device)
    info = {
        "device": str(device),
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "host CPU",
        "torch": torch.__version__,
        "mib": mib,
        "read_gbps": round(nbytes / read_s / 1e9, 1),
        "eager_gbps": round(nbytes / eager_s / 1e9, 2),
        "eager_ratio": round(read_s / eager_s, 4),
        "compiled_gbps": round(nbytes / fused_s / 1e9, 1),
        "compiled_ratio": round(read_s / fused_s, 3),
        "first_compile_s": round(compile_s, 1),
    }
    if device.type == "cuda":
        info["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--mib", type=int, default=1024, help="bytes to hash, in MiB (default 1024)")
    args = parser.parse_args()
    print(json.dumps(measure(args.device, args.mib)))


if __name__ == "__main__":
    main()
