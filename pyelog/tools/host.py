# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog host``: the host instance that recorders share (pyelog.kernel.host).

    pyelog host serve [--slots N] [-b SIZE] [--provider NAME]... [--socket PATH]
                      [--group NAME] [--service] [--aggregate]
    pyelog host status [--socket PATH] [--json]
    pyelog host stats [--socket PATH] [--json]

``serve`` runs the host instance in the foreground: every provider (or
those ``--provider`` names) loaded and attached once, ``--slots``
subscriber slots, a Unix socket where ``pyelog -c`` attaches. A recorder
that finds none starts one itself, with the providers it subscribes to.
Without ``--service`` it ends when its last subscriber leaves (or when none
came within 30 s); with it, it runs until SIGTERM (the systemd unit,
systemd/pyelog-host.service). It holds everything by file descriptor and
pins nothing: however it ends, nothing of it stays attached.

Who may attach: root (and the user running the instance); with ``--group``,
also that group's members (the socket is made 0660 and given to the
group; the instance checks each peer's credentials again).

``status`` prints the instance's pid, subscribers (the pid and uid in
each slot), live sessions and the events its providers lost before any ring.

``--aggregate`` runs the TCP provider's in-kernel subscriber
(pyelog.providers.tcp_aggregate): per-connection packet, byte,
retransmission and RTT counters and an RTT histogram, kept in maps as the
events are emitted, with no ring and no recorder; ``stats`` prints them
(the last 65 536 connections). Use it with ``--service``: without, the
instance ends 30 s after its last ring subscriber, or its start.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from pyelog.kernel.host import DEFAULT_SLOTS, HostError, HostInstance, log_path, socket_path, status
from pyelog.kernel.loader import LEVEL_NONE, LEVEL_TRACE, MAX_SESSIONS_DEFAULT
from pyelog.kernel.ring import BUFFER_SIZE_DEFAULT
from pyelog.providers import registry, tcp_aggregate
from pyelog.tools.command import ArgumentParser, ToolError, UsageError, parse_size, run_reporting


