# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark 6, fleet: export speed, and one fleet report in DuckDB vs pyelog summary.

The fleet: ``--hosts`` hosts (default 50), each with a directory of two
rotated captures, ``--events`` records in all (default 100 M). Generating
100 M records one by one in Python would take minutes, so the benchmark
writes ``--variants`` distinct captures (bench/mkcapture.py; each with its
own retransmission rate and RTT) and gives host h hard links to variants h
and h+1 (mod variants): every host holds different data from its
neighbours, and the events are the same bytes an export reads from any
capture.

  export   ``pyelog export HOSTDIR -o DATASET --host hN``, one process per
           host, as many at a time as the machine has CPUs; events/s over
           the wall time of the whole fleet (``export``) and the median of
           one process's own rate (``export_proc``, start-up included)
  duckdb   ``pyelog query --csv REPORT DATASET``: the report below over the
           whole dataset, one process (DuckDB uses every CPU)
  summary  ``pyelog summary --json`` on each distinct capture, once (as many
           at a time as there are CPUs), and the same report summed in Python. A host's summary run would read
           the same bytes, so the fleet's summary time is each variant's
           time counted once per host that holds it, divided by the CPUs
           (as if the runs were spread over the machine, the best case for
           summary)

The report, per host: connections, bytes sent and received, segments out
and in, retransmitted segments, connections that retransmitted, lowest
and highest RTT. The benchmark fails (exit 1) unless DuckDB's report equals
the one built from pyelog summary for every host.

Result line: ``fleet: hosts=.. events=.. export=.. export_proc=..
dataset_mib=.. duckdb_s=.. duckdb_mib=.. summary_s=.. ratio=<summary_s /
duckdb_s>``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from common import BENCH, ROOT, cleanup, median, note, parse_kv, result, scratch_dir
from mkcapture import Gen, write_capture

CAPTURES_PER_HOST = 2
RECORD_BYTES = 72            # a mkcapture record's mean size, to size the variants

REPORT = """
SELECT host, count(*) AS connections, sum(bytes_sent) AS bytes_sent,
       sum(bytes_received) AS bytes_received, sum(segs_out) AS segs_out,
       sum(segs_in) AS segs_in, sum(retransmits) AS retransmits,
       count_if(retransmits > 0) AS connections_retransmitting,
       min(rtt_min_us) AS rtt_min_us, max(rtt_max_us) AS rtt_max_us
FROM connections GROUP BY host ORDER BY host
"""
COLUMNS = ("connections", "bytes_sent", "bytes_received", "segs_out", "segs_in", "retransmits",
           "connections_retransmitting", "rtt_min_us", "rtt_max_us")


def parse_count(text: str) -> int:
    """``100M`` -> 100 000 000 (K, M, G in powers of ten: these are events, not bytes)."""
    t = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1:] in mult else int(t)


