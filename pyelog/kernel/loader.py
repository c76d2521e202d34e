# SPDX-License-Identifier: BSD-2-Clause
"""Load the eventlog core and its providers into the kernel; manage subscribers.

One :class:`Loader` is one eventlog "kernel": it compiles (with bcc) a single
BPF object holding the core (``bpf/eventlog.h``), one ring per subscriber
and every registered provider's programs, attaches them, and owns them until
:meth:`Loader.close` (or process death: every attachment is an fd-owned
perf event or BPF link, so a SIGKILLed owner leaves nothing attached;
cgroup attachments go through :func:`attach_cgroup_link`, never through
BPF_PROG_ATTACH).

Typical use (the live CLI)::

    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.providers import test

    loader = Loader(providers=[test.provider()])
    sub = loader.add_ring_subscriber(512 * 1024,
              [Subscription("test", LEVEL_VERBOSE, 0xFFFFFFFF, flags=0)])
    with loader:                          # start(); close() on exit
        writer = ElogWriter(path, sub.providers())
        while not stop:
            for run, n in sub.drain_counted(timeout=1.0):   # wakes per swap or 1 s
                writer.write_records(run, n)
            loader.housekeeping()             # providers' periodic user-space work
        loader.housekeeping(final=True)
        for run, n in sub.drain_counted(): writer.write_records(run, n)   # final drain
        writer.close(dropped_events=sub.stats().dropped)

Subscribers are fixed at :meth:`Loader.start` (each one has its own maps,
sized by its buffer size, compiled into the object); their subscriptions
may change at any time with :meth:`Loader.subscribe` /
:meth:`Loader.unsubscribe`, which rewrite the provider filter table and
bump its generation so that sessions pick the new effective filter up on
their next lookup (see eventlog.h).

Providers (:class:`ProviderSpec`) contribute C text in which
``EL_PROVIDER_ID`` is replaced by the instance's 16-bit id and
``EL_FN(name)`` by ``name_<id>`` (so one spec may be registered several
times: several instances share a name; a subscription by name covers all),
plus the list of hooks to attach. Sessions live in the kernel map
``eventlog_sessions`` and are created/ended by provider programs
(``eventlog_session_create``/``_destroy``).
"""
from __future__ import annotations

import ctypes
import os
import re
import string
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

from pyelog.kernel.bpf import (BPF_CGROUP_INET_EGRESS, BPF_CGROUP_SETSOCKOPT,
                               BPF_FUNC_GET_CURRENT_PID_TGID, BPF_PROG_TYPE_CGROUP_SKB,
                               BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_PROG_TYPE_SOCK_OPS,
                               helpers_allowed, prog_test_run, unavailable_reason)
from pyelog.resources import bpf_source
from pyelog.kernel.ring import (BUFFER_SIZE_DEFAULT, BUFFER_SIZE_MAX, BUFFER_SIZE_MIN, chunk_layout,
                                layout_checks,
                         RingReader, RingStats, iter_records)

from pyelog.records.eventlog import (DUMP_COMPLETE_ID, EVENT_HEADER_SIZE,  # noqa: F401
                                     KEYWORD_SESSION, LEVEL_ERROR, LEVEL_INFO, LEVEL_NONE,
                                     LEVEL_TRACE, LEVEL_VERBOSE, LEVEL_WARN, LEVELS,
                                     MAX_EVENT_LENGTH, PROVIDER_NAME_MAX, SESSION_CREATE_ID,
                                     SESSION_END_ID, SESSION_ID_NONE)
SUBSCRIPTION_DUMP_STATE = 0x1
#: The core's own events: (level, keyword mask), as bpf/eventlog.h emits them.
CORE_EVENTS = {SESSION_CREATE_ID: (LEVEL_INFO, KEYWORD_SESSION),
               SESSION_END_ID: (LEVEL_INFO, KEYWORD_SESSION),
               DUMP_COMPLETE_ID: (LEVEL_INFO, KEYWORD_SESSION)}

#: Provider instance ids the kernel side has room for: 1..63 (the size of
#: the eventlog_providers map, EVENTLOG_MAX_PROVIDERS); a capture file's
#: table holds at most pyelog.records.format.FILE_MAX_PROVIDERS of them.
KERNEL_PROVIDER_IDS = 64
MAX_SUBSCRIBERS = 16
#: Sessions a recorder's table holds unless told otherwise (--max-sessions):
#: a busy server has hundreds of thousands of sockets; each slot is
#: preallocated (about 216 bytes of kernel memory over the session and
#: socket maps), so the limit keeps a typo from locking gigabytes.
MAX_SESSIONS_DEFAULT = 1 << 20
MAX_SESSIONS_LIMIT = 1 << 24
MAX_SUBSCRIPTIONS_PER_NAME = 32

