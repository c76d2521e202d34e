# SPDX-License-Identifier: BSD-2-Clause
"""A kernel capture of the test provider, written to .elog and printed by
``pyelog -r FILE -e``, shows the schema's golden lines."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kernel
def test_capture_prints_golden_lines(tmp_elog):
    from pyelog.records.format import ElogWriter, ElogReader
    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.providers import test as tp

    L = Loader([tp.provider()])
    sub = L.add_ring_subscriber(65536, [Subscription("test", 5, 0xFFFFFFFF)])
    with L:
        d = tp.TestDriver(L, L.providers[0])
        d.create_session(1)
        d.emit(1, tp.SIMPLE, 1, 42)
        d.emit(1, tp.STATUS, 1, 7)
        d.emit(1, tp.FLAGS, 1, 7)
        d.emit(1, tp.COMPLEX, 1, 100)
        d.emit(1, tp.VARLEN, 1, 1, size=3)
        d.end_session(1)
        w = ElogWriter(tmp_elog, sub.providers())
        n = sum(w.write_records(run) for run in sub.drain(0))
        w.close(dropped_events=sub.stats().dropped)
    assert n == 7
    assert [r.event_id for r in ElogReader(tmp_elog)] == [0xFFFFFFFE, 0, 1, 2, 3, 4, 0xFFFFFFFF]
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from pyelog.cli import main; sys.exit(main(sys.argv[1:]))",
                          "-r", str(tmp_elog), "-e"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    golden = [
        "[test][1][SESSION_CREATE] Session created",
        "[test][1][SIMPLE_EVENT] Simple event: value=42",
        "[test][1][STATUS_EVENT] [7] Status event: status=RUNNING",
        "[test][1][FLAGS_EVENT] [7] Flags event: flags=FLAG_A|FLAG_C",
        "[test][1][COMPLEX_EVENT] [1] Complex event: value=100 status=SUCCESS flags=FLAG_B counter=-7",
        "[test][1][VARLEN_EVENT] [1] Varlen event: count=3",
        "[test][1][SESSION_END] Session ended",
    ]
    assert len(lines) == len(golden), lines
    for line, want in zip(lines, golden):
        assert line.endswith(" " + want), (line, want)
