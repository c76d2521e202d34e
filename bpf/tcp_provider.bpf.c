/*
 * tcp_provider.bpf.c - the Linux TCP provider: every TCP socket of the host
 * is a session whose id is its socket cookie (SO_COOKIE).
 *
 * Pasted by pyelog/providers/tcp.py after bpf/eventlog.h and the producer
 * header generated from schemas/tcp_eventlog_schema.src; the loader
 * substitutes EL_PROVIDER_ID and EL_FN().
 *
 * Sources (no kprobes or fentry on the kernels we target):
 *   sock_ops on the cgroup-v2 root, attached with a BPF link so it goes
 *   away with the recorder: session creation (listen, connect, accept),
 *   connection facts, state changes, outgoing segments (HDR_OPT_LEN_CB,
 *   without reserving option space, so packets are not changed), incoming
 *   segments that take the slow path (PARSE_HDR_OPT_CB, real header),
 *   RTT samples, RTO and retransmissions;
 *   tcp:tcp_probe for every received segment on established sockets;
 *   tcp:tcp_receive_reset, tcp:tcp_destroy_sock (carry the cookie);
 *   tcp:tcp_send_reset, tcp:tcp_cong_state_set (carry only the socket
 *   address, mapped back to the cookie through tcp_sk_cookie).
 */
#include <uapi/linux/tcp.h>

/* tcp:tcp_send_reset names this type (kernel 6.10+); the 6.1 headers bcc
 * compiles against do not define it, and only its size matters here. */
enum sk_rst_reason { PYELOG_SK_RST_REASON_UNUSED };

#define TCP_ST_ESTABLISHED 1
#define TCP_ST_CLOSE 7
#define TCP_ST_LISTEN 10
#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4

/* Which sessions start enabled, set from user space (kern.eventlog.tcp.default
 * and the bcc-tool style filters). A zero field matches anything. */
struct tcp_filter {
	__u32 lport;        /* host order */
	__u32 rport;        /* host order */
	__u32 v4_addr;      /* network order; remote or local address ... */
	__u32 v4_mask;      /* ... under this mask (0 = any) */
	__u64 netns;        /* netns cookie (SO_NETNS_COOKIE), 0 = any */
	__u32 tgid;         /* owning process (known on connect/listen only) */
	__u32 _pad;
};
BPF_ARRAY(tcp_filter_map, struct tcp_filter, 1);

/* struct sock address -> cookie, for tracepoints that carry no cookie,
 * with the last congestion state seen (to report recovery edges only). */
struct tcp_sk_info {
	__u64 cookie;
	__u8 ca_state;
};
BPF_HASH(tcp_sk_cookie, __u64, struct tcp_sk_info, EVENTLOG_MAX_SESSIONS);

static __always_inline int tcp_filter_match(struct bpf_sock_ops *skops, __u64 netns, __u32 tgid)
{
	__u32 zero = 0;
	struct tcp_filter *f = tcp_filter_map.lookup(&zero);

	if (!f)
		return 1;
	if (f->lport && f->lport != skops->local_port)
		return 0;
	if (f->rport && f->rport != bpf_ntohs((__u16)(skops->remote_port >> 16)) &&
	    f->rport != bpf_ntohs((__u16)skops->remote_port))
		return 0;
	if (f->v4_mask && (skops->remote_ip4 & f->v4_mask) != f->v4_addr &&
	    (skops->local_ip4 & f->v4_mask) != f->v4_addr)
		return 0;
	if (f->netns && f->netns != netns)
		return 0;
	if (f->tgid && f->tgid != tgid)
		return 0;
	return 1;
}

static __always_inline void tcp_conn_facts(struct eventlog_session *s, struct bpf_sock_ops *skops)
{
	/* remote_port is in network order (upper half on some kernels). */
	__u16 rport = (__u16)(skops->remote_port >> 16);
	if (!rport)
		rport = (__u16)skops->remote_port;
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

static __always_inline struct eventlog_session *
tcp_session_begin(struct bpf_sock_ops *skops, __u64 cookie, int owned)
{
	struct tcp_eventlog_session_create c = {};
	__u64 netns = bpf_get_netns_cookie(skops);
	__u32 tgid = owned ? (__u32)(bpf_get_current_pid_tgid() >> 32) : 0;
	struct eventlog_session *s;
	__u64 sk;

	if (!tcp_filter_match(skops, netns, tgid))
		return (struct eventlog_session *)0;
	c.netns = (__u32)netns;
	c.pid = (__s32)tgid;
	c.family = (__u16)skops->family;
	if (owned)
		bpf_get_current_comm(c.comm, sizeof(c.comm));
	s = eventlog_session_create(EL_PROVIDER_ID, cookie, &c, sizeof(c));
	if (!s)
		return s;
	sk = (__u64)(long)skops->sk;
	if (sk) {
		struct tcp_sk_info info = { .cookie = cookie };
		tcp_sk_cookie.update(&sk, &info);
	}
	tcp_conn_facts(s, skops);
	if (owned && tgid)
		TCP_EVENTLOG_CONN_OWNER_LOG(s, (__s32)tgid, c.comm);
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG |
				  BPF_SOCK_OPS_RETRANS_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG |
				  BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG |
				  BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
	return s;
}

static __always_inline void tcp_session_end(__u64 cookie, __u64 sk)
{
	struct eventlog_session *s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);

	if (s)
		eventlog_session_destroy(s);
	if (sk)
		tcp_sk_cookie.delete(&sk);
}

