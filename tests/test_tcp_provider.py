# SPDX-License-Identifier: BSD-2-Clause
"""The TCP provider on the running kernel, driven through the Loader API.

Every connection is made inside network namespaces created with pyroute2
(tests/helpers/netns.py): on their loopback, or across a veth pair joining two of
them; nothing leaves the machine. One Loader (one bcc compile, ~2 s) per
test; several subscribers in one Loader when a test compares filters.
"""
from __future__ import annotations

import collections
import ctypes
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from pyelog.schema.consumer import ConsumerSet
from pyelog.kernel.loader import (DUMP_COMPLETE_ID, LEVEL_ERROR, LEVEL_INFO, LEVEL_TRACE,
                           LEVEL_VERBOSE, SESSION_CREATE_ID, SESSION_END_ID,
                           SUBSCRIPTION_DUMP_STATE, Loader, Subscription)
from pyelog.providers import tcp
from pyelog.kernel.ring import iter_records
from tests.helpers.netns import Namespace, connected, exchange, so_cookie, veth_pair

pytestmark = pytest.mark.kernel

CONN_V4, CONN_V6, CONN_PARAMS, MSS, CONN_OWNER, CC_ALGO_CHANGE = 0, 1, 3, 4, 5, 7
IN, OUT, CWND, ENTER_RECOVERY, EXIT_RECOVERY = 100, 101, 200, 202, 203
RTT, RTT_SAMPLE, RTO, SOCKET_OPT = 300, 301, 400, 700
STATE_CHANGE, RETRANSMIT, RESET_SENT, RESET_RECEIVED, IN_PROBE = 1000, 1001, 1002, 1003, 1005
SOCKET_OPT_SOCKET, TIMEWAIT, CONN_PARAMS_REPLAY = 1006, 1009, 1010
KW = {"RX": 0x1, "TX": 0x2, "ALL": 0xFFFFFFFF}
TCP_EVENTLOG = 81
CONSUMERS = ConsumerSet.default()


class Rec(collections.namedtuple("Rec", "session event ts payload")):
    def text(self) -> str:
        return CONSUMERS.format_payload("tcp", self.event, self.payload)


def drain(sub, settle: float = 0.4) -> list[Rec]:
    time.sleep(settle)
    out = []
    for _ in range(3):                   # until a pass finds nothing more
        n = len(out)
        for run in sub.drain(0.2):
            for h, p in iter_records(run):
                out.append(Rec(h[5], h[6], h[4], bytes(p)))
        if len(out) == n:
            break
    return out


def by_session(recs: list[Rec]) -> dict[int, list[Rec]]:
    d = collections.defaultdict(list)
    for r in recs:
        d[r.session].append(r)
    return d


def session_ids(loader: Loader) -> set:
    """The ids of the sessions in the kernel's session table."""
    return {k.session_id for k in loader.bpf["eventlog_sessions"].keys()}


def split_at_dump(recs: list[Rec], sub) -> tuple[dict[int, list[Rec]], dict[int, list[Rec]]]:
    """A dump-state capture's records by session: (the replay, what came after DUMP_COMPLETE)."""
    done = [i for i, r in enumerate(recs) if r.event == DUMP_COMPLETE_ID]
    assert len(done) == 1, (len(recs), sub.stats())
    return by_session(recs[:done[0]]), by_session(recs[done[0] + 1:])


def state_changes(recs: list[Rec]) -> list[str]:
    return [r.text() for r in recs if r.event == STATE_CHANGE]


# An older connection closed by its client, as the state changes show them.
CLIENT_CLOSES = ["State ESTABLISHED -> FIN_WAIT_1", "State FIN_WAIT_1 -> FIN_WAIT_2"]
SERVER_CLOSES = ["State ESTABLISHED -> CLOSE_WAIT", "State CLOSE_WAIT -> LAST_ACK", "State LAST_ACK -> CLOSED"]


# -- sessions, connection facts, options -------------------------------------------

