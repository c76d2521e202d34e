# SPDX-License-Identifier: BSD-2-Clause
"""bcc's tcpstates, re-implemented inline: the bcc baseline of the workload benchmark.

    bcc_tcpstates.py [-o FILE]

The probe and output of bcc's tools/tcpstates.py (tracepoint version):
sock:inet_sock_set_state for TCP, time spent in the previous state from a
hash keyed by socket address, one perf-buffer event per state change
(addresses, ports, states, pid, comm), and a Python callback that decodes
the event (``table.event()``) and prints tcpstates' line, here into FILE
(default /dev/null). Debian's bpfcc-tools package is not required.
Prints ``ready pid=<pid>`` once attached; on SIGTERM prints ``written=N
dropped=N`` (events printed, perf-buffer samples lost).
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import struct
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)   # bcc str->bytes noise

PROG = r"""
#include <uapi/linux/ptrace.h>
#include <linux/tcp.h>
#include <net/sock.h>

BPF_HASH(last, u64, u64);

struct ipv4_data_t {
    u64 ts_us; u64 skaddr; u32 saddr; u32 daddr; u64 span_us; u32 pid;
    u16 lport; u16 dport; int oldstate; int newstate; char task[TASK_COMM_LEN];
};
BPF_PERF_OUTPUT(ipv4_events);

struct ipv6_data_t {
    u64 ts_us; u64 skaddr; unsigned __int128 saddr; unsigned __int128 daddr;
    u64 span_us; u32 pid; u16 lport; u16 dport; int oldstate; int newstate;
    char task[TASK_COMM_LEN];
};
BPF_PERF_OUTPUT(ipv6_events);

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 sk = (u64)args->skaddr;
    u64 *tsp, delta_us;
    tsp = last.lookup(&sk);
    delta_us = tsp ? (bpf_ktime_get_ns() - *tsp) / 1000 : 0;
    if (args->family == AF_INET) {
        struct ipv4_data_t data4 = { .span_us = delta_us,
            .oldstate = args->oldstate, .newstate = args->newstate };
        data4.skaddr = sk;
        data4.ts_us = bpf_ktime_get_ns() / 1000;
        __builtin_memcpy(&data4.saddr, args->saddr, sizeof(data4.saddr));
        __builtin_memcpy(&data4.daddr, args->daddr, sizeof(data4.daddr));
        data4.lport = args->sport;
        data4.dport = args->dport;
        data4.pid = pid;
        bpf_get_current_comm(&data4.task, sizeof(data4.task));
        ipv4_events.perf_submit(args, &data4, sizeof(data4));
    } else {
        struct ipv6_data_t data6 = { .span_us = delta_us,
            .oldstate = args->oldstate, .newstate = args->newstate };
        data6.skaddr = sk;
        data6.ts_us = bpf_ktime_get_ns() / 1000;
        __builtin_memcpy(&data6.saddr, args->saddr_v6, sizeof(data6.saddr));
        __builtin_memcpy(&data6.daddr, args->daddr_v6, sizeof(data6.daddr));
        data6.lport = args->sport;
        data6.dport = args->dport;
        data6.pid = pid;
        bpf_get_current_comm(&data6.task, sizeof(data6.task));
        ipv6_events.perf_submit(args, &data6, sizeof(data6));
    }
    if (args->newstate == TCP_CLOSE) {
        last.delete(&sk);
    } else {
        u64 ts = bpf_ktime_get_ns();
        last.update(&sk, &ts);
    }
    return 0;
}
"""

STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
          6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW_SYN_RECV"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="/dev/null")
    a = ap.parse_args()
    from bcc import BPF
    b = BPF(text=PROG)
    out = open(a.output, "w")
    written = 0

    def emit(event, family, saddr, daddr):
        nonlocal written
        # tcpstates' default line: SKADDR C-PID C-COMM LADDR LPORT RADDR RPORT OLDSTATE -> NEWSTATE MS
        print("%-9x %-6d %-10.10s %-15s %-5d %-15s %-5d %-11s -> %-11s %.3f" % (
            event.skaddr, event.pid, event.task.decode("utf-8", "replace"),
            socket.inet_ntop(family, saddr), event.lport,
            socket.inet_ntop(family, daddr), event.dport,
            STATES.get(event.oldstate, "?"), STATES.get(event.newstate, "?"),
            float(event.span_us) / 1000), file=out)
        written += 1

    def on_v4(cpu, data, size):
        e = b["ipv4_events"].event(data)
        emit(e, socket.AF_INET, struct.pack("I", e.saddr), struct.pack("I", e.daddr))

    def on_v6(cpu, data, size):
        e = b["ipv6_events"].event(data)
        emit(e, socket.AF_INET6, bytes(e.saddr), bytes(e.daddr))

    lost = 0

    def on_lost(n):
        nonlocal lost
        lost += n

    # tcpstates' default buffer size (page_cnt 8 per CPU); losses are counted.
    b["ipv4_events"].open_perf_buffer(on_v4, lost_cb=on_lost)
    b["ipv6_events"].open_perf_buffer(on_v6, lost_cb=on_lost)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"ready pid={os.getpid()}", flush=True)
    while not stop:
        b.perf_buffer_poll(1000)
    b.perf_buffer_poll(0)
    out.close()
    print(f"written={written} dropped={lost} "
          f"maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
