"""``pgmix64x2`` with torch ops: fingerprints computed where a tensor lives.

A CUDA (or any non-CPU) tensor is hashed on its device in chunks; only the two
64-bit lane sums come back to the host, never the data.  The same code runs on
CPU tensors, which is how the tests check it bit for bit against
:func:`paramgate.fingerprint.pgmix_reference` without a GPU.

Each chunk goes through :func:`chunk_sums`, a pure function of torch ops.  Run
eagerly (the default) every op is its own pass over the chunk, which costs about
a hundred times the tensor's bytes in memory traffic; compiled with
``torch.compile`` (``compiled=True``, or ``PARAMGATE_TORCH_COMPILE=1``) the whole
chunk is one fused kernel that reads each byte once, after a one-time compile.
Integer ops are exact, so both give the same digest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from paramgate import Fingerprint
from paramgate.fingerprint import PGMIX_BLOCK_WORDS, block_seeds, pgmix_finish

__all__ = ["CHUNK_WORDS", "chunk_sums", "device_fingerprint"]

CHUNK_WORDS = 1 << 22
"""Words hashed per chunk: a few int64 temporaries of 32 MiB at most, whatever the tensor's size."""

_LOW31 = (1 << 31) - 1  # keeps a logical shift by 33 out of the sign bits
_MUL1 = 0xFF51AFD7ED558CCD - (1 << 64)  # fmix64's constants as signed int64
_MUL2 = 0xC4CEB9FE1A85EC53 - (1 << 64)
_compiled: Callable[..., Any] | None = None


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fmix64(x: Any) -> Any:
    """fmix64 on an int64 tensor (two's-complement wraparound is the arithmetic mod 2**64)."""
    x = x ^ ((x >> 33) & _LOW31)
    x = x * _MUL1
    x = x ^ ((x >> 33) & _LOW31)
    x = x * _MUL2
    return x ^ ((x >> 33) & _LOW31)


def chunk_sums(words: Any, first: int, seed0: int, seed1: int) -> tuple[Any, Any]:
    """The two lane sums of int32 ``words`` whose first word has index ``first`` within its block."""
    import torch

    x = words.to(torch.int64) & 0xFFFFFFFF
    index = torch.arange(words.numel(), dtype=torch.int64, device=words.device) + first
    x = x | (index << 32)
    return _fmix64(x ^ seed0).sum(), _fmix64(x ^ seed1).sum()


def _kernel(compiled: bool) -> Callable[..., Any]:
    global _compiled
    if not compiled:
        return chunk_sums
    if _compiled is None:
        import torch

        _compiled = torch.compile(chunk_sums, dynamic=True, fullgraph=True)
    return _compiled


def device_fingerprint(tensor: Any, *, compiled: bool | None = None) -> Fingerprint:
    """``pgmix64x2`` of ``tensor``'s raw bytes, computed on its device with torch ops.

    ``compiled`` fuses each chunk into one kernel with ``torch.compile`` (default:
    the ``PARAMGATE_TORCH_COMPILE`` environment variable, off when unset).
    """
    import torch

    if compiled is None:
        compiled = os.environ.get("PARAMGATE_TORCH_COMPILE", "") not in ("", "0")
    kernel = _kernel(compiled)
    data = tensor.detach()
    if data.is_conj() or data.is_neg():
        data = data.resolve_conj().resolve_neg()
    if data.dtype == torch.bool:
        data = data.view(torch.uint8)  # torch copies bools as values (any non-zero byte becomes 1): copy bytes
    data = data.contiguous()  # copies a non-contiguous view, on its device, once
    raw = data.reshape(-1).view(torch.uint8)
    size = raw.numel()
    whole = size // 4
    sums = [torch.zeros((), dtype=torch.int64, device=raw.device) for _ in range(2)]

    def add(words: Any, first: int) -> None:
        block, offset = divmod(first, PGMIX_BLOCK_WORDS)
        seeds = block_seeds(block)
        lane0, lane1 = kernel(words, offset, _signed(seeds[0]), _signed(seeds[1]))
        sums[0] += lane0
        sums[1] += lane1

    if whole:
        body = raw[: whole * 4]
        try:
            words = body.view(torch.int32)
        except RuntimeError:  # a byte view that does not start on a word boundary
            words = body.clone().view(torch.int32)
        step = min(CHUNK_WORDS, PGMIX_BLOCK_WORDS)  # powers of two: no chunk straddles two blocks
        for start in range(0, whole, step):
            add(words[start : start + step], start)
    if size % 4:
        tail = raw[whole * 4 :].to(torch.int64)
        shifts = torch.arange(0, 8 * tail.numel(), 8, dtype=torch.int64, device=raw.device)
        # The zero-padded last word, built on the device (it is below 2**24, so int32 holds it).
        add((tail << shifts).sum().reshape(1).to(torch.int32), whole)
    # Two scalars come back to the host: the digest, not the data.
    return pgmix_finish((int(sums[0].item()), int(sums[1].item())), size)
