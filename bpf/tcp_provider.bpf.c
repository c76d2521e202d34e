/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tcp_provider.bpf.c - the Linux TCP provider: every TCP socket of the host
 * is a session whose id is its socket cookie (SO_COOKIE).
 *
 * Pasted by pyelog/providers/tcp.py after bpf/eventlog.h and the producer
 * header generated from schemas/tcp_eventlog_schema.src; the loader
 * substitutes EL_PROVIDER_ID and EL_FN().  tcp.py also defines, from what
 * this kernel's tracefs shows, TCP_HAVE_<TRACEPOINT> (and TCP_TP_* for
 * optional fields) so that only probes this kernel has are compiled in, and
 * TCP_BTF_* offsets of the few kernel struct members read directly (from
 * the running kernel's BTF: the headers bcc compiles against are not this
 * kernel's, so no struct is ever read through them).
 *
 * Sources (no kprobes or fentry on the kernels we target):
 *   cgroup skb ingress/egress programs on the cgroup-v2 root (or the
 *   filtered cgroups), attached only while a subscription wants IN or OUT:
 *   every packet a socket sends, after TCP built its header, and every
 *   packet it receives, before TCP parses it or queues it behind a busy
 *   socket: IN/OUT with the header as on the wire;
 *   sock_ops on the same cgroups, attached with a BPF link so it goes away
 *   with the recorder: session creation (listen, connect, accept),
 *   connection facts, state changes, RTT samples, RTO and retransmissions;
 *   a cgroup setsockopt hook (also a link): TCP_EVENTLOG (81) opt-in/out,
 *   SOCKET_OPT_*, CC_ALGO_CHANGE;
 *   tcp tracepoints: tcp_probe (every received segment on established
 *   sockets), resets, congestion state, receive-buffer tuning, destroy;
 *   for connections older than the capture (sessions made by the dump-state
 *   replay, which never get sock_ops callbacks) also inet_sock_set_state
 *   and tcp_retransmit_skb.
 *
 * Accepted connections: the SYN, the SYN-ACK and the ACK that completes the
 * handshake pass through the listener (a request socket has no cgroup
 * hooks of its own), before the accepted socket exists.  The skb hooks keep
 * them aside in tcp_embryo (keyed by listener and peer), and the accepted
 * socket's first sock_ops callback (which finds its listener through its
 * request, tcp_synrecv) logs them on its session with their own times,
 * after SESSION_CREATE and LISTEN -> SYN_RECEIVED dated at the SYN.
 * Handshakes that never complete are logged on the listener's session by
 * tcp.py's housekeeping.
 *
 * Kernel state per session: one eventlog_sessions entry, with the
 * connection's own facts in it (struct tcp_session_data), removed when the
 * socket is destroyed; socket-local storage (tcp_sk_store) only for
 * sockets that set options before their session starts.  Hooks that are
 * handed a socket's address find its session by the cookie the socket
 * itself holds (tcp_session_by_sk()), and whether sock_ops reports its
 * state changes and retransmissions by the socket's own
 * callback flags (tcp_sockops_reports()): no map from addresses to cookies.
 */
#include <uapi/linux/tcp.h>

#ifdef TCP_TP_SEND_RESET_REASON
/* tcp:tcp_send_reset names this type (kernel 6.10+); the 6.1 headers bcc
 * compiles against do not define it, and only its size matters here. */
enum sk_rst_reason { PYELOG_SK_RST_REASON_UNUSED };
#endif

/* One packet's TCP header, as parsed. */
struct tcp_seg {
	__u32 seq;
	__u32 ack;
	__u16 flags;
	__u16 win;
	__u32 len;
	__u8 opts;
	__u8 wscale;
	__u8 nsack;
	__u8 _pad;
	__u16 mss;
	__u16 segs;
	__u32 tsval;
	__u32 tsecr;
	__u32 sack[8];
	__u32 raddr[4];          /* the peer: the embryo key */
	__u32 rport;
};

/* The skb hooks' working space, per CPU and nesting depth (the outbox's:
 * eventlog_outbox_slot()): the TCP header with its options zero-filled to
 * 152 bytes (see tcp_parse_seg()) and the parsed segment, too big for the
 * stack. */
struct tcp_skb_work {
	__u32 th[38];
	struct tcp_seg seg;
};
BPF_PERCPU_ARRAY(tcp_skb_work_map, struct tcp_skb_work, EVENTLOG_OUTBOX_DEPTH);

/* Payload room of a kept handshake segment: IN and OUT fit, and the outbox
 * takes it whole when the accepted session logs it. */
#define TCP_SEG_PAYLOAD 80
_Static_assert(TCP_SEG_PAYLOAD <= EVENTLOG_OUTBOX_PAYLOAD, "handshake segments fit the outbox");

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
#define TCP_ST_SYN_RECV 3
#define TCP_ST_FIN_WAIT2 5
#define TCP_ST_TIME_WAIT 6
#define TCP_ST_CLOSE 7
#define TCP_ST_LISTEN 10
#define TCP_ST_CLOSING 11
#define TCP_ST_NEW_SYN_RECV 12
#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4
#define TCP_OPT_EVENTLOG 81      /* FreeBSD's TCP_EVENTLOG option number */
#define TCP_NPENDING 4           /* options remembered before the session starts */
#define TCP_IPPROTO_TCP 6
#define TCP_TH_SYN 0x02
#define TCP_TH_ACK 0x10
#define TCP_RCV_SHUTDOWN 1       /* sk_shutdown bit: the peer's FIN was received */

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
	__u32 hz;                /* the kernel's HZ (jiffies per second), for rto */
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

struct tcp_pending_opt {
	__u32 level;
	__u32 name;
	__u32 val;
};

/* A connection's own facts, in its session's entry (provider_data, sized
 * by tcp.py's session_data): what a later event or state dump needs that
 * the socket does not keep.  Not socket storage: that is an allocation
 * (and a copy, for an accepted socket cloned from its listener) and a free
 * per connection, about a quarter of the provider's kernel time in a
 * connection-rate test (perf, 2026-12-04). */
struct tcp_session_data {
	__u32 owner;             /* tgid that listened/connected (the listener's for accepted) */
	char comm[16];
	__u32 rtt_samples;       /* the RTT summary's count and last sample */
	__u32 rtt_last;
	__u8 have_params;
	__u8 _pad[3];
	struct tcp_eventlog_conn_params params;   /* for TCP_EVENTLOG state dumps */
};
_Static_assert(sizeof(struct tcp_session_data) <= sizeof(((struct eventlog_session *)0)->provider_data),
	       "tcp.py's session_data holds struct tcp_session_data");
#define tcp_data(s) ((struct tcp_session_data *)(s)->provider_data)

/* Socket-local storage, only for what a socket asks before its session
 * exists (setsockopt before listen()/connect()); freed with the socket. */
struct tcp_sk_store {
	__u8 want;               /* TCP_EVENTLOG: 0 not asked, 1 on, 2 off */
	__u8 npending;
	__u8 _pad[2];
	struct tcp_pending_opt pending[TCP_NPENDING];
};
BPF_F_TABLE("sk_storage", int, struct tcp_sk_store, tcp_sk_store, 0, BPF_F_NO_PREALLOC);

/* Each connection request (the SYN's arrival, as the request socket's first
 * sock_ops callback sees it), by the request's cookie, which the accepted
 * socket inherits: when its session starts, and its listener (whose owner
 * it takes, and whose cookie keys its handshake segments).  LRU: requests
 * that never complete age out, the oldest first (a flood's, not the ones
 * an RTT from completing); sized for a busy server's half-open requests
 * over all its listeners, as an accepted socket whose entry aged out has
 * no owner and its handshake segments go to the listener (1 MB). */
