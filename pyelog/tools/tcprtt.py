# SPDX-License-Identifier: BSD-2-Clause
"""Where a TCP capture says something about the round-trip time.

Several events carry an RTT figure, each of one of two kinds: a *sample*
(one measurement: RTT_SAMPLE's ``rtt_us``, RTT's ``rtt`` and ``min_rtt``)
or a *smoothed* estimate (the kernel's srtt in RTT_SAMPLE, RTT, RTO and
IN_PROBE; RCV_SPACE's receiver-side estimate). Per-ACK samples are TRACE
events: a capture at the default level (VERBOSE) or below has, besides
IN_PROBE's srtt per segment received, only RTT at a connection's start and
end and the srtt of every RTO; reading all of them is what lets ``pyelog
summary`` and ``pyelog plot`` show how high the RTT went under loss.
"""
from __future__ import annotations

__all__ = ["SAMPLE", "SMOOTHED", "rtt_figures"]

SAMPLE = "sample"
SMOOTHED = "smoothed"

# event name -> ((field, kind), ...)
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "RTT_SAMPLE": (("rtt_us", SAMPLE), ("srtt_us", SMOOTHED)),
    "RTT": (("rtt", SAMPLE), ("min_rtt", SAMPLE), ("srtt", SMOOTHED)),
    "RTO": (("srtt_us", SMOOTHED),),
    "IN_PROBE": (("srtt_us", SMOOTHED),),
    "RCV_SPACE": (("rtt_us", SMOOTHED),),
}


def rtt_figures(name: str | None, fields: dict) -> list[tuple[int, str]]:
    """``[(µs, kind), ...]`` of the RTT figures one decoded TCP event carries.

    ``kind`` is :data:`SAMPLE` or :data:`SMOOTHED`; zero fields (the event
    had no figure, e.g. rtt_us before kernel 6.11) are left out.
    """
    spec = _FIELDS.get(name or "")
    if not spec:
        return []
    return [(us, kind) for key, kind in spec if (us := fields.get(key, 0)) > 0]