def test_sessions_conn_params_options_and_timestamps():
    """Session ids are SO_COOKIE; CONN_PARAMS carries negotiated options and
    the cc name; setsockopt shows up as SOCKET_OPT*/CC_ALGO_CHANGE; RTT at
    ESTABLISHED and when leaving it; per-session timestamps never go back."""
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    with L, Namespace() as ns:
        def after(cli, acc):
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
        srv, cli, acc, _ = exchange(ns, 6000, after_connect=after)
        recs = drain(sub)
        sessions = session_ids(L)
    s = by_session(recs)
    for sid in (srv, cli, acc):
        ids = [r.event for r in s[sid]]
        assert ids[0] == SESSION_CREATE_ID and ids[-1] == SESSION_END_ID, ids
        assert CONN_V4 in ids and sid not in sessions
        ts = [r.ts for r in s[sid]]
        assert ts == sorted(ts)
    for sid in (cli, acc):
        params = [r for r in s[sid] if r.event == CONN_PARAMS]
        assert len(params) == 1 and len(params[0].payload) == 32
        iss, irs, mss, sws, rws, flags, cc = struct.unpack("<IIIBBB16sx", params[0].payload)
        assert mss > 0 and iss and irs
        # Linux negotiates SACK, timestamps and window scaling by default.
        assert flags & 0x01 and flags & 0x02 and flags & 0x40 and sws > 0
        assert cc.rstrip(b"\0")
        assert sum(r.event == RTT for r in s[sid]) >= 1
    # client ISS = accepted IRS and vice versa
    (ci, cr), (ai, ar) = [struct.unpack_from("<II", next(r for r in s[x] if r.event == CONN_PARAMS).payload)
                          for x in (cli, acc)]
    assert ci == ar and cr == ai
    texts = [r.text() for r in s[cli]]
    assert "Socket option TCP_NODELAY set to 1" in texts
    assert "Socket option SO_RCVBUF set to 65536" in texts
    assert "CC algorithm changed to reno" in texts
    # the listener's SO_REUSEADDR was set before listen(): replayed at session start
    assert "Socket option SO_REUSEADDR set to 1" in [r.text() for r in s[srv]]
    owner = next(r for r in s[cli] if r.event == CONN_OWNER)
    assert struct.unpack_from("<i", owner.payload)[0] == os.getpid()
    create = next(r for r in s[acc] if r.event == SESSION_CREATE_ID)
    assert struct.unpack_from("<Qi", create.payload)[1] == os.getpid()   # the listener's owner


def test_keyword_and_level_filters_ipv6():
    """RX: IN and no OUT; TX: OUT and no IN; ERROR: neither; TRACE: RTT_SAMPLE."""
    L = Loader([tcp.provider()])
    rx = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["RX"])])
    tx = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["TX"])])
    err = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_ERROR, KW["ALL"])])
    trace = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_TRACE, KW["ALL"])])
    with L, Namespace() as ns:
        cookies = exchange(ns, 6001, family=socket.AF_INET6, host="::1", send=50000)
        got = {name: drain(sub, 0.3 if name == "rx" else 0)
               for name, sub in (("rx", rx), ("tx", tx), ("err", err), ("trace", trace))}
    ids = {k: {r.event for r in v} for k, v in got.items()}
    assert IN in ids["rx"] and OUT not in ids["rx"]
    assert OUT in ids["tx"] and IN not in ids["tx"]
    assert not ids["err"] & {IN, OUT, IN_PROBE}
    assert RTT_SAMPLE in ids["trace"] and CONN_V6 in ids["trace"]
    trace_sessions = {r.session for r in got["trace"]}
    assert set(cookies.cookies) <= trace_sessions


# -- which sessions are enabled ---------------------------------------------------

def test_tcp_eventlog_opt_in_with_default_none():
    """Default "none": only connections that set TCP_EVENTLOG=1 are logged
    (set before connect, or after it: then the state is dumped at once);
    TCP_EVENTLOG=0 stops logging; other options behave as without the hook."""
    L = Loader([tcp.provider(default_enabled=False)])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"])])
    with L, Namespace() as ns:
        seen = {}

        def opt_before(cli):
            cli.setsockopt(socket.IPPROTO_TCP, TCP_EVENTLOG, 1)

        def opt_after(cli, acc):
            cli.setsockopt(socket.IPPROTO_TCP, TCP_EVENTLOG, 1)
            # Every other option still reaches the kernel.
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seen["nodelay"] = cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            seen["rcvbuf"] = cli.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            with pytest.raises(OSError):        # unknown options still fail
                cli.setsockopt(socket.IPPROTO_TCP, 200, 1)

        def opt_off(cli, acc):
            cli.setsockopt(socket.IPPROTO_TCP, TCP_EVENTLOG, 1)
            cli.setsockopt(socket.IPPROTO_TCP, TCP_EVENTLOG, 0)

        a = exchange(ns, port=6010, before_connect=opt_before)
        b = exchange(ns, port=6011, after_connect=opt_after)
        c = exchange(ns, port=6012)                 # never asks
        d = exchange(ns, port=6013, after_connect=opt_off)
        recs = drain(sub)
    assert seen == {"nodelay": 1, "rcvbuf": 65536}   # Linux doubles SO_RCVBUF
    s = by_session(recs)
    logged = set(s) - {DUMP_COMPLETE_ID}
    assert logged == {a[1], b[1], d[1]}, (logged, a, b, c, d)
    ids_a = [r.event for r in s[a[1]]]
    assert ids_a[0] == SESSION_CREATE_ID and CONN_PARAMS in ids_a and OUT in ids_a and SESSION_END_ID in ids_a
    ids_b = [r.event for r in s[b[1]]]
    # the opt-in dump: SESSION_CREATE, CONN_SET_IP_V4, CONN_PARAMS, then traffic
    assert ids_b[:3] == [SESSION_CREATE_ID, CONN_V4, CONN_PARAMS], ids_b
    assert OUT in ids_b and SESSION_END_ID in ids_b
    ids_d = [r.event for r in s[d[1]]]
    assert OUT not in ids_d and IN not in ids_d and SESSION_END_ID not in ids_d


