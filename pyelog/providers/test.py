# SPDX-License-Identifier: BSD-2-Clause
"""The test provider: test-schema events emitted on demand (ktest model).

``provider()`` returns the spec; :class:`TestDriver` drives one registered
instance from Python: create/end sessions and emit N events of a chosen kind
with consecutive sequence numbers, here or on a chosen CPU, via
BPF_PROG_TEST_RUN of ``test_ctl`` (see bpf/test_provider.bpf.c), or arm the
``syscalls:sys_enter_getppid`` hook for this process.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from typing import Callable

from pyelog.kernel.bpf import prog_test_run
from pyelog.kernel.loader import Loader, ProviderInstance, ProviderSpec
from pyelog.records.eventlog import KEYWORD_SESSION, LEVEL_INFO, SESSION_CREATE_ID
from pyelog.resources import bpf_source, schema_dir
from pyelog.schema.dsl import Schema, load_schema

SCHEMA = schema_dir() / "test_eventlog_schema.src"
SOURCE = "test_provider.bpf.c"          # in bpf/ (pyelog.resources)

# What test_ctl does (args[0]) and which event kind it emits (args[3]):
# handed to the C as TEST_OP_* / TEST_EV_* (_defines()), so both sides
# use these values.
OP_CREATE, OP_EMIT, OP_END, OP_ENABLE, OP_FILTER, OP_LOSE = 1, 2, 3, 4, 5, 6
SIMPLE, STATUS, FLAGS, COMPLEX, VARLEN = 0, 1, 2, 3, 4
RAW, GATHER = 100, 101
# Events per test_ctl run at most (the C shrinks its batch as subscribers
# grow and says how many it did: the driver calls again for the rest).
BATCH_MAX = 32

KW_BASIC, KW_ADVANCED, KW_COMPLEX = 0x1, 0x2, 0x8


def _defines() -> str:
    ops = {"CREATE": OP_CREATE, "EMIT": OP_EMIT, "END": OP_END, "ENABLE": OP_ENABLE,
           "FILTER": OP_FILTER, "LOSE": OP_LOSE}
    kinds = {"SIMPLE": SIMPLE, "STATUS": STATUS, "FLAGS": FLAGS, "COMPLEX": COMPLEX,
             "VARLEN": VARLEN, "RAW": RAW, "GATHER": GATHER}
    return "\n".join([*(f"#define TEST_OP_{k} {v}" for k, v in ops.items()),
                      *(f"#define TEST_EV_{k} {v}" for k, v in kinds.items()),
                      f"#define TEST_BATCH_LIMIT {BATCH_MAX}"])


@functools.cache
def schema() -> Schema:
    """The test schema (parsed once)."""
    return load_schema(SCHEMA)


def producer_header() -> str:
    """The producer header generated from the test schema."""
    from pyelog.schema.codegen import generate_producer
    return generate_producer(schema())


def _dump_sessions(loader: Loader, inst: ProviderInstance, target: int) -> None:
    # Dump-state replay: one SESSION_CREATE per live enabled session, to the
    # requesting subscriber only.
    for s in loader.sessions(inst):
        if s["enabled"]:
            loader.inject(inst, s["session_id"], SESSION_CREATE_ID, LEVEL_INFO,
                          KEYWORD_SESSION, target=target, timestamp=s["created_at"])


def provider(name: str = "test", default_enabled: bool = True,
             getppid_hook: bool = False) -> ProviderSpec:
    """A test-provider spec (register it several times for same-name instances)."""
    return ProviderSpec(
        name=name, source=bpf_source(SOURCE), header=_defines() + "\n" + producer_header(),
        tracepoints=[("syscalls:sys_enter_getppid", "on_getppid")] if getppid_hook else [],
        test_run=["test_ctl"], dump_state=_dump_sessions, default_enabled=default_enabled,
        events=schema().event_filters(), session_cache=getppid_hook)


class TestDriver:
    """Drive one test-provider instance of a started loader."""
    __test__ = False  # not a pytest class

    def __init__(self, loader: Loader, inst: ProviderInstance) -> None:
        self.loader = loader
        self.inst = inst
        self.fd = inst.progs["test_ctl"]

    def _run(self, args: list[int], cpu: int | None = None) -> int:
        return prog_test_run(self.fd, args, cpu)

    def create_session(self, sid: int, cpu: int | None = None) -> None:
        if self._run([OP_CREATE, sid], cpu) != 0:
            raise RuntimeError(f"session {sid} not created")

    def end_session(self, sid: int, cpu: int | None = None) -> None:
        if self._run([OP_END, sid], cpu) != 0:
            raise RuntimeError(f"session {sid} not found")

    def set_enabled(self, sid: int, on: bool) -> None:
        self._run([OP_ENABLE, sid, int(on)])

    def set_filter(self, sid: int, level: int, keywords: int) -> None:
        self._run([OP_FILTER, sid, level, keywords])

    def lose(self, event_id: int, count: int = 1, cpu: int | None = None) -> None:
        """Count ``count`` events of ``event_id`` as lost before the core
        (eventlog_event_lost, as a provider whose outbox is full does),
        here or on CPU ``cpu``."""
        self._run([OP_LOSE, 0, event_id, count], cpu)

    def emit(self, sid: int, kind: int = SIMPLE, count: int = 1, seq: int = 0,
             gated: bool = False, size: int = 0, cpu: int | None = None) -> int:
        """Emit ``count`` events (seq, seq+1, ...); returns how many were attempted.

        gated: go through the generated _LOG macro (session enablement).
        size: payload bytes for RAW/GATHER, element count for VARLEN.
        cpu: run on that CPU from an IPI (hard-irq context); None = here.
        """
        done = 0
        while done < count:
            n = min(BATCH_MAX, count - done)
            r = self._run([OP_EMIT, sid, kind, n, seq + done, int(gated), size], cpu)
            if r < 0:
                raise RuntimeError(f"emit failed ({r}): no session {sid}?")
            done += r
        return done

    def emit_racing(self, cpus: dict[int, int], kind: int, seconds: float,
                    consume: Callable[[], None]) -> dict[int, int]:
        """Race writers on several CPUs against a reader: one thread per
        session (``cpus``: session id -> CPU, sessions created already),
        pinned to its CPU, emits ``kind`` events numbered 0, 1, ... as fast
        as it can for ``seconds`` while this thread calls ``consume()``,
        which then runs twice more to take what is left (both buffers).

        Returns how many events each session's writer emitted: what the
        reader's records plus the ring's drop count must add up to.
        """
        stop = threading.Event()
        counts: dict[int, int] = {}

        def produce(sid: int, cpu: int) -> None:
            os.sched_setaffinity(0, {cpu})
            seq = 0
            while not stop.is_set():
                seq += self.emit(sid, kind, 32, seq)
            counts[sid] = seq

        threads = [threading.Thread(target=produce, args=item) for item in cpus.items()]
        for t in threads:
            t.start()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                consume()
        finally:
            stop.set()
            for t in threads:
                t.join()
        consume()
        consume()
        return counts

    def arm_getppid(self, sid: int, seq: int = 0, tgid: int | None = None) -> None:
        """Make every getppid() of this process emit one SIMPLE_EVENT (seq++)."""
        t = self.loader.bpf[f"tp_cfg_{self.inst.id}"]
        v = t.Leaf()
        v.tgid = os.getpid() if tgid is None else tgid
        v.session_id = sid
        v.seq = seq
        t[t.Key(0)] = v

    def disarm_getppid(self) -> int:
        """Stop the hook; returns the next sequence number it would have used."""
        t = self.loader.bpf[f"tp_cfg_{self.inst.id}"]
        v = t[t.Key(0)]
        nxt = v.seq
        v.tgid = 0
        t[t.Key(0)] = v
        return nxt