struct tcp_request {
	__u64 born;              /* us since boot */
	__u64 listener;          /* the listener's cookie (0: unknown) */
};
BPF_TABLE("lru_hash", __u64, struct tcp_request, tcp_synrecv, 16384);

/* Handshake segments of connection requests, kept aside until the accepted
 * socket exists (see the top of this file).  A plain hash, not LRU, so that
 * nothing is evicted unseen: tcp.py's housekeeping logs requests that never
 * complete on their listener and deletes them; when the table is full the
 * segment is logged on the listener's session at once.  A request with more
 * handshake segments than TCP_EMB_SEGS (repeated SYNs or SYN-ACKs) counts
 * the rest as lost (tcp_seg_lost_add_n). */
#define TCP_EMB_SEGS 6
#ifndef TCP_EMBRYOS
#define TCP_EMBRYOS 4096
#endif
struct tcp_emb_seg {
	__u64 ts;
	__u32 id;                /* IN or OUT */
	__u32 len;
	__u8 payload[TCP_SEG_PAYLOAD];
};
struct tcp_emb_key {
	__u64 listener;          /* the listener's cookie */
	__u32 raddr[4];          /* the peer (IPv4: raddr[0]) */
	__u32 rport;             /* host order */
	__u32 _pad;
};
struct tcp_embryo {
	__u64 created;           /* us since boot, the first segment */
	__u32 n;
	__u32 _pad;
	struct tcp_emb_seg seg[TCP_EMB_SEGS];
};
BPF_HASH(tcp_embryo, struct tcp_emb_key, struct tcp_embryo, TCP_EMBRYOS);
/* Element 0, never written: the zeroed value new embryos start from (too
 * big for the stack). */
BPF_ARRAY(tcp_embryo_zero, struct tcp_embryo, 1);

/* Segments the skb hooks could not log: an IPv6 packet whose TCP header
 * hides behind extension headers, or a header that could not be read;
 * handshake segments beyond TCP_EMB_SEGS, with no session to hold them, or
 * SYN-ACKs an older kernel's egress hook skipped (see tcp_embryo_flush()).
 * Counted as lost IN or OUT events (eventlog_event_lost), among the dropped
 * events of the subscribers that wanted them. */
static __always_inline void tcp_seg_lost_add_n(__u32 id, __u64 n)
{
	eventlog_event_lost(EL_PROVIDER_ID, id, n);
}

/* Who owns a socket: the process that listened or connected. */
struct tcp_owner {
	__u32 tgid;
	char comm[16];
};

/* Kernels whose sock_ops may not ask for the current task (6.1): the owner
 * of a listening or connecting socket is noted by inet_sock_set_state,
 * which runs in the caller's context just before the sock_ops LISTEN /
 * CONNECT callback, keyed by the socket's address; LRU: entries of
 * sockets sock_ops never saw age out. */
#if !defined(EVENTLOG_TASK_SOCK_OPS) && defined(TCP_HAVE_INET_SOCK_SET_STATE)
#define TCP_OWNER_BY_TP 1
BPF_TABLE("lru_hash", __u64, struct tcp_owner, tcp_owner_map, 4096);
#endif

/* The owners of listeners older than the capture, by cookie: they took no
 * LISTEN callback, so no session of theirs notes who listens, and their
 * accepted sockets would start without an owner (and never match a pid or
 * comm filter).  Written by tcp.py once sock_ops is attached, from
 * sock_diag and /proc; read only when the listener's session has no owner.
 * Not preallocated: most hosts have a few dozen listeners.  Cookies are
 * never reused, so the entry of a listener that closed misleads no one. */
#ifndef TCP_OLD_LISTENERS
#define TCP_OLD_LISTENERS 65536
#endif
BPF_F_TABLE("hash", __u64, struct tcp_owner, tcp_old_listeners, TCP_OLD_LISTENERS, BPF_F_NO_PREALLOC);

/* ---- kernel struct members, at offsets from the running kernel's BTF ---- */

/* The address a socket pointer holds, as a plain number: the verifier
 * forbids arithmetic on socket pointers, and bpf_probe_read_kernel() of
 * the pointer's own stack slot launders it. */
static __always_inline __u64 tcp_addr_of(const void *p)
{
	__u64 a = 0;

	bpf_probe_read_kernel(&a, sizeof(a), &p);
	return a;
}

static __always_inline __u32 tcp_kread32(__u64 addr)
{
	__u32 v = 0;

	if (addr)
		bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr);
	return v;
}

static __always_inline __u64 tcp_kread64(__u64 addr)
{
	__u64 v = 0;

	if (addr)
		bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr);
	return v;
}

/* The cookie in the socket at address sk (sock_common.skc_cookie, read
 * through BTF), which is every session's id: sock_ops made it with
 * bpf_get_socket_cookie() (an accepted socket inherits its request's), the
 * dump-state replay read it with SO_COOKIE.  0: none was made, so the
 * socket has no session. */
static __always_inline __u64 tcp_sk_cookie(__u64 sk)
{
	return tcp_kread64(sk + TCP_BTF_SKC_COOKIE);
}

/* A member of at most 8 bits (a bitfield or a byte): TCP_BTF_<m> is its
 * byte offset, TCP_BTF_<m>_SHIFT and _BITS its place in that byte.
 * TCP_BTF_BITS_IN: member m in v, the bytes read from offset base on. */
