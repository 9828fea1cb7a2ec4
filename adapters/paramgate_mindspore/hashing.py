"""``pgmix64x2`` with MindSpore ops: fingerprints computed where a tensor lives.

A tensor on an Ascend or GPU device is hashed there in chunks; only the two
64-bit lane sums come back to the host, never the data.  The same code runs on
CPU tensors, which is how the tests check it bit for bit against
:func:`paramgate.fingerprint.pgmix_reference` without an accelerator.

MindSpore's int64 multiply and xor wrap around on overflow (two's complement),
which is the arithmetic modulo 2**64 the specification needs; ``>>`` is
arithmetic, so each logical shift by 33 is masked to the 31 bits that remain.
Its int64 ``sum`` is not exact, though (measured on 2.10, CPU: it accumulates in
floating point), so each lane is summed in four 16-bit limbs, whose sums stay
far below 2**53 for a chunk, and the limbs are recombined on the host.
"""

from __future__ import annotations

from typing import Any

from paramgate import Fingerprint
from paramgate.fingerprint import PGMIX_BLOCK_WORDS, block_seeds, pgmix_finish

__all__ = ["CHUNK_WORDS", "chunk_sums", "device_fingerprint"]

CHUNK_WORDS = 1 << 22
"""Words hashed per chunk: a few int64 temporaries of 32 MiB at most, whatever the tensor's size."""

_LOW31 = (1 << 31) - 1
_MUL1 = 0xFF51AFD7ED558CCD - (1 << 64)  # fmix64's constants as signed int64
_MUL2 = 0xC4CEB9FE1A85EC53 - (1 << 64)


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fmix64(x: Any, ms: Any) -> Any:
    ops = ms.ops
    mask = ms.Tensor(_LOW31, ms.int64)
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.bitwise_right_shift(x, 33), mask))
    x = x * ms.Tensor(_MUL1, ms.int64)
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.bitwise_right_shift(x, 33), mask))
    x = x * ms.Tensor(_MUL2, ms.int64)
    return ops.bitwise_xor(x, ops.bitwise_and(ops.bitwise_right_shift(x, 33), mask))


def _exact_sum(h: Any, ms: Any) -> int:
    """The sum of int64 ``h`` modulo 2**64, from four exact 16-bit limb sums (8 scalars cross to the host)."""
    ops = ms.ops
    low16 = ms.Tensor(0xFFFF, ms.int64)
    total = 0
    for k in range(4):
        limb = ops.bitwise_and(ops.bitwise_right_shift(h, 16 * k), low16) if k else ops.bitwise_and(h, low16)
        total += int(ops.sum(limb).asnumpy()) << (16 * k)
    return total & ((1 << 64) - 1)


def chunk_sums(words: Any, first: int, seed0: int, seed1: int) -> tuple[int, int]:
    """The two lane sums of int32 ``words`` whose first word has index ``first`` within its block."""
    import mindspore as ms

    ops = ms.ops
    x = ops.bitwise_and(words.astype(ms.int64), ms.Tensor(0xFFFFFFFF, ms.int64))
    index = ops.arange(first, first + words.shape[0], dtype=ms.int64)
    x = ops.bitwise_or(x, ops.bitwise_left_shift(index, 32))
    lane0 = _exact_sum(_fmix64(ops.bitwise_xor(x, ms.Tensor(seed0, ms.int64)), ms), ms)
    lane1 = _exact_sum(_fmix64(ops.bitwise_xor(x, ms.Tensor(seed1, ms.int64)), ms), ms)
    return lane0, lane1


def device_fingerprint(tensor: Any) -> Fingerprint:
    """``pgmix64x2`` of ``tensor``'s raw bytes, computed on its device with MindSpore ops."""
    import mindspore as ms

    data = tensor if tensor.is_contiguous() else tensor.contiguous()  # copies a strided view once, on its device
    flat = data.reshape(-1)
    if data.ndim == 0:
        flat = flat.copy()  # viewing a reshaped 0-d tensor's bytes crashes MindSpore 2.10; one element is copied
    raw = flat.view(ms.uint8) if data.dtype != ms.uint8 else flat
    size = int(raw.shape[0])
    whole = size // 4
    sums = [0, 0]

    def add(words: Any, first: int) -> None:
        block, offset = divmod(first, PGMIX_BLOCK_WORDS)
        seeds = block_seeds(block)
        lane0, lane1 = chunk_sums(words, offset, _signed(seeds[0]), _signed(seeds[1]))
        sums[0] += lane0
        sums[1] += lane1

    if whole:
        words = raw[: whole * 4].view(ms.int32) if size % 4 else raw.view(ms.int32)
        step = min(CHUNK_WORDS, PGMIX_BLOCK_WORDS)  # powers of two: no chunk straddles two blocks
        for start in range(0, whole, step):
            add(words[start : start + step], start)
    if size % 4:
        tail = raw[whole * 4 :].astype(ms.int64)
        shifts = ms.ops.arange(0, 8 * tail.shape[0], 8, dtype=ms.int64)
        # The zero-padded last word, built on the device (it is below 2**24, so int32 holds it).
        add(ms.ops.bitwise_left_shift(tail, shifts).sum().reshape(1).astype(ms.int32), whole)
    return pgmix_finish((sums[0], sums[1]), size)
