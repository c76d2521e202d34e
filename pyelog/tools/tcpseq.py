# SPDX-License-Identifier: BSD-2-Clause
"""32-bit TCP sequence-space arithmetic (RFC 793's modular comparisons).

Sequence and acknowledgement numbers wrap at 2**32; "later" and
"how far apart" must be computed modulo that, as the summary and the plot
do for every segment of a capture.
"""
from __future__ import annotations

__all__ = ["SEQ_MOD", "seq_add", "seq_diff", "seq_later"]

SEQ_MOD = 1 << 32


def seq_add(a: int, n: int) -> int:
    """a + n in sequence space."""
    return (a + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """a - b in sequence space, signed: positive when a is after b."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= SEQ_MOD // 2 else d


def seq_later(new: int, old: int | None) -> int:
    """The later of two sequence numbers (old may be None: then new)."""
    return new if old is None or seq_diff(new, old) > 0 else old
