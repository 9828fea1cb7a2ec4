"""``pgmix64x2`` with jax ops: fingerprints computed where an array lives.

A GPU or TPU array (or one sharded over several devices) is hashed in chunks
by jit-compiled XLA programs, on its devices; only sixteen 32-bit partial sums
per chunk come back to the host, never the data.  The same code runs on CPU arrays,
which is how the tests check it bit for bit against
:func:`paramgate.fingerprint.pgmix_reference` without an accelerator.

The specification works on 64-bit lanes, but JAX computes in 32 bits unless the
global ``jax_enable_x64`` flag is on, and flipping that flag would change the
dtypes of the user's own training.  So every 64-bit value is a pair of uint32
arrays ``(hi, lo)``: multiplication mod 2**64 is built from 16-bit limbs, and
each 64-bit term is summed as eight byte-wide limbs, whose uint32 sums cannot
overflow for chunks of up to 2**24 words.  Integer ops are exact, so the digest
is the specification's, whatever the backend.

Two compiled programs share the work.  The first, compiled per array shape,
dtype and chunk length, slices one chunk of the array on its device and packs
its raw bytes into uint32 words (a transient copy of at most one chunk, 16 MiB).
The second mixes and sums the words; it is compiled once per power-of-two
length (shorter chunks are zero-padded and masked), whatever the arrays'
shapes, so a model with many shapes compiles the costly program only a few
times.  jax caches both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from paramgate import Fingerprint, InvalidParameterError
from paramgate.fingerprint import PGMIX_BLOCK_WORDS, block_seeds, pgmix_finish

__all__ = ["CHUNK_WORDS", "device_fingerprint"]

CHUNK_WORDS = 1 << 22
"""Words hashed per compiled call (16 MiB of the array); at most 2**24 (see the module docstring)."""

_MUL1 = 0xFF51AFD7ED558CCD  # fmix64's constants
_MUL2 = 0xC4CEB9FE1A85EC53
_LIMB = 0xFFFF
_MAX_ELEMENTS = (1 << 31) - 1  # slice offsets are int32 without x64

_MIN_BUCKET = 1 << 8
_programs: tuple[Callable[..., Any], Callable[..., Any]] | None = None


def _mulhi32(a: Any, b: int) -> Any:
    """The high 32 bits of the 64-bit product of uint32 ``a`` and the constant ``b``."""
    import jax.numpy as jnp

    a0, a1 = a & _LIMB, a >> 16
    b0, b1 = jnp.uint32(b & _LIMB), jnp.uint32(b >> 16)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1  # each below 2**32: exact
    middle = (p00 >> 16) + (p01 & _LIMB) + (p10 & _LIMB)  # below 3 * 2**16
    return p11 + (p01 >> 16) + (p10 >> 16) + (middle >> 16)


def _mul64(hi: Any, lo: Any, c: int) -> tuple[Any, Any]:
    """``(hi, lo) * c`` modulo 2**64, for a 64-bit constant ``c``."""
    import jax.numpy as jnp

    c_hi, c_lo = c >> 32, c & 0xFFFFFFFF
    # uint32 products wrap modulo 2**32, which is exactly the arithmetic each word needs.
    new_lo = lo * jnp.uint32(c_lo)
    new_hi = _mulhi32(lo, c_lo) + lo * jnp.uint32(c_hi) + hi * jnp.uint32(c_lo)
    return new_hi, new_lo


def _fmix64(hi: Any, lo: Any) -> tuple[Any, Any]:
    """MurmurHash3's fmix64 on 64-bit values held as uint32 pairs."""
    lo = lo ^ (hi >> 1)  # x ^= x >> 33: the shifted value is hi >> 1, in the low word only
    hi, lo = _mul64(hi, lo, _MUL1)
    lo = lo ^ (hi >> 1)
    hi, lo = _mul64(hi, lo, _MUL2)
    return hi, lo ^ (hi >> 1)


def _words(part: Any) -> Any:
    """The raw little-endian bytes of a 1-D array as uint32 words, the last one zero-padded."""
    import jax.numpy as jnp
    from jax import lax

    dtype = part.dtype
    if dtype == jnp.bool_:
        part = part.astype(jnp.uint8)  # a bool is one byte, 0 or 1, as in host memory
    elif jnp.issubdtype(dtype, jnp.complexfloating):
        # (real, imag) pairs are the memory layout of a complex number; both parts are bit-exact.
        part = jnp.stack([jnp.real(part), jnp.imag(part)], axis=-1).reshape(-1)
    size = part.dtype.itemsize
    if size == 4:
        return lax.bitcast_convert_type(part, jnp.uint32)
    if size > 4:
        # One element becomes size // 4 words, least significant first: little-endian memory order.
        return lax.bitcast_convert_type(part, jnp.uint32).reshape(-1)
    raw = part if part.dtype == jnp.uint8 else lax.bitcast_convert_type(part, jnp.uint8).reshape(-1)
    tail = -raw.shape[0] % 4
    if tail:
        raw = jnp.concatenate([raw, jnp.zeros(tail, jnp.uint8)])
    return lax.bitcast_convert_type(raw.reshape(-1, 4), jnp.uint32)


