/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * eventlog.h - the in-kernel half of pyelog: FreeBSD eventlog(9) in eBPF.
 *
 * This file is pasted (not #included: bcc only rewrites map syntax in the
 * main text) at the top of every pyelog BPF program by pyelog/loader.py,
 * followed by the generated per-subscriber code (at the EVENTLOG_SUBSCRIBERS
 * marker below), the schema-generated producer headers and the providers'
 * own C code.
 *
 * Configuration macros, defined by the loader before this text:
 *   EVENTLOG_NR_CPUS          possible CPUs (ring arrays are indexed by CPU)
 *   EVENTLOG_NR_SUBS          number of subscribers compiled in (>= 0)
 *   EVENTLOG_MAX_PROVIDERS    provider ids are 1..EVENTLOG_MAX_PROVIDERS-1
 *   EVENTLOG_MAX_SESSIONS     size of the session hash
 *   EVENTLOG_NR_KSUBS         number of in-kernel subscribers (>= 0)
 *
 * Design (see pyelog/ring.py for the reader half):
 *
 * Every subscriber owns, per CPU, two buffers of B bytes (an mmapable array
 * "eventlog_buf_<i>") and one 128-byte control block (an mmapable array
 * "eventlog_state_<i>", element cpu) whose first word is the 64-bit packed
 * state of FreeBSD's protocol:
 *
 *   63..32 reader_len   bytes handed to the reader at the last swap
 *   31..2  commit_pos   next write offset in the active buffer
 *   1      swap_allowed the reader buffer is drained; a writer may swap
 *   0      active       buffer writers append to (reader buffer = 1-active)
 *
 * One deliberate difference from FreeBSD: the CAS on the state word
 * *reserves* the record's bytes before they are copied, and a second
 * counter, written[b], is advanced (atomic add) once the copy is done.  The
 * reader only consumes a buffer when the low 32 bits of written[b] (summed
 * over its chunks, below) equal reader_len (the high 32 bits count the
 * records, for the reader).  FreeBSD
 * copies first and commits with the CAS afterwards, which is only safe when
 * nothing can interrupt the copy: on Linux a sock_ops program in process
 * context can be interrupted mid-copy by a softirq or IPI program on the
 * same CPU (no SMR section to hold it off), and the interrupted writer's
 * remaining stores would land on top of the interrupting writer's already
 * committed record.  With reserve-then-copy each writer owns disjoint bytes,
 * so nesting at any point can neither corrupt nor lose a committed record;
 * writers still never wait (only the reader waits, for at most the length
 * of one interrupted copy), and buffers still only ever hold whole records.
 *
 * Chunks: the verifier refuses variable offsets of 2^29 or more into one
 * map value, so a buffer above EVENTLOG_CHUNK_MAX bytes is split into up to
 * EVENTLOG_MAX_CHUNKS chunks of C = 2^n bytes, each its own map element
 * (element (cpu*2+b)*chunks + k; unsplit buffers are simply one chunk).
 * Positions stay logical: the state word, reservation and capacity are
 * exactly those of one B-byte buffer.  The record that crosses the end of a
 * chunk is written whole into that chunk's slack, past C, so every chunk
 * holds whole records; the next chunk's first bytes then stay unused.
 * written[b][k] counts the records starting in chunk k, from which the
 * reader derives where each chunk's records begin and end (chunk k ends
 * bytes_k past where it began; chunk k+1 begins that much minus C in).
 *
 * Filtering: eventlog_providers[provider_id] holds each subscriber's
 * (level, keywords) subscription for that provider instance and the
 * aggregate (max level, OR of keywords) that sessions derive their
 * effective values from.  User space rewrites the entry on every
 * subscription change and bumps its generation; eventlog_session_lookup()
 * refreshes a session's effective_level/effective_keywords lazily when it
 * sees a newer generation, so the generated _ENABLED() test (two loads,
 * no call) is always current for the session pointer the provider holds.
 */
#ifndef PYELOG_EVENTLOG_H
#define PYELOG_EVENTLOG_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/ptrace.h>

#ifndef EVENTLOG_NR_CPUS
#define EVENTLOG_NR_CPUS 64
#endif
#ifndef EVENTLOG_NR_SUBS
#define EVENTLOG_NR_SUBS 0
#endif
#ifndef EVENTLOG_MAX_PROVIDERS
#define EVENTLOG_MAX_PROVIDERS 64
#endif
#ifndef EVENTLOG_MAX_SESSIONS
#define EVENTLOG_MAX_SESSIONS 65536
#endif