def test_filters_port_cidr_comm():
    """With the default on, a TcpFilter enables only what matches."""
    f = tcp.TcpFilter(lports=[6020, 6021], cidrs=["::1/128", "127.0.0.0/8"], comms=["elog-yes"])
    L = Loader([tcp.provider(filters=f)])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    libc = ctypes.CDLL(None)

    def in_thread(name, fn):
        out = {}

        def run():
            libc.prctl(15, name.encode(), 0, 0, 0)       # PR_SET_NAME: the thread's comm
            out["v"] = fn()
        t = threading.Thread(target=run)
        t.start()
        t.join()
        return out["v"]

    with L, Namespace() as ns:
        yes = in_thread("elog-yes", lambda: exchange(ns, port=6020))
        yes6 = in_thread("elog-yes", lambda: exchange(ns, 6021, family=socket.AF_INET6, host="::1"))
        wrong_comm = in_thread("elog-no", lambda: exchange(ns, port=6021))
        wrong_port = in_thread("elog-yes", lambda: exchange(ns, port=6022))
        recs = drain(sub)
    logged = {r.session for r in recs}
    # lports: the listener and the accepted socket match (local port 6020);
    # the client's local port is ephemeral (6020 is its remote port).
    assert {yes[0], yes[2], yes6[0], yes6[2]} <= logged
    assert yes[1] not in logged
    assert not logged & set(wrong_comm.cookies) and not logged & set(wrong_port.cookies)


def test_filter_netns_and_pid():
    """netns (by inode) and pid filters; a cgroup-less subprocess is another pid."""
    with Namespace() as ns_yes, Namespace() as ns_no:
        f = tcp.TcpFilter(netns=[ns_yes.inode()], pids=[os.getpid()])
        L = Loader([tcp.provider(filters=f)])
        sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
        with L:
            yes = exchange(ns_yes, port=6030)
            no = exchange(ns_no, port=6030)
            recs = drain(sub)
    logged = {r.session for r in recs}
    assert set(yes.cookies) <= logged and not logged & set(no.cookies)


# -- dump state ------------------------------------------------------------------

def test_dump_state_reports_older_connection():
    """A connection opened before the capture: SESSION_CREATE, CONN_SET_IP,
    CONN_PARAMS (from tcp_info) at subscribe time, then DUMP_COMPLETE; its
    later segments (tcp_probe) and its end are logged under the same id."""
    with Namespace() as ns:
        srv, cli, acc = connected(ns, 6040)
        cookies = so_cookie(srv), so_cookie(cli), so_cookie(acc)
        L = Loader([tcp.provider()])
        sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"],
                                                           SUBSCRIPTION_DUMP_STATE)])
        with L:
            cli.sendall(b"x" * 5000)
            got = 0
            while got < 5000:
                got += len(acc.recv(65536))
            cli.close()
            acc.close()
            srv.close()
            recs = drain(sub)
            sessions = session_ids(L)
    dumped, after = split_at_dump(recs, sub)
    for sid in cookies:
        ids = [r.event for r in dumped[sid]]
        assert ids[:2] == [SESSION_CREATE_ID, CONN_V4], ids
        assert sid not in sessions          # ended with the socket
    for sid in cookies[1:]:
        ids = [r.event for r in dumped[sid]]
        # tcp_info has no ISS/IRS: the replay says so with its own event
        assert CONN_PARAMS_REPLAY in ids and CONN_PARAMS not in ids
        p = next(r for r in dumped[sid] if r.event == CONN_PARAMS_REPLAY)
        assert struct.unpack_from("<I", p.payload, 0)[0] > 0          # mss
        assert "ISS/IRS unknown" in p.text()
    create = next(r for r in dumped[cookies[1]] if r.event == SESSION_CREATE_ID)
    assert struct.unpack_from("<Qi", create.payload)[1] == os.getpid()
    assert IN_PROBE in [r.event for r in after[cookies[2]]]    # acc received the data
    # the skb hooks see the older connection's segments too
    assert IN in [r.event for r in after[cookies[2]]] and OUT in [r.event for r in after[cookies[1]]]
    for sid in cookies:
        assert SESSION_END_ID in [r.event for r in after[sid]]
    # No sock_ops callbacks for these: their state changes come from the
    # inet_sock_set_state tracepoint, each once.
    states = {sid: state_changes(after[sid]) for sid in cookies}
    assert states[cookies[1]][:2] == CLIENT_CLOSES, states
    assert states[cookies[2]] == SERVER_CLOSES, states


