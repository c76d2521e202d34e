# SPDX-License-Identifier: BSD-2-Clause
"""Event timestamps: bpf/eventlog.h turns nanoseconds into microseconds
without a division (eventlog_ns_to_us: a multiply-high built from 32-bit
products). Checked against integer division: the formula transcribed here
(every kind of value), and the header's own function compiled by bcc and
run in the kernel on the same values.
"""
from __future__ import annotations

import ctypes
import os
import random
import re
from pathlib import Path

import pytest

HEADER = Path(__file__).resolve().parent.parent / "bpf" / "eventlog.h"
M64 = (1 << 64) - 1


def ns_to_us(ns: int) -> int:
    """eventlog_ns_to_us as written in C, in 64-bit arithmetic."""
    a = ns >> 3
    a0, a1 = a & 0xFFFFFFFF, a >> 32
    b0, b1 = 0xE353F7CF, 0x20C49BA5
    a0b0, a0b1, a1b0, a1b1 = (a0 * b0) & M64, (a0 * b1) & M64, (a1 * b0) & M64, (a1 * b1) & M64
    mid = ((a0b0 >> 32) + (a1b0 & 0xFFFFFFFF) + (a0b1 & 0xFFFFFFFF)) & M64
    return ((a1b1 + (a1b0 >> 32) + (a0b1 >> 32) + (mid >> 32)) & M64) >> 4


def values() -> list[int]:
    rng = random.Random(1)
    edges = [0, 1, 7, 8, 999, 1000, 1001, M64, M64 - 1, 1 << 63, (1 << 63) - 1]
    near = [k * 1000 + d for k in (1, 2**20, 2**40, 2**54 - 1, M64 // 1000) for d in (-1, 0, 1, 999)]
    return edges + [v for v in near if 0 <= v <= M64] + [rng.getrandbits(64) for _ in range(64)] + \
        [rng.getrandbits(rng.randint(1, 64)) for _ in range(64)]


def test_formula_is_integer_division():
    rng = random.Random(2)
    for ns in values() + [rng.getrandbits(64) for _ in range(200_000)]:
        assert ns_to_us(ns) == ns // 1000, ns


def _header_function() -> str:
    m = re.search(r"static __always_inline __u64 eventlog_ns_to_us\(__u64 ns\)\n\{.*?\n\}\n", HEADER.read_text(), re.S)
    assert m, "eventlog_ns_to_us not found in bpf/eventlog.h"
    return m.group(0)


PROBE = r"""
BPF_ARRAY(ns_in, u64, N);
BPF_ARRAY(us_out, u64, N);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
	if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
		return 0;
	for (u32 i = 0; i < N; i++) {
		u32 k = i;      /* the key's address goes to the helper; i stays in a register */
		u64 *in = ns_in.lookup(&k), *out = us_out.lookup(&k);
		if (in && out)
			*out = eventlog_ns_to_us(*in);
	}
	return 0;
}
"""


@pytest.mark.kernel
def test_kernel_conversion_is_integer_division():
    from bcc import BPF
    vals = values()
    b = BPF(text=(_header_function() + PROBE).encode(),
            cflags=[f"-DTARGET_PID={os.getpid()}", f"-DN={len(vals)}"])
    try:
        ins = b[b"ns_in"]
        for i, v in enumerate(vals):
            ins[ctypes.c_uint32(i)] = ctypes.c_uint64(v)
        os.getppid()
        outs = b[b"us_out"]
        got = [outs[ctypes.c_uint32(i)].value for i in range(len(vals))]
    finally:
        b.cleanup()
    assert got == [v // 1000 for v in vals]
