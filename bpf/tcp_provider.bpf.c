/*
 * tcp_provider.bpf.c - the Linux TCP provider: every TCP socket of the host
 * is a session whose id is its socket cookie (SO_COOKIE).
 *
 * Pasted by pyelog/providers/tcp.py after bpf/eventlog.h and the producer
 * header generated from schemas/tcp_eventlog_schema.src; the loader
 * substitutes EL_PROVIDER_ID and EL_FN().  tcp.py also defines, from what
 * this kernel's tracefs shows, TCP_HAVE_<TRACEPOINT> (and TCP_TP_* for
 * optional fields) so that only probes this kernel has are compiled in.
 *
 * Sources (no kprobes or fentry on the kernels we target):
 *   sock_ops on the cgroup-v2 root (or on the cgroups a filter names),
 *   attached with a BPF link so it goes away with the recorder: session
 *   creation (listen, connect, accept), connection facts, state changes,
 *   outgoing segments (HDR_OPT_LEN_CB, without reserving option space, so
 *   packets are not changed), incoming segments that take the slow path
 *   (PARSE_HDR_OPT_CB, real header), RTT samples, RTO and retransmissions;
 *   a cgroup setsockopt hook (also a link): TCP_EVENTLOG (81) opt-in/out,
 *   SOCKET_OPT_*, CC_ALGO_CHANGE;
 *   tcp tracepoints: tcp_probe (every received segment on established
 *   sockets), resets, congestion state, receive-buffer tuning, destroy;
 *   for connections older than the capture (sessions made by the dump-state
 *   replay, which never got sock_ops callbacks) also inet_sock_set_state
 *   and tcp_retransmit_skb.
 *
 * Kernel state per session: one eventlog_sessions entry and one
 * tcp_sk_cookie entry, both removed when the socket reaches CLOSE or is
 * destroyed; tcp_sk_store is socket-local storage, freed with the socket.
 */
#include <uapi/linux/tcp.h>

#ifdef TCP_TP_SEND_RESET_REASON
/* tcp:tcp_send_reset names this type (kernel 6.10+); the 6.1 headers bcc
 * compiles against do not define it, and only its size matters here. */
enum sk_rst_reason { PYELOG_SK_RST_REASON_UNUSED };
#endif

/*
 * Outbox: one emit site per program.  Every generated _LOG macro calls
 * eventlog_event_write(), which inlines the delivery to every subscriber;
 * with this many emit sites (and a few subscribers) sock_ops outgrew the
 * verifier's 16-bit jump range, and bcc cannot make BPF-to-BPF calls.  So
 * events are queued here (per CPU, one outbox per nesting depth: a softirq
 * program may interrupt a syscall one on the same CPU) and delivered, in
 * order, when the program ends.
 *
 * Delivery is a tail call chain, not a loop: a drain program per program
 * type (tracepoints, sock_ops, cgroup setsockopt) delivers one queued event
 * and tail-calls itself while more wait (at most TCP_OUT_MAX calls, under
 * the kernel's 33).  A loop over the outbox with the delivery inlined is
 * more than kernel 6.1's verifier accepts ("sequence of 8193 jumps is too
 * complex": every iteration multiplies the branches of the delivery to each
 * subscriber); one event per program is what every kernel verifies.  The
 * nesting depth stays taken until the chain ends.  Events that cannot be
 * delivered (more than TCP_OUT_MAX in one run, or a failed tail call) are
 * counted in tcp_outbox.lost, per CPU and depth (tcp.py: outbox_lost()).
 */
#define TCP_OUT_MAX 8
#define TCP_OUT_PAYLOAD 48
#define TCP_OUT_DEPTH 4
struct tcp_out_ev {
	__u64 session_id;
	__u32 id;
	__u32 level;
	__u32 kw;
	__u32 len;
	__u8 payload[TCP_OUT_PAYLOAD];
};
struct tcp_outbox {
	__u32 n;
	__u32 lost;              /* events never delivered (see above) */
	__u32 next;              /* the next event the drain delivers */
	__s32 ret;               /* the program's return value, for the drain */
	struct tcp_out_ev ev[TCP_OUT_MAX];
};
BPF_PERCPU_ARRAY(tcp_outbox_map, struct tcp_outbox, TCP_OUT_DEPTH);
BPF_PERCPU_ARRAY(tcp_out_depth, __u32, 1);
/* Slot 0: the drain program of that type (filled by tcp.py's attach);
 * a program array only holds programs of one type. */
BPF_PROG_ARRAY(tcp_drain_tp_jt, 1);
BPF_PROG_ARRAY(tcp_drain_sockops_jt, 1);
BPF_PROG_ARRAY(tcp_drain_sockopt_jt, 1);

static __always_inline struct tcp_outbox *tcp_outbox(void)
{
	__u32 z = 0;
	__u32 *d = tcp_out_depth.lookup(&z);
	if (!d || *d == 0 || *d > TCP_OUT_DEPTH)
		return (struct tcp_outbox *)0;
	__u32 k = *d - 1;
	return tcp_outbox_map.lookup(&k);
}

static __always_inline void tcp_out_begin(void)
{
	__u32 z = 0;
	__u32 *d = tcp_out_depth.lookup(&z);
	if (!d)
		return;
	*d += 1;
	struct tcp_outbox *ob = tcp_outbox();
	if (ob) {
		ob->n = 0;
		ob->next = 0;
	}
}

static __always_inline int
tcp_out_add(struct eventlog_session *s, __u32 id, __u32 level, __u32 kw, const void *p, __u32 len)
{
	struct tcp_outbox *ob;
	__u32 n;

	if (!s)
		return 0;
	ob = tcp_outbox();
	if (!ob)
		return 0;
	n = ob->n;
	if (n >= TCP_OUT_MAX) {
		ob->lost++;
		return 0;
	}
	struct tcp_out_ev *e = &ob->ev[n & (TCP_OUT_MAX - 1)];
	e->session_id = s->session_id;
	e->id = id;
	e->level = level;
	e->kw = kw;
	len &= 63;
	if (len > TCP_OUT_PAYLOAD)
		len = TCP_OUT_PAYLOAD;
	e->len = len;
	if (len)
		bpf_probe_read_kernel(e->payload, len, p);
	ob->n = n + 1;
	return 1;
}
#define eventlog_event_write(s, id, level, kw, p, len) tcp_out_add((s), (id), (level), (kw), (p), (len))