def _lane_limbs(hi: Any, lo: Any) -> Any:
    """The sums of the eight bytes of each 64-bit term (uint32, exact for up to 2**24 terms)."""
    import jax.numpy as jnp

    parts = [(word >> shift) & 0xFF for word in (lo, hi) for shift in (0, 8, 16, 24)]
    return jnp.stack([p.sum(dtype=jnp.uint32) for p in parts])


def _chunk_words(x: Any, start: Any, *, count: int, bucket: int) -> Any:
    """``count`` elements of ``x`` (flattened) from ``start``, as ``bucket`` uint32 words (zero-padded)."""
    import jax.numpy as jnp
    from jax import lax

    flat = x.reshape(-1)
    part = flat if count == flat.shape[0] else lax.dynamic_slice_in_dim(flat, start, count)
    words = _words(part)
    return jnp.pad(words, (0, bucket - words.shape[0]))


def _chunk_sums(words: Any, n: Any, first: Any, seeds: Any) -> Any:
    """Limb sums of both lanes over the first ``n`` of ``words``, whose first word has in-block index ``first``.

    ``seeds`` are the lanes' seeds as uint32 ``[hi0, lo0, hi1, lo1]``.  Compiled
    once per length of ``words`` (a power of two), whatever the array's shape.
    """
    import jax.numpy as jnp
    from jax import lax

    index = lax.iota(jnp.uint32, words.shape[0])
    valid = index < n
    hi = index + first  # the word's index within its block
    lanes = []
    for lane in (0, 1):
        mixed_hi, mixed_lo = _fmix64(hi ^ seeds[2 * lane], words ^ seeds[2 * lane + 1])
        zero = jnp.uint32(0)
        lanes.append(_lane_limbs(jnp.where(valid, mixed_hi, zero), jnp.where(valid, mixed_lo, zero)))
    return jnp.stack(lanes)


def _compiled() -> tuple[Callable[..., Any], Callable[..., Any]]:
    global _programs
    if _programs is None:
        import jax

        _programs = (jax.jit(_chunk_words, static_argnames=("count", "bucket")), jax.jit(_chunk_sums))
    return _programs


def _bucket(words: int) -> int:
    return max(_MIN_BUCKET, 1 << (words - 1).bit_length())


@functools.cache
def _split(seed: int) -> tuple[int, int]:
    return seed >> 32, seed & 0xFFFFFFFF


def device_fingerprint(array: Any) -> Fingerprint:
    """``pgmix64x2`` of ``array``'s raw bytes, computed on its device(s) by compiled XLA programs.

    ``array`` is a ``jax.Array`` of any dtype but PRNG keys (pass
    ``jax.random.key_data(key)``), on any devices, sharded or not.
    """
    import jax
    import numpy as np

    to_words, sums_of = _compiled()
    itemsize = array.dtype.itemsize
    total = int(array.size)
    nbytes = total * itemsize
    if total > _MAX_ELEMENTS:
        raise InvalidParameterError(
            f"an array of {total:,d} elements is too big for the device fingerprint (at most 2**31 - 1 "
            "elements: jax indexes in int32 without x64); shard it or split it into smaller leaves"
        )
    # Chunks hold whole words and never straddle a block (powers of two); elements per chunk:
    step_words = min(CHUNK_WORDS, PGMIX_BLOCK_WORDS)
    step = max(1, step_words * 4 // itemsize)
    partial = []
    for start in range(0, total, step):
        count = min(step, total - start)
        word = start * itemsize // 4
        block, first = divmod(word, PGMIX_BLOCK_WORDS)
        s0, s1 = (_split(s) for s in block_seeds(block))
        seeds = np.array([*s0, *s1], dtype=np.uint32)
        words = -(-count * itemsize // 4)
        chunk = to_words(array, np.int32(start), count=count, bucket=_bucket(words))
        partial.append(sums_of(chunk, np.uint32(words), np.uint32(first), seeds))
    sums = [0, 0]
    # Sixteen uint32 per chunk come back to the host: the sums, not the data.
    for limbs in jax.device_get(partial):
        for lane in (0, 1):
            sums[lane] += sum(int(v) << (8 * k) for k, v in enumerate(limbs[lane]))
    return pgmix_finish((sums[0], sums[1]), nbytes)