_MARKER = re.compile(r"^/\* @EVENTLOG_SUBSCRIBERS@.*?\*/$", re.M | re.S)


class EventlogError(RuntimeError):
    """A loader operation failed (bad argument, unknown provider, kernel refusal)."""


@dataclass
class Subscription:
    """(provider name, max level, keyword mask, flags) as in elog -c."""
    provider: str
    level: int = LEVEL_VERBOSE
    keywords: int = 0xFFFFFFFF
    flags: int = 0

    def __post_init__(self) -> None:
        if self.flags & ~SUBSCRIPTION_DUMP_STATE:
            raise EventlogError(f"invalid subscription flags {self.flags:#x}")
        if not 0 <= self.level <= LEVEL_TRACE:
            raise EventlogError(f"invalid level {self.level}")
        self.keywords &= 0xFFFFFFFF


def _admits(s: "Subscription | None", level: int, keywords: int) -> bool:
    """Whether subscription ``s`` receives an event of this level and
    keyword mask (eventlog_deliver_all in bpf/eventlog_subscriber.h)."""
    return s is not None and level <= s.level and bool(keywords & s.keywords)


@dataclass
class ProviderSpec:
    """What a provider module hands the loader.

    source: C text (after eventlog.h and ``header``); may use EL_PROVIDER_ID
      and EL_FN(name). header: generated producer header, pasted once per
      provider name. tracepoints / raw_tracepoints: (hook, function base
      name) pairs attached at start. test_run: function base names loaded
      as raw-tracepoint programs and run on demand (BPF_PROG_TEST_RUN).
      attach: optional callable(loader, instance) for other hooks (must
      attach with fd-owned links). dump_state: optional
      callable(loader, instance, subscriber_index) replaying state for a
      new DUMP_STATE subscription (emit with loader.inject(target=...)).
      lost: optional callable(loader) returning how many events the
      provider's own BPF code counted as lost before they reached the core
      without saying which (added to every subscriber's drop count by
      :meth:`Loader.provider_lost`). Events it counts by id with
      eventlog_event_lost() (bpf/eventlog.h) are charged only to the
      subscribers whose subscription admits them, by ``events``: id ->
      (level, keyword mask) of each event the provider emits (an id not
      there is charged to every subscriber of the provider).
      filter_changed: optional callable(loader, instance) run after a
      subscription change rewrote the instance's filter (e.g. to link hooks
      only while some subscription wants their events).
      housekeeping: optional callable(loader, instance, final) for work the
      provider does in user space while events flow (run by
      :meth:`Loader.housekeeping`; final: once more before the last drain).
      session_cache: its hooks find sessions with
      eventlog_session_lookup_cached() (bpf/eventlog.h); only then do its
      session changes move the epochs such a cache checks (an atomic per
      change), and only then does the cache answer.
      session_data: bytes of its own per-session state the provider keeps in
      each session's entry (``eventlog_session.provider_data``): every entry
      of the session map grows to the largest of the loaded providers'
      (preallocated: that many bytes times ``max_sessions``).
    """
    name: str
    source: str
    header: str = ""
    tracepoints: list[tuple[str, str]] = field(default_factory=list)
    raw_tracepoints: list[tuple[str, str]] = field(default_factory=list)
    test_run: list[str] = field(default_factory=list)
    attach: Callable[["Loader", "ProviderInstance"], None] | None = None
    dump_state: Callable[["Loader", "ProviderInstance", int], None] | None = None
    default_enabled: bool = True
    lost: Callable[["Loader"], int] | None = None
    events: dict[int, tuple[int, int]] = field(default_factory=dict)
    filter_changed: Callable[["Loader", "ProviderInstance"], None] | None = None
    housekeeping: Callable[["Loader", "ProviderInstance", bool], None] | None = None
    session_cache: bool = False
    session_data: int = 0

    def __post_init__(self) -> None:
        if not self.name or len(self.name.encode()) > PROVIDER_NAME_MAX:
            raise EventlogError(f"provider name must be 1..{PROVIDER_NAME_MAX} bytes: {self.name!r}")


@dataclass
class KernelSubscriberSpec:
    """An in-kernel subscriber: C that runs at emit time on the events of
    one provider its subscription lets through (FreeBSD's callback
    subscribers; no ring), keeping e.g. counters in maps.

    source: C pasted after the providers, once per instance of
      ``provider`` (EL_FN and EL_PROVIDER_ID as that instance's), defining
      ``EL_FN(function)(const struct eventlog_header *, const void *payload,
      __u32 payload_len)``. read: callable(loader, instance) -> what it
      kept, for user space.
    """
    name: str
    provider: str
    source: str
    function: str
    read: Callable[["Loader", "ProviderInstance"], dict] | None = None