# A server that listened before the capture began: listens in the
# namespace, says so, accepts one connection, prints the accepted socket's
# cookie (its session id), then waits to be told to close.
OLD_SERVER = r"""
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen()
print("listening", flush=True)
acc, _ = srv.accept()
print(int.from_bytes(acc.getsockopt(socket.SOL_SOCKET, 57, 8), "little"), flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("dump_state", [False, True], ids=["capture", "dump_state"])
def test_accepted_connection_of_an_older_listener_has_its_owner(dump_state):
    """A server whose listener is older than the capture (the usual case:
    a recorder attached to a running server): its accepted connections are
    owned by the server process, in SESSION_CREATE and CONN_OWNER, and a
    --pid filter naming the server records them. The truth is the server
    process's own pid and comm, a process apart from the test's client."""
    with Namespace() as ns:
        port = 6045
        server = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", OLD_SERVER,
                                   str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "listening"
            comm = Path(f"/proc/{server.pid}/comm").read_text().strip()
            f = tcp.TcpFilter(pids=[server.pid])
            L = Loader([tcp.provider(filters=f)])
            sub = L.add_ring_subscriber(1 << 20, [Subscription(
                "tcp", LEVEL_INFO, KW["ALL"], SUBSCRIPTION_DUMP_STATE if dump_state else 0)])
            with L:
                with ns.enter():
                    cli = socket.socket()
                cli.connect(("127.0.0.1", port))
                accepted = int(server.stdout.readline())
                client = so_cookie(cli)
                cli.close()
                server.stdin.write("\n")
                server.stdin.flush()
                server.wait(10)
                recs = drain(sub)
        finally:
            server.kill()
            server.wait()
    s = by_session(recs)
    assert accepted in s, (accepted, sorted(s))
    assert client not in s          # the test's own pid: filtered out
    create = next(r for r in s[accepted] if r.event == SESSION_CREATE_ID)
    _, pid, _, name = struct.unpack_from("<QiH16s", create.payload)
    assert pid == server.pid and name.rstrip(b"\0").decode() == comm, (pid, name, comm)
    owner = next(r for r in s[accepted] if r.event == CONN_OWNER)
    assert struct.unpack_from("<i", owner.payload)[0] == server.pid


def raw_tracepoints_attached() -> list[str]:
    """The raw tracepoints this process holds links to, as the kernel lists
    them (/proc/self/fdinfo of each BPF link: ``tp_name``)."""
    names = []
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            if line.startswith("tp_name:"):
                names.append(line.split(":", 1)[1].strip())
    return names


def test_state_tracepoint_is_attached_only_for_replayed_sessions():
    """inet_sock_set_state runs ten times per short connection and reports
    only what sock_ops does not: the state changes of a dump-state replay's
    sessions, and (6.1, where sock_ops may not ask for the current task) a
    new socket's owner. So without a replay it is not attached where
    sock_ops can tell the owner; a replay attaches it, before the listing."""
    from pyelog.kernel.loader import task_helpers
    plain = Loader([tcp.provider()])
    plain.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    with plain:
        held = raw_tracepoints_attached()
        assert "tcp_destroy_sock" in held
        assert ("inet_sock_set_state" in held) == (not task_helpers()["EVENTLOG_TASK_SOCK_OPS"])
    replay = Loader([tcp.provider()])
    replay.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"],
                                                      SUBSCRIPTION_DUMP_STATE)])
    with replay:
        assert "inet_sock_set_state" in raw_tracepoints_attached()
    assert "inet_sock_set_state" not in raw_tracepoints_attached()


def test_second_recorder_logs_each_state_change_of_an_older_connection_once():
    """A connection made while one recorder ran (its sock_ops asked the
    sockets for state callbacks), replayed by a second recorder started
    later: every sock_ops program on the cgroup gets those callbacks, the
    second recorder's included, so its inet_sock_set_state tracepoint must
    stay quiet for them. It decides by the socket's callback flags, not by
    which recorder made the session: each state change is logged once."""
    with Namespace() as ns:
        first = Loader([tcp.provider()])
        first.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
        with first:
            srv, cli, acc = connected(ns, 6046)
            cookies = so_cookie(cli), so_cookie(acc)
            second = Loader([tcp.provider()])
            sub = second.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"],
                                                                    SUBSCRIPTION_DUMP_STATE)])
            with second:
                cli.close()
                acc.close()
                srv.close()
                recs = drain(sub)
    _, after = split_at_dump(recs, sub)
    states = {sid: state_changes(after[sid]) for sid in cookies}
    assert states[cookies[0]][:2] == CLIENT_CLOSES, states
    assert len(set(states[cookies[0]])) == len(states[cookies[0]]), states
    assert states[cookies[1]] == SERVER_CLOSES, states


# -- loss on a veth pair ------------------------------------------------------------

# No netem on this kernel (CONFIG_NET_SCH_NETEM is off): loss comes from a tc
# BPF classifier (cls_bpf, direct action, clsact ingress) on the receiver's
# veth that drops every 9th TCP segment carrying data.
DROPPER = r"""
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/pkt_cls.h>
BPF_ARRAY(seen, u64, 2);
int drop_some(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != 6)
		return TC_ACT_OK;
	struct tcphdr *th = (void *)ip + ip->ihl * 4;
	if ((void *)(th + 1) > end)
		return TC_ACT_OK;
	int len = bpf_ntohs(ip->tot_len) - ip->ihl * 4 - th->doff * 4;
	if (len <= 0)
		return TC_ACT_OK;
	u32 k = 0, d = 1;
	u64 *n = seen.lookup(&k);
	if (!n)
		return TC_ACT_OK;
	u64 c = __sync_fetch_and_add(n, 1);
	if (c % 9 == 8) {
		u64 *dropped = seen.lookup(&d);
		if (dropped)
			__sync_fetch_and_add(dropped, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}
"""


def test_loss_on_veth_gives_retransmits_with_the_right_session():
    from bcc import BPF
    from pyroute2 import NetNS
    dropper = BPF(text=DROPPER)
    fn = dropper.load_func("drop_some", BPF.SCHED_CLS)
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(4 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"])])
    try:
        with L, Namespace() as a, Namespace() as b:
            ia, ib = veth_pair(a, b)
            with NetNS(b.name) as ipr:
                idx = ipr.link_lookup(ifname=ib)[0]
                ipr.tc("add", "clsact", idx)
                ipr.tc("add-filter", "bpf", idx, ":1", fd=fn.fd, name="drop_some",
                       parent="ffff:fff2", classid=1, direct_action=True)
            with b.enter():
                srv = socket.socket()
                srv.bind(("10.231.0.2", 6050))
                srv.listen()
            with a.enter():
                cli = socket.socket()
            cli.connect(("10.231.0.2", 6050))
            acc, _ = srv.accept()
            total = 2_000_000

            def reader():
                got = 0
                while got < total:
                    got += len(acc.recv(1 << 16))
            t = threading.Thread(target=reader)
            t.start()
            cli.sendall(b"z" * total)
            t.join(30)
            cookies = so_cookie(cli), so_cookie(acc)
            cli.close()
            acc.close()
            srv.close()
            recs = drain(sub, 0.5)
            dropped = dropper["seen"][ctypes.c_int(1)].value
    finally:
        dropper.cleanup()
    assert dropped > 0
    loss = [r for r in recs if r.event in (RETRANSMIT, RTO, ENTER_RECOVERY)]
    assert loss, "no loss events although the classifier dropped %d segments" % dropped
    # the sender retransmits: its events carry the client's cookie
    assert {r.session for r in loss if r.event == RETRANSMIT} == {cookies[0]}
    assert ENTER_RECOVERY in {r.event for r in loss if r.session == cookies[0]}


# -- no state left behind -------------------------------------------------------------

def test_rst_closed_pairs_leave_no_state():
    """10 pairs closed with SO_LINGER 0 (RST): resets are logged, sessions end."""
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    with L, Namespace() as ns:
        with ns.enter():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 6060))
            srv.listen(16)
        ours = {so_cookie(srv)}
        for _ in range(10):
            with ns.enter():
                cli = socket.socket()
            cli.connect(("127.0.0.1", 6060))
            acc, _ = srv.accept()
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ours |= {so_cookie(cli), so_cookie(acc)}
            cli.close()                      # RST to acc
            acc.close()
        srv.close()
        recs = drain(sub)
        after = session_ids(L)
    s = by_session(recs)
    assert sum(RESET_SENT in [r.event for r in s[c]] for c in ours) == 10
    assert sum(RESET_RECEIVED in [r.event for r in s[c]] for c in ours) == 10
    assert all(SESSION_END_ID in [r.event for r in s[c]] for c in ours)
    assert not ours & after


CHURN = r"""
import socket, sys
sys.stdin.readline()                       # moved into the cgroup: go
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(128)
addr = srv.getsockname()
for i in range(int(sys.argv[1])):
    c = socket.socket(); c.connect(addr); a, _ = srv.accept()
    if i % 2:                              # half RST, half FIN (TIME_WAIT)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close(); a.close()
srv.close()
print("done", flush=True)
"""


def test_10000_short_connections_leave_the_maps_as_they_were():
    """A churning process alone in its own cgroup (a TcpFilter cgroup, so the
    hooks see only it and map sizes can be compared exactly)."""
    root = tcp.cgroup2_root()
    cg = os.path.join(root, f"pyelog-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(cg)
    try:
        L = Loader([tcp.provider(filters=tcp.TcpFilter(cgroups=[cg]))])
        sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
        with L, Namespace() as ns:
            before = len(L.bpf["eventlog_sessions"])
            p = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", CHURN, "10000"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
            t0 = time.monotonic()
            p.stdin.write("go\n")
            p.stdin.flush()
            while p.poll() is None:              # keep the ring drained meanwhile
                list(sub.drain(0.5))
            elapsed = time.monotonic() - t0
            assert p.stdout.read().strip() == "done"
            time.sleep(0.5)
            stats = L.provider_stats(L.providers[0])
            after = len(L.bpf["eventlog_sessions"])
    finally:
        os.rmdir(cg)
    assert stats["sessions_created"] >= 20001, stats     # 10000 x (client + accepted) + listener
    assert after == before, (before, after, stats)
    print(f"10000 connections in {elapsed:.1f} s")


# -- connection requests that never complete ------------------------------------------

def _raw_syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """An IPv4 SYN (IP header included, for IP_HDRINCL) with MSS and SACK permitted."""
    opts = struct.pack("!BBH", 2, 4, 1460) + struct.pack("!BBH", 4, 2, 0)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4, 0x02,
                      64240, 0, 0) + opts
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    data = pseudo + tcp
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    tcp = tcp[:16] + struct.pack("!H", ~total & 0xFFFF) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, s, d)
    return ip + tcp


def test_unfinished_handshakes_are_logged_on_the_listener_and_overflow_is_counted():
    """A peer whose SYNs get SYN-ACKs that go nowhere (sent to a neighbour
    that does not own the address and drops them): the request never
    completes. Its handshake segments are kept aside, then logged on the
    listener's session by the final housekeeping; past six per request they
    are counted as dropped. Checked against the wire (AF_PACKET on lo, where
    the SYNs arrive, and on the veth, where the SYN-ACKs leave): recorded +
    counted == what crossed."""
    from tests.helpers.wire import WireCapture
    port, peer, sport, local = 6070, "10.231.0.9", 40123, "10.231.0.1"
    with Namespace() as ns, Namespace() as other:
        ia, ib = veth_pair(ns, other)
        with other.ipr() as ipr:
            mac = ipr.get_links(ipr.link_lookup(ifname=ib)[0])[0].get_attr("IFLA_ADDRESS")
        with ns.ipr() as ipr:
            ipr.neigh("add", dst=peer, lladdr=mac, ifindex=ipr.link_lookup(ifname=ia)[0],
                      state=0x80)                 # NUD_PERMANENT: no ARP for the peer
        L = Loader([tcp.provider()])
        sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"])])
        with L, WireCapture(ns, "lo") as lo, WireCapture(ns, ia) as dm:
            with ns.enter():
                srv = socket.socket()
                srv.bind((local, port))
                srv.listen()
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            lost_before = L.provider_lost(sub.subscriptions)
            for _ in range(8):                    # the first and 7 repeats of one SYN
                raw.sendto(_raw_syn(peer, local, sport, port, 1000), (local, 0))
                time.sleep(0.05)
            raw.close()
            time.sleep(0.3)
            assert len(L.bpf["tcp_embryo"]) == 1
            L.housekeeping()                      # too young: stays
            assert len(L.bpf["tcp_embryo"]) == 1
            flushed_ns = time.time_ns()           # later SYN-ACK retransmits start a new entry
            L.housekeeping(final=True)
            assert len(L.bpf["tcp_embryo"]) == 0
            recs = drain(sub)
            lost = L.provider_lost(sub.subscriptions) - lost_before
            listener = so_cookie(srv)
            srv.close()
    wire = [s for s in lo.segments if not s.outgoing and s.sport == sport] + \
           [s for s in dm.segments if s.outgoing and s.dport == sport]
    wire = [s for s in wire if s.ts_ns < flushed_ns]
    logged = [r for r in recs if r.session == listener and r.event in (IN, OUT)]
    assert len(wire) >= 9 and len(logged) == 6
    assert len(logged) + lost == len(wire), (len(logged), lost, len(wire))
    seqs = [struct.unpack_from("<I", r.payload)[0] for r in logged]
    assert seqs[0] == 1000 and [r.event for r in logged][:2] == [IN, OUT]
    # logged with their own times, before the housekeeping that logged them
    assert sorted(r.ts for r in logged) == [r.ts for r in logged]


# -- values against the kernel's own report (TCP_INFO) -----------------------------------

_TCP_INFO = struct.Struct("=BBBBBBBB24I")      # struct tcp_info up to tcpi_total_retrans


def tcp_info(sock: socket.socket) -> dict[str, int]:
    """The fields of getsockopt(TCP_INFO) these tests compare with."""
    v = _TCP_INFO.unpack(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size))
    wscale = v[6]
    return {"options": v[5], "snd_wscale": wscale & 0xF, "rcv_wscale": wscale >> 4, "rto": v[8],
            "rtt": v[8 + 15], "rttvar": v[8 + 16]}


# tcpi_options' bits (TCPI_OPT_*) -> CONN_PARAMS' flags (CP_*)
_TCPI_OPT_TO_CP = {0x1: 0x02, 0x2: 0x01, 0x4: 0x40}    # timestamps, SACK, window scale


@pytest.mark.parametrize("sack,timestamps,window_scaling", [(0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 1)])
def test_conn_params_options_agree_with_tcp_info(sack, timestamps, window_scaling):
    """CONN_PARAMS' negotiated options (SACK permitted, timestamps, window
    scaling and its scales), as the SYNs left them in the socket, against
    TCP_INFO's tcpi_options and tcpi_*_wscale of the test's own sockets,
    with options turned off in the namespace so each bit is seen both ways."""
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    with L, Namespace() as ns:
        ns.write_sysctls({"net.ipv4.tcp_sack": str(sack), "net.ipv4.tcp_timestamps": str(timestamps),
                          "net.ipv4.tcp_window_scaling": str(window_scaling)})
        srv, cli, acc = connected(ns, 6090)
        info = {"cli": tcp_info(cli), "acc": tcp_info(acc)}
        cookies = {"cli": so_cookie(cli), "acc": so_cookie(acc)}
        for sk in (cli, acc, srv):
            sk.close()
        recs = drain(sub)
    s = by_session(recs)
    for who in ("cli", "acc"):
        p = next(r for r in s[cookies[who]] if r.event == CONN_PARAMS)
        sws, rws, flags = struct.unpack_from("<BBB", p.payload, 12)
        want = sum(cp for opt, cp in _TCPI_OPT_TO_CP.items() if info[who]["options"] & opt)
        assert flags & 0x43 == want, (who, hex(flags), info[who])
        assert (sws, rws) == (info[who]["snd_wscale"], info[who]["rcv_wscale"]), who
    assert bool(info["cli"]["options"] & 0x2) == bool(sack)    # the namespace's settings took


def test_connection_values_agree_with_tcp_info():
    """CONN_PARAMS' window scales, RTT's rto/rttvar/srtt and IN_PROBE's srtt
    (microseconds, not eighths) against TCP_INFO read from the test's own
    sockets; an accepted session starts at the SYN (LISTEN -> SYN_RECEIVED,
    the SYN itself, the SYN-ACK); RESET_RECEIVED names the state the reset
    came in."""
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"])])
    with L, Namespace() as ns:
        srv, cli, acc = connected(ns, 6080)
        cli.sendall(b"i" * 100_000)
        got = 0
        while got < 100_000:
            got += len(acc.recv(1 << 20))
        acc.sendall(b"o" * 1000)
        cli.recv(1000)
        time.sleep(0.05)
        info = {"cli": tcp_info(cli), "acc": tcp_info(acc)}
        cookies = {"cli": so_cookie(cli), "acc": so_cookie(acc)}
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()                                    # RST: acc is ESTABLISHED when it arrives
        time.sleep(0.1)
        acc.close()
        srv.close()
        recs = drain(sub)
    s = by_session(recs)
    for who in ("cli", "acc"):
        ev = s[cookies[who]]
        p = next(r for r in ev if r.event == CONN_PARAMS)
        snd_ws, rcv_ws = struct.unpack_from("<BB", p.payload, 12)
        assert (snd_ws, rcv_ws) == (info[who]["snd_wscale"], info[who]["rcv_wscale"]), who
        rtts = [struct.unpack("<6I", r.payload) for r in ev if r.event == RTT]
        rtt, srtt, rttvar, rto, min_rtt, n = rtts[-1]          # when it left ESTABLISHED
        assert 200_000 <= rto <= 2 * info[who]["rto"] and abs(rto - info[who]["rto"]) < 20_000, who
        assert 0 < srtt < 100 * max(info[who]["rtt"], 50) and 0 < rttvar, who
        probes = [struct.unpack_from("<5I", r.payload)[4] for r in ev if r.event == IN_PROBE]
        assert probes and max(probes) >= info[who]["rtt"] // 4, (who, probes, info[who])
    ids = [r.event for r in s[cookies["acc"]]]
    assert ids[:4] == [SESSION_CREATE_ID, CONN_V4, CONN_OWNER, STATE_CHANGE], ids
    first = {r.event: r for r in reversed(s[cookies["acc"]])}
    assert first[STATE_CHANGE].text() == "State LISTEN -> SYN_RECEIVED"
    syn = next(r for r in s[cookies["acc"]] if r.event == IN)
    assert struct.unpack_from("<H", syn.payload, 8)[0] == 0x02 and "in state LISTEN" in syn.text()
    assert syn.ts == s[cookies["acc"]][0].ts                   # the session is dated at its SYN
    reset = next(r for r in s[cookies["acc"]] if r.event == RESET_RECEIVED)
    assert reset.text() == "Reset received in state ESTABLISHED"


def test_dual_stack_listener_logs_the_v4_handshake_on_the_accepted_session():
    """An IPv6 listener on :: accepting an IPv4 client (a v4-mapped socket):
    the handshake went by as IPv4 packets and still reaches the accepted
    session (SYN in, SYN-ACK out, ACK in), nothing counted as lost."""
    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_VERBOSE, KW["ALL"])])
    with L, Namespace() as ns:
        with ns.enter():
            srv = socket.socket(socket.AF_INET6)
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            srv.bind(("::", 6090))
            srv.listen()
            cli = socket.socket()
        cli.connect(("127.0.0.1", 6090))
        acc, _ = srv.accept()
        assert acc.getpeername()[0] == "::ffff:127.0.0.1"
        cookie = so_cookie(acc)
        for s in (cli, acc, srv):
            s.close()
        recs = drain(sub)
        lost = L.provider_lost(sub.subscriptions)
    segs = [(r.event, struct.unpack_from("<H", r.payload, 8)[0]) for r in by_session(recs)[cookie]
            if r.event in (IN, OUT)]
    assert segs[:3] == [(IN, 0x02), (OUT, 0x12), (IN, 0x10)], segs
    assert lost == 0


def test_segment_hooks_are_linked_only_while_segments_are_wanted():
    """At INFO no per-packet program runs: the skb hooks are linked when a
    subscription wants IN or OUT and unlinked when none does any more
    (checked in the kernel's own list of links, bpftool)."""
    import json

    def skb_links() -> int:
        links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True,
                                          text=True, check=True).stdout or "[]")
        return sum(1 for lk in links if lk.get("prog_id") in ours and lk.get("attach_type") in
                   ("cgroup_inet_ingress", "cgroup_inet_egress", "ingress", "egress"))

    L = Loader([tcp.provider()])
    sub = L.add_ring_subscriber(1 << 20, [Subscription("tcp", LEVEL_INFO, KW["ALL"])])
    with L:
        progs = L.providers[0].spec._tcp_config.skb_progs.values()
        ours = {int(Path(f"/proc/self/fdinfo/{fd}").read_text().split("prog_id:")[1].split()[0])
                for fd in progs}
        assert skb_links() == 0
        L.subscribe(sub, Subscription("tcp", LEVEL_VERBOSE, KW["TX"]))
        assert skb_links() == 2                     # egress for OUT, ingress for handshakes
        L.subscribe(sub, Subscription("tcp", LEVEL_VERBOSE, KW["RX"]))
        assert skb_links() == 1                     # ingress only
        L.subscribe(sub, Subscription("tcp", LEVEL_INFO, KW["ALL"]))
        assert skb_links() == 0
