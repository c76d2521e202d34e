# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark 4, decoder: walk, text and JSON speed on a synthetic TCP capture, and memory.

Captures come from bench/mkcapture.py (TCP-schema records as a VERBOSE
capture holds them, ~50 bytes each), written into the scratch dir:

  walk       bench/walk.py: ElogReader yields every record as a Record
  text       ``pyelog -r FILE -e > /dev/null`` (elog(1) lines, names, schema text)
  json       ``pyelog -r FILE --json > /dev/null``
  construct  the baseline: EventHeaderStruct.parse per record (bench/walk.py
             --construct), on the first ``--construct-records`` records of the
             big file and extrapolated (a full 1 GB parse would take minutes)

Each runs in its own process; peak memory is that process's VmHWM
(bench/peakrss.py; wait4's ru_maxrss would include the parent's size). Memory is "flat" when the peak at the bigger size is within 5 MiB
of the peak at the smaller one. Sizes: walk at ``--size`` (default 1G) and
size/8; text and JSON, which are slower, at ``--print-size`` (default
size/8) and a quarter of that, to keep ``make bench`` under 10 minutes.
Text/JSON rates include interpreter start-up and schema compilation
(about 0.3 s).

Result line: ``decoder: walk=.. text=.. json=.. construct=.. walk_mib=..
text_mib=.. json_mib=.. mem_growth_mib=.. ratio=<walk / construct>``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import BENCH, ROOT, cleanup, note, parse_kv, result, scratch_dir
from mkcapture import parse_size, write_capture


def printed(path: str, option: str, records: int) -> tuple[float, float]:
    """``pyelog -r PATH OPTION > /dev/null``: (records/s by wall time, peak RSS MiB)."""
    t0 = time.perf_counter()
    cp = subprocess.run([sys.executable, str(BENCH / "peakrss.py"), "pyelog.cli", "-r", path, option],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    el = time.perf_counter() - t0
    if cp.returncode != 0:
        raise RuntimeError(f"pyelog -r {path} {option} failed: {cp.stderr[-500:]}")
    return records / el, parse_kv(cp.stderr)["peak_rss_kib"] / 1024


def walk(path: str, *extra: str) -> tuple[float, float]:
    """bench/walk.py: (records/s, peak RSS MiB)."""
    cp = subprocess.run([sys.executable, str(BENCH / "walk.py"), path, *extra],
                        check=True, stdout=subprocess.PIPE, text=True)
    kv = parse_kv(cp.stdout)
    return kv["rate"], kv["peak_rss_kib"] / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1G", help="walk capture size (K/M/G), default 1G")
    ap.add_argument("--print-size", default=None, help="text/JSON capture size, default size/8")
    ap.add_argument("--construct-records", type=int, default=300_000)
    a = ap.parse_args()
    big = parse_size(a.size)
    sizes = {"big": big, "small": big // 8}
    psize = parse_size(a.print_size) if a.print_size else big // 8
    sizes.update({"print": psize, "print_small": psize // 4})
    try:
        files: dict[str, tuple[str, int]] = {}
        made: dict[int, tuple[str, int]] = {}
        for key, size in sizes.items():
            if size not in made:
                path = os.path.join(scratch_dir(), f"tcp-{size}.elog")
                n, b = write_capture(path, size)
                note(f"wrote {path}: {b / 2**20:.0f} MiB, {n} records")
                made[size] = (path, n)
            files[key] = made[size]
        figs: dict[str, tuple[float, float]] = {}
        for key in ("big", "small"):
            figs[f"walk_{key}"] = walk(files[key][0])
        for key in ("print", "print_small"):
            path, n = files[key]
            figs[f"text_{key}"] = printed(path, "-e", n)
            figs[f"json_{key}"] = printed(path, "--json", n)
        construct, _ = walk(files["big"][0], "--construct", str(a.construct_records))
        for k, (rate, mib) in figs.items():
            path, n = files[k.split("_", 1)[1]]
            note(f"{k:17s} {os.path.getsize(path) / 2**20:6.0f} MiB {n:9d} records: "
                 f"{rate / 1e6:.3f} M records/s, peak RSS {mib:.1f} MiB")
        note(f"construct         first {a.construct_records} records: {construct / 1e6:.3f} M records/s "
             f"(a full parse of {files['big'][1]} records would take {files['big'][1] / construct:.0f} s)")
        growth = max(figs["walk_big"][1] - figs["walk_small"][1],
                     figs["text_print"][1] - figs["text_print_small"][1],
                     figs["json_print"][1] - figs["json_print_small"][1])
        result("decoder", walk=figs["walk_big"][0], text=figs["text_print"][0],
               json=figs["json_print"][0], construct=construct,
               walk_mib=figs["walk_big"][1], text_mib=figs["text_print"][1],
               json_mib=figs["json_print"][1], mem_growth_mib=growth,
               ratio=figs["walk_big"][0] / construct)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
