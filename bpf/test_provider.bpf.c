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
 *  - EL_FN(on_getppid), on syscalls:sys_enter_getppid for the thread group
 *    set in EL_FN(tp_cfg): one SIMPLE_EVENT per call with a sequence number
 *    from a shared counter (process context, for nesting tests).
 * Every emitted event carries a sequence number so tests prove nothing was
 * lost or duplicated.
 */
#define TEST_OP_CREATE   1
#define TEST_OP_EMIT     2
#define TEST_OP_END      3
#define TEST_OP_ENABLE   4
#define TEST_OP_FILTER   5

#define TEST_EV_SIMPLE   0   /* SIMPLE_EVENT value = seq (36-byte records) */
#define TEST_EV_STATUS   1
#define TEST_EV_FLAGS    2
#define TEST_EV_COMPLEX  3   /* COMPLEX_EVENT id = session, value = seq */
#define TEST_EV_VARLEN   4   /* VARLEN_EVENT id = seq, count = args[6] */
#define TEST_EV_RAW      100 /* event id 100, args[6] payload bytes from scratch (seq first) */
#define TEST_EV_GATHER   101 /* event id 101: 8-byte head + args[6]-byte tail */

#ifndef TEST_BATCH_MAX
#define TEST_BATCH_MAX 8
#endif

struct test_tp_cfg {
	__u32 tgid;
	__u32 kind;
	__u64 session_id;
	__u64 seq;           /* next sequence number (atomic) */
	__u64 emitted;       /* calls that emitted */
};

BPF_ARRAY(EL_FN(tp_cfg), struct test_tp_cfg, 1);

static __always_inline void EL_FN(test_emit_one)(struct eventlog_session *s, __u32 kind,
						   __u64 seq, __u64 size, __u64 flags)
{
	__u64 vals[8] = {seq, seq + 1, seq + 2, seq + 3, seq + 4, seq + 5, seq + 6, seq + 7};

	if (flags & 1) {
		switch (kind) {
		case TEST_EV_SIMPLE:
			TEST_EVENTLOG_SIMPLE_EVENT_LOG(s, seq);
			return;
		case TEST_EV_STATUS:
			TEST_EVENTLOG_STATUS_EVENT_LOG(s, seq, TEST_EVENTLOG_TEST_STATUS_RUNNING);
			return;
		case TEST_EV_FLAGS:
			TEST_EVENTLOG_FLAGS_EVENT_LOG(s, seq, TEST_EVENTLOG_FLAG_FLAG_A | TEST_EVENTLOG_FLAG_FLAG_C);
			return;
		case TEST_EV_COMPLEX:
			TEST_EVENTLOG_COMPLEX_EVENT_LOG(s, s->session_id, seq, TEST_EVENTLOG_TEST_STATUS_SUCCESS,
							TEST_EVENTLOG_FLAG_FLAG_B, -7);
			return;
		}
		return;
	}
	switch (kind) {
	case TEST_EV_SIMPLE:
		TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(s, seq);
		return;
	case TEST_EV_STATUS:
		TEST_EVENTLOG_STATUS_EVENT_LOG_ALWAYS(s, seq, TEST_EVENTLOG_TEST_STATUS_RUNNING);
		return;
	case TEST_EV_FLAGS:
		TEST_EVENTLOG_FLAGS_EVENT_LOG_ALWAYS(s, seq, TEST_EVENTLOG_FLAG_FLAG_A | TEST_EVENTLOG_FLAG_FLAG_C);
		return;
	case TEST_EV_COMPLEX:
		TEST_EVENTLOG_COMPLEX_EVENT_LOG_ALWAYS(s, s->session_id, seq, TEST_EVENTLOG_TEST_STATUS_SUCCESS,
						       TEST_EVENTLOG_FLAG_FLAG_B, -7);
		return;
	case TEST_EV_VARLEN:
		TEST_EVENTLOG_VARLEN_EVENT_LOG_ALWAYS(s, seq, size, vals);
		return;
	case TEST_EV_RAW: {
		char *p = eventlog_scratch();
		if (!p)
			return;
		*(__u64 *)p = seq;
		eventlog_event_write(s, 100, EVENTLOG_LEVEL_INFO, TEST_EVENTLOG_KEYWORD_BASIC, p,
				     (__u32)size);
		return;
	}
	case TEST_EV_GATHER: {
		char *p = eventlog_scratch();
		if (!p)
			return;
		*(__u64 *)(p + 8) = seq + 1;   /* tail starts with seq + 1 */
		eventlog_event_write_gather(s, 101, EVENTLOG_LEVEL_INFO, TEST_EVENTLOG_KEYWORD_BASIC,
					    &seq, 8, p + 8, (__u32)size);
		return;
	}
	}
}

int EL_FN(test_ctl)(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 op = ctx->args[0];
	__u64 sid = ctx->args[1];
	__u32 kind = (__u32)ctx->args[2];
	__u64 count = ctx->args[3];
	__u64 seq = ctx->args[4];
	__u64 flags = ctx->args[5];
	__u64 size = ctx->args[6];
	struct eventlog_session *s;
	int n = 0;

	if (op == TEST_OP_CREATE)
		return eventlog_session_create(EL_PROVIDER_ID, sid, (const void *)0, 0) ? 0 : -1;
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
	/* Batches only for the two hot kinds: keeps the verifier's walk small. */
	if (kind == TEST_EV_SIMPLE) {
		for (int i = 0; i < TEST_BATCH_MAX; i++) {
			if (i >= count)
				break;
			if (flags & 1)
				TEST_EVENTLOG_SIMPLE_EVENT_LOG(s, seq + i);
			else
				TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(s, seq + i);
			n++;
		}
		return n;
	}
	if (kind == TEST_EV_COMPLEX && !(flags & 1)) {
		for (int i = 0; i < TEST_BATCH_MAX; i++) {
			if (i >= count)
				break;
			TEST_EVENTLOG_COMPLEX_EVENT_LOG_ALWAYS(s, sid, seq + i,
					TEST_EVENTLOG_TEST_STATUS_SUCCESS, TEST_EVENTLOG_FLAG_FLAG_B, -7);
			n++;
		}
		return n;
	}
	EL_FN(test_emit_one)(s, kind, seq, size, flags);
	return 1;
}

int EL_FN(on_getppid)(void *ctx)
{
	__u32 zero = 0;
	struct test_tp_cfg *c = EL_FN(tp_cfg).lookup(&zero);

	if (!c || c->tgid == 0 || (bpf_get_current_pid_tgid() >> 32) != c->tgid)
		return 0;
	struct eventlog_session *s = eventlog_session_lookup(EL_PROVIDER_ID, c->session_id);
	if (!s)
		return 0;
	__u64 seq = __sync_fetch_and_add(&c->seq, 1);
	TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(s, seq);
	return 0;
}
