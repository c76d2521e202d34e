/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * eventlog_subscriber.h - one subscriber's rings and delivery: a template.
 *
 * Not compiled as it stands: pyelog/kernel/loader.py fills it in and pastes
 * the result at the @EVENTLOG_SUBSCRIBERS@ marker of eventlog.h.  The
 * "subscriber" part is pasted once per subscriber with ${i} (its index),
 * ${size} (bytes per buffer), ${chunk} and ${chunks} (the chunk size and
 * count, see "Chunks" in eventlog.h) and ${locate} (how a reserved position
 * maps to a chunk and an offset) filled in; then eventlog_deliver_all()
 * from the "deliver" parts, with one "deliver one" per subscriber.  (bcc
 * has no BPF-to-BPF calls: every emit site inlines this delivery.)
 */

/* ---- part: subscriber ---- */
/* subscriber ${i}: ${size} bytes per buffer, two buffers per CPU, each
 * ${chunks} chunk(s) of ${chunk} bytes (see "Chunks" in eventlog.h) */
struct eventlog_buf_${i} { char data[${chunk} + EVENTLOG_BUF_SLACK]; };
BPF_F_TABLE("array", u32, struct eventlog_buf_${i}, eventlog_buf_${i}, 2 * ${chunks} * EVENTLOG_NR_CPUS, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct eventlog_cpu_state, eventlog_state_${i}, EVENTLOG_NR_CPUS, BPF_F_MMAPABLE);
BPF_RINGBUF_OUTPUT(eventlog_bell_${i}, 1);

static __always_inline int
eventlog_deliver_${i}(const struct eventlog_header *hdr, const void *head, __u32 hl,
                     const void *tail, __u32 tl, int oversized)
{
	__u32 cpu = hdr->cpu;
	struct eventlog_cpu_state *st = eventlog_state_${i}.lookup(&cpu);
	__u64 active = 0, pos = 0;
	int swapped = 0;

	if (!st)
		return 0;
	if (oversized) {
		__sync_fetch_and_add(&st->oversized, 1);
		return 0;
	}
	int ok = eventlog_reserve(st, ${size}, hdr->length, &active, &pos, &swapped);
	if (swapped) {
		__u64 v = cpu;
		eventlog_bell_${i}.ringbuf_output(&v, sizeof(v), 0);
	}
	if (!ok)
		return 0;
	${locate}
	__u32 idx = (cpu * 2 + (__u32)(active & 1)) * ${chunks} + (__u32)chunk;
	struct eventlog_buf_${i} *b = eventlog_buf_${i}.lookup(&idx);
	eventlog_copy(st, b ? b->data : (char *)0, ${chunk}, active, chunk, off, hdr, head, hl, tail, tl);
	return 1;
}

/* ---- part: deliver ---- */
#define EVENTLOG_HAVE_SUBSCRIBERS 1

static __always_inline int
eventlog_deliver_all(struct eventlog_provider *f, const struct eventlog_header *hdr,
		     __u32 level, __u32 keywords, const void *head, __u32 hl,
		     const void *tail, __u32 tl, int target, int oversized)
{
	int n = 0;

/* ---- part: deliver one ---- */
	if ((target < 0 || target == ${i}) && level <= f->sub_level[${i}] &&
	    (keywords & f->sub_keywords[${i}]))
		n += eventlog_deliver_${i}(hdr, head, hl, tail, tl, oversized);

/* ---- part: deliver end ---- */
	return n;
}
