# SPDX-License-Identifier: BSD-2-Clause
"""Filters, aggregation, sessions, providers (model: ktest_eventlog)."""
from __future__ import annotations

import os
import struct

import pytest

from pyelog.kernel.loader import (Loader, Subscription, EventlogError, LEVEL_INFO, LEVEL_WARN,
                           LEVEL_VERBOSE, LEVEL_TRACE, LEVEL_NONE, SESSION_CREATE_ID,
                           SESSION_END_ID, KEYWORD_SESSION)
from pyelog.kernel.ring import iter_records


def _ids(sub):
    return [(h[2], h[5], h[6]) for run in sub.drain(0) for h, _ in iter_records(run)]


def test_subscription_validation():
    with pytest.raises(EventlogError):
        Subscription("test", 9)
    with pytest.raises(EventlogError):
        Subscription("test", 3, 1, flags=2)
    from pyelog.kernel.loader import ProviderSpec
    with pytest.raises(EventlogError):
        ProviderSpec("x" * 32, "")
    L = Loader([ProviderSpec("p", "")])
    with pytest.raises(EventlogError):
        L.add_ring_subscriber(65535)
    with pytest.raises(EventlogError):
        L.add_ring_subscriber(65536, [Subscription("nope")])
    with pytest.raises(EventlogError, match="buffer size must be 65536..1073741823"):
        L.add_ring_subscriber(1 << 30)
    with pytest.raises(EventlogError, match="power of two"):
        L.add_ring_subscriber(200000, chunk_size=100000)
    with pytest.raises(EventlogError, match="at most 4 chunks"):
        L.add_ring_subscriber(5 * 65536, chunk_size=65536)


def test_session_data_is_the_largest_providers_in_whole_words():
    # Every session entry holds the largest provider's state (one shared map).
    from pyelog.kernel.loader import ProviderSpec
    assert Loader([ProviderSpec("a", "")]).session_data_size() == 0
    assert Loader([ProviderSpec("a", "", session_data=5)]).session_data_size() == 8
    assert Loader([ProviderSpec("a", "", session_data=5),
                   ProviderSpec("b", "", session_data=64)]).session_data_size() == 64


def test_chunk_layout():
    from pyelog.kernel.ring import chunk_layout, BUFFER_SIZE_MAX
    assert chunk_layout(65536) == (65536, 1)
    assert chunk_layout(100000) == (100000, 1)            # one chunk: any size
    assert chunk_layout(1 << 28) == (1 << 28, 1)
    assert chunk_layout((1 << 28) + 1) == (1 << 28, 2)
    assert chunk_layout(BUFFER_SIZE_MAX) == (1 << 28, 4)
    assert chunk_layout(131072, 65536) == (65536, 2)
    assert chunk_layout(65536, 65536) == (65536, 1)


@pytest.mark.kernel
def test_filters_aggregation_and_sessions():
    from pyelog.providers import test as tp
    L = Loader([tp.provider(), tp.provider()])           # two instances named "test"
    a = L.add_ring_subscriber(65536, [Subscription("test", LEVEL_INFO, 0x1)])
    b = L.add_ring_subscriber(65536, [Subscription("test", LEVEL_WARN, 0x2)])
    c = L.add_ring_subscriber(65536)                       # subscribes to nothing
    with L:
        p1, p2 = L.providers
        d1, d2 = tp.TestDriver(L, p1), tp.TestDriver(L, p2)
        # Aggregation: INFO/0x1 + WARN/0x2 = INFO/0x3.
        assert L.provider_filter(p1) == (LEVEL_INFO, 0x3) == L.provider_filter(p2)
        d1.create_session(10)
        d2.create_session(20)
        # a lacks the SESSION keyword: no SESSION_CREATE; b likewise.
        assert _ids(a) == [] and _ids(b) == []
        # Level/keyword matrix for a (INFO/0x1).
        d1.emit(10, tp.SIMPLE, 1, 0)      # INFO BASIC(0x1): yes
        d1.emit(10, tp.FLAGS, 1, 0)       # VERBOSE ADVANCED: level too high
        d1.emit(10, tp.COMPLEX, 1, 0)     # WARN COMPLEX(0x8): keyword mismatch
        assert _ids(a) == [(p1.id, 10, 0)]
        assert _ids(b) == []              # b: WARN/0x2 matches none of them
        assert _ids(c) == []
        # Re-subscribing updates in place.
        L.subscribe(a, Subscription("test", LEVEL_VERBOSE, 0x2 | KEYWORD_SESSION))
        assert L.provider_filter(p1) == (LEVEL_VERBOSE, 0x2 | KEYWORD_SESSION)
        d1.emit(10, tp.FLAGS, 1, 0)
        d1.emit(10, tp.SIMPLE, 1, 0)
        assert _ids(a) == [(p1.id, 10, 2)]
        # Both same-name instances deliver, with their own ids.
        d2.emit(20, tp.FLAGS, 1, 0)
        assert _ids(a) == [(p2.id, 20, 2)]
        # Sessions follow the aggregate (lazy refresh on lookup), gated emits too.
        L.unsubscribe(a, "test")
        assert L.provider_filter(p1) == (LEVEL_WARN, 0x2)
        L.unsubscribe(b, "test")
        assert L.provider_filter(p1) == (LEVEL_NONE, 0)
        d1.emit(10, tp.SIMPLE, 5, 0, gated=True)
        assert [s["effective_level"] for s in L.sessions(p1)] == [0]
        assert _ids(a) == _ids(b) == _ids(c) == []
        assert a.stats().dropped == b.stats().dropped == c.stats().dropped == 0
        # SESSION_END reaches subscribers with the SESSION keyword; session freed.
        L.subscribe(c, Subscription("test", LEVEL_INFO, KEYWORD_SESSION))
        d1.end_session(10)
        assert _ids(c) == [(p1.id, 10, SESSION_END_ID)]
        assert L.sessions(p1) == []
        st = L.provider_stats(p1)
        assert st["sessions_created"] == 1 and st["sessions_ended"] == 1 and st["sessions_active"] == 0