@dataclass
class KernelSubscriber:
    """A kernel subscriber added to a loader: its index and subscription
    (level NONE: off; it costs one comparison per event then)."""
    index: int
    spec: KernelSubscriberSpec
    level: int = LEVEL_NONE
    keywords: int = 0

    def read(self, loader: "Loader") -> dict:
        """What it kept, per instance of its provider: {instance id: ...}."""
        if self.spec.read is None:
            return {}
        return {p.id: self.spec.read(loader, p) for p in loader.providers
                if p.name == self.spec.provider}


@dataclass
class ProviderInstance:
    """A registered provider: its 16-bit id and loaded program fds."""
    id: int
    name: str
    spec: ProviderSpec
    progs: dict[str, int] = field(default_factory=dict)

    def fn(self, base: str) -> str:
        """The compiled name of EL_FN(base) for this instance."""
        return f"{base}_{self.id}"


@dataclass
class CallbackEvent:
    """One record as a callback subscriber receives it: the header's fields,
    the provider's name, the payload bytes. (Not a schema's EVENT: that is
    :class:`pyelog.schema.dsl.Event`.)"""
    length: int
    cpu: int
    provider_id: int
    provider: str
    timestamp: int
    session_id: int
    event_id: int
    thread_id: int
    payload: bytes


class Subscriber:
    """Common part of ring and callback subscribers (one ring each)."""

    def __init__(self, loader: "Loader", index: int, buffer_size: int,
                 chunk_size: int | None = None) -> None:
        self.loader = loader
        self.index = index
        self.buffer_size = buffer_size
        self.chunk_size = chunk_size   # made concrete by Loader._add
        self.chunks = 1
        self.subscriptions: dict[str, Subscription] = {}
        self.reader: RingReader | None = None

    def providers(self) -> list[tuple[int, str]]:
        """(id, name) of every provider instance this subscriber subscribes to
        (the .elog provider table)."""
        return [(p.id, p.name) for p in self.loader.providers if p.name in self.subscriptions]

    def stats(self) -> RingStats:
        """Exact per-subscriber counters (dropped, oversized, swaps, bytes)."""
        if self.reader is None:
            return RingStats()
        return self.reader.stats()

    def drain(self, timeout: float = 0.0, ordered: bool = True) -> Iterator[memoryview]:
        """Runs of whole records (see RingReader.read); waits up to timeout."""
        if self.reader is None:
            raise EventlogError("loader not started")
        return self.reader.read(timeout, ordered)

    def drain_counted(self, timeout: float = 0.0,
                      ordered: bool = True) -> Iterator[tuple[memoryview, int]]:
        """:meth:`drain` yielding ``(run, records in run)`` (RingReader.read_counted):
        pass the count on (``ElogWriter.write_records(run, n)``) instead of
        walking the run to count it."""
        if self.reader is None:
            raise EventlogError("loader not started")
        return self.reader.read_counted(timeout, ordered)


class RingSubscriber(Subscriber):
    """A subscriber whose records are collected as raw bytes (for files)."""


class CallbackSubscriber(Subscriber):
    """A subscriber that calls ``callback(CallbackEvent)`` for every record.

    The callback runs in the thread that calls :meth:`dispatch` (or
    :meth:`Loader.poll`), never in the kernel.
    """

    def __init__(self, loader: "Loader", index: int, buffer_size: int,
                 callback: Callable[[CallbackEvent], None]) -> None:
        super().__init__(loader, index, buffer_size, None)
        self.callback = callback

    def dispatch(self, timeout: float = 0.0) -> int:
        """Drain and decode; returns how many events were delivered."""
        names = {p.id: p.name for p in self.loader.providers}
        n = 0
        for run in self.drain(timeout):
            for hdr, payload in iter_records(run):
                self.callback(CallbackEvent(hdr[0], hdr[1], hdr[2], names.get(hdr[2], "?"),
                                    hdr[4], hdr[5], hdr[6], hdr[7], bytes(payload)))
                n += 1
        return n


# -- the per-subscriber C (bpf/eventlog_subscriber.h, a template) -------------
# Where a reserved logical position lies: always chunk 0 for an unsplit
# buffer (whose size need not be a power of two), else shift and mask.
_LOCATE_ONE = "__u64 chunk = 0, off = pos;"
_LOCATE_SPLIT = "__u64 chunk = pos >> {shift}, off = pos & {mask};"
_PART = re.compile(r"^/\* ---- part: ([a-z ]+) ---- \*/$", re.M)


def _template_parts() -> dict[str, string.Template]:
    """The named parts of bpf/eventlog_subscriber.h."""
    pieces = _PART.split(bpf_source("eventlog_subscriber.h"))
    return {name: string.Template(text) for name, text in zip(pieces[1::2], pieces[2::2])}