#ifndef EVENTLOG_SESSION_DATA
#define EVENTLOG_SESSION_DATA 0
#endif

/* Public constants: the contract with generated producer headers. */
#define EVENTLOG_LEVEL_NONE    0
#define EVENTLOG_LEVEL_ERROR   1
#define EVENTLOG_LEVEL_WARN    2
#define EVENTLOG_LEVEL_INFO    3
#define EVENTLOG_LEVEL_VERBOSE 4
#define EVENTLOG_LEVEL_TRACE   5

#define EVENTLOG_KEYWORD_SESSION     0x80000000U
#define EVENTLOG_SESSION_END_ID      0xFFFFFFFFU
#define EVENTLOG_SESSION_CREATE_ID   0xFFFFFFFEU
#define EVENTLOG_DUMP_COMPLETE_ID    0xFFFFFFFDU
#define EVENTLOG_SESSION_ID_NONE     0xFFFFFFFFFFFFFFFFULL

#define EVENTLOG_HEADER_SIZE   32
#define EVENTLOG_MAX_RECORD    65535
#define EVENTLOG_MAX_PAYLOAD   (EVENTLOG_MAX_RECORD - EVENTLOG_HEADER_SIZE)
#define EVENTLOG_SCRATCH_SIZE  65536
/* Map values are chunk + this much, so that "pos <= C, header 32,
 * head <= 65535, tail <= 65535" proves every copy in bounds to the verifier. */
#define EVENTLOG_BUF_SLACK     131136
/* Buffers up to this size are one chunk; larger ones use chunks of this
 * size (C + slack + 64 KiB of offset stays under the verifier's 2^29). */
#define EVENTLOG_CHUNK_MAX     (1U << 28)
#define EVENTLOG_MAX_CHUNKS    4

/* Session: the first two fields are read by the generated _ENABLED macros. */
struct eventlog_session {
	__u32 effective_level;
	__u32 effective_keywords;
	/* private */
	__u64 session_id;
	__u32 provider_id;
	__u32 enabled;
	__u32 generation;        /* provider filter generation last applied */
	__u32 override_level;    /* per-session filter; both 0 = none */
	__u32 override_keywords;
	__u32 provider_word;     /* free for the provider (the core never uses it) */
	__u64 created_at;        /* us since boot */
	/* The provider's own per-session state, EVENTLOG_SESSION_DATA bytes
	 * (the largest ProviderSpec.session_data of the providers loaded;
	 * zeroed when the session is made; the core never uses it): facts a
	 * provider would otherwise keep beside the session, in a map or
	 * socket storage that costs an allocation per session. */
	__u64 provider_data[EVENTLOG_SESSION_DATA / 8];
};

struct eventlog_session_key {
	__u64 session_id;
	__u32 provider_id;
	__u32 _pad;
};

#define EVENTLOG_SUBS_ARRAY (EVENTLOG_NR_SUBS > 0 ? EVENTLOG_NR_SUBS : 1)
#ifndef EVENTLOG_NR_KSUBS
#define EVENTLOG_NR_KSUBS 0
#endif
#define EVENTLOG_KSUBS_ARRAY (EVENTLOG_NR_KSUBS > 0 ? EVENTLOG_NR_KSUBS : 1)

/* Per provider instance: subscriptions and aggregate, written by user space. */
struct eventlog_provider {
	__u32 level;            /* aggregate: max level over subscriptions */
	__u32 keywords;         /* aggregate: OR of keywords */
	__u32 generation;       /* bumped by user space after every change */
	__u32 default_enabled;  /* new sessions start enabled */
	__u32 sub_level[EVENTLOG_SUBS_ARRAY];
	__u32 sub_keywords[EVENTLOG_SUBS_ARRAY];
	/* in-kernel subscribers (see eventlog_kernel_deliver below) */
	__u32 ksub_level[EVENTLOG_KSUBS_ARRAY];
	__u32 ksub_keywords[EVENTLOG_KSUBS_ARRAY];
};

/* Per provider instance counters, written only by BPF (atomics). */
struct eventlog_provider_stats {
	__u64 sessions_created;
	__u64 sessions_ended;
	__u64 sessions_failed;  /* session map full */
	__u64 creates_lost;     /* SESSION_CREATEs of refused sessions (see below) */
	__u64 lost_other;       /* lost events eventlog_lost_events had no room for */
};

