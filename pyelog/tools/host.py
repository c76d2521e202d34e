# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog host``: the host instance that recorders share (pyelog.kernel.host).

    pyelog host serve [--slots N] [-b SIZE] [--socket PATH] [--group NAME] [--service]
    pyelog host status [--socket PATH] [--json]

``serve`` runs the host instance in the foreground: every provider loaded
and attached once, ``--slots`` subscriber slots, a Unix socket where
``pyelog -c`` attaches (by default when one runs; ``--shared`` starts one).
Without ``--service`` it ends when its last subscriber leaves (or when none
came within 30 s); with it, it runs until SIGTERM (the systemd unit,
systemd/pyelog-host.service). It holds everything by file descriptor and
pins nothing: however it ends, nothing of it stays attached.

Who may attach: root (and the user running the instance); with ``--group``,
also that group's members (the socket is made 0660 and given to the
group; the instance checks each peer's credentials again).

``status`` prints the instance's pid, subscribers, live sessions and the
events its providers lost before any ring.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from pyelog.kernel.host import DEFAULT_SLOTS, HostError, HostInstance, socket_path
from pyelog.kernel.loader import MAX_SESSIONS_DEFAULT
from pyelog.kernel.ring import BUFFER_SIZE_DEFAULT, BUFFER_SIZE_MAX, BUFFER_SIZE_MIN
from pyelog.providers import registry
from pyelog.tools.command import ArgumentParser, ToolError, run_reporting


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    try:
        v = int(t[:-1]) * mult[t[-1]] if t[-1:] in mult else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if not BUFFER_SIZE_MIN <= v <= BUFFER_SIZE_MAX:
        raise argparse.ArgumentTypeError(f"buffer size {v} outside {BUFFER_SIZE_MIN}..{BUFFER_SIZE_MAX}")
    return v


def _serve(a: argparse.Namespace) -> int:
    from pyelog.kernel.bpf import unavailable_reason
    from pyelog.tools.capture import kernel_load_errors
    reason = unavailable_reason()
    if reason:
        raise ToolError(reason)
    with kernel_load_errors():
        inst = HostInstance([factory() for factory in registry().values()], slots=a.slots,
                            buffer_size=a.buffer_size, max_sessions=MAX_SESSIONS_DEFAULT,
                            path=a.socket, group=a.group, service=a.service)

    def ready() -> None:
        if a.spawned:
            # Started by a recorder, which reads our stderr only until now.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (1, 2):
                os.dup2(null, fd)
            os.close(null)
        else:
            print(f"pyelog host: serving on {inst.path} (pid {os.getpid()}, {a.slots} slots of "
                  f"{a.buffer_size} bytes per CPU buffer)", file=sys.stderr, flush=True)

    with kernel_load_errors():
        inst.open()
    return inst.serve(ready)


def _status(a: argparse.Namespace) -> int:
    from pyelog.kernel.host import status
    st = status(a.socket)
    if st is None:
        raise ToolError(f"no host instance runs on {a.socket or socket_path()}")
    if a.json:
        print(json.dumps(st))
    else:
        print(f"pid {st['pid']}: {st['subscribers']} of {st['slots']} subscriber slots taken, "
              f"{st['sessions']} live sessions, {st['lost']} events lost in providers, "
              f"{st['failed']} sessions refused (table full)")
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
    s.add_argument("--socket", default=None, help=f"where to listen (default {socket_path()})")
    s.add_argument("--group", default=None, help="members of this group may attach too")
    s.add_argument("--service", action="store_true",
                   help="keep running without subscribers (until SIGTERM)")
    s.add_argument("--spawned", action="store_true", help=argparse.SUPPRESS)
    st = sub.add_parser("status", help="what the running host instance holds")
    st.add_argument("--socket", default=None)
    st.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    body = _serve if a.command == "serve" else _status
    return run_reporting("pyelog host", lambda: body(a), expected=(HostError,))