def _subscriber_code(layouts: list[tuple[int, int, int]]) -> str:
    """C for subscribers given as (buffer size, chunk size, chunks) each."""
    parts = _template_parts()
    out = []
    for i, (size, chunk, chunks) in enumerate(layouts):
        locate = (_LOCATE_ONE if chunks == 1 else
                  _LOCATE_SPLIT.format(shift=chunk.bit_length() - 1, mask=chunk - 1))
        out.append(parts["subscriber"].substitute(i=i, size=size, chunk=chunk, chunks=chunks,
                                                  locate=locate))
    out.append(parts["deliver"].substitute())
    out += [parts["deliver one"].substitute(i=i) for i in range(len(layouts))]
    out.append(parts["deliver end"].substitute())
    return "".join(out)


_TASK_HELPERS: dict[str, bool] | None = None


def task_helpers() -> dict[str, bool]:
    """``EVENTLOG_TASK_<TYPE>`` -> whether programs of that type may ask
    for the current task (pid/tgid, comm) on this kernel (probed once):
    kernel 6.1 refuses sock_ops ("unknown func"); records of such programs
    carry thread id 0 (eventlog_emit_task())."""
    global _TASK_HELPERS
    if _TASK_HELPERS is None:
        pid_tgid = (BPF_FUNC_GET_CURRENT_PID_TGID,)
        _TASK_HELPERS = {
            "EVENTLOG_TASK_SOCK_OPS": helpers_allowed(BPF_PROG_TYPE_SOCK_OPS, 0, pid_tgid),
            "EVENTLOG_TASK_CGROUP_SOCKOPT": helpers_allowed(BPF_PROG_TYPE_CGROUP_SOCKOPT,
                                                            BPF_CGROUP_SETSOCKOPT, pid_tgid),
            "EVENTLOG_TASK_CGROUP_SKB": helpers_allowed(BPF_PROG_TYPE_CGROUP_SKB,
                                                        BPF_CGROUP_INET_EGRESS, pid_tgid)}
    return _TASK_HELPERS


def _shared_facts_checks() -> str:
    """Compile-time checks that eventlog.h's constants are the ones Python
    uses (pyelog.records.eventlog): the two sides cannot drift apart."""
    facts = {"EVENTLOG_LEVEL_NONE": LEVEL_NONE, "EVENTLOG_LEVEL_ERROR": LEVEL_ERROR,
             "EVENTLOG_LEVEL_WARN": LEVEL_WARN, "EVENTLOG_LEVEL_INFO": LEVEL_INFO,
             "EVENTLOG_LEVEL_VERBOSE": LEVEL_VERBOSE, "EVENTLOG_LEVEL_TRACE": LEVEL_TRACE,
             "EVENTLOG_KEYWORD_SESSION": KEYWORD_SESSION, "EVENTLOG_SESSION_END_ID": SESSION_END_ID,
             "EVENTLOG_SESSION_CREATE_ID": SESSION_CREATE_ID,
             "EVENTLOG_DUMP_COMPLETE_ID": DUMP_COMPLETE_ID, "EVENTLOG_SESSION_ID_NONE": SESSION_ID_NONE,
             "EVENTLOG_HEADER_SIZE": EVENT_HEADER_SIZE, "EVENTLOG_MAX_RECORD": MAX_EVENT_LENGTH,
             "sizeof(struct eventlog_header)": EVENT_HEADER_SIZE}
    return "\n".join(f'_Static_assert({c} == {v}ULL, "{c} differs from pyelog.records.eventlog");'
                     for c, v in facts.items())


def _instantiate(source: str, pid: int) -> str:
    source = re.sub(r"\bEL_FN\((\w+)\)", lambda m: f"{m.group(1)}_{pid}", source)
    return re.sub(r"\bEL_PROVIDER_ID\b", str(pid), source)


