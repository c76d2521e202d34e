/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test provider: emits chosen test-schema events on demand, for the ring,
 * filter and teardown tests (model: FreeBSD ktest_eventlog).
 *
 * Provider template (pyelog/loader.py substitutes EL_PROVIDER_ID and
 * EL_FN(x)); pasted after bpf/eventlog.h and the producer header generated
 * from schemas/test_eventlog_schema.src.
 *
 * Two ways to make it emit:
 *  - EL_FN(test_ctl), a raw-tracepoint program run with BPF_PROG_TEST_RUN
 *    (here, or on a chosen CPU from an IPI), args:
 *      [0] op  [1] session id  [2] event kind  [3] count  [4] first seq
 *      [5] flags (bit0: gate with _LOG/_ENABLED rather than _LOG_ALWAYS)
 *      [6] payload size (RAW events)
 *    (op LOSE: [2] is an event id, [3] how many of it to count as lost)
 *  - EL_FN(on_getppid), on syscalls:sys_enter_getppid for the thread group
 *    set in EL_FN(tp_cfg): one SIMPLE_EVENT per call with a sequence number
 *    from a shared counter (process context, for nesting tests).
 * Every emitted event carries a sequence number so tests prove nothing was
 * lost or duplicated.
 */
#ifndef TEST_PROVIDER_COMMON   /* once, however many instances */
#define TEST_PROVIDER_COMMON
/* TEST_OP_* (what test_ctl does) and TEST_EV_* (which event it emits) are
 * defined by pyelog/providers/test.py, whose TestDriver sends them: one
 * definition for both sides.  What the kinds emit:
 *   SIMPLE   SIMPLE_EVENT, value = seq (36-byte records)
 *   STATUS, FLAGS
 *   COMPLEX  COMPLEX_EVENT, id = session, value = seq
 *   VARLEN   VARLEN_EVENT, id = seq, count = args[6]
 *   RAW      event id 100, args[6] payload bytes from scratch (seq first)
 *   GATHER   event id 101: 8-byte head + args[6]-byte tail */

/* Events per BPF_PROG_TEST_RUN call.  The verifier walks every subscriber's
 * inlined delivery in every iteration, so the batch shrinks as subscribers
 * grow (the driver just calls again). */
#ifndef TEST_BATCH_MAX
#if EVENTLOG_NR_SUBS <= 1
#define TEST_BATCH_MAX TEST_BATCH_LIMIT      /* test.py: BATCH_MAX */
#elif EVENTLOG_NR_SUBS <= 2
#define TEST_BATCH_MAX 16
#elif EVENTLOG_NR_SUBS <= 4
#define TEST_BATCH_MAX 4
#else
#define TEST_BATCH_MAX 1
#endif
#endif

struct test_tp_cfg {
	__u32 tgid;
	__u32 kind;
	__u64 session_id;
	__u64 seq;           /* next sequence number (atomic) */
	__u64 emitted;       /* calls that emitted */
};
#endif

BPF_ARRAY(EL_FN(tp_cfg), struct test_tp_cfg, 1);
/* on_getppid's cache of its session (eventlog_session_lookup_cached). */
BPF_PERCPU_ARRAY(EL_FN(getppid_session), struct eventlog_session_cache, 1);

/*
 * Every eventlog write call site inlines the delivery code of every
 * subscriber (bcc 0.26 cannot do BPF-to-BPF calls), so this program keeps
 * exactly one emit site: each kind's payload is built in the per-CPU
 * scratch area with the generated struct layout, then written once.
 */