static __always_inline void tcp_out_pop(void)
{
	__u32 z = 0;
	__u32 *d = tcp_out_depth.lookup(&z);
	if (d && *d)
		*d -= 1;
}

/* End of a program's own work: the outbox when events wait (the caller
 * then tail-calls its drain; the depth stays taken), else pops the depth. */
static __always_inline struct tcp_outbox *tcp_out_close(int ret)
{
	struct tcp_outbox *ob = tcp_outbox();

	if (ob && ob->n) {
		ob->next = 0;
		ob->ret = ret;
		return ob;
	}
	if (ob)
		ob->n = 0;
	tcp_out_pop();
	return (struct tcp_outbox *)0;
}

/* After a tail call that did not happen: count what was not delivered. */
static __always_inline void tcp_out_abort(struct tcp_outbox *ob)
{
	__u32 n = ob->n, i = ob->next;

	if (n > i)
		ob->lost += n - i;
	ob->n = 0;
	ob->next = 0;
	tcp_out_pop();
}

/* eventlog_emit() for one queued event, with the thread id only where the
 * program type may ask for the current task (task = 0: thread 0; tcp.py
 * defines TCP_SOCKOPS_TASK / TCP_SOCKOPT_TASK where the kernel allows it:
 * not for sock_ops on 6.1). */
static __always_inline void tcp_emit_queued(struct tcp_out_ev *e, __u32 len, int task)
{
	struct eventlog_header hdr = {};
	__u32 pid = EL_PROVIDER_ID;
	struct eventlog_provider *f = eventlog_providers.lookup(&pid);

	if (!f)
		return;
	__u64 total = (__u64)EVENTLOG_HEADER_SIZE + len;
	hdr.length = (__u16)total;
	hdr.cpu = (__u16)bpf_get_smp_processor_id();
	hdr.provider_id = (__u16)EL_PROVIDER_ID;
	hdr.timestamp = eventlog_now_us();
	hdr.session_id = e->session_id;
	hdr.event_id = e->id;
	if (task)
		hdr.thread_id = (__s32)(bpf_get_current_pid_tgid() & 0xFFFFFFFF);
	eventlog_deliver_all(f, &hdr, e->level, e->kw, e->payload, len, (const void *)0, 0,
			     -1, total > EVENTLOG_MAX_RECORD);
}

#ifdef TCP_SOCKOPS_TASK
#define TCP_SOCKOPS_HAS_TASK 1
#else
#define TCP_SOCKOPS_HAS_TASK 0
#endif
#ifdef TCP_SOCKOPT_TASK
#define TCP_SOCKOPT_HAS_TASK 1
#else
#define TCP_SOCKOPT_HAS_TASK 0
#endif

/* The drain's step: deliver the next queued event; returns the outbox when
 * more wait (tail-call the drain again), else ends it and pops the depth. */
static __always_inline struct tcp_outbox *tcp_out_step(int *ret, int task)
{
	struct tcp_outbox *ob = tcp_outbox();

	if (!ob)
		return (struct tcp_outbox *)0;
	*ret = ob->ret;
	__u32 i = ob->next;
	if (i < ob->n && i < TCP_OUT_MAX) {
		struct tcp_out_ev *e = &ob->ev[i & (TCP_OUT_MAX - 1)];
		__u32 len = e->len;
		if (len > TCP_OUT_PAYLOAD)
			len = TCP_OUT_PAYLOAD;
		tcp_emit_queued(e, len, task);
		i++;
		ob->next = i;
		if (i < ob->n)
			return ob;
	}
	ob->n = 0;
	ob->next = 0;
	tcp_out_pop();
	return (struct tcp_outbox *)0;
}

/* The three drains and their callers' endings (bcc: a map's .call() only
 * names the map literally, hence one copy per program type). */