#define TCP_BTF_BITS_IN(v, base, m) \
	((__u8)(((v) >> ((TCP_BTF_##m - (base)) * 8 + TCP_BTF_##m##_SHIFT)) & \
		((1U << TCP_BTF_##m##_BITS) - 1)))
#define TCP_KREAD_BITS(sk, m) \
	TCP_BTF_BITS_IN(tcp_kread32_byte((sk) + TCP_BTF_##m), TCP_BTF_##m, m)
static __always_inline __u8 tcp_kread32_byte(__u64 addr)
{
	__u8 v = 0;

	if (addr)
		bpf_probe_read_kernel(&v, sizeof(v), (const void *)addr);
	return v;
}

/* The state of a socket (sock_common.skc_state). */
static __always_inline __u8 tcp_sk_state(__u64 sk)
{
	return sk ? TCP_KREAD_BITS(sk, SKC_STATE) : 0;
}

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

/* rttvar as tcp_info reports it (mdev_us >> 2) and rto in microseconds
 * (icsk_rto is in jiffies; tcp.py writes HZ into tcp_cfg). */
static __always_inline void tcp_rto_rttvar(__u64 sk, __u32 *rttvar, __u32 *rto)
{
	__u32 zero = 0;
	struct tcp_cfg *cfg = tcp_cfg_map.lookup(&zero);
	__u64 j = tcp_kread32(sk + TCP_BTF_ICSK_RTO);

	*rttvar = tcp_kread32(sk + TCP_BTF_MDEV_US) >> 2;
	*rto = cfg && cfg->hz ? (__u32)(j * 1000000 / cfg->hz) : 0;
}

static __always_inline void
tcp_log_rtt(struct eventlog_session *s, __u64 sk, __u32 srtt_us, __u32 min_rtt)
{
	__u32 rttvar = 0, rto = 0;

	if (!TCP_EVENTLOG_RTT_ENABLED(s))
		return;
	tcp_rto_rttvar(sk, &rttvar, &rto);
	__u32 last = tcp_data(s)->rtt_last, n = tcp_data(s)->rtt_samples;
	TCP_EVENTLOG_RTT_LOG_ALWAYS(s, last ? last : srtt_us, srtt_us, rttvar, rto, min_rtt, n);
}

static __always_inline void tcp_emit_params(struct eventlog_session *s)
{
	if (TCP_EVENTLOG_CONN_PARAMS_ENABLED(s) && tcp_data(s)->have_params)
		TCP_EVENTLOG_WRITE(s, TCP_EVENTLOG_CONN_PARAMS_ID, TCP_EVENTLOG_CONN_PARAMS_LEVEL,
				     TCP_EVENTLOG_CONN_PARAMS_KEYWORDS, &tcp_data(s)->params,
				     sizeof(tcp_data(s)->params));
}

/* ---- sock_ops ----------------------------------------------------------- */

/* sock_ops callbacks that run per segment (RTT samples) cost on every ACK
 * of every socket, whether or not anyone listens: ask for them only when
 * some subscription (the provider's aggregate filter: max level, OR of
 * keywords) wants an event they feed (RTT_SAMPLE, CWND and the RTT
 * summary's last sample and count). Segments themselves come from the skb
 * hooks. State changes, retransmissions and RTOs are rare and always on.
 * The aggregate, not the session's own filter: a disabled session may be
 * enabled later (TCP_EVENTLOG). */
#define TCP_AGG_WANTS(p, ev) ((p)->level >= TCP_EVENTLOG_##ev##_LEVEL && \
			      ((p)->keywords & TCP_EVENTLOG_##ev##_KEYWORDS))
/* The events logged at every RTT callback. */
#define TCP_AGG_WANTS_PER_SAMPLE(p) (TCP_AGG_WANTS(p, RTT_SAMPLE) || TCP_AGG_WANTS(p, CWND))

static __always_inline __u32 tcp_cb_flags(void)
{
	__u32 id = EL_PROVIDER_ID;
	struct eventlog_provider *p = eventlog_providers.lookup(&id);
	__u32 f = BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG |
		  BPF_SOCK_OPS_RTO_CB_FLAG;

	if (p && (TCP_AGG_WANTS(p, RTT) || TCP_AGG_WANTS_PER_SAMPLE(p)))
		f |= BPF_SOCK_OPS_RTT_CB_FLAG;
	return f;
}

/* Set the callback flags for the filter generation the session was last
 * refreshed at; provider_word remembers it (+1: 0 = never set), so a
 * subscription change reaches each socket at its next sock_ops callback. */
static __always_inline void
tcp_set_cb_flags(struct bpf_sock_ops *skops, struct eventlog_session *s)
{
	bpf_sock_ops_cb_flags_set(skops, tcp_cb_flags());
	s->provider_word = s->generation + 1;
}

/* The key of an accepted connection's handshake segments (tcp_embryo). */
static __always_inline void
tcp_emb_key_sockops(struct bpf_sock_ops *skops, __u64 listener, struct tcp_emb_key *k)
{
	k->listener = listener;
	k->rport = tcp_rport_host(skops->remote_port);
	if (skops->family == 2) {
		k->raddr[0] = skops->remote_ip4;
	} else if (skops->remote_ip6[0] == 0 && skops->remote_ip6[1] == 0 &&
		   skops->remote_ip6[2] == bpf_htonl(0xffff)) {
		/* v4-mapped (a dual-stack listener): the packets were IPv4 */
		k->raddr[0] = skops->remote_ip6[3];
	} else {
		k->raddr[0] = skops->remote_ip6[0];
		k->raddr[1] = skops->remote_ip6[1];
		k->raddr[2] = skops->remote_ip6[2];
		k->raddr[3] = skops->remote_ip6[3];
	}
}

/* Log an accepted connection's handshake segments on its session, with
 * their own times and only those the session's filter wants.  Older
 * kernels' egress hook skips the packets a listener sends for a request
 * socket over IPv6 (it required sk == skb->sk): when no SYN-ACK was kept,
 * count the 1 + synack_retrans that were sent as lost. */
static __always_inline void
tcp_embryo_flush(struct eventlog_session *s, struct tcp_embryo *e, __u32 synack_retrans)
{
	__u32 n = e->n, synacks = 0;

#pragma unroll
	for (int i = 0; i < TCP_EMB_SEGS; i++) {
		struct tcp_emb_seg *g = &e->seg[i];
		int in = g->id == TCP_EVENTLOG_IN_ID;
		if (i < n && in && TCP_EVENTLOG_IN_ENABLED(s)) {
			eventlog_outbox_date(g->ts);
			eventlog_outbox_add(s, TCP_EVENTLOG_IN_ID, TCP_EVENTLOG_IN_LEVEL, TCP_EVENTLOG_IN_KEYWORDS,
				    g->payload, sizeof(struct tcp_eventlog_in));
		} else if (i < n && !in && TCP_EVENTLOG_OUT_ENABLED(s)) {
			eventlog_outbox_date(g->ts);
			eventlog_outbox_add(s, TCP_EVENTLOG_OUT_ID, TCP_EVENTLOG_OUT_LEVEL,
				    TCP_EVENTLOG_OUT_KEYWORDS, g->payload, sizeof(struct tcp_eventlog_out));
			synacks++;
		}
	}
	eventlog_outbox_date(0);
	if (!synacks && TCP_EVENTLOG_OUT_ENABLED(s))
		tcp_seg_lost_add_n(TCP_EVENTLOG_OUT_ID, 1 + synack_retrans);
}

/*
 * A new session at listen(), connect() or accept (passive).  For an
 * accepted socket, its first events are dated at the SYN: SESSION_CREATE,
 * the connection facts, LISTEN -> SYN_RECEIVED and the handshake segments
 * kept in tcp_embryo.
 */
static __always_inline struct eventlog_session *
tcp_session_begin(struct bpf_sock_ops *skops, __u64 cookie, int passive, __u32 state)
{
	__u32 zero = 0;
	struct tcp_cfg *cfg = tcp_cfg_map.lookup(&zero);
	struct bpf_sock *sk = skops->sk;
	struct tcp_sk_store *st = (struct tcp_sk_store *)0;
	struct tcp_embryo *emb = (struct tcp_embryo *)0;
	struct tcp_emb_key ek = {};
	struct eventlog_session *s;
	__u64 netns = bpf_get_netns_cookie(skops), born = 0;
	__u32 tgid = 0;
	char comm[16] = {};
	int enabled;

	if (!cfg)
		return (struct eventlog_session *)0;
	if (passive) {
		/* The request this socket was accepted from: when, and from
		 * which listener (its owner is this socket's; its cookie keys
		 * the handshake segments).  Without one (a SYN cookie: no
		 * request socket was kept) the session starts now, with no
		 * owner, and the segments go to the listener's session. */
		struct tcp_request *r = tcp_synrecv.lookup(&cookie);
		__u64 listener = 0;
		if (r) {
			born = r->born;
			listener = r->listener;
			tcp_synrecv.delete(&cookie);
		}
		if (listener) {
			struct eventlog_session *ls = eventlog_session_lookup(EL_PROVIDER_ID, listener);
			struct tcp_owner *o;
			if (ls && tcp_data(ls)->owner) {
				tgid = tcp_data(ls)->owner;
				__builtin_memcpy(comm, tcp_data(ls)->comm, 16);
			} else if ((o = tcp_old_listeners.lookup(&listener))) {
				tgid = o->tgid;
				__builtin_memcpy(comm, o->comm, 16);
			}
			tcp_emb_key_sockops(skops, listener, &ek);
			emb = tcp_embryo.lookup(&ek);
			if (emb)
				born = emb->created;
		}
	} else {
		/* listen()/connect(): the caller owns it. */
#ifdef EVENTLOG_TASK_SOCK_OPS
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
	/* What the socket asked before listen()/connect() (an accepted
	 * socket has asked nothing yet). */
	if (sk && !passive)
		st = tcp_sk_store.sk_storage_get(sk, 0, 0);

	if (st && st->want)
		enabled = st->want == 1;        /* TCP_EVENTLOG beats defaults and filters */
	else
		enabled = cfg->default_enabled && tcp_filter_match(cfg, skops, netns, tgid, comm);

	s = tcp_session_new(cookie);
	if (!s) {
		eventlog_session_refused(EL_PROVIDER_ID, enabled);
		if (emb) {
			tcp_embryo.delete(&ek);
		}
		return s;
	}
	tcp_set_cb_flags(skops, s);
	tcp_data(s)->owner = tgid;
	__builtin_memcpy(tcp_data(s)->comm, comm, 16);
	if (!enabled) {
		if (emb)
			tcp_embryo.delete(&ek);
		return s;
	}
	eventlog_session_set_enabled(s, 1);
	eventlog_outbox_date(born);
	TCP_EVENTLOG_SESSION_CREATE_LOG(s, netns, tgid, skops->family, comm);
	tcp_conn_facts(s, skops);
	if (tgid)
		TCP_EVENTLOG_CONN_OWNER_LOG(s, (__s32)tgid, comm);
	/* The state the socket just entered (before its session existed). */
	TCP_EVENTLOG_STATE_CHANGE_LOG(s, passive ? TCP_ST_LISTEN : TCP_ST_CLOSE, state);
	eventlog_outbox_date(0);
	if (emb) {
		tcp_embryo_flush(s, emb, skops->total_retrans);
		tcp_embryo.delete(&ek);
	}
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

static __always_inline void tcp_session_end(__u64 cookie)
{
	struct eventlog_session *s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);

	if (s) {
		/* SESSION_END through the outbox, after this run's other
		 * events; the core then only frees the entry. */
		if (s->enabled)
			eventlog_outbox_add(s, EVENTLOG_SESSION_END_ID, EVENTLOG_LEVEL_INFO,
				    EVENTLOG_KEYWORD_SESSION, (const void *)0, 0);
		s->enabled = 0;
		eventlog_session_remove(s);
	}
}

/* What the two SYNs negotiated, as the socket keeps it (rx_opt): its
 * bitfields share one word, so one read, not one per member. */
static __always_inline void tcp_negotiated(__u64 sk, __u8 *snd_ws, __u8 *rcv_ws, __u8 *flags)
{
	__u32 rx = tcp_kread32(sk + TCP_BTF_RX_BASE);
	__u8 f = 0;

	if (TCP_BTF_BITS_IN(rx, TCP_BTF_RX_BASE, RX_SACK_OK))
		f |= TCP_EVENTLOG_FLAG_CP_SACK_PERMIT;
	if (TCP_BTF_BITS_IN(rx, TCP_BTF_RX_BASE, RX_TSTAMP_OK))
		f |= TCP_EVENTLOG_FLAG_CP_TIMESTAMPS;
	if (TCP_BTF_BITS_IN(rx, TCP_BTF_RX_BASE, RX_WSCALE_OK)) {
		f |= TCP_EVENTLOG_FLAG_CP_WINDOW_SCALE;
		*snd_ws = TCP_BTF_BITS_IN(rx, TCP_BTF_RX_BASE, RX_SND_WSCALE);
		*rcv_ws = TCP_BTF_BITS_IN(rx, TCP_BTF_RX_BASE, RX_RCV_WSCALE);
	}
	*flags = f;
}

static __always_inline void tcp_established(struct bpf_sock_ops *skops, struct eventlog_session *s)
{
	struct bpf_sock *sk = skops->sk;
	struct tcp_eventlog_conn_params *p;
	__u8 snd_ws = 0, rcv_ws = 0, flags = 0;
	__u64 ska;

	if (!s || !sk)
		return;
	ska = tcp_addr_of(sk);
	tcp_negotiated(ska, &snd_ws, &rcv_ws, &flags);
	struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
	if (tp && (tp->ecn_flags & 1 /* TCP_ECN_OK */))
		flags |= TCP_EVENTLOG_FLAG_CP_ECN;
	/* Kept for TCP_EVENTLOG state dumps later in the connection: the
	 * ISS and IRS are nowhere else once the handshake is over. */
	p = &tcp_data(s)->params;
	p->iss = skops->snd_una - 1;
	p->irs = skops->rcv_nxt - 1;
	p->mss = skops->mss_cache;
	p->snd_wscale = snd_ws;
	p->rcv_wscale = rcv_ws;
	p->flags = flags;
	__builtin_memset(p->cc_algo, 0, sizeof(p->cc_algo));
	bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, p->cc_algo, sizeof(p->cc_algo));
	p->cc_algo[15] = 0;
	tcp_data(s)->have_params = 1;
	tcp_emit_params(s);
	TCP_EVENTLOG_MSS_LOG(s, skops->mss_cache);
	tcp_log_rtt(s, ska, skops->srtt_us >> 3, skops->rtt_min);
}

/* The socket is moving to CLOSE: when Linux hands the connection to a
 * timewait socket (tcp_time_wait(): the socket is already out of the
 * established hash, sk_nulls_node.pprev == NULL), the connection is not
 * closed: it is in TIME_WAIT if the peer's FIN came (RCV_SHUTDOWN), else
 * still in FIN_WAIT_2.  Returns that state, or 0 for a real close. */
static __always_inline __u32 tcp_timewait_state(__u64 sk, __u32 old)
{
	if (old != TCP_ST_FIN_WAIT2 && old != TCP_ST_CLOSING)
		return 0;
	if (tcp_kread64(sk + TCP_BTF_SKC_NULLS_PPREV))
		return 0;
	return (TCP_KREAD_BITS(sk, SK_SHUTDOWN) & TCP_RCV_SHUTDOWN) ? TCP_ST_TIME_WAIT
								      : TCP_ST_FIN_WAIT2;
}

static __always_inline void tcp_state_change(struct bpf_sock_ops *skops, struct eventlog_session *s)
{
	__u32 old = skops->args[0], new = skops->args[1], tw = 0;

	if (new == TCP_ST_CLOSE && skops->sk)
		tw = tcp_timewait_state(tcp_addr_of(skops->sk), old);
	if (tw) {
		if (tw != old)
			TCP_EVENTLOG_STATE_CHANGE_LOG(s, old, tw);
		TCP_EVENTLOG_TIMEWAIT_LOG(s, tw);
	} else {
		TCP_EVENTLOG_STATE_CHANGE_LOG(s, old, new);
	}
	if (old == TCP_ST_ESTABLISHED && TCP_EVENTLOG_RTT_ENABLED(s) && skops->sk)
		tcp_log_rtt(s, tcp_addr_of(skops->sk), skops->srtt_us >> 3, skops->rtt_min);
}

/* The cookie of the listener a connection request (TIMEOUT_INIT's socket,
 * a request socket) came to, 0 if it has none: read from the kernel's
 * sock_ops context (its socket, which skops->sk hides from a program when
 * the socket is not a full one) and the request's rsk_listener. */
static __always_inline __u64 tcp_request_listener(struct bpf_sock_ops *skops)
{
	__u64 req = tcp_kread64(tcp_addr_of(skops) + TCP_BTF_SOCK_OPS_SK);
	__u64 lsk = req ? tcp_kread64(req + TCP_BTF_RSK_LISTENER) : 0;

	return lsk ? tcp_sk_cookie(lsk) : 0;
}

/* An RTT sample (BPF_SOCK_OPS_RTT_CB). Kernels >= 6.11 pass (measured
 * rtt us, srtt << 3); older ones pass zeros: srtt is never 0 after a
 * sample, so that tells. */
static __always_inline __u32 tcp_rtt_measured(struct bpf_sock_ops *skops)
{
	return skops->args[1] ? (__u32)skops->args[0] : 0;
}

/* Keep the sample for the RTT summary (its last sample and count), in
 * the session: for every session, enabled or not, so a session enabled
 * later (TCP_EVENTLOG) reports its whole count.  (Callbacks of one socket
 * run under its lock: plain increments.) */
static __always_inline void tcp_rtt_keep(struct bpf_sock_ops *skops, struct eventlog_session *s)
{
	__u32 mrtt = tcp_rtt_measured(skops);

	if (!s)
		return;
	if (mrtt)
		tcp_data(s)->rtt_last = mrtt;
	tcp_data(s)->rtt_samples++;
}

/* RTT samples when no subscription wants the per-sample events
 * (RTT_SAMPLE, CWND: VERBOSE; a session's override cannot deliver what no
 * subscription takes), only the RTT summary's count: kept without the
 * outbox. Five of the 22 callbacks of a short connection at INFO (both
 * ends, bench/workload.py's connrate). */
static __always_inline int tcp_rtt_kept_only(struct bpf_sock_ops *skops)
{
	__u32 id = EL_PROVIDER_ID;
	struct eventlog_provider *p;

	if (skops->op != BPF_SOCK_OPS_RTT_CB)
		return 0;
	p = eventlog_providers.lookup(&id);
	if (!p || TCP_AGG_WANTS_PER_SAMPLE(p))
		return 0;
	tcp_rtt_keep(skops, eventlog_session_lookup(EL_PROVIDER_ID, bpf_get_socket_cookie(skops)));
	return 1;
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
	case BPF_SOCK_OPS_TIMEOUT_INIT: {
		/* A connection request (the SYN just arrived; the only
		 * TIMEOUT_INIT tcp_sockops_wanted() lets in): its cookie,
		 * made here, is the accepted socket's. */
		struct tcp_request r = {};
		r.born = eventlog_now_us();
		r.listener = tcp_request_listener(skops);
		tcp_synrecv.update(&cookie, &r);
		return;
	}
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		tcp_session_begin(skops, cookie, 0, TCP_ST_LISTEN);
		return;
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		tcp_session_begin(skops, cookie, 0, TCP_ST_SYN_SENT);
		return;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		s = tcp_session_begin(skops, cookie, 1, TCP_ST_SYN_RECV);
		tcp_established(skops, s);
		return;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
		tcp_established(skops, s);
		return;
	}

	s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
	if (!s)
		return;
	if (s->provider_word != s->generation + 1 && skops->is_fullsock)
		tcp_set_cb_flags(skops, s);

	switch (op) {
	case BPF_SOCK_OPS_STATE_CB:
		tcp_state_change(skops, s);
#ifndef TCP_HAVE_TCP_DESTROY_SOCK
		/* Without tcp:tcp_destroy_sock, CLOSE is the last we hear of
		 * it (with it, the session outlives CLOSE until the socket
		 * is freed: an RST is sent *after* the move to CLOSE). */
		if (skops->args[1] == TCP_ST_CLOSE)
			tcp_session_end(cookie);
#endif
		break;
	case BPF_SOCK_OPS_RTT_CB:
		TCP_EVENTLOG_RTT_SAMPLE_LOG(s, tcp_rtt_measured(skops), skops->srtt_us >> 3);
		TCP_EVENTLOG_CWND_LOG(s, skops->snd_cwnd, skops->snd_ssthresh);
		tcp_rtt_keep(skops, s);
		break;
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

/* Whether this callback can record anything.  Every socket gets some
 * callbacks whatever its flags (the initial receive window, ECN, BASE_RTT;
 * TIMEOUT_INIT also for the client's own SYN): they leave before the
 * cookie, the session lookup and the outbox, which cost about 1.5 µs per
 * connection of ~20 at INFO (bench/workload.py, connrate). */
static __always_inline int tcp_sockops_wanted(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		return !skops->is_fullsock && skops->state == TCP_ST_NEW_SYN_RECV;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_STATE_CB:
	case BPF_SOCK_OPS_RTT_CB:
	case BPF_SOCK_OPS_RTO_CB:
	case BPF_SOCK_OPS_RETRANS_CB:
		return 1;
	}
	return 0;
}

int EL_FN(tcp_sockops)(struct bpf_sock_ops *skops)
{
	if (!tcp_sockops_wanted(skops) || tcp_rtt_kept_only(skops))
		return 1;
	eventlog_outbox_begin();
	tcp_sockops_body(skops);
	return eventlog_outbox_end_sockops(skops);
}

/* ---- segments: cgroup skb ingress/egress ------------------------------------ */

/* Each run of the skb hooks takes a nesting depth for its working space
 * (it queues nothing): a softirq may interrupt a hook that runs in process
 * context on this CPU.  Thread ids where the kernel lets them ask. */
#ifdef EVENTLOG_TASK_CGROUP_SKB
#define TCP_SKB_HAS_TASK 1
#else
#define TCP_SKB_HAS_TASK 0
#endif


/* Option entries walked per packet: 40 bytes of options hold fewer options
 * and padding NOPs than this in practice (Linux sends at most 6, other
 * systems 8); the rest of a longer list is not read. */
#define TCP_OPT_WALK 16

/* Parse the packet's IP and TCP headers (TCP options included).  Returns 0,
 * or -1 when the TCP header cannot be found or read (IPv6 extension
 * headers, a short packet): the caller counts it. */
static __always_inline int
tcp_parse_seg(struct __sk_buff *skb, int egress, struct tcp_seg *g, __u32 *thw)
{
	/* thw (38 words) gets the TCP header and its options, zero-filled
	 * past their end: 0 is EOL, which ends the walk below wherever it
	 * reads past the options (at most 127 + 4 bytes in).  ipw: a __u32
	 * array, as stack accesses must be aligned. */
	__u32 ipw[10];
	__u8 *ip = (__u8 *)ipw, *b = (__u8 *)thw;
	__u32 ihl, hl, olen, off, end = 0, ts_off = 0, sack_off = 0, nsack = 0;
	__u64 opts;

	if (bpf_skb_load_bytes(skb, 0, ipw, 20))
		return -1;
	if ((ip[0] >> 4) == 4) {
		if (ip[9] != TCP_IPPROTO_TCP)
			return -1;
		/* Loads at constant offsets, then a choice of values: a
		 * computed index becomes pointer arithmetic the verifier
		 * refuses on the stack. */
		__u32 src = ipw[3], dst = ipw[4];
		ihl = (ip[0] & 15) * 4;
		g->raddr[0] = egress ? dst : src;
	} else {
		if (bpf_skb_load_bytes(skb, 0, ipw, 40) || ip[6] != TCP_IPPROTO_TCP)
			return -1;
		__u32 s0 = ipw[2], s1 = ipw[3], s2 = ipw[4], s3 = ipw[5];
		__u32 d0 = ipw[6], d1 = ipw[7], d2 = ipw[8], d3 = ipw[9];
		ihl = 40;
		g->raddr[0] = egress ? d0 : s0;
		g->raddr[1] = egress ? d1 : s1;
		g->raddr[2] = egress ? d2 : s2;
		g->raddr[3] = egress ? d3 : s3;
	}
	__builtin_memset(thw, 0, 38 * sizeof(__u32));
	if (ihl < 20 || bpf_skb_load_bytes(skb, ihl, thw, 20))
		return -1;
	hl = (b[12] >> 4) * 4;
	if (hl < 20)
		return -1;
	olen = hl - 20;
	if (olen) {
		/* 1..40, in a form older verifiers (6.1) can bound from below
		 * too: they do not learn olen >= 1 from olen != 0. */
		__u32 sz = olen;
		asm volatile("" : "+r"(sz));
		sz = ((sz - 1) & 63) + 1;
		if (bpf_skb_load_bytes(skb, ihl + 20, b + 20, sz))
			return -1;
	}
	__u16 sport = *(__u16 *)b, dport = *(__u16 *)(b + 2);
	g->rport = bpf_ntohs(egress ? dport : sport);
	g->seq = bpf_ntohl(thw[1]);
	g->ack = bpf_ntohl(thw[2]);
	g->flags = ((__u16)(b[12] & 1) << 8) | b[13];
	g->win = bpf_ntohs(*(__u16 *)(b + 14));
	g->len = skb->len > ihl + hl ? skb->len - ihl - hl : 0;
	g->segs = skb->gso_segs ? skb->gso_segs : 1;

	/* Options: walk kinds and lengths through a plain address of the
	 * copy (bpf_probe_read_kernel): an offset added to a stack pointer
	 * must be tracked exactly by the verifier, path by path, which makes
	 * a walk of a variable list too costly to verify; an address is just a
	 * number.  Timestamps and SACK blocks are read once found. */
	opts = tcp_addr_of(b) + 20;
	off = 0;
	/* Unrolled, without break: in a loop the verifier keeps few states to
	 * prune with, and the paths through each step multiply. */
#pragma unroll
	for (int i = 0; i < TCP_OPT_WALK; i++) {
		if (!end) {
			__u8 o[4] = {};
			bpf_probe_read_kernel(o, 4, (const void *)(opts + (off & 127)));
			/* No comparison of off itself (it would make the
			 * verifier track it exactly): an option longer than 40
			 * bytes ends the walk, so off stays below 80 and reads
			 * past the options see the zero fill (EOL). */
			if (o[0] == 1) {
				off++;
			} else if (o[0] == 0 || o[1] < 2 || o[1] > 40) {
				end = 1;
			} else {
				if (o[0] == 2 && o[1] == 4) {
					g->mss = ((__u16)o[2] << 8) | o[3];
					g->opts |= TCP_EVENTLOG_FLAG_MSS;
				} else if (o[0] == 3 && o[1] == 3) {
					g->wscale = o[2];
					g->opts |= TCP_EVENTLOG_FLAG_WSCALE;
				} else if (o[0] == 4 && o[1] == 2) {
					g->opts |= TCP_EVENTLOG_FLAG_SACK_PERM;
				} else if (o[0] == 5 && o[1] >= 10) {
					sack_off = off + 2;
					nsack = (o[1] - 2) / 8;
				} else if (o[0] == 8 && o[1] == 10) {
					ts_off = off + 2;
				} else {
					g->opts |= TCP_EVENTLOG_FLAG_OTHER;
				}
				off += o[1];
			}
		}
	}
	if (ts_off) {
		__u32 ts[2] = {};
		bpf_probe_read_kernel(ts, 8, (const void *)(opts + (ts_off & 127)));
		g->tsval = bpf_ntohl(ts[0]);
		g->tsecr = bpf_ntohl(ts[1]);
		g->opts |= TCP_EVENTLOG_FLAG_TS;
	}
	if (nsack) {
		__u32 blk[8] = {};
		bpf_probe_read_kernel(blk, 32, (const void *)(opts + (sack_off & 127)));
		g->nsack = nsack > 4 ? 4 : nsack;
		g->opts |= TCP_EVENTLOG_FLAG_SACK;
#pragma unroll
		for (int i = 0; i < 8; i++)
			if (i < 2 * g->nsack)
				g->sack[i] = bpf_ntohl(blk[i]);
	}
	return 0;
}

/* The IN or OUT payload of a parsed segment; kernel state from tp (NULL:
 * a connection request's segment, which no socket holds yet). */
union tcp_seg_payload {
	struct tcp_eventlog_in in;
	struct tcp_eventlog_out out;
	__u8 bytes[TCP_SEG_PAYLOAD];
};

/* The fields IN and OUT share (their layouts differ). */
#define TCP_SEG_FIELDS(d, g, st) do { \
	(d)->seq = (g)->seq; \
	(d)->ack = (g)->ack; \
	(d)->flags = (g)->flags; \
	(d)->win = (g)->win; \
	(d)->len = (g)->len; \
	(d)->state = (st); \
	(d)->opts = (g)->opts; \
	(d)->wscale = (g)->wscale; \
	(d)->nsack = (g)->nsack; \
	(d)->mss = (g)->mss; \
	(d)->segs = (g)->segs; \
	(d)->tsval = (g)->tsval; \
	(d)->tsecr = (g)->tsecr; \
	(d)->sack_start1 = (g)->sack[0]; \
	(d)->sack_end1 = (g)->sack[1]; \
	(d)->sack_start2 = (g)->sack[2]; \
	(d)->sack_end2 = (g)->sack[3]; \
	(d)->sack_start3 = (g)->sack[4]; \
	(d)->sack_end3 = (g)->sack[5]; \
	(d)->sack_start4 = (g)->sack[6]; \
	(d)->sack_end4 = (g)->sack[7]; \
} while (0)

static __always_inline void
tcp_seg_payload(union tcp_seg_payload *p, const struct tcp_seg *g, int egress, __u32 state,
		struct bpf_tcp_sock *tp)
{
	if (egress) {
		TCP_SEG_FIELDS(&p->out, g, state);
		if (tp) {
			p->out.cwnd = tp->snd_cwnd;
			p->out.snd_una = tp->snd_una;
			p->out.snd_nxt = tp->snd_nxt;
		}
	} else {
		TCP_SEG_FIELDS(&p->in, g, state);
		if (tp) {
			p->in.snd_una = tp->snd_una;
			p->in.rcv_nxt = tp->rcv_nxt;
		}
	}
}


/* Keep a segment the listener handled for the connection request it
 * belongs to (tcp_embryo).  0: the table is full (log it elsewhere). */
static __always_inline int
tcp_embryo_keep(struct tcp_emb_key *k, __u32 id, const union tcp_seg_payload *p)
{
	struct tcp_embryo *e = tcp_embryo.lookup(k);
	__u64 now = eventlog_now_us();

	if (!e) {
		__u32 z = 0;
		struct tcp_embryo *zero = tcp_embryo_zero.lookup(&z);
		if (!zero)
			return 0;
		tcp_embryo.insert(k, zero);
		e = tcp_embryo.lookup(k);
		if (!e)
			return 0;
		if (!e->created)
			e->created = now;
	}
	__u32 n = e->n;
	if (n >= TCP_EMB_SEGS) {
		tcp_seg_lost_add_n(id, 1);
		return 1;
	}
	struct tcp_emb_seg *g = &e->seg[n];
	g->ts = now;
	g->id = id;
	g->len = id == TCP_EVENTLOG_IN_ID ? sizeof(struct tcp_eventlog_in)
					  : sizeof(struct tcp_eventlog_out);
	__builtin_memcpy(g->payload, p->bytes, TCP_SEG_PAYLOAD);
	e->n = n + 1;
	return 1;
}

static __always_inline void
tcp_skb_seg(struct __sk_buff *skb, int egress, struct tcp_skb_work *w)
{
	struct bpf_sock *sk = skb->sk;
	struct eventlog_session *s = (struct eventlog_session *)0;
	struct tcp_seg *g = &w->seg;
	union tcp_seg_payload p = {};
	__u64 cookie;
	__u32 state, id = egress ? TCP_EVENTLOG_OUT_ID : TCP_EVENTLOG_IN_ID;

	if (!sk || !eventlog_provider_enabled(EL_PROVIDER_ID))
		return;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != TCP_IPPROTO_TCP)
		return;
	cookie = bpf_get_socket_cookie(skb);
	state = sk->state;
	if (state != TCP_ST_LISTEN) {
		s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
		if (egress ? !TCP_EVENTLOG_OUT_ENABLED(s) : !TCP_EVENTLOG_IN_ENABLED(s))
			return;
	}
	__builtin_memset(g, 0, sizeof(*g));
	if (tcp_parse_seg(skb, egress, g, w->th)) {
		tcp_seg_lost_add_n(id, 1);
		return;
	}
	if (state == TCP_ST_LISTEN) {
		/* A connection request's segment (the listener sends and
		 * receives for it): kept for the accepted socket, whose
		 * request noted this listener's cookie (tcp_synrecv). */
		struct tcp_emb_key k = {};
		k.listener = cookie;
		k.raddr[0] = g->raddr[0];
		k.raddr[1] = g->raddr[1];
		k.raddr[2] = g->raddr[2];
		k.raddr[3] = g->raddr[3];
		k.rport = g->rport;
		tcp_seg_payload(&p, g, egress,
				!egress && (g->flags & (TCP_TH_SYN | TCP_TH_ACK)) == TCP_TH_SYN
					? TCP_ST_LISTEN : TCP_ST_SYN_RECV,
				(struct bpf_tcp_sock *)0);
		if (tcp_embryo_keep(&k, id, &p))
			return;
		/* Table full: on the listener's own session, if it has one. */
		s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
		if (egress ? !TCP_EVENTLOG_OUT_ENABLED(s) : !TCP_EVENTLOG_IN_ENABLED(s))
			tcp_seg_lost_add_n(id, 1);
	} else {
		tcp_seg_payload(&p, g, egress, state, bpf_tcp_sock(sk));
	}
	/* Again, right where s is used: 6.1's verifier cannot tell that the
	 * test above already covered this path. */
	if (egress ? !TCP_EVENTLOG_OUT_ENABLED(s) : !TCP_EVENTLOG_IN_ENABLED(s))
		return;
	if (egress)
		eventlog_emit_task(EL_PROVIDER_ID, s->session_id, 0, TCP_EVENTLOG_OUT_ID, TCP_EVENTLOG_OUT_LEVEL,
			 TCP_EVENTLOG_OUT_KEYWORDS, p.bytes, sizeof(struct tcp_eventlog_out),
				   (const void *)0, 0, -1, TCP_SKB_HAS_TASK);
	else
		eventlog_emit_task(EL_PROVIDER_ID, s->session_id, 0, TCP_EVENTLOG_IN_ID, TCP_EVENTLOG_IN_LEVEL,
			 TCP_EVENTLOG_IN_KEYWORDS, p.bytes, sizeof(struct tcp_eventlog_in),
				   (const void *)0, 0, -1, TCP_SKB_HAS_TASK);
}

/* Both directions: the segment's event, with this nesting depth's scratch. */
static __always_inline int tcp_skb_hook(struct __sk_buff *skb, int egress)
{
	struct tcp_skb_work *w;
	__u32 k;

	eventlog_outbox_begin();
	k = eventlog_outbox_slot();
	w = tcp_skb_work_map.lookup(&k);
	if (w)
		tcp_skb_seg(skb, egress, w);
	eventlog_outbox_release();
	return 1;	/* cgroup_skb: let the packet pass */
}

int EL_FN(tcp_skb_ingress)(struct __sk_buff *skb)
{
	return tcp_skb_hook(skb, 0);
}

int EL_FN(tcp_skb_egress)(struct __sk_buff *skb)
{
	return tcp_skb_hook(skb, 1);
}

/* ---- setsockopt hook (cgroup sockopt, BPF_CGROUP_SETSOCKOPT) ---------------- */

/* The session of the socket at address sk, for hooks that carry no cookie:
 * by the cookie in the socket itself (tcp_sk_cookie()). */
static __always_inline struct eventlog_session *tcp_session_by_sk(__u64 sk)
{
	__u64 cookie = tcp_sk_cookie(sk);

	return cookie ? eventlog_session_lookup(EL_PROVIDER_ID, cookie) : (struct eventlog_session *)0;
}

/* Whether sock_ops reports this socket's state changes (flag
 * BPF_SOCK_OPS_STATE_CB_FLAG) or retransmissions (..._RETRANS_CB_FLAG)
 * itself: the socket's callback flags say so, set by tcp_set_cb_flags()
 * when its session started (an accepted socket inherits its listener's
 * until then).  Sessions older than the capture (the dump-state replay)
 * have no flags, and the tracepoints report for them.  Any program's flags
 * count: every sock_ops program on the socket's cgroups, this one included,
 * gets the callbacks they ask for. */
static __always_inline int tcp_sockops_reports(__u64 sk, __u8 flag)
{
	return TCP_KREAD_BITS(sk, SOCK_OPS_CB_FLAGS) & flag;
}

/* TCP_EVENTLOG: remember the wish (for a session not started yet), and for
 * a live session enable + dump its state, or disable it. */
static __always_inline void tcp_eventlog_opt(struct bpf_sockopt *ctx, struct bpf_sock *sk, int on)
{
	struct eventlog_session *s = tcp_session_by_sk(tcp_addr_of(sk));

	if (!s) {
		/* For the session listen()/connect() will start (the only
		 * sockets that get storage). */
		struct tcp_sk_store *st = tcp_sk_store.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			st->want = on ? 1 : 2;
		return;
	}
	eventlog_session_set_enabled(s, on);
	if (!on)
		return;
	/* State dump, as FreeBSD's tcp_eventlog_dump_session. */
	{
		char comm[16] = {};
		__u32 owner = tcp_data(s)->owner;
		__builtin_memcpy(comm, tcp_data(s)->comm, 16);
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
		tcp_emit_params(s);
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

	struct eventlog_session *s = tcp_session_by_sk(tcp_addr_of(sk));
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

	eventlog_outbox_begin();
	ret = tcp_setsockopt_body(ctx);
	return eventlog_outbox_end_sockopt(ctx, ret);
}

/* Run by tcp.py with BPF_PROG_TEST_RUN (never attached): the jiffies
 * counter, to measure HZ when no kernel config file says it. */
int EL_FN(tcp_jiffies)(struct bpf_raw_tracepoint_args *ctx)
{
	return (int)bpf_jiffies64();
}

/* ---- tracepoints ------------------------------------------------------------- */

/* The tracepoints every connection passes (inet_sock_set_state ten times,
 * tcp_destroy_sock twice, tcp_cong_state_set once) are raw tracepoints:
 * the kernel hands over its arguments as they are instead of building the
 * trace record and running the program through perf (trace_call_bpf,
 * perf_trace_buf_alloc: ~2 % of the CPU in connrate at WARN).  The
 * arguments are the tracepoint's prototype (include/trace/events/); the
 * rest is read from the socket. */
#ifdef TCP_HAVE_TCP_DESTROY_SOCK
RAW_TRACEPOINT_PROBE(tcp_destroy_sock)
{
	/* (struct sock *sk); the classic tracepoint's sock_cookie is
	 * sock_gen_cookie(), which only makes one for a socket that has
	 * none, and no session has such a socket. */
	__u64 sk = (__u64)ctx->args[0];

	eventlog_outbox_begin();
	/* Always, even with no subscriber: this is what frees the state. */
	tcp_session_end(tcp_sk_cookie(sk));
	return eventlog_outbox_end_raw_tp(ctx);
}
#endif

#ifdef TCP_HAVE_TCP_PROBE
TRACEPOINT_PROBE(tcp, tcp_probe)
{
	__u32 id = EL_PROVIDER_ID;
	struct eventlog_provider *p = eventlog_providers.lookup(&id);

	/* Every segment received: leave before the session lookup and the
	 * outbox unless some subscription takes IN_PROBE (VERBOSE). */
	if (!p || !TCP_AGG_WANTS(p, IN_PROBE))
		return 0;
	eventlog_outbox_begin();
	do {
		struct eventlog_session *s;

		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		if (!s)
			break;
		/* srtt: the tracepoint already gives microseconds. */
		TCP_EVENTLOG_IN_PROBE_LOG(s, args->data_len, args->snd_una, args->snd_nxt,
					  args->rcv_wnd, args->srtt);
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_RECEIVE_RESET
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
	eventlog_outbox_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		/* Before tcp_reset() moves it to CLOSE: the state it was in. */
		TCP_EVENTLOG_RESET_RECEIVED_LOG(s, tcp_sk_state((__u64)(long)args->skaddr));
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_SEND_RESET
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
	eventlog_outbox_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = tcp_session_by_sk((__u64)(long)args->skaddr);
#ifdef TCP_TP_SEND_RESET_STATE
		TCP_EVENTLOG_RESET_SENT_LOG(s, args->state);
#else
		TCP_EVENTLOG_RESET_SENT_LOG(s, tcp_sk_state((__u64)(long)args->skaddr));
#endif
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#endif

#ifdef TCP_HAVE_TCP_CONG_STATE_SET
/* Recovery edges only: into RECOVERY or LOSS, or out of them. */
#define TCP_CA_IN_RECOVERY(ca) ((ca) == TCP_CA_RECOVERY || (ca) == TCP_CA_LOSS)
#define TCP_CA_ENTERS(old, ca) (TCP_CA_IN_RECOVERY(ca) && (old) != (ca))
#define TCP_CA_EXITS(old, ca) ((ca) < TCP_CA_RECOVERY && TCP_CA_IN_RECOVERY(old))

RAW_TRACEPOINT_PROBE(tcp_cong_state_set)
{
	/* (struct sock *sk, const u8 ca_state); tcp_set_ca_state() runs it
	 * before it stores the new state, so the socket still holds the
	 * old one. */
	__u64 sk = (__u64)ctx->args[0];
	struct eventlog_session *s;
	__u8 ca = (__u8)ctx->args[1], old;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
	old = TCP_KREAD_BITS(sk, ICSK_CA_STATE);
	/* No edge (every connection's first OPEN): leave before the session
	 * lookup and the outbox. */
	if (!TCP_CA_ENTERS(old, ca) && !TCP_CA_EXITS(old, ca))
		return 0;
	eventlog_outbox_begin();
	s = tcp_session_by_sk(sk);
	if (TCP_CA_ENTERS(old, ca))
		TCP_EVENTLOG_ENTER_RECOVERY_LOG(s, ca);
	else
		TCP_EVENTLOG_EXIT_RECOVERY_LOG(s, old);
	return eventlog_outbox_end_raw_tp(ctx);
}
#endif

#if defined(TCP_HAVE_TCP_RCVBUF_GROW)
TRACEPOINT_PROBE(tcp, tcp_rcvbuf_grow)
{
	eventlog_outbox_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		TCP_EVENTLOG_RCV_SPACE_LOG(s, args->space, args->rcvbuf, args->copied, args->rtt_us);
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#elif defined(TCP_HAVE_TCP_RCV_SPACE_ADJUST)
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust)
{
	eventlog_outbox_begin();
	do {
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID))
			break;
		s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
		TCP_EVENTLOG_RCV_SPACE_LOG(s, 0, 0, 0, 0);
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#endif

/* Only for sessions without sock_ops callbacks (older than the capture):
 * sock_ops reports these itself for the others (tcp_set_state() runs its
 * STATE callback just before this tracepoint), which leave before the
 * session lookup and the outbox.  So tcp.py attaches it only when a
 * dump-state replay makes such sessions, or where the owner of a new
 * socket is noted here (TCP_OWNER_BY_TP): it runs ten times per short
 * connection.  Raw: (const struct sock *sk, const int oldstate, const int
 * newstate), for every inet socket; no protocol test, as only TCP sockets
 * have sessions. */
#ifdef TCP_HAVE_INET_SOCK_SET_STATE
int EL_FN(tcp_inet_sock_set_state)(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 sk = (__u64)ctx->args[0];
	__u32 oldstate = (__u32)ctx->args[1], newstate = (__u32)ctx->args[2];
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
#ifdef TCP_OWNER_BY_TP
	if (oldstate == TCP_ST_CLOSE && (newstate == TCP_ST_LISTEN || newstate == TCP_ST_SYN_SENT)) {
		struct tcp_owner o = {};
		o.tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
		bpf_get_current_comm(o.comm, sizeof(o.comm));
		tcp_owner_map.update(&sk, &o);
	}
#endif
	if (tcp_sockops_reports(sk, BPF_SOCK_OPS_STATE_CB_FLAG))
		return 0;
	eventlog_outbox_begin();
	s = tcp_session_by_sk(sk);
	TCP_EVENTLOG_STATE_CHANGE_LOG(s, oldstate, newstate);
	return eventlog_outbox_end_raw_tp(ctx);
}
#endif

#ifdef TCP_HAVE_TCP_RETRANSMIT_SKB
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
	eventlog_outbox_begin();
	do {
		__u64 sk = (__u64)(long)args->skaddr;
		struct eventlog_session *s;

		if (!eventlog_provider_enabled(EL_PROVIDER_ID) ||
		    tcp_sockops_reports(sk, BPF_SOCK_OPS_RETRANS_CB_FLAG))
			break;
		s = tcp_session_by_sk(sk);
		if (!s)
			break;
		/* The packet's control block (TCP_SKB_CB) holds its seq and
		 * segment count. */
		__u64 cb = (__u64)(long)args->skbaddr + TCP_BTF_SKB_CB;
		__u32 seq = tcp_kread32(cb + TCP_BTF_TCB_SEQ);
		__u32 segs = tcp_kread32(cb + TCP_BTF_TCB_GSO_SEGS) & 0xFFFF;
#ifdef TCP_TP_RETRANSMIT_ERR
		TCP_EVENTLOG_RETRANSMIT_LOG(s, seq, segs ? segs : 1, args->err, args->state);
#else
		TCP_EVENTLOG_RETRANSMIT_LOG(s, seq, segs ? segs : 1, 0, args->state);
#endif
	} while (0);
	return eventlog_outbox_end_tp(args);
}
#endif