/* Per subscriber, per CPU control block (mmapped by the reader). */
struct eventlog_cpu_state {
	__u64 state;            /* packed word, see top of file */
	/* per buffer and chunk: records << 32 | bytes copied, of the records
	 * starting in that chunk (unsplit buffers use [b][0] only) */
	__u64 written[2][EVENTLOG_MAX_CHUNKS];
	__u64 dropped;          /* events lost: buffer full (exact) */
	__u64 oversized;        /* events > 65535 bytes discarded */
	__u64 swaps;            /* writer-initiated swaps */
	__u64 min_ts[2];        /* timestamp range per buffer: lets the */
	__u64 max_ts[2];        /* reader skip merging disjoint buffers  */
};

struct eventlog_header {
	__u16 length;
	__u16 cpu;
	__u16 provider_id;
	__u16 reserved;
	__u64 timestamp;
	__u64 session_id;
	__u32 event_id;
	__s32 thread_id;
};

struct eventlog_scratch_area { char data[EVENTLOG_SCRATCH_SIZE]; };

BPF_ARRAY(eventlog_providers, struct eventlog_provider, EVENTLOG_MAX_PROVIDERS);
BPF_ARRAY(eventlog_provider_stats, struct eventlog_provider_stats, EVENTLOG_MAX_PROVIDERS);
BPF_HASH(eventlog_sessions, struct eventlog_session_key, struct eventlog_session, EVENTLOG_MAX_SESSIONS);
/* Not PERCPU_ARRAY: per-CPU values are capped at 32 KiB. */
BPF_ARRAY(eventlog_scratch_map, struct eventlog_scratch_area, EVENTLOG_NR_CPUS);

/*
 * Session epochs, per provider instance: bumped *after* every change to
 * the session table that a cached copy of one of its sessions could miss
 * (a session removed, its enablement or filter override changed), by BPF
 * (`kernel`, atomically) or by the loader's process (`user`, its only
 * writer: Loader.sessions_changed()).  A cache
 * (eventlog_session_lookup_cached) reads both before it looks a session
 * up, so a copy taken before a change never outlives it.  Only instances
 * whose hooks cache (`cached`, set by the loader before any hook is
 * attached, from ProviderSpec.session_cache) pay for the bumps: the TCP
 * provider changes sessions several times per connection from every CPU,
 * and an atomic on one shared line per change is what the cache saves.
 */
struct eventlog_session_epoch {
	__u64 kernel;
	__u64 user;
	__u64 cached;
};
BPF_ARRAY(eventlog_session_epoch, struct eventlog_session_epoch, EVENTLOG_MAX_PROVIDERS);

/* One hook's cache of the last session it looked up (a per-CPU array of
 * one, declared by the hook): a copy, valid for emitting only. */
struct eventlog_session_cache {
	__u64 kernel_epoch;
	__u64 user_epoch;
	__u64 valid;
	struct eventlog_session s;
};

/*
 * Events a provider produced but could not hand to the core (its outbox
 * full, a segment with no session to hold it, ...), per provider instance,
 * event id and CPU.  Counted by id so that user space charges each
 * subscriber exactly the lost events its own subscription would have
 * received (Loader.provider_lost): a subscriber at INFO is not charged the
 * VERBOSE segments that another one's subscription had the provider lose.
 * Should the table ever be full (a provider with more event ids than it
 * has room for), the event counts in its provider's lost_other, charged to
 * every subscriber of the provider: an over-count, never silence.
 */
struct eventlog_lost_key {
	__u32 provider_id;
	__u32 event_id;
};
#ifndef EVENTLOG_LOST_KEYS
#define EVENTLOG_LOST_KEYS 1024
#endif
BPF_PERCPU_HASH(eventlog_lost_events, struct eventlog_lost_key, __u64, EVENTLOG_LOST_KEYS);

static __always_inline void eventlog_event_lost(__u32 provider_id, __u32 event_id, __u64 n)
{
	struct eventlog_lost_key k = { .provider_id = provider_id, .event_id = event_id };
	__u64 zero = 0;
	__u64 *c = eventlog_lost_events.lookup_or_try_init(&k, &zero);

	if (c) {
		*c += n;
		return;
	}
	struct eventlog_provider_stats *ps = eventlog_provider_stats.lookup(&provider_id);
	if (ps)
		__sync_fetch_and_add(&ps->lost_other, n);
}

#define EL_STATE_ACTIVE(s)   ((s) & 1ULL)
#define EL_STATE_SWAP_OK(s)  (((s) >> 1) & 1ULL)
#define EL_STATE_POS(s)      (((s) >> 2) & 0x3FFFFFFFULL)
#define EL_STATE_RLEN(s)     ((s) >> 32)
#define EL_RESERVE_TRIES     4

