"""Digests of raw tensor bytes.

Adapters turn a tensor into a read-only byte view where it lives and hand it here;
the core never sees the tensor itself.  Bytes, not values: NaN == NaN and
-0.0 != +0.0 here, which is what "frozen means the same bits" requires.
"""

from __future__ import annotations

import hashlib

from typing_extensions import Buffer

from paramgate.records import Fingerprint

__all__ = ["DIGEST_NAME", "fingerprint_buffer"]

DIGEST_NAME = "blake2b-128"
"""The digest used for CPU buffers; recorded in every snapshot."""


def fingerprint_buffer(buffer: Buffer) -> Fingerprint:
    """Fingerprint a contiguous block of bytes without copying it.

    ``buffer`` is anything that exports the buffer protocol with C-contiguous
    memory (a ``memoryview`` of a NumPy array viewed as ``uint8``, say).  A
    non-contiguous view raises ``BufferError``: adapters make tensors contiguous
    first, and say so where that costs a copy.

    >>> fingerprint_buffer(b"\\x00\\x00\\x00\\x80").nbytes
    4
    """
    view = memoryview(buffer)
    if not view.c_contiguous:
        raise BufferError("fingerprint_buffer needs C-contiguous memory; make the tensor contiguous first")
    raw = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    return Fingerprint(digest=digest, nbytes=raw.nbytes)