int EL_FN(tcp_drain_tp)(void *ctx)
{
	int ret = 0;
	struct tcp_outbox *ob = tcp_out_step(&ret, 1);

	if (ob) {
		tcp_drain_tp_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return 0;
}

static __always_inline int tcp_out_end_tp(void *ctx)
{
	struct tcp_outbox *ob = tcp_out_close(0);

	if (ob) {
		tcp_drain_tp_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return 0;
}

int EL_FN(tcp_drain_sockops)(struct bpf_sock_ops *ctx)
{
	int ret = 1;
	struct tcp_outbox *ob = tcp_out_step(&ret, TCP_SOCKOPS_HAS_TASK);

	if (ob) {
		tcp_drain_sockops_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return 1;
}

static __always_inline int tcp_out_end_sockops(struct bpf_sock_ops *ctx)
{
	struct tcp_outbox *ob = tcp_out_close(1);

	if (ob) {
		tcp_drain_sockops_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return 1;
}

int EL_FN(tcp_drain_sockopt)(struct bpf_sockopt *ctx)
{
	int ret = 1;
	struct tcp_outbox *ob = tcp_out_step(&ret, TCP_SOCKOPT_HAS_TASK);

	if (ob) {
		tcp_drain_sockopt_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return ret & 1;
}

static __always_inline int tcp_out_end_sockopt(struct bpf_sockopt *ctx, int ret)
{
	struct tcp_outbox *ob = tcp_out_close(ret);

	if (ob) {
		tcp_drain_sockopt_jt.call(ctx, 0);
		tcp_out_abort(ob);
	}
	return ret;
}

/*
 * TCP sessions start disabled (tcp.py) and end through the outbox, so they
 * use the core's emit-free halves, eventlog_session_insert() and
 * eventlog_session_remove(): the emits would still be walked by the
 * verifier (a whole inline delivery each, and in sock_ops a
 * bpf_get_current_pid_tgid() call that kernel 6.1 refuses there).
 */
static __always_inline struct eventlog_session *tcp_session_new(__u64 session_id)
{
	int created = 0;

	return eventlog_session_insert(EL_PROVIDER_ID, session_id, 0, &created);
}

#define TCP_ST_ESTABLISHED 1
#define TCP_ST_SYN_SENT 2
#define TCP_ST_CLOSE 7
#define TCP_ST_LISTEN 10
#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4
#define TCP_OPT_EVENTLOG 81      /* FreeBSD's TCP_EVENTLOG option number */
#define TCP_FLAG_SYNACK 0x12
#define TCP_NPENDING 4           /* options remembered before the session starts */
#define TCP_IPPROTO_TCP 6

/* ---- which sessions are enabled ---------------------------------------- */

/* Written by tcp.py. A filter kind takes part only when its bit is set in
 * `active`; kinds are ANDed, the values of one kind ORed (bcc tools style).
 * Cgroup filters are not here: they choose where sock_ops is attached. */
#define TCP_F_PORT  0x1
#define TCP_F_CIDR  0x2
#define TCP_F_NETNS 0x4
#define TCP_F_PID   0x8
#define TCP_F_COMM  0x10
struct tcp_cfg {
	__u32 default_enabled;   /* kern.eventlog.tcp.default */
	__u32 active;            /* TCP_F_* */
};
BPF_ARRAY(tcp_cfg_map, struct tcp_cfg, 1);
/* port (host order) -> 1: matches as local port, 2: as remote port */
BPF_HASH(tcp_f_port, __u16, __u8, 1024);
struct tcp_lpm4 { __u32 prefixlen; __u8 addr[4]; };
struct tcp_lpm6 { __u32 prefixlen; __u8 addr[16]; };
BPF_F_TABLE("lpm_trie", struct tcp_lpm4, __u8, tcp_f_cidr4, 256, BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct tcp_lpm6, __u8, tcp_f_cidr6, 256, BPF_F_NO_PREALLOC);
BPF_HASH(tcp_f_netns, __u64, __u8, 256);      /* netns cookies */
BPF_HASH(tcp_f_pid, __u32, __u8, 1024);       /* tgids */
struct tcp_comm { char c[16]; };
BPF_HASH(tcp_f_comm, struct tcp_comm, __u8, 256);

/* ---- per-socket state -------------------------------------------------- */

/* struct sock address -> cookie, for tracepoints and the setsockopt hook
 * that carry no cookie, with the last congestion state seen (to report
 * recovery edges only). sockops = 1 when sock_ops callbacks run for this
 * socket (the tracepoints that duplicate them then stay quiet). */
struct tcp_sk_info {
	__u64 cookie;
	__u8 ca_state;
	__u8 sockops;
};
BPF_HASH(tcp_sk_cookie, __u64, struct tcp_sk_info, EVENTLOG_MAX_SESSIONS);

struct tcp_pending_opt {
	__u32 level;
	__u32 name;
	__u32 val;
};

/* Socket-local storage (freed with the socket; cloned into accepted
 * sockets, which is how they learn their listener's owner). */
struct tcp_sk_store {
	__u64 cookie;            /* 0 until sock_ops saw this socket */
	__u32 owner;             /* tgid that listened/connected (listener's for accepted) */
	char comm[16];
	__u8 want;               /* TCP_EVENTLOG: 0 not asked, 1 on, 2 off */
	__u8 have_params;
	__u8 npending;
	__u8 _pad;
	struct tcp_eventlog_conn_params params;
	__u32 rtt_samples;
	__u32 rtt_last;
	__u32 rttvar;            /* RFC 6298 estimate over the samples seen */
	struct tcp_pending_opt pending[TCP_NPENDING];
};
BPF_F_TABLE("sk_storage", int, struct tcp_sk_store, tcp_sk_store, 0, BPF_F_NO_PREALLOC | BPF_F_CLONE);

/* The peer's SYN options as a listener's SYN-ACK is built (the only moment
 * sock_ops can read them without TCP_SAVE_SYN), until the accepted socket
 * is established.  LRU: handshakes that never complete age out. */
struct tcp_syn_key {
	__u64 netns;
	__u32 raddr[4];
	__u32 lport;
	__u32 rport;
};
struct tcp_syn_val {
	__u8 snd_wscale;
	__u8 flags;
};
BPF_TABLE("lru_hash", struct tcp_syn_key, struct tcp_syn_val, tcp_syn_opts, 1024);

/* Kernels whose sock_ops may not ask for the current task (6.1): the owner
 * of a listening or connecting socket is noted by inet_sock_set_state,
 * which runs in the caller's context just before the sock_ops LISTEN /
 * CONNECT callback, keyed by the socket's address; LRU: entries of
 * sockets sock_ops never saw age out. */
#if !defined(TCP_SOCKOPS_TASK) && defined(TCP_HAVE_INET_SOCK_SET_STATE)
#define TCP_OWNER_BY_TP 1
struct tcp_owner {
	__u32 tgid;
	char comm[16];
};
BPF_TABLE("lru_hash", __u64, struct tcp_owner, tcp_owner_map, 4096);
#endif

/* ---- helpers ------------------------------------------------------------- */

static __always_inline __u16 tcp_rport_host(__u32 remote_port)
{
	/* remote_port is in network order (upper half on some kernels). */
	__u16 r = (__u16)(remote_port >> 16);
	if (!r)
		r = (__u16)remote_port;
	return bpf_ntohs(r);
}

static __always_inline int tcp_cidr_match4(__u32 addr)
{
	struct tcp_lpm4 k = { .prefixlen = 32 };
	__builtin_memcpy(k.addr, &addr, 4);
	return tcp_f_cidr4.lookup(&k) != 0;
}

static __always_inline int tcp_cidr_match6(const __u32 *a)
{
	struct tcp_lpm6 k = { .prefixlen = 128 };
	__builtin_memcpy(k.addr, a, 16);
	if (tcp_f_cidr6.lookup(&k))
		return 1;
	/* v4-mapped (::ffff:a.b.c.d): dual-stack sockets match v4 CIDRs too */
	if (a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff))
		return tcp_cidr_match4(a[3]);
	return 0;
}

static __always_inline int
tcp_filter_match(struct tcp_cfg *cfg, struct bpf_sock_ops *skops, __u64 netns,
		 __u32 tgid, const char *comm)
{
	__u32 f = cfg->active;

	if (f & TCP_F_PORT) {
		__u16 lp = (__u16)skops->local_port, rp = tcp_rport_host(skops->remote_port);
		__u8 *a = tcp_f_port.lookup(&lp), *b = tcp_f_port.lookup(&rp);
		if (!((a && (*a & 1)) || (b && (*b & 2))))
			return 0;
	}
	if (f & TCP_F_CIDR) {
		int m;
		if (skops->family == 2) {
			m = tcp_cidr_match4(skops->local_ip4) || tcp_cidr_match4(skops->remote_ip4);
		} else {
			__u32 l[4] = { skops->local_ip6[0], skops->local_ip6[1],
				       skops->local_ip6[2], skops->local_ip6[3] };
			__u32 r[4] = { skops->remote_ip6[0], skops->remote_ip6[1],
				       skops->remote_ip6[2], skops->remote_ip6[3] };
			m = tcp_cidr_match6(l) || tcp_cidr_match6(r);
		}
		if (!m)
			return 0;
	}
	if ((f & TCP_F_NETNS) && !tcp_f_netns.lookup(&netns))
		return 0;
	if ((f & TCP_F_PID) && !tcp_f_pid.lookup(&tgid))
		return 0;
	if (f & TCP_F_COMM) {
		struct tcp_comm c = {};
		__builtin_memcpy(c.c, comm, 16);
		if (!tcp_f_comm.lookup(&c))
			return 0;
	}
	return 1;
}

static __always_inline void tcp_conn_facts(struct eventlog_session *s, struct bpf_sock_ops *skops)
{
	__u16 rport = bpf_htons(tcp_rport_host(skops->remote_port));
	__u16 lport = bpf_htons((__u16)skops->local_port);

	if (skops->family == 2 /* AF_INET */) {
		TCP_EVENTLOG_CONN_SET_IP_V4_LOG(s, skops->local_ip4, lport, skops->remote_ip4, rport);
	} else {
		__u32 src[4], dst[4];
		src[0] = skops->local_ip6[0];
		src[1] = skops->local_ip6[1];
		src[2] = skops->local_ip6[2];
		src[3] = skops->local_ip6[3];
		dst[0] = skops->remote_ip6[0];
		dst[1] = skops->remote_ip6[1];
		dst[2] = skops->remote_ip6[2];
		dst[3] = skops->remote_ip6[3];
		TCP_EVENTLOG_CONN_SET_IP_V6_LOG(s, src, lport, dst, rport);
	}
}

/* SOCKET_OPT_* / CC_ALGO_CHANGE for one option (hook or replay). */
static __always_inline void
tcp_log_option(struct eventlog_session *s, __u32 level, __u32 name, __u32 val, const char *cc)
{
	if (level == SOL_TCP && name == TCP_CONGESTION) {
		if (cc)
			TCP_EVENTLOG_CC_ALGO_CHANGE_LOG(s, cc);
	} else if (level == SOL_TCP) {
		TCP_EVENTLOG_SOCKET_OPT_UINT32_LOG(s, name, val);
	} else {
		TCP_EVENTLOG_SOCKET_OPT_SOCKET_LOG(s, name, val);
	}
}

static __always_inline void
tcp_log_rtt(struct eventlog_session *s, struct tcp_sk_store *st, __u32 srtt_us, __u32 min_rtt)
{
	if (!TCP_EVENTLOG_RTT_ENABLED(s))
		return;
	__u32 last = st ? st->rtt_last : 0, var = st ? st->rttvar : 0, n = st ? st->rtt_samples : 0;
	TCP_EVENTLOG_RTT_LOG_ALWAYS(s, last ? last : srtt_us, srtt_us, var, 0, min_rtt, n);
}

static __always_inline void tcp_emit_params(struct eventlog_session *s, struct tcp_sk_store *st)
{
	if (st && st->have_params && TCP_EVENTLOG_CONN_PARAMS_ENABLED(s))
		eventlog_event_write(s, TCP_EVENTLOG_CONN_PARAMS_ID, TCP_EVENTLOG_CONN_PARAMS_LEVEL,
				     TCP_EVENTLOG_CONN_PARAMS_KEYWORDS, &st->params,
				     sizeof(st->params));
}

/* ---- sock_ops ----------------------------------------------------------- */

/* sock_ops callbacks that run per segment (header options written and
 * parsed, RTT samples) cost on every segment of every socket, whether or
 * not anyone listens: ask for each only when some subscription (the
 * provider's aggregate filter: max level, OR of keywords) wants an event it
 * feeds. WRITE_HDR_OPT feeds OUT (and, on a listener, the SYN-ACK options
 * of CONN_PARAMS), PARSE_ALL_HDR_OPT feeds IN, RTT feeds RTT_SAMPLE, CWND
 * and the RTT summary's statistics. State changes, retransmissions and RTOs
 * are rare and always on. The aggregate, not the session's own filter: a
 * disabled session may be enabled later (TCP_EVENTLOG). */
#define TCP_AGG_WANTS(p, ev) ((p)->level >= TCP_EVENTLOG_##ev##_LEVEL && \
			      ((p)->keywords & TCP_EVENTLOG_##ev##_KEYWORDS))

static __always_inline __u32 tcp_cb_flags(int listener)
{
	__u32 id = EL_PROVIDER_ID;
	struct eventlog_provider *p = eventlog_providers.lookup(&id);
	__u32 f = BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG |
		  BPF_SOCK_OPS_RTO_CB_FLAG;

	if (!p)
		return f;
	if (TCP_AGG_WANTS(p, OUT) || (listener && TCP_AGG_WANTS(p, CONN_PARAMS)))
		f |= BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
	if (TCP_AGG_WANTS(p, IN))
		f |= BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG;
	if (TCP_AGG_WANTS(p, RTT) || TCP_AGG_WANTS(p, RTT_SAMPLE) || TCP_AGG_WANTS(p, CWND))
		f |= BPF_SOCK_OPS_RTT_CB_FLAG;
	return f;
}

/* Set the callback flags for the filter generation the session was last
 * refreshed at; provider_word remembers it (+1: 0 = never set), so a
 * subscription change reaches each socket at its next sock_ops callback. */
static __always_inline void
tcp_set_cb_flags(struct bpf_sock_ops *skops, struct eventlog_session *s, int listener)
{
	bpf_sock_ops_cb_flags_set(skops, tcp_cb_flags(listener));
	s->provider_word = s->generation + 1;
}

static __always_inline struct eventlog_session *
tcp_session_begin(struct bpf_sock_ops *skops, __u64 cookie, int passive, int listener)
{
	__u32 zero = 0;
	struct tcp_cfg *cfg = tcp_cfg_map.lookup(&zero);
	struct bpf_sock *sk = skops->sk;
	struct tcp_sk_store *st = (struct tcp_sk_store *)0;
	struct eventlog_session *s;
	__u64 netns = bpf_get_netns_cookie(skops);
	__u32 tgid = 0;
	char comm[16] = {};
	int enabled;

	if (!cfg)
		return (struct eventlog_session *)0;
	if (!passive) {
		/* listen()/connect(): the caller owns it. */
#ifdef TCP_SOCKOPS_TASK
		tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
		bpf_get_current_comm(comm, sizeof(comm));
#elif defined(TCP_OWNER_BY_TP)
		if (sk) {
			__u64 key = (__u64)(long)sk;
			struct tcp_owner *o = tcp_owner_map.lookup(&key);
			if (o) {
				tgid = o->tgid;
				__builtin_memcpy(comm, o->comm, 16);
				tcp_owner_map.delete(&key);
			}
		}
#endif
	}
	if (sk)
		st = tcp_sk_store.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (st) {
		if (passive) {
			/* Cloned from the listener's (BPF_F_CLONE): only the
			 * owner is inherited; TCP_EVENTLOG is per connection. */
			st->want = 0;
			st->have_params = 0;
			st->rtt_samples = 0;
			st->rtt_last = 0;
			st->rttvar = 0;
			st->npending = 0;
		} else {
			st->owner = tgid;
			__builtin_memcpy(st->comm, comm, 16);
		}
		st->cookie = cookie;
		tgid = st->owner;
		__builtin_memcpy(comm, st->comm, 16);
	}

	if (st && st->want)
		enabled = st->want == 1;        /* TCP_EVENTLOG beats defaults and filters */
	else
		enabled = cfg->default_enabled && tcp_filter_match(cfg, skops, netns, tgid, comm);

	s = tcp_session_new(cookie);
	if (!s)
		return s;
	if (sk) {
		__u64 key = (__u64)(long)sk;
		struct tcp_sk_info info = { .cookie = cookie, .sockops = 1 };
		tcp_sk_cookie.update(&key, &info);
	}
	tcp_set_cb_flags(skops, s, listener);
	if (!enabled)
		return s;
	eventlog_session_set_enabled(s, 1);
	TCP_EVENTLOG_SESSION_CREATE_LOG(s, netns, tgid, skops->family, comm);
	tcp_conn_facts(s, skops);
	if (tgid)
		TCP_EVENTLOG_CONN_OWNER_LOG(s, (__s32)tgid, comm);
	if (st && !passive) {
		/* Options set before listen()/connect(), when there was no
		 * session to report them on. */
		__u8 n = st->npending;
#pragma unroll
		for (int i = 0; i < TCP_NPENDING; i++) {
			if (i < n)
				tcp_log_option(s, st->pending[i].level, st->pending[i].name,
					       st->pending[i].val, (const char *)0);
		}
		st->npending = 0;
	}
	return s;
}

static __always_inline void tcp_session_end(__u64 cookie, __u64 sk)
{
	struct eventlog_session *s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);

	if (s) {
		/* SESSION_END through the outbox, after this run's other
		 * events; the core then only frees the entry. */
		if (s->enabled)
			tcp_out_add(s, EVENTLOG_SESSION_END_ID, EVENTLOG_LEVEL_INFO,
				    EVENTLOG_KEYWORD_SESSION, (const void *)0, 0);
		s->enabled = 0;
		eventlog_session_remove(s);
	}
	if (sk)
		tcp_sk_cookie.delete(&sk);
}

/* Option kinds 3 (window scale), 4 (SACK permitted), 8 (timestamps) of the
 * current segment, or of the received SYN (syn = BPF_LOAD_HDR_OPT_TCP_SYN). */
static __always_inline void
tcp_syn_options(struct bpf_sock_ops *skops, __u64 syn, __u8 *wscale, __u8 *flags)
{
	__u8 ws[3] = { 3, 0, 0 };
	__u8 sp[2] = { 4, 0 };
	__u8 ts[10] = { 8, 0 };

	if (bpf_load_hdr_opt(skops, ws, sizeof(ws), syn) == 3) {
		*wscale = ws[2];
		*flags |= TCP_EVENTLOG_FLAG_CP_WINDOW_SCALE;
	}
	if (bpf_load_hdr_opt(skops, sp, sizeof(sp), syn) == 2)
		*flags |= TCP_EVENTLOG_FLAG_CP_SACK_PERMIT;
	if (bpf_load_hdr_opt(skops, ts, sizeof(ts), syn) == 10)
		*flags |= TCP_EVENTLOG_FLAG_CP_TIMESTAMPS;
}

static __always_inline void tcp_syn_key(struct bpf_sock_ops *skops, struct tcp_syn_key *k)
{
	k->netns = bpf_get_netns_cookie(skops);
	k->lport = skops->local_port;
	k->rport = tcp_rport_host(skops->remote_port);
	if (skops->family == 2) {
		k->raddr[0] = skops->remote_ip4;
	} else {
		k->raddr[0] = skops->remote_ip6[0];
		k->raddr[1] = skops->remote_ip6[1];
		k->raddr[2] = skops->remote_ip6[2];
		k->raddr[3] = skops->remote_ip6[3];
	}
}

static __always_inline void
tcp_established(struct bpf_sock_ops *skops, struct eventlog_session *s, int passive)
{
	struct bpf_sock *sk = skops->sk;
	struct tcp_sk_store *st = (struct tcp_sk_store *)0;
	__u8 wscale = 0, flags = 0;

	if (!s)
		return;
	if (passive) {
		struct tcp_syn_key k = {};
		struct tcp_syn_val *v;
		tcp_syn_key(skops, &k);
		v = tcp_syn_opts.lookup(&k);
		if (v) {
			wscale = v->snd_wscale;
			flags = v->flags;
			tcp_syn_opts.delete(&k);
		}
	} else {
		tcp_syn_options(skops, 0, &wscale, &flags);   /* the SYN-ACK */
	}
	if (!sk)
		return;
	struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
	if (tp && (tp->ecn_flags & 1 /* TCP_ECN_OK */))
		flags |= TCP_EVENTLOG_FLAG_CP_ECN;
	st = tcp_sk_store.sk_storage_get(sk, 0, 0);
	if (st) {
		/* Kept for TCP_EVENTLOG state dumps later in the connection. */
		struct tcp_eventlog_conn_params *p = &st->params;
		p->iss = skops->snd_una - 1;
		p->irs = skops->rcv_nxt - 1;
		p->mss = skops->mss_cache;
		p->snd_wscale = wscale;
		p->rcv_wscale = 0;
		p->flags = flags;
		__builtin_memset(p->cc_algo, 0, sizeof(p->cc_algo));
		bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, p->cc_algo, sizeof(p->cc_algo));
		p->cc_algo[15] = 0;
		st->have_params = 1;
		tcp_emit_params(s, st);
	} else if (TCP_EVENTLOG_CONN_PARAMS_ENABLED(s)) {
		char cc[16] = {};
		bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, cc, sizeof(cc));
		TCP_EVENTLOG_CONN_PARAMS_LOG_ALWAYS(s, skops->snd_una - 1, skops->rcv_nxt - 1,
						    skops->mss_cache, wscale, 0, flags, cc);
	}
	TCP_EVENTLOG_MSS_LOG(s, skops->mss_cache);
	tcp_log_rtt(s, st, skops->srtt_us >> 3, skops->rtt_min);
}

static __always_inline void tcp_sockops_body(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	__u64 cookie;
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return;
	cookie = bpf_get_socket_cookie(skops);

	switch (op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		tcp_session_begin(skops, cookie, 0, 1);
		return;
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		tcp_session_begin(skops, cookie, 0, 0);
		return;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		s = tcp_session_begin(skops, cookie, 1, 0);
		tcp_established(skops, s, 1);
		return;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
		tcp_established(skops, s, 0);
		return;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		if (skops->skb_tcp_flags == TCP_FLAG_SYNACK && !skops->is_fullsock) {
			/* A listener's SYN-ACK (request socket, no session):
			 * keep the peer's SYN options for the child. */
			struct tcp_syn_key k = {};
			struct tcp_syn_val v = {};
			tcp_syn_options(skops, BPF_LOAD_HDR_OPT_TCP_SYN, &v.snd_wscale, &v.flags);
			tcp_syn_key(skops, &k);
			tcp_syn_opts.update(&k, &v);
			return;
		}
		break;
	}

	s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
	if (!s)
		return;
	if (s->provider_word != s->generation + 1 && skops->is_fullsock)
		tcp_set_cb_flags(skops, s, skops->state == TCP_ST_LISTEN);

	switch (op) {
	case BPF_SOCK_OPS_STATE_CB:
		TCP_EVENTLOG_STATE_CHANGE_LOG(s, skops->args[0], skops->args[1]);
		if (skops->args[0] == TCP_ST_ESTABLISHED && TCP_EVENTLOG_RTT_ENABLED(s)) {
			struct tcp_sk_store *st = (struct tcp_sk_store *)0;
			struct bpf_sock *sk = skops->sk;
			if (sk)
				st = tcp_sk_store.sk_storage_get(sk, 0, 0);
			tcp_log_rtt(s, st, skops->srtt_us >> 3, skops->rtt_min);
		}
#ifndef TCP_HAVE_TCP_DESTROY_SOCK
		/* Without tcp:tcp_destroy_sock, CLOSE is the last we hear of
		 * it (with it, the session outlives CLOSE until the socket
		 * is freed: an RST is sent *after* the move to CLOSE). */
		if (skops->args[1] == TCP_ST_CLOSE)
			tcp_session_end(cookie, (__u64)(long)skops->sk);
#endif
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		/* Also called without a segment (MSS computation): real
		 * segments always carry a flag. The header is not built yet:
		 * for new data the segment starts at snd_nxt, and it
		 * acknowledges rcv_nxt. */
		if (!skops->skb_tcp_flags)
			break;
		TCP_EVENTLOG_OUT_LOG(s, skops->snd_nxt, skops->rcv_nxt, skops->skb_tcp_flags, 0,
				     skops->skb_len, skops->snd_cwnd, skops->state);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB: {
		if (!TCP_EVENTLOG_IN_ENABLED(s))
			break;
		struct tcphdr *th = (struct tcphdr *)(long)skops->skb_data;
		if ((void *)(th + 1) > (void *)(long)skops->skb_data_end)
			break;
		__u32 hl = th->doff * 4;
		__u32 len = skops->skb_len > hl ? skops->skb_len - hl : 0;
		TCP_EVENTLOG_IN_LOG_ALWAYS(s, bpf_ntohl(th->seq), bpf_ntohl(th->ack_seq),
					   skops->skb_tcp_flags, bpf_ntohs(th->window), len,
					   skops->state);
		break;
	}
	case BPF_SOCK_OPS_RTT_CB: {
		/* Kernels >= 6.11 pass (measured rtt us, srtt << 3); older ones
		 * pass zeros: srtt is never 0 after a sample, so that tells. */
		__u32 mrtt = skops->args[1] ? (__u32)skops->args[0] : 0;
		__u32 srtt = skops->srtt_us >> 3;
		TCP_EVENTLOG_RTT_SAMPLE_LOG(s, mrtt, srtt);
		TCP_EVENTLOG_CWND_LOG(s, skops->snd_cwnd, skops->snd_ssthresh);
		if (TCP_EVENTLOG_RTT_ENABLED(s)) {
			struct bpf_sock *sk = skops->sk;
			struct tcp_sk_store *st = (struct tcp_sk_store *)0;
			if (sk)
				st = tcp_sk_store.sk_storage_get(sk, 0, 0);
			if (st && mrtt) {
				__u32 d = srtt > mrtt ? srtt - mrtt : mrtt - srtt;
				st->rttvar = st->rtt_samples ? (3 * st->rttvar + d) / 4 : mrtt / 2;
				st->rtt_last = mrtt;
			}
			if (st)
				st->rtt_samples++;
		}
		break;
	}
	case BPF_SOCK_OPS_RTO_CB:
		TCP_EVENTLOG_RTO_LOG(s, (__s32)skops->args[0], skops->srtt_us >> 3,
				     skops->packets_out, skops->retrans_out, skops->snd_cwnd);
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		/* args: seq of the first segment, segment count, error */
		TCP_EVENTLOG_RETRANSMIT_LOG(s, skops->args[0], skops->args[1],
					    (__s32)skops->args[2], skops->state);
		break;
	}
	return;
}

int EL_FN(tcp_sockops)(struct bpf_sock_ops *skops)
{
	tcp_out_begin();
	tcp_sockops_body(skops);
	return tcp_out_end_sockops(skops);
}

/* ---- setsockopt hook (cgroup sockopt, BPF_CGROUP_SETSOCKOPT) ---------------- */

static __always_inline struct eventlog_session *tcp_session_by_sk(__u64 sk, struct tcp_sk_info **pinfo)
{
	struct tcp_sk_info *info = tcp_sk_cookie.lookup(&sk);

	if (pinfo)
		*pinfo = info;
	if (!info)
		return (struct eventlog_session *)0;
	return eventlog_session_lookup(EL_PROVIDER_ID, info->cookie);
}

/* TCP_EVENTLOG: remember the wish (for a session not started yet), and for
 * a live session enable + dump its state, or disable it. */
static __always_inline void tcp_eventlog_opt(struct bpf_sockopt *ctx, struct bpf_sock *sk, int on)
{
	struct tcp_sk_store *st = tcp_sk_store.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	struct eventlog_session *s;

	if (st)
		st->want = on ? 1 : 2;
	s = tcp_session_by_sk((__u64)(long)sk, (struct tcp_sk_info **)0);
	if (!s)
		return;
	eventlog_session_set_enabled(s, on);
	if (!on)
		return;
	/* State dump, as FreeBSD's tcp_eventlog_dump_session. */
	{
		char comm[16] = {};
		__u32 owner = 0;
		if (st) {
			owner = st->owner;
			__builtin_memcpy(comm, st->comm, 16);
		}
		TCP_EVENTLOG_SESSION_CREATE_LOG(s, bpf_get_netns_cookie(ctx), owner, sk->family, comm);
		__u16 lport = bpf_htons((__u16)sk->src_port);
		__u16 rport = (__u16)sk->dst_port;    /* network order */
		if (sk->family == 2) {
			TCP_EVENTLOG_CONN_SET_IP_V4_LOG(s, sk->src_ip4, lport, sk->dst_ip4, rport);
		} else {
			__u32 src[4] = { sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3] };
			__u32 dst[4] = { sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3] };
			TCP_EVENTLOG_CONN_SET_IP_V6_LOG(s, src, lport, dst, rport);
		}
		tcp_emit_params(s, st);
		if (owner)
			TCP_EVENTLOG_CONN_OWNER_LOG(s, (__s32)owner, comm);
	}
	TCP_EVENTLOG_SOCKET_OPT_UINT32_LOG(s, TCP_OPT_EVENTLOG, 1);
}

