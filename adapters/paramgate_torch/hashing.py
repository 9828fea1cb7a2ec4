"""``pgmix64x2`` with torch ops: fingerprints computed where a tensor lives.

A CUDA (or any non-CPU) tensor is hashed on its device in chunks; only the two
64-bit lane sums come back to the host, never the data.  The same code runs on
CPU tensors, which is how the tests check it bit for bit against
:func:`paramgate.fingerprint.pgmix_reference` without a GPU.
"""

from __future__ import annotations

from typing import Any

from paramgate import Fingerprint
from paramgate.fingerprint import PGMIX_BLOCK_WORDS, block_seeds, pgmix_finish

__all__ = ["CHUNK_WORDS", "device_fingerprint"]

CHUNK_WORDS = 1 << 24
"""Words hashed per chunk: bounds the temporaries at about 3 x 128 MiB whatever the tensor's size."""

_LOW31 = (1 << 31) - 1  # keeps a logical shift by 33 out of the sign bits
_MUL1 = 0xFF51AFD7ED558CCD - (1 << 64)  # fmix64's constants as signed int64
_MUL2 = 0xC4CEB9FE1A85EC53 - (1 << 64)


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fmix64_(x: Any) -> Any:
    """fmix64 in place on an int64 tensor (two's-complement wraparound is the arithmetic mod 2**64)."""
    x.bitwise_xor_((x >> 33).bitwise_and_(_LOW31))
    x.mul_(_MUL1)
    x.bitwise_xor_((x >> 33).bitwise_and_(_LOW31))
    x.mul_(_MUL2)
    x.bitwise_xor_((x >> 33).bitwise_and_(_LOW31))
    return x


def _terms(words: Any, first: int, sums: list[Any]) -> None:
    """Add the lane terms of ``words`` (int64, values < 2**32) with global indices from ``first``."""
    import torch

    block, offset = divmod(first, PGMIX_BLOCK_WORDS)
    index = torch.arange(offset, offset + words.numel(), dtype=torch.int64, device=words.device)
    x = words.bitwise_or_(index.bitwise_left_shift_(32))
    del index
    for lane, seed in enumerate(block_seeds(block)):
        mixed = _fmix64_(x.bitwise_xor(_signed(seed)))
        sums[lane] += mixed.sum()
        del mixed


def device_fingerprint(tensor: Any) -> Fingerprint:
    """``pgmix64x2`` of ``tensor``'s raw bytes, computed on its device with torch ops."""
    import torch

    data = tensor.detach()
    if data.is_conj() or data.is_neg():
        data = data.resolve_conj().resolve_neg()
    data = data.contiguous()  # copies a non-contiguous view, on its device, once
    raw = data.reshape(-1).view(torch.uint8)
    size = raw.numel()
    whole = size // 4
    sums = [torch.zeros((), dtype=torch.int64, device=raw.device) for _ in range(2)]
    if whole:
        body = raw[: whole * 4]
        try:
            words = body.view(torch.int32)
        except RuntimeError:  # a byte view that does not start on a word boundary
            words = body.clone().view(torch.int32)
        for start in range(0, whole, CHUNK_WORDS):
            chunk = words[start : start + CHUNK_WORDS].to(torch.int64).bitwise_and_(0xFFFFFFFF)
            _terms(chunk, start, sums)
    if size % 4:
        tail = raw[whole * 4 :].to(torch.int64)
        shifts = torch.arange(0, 8 * tail.numel(), 8, dtype=torch.int64, device=raw.device)
        _terms(tail.bitwise_left_shift_(shifts).sum().reshape(1), whole, sums)
    # Two scalars come back to the host: the digest, not the data.
    return pgmix_finish((int(sums[0].item()), int(sums[1].item())), size)
