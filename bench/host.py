# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark 7, host instance: N subscribers of one instance vs N independent recorders.

What the host instance (pyelog.kernel.host) changes is the data path: its
hooks run once per event and deliver to every subscribed slot's rings,
where N independent recorders each attach their own hooks, which run N
times. The socket that hands out the slots carries no events, so this
benchmark builds both data paths in its own process with the Loader the
instance uses (one Loader with N ring subscribers, or N Loaders with one
each), its readers draining pinned to CPU 1:

  producer  bench/drivers/getppid_loop.c calls getppid() flat out on CPU 0;
            the test provider's hook emits one event per call to N = 1, 2, 4
            subscribers; ns added per event over nothing attached (best of
            ``--rounds``: 1 by default, `make bench` has 10 minutes), and
            every subscriber's written + dropped == the hook's count (exact
            accounting)
  workload  bench/drivers/connrate.c in a namespace (connect, send, close)
            with two TCP subscribers at INFO: connections/s, as % slower
            than with nothing attached (median of ``--rounds``)

Result line: ``host: host1_ns=.. indep1_ns=.. host2_ns=.. indep2_ns=..
host4_ns=.. indep4_ns=.. conns_none=.. conns_host2=.. conns_indep2=..
host2_slower_pct=.. indep2_slower_pct=.. ratio=<indep4_ns / host4_ns>``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

from common import Getppid, cleanup, driver, median, namespace, note, result
from pyelog.kernel.loader import LEVEL_INFO, LEVEL_VERBOSE, Loader, Subscription
from pyelog.providers import tcp, test

COUNTS = (1, 2, 4)
READER_CPU = 1


def loaders(kind: str, n: int, provider, level: int) -> list[tuple[Loader, list]]:
    """``host``: one Loader with n subscribers; ``indep``: n Loaders with one each."""
    out = []
    for k in ([n] if kind == "host" else [1] * n):
        L = Loader([provider()])
        subs = [L.add_ring_subscriber(subscriptions=[Subscription(L.providers[0].name, level)])
                for _ in range(k)]
        L.start()
        out.append((L, subs))
    return out


def drain_while(proc: subprocess.Popen, built: list[tuple[Loader, list]]) -> list[int]:
    """Drain every subscriber until ``proc`` exits, then once more; events written each."""
    written = [0] * sum(len(s) for _, s in built)
    subs = [s for _, group in built for s in group]
    while True:
        done = proc.poll() is not None
        for i, s in enumerate(subs):
            for _, n in s.drain_counted(timeout=0.05 if i == 0 and not done else 0):
                written[i] += n
        if done:
            for i, s in enumerate(subs):     # both buffers
                for _ in range(2):
                    for _, n in s.drain_counted(timeout=0):
                        written[i] += n
            return written


def producer_run(kind: str, n: int, seconds: float) -> tuple[float, bool]:
    """(getppid calls/s, exact accounting) with n subscribers; kind "none": nothing."""
    g = Getppid(seconds, threads=1, first_cpu=0)
    built = loaders(kind, n, lambda: test.provider(getppid_hook=True), LEVEL_VERBOSE) \
        if kind != "none" else []
    try:
        drivers = []
        for L, _ in built:
            d = test.TestDriver(L, L.providers[0])
            d.create_session(1)                  # one SESSION_CREATE per subscriber
            d.arm_getppid(sid=1, tgid=g.pid)
            drivers.append(d)
        g.go()
        written = drain_while(g.proc, built) if built else []
        rate = g.wait()["rate"]
        exact = True
        for (L, subs), d in zip(built, drivers):
            emitted = d.disarm_getppid() + 1
            for s in subs:
                got = written.pop(0)
                exact &= got + s.stats().dropped == emitted
        return rate, exact
    finally:
        for L, _ in built:
            L.close()


def connrate_run(kind: str, ns: str, seconds: float) -> tuple[float, int]:
    """(connections/s, events written per subscriber) with two TCP subscribers at INFO."""
    built = loaders(kind, 2, tcp.provider, LEVEL_INFO) if kind != "none" else []
    try:
        p = subprocess.Popen(["ip", "netns", "exec", ns, driver("connrate"), "-s", str(seconds)],
                             stdout=subprocess.PIPE, text=True)
        written = drain_while(p, built) if built else [0]
        out = p.stdout.read()
        p.wait()
        return float(out.split("rate=")[1]), min(written)
    finally:
        for L, _ in built:
            L.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    os.sched_setaffinity(0, {READER_CPU})
    conds = [("none", 0)] + [(k, n) for n in COUNTS for k in ("host", "indep")]
    try:
        best = {c: 0.0 for c in conds}
        exact = True
        for r in range(a.rounds):
            for c in conds:
                rate, ok = producer_run(*c, a.seconds)
                best[c] = max(best[c], rate)
                exact &= ok
            note(f"producer round {r + 1}: " + " ".join(f"{k}{n or ''}={best[(k, n)] / 1e6:.2f}M/s"
                                                         for k, n in conds))
        ns_none = 1e9 / best[("none", 0)]
        added = {f"{k}{n}_ns": 1e9 / best[(k, n)] - ns_none for k, n in conds if k != "none"}
        for n in COUNTS:
            note(f"{n} subscriber(s): host instance +{added[f'host{n}_ns']:.0f} ns/event, "
                 f"{n} independent recorder(s) +{added[f'indep{n}_ns']:.0f} ns/event")
        note(f"exact accounting (written + dropped == emitted, every subscriber): {exact}")

        driver("connrate")
        figs: dict[str, list[float]] = {"none": [], "host": [], "indep": []}
        with namespace() as nsname:
            for r in range(a.rounds):
                for kind in ("none", "host", "indep")[r % 3:] + ("none", "host", "indep")[:r % 3]:
                    rate, events = connrate_run(kind, nsname, 3 * a.seconds)
                    figs[kind].append(rate)
                    note(f"workload round {r + 1} {kind:5s}: {rate:.0f} conn/s, "
                         f"{events} events per subscriber")
        m = {k: median(v) for k, v in figs.items()}
        slower = {k: 100 * (1 - m[k] / m["none"]) for k in ("host", "indep")}
        note(f"two subscribers at INFO: host instance {slower['host']:+.1f} % slower, "
             f"two independent recorders {slower['indep']:+.1f} % slower")
        result("host", **added, exact=int(exact), conns_none=m["none"], conns_host2=m["host"],
               conns_indep2=m["indep"], host2_slower_pct=slower["host"],
               indep2_slower_pct=slower["indep"], ratio=added["indep4_ns"] / added["host4_ns"])
    finally:
        cleanup()
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
