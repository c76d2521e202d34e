# SPDX-License-Identifier: BSD-2-Clause
"""bcc's usual path, as its own process: the baseline the recorder is compared with.

    bcc_record.py --mode ringbuf|libbpf|perf|empty --tgid PID [-o FILE]

One BPF program on syscalls:sys_enter_getppid, for one thread group (plus
``emit_batch``, the same events in batches for bench/drivers/testrun_loop.c,
whose id the ready line gives), as a typical bcc tool writes it: a 40-byte event (timestamp, pid, tid, cpu,
sequence number) sent with

* ringbuf: ``BPF_RINGBUF_OUTPUT`` (16 MiB) + ``ringbuf_output(.., 0)``
  (flags 0: the kernel wakes the consumer whenever it is waiting, i.e. up to
  once per event) and ``ring_buffer_poll()`` with a Python callback;
* libbpf: the same ring buffer program, consumed by a C program instead
  (bench/drivers/libbpf_ringbuf.c: libbpf's ring_buffer__poll, fwrite of
  each event), the map handed over by a bpffs pin: what a libbpf-tools-style
  C recorder achieves;
* perf: ``BPF_PERF_OUTPUT`` (16 MiB per CPU) + ``perf_submit`` and
  ``perf_buffer_poll()`` with a Python callback;
* empty: the same hook and sequence counter, no output (the hook's floor).

The callback records each event the cheapest reasonable way: it appends the
raw 40 bytes to the output file (no decoding, no printing). Prints ``ready
pid=<pid> prog_id=<emit_batch id>`` once attached; on SIGTERM polls what is left and prints::

    written=N dropped=N emitted=N prog_ns=X maxrss_kib=N

(``emitted`` counts the getppid hook's events only, the batch driver
reports its own; prog_ns only with ``--bpf-stats``: ns per run of the
busiest BPF program.)
"""
from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)   # bcc str->bytes noise
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import busiest_prog_ns, driver, enable_bpf_stats, parse_kv, prog_id  # noqa: E402

PROG = r"""
struct event { u64 ts; u64 seq; u32 pid; u32 tid; u32 cpu; u32 pad; u64 arg; };  // 40 bytes
struct cfg { u64 seq; u64 lost; };
BPF_ARRAY(cfg, struct cfg, 1);
#if MODE == 1
BPF_RINGBUF_OUTPUT(events, 4096);               // 4096 pages = 16 MiB
#elif MODE == 2
BPF_PERF_OUTPUT(events);
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 zero = 0;
    if ((id >> 32) != TGID)
        return 0;
    struct cfg *c = cfg.lookup(&zero);
    if (!c)
        return 0;
    struct event e = {};
    e.seq = __sync_fetch_and_add(&c->seq, 1);
    e.ts = bpf_ktime_get_ns();
    e.pid = id >> 32;
    e.tid = (u32)id;
    e.cpu = bpf_get_smp_processor_id();
#if MODE == 1
    if (events.ringbuf_output(&e, sizeof(e), 0) != 0)
        __sync_fetch_and_add(&c->lost, 1);
#elif MODE == 2
    if (events.perf_submit(args, &e, sizeof(e)) != 0)
        __sync_fetch_and_add(&c->lost, 1);
#endif
    return 0;
}

/* The same events in batches, run by bench/drivers/testrun_loop.c with
 * BPF_PROG_TEST_RUN (args as the test provider's test_ctl: [3] = count,
 * [4] = first seq); returns how many it tried to send. */
int emit_batch(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u64 count = ctx->args[3], seq = ctx->args[4];
    u32 zero = 0;
    struct cfg *c = cfg.lookup(&zero);
    int n = 0;
    if (!c)
        return 0;
    for (int i = 0; i < 32; i++) {
        if (i >= count)
            break;
        struct event e = {};
        e.seq = seq + i;
        e.ts = bpf_ktime_get_ns();
        e.pid = id >> 32;
        e.tid = (u32)id;
        e.cpu = bpf_get_smp_processor_id();
#if MODE == 1
        if (events.ringbuf_output(&e, sizeof(e), 0) != 0)
            __sync_fetch_and_add(&c->lost, 1);
#elif MODE == 2
        if (events.perf_submit(ctx, &e, sizeof(e)) != 0)
            __sync_fetch_and_add(&c->lost, 1);
#endif
        n++;
    }
    return n;
}
"""
MODES = {"empty": 0, "ringbuf": 1, "libbpf": 1, "perf": 2}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--tgid", type=int, default=0, help="getppid() of this process emit")
    ap.add_argument("-o", "--output", default="/dev/null")
    ap.add_argument("--bpf-stats", action="store_true", help="print prog_ns (ns per run)")
    a = ap.parse_args()
    stats_fd = enable_bpf_stats() if a.bpf_stats else None

    from bcc import BPF
    b = BPF(text=PROG, cflags=[f"-DMODE={MODES[a.mode]}", f"-DTGID={a.tgid}"])
    batch_fd = b.load_func("emit_batch", BPF.RAW_TRACEPOINT).fd
    out = open(a.output, "wb", buffering=1 << 20)
    written = 0

    def on_event(cpu, data, size):
        nonlocal written
        out.write(ctypes.string_at(data, size))
        written += 1

    # perf's own LOST records are written only once space frees up, so a
    # burst that ends with the buffer full is never reported: the program
    # counts its failed perf_submit calls instead (c.lost), exactly.
    def on_lost(n):
        pass

    consumer = None
    if a.mode == "ringbuf":
        b["events"].open_ring_buffer(lambda ctx, data, size: on_event(0, data, size))
        poll = lambda t: b.ring_buffer_poll(t)      # noqa: E731
    elif a.mode == "libbpf":
        import subprocess
        import time
        from bcc import libbcc
        pin = f"/sys/fs/bpf/pyelog-bench-{os.getpid()}-events"
        if libbcc.lib.bpf_obj_pin(b["events"].map_fd, pin.encode()) != 0:
            raise SystemExit(f"bcc_record: cannot pin the ring buffer at {pin}")
        out.close()
        consumer = subprocess.Popen([driver("libbpf_ringbuf"), pin, a.output],
                                    stdout=subprocess.PIPE, text=True)
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit("bcc_record: libbpf_ringbuf did not start")
        os.unlink(pin)                              # the consumer holds its own fd
        poll = lambda t: time.sleep(t / 1000)       # noqa: E731
    elif a.mode == "perf":
        b["events"].open_perf_buffer(on_event, page_cnt=4096, lost_cb=on_lost)
        poll = lambda t: b.perf_buffer_poll(t)      # noqa: E731
    else:
        import time
        poll = lambda t: time.sleep(t / 1000)       # noqa: E731

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"ready pid={os.getpid()} prog_id={prog_id(batch_fd)}", flush=True)
    while not stop:
        poll(1000)
    if a.mode == "ringbuf":
        b.ring_buffer_consume()
    elif a.mode == "perf":
        poll(0)
    elif consumer is not None:
        consumer.send_signal(signal.SIGTERM)
        written = int(parse_kv(consumer.stdout.read()).get("written", -1))
        if consumer.wait() != 0:
            raise SystemExit("bcc_record: libbpf_ringbuf failed")
    c = b["cfg"][ctypes.c_int(0)]
    if not out.closed:
        out.close()
    prog_ns = busiest_prog_ns(b.funcs.values()) if stats_fd is not None else 0.0
    print(f"written={written} dropped={c.lost} emitted={c.seq} prog_ns={prog_ns:.1f} "
          f"maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