static __always_inline int tcp_setsockopt_body(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__s32 level = ctx->level, name = ctx->optname, optlen = ctx->optlen;
	__u8 *p = (__u8 *)(long)ctx->optval, *end = (__u8 *)(long)ctx->optval_end;
	__u32 val = 0;

	/* Values over a page are not visible to BPF; optlen 0 tells the
	 * kernel to use the caller's buffer as is (kernels before 6.5 fail
	 * such calls with EFAULT if a program leaves optlen alone). */
	if (optlen > 4096) {
		ctx->optlen = 0;
		return 1;
	}
	if ((level != SOL_TCP && level != SOL_SOCKET) || !sk || sk->protocol != TCP_IPPROTO_TCP)
		return 1;
	/* optlen -1: an earlier program in the chain (another pyelog
	 * recorder) consumed the option; the value is still in the buffer. */
	if ((optlen >= 4 || optlen == -1) && p + 4 <= end)
		val = *(__u32 *)p;
	else if ((optlen >= 1 || optlen == -1) && p + 1 <= end)
		val = *p;

	if (level == SOL_TCP && name == TCP_OPT_EVENTLOG) {
		/* Ours, not the kernel's (which would say ENOPROTOOPT):
		 * optlen = -1 returns success without the kernel handler. */
		if (optlen == 0)
			return 0;      /* EPERM: nothing to read */
		tcp_eventlog_opt(ctx, sk, val != 0);
		ctx->optlen = -1;
		return 1;
	}
	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 1;

	struct eventlog_session *s = tcp_session_by_sk((__u64)(long)sk, (struct tcp_sk_info **)0);
	if (!s) {
		/* Not listening/connected yet: keep it for the session start. */
		struct tcp_sk_store *st = tcp_sk_store.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st && !(level == SOL_TCP && name == TCP_CONGESTION)) {
			__u8 n = st->npending;
			if (n < TCP_NPENDING) {
				struct tcp_pending_opt *po = &st->pending[n & (TCP_NPENDING - 1)];
				po->level = level;
				po->name = name;
				po->val = val;
				st->npending = n + 1;
			}
		}
		return 1;
	}
	if (level == SOL_TCP && name == TCP_CONGESTION) {
		char cc[16] = {};
#pragma unroll
		for (int i = 0; i < 15; i++) {
			if (i < optlen && p + i + 1 <= end)
				cc[i] = p[i];
		}
		tcp_log_option(s, level, name, val, cc);
	} else {
		tcp_log_option(s, level, name, val, (const char *)0);
	}
	return 1;
}