/*
 * Writer step 1: reserve `total` bytes in this CPU's active buffer.
 * Returns 1 with active and pos set, 0 when the event is dropped (counted).
 * *swapped is set when this writer flipped the buffers (ring the doorbell).
 */
static __always_inline int
eventlog_reserve(struct eventlog_cpu_state *st, __u64 size, __u64 total,
		 __u64 *active, __u64 *pos, int *swapped)
{
	int tried_swap = 0;

#pragma unroll
	for (int i = 0; i < EL_RESERVE_TRIES; i++) {
		__u64 old = *(volatile __u64 *)&st->state;
		__u64 a = EL_STATE_ACTIVE(old);
		__u64 p = EL_STATE_POS(old);

		if (p + total > size) {
			if (tried_swap || !EL_STATE_SWAP_OK(old))
				break;
			/* Proactive swap: reader drained the other buffer. */
			tried_swap = 1;
			__u64 nw = (p << 32) | (a ^ 1ULL);
			if (__sync_val_compare_and_swap(&st->state, old, nw) == old) {
				*swapped = 1;
				__sync_fetch_and_add(&st->swaps, 1);
			}
			continue;   /* re-derive from whatever state won */
		}
		if (__sync_val_compare_and_swap(&st->state, old, old + (total << 2)) == old) {
			*active = a;
			*pos = p;
			return 1;
		}
		/* Lost to a nested writer or the reader: re-derive and retry. */
	}
	__sync_fetch_and_add(&st->dropped, 1);
	return 0;
}

/* Writer step 2: copy the record into the bytes reserved (pos within
 * chunk `chunk` of buffer `active`, whose data is `buf`), then publish. */
/* Payloads copied with plain loads and stores: one part, its size a
 * compile-time constant (__builtin_constant_p is decided after inlining)
 * and small. Anything else (variable sizes: the TCP outbox, varlen tails)
 * goes through bpf_probe_read_kernel. */
#define EVENTLOG_PLAIN_COPY_MAX 128
#define EVENTLOG_PLAIN_COPY(hl, tl) \
	(__builtin_constant_p(hl) && __builtin_constant_p(tl) && (tl) == 0 && \
	 (hl) > 0 && (hl) <= EVENTLOG_PLAIN_COPY_MAX)

static __always_inline void
eventlog_copy(struct eventlog_cpu_state *st, char *buf, __u64 chunk_size, __u64 active,
	      __u64 chunk, __u64 pos, const struct eventlog_header *hdr, const void *head,
	      __u32 hl, const void *tail, __u32 tl)
{
	__u64 total = hdr->length;

	/* Hide pos from clang: it knows pos + total <= size from the
	 * reservation and would drop the test below, and kernels before about
	 * 6.6 (Debian 12's 6.1) do not carry a test's bound over to a copy of
	 * pos spilled to the stack before it: an unbounded offset there. */
	asm volatile("" : "+r"(pos));
	/* Bounds for the verifier only: the oversize check in eventlog_emit()
	 * and the reservation already guarantee pos < chunk_size and the record
	 * fits the slack, so the masks never change a value.  (Masks, not
	 * comparisons: clang keeps them next to the helper calls, where the
	 * verifier needs them.) */
	if (buf && pos <= chunk_size) {
		char *dst = buf + pos;
		__u32 h = hl, t = tl;
		/* Hide the values from clang so it cannot drop the masks. */
		asm volatile("" : "+r"(h), "+r"(t));
		h &= 0xFFFF;
		t &= 0xFFFF;
		/* Records sit at any byte offset; unaligned stores are fine on
		 * the architectures this runs on (x86_64, arm64). */
		*(__u64 *)(dst + 0) = *(const __u64 *)hdr;
		*(__u64 *)(dst + 8) = hdr->timestamp;
		*(__u64 *)(dst + 16) = hdr->session_id;
		*(__u64 *)(dst + 24) = *((const __u64 *)hdr + 3);
		if (EVENTLOG_PLAIN_COPY(hl, tl)) {
			/* A payload of a size known when compiling (a generated
			 * _LOG macro's sizeof): plain loads and stores, no helper
			 * call. hl, not h: clang must see the constant. */
			__builtin_memcpy(dst + EVENTLOG_HEADER_SIZE, head, hl);
		} else {
			if (h)
				bpf_probe_read_kernel(dst + EVENTLOG_HEADER_SIZE, h, head);
			if (t)
				bpf_probe_read_kernel(dst + EVENTLOG_HEADER_SIZE + h, t, tail);
		}
	}
	active &= 1;
	if (hdr->timestamp > st->max_ts[active])
		st->max_ts[active] = hdr->timestamp;
	if (st->min_ts[active] == 0 || hdr->timestamp < st->min_ts[active])
		st->min_ts[active] = hdr->timestamp;
	/* Full barrier: the copy is visible before the reader sees the count.
	 * Low 32 bits: bytes copied (compared with reader_len); high 32 bits:
	 * records copied, so the reader never walks a buffer to count it.
	 * One atomic for both; bytes never carry into the count (a chunk holds
	 * < 2^29 bytes). */
	__sync_fetch_and_add(&st->written[active][chunk & (EVENTLOG_MAX_CHUNKS - 1)],
			     total | (1ULL << 32));
}

