/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * eventlog_outbox.h - queue a program's events, deliver them when it ends.
 *
 * For providers with many emit sites in one program.  Every emit site
 * inlines the delivery to every subscriber (eventlog_deliver_all(); bcc has
 * no BPF-to-BPF calls), so a program with tens of _LOG calls and a few
 * subscribers outgrows the verifier's 16-bit jump range.  Instead such a
 * provider routes its generated _LOG macros here (its producer header's
 * <PREFIX>_RESERVE for fixed-size payloads, filled in place, and
 * <PREFIX>_WRITE for the others, copied; see pyelog/schema/codegen.py)
 * and each program:
 *
 *	eventlog_outbox_begin();           take this CPU's next nesting depth
 *	... <NAME>_LOG(s, ...) ...         queued, in order, with their times
 *	return eventlog_outbox_end_<type>(ctx[, ret]);   deliver, release
 *
 * Outboxes are per CPU and per nesting depth (a softirq program may
 * interrupt a syscall one on the same CPU).  Delivery is a tail-call chain,
 * not a loop: a drain program per program type (tracepoints, raw
 * tracepoints, sock_ops, cgroup setsockopt) delivers one queued event and
 * tail-calls itself while more wait (at most EVENTLOG_OUTBOX_MAX calls,
 * under the kernel's 33).  A loop with the delivery inlined is more than
 * kernel 6.1's verifier accepts ("sequence of 8193 jumps is too complex");
 * one event per program is what every kernel verifies.  The depth stays taken until the chain ends.
 *
 * The user space side (load_outbox_drains() in pyelog.providers.tcp) loads the four drain
 * programs into slot 0 of their jump tables (eventlog_outbox_<type>_jt)
 * before anything queues.  An event beyond EVENTLOG_OUTBOX_MAX in one run
 * is counted by its id (eventlog_event_lost: charged to the subscribers it
 * was for); events queued when a tail call did not happen, in `lost` of
 * eventlog_outbox_map per CPU and depth (charged to every subscriber: their
 * ids would take a loop in every program, for a case that does not occur
 * once the drains are in place).
 *
 * Pasted (not #included: bcc rewrites map syntax only in the main text)
 * after eventlog.h and before the provider's producer header; included
 * once however many providers paste it.
 */
#ifndef PYELOG_EVENTLOG_OUTBOX_H
#define PYELOG_EVENTLOG_OUTBOX_H

#define EVENTLOG_OUTBOX_MAX 16
#define EVENTLOG_OUTBOX_PAYLOAD 80
#define EVENTLOG_OUTBOX_DEPTH 4

struct eventlog_outbox_ev {
	__u64 session_id;
	__u64 ts;                /* 0: when delivered */
	__u32 provider_id;
	__u32 id;
	__u32 level;
	__u32 kw;
	__u32 len;
	__u32 _pad;
	__u8 payload[EVENTLOG_OUTBOX_PAYLOAD];
};

struct eventlog_outbox {
	__u32 n;
	__u32 lost;              /* events a failed tail call left (see above) */
	__u32 next;              /* the next event the drain delivers */
	__s32 ret;               /* the program's return value, for the drain */
	__u64 ts;                /* time given to the events queued now (0: now) */
	__u64 now;               /* the drain's time for undated events (0: not read yet) */
	struct eventlog_outbox_ev ev[EVENTLOG_OUTBOX_MAX];
};
BPF_PERCPU_ARRAY(eventlog_outbox_map, struct eventlog_outbox, EVENTLOG_OUTBOX_DEPTH);
BPF_PERCPU_ARRAY(eventlog_outbox_depth_map, __u32, 1);
/* Slot 0: the drain program of that type (a program array holds programs
 * of one type only). */
BPF_PROG_ARRAY(eventlog_outbox_tp_jt, 1);
BPF_PROG_ARRAY(eventlog_outbox_raw_tp_jt, 1);
BPF_PROG_ARRAY(eventlog_outbox_sockops_jt, 1);
BPF_PROG_ARRAY(eventlog_outbox_sockopt_jt, 1);

/* The nesting depth this program run holds, 0-based: the key of its entry
 * in per-depth arrays (the outbox; callers' own working space). Outside a
 * hook EVENTLOG_OUTBOX_DEPTH, one past their end, so lookups find nothing. */
static __always_inline __u32 eventlog_outbox_slot(void)
{
	__u32 z = 0;
	__u32 *d = eventlog_outbox_depth_map.lookup(&z);

	if (!d || *d == 0 || *d > EVENTLOG_OUTBOX_DEPTH)
		return EVENTLOG_OUTBOX_DEPTH;
	return *d - 1;
}

static __always_inline struct eventlog_outbox *eventlog_outbox(void)
{
	__u32 k = eventlog_outbox_slot();

	return eventlog_outbox_map.lookup(&k);
}

/* Take this CPU's next nesting depth, with an empty outbox. */
static __always_inline void eventlog_outbox_begin(void)
{
	__u32 z = 0;
	__u32 *d = eventlog_outbox_depth_map.lookup(&z);
	struct eventlog_outbox *ob;

	if (!d)
		return;
	*d += 1;
	ob = eventlog_outbox();
	if (ob) {
		ob->n = 0;
		ob->next = 0;
		ob->ts = 0;
	}
}

/* Release the depth without delivering (what eventlog_outbox_end_*() do
 * once everything is delivered; also for runs that queued nothing). */
static __always_inline void eventlog_outbox_release(void)
{
	__u32 z = 0;
	__u32 *d = eventlog_outbox_depth_map.lookup(&z);

	if (d && *d)
		*d -= 1;
}

/* Date the events queued from now on (0: when they are delivered): for
 * events that happened before the program that learns of them. */
static __always_inline void eventlog_outbox_date(__u64 ts)
{
	struct eventlog_outbox *ob = eventlog_outbox();

	if (ob)
		ob->ts = ts;
}

/* Queue one event of session s and return its payload space (len bytes,
 * not zeroed) for the caller to fill: the generated _LOG macros of fixed
 * payloads store their fields straight into the outbox (<PREFIX>_RESERVE),
 * no copy.  NULL when the run's outbox is full (counted) or there is none. */
static __always_inline void *
eventlog_outbox_reserve(struct eventlog_session *s, __u32 id, __u32 level, __u32 kw, __u32 len)
{
	struct eventlog_outbox *ob;
	__u32 n;

	if (!s)
		return (void *)0;
	ob = eventlog_outbox();
	if (!ob)
		return (void *)0;
	n = ob->n;
	if (n >= EVENTLOG_OUTBOX_MAX || len > EVENTLOG_OUTBOX_PAYLOAD) {
		eventlog_event_lost(s->provider_id, id, 1);
		return (void *)0;
	}
	struct eventlog_outbox_ev *e = &ob->ev[n & (EVENTLOG_OUTBOX_MAX - 1)];
	e->session_id = s->session_id;
	e->provider_id = s->provider_id;
	e->ts = ob->ts;
	e->id = id;
	e->level = level;
	e->kw = kw;
	e->len = len;
	ob->n = n + 1;
	return e->payload;
}

/* Queue one event of session s, copying its payload (p, len): for
 * payloads built elsewhere (<PREFIX>_WRITE).  A payload longer than the
 * outbox holds is counted as lost by eventlog_outbox_reserve(), not cut. */
static __always_inline int
eventlog_outbox_add(struct eventlog_session *s, __u32 id, __u32 level, __u32 kw, const void *p,
		    __u32 len)
{
	void *d = eventlog_outbox_reserve(s, id, level, kw, len);

	if (!d)
		return 0;
	/* The reservation took len <= EVENTLOG_OUTBOX_PAYLOAD, so this clamp
	 * changes nothing; it bounds the register the copy is handed, for the
	 * verifier (clang would drop it, knowing the reservation's test, and
	 * test a copy of len: hidden from it). */
	asm volatile("" : "+r"(len));
	len &= 127;
	if (len > EVENTLOG_OUTBOX_PAYLOAD)
		len = EVENTLOG_OUTBOX_PAYLOAD;
	if (len)
		bpf_probe_read_kernel(d, len, p);
	return 1;
}

/* End of a program's own work: the outbox when events wait (the caller
 * then tail-calls its drain; the depth stays taken), else releases. */
static __always_inline struct eventlog_outbox *eventlog_outbox_close(int ret)
{
	struct eventlog_outbox *ob = eventlog_outbox();

	if (ob && ob->n) {
		ob->next = 0;
		ob->ret = ret;
		ob->now = 0;
		return ob;
	}
	if (ob)
		ob->n = 0;
	eventlog_outbox_release();
	return (struct eventlog_outbox *)0;
}

/* After a tail call that did not happen (or none was due: ob NULL):
 * count what was not delivered. */
static __always_inline void eventlog_outbox_abort(struct eventlog_outbox *ob)
{
	if (!ob)
		return;
	__u32 n = ob->n, i = ob->next;

	if (n > i)
		ob->lost += n - i;
	ob->n = 0;
	ob->next = 0;
	eventlog_outbox_release();
}

/* The drain's step: deliver the next queued event; returns the outbox when
 * more wait (tail-call the drain again), else ends it and releases. */
static __always_inline struct eventlog_outbox *eventlog_outbox_step(int *ret, int task)
{
	struct eventlog_outbox *ob = eventlog_outbox();

	if (!ob)
		return (struct eventlog_outbox *)0;
	*ret = ob->ret;
	/* Undated events of one run are delivered at one time, read by the
	 * chain's first step: one clock read per run, not per event (tens of
	 * ns each here).  In the drain, not at the emit sites: a helper call
	 * inlined there is more than 6.1's verifier takes (README). */
	if (!ob->now)
		ob->now = eventlog_now_us();
	__u32 i = ob->next;
	if (i < ob->n && i < EVENTLOG_OUTBOX_MAX) {
		struct eventlog_outbox_ev *e = &ob->ev[i & (EVENTLOG_OUTBOX_MAX - 1)];
		__u32 len = e->len;
		if (len > EVENTLOG_OUTBOX_PAYLOAD)
			len = EVENTLOG_OUTBOX_PAYLOAD;
		eventlog_emit_task(e->provider_id, e->session_id, e->ts ? e->ts : ob->now, e->id,
				   e->level, e->kw, e->payload, len, (const void *)0, 0, -1, task);
		i++;
		ob->next = i;
		if (i < ob->n)
			return ob;
	}
	ob->n = 0;
	ob->next = 0;
	eventlog_outbox_release();
	return (struct eventlog_outbox *)0;
}

#ifdef EVENTLOG_TASK_SOCK_OPS
#define EVENTLOG_OUTBOX_SOCKOPS_TASK 1
#else
#define EVENTLOG_OUTBOX_SOCKOPS_TASK 0
#endif
#ifdef EVENTLOG_TASK_CGROUP_SOCKOPT
#define EVENTLOG_OUTBOX_SOCKOPT_TASK 1
#else
#define EVENTLOG_OUTBOX_SOCKOPT_TASK 0
#endif

/* Per program type, the tail call into its drain (bcc names a prog
 * array only literally, in no macro) and, shared by all types, what
 * happens around it: eventlog_outbox_step() in the drain,
 * eventlog_outbox_close() at the end of the hooks that queue events. A
 * tail call that does not happen falls through to eventlog_outbox_abort(). */
static __always_inline void eventlog_outbox_send_tp(void *ctx, struct eventlog_outbox *ob)
{
	if (ob)
		eventlog_outbox_tp_jt.call(ctx, 0);
	eventlog_outbox_abort(ob);
}

static __always_inline void eventlog_outbox_send_raw_tp(void *ctx, struct eventlog_outbox *ob)
{
	if (ob)
		eventlog_outbox_raw_tp_jt.call(ctx, 0);
	eventlog_outbox_abort(ob);
}

static __always_inline void eventlog_outbox_send_sockops(struct bpf_sock_ops *ctx, struct eventlog_outbox *ob)
{
	if (ob)
		eventlog_outbox_sockops_jt.call(ctx, 0);
	eventlog_outbox_abort(ob);
}

static __always_inline void eventlog_outbox_send_sockopt(struct bpf_sockopt *ctx, struct eventlog_outbox *ob)
{
	if (ob)
		eventlog_outbox_sockopt_jt.call(ctx, 0);
	eventlog_outbox_abort(ob);
}

int eventlog_outbox_drain_tp(void *ctx)
{
	int ret = 0;

	eventlog_outbox_send_tp(ctx, eventlog_outbox_step(&ret, 1));
	return 0;
}

static __always_inline int eventlog_outbox_end_tp(void *ctx)
{
	eventlog_outbox_send_tp(ctx, eventlog_outbox_close(0));
	return 0;
}

int eventlog_outbox_drain_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	int ret = 0;

	eventlog_outbox_send_raw_tp(ctx, eventlog_outbox_step(&ret, 1));
	return 0;
}

static __always_inline int eventlog_outbox_end_raw_tp(void *ctx)
{
	eventlog_outbox_send_raw_tp(ctx, eventlog_outbox_close(0));
	return 0;
}

int eventlog_outbox_drain_sockops(struct bpf_sock_ops *ctx)
{
	int ret = 1;

	eventlog_outbox_send_sockops(ctx, eventlog_outbox_step(&ret, EVENTLOG_OUTBOX_SOCKOPS_TASK));
	return 1;
}

static __always_inline int eventlog_outbox_end_sockops(struct bpf_sock_ops *ctx)
{
	eventlog_outbox_send_sockops(ctx, eventlog_outbox_close(1));
	return 1;
}

/* A sockopt program's return is the verdict (1: let the call proceed):
 * the hook's own, carried through the outbox to the last drain step. */
int eventlog_outbox_drain_sockopt(struct bpf_sockopt *ctx)
{
	int ret = 1;

	eventlog_outbox_send_sockopt(ctx, eventlog_outbox_step(&ret, EVENTLOG_OUTBOX_SOCKOPT_TASK));
	return ret & 1;
}

static __always_inline int eventlog_outbox_end_sockopt(struct bpf_sockopt *ctx, int ret)
{
	eventlog_outbox_send_sockopt(ctx, eventlog_outbox_close(ret));
	return ret;
}

#endif /* PYELOG_EVENTLOG_OUTBOX_H */
