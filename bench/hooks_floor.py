# SPDX-License-Identifier: BSD-2-Clause
"""The TCP provider's hooks with empty programs: the floor of the workload benchmark.

    hooks_floor.py [--without-sock-ops]

What attaching costs a connection before any recording: the programs pyelog's
TCP provider attaches at INFO on the hooks every short connection passes,
each returning at once, except that sock_ops asks each new socket for the
callbacks the provider asks for at INFO (state changes, retransmissions, RTO,
RTT samples), so that the kernel makes the same calls into BPF:

  sock_ops on the cgroup-v2 root (a BPF link, as the provider's)
  raw tracepoints tcp_destroy_sock, tcp_cong_state_set, and
  inet_sock_set_state where the provider attaches it without a dump-state
  replay (kernels whose sock_ops may not ask for the current task: 6.1)
  tracepoint tcp:tcp_probe

``--without-sock-ops``: the floor of a recorder that would learn a
connection's life from tracepoints alone -- inet_sock_set_state for every
state change (ten calls per short connection, where sock_ops makes 22),
with the same tracepoints as above and no sock_ops program. The TCP
provider is not built that way (sock_ops gives the RTT samples, the
handshake's sequence numbers and the per-socket callback flags); this
measures what such a redesign could save at most.

No maps, no socket storage, no events. The cgroup skb hooks (VERBOSE only)
and the tracepoints a short connection does not pass (resets,
retransmissions, receive-buffer tuning) are left out. Keep this list in step
with pyelog/providers/tcp.py when it changes what it attaches.
Prints ``ready pid=<pid>`` once attached; exits on SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import signal
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)   # bcc str->bytes noise

PROG = r"""
#include <uapi/linux/bpf.h>

int floor_sockops(struct bpf_sock_ops *skops)
{
    switch (skops->op) {
    case BPF_SOCK_OPS_TCP_LISTEN_CB:
    case BPF_SOCK_OPS_TCP_CONNECT_CB:
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
        bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG |
                                  BPF_SOCK_OPS_RTO_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG);
    }
    return 1;
}

int floor_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx) { return 0; }
RAW_TRACEPOINT_PROBE(tcp_destroy_sock) { return 0; }
RAW_TRACEPOINT_PROBE(tcp_cong_state_set) { return 0; }
TRACEPOINT_PROBE(tcp, tcp_probe) { return 0; }
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--without-sock-ops", action="store_true",
                    help="no sock_ops program; the state changes through inet_sock_set_state")
    a = ap.parse_args()
    from bcc import BPF

    from pyelog.kernel.bpf import BPF_CGROUP_SOCK_OPS, attach_cgroup_link
    from pyelog.kernel.loader import task_helpers
    from pyelog.providers.tcp import cgroup2_root

    b = BPF(text=PROG)
    if a.without_sock_ops or not task_helpers()["EVENTLOG_TASK_SOCK_OPS"]:
        b.attach_raw_tracepoint(tp="inet_sock_set_state", fn_name="floor_inet_sock_set_state")
    link = None
    if not a.without_sock_ops:
        sockops = b.load_func("floor_sockops", BPF.SOCK_OPS)
        link = attach_cgroup_link(sockops.fd, cgroup2_root(), BPF_CGROUP_SOCK_OPS)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"ready pid={os.getpid()}", flush=True)
    while not stop:
        signal.pause()
    if link is not None:
        os.close(link)
    b.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