def _size(text: str) -> int:
    """``-b`` as ``pyelog -c -b`` reads it (K/M/G, 64 KiB to 1023 MiB)."""
    try:
        return parse_size(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(a: argparse.Namespace) -> int:
    from pyelog.kernel.bpf import unavailable_reason
    from pyelog.tools.capture import kernel_load_errors
    reason = unavailable_reason()
    if reason:
        raise ToolError(reason)
    known = registry()
    unknown = [n for n in a.provider or () if n not in known]
    if unknown:
        raise ToolError(f"provider {unknown[0]!r} not found (available: {', '.join(sorted(known))})")
    names = list(dict.fromkeys(a.provider or known))
    if a.aggregate and "tcp" not in names:
        raise ToolError("--aggregate counts the tcp provider's events: add --provider tcp")
    # The TCP aggregate is compiled in whenever TCP is (off unless asked):
    # one program text for every instance that runs TCP.
    kernel = [(tcp_aggregate.kernel_subscriber(), LEVEL_TRACE if a.aggregate else LEVEL_NONE)
              ] if "tcp" in names else []
    with kernel_load_errors():
        inst = HostInstance([known[name]() for name in names], slots=a.slots,
                            buffer_size=a.buffer_size, max_sessions=MAX_SESSIONS_DEFAULT,
                            path=a.socket, group=a.group, service=a.service,
                            kernel_subscribers=kernel)

    def ready() -> None:
        if a.spawned:
            # Started by a recorder, which reads our stderr only until now:
            # from here on what we have to say (an error that ends us) goes
            # to a log beside the socket, which a subscriber's error names.
            null = os.open(os.devnull, os.O_RDWR)
            try:
                # Not through a symlink: the socket's directory may be
                # anyone's (PYELOG_HOST_SOCKET), and we are root.
                log = os.open(log_path(inst.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                              | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                inst.log = log_path(inst.path)
            except OSError:
                log = os.dup(null)
            os.dup2(null, 1)
            os.dup2(log, 2)
            os.close(null)
            os.close(log)
        print(f"pyelog host: serving on {inst.path} (pid {os.getpid()}, {a.slots} slots of "
              f"{a.buffer_size} bytes per CPU buffer)", file=sys.stderr, flush=True)

    with kernel_load_errors():
        inst.open()
    return inst.serve(ready)


def _status(a: argparse.Namespace) -> int:
    st = status(a.socket)
    if st is None:
        raise ToolError(f"no host instance runs on {a.socket or socket_path()}")
    if a.json:
        print(json.dumps(st))
    else:
        print(f"pid {st['pid']}: {st['subscribers']} of {st['slots']} subscriber slots taken, "
              f"{st['sessions']} live sessions, {st['lost']} events lost in providers, "
              f"{st['failed']} sessions refused (table full)")
        for pid, uid, slot in st["attached"]:
            print(f"  slot {slot}: pid {pid} (uid {uid})")
    return 0


def _stats(a: argparse.Namespace) -> int:
    st = status(a.socket, op="aggregates")
    if st is None:
        raise ToolError(f"no host instance runs on {a.socket or socket_path()}")
    agg = st["aggregates"].get("tcp-aggregate")
    if agg is None:
        raise ToolError("the host instance keeps no TCP counters (start it with --aggregate)")
    if a.json:
        print(json.dumps(agg))
        return 0
    cols = ("segs_out", "segs_in", "bytes_out", "bytes_in", "retransmits", "rtt_samples")
    print(f"{'SESSION':>20} " + " ".join(f"{c.upper():>12}" for c in cols)
          + f" {'RTT_AVG_US':>10} {'RTT_MAX_US':>10} ENDED")
    for inst in agg.values():
        for sid, c in sorted(inst["connections"].items(), key=lambda kv: kv[1]["first_us"]):
            avg = c["rtt_sum_us"] / c["rtt_samples"] if c["rtt_samples"] else 0
            print(f"{sid:>20} " + " ".join(f"{c[k]:>12}" for k in cols)
                  + f" {avg:>10.0f} {c['rtt_max_us']:>10} {'yes' if c['ended'] else 'no'}")
        hist = inst["rtt_histogram"]
        print("RTT samples (us): " + ", ".join(f"[{1 << k if k else 0}, {1 << (k + 1)}): {n}"
                                              for k, n in enumerate(hist) if n))
    return 0


def main(argv: list[str]) -> int:
    """``pyelog host``: parse ``argv``, serve or report; the exit status."""
    p = ArgumentParser(prog="pyelog host", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__.split("\n\n", 2)[2])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the host instance")
    s.add_argument("--slots", type=int, default=DEFAULT_SLOTS, choices=range(1, 17),
                   metavar="N", help=f"subscriber slots, 1-16 (default {DEFAULT_SLOTS})")
    s.add_argument("-b", "--buffer-size", type=_size, default=BUFFER_SIZE_DEFAULT, metavar="SIZE",
                   help="per-CPU buffer of every slot, bytes with K/M/G (default 512K)")
    s.add_argument("--provider", action="append", metavar="NAME",
                   help="run this provider (repeatable; default: every one, "
                        f"{', '.join(sorted(registry()))})")
    s.add_argument("--socket", default=None, help=f"where to listen (default {socket_path()})")
    s.add_argument("--group", default=None, help="members of this group may attach too")
    s.add_argument("--service", action="store_true",
                   help="keep running without subscribers (until SIGTERM)")
    s.add_argument("--aggregate", action="store_true",
                   help="keep per-connection TCP counters and an RTT histogram in the kernel")
    s.add_argument("--spawned", action="store_true", help=argparse.SUPPRESS)
    for name, what in (("status", "what the running host instance holds"),
                       ("stats", "the in-kernel TCP counters (serve --aggregate)")):
        st = sub.add_parser(name, help=what)
        st.add_argument("--socket", default=None)
        st.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    body = {"serve": _serve, "status": _status, "stats": _stats}[a.command]
    return run_reporting("pyelog host", lambda: body(a), expected=(HostError,))