def pyelog(*args: str) -> tuple[str, float, float]:
    """``pyelog ARGS`` in its own process: (stdout, seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    cp = subprocess.run([sys.executable, str(BENCH / "peakrss.py"), "pyelog.cli", *args],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    el = time.perf_counter() - t0
    if cp.returncode != 0:
        raise RuntimeError(f"pyelog {args[0]} failed: {cp.stderr[-800:]}")
    return cp.stdout, el, parse_kv(cp.stderr)["peak_rss_kib"] / 1024


def summary_report(rows: list[dict]) -> dict[str, int]:
    """The report's figures for one host from its pyelog summary rows."""
    rtt_min = [r["rtt_min_us"] for r in rows if r["rtt_min_us"] is not None]
    rtt_max = [r["rtt_max_us"] for r in rows if r["rtt_max_us"] is not None]
    return {"connections": len(rows),
            "bytes_sent": sum(r["bytes_sent"] for r in rows),
            "bytes_received": sum(r["bytes_received"] for r in rows),
            "segs_out": sum(r["segs_out"] for r in rows),
            "segs_in": sum(r["segs_in"] for r in rows),
            "retransmits": sum(r["retransmits"] for r in rows),
            "connections_retransmitting": sum(1 for r in rows if r["retransmits"] > 0),
            "rtt_min_us": min(rtt_min, default=None), "rtt_max_us": max(rtt_max, default=None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="100M", help="records in the fleet (K/M/G), default 100M")
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--variants", type=int, default=4, help="distinct captures (default 4)")
    a = ap.parse_args()
    target = parse_count(a.events)
    cpus = os.cpu_count() or 1
    tmp = scratch_dir()
    try:
        # -- the captures --------------------------------------------------
        variants: list[tuple[str, int]] = []
        # 1 % over: the variants' records come out a little bigger or smaller
        size = int(target * 1.01) // (a.hosts * CAPTURES_PER_HOST) * RECORD_BYTES
        t0 = time.perf_counter()
        for v in range(a.variants):
            path = os.path.join(tmp, f"variant{v}.elog")
            n, b = write_capture(path, size, Gen(loss=0.004 * v, rtt_us=20 + 15 * v, seed=v))
            variants.append((path, n))
        note(f"{a.variants} variant captures of {size / 2**20:.0f} MiB "
             f"({', '.join(str(n) for _, n in variants)} records) in {time.perf_counter() - t0:.1f} s")
        hosts: dict[str, list[int]] = {}
        events = 0
        while len(hosts) < a.hosts or events < target:
            h = len(hosts)
            held = [(h + i) % a.variants for i in range(CAPTURES_PER_HOST)]
            hosts[f"h{h:03d}"] = held
            hostdir = os.path.join(tmp, "hosts", f"h{h:03d}")
            os.makedirs(hostdir)
            for i, v in enumerate(held):
                # names as rotation writes them: one capture per period
                os.link(variants[v][0], os.path.join(hostdir, f"tcp-2026120{i + 1}.elog"))
                events += variants[v][1]
        note(f"{len(hosts)} hosts x {CAPTURES_PER_HOST} captures: {events} records, "
             f"{events * RECORD_BYTES / 2**30:.1f} GiB of captures (hard links)")

        # -- export ----------------------------------------------------------
        dataset = os.path.join(tmp, "dataset")

        def export(host: str) -> tuple[int, float]:
            _, el, _ = pyelog("export", os.path.join(tmp, "hosts", host), "-o", dataset,
                              "--host", host)
            return sum(variants[v][1] for v in hosts[host]), el

        t0 = time.perf_counter()
        with ThreadPoolExecutor(cpus) as pool:
            runs = list(pool.map(export, hosts))
        export_s = time.perf_counter() - t0
        export_rate = events / export_s
        export_proc = median([n / el for n, el in runs])
        du = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(dataset) for f in fs)
        note(f"export: {events} records in {export_s:.1f} s = {export_rate / 1e6:.2f} M events/s "
             f"({cpus} processes at a time; one process: median {export_proc / 1e6:.2f} M/s); "
             f"dataset {du / 2**20:.0f} MiB ({du / events:.1f} B/event)")

        # -- the report in DuckDB --------------------------------------------
        out, duckdb_s, duckdb_mib = pyelog("query", "--csv", REPORT, dataset)
        duck = {row["host"]: row for row in csv.DictReader(io.StringIO(out))}
        note(f"duckdb: the report over {events} records in {duckdb_s:.1f} s "
             f"({events / duckdb_s / 1e6:.1f} M events/s), peak RSS {duckdb_mib:.0f} MiB")

        # -- the report through pyelog summary -------------------------------
        with ThreadPoolExecutor(cpus) as pool:
            summaries = list(pool.map(lambda v: pyelog("summary", "--json", v[0]), variants))
        per_variant: list[tuple[list[dict], float]] = []
        for (path, n), (out, el, mib) in zip(variants, summaries):
            per_variant.append(([json.loads(line) for line in out.splitlines()], el))
            note(f"summary: {n} records in {el:.1f} s ({n / el / 1e6:.2f} M events/s), "
                 f"peak RSS {mib:.0f} MiB")
        summary_cpu_s = sum(per_variant[v][1] for held in hosts.values() for v in held)
        summary_s = summary_cpu_s / cpus
        note(f"summary: the fleet's {sum(len(h) for h in hosts.values())} captures would take "
             f"{summary_cpu_s:.0f} s one after another, {summary_s:.0f} s on {cpus} CPUs")

        # -- the two reports agree -------------------------------------------
        bad = 0
        for host, held in hosts.items():
            want = summary_report([r for v in held for r in per_variant[v][0]])
            got = duck.get(host, {})
            have = {k: (int(got[k]) if got.get(k) not in (None, "") else None) for k in COLUMNS}
            if have != want:
                bad += 1
                if bad <= 3:
                    note(f"MISMATCH {host}: duckdb {have} summary {want}")
        if bad or len(duck) != len(hosts):
            note(f"the reports differ: {bad} of {len(hosts)} hosts, {len(duck)} rows from DuckDB")
            return 1
        note(f"the reports agree for all {len(hosts)} hosts, every column")
        result("fleet", hosts=len(hosts), events=events, export=export_rate, export_proc=export_proc,
               dataset_mib=du / 2**20, duckdb_s=duckdb_s, duckdb_mib=duckdb_mib, summary_s=summary_s,
               ratio=summary_s / duckdb_s)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