/* @EVENTLOG_SUBSCRIBERS@ : pyelog/loader.py inserts the per-subscriber maps
 * and eventlog_deliver_all() here.  Without it nothing is delivered. */
#ifndef EVENTLOG_HAVE_SUBSCRIBERS
static __always_inline int
eventlog_deliver_all(struct eventlog_provider *f, const struct eventlog_header *hdr,
		     __u32 level, __u32 keywords, const void *head, __u32 hl,
		     const void *tail, __u32 tl, int target, int oversized)
{
	return 0;
}
#endif

/*
 * In-kernel subscribers, FreeBSD's callback subscribers: code that runs at
 * emit time on each event its subscription (ksub_level/ksub_keywords of
 * the provider) lets through, with no ring, e.g. counters kept in maps.
 * The loader defines eventlog_kernel_deliver() after the providers (it
 * calls each kernel subscriber's function, pasted with them) and
 * EVENTLOG_NR_KSUBS; without kernel subscribers nothing is called.
 */
#if EVENTLOG_NR_KSUBS > 0
static __always_inline void
eventlog_kernel_deliver(struct eventlog_provider *f, const struct eventlog_header *hdr,
			__u32 level, __u32 keywords, const void *head, __u32 hl);
#endif

/* ns / 1000 without a division: BPF has no multiply-high, so LLVM emits
 * a 64-bit div, which the JIT turns into the CPU's slowest integer
 * instruction, on every event. Instead, what compilers emit for x86:
 * ((ns >> 3) * ceil(2^68 / 125)) >> 68, the high half of the product
 * built from four 32-bit products. Exact for every u64 (compilers rely on
 * it; tests/test_timestamps.py checks this formula, transcribed, against
 * integer division). */
static __always_inline __u64 eventlog_ns_to_us(__u64 ns)
{
	__u64 a = ns >> 3;
	__u64 a0 = a & 0xFFFFFFFFULL, a1 = a >> 32;
	__u64 b0 = 0xE353F7CFULL, b1 = 0x20C49BA5ULL;   /* 0x20C49BA5E353F7CF */
	__u64 a0b0 = a0 * b0, a0b1 = a0 * b1, a1b0 = a1 * b0, a1b1 = a1 * b1;
	__u64 mid = (a0b0 >> 32) + (a1b0 & 0xFFFFFFFFULL) + (a0b1 & 0xFFFFFFFFULL);

	return (a1b1 + (a1b0 >> 32) + (a0b1 >> 32) + (mid >> 32)) >> 4;
}

static __always_inline __u64 eventlog_now_us(void)
{
	return eventlog_ns_to_us(bpf_ktime_get_boot_ns());
}

/*
 * Core emit: filter per subscriber (level <= sub level, keywords & sub
 * keywords), then reserve/copy into each matching subscriber's ring.
 * target >= 0 restricts delivery to one subscriber (dump-state replay).
 * task: record the current thread's id (0: thread 0, for program types
 * that may not ask for the current task; the loader defines
 * EVENTLOG_TASK_<TYPE> where the kernel allows it).
 * Returns the number of subscribers that received the event.
 */
