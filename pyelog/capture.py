"""Live capture: elog(1)'s main loop on top of the loader.

Subscribe as ``-c`` asks, then until SIGINT, SIGTERM or ``--duration``:
drain the ring (woken per buffer swap or once a second, never per event)
and hand every run of whole records to the output: a capture file
(``-o FILE``), per-session files (``-o dir=PATH``) or elog text on stdout.
On the way out the last buffers are drained, the file header gets the event
and drop counts, and every probe is detached (the loader's links and perf
fds die with the process even on SIGKILL).
"""
from __future__ import annotations

import signal
import sys
import time
from typing import Callable

from .format import ElogWriter, Provider, iter_records
from .loader import EventlogError, Loader, ProviderSpec, SUBSCRIPTION_DUMP_STATE, Subscription
from .persession import PerSessionWriter
from .text import TextPrinter


def provider_factories() -> dict[str, Callable[[], ProviderSpec]]:
    """The providers a live capture can subscribe to, by name."""
    from .providers import tcp, test
    return {"tcp": tcp.provider, "test": test.provider}


class _Stop:
    """Set by SIGINT/SIGTERM/--duration; the loop notices within a second."""

    def __init__(self) -> None:
        self.flag = False

    def __call__(self, signum, frame) -> None:
        self.flag = True


def run_capture(o, out=sys.stdout, err=sys.stderr) -> int:
    """Run a live capture for parsed elog options (see pyelog.cli.Options)."""
    factories = provider_factories()
    for s in o.subscriptions:
        if s.provider not in factories:
            known = ", ".join(sorted(factories))
            raise EventlogError(f"provider {s.provider!r} not found (available: {known})")
    loader = Loader(providers=[factories[name]() for name in dict.fromkeys(s.provider for s in o.subscriptions)])
    flags = SUBSCRIPTION_DUMP_STATE if o.dump_state else 0
    sub = loader.add_ring_subscriber(o.buffer_size, [
        Subscription(s.provider, s.level, s.keywords, flags) for s in o.subscriptions])

    stop = _Stop()
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = time.monotonic() + o.duration if o.duration else None
    received = 0
    try:
        with loader:
            providers = [Provider(*p) for p in sub.providers()]
            if o.providers:
                print(f"[Providers] {len(providers)} registered: "
                      + " ".join(p.name for p in providers), file=err)
            if o.output_dir:
                sink = PerSessionWriter(o.output_dir, providers, tcp_names=o.format_tcp)

                def consume(run) -> int:
                    n = 0
                    for rec in iter_records(run):
                        sink.write_record(rec)
                        n += 1
                    return n
            elif o.output:
                sink = ElogWriter(o.output, providers)
                consume = sink.write_records
            else:
                from .cli import _consumers
                sink = None
                printer = TextPrinter({p.provider_id: p.name for p in providers},
                                      _consumers(o.schemas), o.text)

                def consume(run) -> int:
                    lines = [printer.line(r) for r in iter_records(run)]
                    out.write("".join(line + "\n" for line in lines))
                    out.flush()
                    return len(lines)
            while not stop.flag:
                wait = 1.0
                if deadline is not None:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    wait = min(wait, 1.0)
                for run in sub.drain(timeout=wait):
                    received += consume(run)
            for run in sub.drain(timeout=0):   # what is left after the stop
                received += consume(run)
            stats = sub.stats()
            if isinstance(sink, ElogWriter):
                sink.close(dropped_events=stats.dropped)
            elif sink is not None:
                sink.close()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if o.stats:
        print(f"\n[Stats]\n  Providers: {len(providers)}\n  Events received: {received}", file=err)
        if stats.dropped:
            print(f"  Dropped events: {stats.dropped}", file=err)
        if stats.oversized:
            print(f"  Oversized events discarded: {stats.oversized}", file=err)
    return 0