int EL_FN(tcp_sockops)(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	__u64 cookie;
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 1;
	cookie = bpf_get_socket_cookie(skops);

	switch (op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		tcp_session_begin(skops, cookie, 1);
		return 1;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		s = tcp_session_begin(skops, cookie, 0);
		goto established;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
	established:
		if (TCP_EVENTLOG_CONN_PARAMS_ENABLED(s)) {
			char cc[16] = {};
			bpf_getsockopt(skops, SOL_TCP, TCP_CONGESTION, cc, sizeof(cc));
			TCP_EVENTLOG_CONN_PARAMS_LOG_ALWAYS(s, skops->snd_una - 1, skops->rcv_nxt - 1,
							    skops->mss_cache, 0, 0, 0, cc);
		}
		TCP_EVENTLOG_MSS_LOG(s, skops->mss_cache);
		return 1;
	}

	s = eventlog_session_lookup(EL_PROVIDER_ID, cookie);
	if (!s)
		return 1;

	switch (op) {
	case BPF_SOCK_OPS_STATE_CB:
		TCP_EVENTLOG_STATE_CHANGE_LOG(s, skops->args[0], skops->args[1]);
		if (skops->args[1] == TCP_ST_CLOSE)
			tcp_session_end(cookie, (__u64)(long)skops->sk);
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
	case BPF_SOCK_OPS_RTT_CB:
		TCP_EVENTLOG_RTT_SAMPLE_LOG(s, skops->args[0], skops->srtt_us >> 3);
		TCP_EVENTLOG_CWND_LOG(s, skops->snd_cwnd, skops->snd_ssthresh);
		break;
	case BPF_SOCK_OPS_RTO_CB:
		TCP_EVENTLOG_RTO_LOG(s, (__s32)skops->args[0], skops->srtt_us >> 3,
				     skops->packets_out, skops->retrans_out, skops->snd_cwnd);
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		TCP_EVENTLOG_RETRANSMIT_LOG(s, skops->args[0], skops->args[1], skops->state);
		break;
	}
	return 1;
}

TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
	tcp_session_end(args->sock_cookie, (__u64)(long)args->skaddr);
	return 0;
}

TRACEPOINT_PROBE(tcp, tcp_probe)
{
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
	s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
	TCP_EVENTLOG_IN_PROBE_LOG(s, args->data_len, args->snd_una, args->snd_nxt,
				  args->rcv_wnd, args->srtt >> 3);
	return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
	s = eventlog_session_lookup(EL_PROVIDER_ID, args->sock_cookie);
	TCP_EVENTLOG_RESET_RECEIVED_LOG(s, 0);
	return 0;
}

TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
	__u64 sk = (__u64)(long)args->skaddr;
	struct tcp_sk_info *info;
	struct eventlog_session *s;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
	info = tcp_sk_cookie.lookup(&sk);
	if (!info)
		return 0;
	s = eventlog_session_lookup(EL_PROVIDER_ID, info->cookie);
	TCP_EVENTLOG_RESET_SENT_LOG(s, args->state);
	return 0;
}

TRACEPOINT_PROBE(tcp, tcp_cong_state_set)
{
	__u64 sk = (__u64)(long)args->skaddr;
	struct tcp_sk_info *info;
	struct eventlog_session *s;
	__u8 ca = args->cong_state, old;

	if (!eventlog_provider_enabled(EL_PROVIDER_ID))
		return 0;
	info = tcp_sk_cookie.lookup(&sk);
	if (!info)
		return 0;
	old = info->ca_state;
	info->ca_state = ca;
	s = eventlog_session_lookup(EL_PROVIDER_ID, info->cookie);
	if ((ca == TCP_CA_RECOVERY || ca == TCP_CA_LOSS) && old != ca)
		TCP_EVENTLOG_ENTER_RECOVERY_LOG(s, ca);
	else if (ca < TCP_CA_RECOVERY && (old == TCP_CA_RECOVERY || old == TCP_CA_LOSS))
		TCP_EVENTLOG_EXIT_RECOVERY_LOG(s, old);
	return 0;
}