static __always_inline int
eventlog_emit_task(__u32 provider_id, __u64 session_id, __u64 timestamp, __u32 event_id,
		   __u32 level, __u32 keywords, const void *head, __u32 hl,
		   const void *tail, __u32 tl, int target, int task)
{
	struct eventlog_header hdr = {};
	__u32 pid = provider_id;
	struct eventlog_provider *f = eventlog_providers.lookup(&pid);

	if (!f)
		return 0;
	__u64 total = (__u64)EVENTLOG_HEADER_SIZE + hl + tl;
	hdr.length = (__u16)total;
	hdr.cpu = (__u16)bpf_get_smp_processor_id();
	hdr.provider_id = (__u16)provider_id;
	hdr.timestamp = timestamp ? timestamp : eventlog_now_us();
	hdr.session_id = session_id;
	hdr.event_id = event_id;
	if (task)
		hdr.thread_id = (__s32)(bpf_get_current_pid_tgid() & 0xFFFFFFFF);
#if EVENTLOG_NR_KSUBS > 0
	/* Not replays for one ring subscriber (target), not oversized events. */
	if (target < 0 && total <= EVENTLOG_MAX_RECORD)
		eventlog_kernel_deliver(f, &hdr, level, keywords, head, hl);
#endif
	return eventlog_deliver_all(f, &hdr, level, keywords, head, hl, tail, tl,
				    target, total > EVENTLOG_MAX_RECORD);
}

static __always_inline int
eventlog_emit(__u32 provider_id, __u64 session_id, __u64 timestamp, __u32 event_id,
	      __u32 level, __u32 keywords, const void *head, __u32 hl,
	      const void *tail, __u32 tl, int target)
{
	return eventlog_emit_task(provider_id, session_id, timestamp, event_id, level, keywords,
				  head, hl, tail, tl, target, 1);
}

/* ---- Public write API (contract with the generated _LOG macros) ---- */

static __always_inline int
eventlog_event_write_gather(struct eventlog_session *s, __u32 event_id, __u32 level,
			    __u32 keywords, const void *head, __u32 head_len,
			    const void *tail, __u32 tail_len)
{
	if (!s)
		return 0;
	return eventlog_emit(s->provider_id, s->session_id, 0, event_id, level, keywords,
			     head, head_len, tail, tail_len, -1);
}

static __always_inline int
eventlog_event_write(struct eventlog_session *s, __u32 event_id, __u32 level,
		     __u32 keywords, const void *payload, __u32 len)
{
	return eventlog_event_write_gather(s, event_id, level, keywords, payload, len,
					   (const void *)0, 0);
}

/* Per-CPU 64 KiB area for payloads too big for the 512-byte stack.  Not
 * nesting-safe: a program interrupting this one on the same CPU may reuse
 * it (the ring itself stays consistent; only that payload can be mixed). */
static __always_inline void *eventlog_scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct eventlog_scratch_area *a = eventlog_scratch_map.lookup(&cpu);
	return a ? (void *)a->data : (void *)0;
}

/* ---- Sessions ---- */

static __always_inline void
eventlog_session_refresh(struct eventlog_session *s, struct eventlog_provider *p)
{
	__u32 gen = *(volatile __u32 *)&p->generation;
	__u32 lvl = 0, kw = 0;

	if (s->enabled) {
		if (s->override_level || s->override_keywords) {
			lvl = s->override_level;
			kw = s->override_keywords;
		} else {
			lvl = p->level;
			kw = p->keywords;
		}
	}
	s->effective_level = lvl;
	s->effective_keywords = kw;
	s->generation = gen;
}

/* Provider-wide enablement: the cheapest "does anyone listen" test, for
 * hooks that would otherwise look a session up on every call. */
static __always_inline int eventlog_provider_enabled(__u32 provider_id)
{
	struct eventlog_provider *p = eventlog_providers.lookup(&provider_id);
	return p && p->level != EVENTLOG_LEVEL_NONE;
}

/* Find a live session; refreshes its effective filter when the provider's
 * subscriptions changed since it was last computed.  NULL if none. */
static __always_inline struct eventlog_session *
eventlog_session_lookup(__u32 provider_id, __u64 session_id)
{
	struct eventlog_session_key k = {};
	struct eventlog_session *s;
	struct eventlog_provider *p;

	k.session_id = session_id;
	k.provider_id = provider_id;
	s = eventlog_sessions.lookup(&k);
	if (!s)
		return s;
	p = eventlog_providers.lookup(&provider_id);
	if (p && s->generation != *(volatile __u32 *)&p->generation)
		eventlog_session_refresh(s, p);
	return s;
}

static __always_inline void eventlog_sessions_changed(__u32 provider_id)
{
	struct eventlog_session_epoch *e = eventlog_session_epoch.lookup(&provider_id);

	if (e && e->cached)
		__sync_fetch_and_add(&e->kernel, 1);
}