int EL_FN(test_ctl)(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 op = ctx->args[0];
	__u64 sid = ctx->args[1];
	__u32 kind = (__u32)ctx->args[2];
	__u64 count = ctx->args[3];
	__u64 seq = ctx->args[4];
	__u64 flags = ctx->args[5];
	__u32 size = (__u32)ctx->args[6];
	struct eventlog_session *s;
	__u32 id, level, kw, hl, tl = 0;
	char *p;
	int n = 0;

	if (op == TEST_OP_CREATE)
		return eventlog_session_create(EL_PROVIDER_ID, sid, (const void *)0, 0) ? 0 : -1;
	if (op == TEST_OP_LOSE) {
		/* count events of id args[2] as lost before the core, as a
		 * provider does when it cannot hand them over */
		eventlog_event_lost(EL_PROVIDER_ID, kind, count);
		return 0;
	}
	s = eventlog_session_lookup(EL_PROVIDER_ID, sid);
	if (!s)
		return -2;
	if (op == TEST_OP_END) {
		eventlog_session_destroy(s);
		return 0;
	}
	if (op == TEST_OP_ENABLE) {
		eventlog_session_set_enabled(s, (int)kind);
		return 0;
	}
	if (op == TEST_OP_FILTER) {
		eventlog_session_set_filter(s, kind, (__u32)count);
		return 0;
	}
	if (op != TEST_OP_EMIT)
		return -3;
	p = eventlog_scratch();
	if (!p)
		return -4;
	__builtin_memset(p, 0, 64);
	switch (kind) {
	case TEST_EV_SIMPLE:
		id = TEST_EVENTLOG_SIMPLE_EVENT_ID; level = TEST_EVENTLOG_SIMPLE_EVENT_LEVEL;
		kw = TEST_EVENTLOG_SIMPLE_EVENT_KEYWORDS;
		hl = sizeof(struct test_eventlog_simple_event);
		break;
	case TEST_EV_STATUS: {
		struct test_eventlog_status_event *e = (void *)p;
		e->id = seq;
		e->status = TEST_EVENTLOG_TEST_STATUS_RUNNING;
		id = TEST_EVENTLOG_STATUS_EVENT_ID; level = TEST_EVENTLOG_STATUS_EVENT_LEVEL;
		kw = TEST_EVENTLOG_STATUS_EVENT_KEYWORDS; hl = sizeof(*e);
		count = 1;
		break;
	}
	case TEST_EV_FLAGS: {
		struct test_eventlog_flags_event *e = (void *)p;
		e->id = seq;
		e->flags = TEST_EVENTLOG_FLAG_FLAG_A | TEST_EVENTLOG_FLAG_FLAG_C;
		id = TEST_EVENTLOG_FLAGS_EVENT_ID; level = TEST_EVENTLOG_FLAGS_EVENT_LEVEL;
		kw = TEST_EVENTLOG_FLAGS_EVENT_KEYWORDS; hl = sizeof(*e);
		count = 1;
		break;
	}
	case TEST_EV_COMPLEX: {
		struct test_eventlog_complex_event *e = (void *)p;
		e->id = sid;
		e->status = TEST_EVENTLOG_TEST_STATUS_SUCCESS;
		e->flags = TEST_EVENTLOG_FLAG_FLAG_B;
		e->counter = -7;
		id = TEST_EVENTLOG_COMPLEX_EVENT_ID; level = TEST_EVENTLOG_COMPLEX_EVENT_LEVEL;
		kw = TEST_EVENTLOG_COMPLEX_EVENT_KEYWORDS; hl = sizeof(*e);
		break;
	}
	case TEST_EV_VARLEN: {
		struct test_eventlog_varlen_event *e = (void *)p;
		__u64 *vals = (void *)(p + sizeof(*e));
		__u32 c = size > TEST_EVENTLOG_VARLEN_EVENT_VALUES_MAX ?
			  TEST_EVENTLOG_VARLEN_EVENT_VALUES_MAX : size;
		e->id = seq;
		e->count = c;
		for (int i = 0; i < TEST_EVENTLOG_VARLEN_EVENT_VALUES_MAX; i++)
			vals[i] = seq + i;
		id = TEST_EVENTLOG_VARLEN_EVENT_ID; level = TEST_EVENTLOG_VARLEN_EVENT_LEVEL;
		kw = TEST_EVENTLOG_VARLEN_EVENT_KEYWORDS; hl = sizeof(*e) + 8 * c;
		count = 1;
		break;
	}
	case TEST_EV_RAW:        /* size bytes, seq in the first 8 */
		id = 100; level = EVENTLOG_LEVEL_INFO; kw = TEST_EVENTLOG_KEYWORD_BASIC;
		hl = size;
		count = 1;
		break;
	case TEST_EV_GATHER:     /* 8-byte head (seq) + size-byte tail (seq+1 first) */
		id = 101; level = EVENTLOG_LEVEL_INFO; kw = TEST_EVENTLOG_KEYWORD_BASIC;
		*(__u64 *)(p + 8) = seq + 1;
		hl = 8;
		tl = size;
		count = 1;
		break;
	default:
		return -5;
	}
	/* flags bit 0: honour session enablement, like the generated _LOG. */
	if ((flags & 1) && !(s->effective_level >= level && (s->effective_keywords & kw)))
		return count > TEST_BATCH_MAX ? TEST_BATCH_MAX : (int)count;  /* all skipped */
	for (int i = 0; i < TEST_BATCH_MAX; i++) {
		if (i >= count)
			break;
		/* SIMPLE value / COMPLEX value / RAW first word / GATHER head = seq */
		if (kind == TEST_EV_COMPLEX)
			((struct test_eventlog_complex_event *)p)->value = (__u32)(seq + i);
		else if (kind == TEST_EV_SIMPLE || kind == TEST_EV_RAW || kind == TEST_EV_GATHER)
			*(__u64 *)p = seq + i;
		eventlog_event_write_gather(s, id, level, kw, p, hl, p + 8, tl);
		n++;
	}
	return n;
}

int EL_FN(on_getppid)(void *ctx)
{
	__u32 zero = 0;
	struct test_tp_cfg *c = EL_FN(tp_cfg).lookup(&zero);

	if (!c || c->tgid == 0 || (bpf_get_current_pid_tgid() >> 32) != c->tgid)
		return 0;
	struct eventlog_session *s = eventlog_session_lookup_cached(
		EL_FN(getppid_session).lookup(&zero), EL_PROVIDER_ID, c->session_id);
	if (!s)
		return 0;
	__u64 seq = __sync_fetch_and_add(&c->seq, 1);
	TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(s, seq);
	return 0;
}
