/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tcp_aggregate.bpf.c - an in-kernel subscriber of the TCP provider: per
 * connection counters and an RTT histogram, kept in maps at emit time (no
 * ring; see eventlog_kernel_deliver in eventlog.h). Pasted once per TCP
 * provider instance after the providers (EL_FN/EL_PROVIDER_ID as theirs);
 * pyelog/providers/tcp_aggregate.py reads the maps.
 *
 * A connection's events come from several CPUs at once (sends in process
 * context, receives in softirq), hence the atomic adds. Its entry is made
 * by its first event this subscriber sees and stays after SESSION_END
 * (ended = 1) until the LRU table needs room: the last 65536 connections.
 */

struct EL_FN(tcp_agg_conn) {
	__u64 segs_out;       /* OUT events: packets as the stack sent them */
	__u64 segs_in;        /* IN events */
	__u64 bytes_out;      /* OUT len, retransmissions included */
	__u64 bytes_in;       /* IN len */
	__u64 retransmits;    /* RETRANSMIT segs, those sent (err 0) */
	__u64 rtt_samples;    /* RTT_SAMPLE events */
	__u64 rtt_sum_us;
	__u64 rtt_max_us;
	__u64 first_us;       /* first and last event seen, us since boot */
	__u64 last_us;
	__u64 ended;          /* SESSION_END seen */
};

#define TCP_AGG_RTT_BUCKETS 32   /* bucket k: rtt_us in [2^k, 2^(k+1)), 0 in bucket 0 */
BPF_TABLE("lru_hash", __u64, struct EL_FN(tcp_agg_conn), EL_FN(tcp_agg_conns), 65536);
BPF_ARRAY(EL_FN(tcp_agg_rtt), __u64, TCP_AGG_RTT_BUCKETS);

static __always_inline __u32 EL_FN(tcp_agg_log2)(__u32 v)
{
	__u32 r = 0;

	if (v >= 1U << 16) { v >>= 16; r += 16; }
	if (v >= 1U << 8) { v >>= 8; r += 8; }
	if (v >= 1U << 4) { v >>= 4; r += 4; }
	if (v >= 1U << 2) { v >>= 2; r += 2; }
	if (v >= 1U << 1) { r += 1; }
	return r;
}

static __always_inline void
EL_FN(tcp_aggregate)(const struct eventlog_header *hdr, const void *head, __u32 hl)
{
	__u64 sid = hdr->session_id;
	struct EL_FN(tcp_agg_conn) *c;
	__u32 id = hdr->event_id;

	if (sid == EVENTLOG_SESSION_ID_NONE)
		return;
	c = EL_FN(tcp_agg_conns).lookup(&sid);
	if (!c) {
		struct EL_FN(tcp_agg_conn) zero = {};
		zero.first_us = hdr->timestamp;
		EL_FN(tcp_agg_conns).update(&sid, &zero);   /* a race loses nothing: */
		c = EL_FN(tcp_agg_conns).lookup(&sid);       /* both add to the survivor */
		if (!c)
			return;
	}
	c->last_us = hdr->timestamp;
	if (id == TCP_EVENTLOG_OUT_ID || id == TCP_EVENTLOG_IN_ID) {
		__u32 len = 0;   /* IN and OUT both begin seq, ack, flags, win, len */
		if (hl >= __builtin_offsetof(struct tcp_eventlog_out, len) + sizeof(len))
			bpf_probe_read_kernel(&len, sizeof(len), head + __builtin_offsetof(struct tcp_eventlog_out, len));
		if (id == TCP_EVENTLOG_OUT_ID) {
			__sync_fetch_and_add(&c->segs_out, 1);
			__sync_fetch_and_add(&c->bytes_out, len);
		} else {
			__sync_fetch_and_add(&c->segs_in, 1);
			__sync_fetch_and_add(&c->bytes_in, len);
		}
	} else if (id == TCP_EVENTLOG_RETRANSMIT_ID) {
		struct tcp_eventlog_retransmit r = {};
		if (hl >= sizeof(r)) {
			bpf_probe_read_kernel(&r, sizeof(r), head);
			if (r.err == 0)
				__sync_fetch_and_add(&c->retransmits, r.segs ? r.segs : 1);
		}
	} else if (id == TCP_EVENTLOG_RTT_SAMPLE_ID) {
		struct tcp_eventlog_rtt_sample r = {};
		if (hl >= sizeof(r)) {
			bpf_probe_read_kernel(&r, sizeof(r), head);
			__sync_fetch_and_add(&c->rtt_samples, 1);
			__sync_fetch_and_add(&c->rtt_sum_us, r.rtt_us);
			if (r.rtt_us > c->rtt_max_us)
				c->rtt_max_us = r.rtt_us;   /* a racing larger sample may lose: max is best effort */
			__u32 k = EL_FN(tcp_agg_log2)(r.rtt_us) & (TCP_AGG_RTT_BUCKETS - 1);
			__u64 *b = EL_FN(tcp_agg_rtt).lookup(&k);
			if (b)
				__sync_fetch_and_add(b, 1);
		}
	} else if (id == EVENTLOG_SESSION_END_ID) {
		c->ended = 1;
	}
}