/*
 * eventlog_session_lookup() for hooks that only emit, many times on one
 * session (the test provider's getppid hook): the hash lookup (16-byte key)
 * is about a third of the core's cost per event, and a hook's per-CPU
 * cache (`c`, the value of a BPF_PERCPU_ARRAY of one that the hook alone
 * uses: a program does not interrupt itself on a CPU) answers instead
 * while neither of the instance's epochs moved (only for an instance the
 * loader marked `cached`; others get the plain lookup). Returns the cache's copy of the session (or
 * NULL): emit with it, never change it (set_enabled, set_filter, destroy,
 * the provider's own fields take eventlog_session_lookup()'s pointer).
 */
static __always_inline struct eventlog_session *
eventlog_session_lookup_cached(struct eventlog_session_cache *c, __u32 provider_id,
			       __u64 session_id)
{
	struct eventlog_session_epoch *e = eventlog_session_epoch.lookup(&provider_id);
	struct eventlog_session *s;
	struct eventlog_provider *p;
	__u64 ke, ue;

	if (!c || !e)
		return (struct eventlog_session *)0;
	if (!e->cached)         /* its changes do not move the epochs */
		return eventlog_session_lookup(provider_id, session_id);
	ke = *(volatile __u64 *)&e->kernel;
	ue = *(volatile __u64 *)&e->user;
	if (c->valid && c->s.session_id == session_id && c->s.provider_id == provider_id &&
	    c->kernel_epoch == ke && c->user_epoch == ue) {
		p = eventlog_providers.lookup(&provider_id);
		if (p && c->s.generation != *(volatile __u32 *)&p->generation)
			eventlog_session_refresh(&c->s, p);
		return &c->s;
	}
	c->valid = 0;
	s = eventlog_session_lookup(provider_id, session_id);
	if (!s)
		return s;
	c->s = *s;
	c->kernel_epoch = ke;
	c->user_epoch = ue;
	c->valid = 1;
	return &c->s;
}

/*
 * Find or add a session, emitting nothing (providers whose sessions start
 * disabled use it directly; eventlog_session_create() adds SESSION_CREATE).
 * enabled: 0 or 1, or -1 for the provider's default. *created says whether
 * this call added it. NULL when the provider is unknown or the map is full.
 */
static __always_inline struct eventlog_session *
eventlog_session_insert(__u32 provider_id, __u64 session_id, int enabled, int *created)
{
	struct eventlog_session_key k = {};
	struct eventlog_session init = {};
	struct eventlog_session *s;
	struct eventlog_provider *p = eventlog_providers.lookup(&provider_id);
	struct eventlog_provider_stats *ps = eventlog_provider_stats.lookup(&provider_id);

	if (!p)
		return (struct eventlog_session *)0;
	k.session_id = session_id;
	k.provider_id = provider_id;
	init.session_id = session_id;
	init.provider_id = provider_id;
	init.enabled = enabled < 0 ? (p->default_enabled ? 1 : 0) : (enabled ? 1 : 0);
	init.created_at = eventlog_now_us();
	eventlog_session_refresh(&init, p);
	/* Insert first (BPF_NOEXIST), look up only when that fails: sessions
	 * are nearly always new here, and the insert searches the bucket
	 * anyway: a lookup before it was one more hash search per new session. */
	if (eventlog_sessions.insert(&k, &init) != 0) {
		s = eventlog_sessions.lookup(&k);
		if (s)
			return s;
		if (ps)
			__sync_fetch_and_add(&ps->sessions_failed, 1);
		return (struct eventlog_session *)0;
	}
	if (ps)
		__sync_fetch_and_add(&ps->sessions_created, 1);
	*created = 1;
	return eventlog_sessions.lookup(&k);
}

/*
 * A session the table refused (eventlog_session_insert returned NULL) would
 * have begun with a SESSION_CREATE if enabled (enabled < 0: the provider's
 * default) and subscribed to: count that event as lost. User space adds
 * creates_lost to every subscriber's dropped events, so a capture's header
 * says that something is missing; the refused session's later events are
 * never produced (no session), its sessions_failed entry says which.
 */
static __always_inline void eventlog_session_refused(__u32 provider_id, int enabled)
{
	struct eventlog_provider *p = eventlog_providers.lookup(&provider_id);
	struct eventlog_provider_stats *ps = eventlog_provider_stats.lookup(&provider_id);

	if (!p || !ps)
		return;
	if (enabled < 0)
		enabled = p->default_enabled;
	if (enabled && p->level >= EVENTLOG_LEVEL_INFO && (p->keywords & EVENTLOG_KEYWORD_SESSION))
		__sync_fetch_and_add(&ps->creates_lost, 1);
}

/*
 * Create (or return the existing) session.  Emits SESSION_CREATE with the
 * given payload only when the session is enabled and someone subscribes to
 * the provider, as FreeBSD does.  NULL when the session map is full.
 */
