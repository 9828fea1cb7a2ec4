"""Digests of raw tensor bytes: two algorithms, one for host memory, one for devices.

Bytes, not values: NaN == NaN and -0.0 != +0.0 here, which is what "frozen means
the same bits" requires.  Every :class:`~paramgate.Fingerprint` names its
algorithm; two fingerprints made by different algorithms are never compared.

``xxh3-128`` (host memory)
    xxHash's XXH3 128-bit hash over a zero-copy view of the bytes, at memory
    speed; it releases the GIL, so big tensors hash on several cores at once.
    Buffers over :data:`CHUNK_BYTES` are hashed in chunks (in parallel when a
    pool is available) and the chunk digests hashed again, so the digest of a
    buffer never depends on how many threads computed it.

``pgmix64x2`` (devices)
    For tensors that live on an accelerator, computed there with the
    framework's own integer ops so that nothing is copied to the host.  The
    bytes are read as little-endian 32-bit words ``w[i]`` (the tail zero-padded);
    each word and its index form ``x = w | (i mod 2**32) << 32``, and two lanes
    sum ``fmix64(x ^ seed)`` (MurmurHash3's 64-bit finalizer, a bijection) modulo
    2**64.  A single flipped bit changes exactly one term, by a non-zero amount,
    so it is always detected; the index inside each term makes swapped elements
    count; two or more changes cancel with probability about 2**-64 per lane.
    :func:`pgmix_reference` is the specification, in NumPy, that adapters' device
    code is tested against.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from typing_extensions import Buffer

from paramgate.records import Fingerprint

__all__ = [
    "CHUNK_BYTES",
    "DEVICE_DIGEST",
    "DIGEST_NAME",
    "PGMIX_BLOCK_WORDS",
    "PGMIX_SEEDS",
    "block_seeds",
    "fingerprint_buffer",
    "fmix64",
    "pgmix_finish",
    "pgmix_reference",
    "reset_pool",
    "use_pool",
]

DIGEST_NAME = "xxh3-128"
"""The digest of host (CPU) memory."""

DEVICE_DIGEST = "pgmix64x2"
"""The digest adapters compute on accelerators with the framework's own ops."""

CHUNK_BYTES = 64 << 20
"""Buffers larger than this are hashed in chunks of this size (64 MiB)."""

PGMIX_SEEDS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F)
"""The two lanes' seeds of ``pgmix64x2``."""

PGMIX_BLOCK_WORDS = 1 << 32
"""Word indices are taken modulo this; each block of this many words gets its own seeds."""

_MASK = (1 << 64) - 1
_POOL: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("paramgate_pool", default=None)


def fingerprint_buffer(buffer: Buffer) -> Fingerprint:
    """Fingerprint a contiguous block of bytes without copying it (``xxh3-128``).

    ``buffer`` is anything that exports the buffer protocol with C-contiguous
    memory (a NumPy array viewed as ``uint8``, say).  A non-contiguous view raises
    ``BufferError``: adapters make tensors contiguous first, and say so where that
    costs a copy.

    >>> fingerprint_buffer(b"\\x00\\x00\\x00\\x80").nbytes
    4
    """
    import xxhash

    view = memoryview(buffer)
    if not view.c_contiguous:
        raise BufferError("fingerprint_buffer needs C-contiguous memory; make the tensor contiguous first")
    raw = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    size = raw.nbytes
    if size <= CHUNK_BYTES:
        return Fingerprint(xxhash.xxh3_128_digest(raw), size, DIGEST_NAME)
    chunks = [raw[start : start + CHUNK_BYTES] for start in range(0, size, CHUNK_BYTES)]
    pool = _POOL.get()
    parts: Iterator[bytes] = (
        pool.map(xxhash.xxh3_128_digest, chunks) if pool is not None else map(xxhash.xxh3_128_digest, chunks)
    )
    outer = xxhash.xxh3_128()
    for part in parts:
        outer.update(part)
    outer.update(size.to_bytes(8, "little"))
    return Fingerprint(outer.digest(), size, DIGEST_NAME)


def use_pool(pool: Executor | None) -> contextvars.Token[Executor | None]:
    """Let :func:`fingerprint_buffer` split big buffers over ``pool`` in this context."""
    return _POOL.set(pool)


def reset_pool(token: contextvars.Token[Executor | None]) -> None:
    """Undo :func:`use_pool`."""
    _POOL.reset(token)


def fmix64(x: int) -> int:
    """MurmurHash3's 64-bit finalizer on a Python int (a bijection on 64-bit values)."""
    x &= _MASK
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK
    x ^= x >> 33
    return x


def pgmix_finish(sums: tuple[int, int], nbytes: int) -> Fingerprint:
    """Turn the two lane sums of ``pgmix64x2`` into a fingerprint (shared by every implementation)."""
    length = fmix64(nbytes ^ 0x5851F42D4C957F2D)
    a = fmix64((sums[0] & _MASK) ^ length)
    b = fmix64((sums[1] & _MASK) ^ fmix64(length))
    return Fingerprint(a.to_bytes(8, "little") + b.to_bytes(8, "little"), nbytes, DEVICE_DIGEST)


def block_seeds(block: int) -> tuple[int, int]:
    """The two lanes' seeds for words ``block * 2**32`` to ``(block + 1) * 2**32 - 1``."""
    if block == 0:
        return PGMIX_SEEDS
    return (PGMIX_SEEDS[0] ^ fmix64(block), PGMIX_SEEDS[1] ^ fmix64(~block))


def pgmix_reference(buffer: Buffer) -> Fingerprint:
    """``pgmix64x2`` in NumPy: the specification device implementations are tested against.

    Copies the buffer (padding it to whole words); meant for tests and small
    tensors, not for speed.
    """
    import numpy as np

    raw = memoryview(buffer).cast("B")
    size = raw.nbytes
    padded = np.zeros((size + 3) // 4 * 4, dtype=np.uint8)
    padded[:size] = np.frombuffer(raw, dtype=np.uint8)
    words = padded.view("<u4").astype(np.uint64)
    sums = [0, 0]
    for start in range(0, len(words), PGMIX_BLOCK_WORDS):
        block = words[start : start + PGMIX_BLOCK_WORDS]
        seeds = block_seeds(start // PGMIX_BLOCK_WORDS)
        x = block | (np.arange(len(block), dtype=np.uint64) << np.uint64(32))
        for lane in (0, 1):
            sums[lane] += int(_fmix64_np(x ^ np.uint64(seeds[lane])).sum(dtype=np.uint64))
    return pgmix_finish((sums[0], sums[1]), size)


def _fmix64_np(x: Any) -> Any:
    import numpy as np

    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))
