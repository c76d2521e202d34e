# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark 5, soak: record at a steady rate for a long time; memory must stay flat
and every event must be accounted for.

The pyelog recorder (bench/record.py, the ``pyelog -c test -o FILE`` loop,
default buffer size) records for ``--seconds`` (default 600) while a
producer emits ``--rate`` events/s (default 1 M/s):

  batch    bench/drivers/testrun_loop.c -r RATE: test_ctl batches of 32
           SIMPLE_EVENTs from one CPU (default: cheap enough to hold the
           rate on a busy 2-core machine)
  getppid  bench/drivers/getppid_loop.c -r RATE on both CPUs (one event per
           traced syscall; needs more CPU, see bench/producer.py)

The capture goes to ``--output`` (default /dev/null: 10 minutes at 1 M/s
are 21 GB; the writer does the same work either way). Every
``--interval`` seconds the recorder's resident size is sampled. At the end:
emitted (producer events + the SESSION_CREATE) must equal written + dropped
exactly, and the resident size after warm-up (first sample past 10 % of the
run) must not grow by more than 2 MiB.

Result line: ``soak: seconds=.. rate=.. emitted=.. written=.. dropped=..
rss_start_mib=.. rss_end_mib=.. rss_growth_mib=.. ratio=<(written +
dropped) / emitted>``.
"""
from __future__ import annotations

import argparse
import subprocess
import time

from common import Getppid, Recorder, cleanup, driver, note, parse_kv, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--rate", type=float, default=1e6)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--producer", choices=("batch", "getppid"), default="batch")
    ap.add_argument("-o", "--output", default="/dev/null")
    a = ap.parse_args()
    try:
        if a.producer == "batch":
            rec = Recorder("-o", a.output)
            prod = subprocess.Popen([driver("testrun_loop"), "-p", str(rec.prog_id),
                                     "-s", str(a.seconds), "-r", str(a.rate)],
                                    stdout=subprocess.PIPE, text=True)
        else:
            g = Getppid(a.seconds, threads=2, rate=a.rate)
            rec = Recorder("-o", a.output, "--getppid-tgid", str(g.pid))
            g.go()
            prod = g.proc
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        while prod.poll() is None:
            time.sleep(min(a.interval, max(0.1, a.seconds - (time.monotonic() - t0))))
            if prod.poll() is None:
                samples.append((time.monotonic() - t0, rec.rss_kib()))
                note(f"t={samples[-1][0]:6.0f} s recorder RSS {samples[-1][1] / 1024:.1f} MiB")
        drv = parse_kv(prod.stdout.read())
        figs = rec.stop()
        emitted = drv["calls"] + (figs["emitted"] if a.producer == "getppid" else 1)
        warm = [kib for t, kib in samples if t >= 0.1 * a.seconds] or [s[1] for s in samples] or [0]
        growth = (warm[-1] - warm[0]) / 1024
        exact = emitted == figs["written"] + figs["dropped"]
        note(f"producer {drv['rate'] / 1e6:.3f} M events/s for {drv['seconds']:.0f} s; "
             f"accounting {'exact' if exact else 'MISMATCH'}; "
             f"memory {'flat' if growth <= 2 else 'GROWING'} ({growth:+.2f} MiB after warm-up)")
        result("soak", seconds=drv["seconds"], rate=drv["rate"], emitted=int(emitted),
               written=int(figs["written"]), dropped=int(figs["dropped"]),
               rss_start_mib=warm[0] / 1024, rss_end_mib=warm[-1] / 1024, rss_growth_mib=growth,
               ratio=(figs["written"] + figs["dropped"]) / emitted)
        return 0 if exact and growth <= 2 else 1
    finally:
        cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
