# SPDX-License-Identifier: BSD-2-Clause
"""The TCP provider's in-kernel subscriber: per-connection counters and an RTT histogram.

:func:`kernel_subscriber` is a :class:`~pyelog.kernel.loader.KernelSubscriberSpec`
whose C (``bpf/tcp_aggregate.bpf.c``) runs at emit time on the TCP events
its subscription lets through, with no ring: for each connection (session)
OUT and IN packets and bytes, retransmitted segments (RETRANSMIT with err
0, as ``pyelog summary`` counts them), RTT samples (count, sum, max), first
and last event; and over all connections a log2 histogram of the RTT
samples. It needs VERBOSE for the packet counters and TRACE for the RTT
samples (their events' levels). :func:`read` returns what the maps hold:
the last 65 536 connections (an LRU table; ended ones stay until it needs
room). The host instance runs it (``pyelog host serve --aggregate``) and
``pyelog stats`` prints it.
"""
from __future__ import annotations

from pyelog.kernel.loader import KernelSubscriberSpec, Loader, ProviderInstance
from pyelog.resources import bpf_source

SOURCE = "tcp_aggregate.bpf.c"           # in bpf/ (pyelog.resources)
COUNTERS = ("segs_out", "segs_in", "bytes_out", "bytes_in", "retransmits", "rtt_samples",
            "rtt_sum_us", "rtt_max_us", "first_us", "last_us", "ended")


def read(loader: Loader, inst: ProviderInstance) -> dict:
    """{"connections": {session id: {counter: value}}, "rtt_histogram":
    [count of samples in [2^k, 2^(k+1)) us for k = 0..31]}."""
    conns = {}
    for k, v in loader.bpf[inst.fn("tcp_agg_conns")].items():
        conns[k.value] = {name: getattr(v, name) for name in COUNTERS}
    hist = loader.bpf[inst.fn("tcp_agg_rtt")]
    return {"connections": conns, "rtt_histogram": [hist[hist.Key(i)].value for i in range(32)]}


def kernel_subscriber() -> KernelSubscriberSpec:
    """The spec (add it with Loader.add_kernel_subscriber, subscribe at TRACE)."""
    return KernelSubscriberSpec(name="tcp-aggregate", provider="tcp", source=bpf_source(SOURCE),
                                function="tcp_aggregate", read=read)