static __always_inline struct eventlog_session *
eventlog_session_create(__u32 provider_id, __u64 session_id, const void *payload, __u32 len)
{
	int created = 0;
	struct eventlog_session *s = eventlog_session_insert(provider_id, session_id, -1, &created);
	struct eventlog_provider *p;

	if (!s)
		eventlog_session_refused(provider_id, -1);
	if (!s || !created || !s->enabled)
		return s;
	p = eventlog_providers.lookup(&provider_id);
	if (p && p->level != EVENTLOG_LEVEL_NONE)
		eventlog_emit(provider_id, session_id, s->created_at,
			      EVENTLOG_SESSION_CREATE_ID, EVENTLOG_LEVEL_INFO,
			      EVENTLOG_KEYWORD_SESSION, payload, len, (const void *)0, 0, -1);
	return s;
}

/* Free a session's map entry, with no SESSION_END. */
static __always_inline void eventlog_session_remove(struct eventlog_session *s)
{
	struct eventlog_session_key k = {};
	__u32 pid = s->provider_id;
	struct eventlog_provider_stats *ps;

	k.session_id = s->session_id;
	k.provider_id = pid;
	if (eventlog_sessions.delete(&k) == 0) {
		eventlog_sessions_changed(pid);
		ps = eventlog_provider_stats.lookup(&pid);
		if (ps)
			__sync_fetch_and_add(&ps->sessions_ended, 1);
	}
}

/* End a session: SESSION_END (if enabled), then free its map entry. */
static __always_inline void eventlog_session_destroy(struct eventlog_session *s)
{
	if (!s)
		return;
	if (s->enabled)
		eventlog_emit(s->provider_id, s->session_id, 0, EVENTLOG_SESSION_END_ID,
			      EVENTLOG_LEVEL_INFO, EVENTLOG_KEYWORD_SESSION,
			      (const void *)0, 0, (const void *)0, 0, -1);
	eventlog_session_remove(s);
}

static __always_inline void eventlog_session_set_enabled(struct eventlog_session *s, int on)
{
	struct eventlog_provider *p;
	__u32 pid;

	if (!s)
		return;
	pid = s->provider_id;
	s->enabled = on ? 1 : 0;
	p = eventlog_providers.lookup(&pid);
	if (p)
		eventlog_session_refresh(s, p);
	eventlog_sessions_changed(pid);  /* also for set_filter(), which ends here */
}

/* Per-session filter override; NONE/0 clears it. */
static __always_inline void
eventlog_session_set_filter(struct eventlog_session *s, __u32 level, __u32 keywords)
{
	if (!s)
		return;
	s->override_level = level;
	s->override_keywords = keywords;
	s->generation = 0xFFFFFFFF;  /* force refresh on next lookup */
	eventlog_session_set_enabled(s, s->enabled);
}

/*
 * Core program, run by user space with BPF_PROG_TEST_RUN (never attached):
 * emits one event built in user memory.  Used for dump-state replays
 * (target = one subscriber), DUMP_COMPLETE and providers that live in user
 * space (e.g. existing TCP connections found through sock_diag).
 * args: provider_id, session_id, event_id, level, keywords, payload ptr,
 *       payload len, target subscriber (-1 = all), timestamp (0 = now).
 */
int eventlog_inject(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 len = (__u32)ctx->args[6];
	void *scratch = (void *)0;

	if (len > EVENTLOG_MAX_PAYLOAD)   /* counted as oversized, not copied */
		return eventlog_emit((__u32)ctx->args[0], ctx->args[1], ctx->args[8],
				     (__u32)ctx->args[2], (__u32)ctx->args[3],
				     (__u32)ctx->args[4], (const void *)0, len,
				     (const void *)0, 0, (int)ctx->args[7]);
	if (len) {
		scratch = eventlog_scratch();
		if (!scratch)
			return -1;
		/* Keep the bound in the register the helper gets: clang may
		 * otherwise pass the unchecked 64-bit copy of args[6]. */
		asm volatile("%0 &= 0xffff" : "+r"(len));
		if (bpf_probe_read_user(scratch, len, (const void *)ctx->args[5]) != 0)
			return -1;
	}
	return eventlog_emit((__u32)ctx->args[0], ctx->args[1], ctx->args[8],
			     (__u32)ctx->args[2], (__u32)ctx->args[3], (__u32)ctx->args[4],
			     scratch, len, (const void *)0, 0, (int)ctx->args[7]);
}

#endif /* PYELOG_EVENTLOG_H */