int EL_FN(tcp_setsockopt)(struct bpf_sockopt *ctx)
{
	int ret;

	tcp_out_begin();
	ret = tcp_setsockopt_body(ctx);
	return tcp_out_end_sockopt(ctx, ret);
}

/* ---- tracepoints ------------------------------------------------------------- */

#ifdef TCP_HAVE_TCP_DESTROY_SOCK
TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
	tcp_out_begin();
	do {
		/* Always, even with no subscriber: this is what frees the state. */
		tcp_session_end(args->sock_cookie, (__u64)(long)args->skaddr);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_PROBE
TRACEPOINT_PROBE(tcp, tcp_probe)
{
	tcp_out_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		if (!s)
			break;
#ifdef TCP_TP_PROBE_SKADDR
		{
			/* Sessions from the dump-state replay: learn the socket
			 * address (user space cannot), so that the tracepoints and the
			 * setsockopt hook that only know the address find them. */
			__u64 sk = (__u64)(long)args->skaddr;
			if (!tcp_sk_cookie.lookup(&sk)) {
				struct tcp_sk_info info = { .cookie = args->sock_cookie };
				tcp_sk_cookie.update(&sk, &info);
			}
		}
#endif
		TCP_EVENTLOG_IN_PROBE_LOG(s, args->data_len, args->snd_una, args->snd_nxt,
					  args->rcv_wnd, args->srtt >> 3);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_RECEIVE_RESET
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
	tcp_out_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		TCP_EVENTLOG_RESET_RECEIVED_LOG(s, 0);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_SEND_RESET
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
	tcp_out_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = tcp_session_by_sk((__u64)(long)args->skaddr, (struct tcp_sk_info **)0);
#ifdef TCP_TP_SEND_RESET_STATE
		TCP_EVENTLOG_RESET_SENT_LOG(s, args->state);
#else
		TCP_EVENTLOG_RESET_SENT_LOG(s, 0);
#endif
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_CONG_STATE_SET
TRACEPOINT_PROBE(tcp, tcp_cong_state_set)
{
	tcp_out_begin();
	do {
		__u64 sk = (__u64)(long)args->skaddr;
		struct tcp_sk_info *info;
		struct eventlog_session *s;
		__u8 ca = args->cong_state, old;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = tcp_session_by_sk(sk, &info);
		if (!info)
			break;
		old = info->ca_state;
		info->ca_state = ca;
		if ((ca == TCP_CA_RECOVERY || ca == TCP_CA_LOSS) && old != ca)
			TCP_EVENTLOG_ENTER_RECOVERY_LOG(s, ca);
		else if (ca < TCP_CA_RECOVERY && (old == TCP_CA_RECOVERY || old == TCP_CA_LOSS))
			TCP_EVENTLOG_EXIT_RECOVERY_LOG(s, old);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#if defined(TCP_HAVE_TCP_RCVBUF_GROW)
TRACEPOINT_PROBE(tcp, tcp_rcvbuf_grow)
{
	tcp_out_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		TCP_EVENTLOG_RCV_SPACE_LOG(s, args->space, args->rcvbuf, args->copied, args->rtt_us);
	} while (0);
	return tcp_out_end_tp(args);
}
#elif defined(TCP_HAVE_TCP_RCV_SPACE_ADJUST)
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust)
{
	tcp_out_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		TCP_EVENTLOG_RCV_SPACE_LOG(s, 0, 0, 0, 0);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

/* Only for sessions without sock_ops callbacks (older than the capture):
 * sock_ops reports these itself for the others. */
#ifdef TCP_HAVE_INET_SOCK_SET_STATE
TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
	tcp_out_begin();
	do {
		struct tcp_sk_info *info;
		struct eventlog_session *s;

		if (args->protocol != TCP_IPPROTO_TCP || !eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
#ifdef TCP_OWNER_BY_TP
		if (args->oldstate == TCP_ST_CLOSE &&
		    (args->newstate == TCP_ST_LISTEN || args->newstate == TCP_ST_SYN_SENT)) {
			struct tcp_owner o = {};
			__u64 key = (__u64)(long)args->skaddr;
			o.tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
			bpf_get_current_comm(o.comm, sizeof(o.comm));
			tcp_owner_map.update(&key, &o);
		}
#endif
		s = tcp_session_by_sk((__u64)(long)args->skaddr, &info);
		if (!info || info->sockops)
			break;
		TCP_EVENTLOG_STATE_CHANGE_LOG(s, args->oldstate, args->newstate);
	} while (0);
	return tcp_out_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_RETRANSMIT_SKB
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
	tcp_out_begin();
	do {
		struct tcp_sk_info *info;
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = tcp_session_by_sk((__u64)(long)args->skaddr, &info);
		if (!info || info->sockops)
			break;
#ifdef TCP_TP_RETRANSMIT_ERR
		TCP_EVENTLOG_RETRANSMIT_LOG(s, 0, 1, args->err, args->state);
#else
		TCP_EVENTLOG_RETRANSMIT_LOG(s, 0, 1, 0, args->state);
#endif
	} while (0);
	return tcp_out_end_tp(args);
}
#endif