class Loader:
    """The eventlog core plus its providers and subscribers, in one BPF object."""

    def __init__(self, providers: Iterable[ProviderSpec] = (), max_sessions: int = 65536,
                 cflags: Iterable[str] = ()) -> None:
        self.providers: list[ProviderInstance] = []
        self.subscribers: list[Subscriber] = []
        self.kernel_subscribers: list[KernelSubscriber] = []
        self.max_sessions = max_sessions
        # Sessions user space could not insert (a provider's dump-state
        # replay), and how many of them would have logged SESSION_CREATE:
        # counted beside BPF's own (session_refused()).
        self._refused = 0
        self._refused_creates = 0
        self.cflags = list(cflags)
        self.bpf = None
        self._links: list[int] = []
        self._inject_fd: int | None = None
        self.ncpu = 0
        for spec in providers:
            self.register(spec)

    # -- configuration (before start) ---------------------------------------
    def register(self, spec: ProviderSpec) -> ProviderInstance:
        """Add a provider instance; returns it with its new id (1-based)."""
        if self.bpf is not None:
            raise EventlogError("providers must be registered before start()")
        pid = len(self.providers) + 1
        if pid >= KERNEL_PROVIDER_IDS:
            raise EventlogError(f"at most {KERNEL_PROVIDER_IDS - 1} provider instances")
        inst = ProviderInstance(pid, spec.name, spec)
        self.providers.append(inst)
        return inst

    def _add(self, sub: Subscriber, subscriptions: Iterable[Subscription]) -> None:
        if self.bpf is not None:
            raise EventlogError("subscribers must be added before start()")
        if not BUFFER_SIZE_MIN <= sub.buffer_size <= BUFFER_SIZE_MAX:
            raise EventlogError(f"buffer size must be {BUFFER_SIZE_MIN}..{BUFFER_SIZE_MAX} bytes")
        try:
            sub.chunk_size, sub.chunks = chunk_layout(sub.buffer_size, sub.chunk_size)
        except ValueError as e:
            raise EventlogError(str(e)) from None
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise EventlogError(f"at most {MAX_SUBSCRIBERS} subscribers")
        self.subscribers.append(sub)
        for s in subscriptions:
            self._check_name(s.provider)
            sub.subscriptions[s.provider] = s

    def add_ring_subscriber(self, buffer_size: int = BUFFER_SIZE_DEFAULT,
                            subscriptions: Iterable[Subscription] = (),
                            chunk_size: int | None = None) -> RingSubscriber:
        """A subscriber with per-CPU double buffers of ``buffer_size`` bytes each.

        ``chunk_size`` splits each buffer into chunks of that many bytes
        (see :func:`pyelog.kernel.ring.chunk_layout`); by default only buffers
        above 256 MiB are split, as the verifier requires. Tests force
        small chunks to exercise records crossing chunk ends.
        """
        sub = RingSubscriber(self, len(self.subscribers), buffer_size, chunk_size)
        self._add(sub, subscriptions)
        return sub

    def add_callback_subscriber(self, callback: Callable[[CallbackEvent], None],
                                subscriptions: Iterable[Subscription] = (),
                                buffer_size: int = BUFFER_SIZE_DEFAULT) -> CallbackSubscriber:
        """A subscriber whose events are decoded and passed to ``callback``."""
        sub = CallbackSubscriber(self, len(self.subscribers), buffer_size, callback)
        self._add(sub, subscriptions)
        return sub

    def add_kernel_subscriber(self, spec: KernelSubscriberSpec, level: int = LEVEL_NONE,
                              keywords: int = 0xFFFFFFFF) -> KernelSubscriber:
        """An in-kernel subscriber (compiled in at start; its subscription
        changes any time with :meth:`subscribe_kernel`)."""
        if self.bpf is not None:
            raise EventlogError("kernel subscribers must be added before start()")
        self._check_name(spec.provider)
        k = KernelSubscriber(len(self.kernel_subscribers), spec, level, keywords & 0xFFFFFFFF)
        self.kernel_subscribers.append(k)
        return k

    def subscribe_kernel(self, k: KernelSubscriber, level: int,
                         keywords: int = 0xFFFFFFFF) -> None:
        """Set a kernel subscriber's subscription (level NONE turns it off)."""
        k.level, k.keywords = level, keywords & 0xFFFFFFFF
        if self.bpf is not None:
            self._filters_changed(k.spec.provider)

    def _check_name(self, name: str) -> list[ProviderInstance]:
        found = [p for p in self.providers if p.name == name]
        if not found:
            raise EventlogError(f"no provider named {name!r} is registered")
        return found[:MAX_SUBSCRIPTIONS_PER_NAME]

    # -- build and load ------------------------------------------------------
    def session_data_size(self) -> int:
        """Bytes of provider state in every session entry: the largest
        ``session_data`` of the providers added, in whole 8-byte words."""
        need = max((p.spec.session_data for p in self.providers), default=0)
        return -(-need // 8) * 8

    def source(self) -> str:
        """The complete C text compiled by start() (for debugging)."""
        from bcc.utils import get_possible_cpus
        self.ncpu = max(get_possible_cpus()) + 1
        core = bpf_source("eventlog.h")
        subs = _subscriber_code([(s.buffer_size, s.chunk_size, s.chunks)
                                 for s in self.subscribers])
        core, n = _MARKER.subn(lambda m: subs, core, count=1)
        if n != 1:
            raise EventlogError("bpf/eventlog.h lost its @EVENTLOG_SUBSCRIBERS@ marker")
        out = [f"#define EVENTLOG_NR_CPUS {self.ncpu}",
               f"#define EVENTLOG_NR_SUBS {len(self.subscribers)}",
               f"#define EVENTLOG_NR_KSUBS {len(self.kernel_subscribers)}",
               *(f"#define {m} 1" for m, ok in task_helpers().items() if ok),
               f"#define EVENTLOG_MAX_PROVIDERS {KERNEL_PROVIDER_IDS}",
               f"#define EVENTLOG_MAX_SESSIONS {self.max_sessions}",
               f"#define EVENTLOG_SESSION_DATA {self.session_data_size()}",
               core, _shared_facts_checks(), layout_checks()]
        seen_headers: set[str] = set()
        for p in self.providers:
            if p.name not in seen_headers and p.spec.header:
                seen_headers.add(p.name)
                out.append(p.spec.header)
        for p in self.providers:
            out.append(f"/* provider {p.name} id {p.id} */")
            out.append(_instantiate(p.spec.source, p.id))
        if self.kernel_subscribers:
            out.append(self._kernel_subscriber_code())
        return "\n".join(out)

    def _kernel_subscriber_code(self) -> str:
        """Each kernel subscriber's C per instance of its provider, then
        eventlog_kernel_deliver() (declared in eventlog.h), which calls them."""
        out, calls = [], []
        for k in self.kernel_subscribers:
            for p in self.providers:
                if p.name == k.spec.provider:
                    out.append(f"/* kernel subscriber {k.spec.name} on {p.name} id {p.id} */")
                    out.append(_instantiate(k.spec.source, p.id))
                    calls.append(f"\tif (hdr->provider_id == {p.id} && level <= f->ksub_level[{k.index}] &&"
                                 f" (keywords & f->ksub_keywords[{k.index}]))\n"
                                 f"\t\t{p.fn(k.spec.function)}(hdr, head, hl);")
        out.append("static __always_inline void\n"
                   "eventlog_kernel_deliver(struct eventlog_provider *f, const struct eventlog_header *hdr,\n"
                   "\t\t\t__u32 level, __u32 keywords, const void *head, __u32 hl)\n{\n"
                   + "\n".join(calls) + "\n}")
        return "\n".join(out)

    def start(self) -> "Loader":
        """Compile, load, write filters, map the rings, attach every hook."""
        if self.bpf is not None:
            return self
        reason = unavailable_reason()
        if reason:
            raise EventlogError(reason)
        from bcc import BPF
        text = self.source()
        try:
            self.bpf = BPF(text=text, cflags=["-Wno-unused-function", *self.cflags])
        except Exception as e:  # bcc raises bare Exception
            raise EventlogError(f"BPF compile/load failed: {e}") from e
        try:
            self._inject_fd = self.bpf.load_func("eventlog_inject", BPF.RAW_TRACEPOINT).fd
            epochs = self.bpf["eventlog_session_epoch"]
            for p in self.providers:
                self._write_filter(p)
                if p.spec.session_cache:     # before any hook can run
                    v = epochs[epochs.Key(p.id)]
                    v.cached = 1
                    epochs[epochs.Key(p.id)] = v
            for sub in self.subscribers:
                sub.reader = RingReader(self.bpf[f"eventlog_buf_{sub.index}"].map_fd,
                                        self.bpf[f"eventlog_state_{sub.index}"].map_fd,
                                        self.bpf[f"eventlog_bell_{sub.index}"].map_fd,
                                        self.ncpu, sub.buffer_size,
                                        chunk_size=sub.chunk_size)
                sub.reader.reset()
            for p in self.providers:
                for name in p.spec.test_run:
                    p.progs[name] = self.bpf.load_func(p.fn(name), BPF.RAW_TRACEPOINT).fd
                for tp, name in p.spec.tracepoints:
                    self.bpf.attach_tracepoint(tp=tp, fn_name=p.fn(name))
                for tp, name in p.spec.raw_tracepoints:
                    self.bpf.attach_raw_tracepoint(tp=tp, fn_name=p.fn(name))
                if p.spec.attach:
                    p.spec.attach(self, p)
            for sub in self.subscribers:
                for s in sub.subscriptions.values():
                    if s.flags & SUBSCRIPTION_DUMP_STATE:
                        self._dump(sub, s.provider)
        except BaseException:
            self.close()
            raise
        return self

    # -- filters ---------------------------------------------------------------
    def _write_filter(self, p: ProviderInstance) -> None:
        table = self.bpf["eventlog_providers"]
        key = table.Key(p.id)
        old = table[key]
        leaf = table.Leaf()
        level = kw = 0
        for sub in self.subscribers:
            s = sub.subscriptions.get(p.name)
            lv, k = (s.level, s.keywords) if s else (0, 0)
            leaf.sub_level[sub.index] = lv
            leaf.sub_keywords[sub.index] = k
            if k and lv:
                level = max(level, lv)
                kw |= k
        for ks in self.kernel_subscribers:
            lv, k = (ks.level, ks.keywords) if ks.spec.provider == p.name else (0, 0)
            leaf.ksub_level[ks.index] = lv
            leaf.ksub_keywords[ks.index] = k
            if k and lv:
                level = max(level, lv)
                kw |= k
        leaf.level = level
        leaf.keywords = kw if level else 0
        leaf.default_enabled = 1 if p.spec.default_enabled else 0
        leaf.generation = (old.generation + 1) & 0xFFFFFFFF or 1
        table[key] = leaf

    def subscribe(self, sub: Subscriber, subscription: Subscription) -> None:
        """Add a subscription, or update it in place (level, keywords)."""
        self._check_name(subscription.provider)
        new = subscription.provider not in sub.subscriptions
        sub.subscriptions[subscription.provider] = subscription
        if self.bpf is not None:
            self._filters_changed(subscription.provider)
            if new and subscription.flags & SUBSCRIPTION_DUMP_STATE:
                self._dump(sub, subscription.provider)

    def unsubscribe(self, sub: Subscriber, provider: str) -> None:
        """Remove a subscription (no-op if absent)."""
        if sub.subscriptions.pop(provider, None) is not None and self.bpf is not None:
            self._filters_changed(provider)

    def _filters_changed(self, name: str) -> None:
        for p in self.providers:
            if p.name == name:
                self._write_filter(p)
                if p.spec.filter_changed:
                    p.spec.filter_changed(self, p)

    def housekeeping(self, final: bool = False) -> None:
        """Let providers do their periodic user-space work (see
        ProviderSpec.housekeeping); call it from the drain loop, and with
        ``final`` before the last drain."""
        if self.bpf is None:
            return
        for p in self.providers:
            if p.spec.housekeeping:
                p.spec.housekeeping(self, p, final)

    def provider_lost(self, subscriptions: Mapping[str, Subscription] | None = None) -> int:
        """Events the providers lost before the core saw them, and the
        SESSION_CREATEs of enabled sessions the session table refused
        (``creates_lost``, see eventlog_session_refused in bpf/eventlog.h).

        With ``subscriptions`` (a subscriber's, by provider name: see
        Subscriber.subscriptions), only those it would have received: the
        events counted by id (eventlog_lost_events) whose level and keywords
        its subscription admits, as delivery would have decided, and refused
        SESSION_CREATEs if it subscribes at INFO or above with the session
        keyword. Exact for a subscriber whose subscriptions did not change
        meanwhile (a host instance's slot: fixed while it is held). Counters
        that do not say which events (ProviderSpec.lost, each distinct one
        read once; creates a dump-state replay could not add) are charged
        to everyone."""
        counters = {p.spec.lost for p in self.providers if p.spec.lost is not None}
        n = sum(lost(self) for lost in counters) + self._refused_creates
        if self.bpf is None:
            return n
        by_id = {p.id: p for p in self.providers}
        admits = (lambda p, level, kw: True) if subscriptions is None else \
            (lambda p, level, kw: _admits(subscriptions.get(p.name), level, kw))
        stats = self.bpf["eventlog_provider_stats"]
        for p in self.providers:
            st = stats[stats.Key(p.id)]
            n += st.lost_other if admits(p, 0, 0xFFFFFFFF) else 0
            n += st.creates_lost if admits(p, LEVEL_INFO, KEYWORD_SESSION) else 0
        for key, per_cpu in self.bpf["eventlog_lost_events"].items():
            p = by_id.get(key.provider_id)
            if p is None:
                continue
            level, kw = CORE_EVENTS.get(key.event_id) or p.spec.events.get(key.event_id, (0, 0xFFFFFFFF))
            if admits(p, level, kw):
                n += sum(int(v) for v in per_cpu)
        return n

    def session_refused(self, enabled: bool) -> None:
        """A session user space tried to add to the kernel's table (a
        dump-state replay) found it full: counted as BPF counts the ones it
        refuses (sessions_failed, and its SESSION_CREATE as lost if enabled)."""
        self._refused += 1
        self._refused_creates += bool(enabled)

    def sessions_changed(self, inst: ProviderInstance) -> None:
        """Call after this process added over, changed or removed sessions
        of ``inst`` in ``eventlog_sessions``: hooks' cached copies of its
        sessions (eventlog_session_lookup_cached in bpf/eventlog.h) are then
        looked up again. This process is the only writer of the user epoch.
        Nothing to do for an instance whose hooks do not cache."""
        if not inst.spec.session_cache:
            return
        t = self.bpf["eventlog_session_epoch"]
        v = t[t.Key(inst.id)]
        v.user += 1
        t[t.Key(inst.id)] = v

    def sessions_failed(self) -> int:
        """Sessions the session table had no room for (``max_sessions``),
        over all providers: their events are not recorded."""
        if self.bpf is None:
            return 0
        t = self.bpf["eventlog_provider_stats"]
        return self._refused + sum(t[t.Key(p.id)].sessions_failed for p in self.providers)

    def open_sessions(self) -> int:
        """Sessions alive in the kernel: created minus ended, over all
        providers (from the counters; listing the map would cost a syscall
        per session)."""
        if self.bpf is None:
            return 0
        t = self.bpf["eventlog_provider_stats"]
        total = 0
        for p in self.providers:
            v = t[t.Key(p.id)]
            total += max(0, v.sessions_created - v.sessions_ended)
        return total

    def provider_filter(self, p: ProviderInstance) -> tuple[int, int]:
        """The provider instance's aggregate (level, keywords)."""
        leaf = self.bpf["eventlog_providers"][self.bpf["eventlog_providers"].Key(p.id)]
        return leaf.level, leaf.keywords

    def provider_stats(self, p: ProviderInstance) -> dict[str, int]:
        """sessions_created / sessions_ended / sessions_failed / sessions_active."""
        t = self.bpf["eventlog_provider_stats"]
        v = t[t.Key(p.id)]
        return {"sessions_created": v.sessions_created, "sessions_ended": v.sessions_ended,
                "sessions_failed": v.sessions_failed,
                "sessions_active": len(self.sessions(p))}

    def sessions(self, p: ProviderInstance | None = None) -> list[dict[str, int]]:
        """Live sessions (optionally of one provider instance), from the kernel map."""
        out = []
        for k, v in self.bpf["eventlog_sessions"].items():
            if p is None or k.provider_id == p.id:
                out.append({"provider_id": k.provider_id, "session_id": k.session_id,
                            "enabled": v.enabled, "effective_level": v.effective_level,
                            "effective_keywords": v.effective_keywords,
                            "created_at": v.created_at})
        return out

    # -- user-space emission -------------------------------------------------
    def inject(self, provider: ProviderInstance, session_id: int, event_id: int,
               level: int, keywords: int, payload: bytes = b"", target: int = -1,
               timestamp: int = 0) -> int:
        """Emit one event from user space through the normal filters.

        target >= 0 delivers to that subscriber only (dump-state replay).
        Returns the number of subscribers that received it.
        """
        buf = ctypes.create_string_buffer(bytes(payload), max(1, len(payload)))
        return prog_test_run(self._inject_fd, [provider.id, session_id, event_id, level,
                                               keywords, ctypes.addressof(buf), len(payload),
                                               target, timestamp])

    def _dump(self, sub: Subscriber, name: str) -> None:
        for p in self._check_name(name):
            if p.spec.dump_state is None:
                continue                # FreeBSD: no callback, no dump, no DUMP_COMPLETE
            p.spec.dump_state(self, p, sub.index)
            self.inject(p, SESSION_ID_NONE, DUMP_COMPLETE_ID, LEVEL_INFO, KEYWORD_SESSION,
                        target=sub.index)

    # -- running -----------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Dispatch every callback subscriber once; returns events delivered."""
        n = 0
        for sub in self.subscribers:
            if isinstance(sub, CallbackSubscriber):
                n += sub.dispatch(timeout if n == 0 else 0.0)
        return n

    def add_link(self, fd: int) -> None:
        """Let the loader own (and close) a BPF link fd."""
        self._links.append(fd)

    def drop_link(self, fd: int) -> None:
        """Detach now: close a link fd added with :meth:`add_link`."""
        self._links.remove(fd)
        os.close(fd)

    def close(self) -> None:
        """Detach everything and unmap the rings. Safe to call twice."""
        for sub in self.subscribers:
            if sub.reader is not None:
                sub.reader.close()
                sub.reader = None
        for fd in self._links:
            try:
                os.close(fd)
            except OSError:
                pass
        self._links.clear()
        if self.bpf is not None:
            try:
                self.bpf.cleanup()
            finally:
                self.bpf = None

    def __enter__(self) -> "Loader":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def parse_level(text: str) -> int:
    """NONE/ERROR/WARN/INFO/VERBOSE/TRACE (any case) or 0..5."""
    t = text.strip().upper()
    if t in LEVELS:
        return LEVELS[t]
    if t.isdigit() and 0 <= int(t) <= 5:
        return int(t)
    raise EventlogError(f"invalid level {text!r}")


__all__ = ["Loader", "ProviderSpec", "ProviderInstance", "Subscription", "Subscriber",
           "KernelSubscriberSpec", "KernelSubscriber",
           "RingSubscriber", "CallbackSubscriber", "CallbackEvent", "EventlogError",
           "parse_level"]
