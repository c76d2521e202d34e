# SPDX-License-Identifier: BSD-2-Clause
"""Walk a capture, for the decoder benchmark (run in a subprocess: peak RSS is its own).

    walk.py FILE              every record as a pyelog.records.format.Record (ElogReader)
    walk.py FILE --construct N  the baseline: the first N records' headers parsed
                              with construct (EventHeaderStruct.parse per record)

Prints ``records=N seconds=S rate=R peak_rss_kib=N`` (time excludes
interpreter start-up; peak memory is VmHWM, this process's own).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyelog.records.format import EVENT_HEADER_SIZE, ElogReader, EventHeaderStruct  # noqa: E402


def walk(path: str) -> int:
    n = 0
    with ElogReader(path) as r:
        for _rec in r:
            n += 1
    return n


def construct_walk(path: str, limit: int) -> int:
    """What a plain construct decoder does: parse each header, slice the payload."""
    n = 0
    parse = EventHeaderStruct.parse
    with ElogReader(path) as r:
        for buf, _count, _pos in r.runs():
            raw = bytes(buf)
            off, end = 0, len(raw)
            while off < end:
                h = parse(raw[off:off + EVENT_HEADER_SIZE])
                _payload = raw[off + EVENT_HEADER_SIZE:off + h.event_length]
                off += h.event_length
                n += 1
                if n >= limit:
                    return n
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--construct", type=int, default=0, metavar="N")
    a = ap.parse_args()
    t0 = time.perf_counter()
    n = construct_walk(a.file, a.construct) if a.construct else walk(a.file)
    el = time.perf_counter() - t0
    from peakrss import vm_hwm_kib
    print(f"records={n} seconds={el:.3f} rate={n / el:.0f} peak_rss_kib={vm_hwm_kib()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