@pytest.mark.kernel
def test_unsubscribed_provider_emits_nothing():
    from pyelog.providers import test as tp
    L = Loader([tp.provider(), tp.provider(name="other")])
    sub = L.add_ring_subscriber(65536, [Subscription("other", LEVEL_TRACE, 0xFFFFFFFF)])
    with L:
        d = tp.TestDriver(L, L.providers[0])
        d.create_session(1)
        assert L.provider_filter(L.providers[0]) == (LEVEL_NONE, 0)
        d.emit(1, tp.SIMPLE, 1000, 0, gated=True)
        d.emit(1, tp.SIMPLE, 1000, 0)                       # even _LOG_ALWAYS: no subscriber
        assert _ids(sub) == []
        st = sub.stats()
        assert st.dropped == 0 and st.oversized == 0 and st.bytes == 0


@pytest.mark.kernel
def test_oversized_gather_varlen_callback_and_dump():
    from pyelog.providers import test as tp
    events = []
    L = Loader([tp.provider()])
    sub = L.add_ring_subscriber(256 * 1024, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
    L.add_callback_subscriber(events.append, [Subscription("test", LEVEL_INFO, 0x1)])
    with L:
        inst = L.providers[0]
        d = tp.TestDriver(L, inst)
        d.create_session(5)
        d.emit(5, tp.RAW, 1, 7, size=65503)       # 65535 total: the largest record
        d.emit(5, tp.RAW, 1, 8, size=65504)       # 65536 total: discarded, counted
        d.emit(5, tp.GATHER, 1, 40, size=4096)
        d.emit(5, tp.VARLEN, 1, 100, size=32)     # count clamped to 8
        recs = [(h, bytes(p)) for run in sub.drain(0) for h, p in iter_records(run)]
        assert [h[6] for h, _ in recs] == [SESSION_CREATE_ID, 100, 101, 4]
        assert recs[1][0][0] == 65535 and struct.unpack_from("<Q", recs[1][1])[0] == 7
        assert sub.stats().oversized == 1 and sub.stats().dropped == 0
        h, p = recs[2]
        assert len(p) == 8 + 4096 and struct.unpack_from("<QQ", p) == (40, 41)
        h, p = recs[3]
        assert len(p) == 16 + 64 and p[8] == 8
        assert L.poll() == 3                      # callback: RAW, GATHER, VARLEN (INFO/BASIC)
        assert [e.event_id for e in events] == [100, 101, 4]
        assert events[0].provider == "test" and len(events[0].payload) == 65503
        # Dump-state: SESSION_CREATE replay + DUMP_COMPLETE to that subscriber only.
        L.subscribe(sub, Subscription("test", LEVEL_TRACE, 0xFFFFFFFF, flags=1))  # update: no dump
        assert _ids(sub) == []
        L.unsubscribe(sub, "test")
        L.subscribe(sub, Subscription("test", LEVEL_INFO, KEYWORD_SESSION, flags=1))
        assert _ids(sub) == [(inst.id, 5, SESSION_CREATE_ID), (inst.id, 2**64 - 1, 0xFFFFFFFD)]
        assert L.poll() == 0


def test_provider_lost_counts_each_counter_once():
    """Losses a provider counts before its ring reach the drop count once,
    however many instances share the counter (the TCP outbox)."""
    from pyelog.kernel.loader import ProviderSpec
    calls = []

    def lost(loader):
        calls.append(loader)
        return 7

    L = Loader([ProviderSpec("a", "", lost=lost), ProviderSpec("a", "", lost=lost),
                ProviderSpec("b", "")])
    assert L.provider_lost() == 7 and calls == [L]


@pytest.mark.kernel
def test_provider_losses_are_charged_to_the_subscribers_they_were_for():
    """Events a provider loses before the core, counted by event id, reach
    the drops of exactly the subscribers whose subscription would have
    received them (levels and keywords as schemas/test_eventlog_schema.src
    declares them); the truth is the test's own count of each."""
    from pyelog.providers import test as tp
    L = Loader([tp.provider()])
    subs = {"info basic": Subscription("test", LEVEL_INFO, tp.KW_BASIC),
            "verbose all": Subscription("test", LEVEL_VERBOSE, 0xFFFFFFFF),
            "warn complex": Subscription("test", LEVEL_WARN, tp.KW_COMPLEX)}
    rings = {name: L.add_ring_subscriber(65536, [s]) for name, s in subs.items()}
    with L:
        (p,) = L.providers
        d = tp.TestDriver(L, p)
        d.lose(0, 5)                    # SIMPLE_EVENT: INFO BASIC
        d.lose(2, 7, cpu=0)             # FLAGS_EVENT: VERBOSE ADVANCED
        d.lose(3, 11, cpu=os.cpu_count() - 1)   # COMPLEX_EVENT: WARN COMPLEX
        d.lose(SESSION_CREATE_ID, 13)   # INFO, the session keyword
        d.lose(999, 17)                 # no such event in the schema: everyone's
        want = {"info basic": 5 + 17, "verbose all": 5 + 7 + 11 + 13 + 17, "warn complex": 11 + 17}
        assert {name: L.provider_lost(r.subscriptions) for name, r in rings.items()} == want
        assert L.provider_lost() == 5 + 7 + 11 + 13 + 17
        assert all(r.stats().dropped == 0 for r in rings.values())


@pytest.mark.kernel
def test_session_table_full_counts_each_session_not_tracked():
    """``max_sessions`` slots: the next sessions are refused and each is
    counted once (sessions_failed, what -s and the status line show), its
    SESSION_CREATE once among the lost events (the capture's dropped)."""
    from pyelog.providers import test as tp
    L = Loader([tp.provider()], max_sessions=8)
    sub = L.add_ring_subscriber(65536, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
    with L:
        (p,) = L.providers
        d = tp.TestDriver(L, p)
        refused = []
        for sid in range(1, 13):
            try:
                d.create_session(sid)
            except RuntimeError:
                refused.append(sid)
        assert refused == [9, 10, 11, 12]
        assert L.sessions_failed() == 4 and L.provider_stats(p)["sessions_created"] == 8
        # Each refused session was enabled and subscribed to: its
        # SESSION_CREATE is a lost event, in every subscriber's drops.
        assert L.provider_lost() == 4 and sub.stats().dropped == 0
        d.create_session(3)                     # an existing session is no new slot
        d.end_session(1)
        d.create_session(9)                     # a freed slot is used again
        assert L.sessions_failed() == 4 and len(L.sessions(p)) == 8
        assert [h[5] for run in sub.drain(0) for h, _ in iter_records(run)
                if h[6] == SESSION_CREATE_ID] == list(range(1, 9)) + [9]


# A provider that queues through the outbox (bpf/eventlog_outbox.h, as the
# TCP provider does): one run queues a payload of each length in args[0..2]
# on session 1, then the raw-tracepoint drain delivers them.
OUTBOX_PROBE = r"""
int EL_FN(outbox_try)(struct bpf_raw_tracepoint_args *ctx)
{
	__u8 buf[128] = {};
	int created = 0;
	struct eventlog_session *s = eventlog_session_insert(EL_PROVIDER_ID, 1, 1, &created);

	if (!s)
		return 1;
	eventlog_outbox_begin();
#pragma unroll
	for (int i = 0; i < 3; i++) {
		buf[0] = i + 1;
		eventlog_outbox_add(s, 0, EVENTLOG_LEVEL_INFO, 1, buf, (__u32)ctx->args[i]);
	}
	return eventlog_outbox_end_raw_tp(ctx);
}
"""


@pytest.mark.kernel
def test_outbox_counts_a_payload_it_cannot_hold_instead_of_cutting_it():
    """The outbox holds payloads of up to 80 bytes: a longer one is counted
    as lost by its id (the subscriber's drops), never delivered cut short
    (it was: 81 bytes became 80, 200 became 72). The truth is the lengths
    the test asked for."""
    from pyelog.kernel.bpf import prog_test_run
    from pyelog.kernel.loader import ProviderSpec
    from pyelog.resources import bpf_source
    from pyelog.providers import test as tp
    from pyelog.providers.tcp import load_outbox_drains

    spec = ProviderSpec("outbox", OUTBOX_PROBE, header=bpf_source("eventlog_outbox.h"),
                        test_run=["outbox_try"], default_enabled=True,
                        attach=lambda loader, inst: load_outbox_drains(loader),
                        events=tp.schema().event_filters())
    L = Loader([spec])
    sub = L.add_ring_subscriber(65536, [Subscription("outbox", LEVEL_INFO, 0xFFFFFFFF)])
    with L:
        (p,) = L.providers
        prog_test_run(p.progs["outbox_try"], [80, 81, 200])
        recs = [(h[6], bytes(pl)) for run in sub.drain(0) for h, pl in iter_records(run)]
        assert [(eid, len(pl), pl[:1]) for eid, pl in recs if eid == 0] == [(0, 80, b"\x01")]
        assert L.provider_lost(sub.subscriptions) == 2
