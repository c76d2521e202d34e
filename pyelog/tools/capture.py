# SPDX-License-Identifier: BSD-2-Clause
"""Live capture: elog(1)'s main loop on top of the loader.

Subscribe as ``-c`` asks, then until SIGINT, SIGTERM or ``--duration``:
drain the ring (woken per buffer swap or once a second, never per event)
and hand every run of whole records to the output: a capture file
(``-o FILE``, rotating with ``--rotate-size``/``--rotate-time``),
per-session files (``-o dir=PATH``), elog text or JSON lines on stdout.
On the way out the last buffers are drained, the file header gets the event
and drop counts, and every probe is detached (the loader's links and perf
fds die with the process even on SIGKILL).

Everything that can go wrong before the first event -- not root, no bcc, a
kernel that lacks something, a compiler or verifier refusal -- ends as one
:class:`CaptureError` line; bcc's own compiler/verifier output is kept in a
log file named in that line instead of flooding the terminal.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import os
import signal
import sys
import tempfile
import time
from typing import IO, Callable, Iterator, Protocol

from pyelog.records.output import make_private_dir
from pyelog.records.format import EVENT_HEADER, ElogWriter, FileHeader, Provider, iter_records, utc_us_at
from pyelog.kernel.loader import (MAX_SESSIONS_DEFAULT, SUBSCRIPTION_DUMP_STATE, EventlogError, Loader,
                                  ProviderSpec, Subscription)
from pyelog.kernel.bpf import unavailable_reason
from pyelog.providers import registry
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.command import ToolError, os_errors_as
from pyelog.tools.persession import PerSessionWriter
from pyelog.tools.rotate import RotatingWriter
from pyelog.tools.status import StatusLine, wanted
from pyelog.records.text import TextOptions, TextPrinter


class CaptureError(ToolError):
    """Why a live capture cannot run: one line for the user, exit status 1."""


class CaptureOptions(Protocol):
    """What a live capture is asked (``pyelog.cli.Options`` is one)."""
    subscriptions: list[Subscription]
    buffer_size: int
    duration: int                       # seconds; 0: until SIGINT/SIGTERM
    dump_state: bool
    output: str | None                  # -o FILE
    output_dir: str | None              # -o dir=PATH
    format_tcp: bool                    # -f tcp
    rotate_size: int | None
    rotate_time: int | None
    max_files: int | None
    max_sessions: int
    json: bool
    stats: bool
    providers: bool                     # -p
    no_status: bool
    schemas: list[str]                  # --schema / --schema-dir, for text and JSON
    text: TextOptions
    tcp_default_enabled: bool
    tcp_filters: dict[str, list]        # flag name -> values
    instance: str                       # the host instance: auto / shared / private
    nice: int | None                    # --nice; None: READER_NICE where permitted


def provider_factories(o: CaptureOptions | None = None) -> dict[str, Callable[[], ProviderSpec]]:
    """The providers a live capture can subscribe to, by name (the
    registry of :mod:`pyelog.providers`), the TCP provider configured by
    the options' ``--tcp-default`` and TCP filter flags."""
    if o is None:
        return registry()
    return registry(o.tcp_default_enabled, tcp_filter(o))


def tcp_filter(o: CaptureOptions):
    """The TcpFilter for ``--port/--lport/--rport/--addr/--netns/--cgroup/--pid/--comm``."""
    from pyelog.providers.tcp import TcpFilter
    return TcpFilter.from_flags(o.tcp_filters)


_HINTS = [
    ("kernel headers", "kernel headers are missing: run `make setup` (linux-headers-$(uname -r))"),
    ("Unable to find kernel", "kernel headers are missing: run `make setup` (linux-headers-$(uname -r))"),
    ("Operation not permitted", "the kernel refused to load eBPF (root without CAP_BPF/CAP_SYS_ADMIN, "
                                "a container, or kernel.unprivileged_bpf/lockdown settings)"),
]


def _first_error(log: str) -> str | None:
    """The line of bcc's output that says what went wrong."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:                      # clang
            return line
    for i, line in enumerate(lines):
        if line.startswith("processed ") and "insns" in line and i:
            return "verifier: " + lines[i - 1]   # the verifier's complaint precedes its tally
    return None


@contextlib.contextmanager
def kernel_load_errors() -> Iterator[None]:
    """Turn anything bcc raises while compiling, loading or attaching into a CaptureError.

    bcc raises bare ``Exception`` (compile failure, ``load_func`` refused by
    the verifier, attach failure) after printing pages of clang or verifier
    output straight to file descriptor 2. That output goes to a log file for
    the duration; on failure the error names it, on success it is deleted.
    """
    # Unnamed until needed: a recorder killed mid-compile leaves nothing behind.
    log = tempfile.TemporaryFile()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            restored = True
    try:
        yield
    except CaptureError:
        restore()
        raise
    except Exception as e:  # bcc's own exceptions are bare Exception
        restore()
        if isinstance(e, EventlogError) and e.__cause__ is None:
            # The loader's own refusals (bad argument, missing cgroup2, ...) are
            # already one clear line.
            raise CaptureError(str(e)) from None
        if isinstance(e, EventlogError):
            e = e.__cause__
        log.seek(0)
        text = log.read().decode(errors="replace")
        what = (str(e).strip().splitlines() or [type(e).__name__])[0]
        detail = _first_error(text)
        hint = next((h for key, h in _HINTS if key in what or key in text), None)
        msg = f"cannot load the eBPF programs into this kernel: {what}"
        if detail and detail not in what:
            msg += f" ({detail})"
        if hint:
            msg += f"; {hint}"
        if text.strip():
            with tempfile.NamedTemporaryFile("w", prefix="pyelog-load-", suffix=".log",
                                             delete=False) as kept:
                kept.write(text)
            msg += f"; bcc output in {kept.name}"
        msg += "; `pyelog selftest` checks what this kernel offers"
        raise CaptureError(msg) from None
    finally:
        restore()
        log.close()


class _Stop:
    """Set by SIGINT/SIGTERM/--duration; the loop notices within a second."""

    def __init__(self) -> None:
        self.flag = False

    def __call__(self, signum, frame) -> None:
        self.flag = True


class Sink(Protocol):
    """Where drained runs of records go.

    A sink whose output fails raises OSError (``WriteFailed`` for capture
    files); ``stored_events`` is what its outputs hold by then, so the
    capture can count exactly what it could not store.
    """

    bytes_written: int

    @property
    def stored_events(self) -> int: ...

    def write_run(self, run: memoryview, count: int) -> int: ...

    def tick(self) -> None: ...

    def flush(self) -> None: ...

    def close(self, dropped: int) -> None: ...


class _WriterSink:
    """What the two file sinks share: a writer that counts its bytes and
    the records its outputs took."""

    writer: ElogWriter | RotatingWriter | PerSessionWriter

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    @property
    def stored_events(self) -> int:
        return self.writer.stored_events

    def flush(self) -> None:
        self.writer.flush()


class FileSink(_WriterSink):
    """``-o FILE``: one capture, or a rotating series of them."""

    def __init__(self, o: CaptureOptions, providers: list[Provider], dropped: Callable[[], int]):
        self._dropped = dropped
        with os_errors_as(f"fopen({o.output})"):
            if o.rotate_size or o.rotate_time:
                self.writer = RotatingWriter(o.output, providers, max_bytes=o.rotate_size,
                                             max_seconds=o.rotate_time, max_files=o.max_files,
                                             dropped=dropped)
            else:
                self.writer = ElogWriter(o.output, providers)

    def write_run(self, run: memoryview, count: int) -> int:
        # The ring counted the records: no per-record Python here.
        return self.writer.write_records(run, count)

    def tick(self) -> None:
        # Records reach the file once per wake-up, and the header's counts
        # with them: a SIGKILL loses at most the last second, and what is
        # there reads to its last whole record under a header that was true
        # a second before.
        self.writer.flush(self._dropped())
        if isinstance(self.writer, RotatingWriter):
            self.writer.tick()

    def close(self, dropped: int) -> None:
        self.writer.close(dropped_events=dropped)


class SessionSink(_WriterSink):
    """``-o dir=PATH``: one capture per session."""

    def __init__(self, o: CaptureOptions, providers: list[Provider]):
        # The schemas' name tables first: their errors are not mkdir's.
        tcp = ConsumerSet.with_extra(o.schemas).get("tcp") if o.format_tcp else None
        with os_errors_as(f"mkdir({o.output_dir})"):
            self.writer = PerSessionWriter(o.output_dir, providers, tcp_names=tcp)

    def write_run(self, run: memoryview, count: int) -> int:
        n = 0
        for rec in iter_records(run):
            self.writer.write_record(rec)
            n += 1
        return n

    def tick(self) -> None:
        self.writer.flush()

    def close(self, dropped: int) -> None:
        self.writer.close()


class LineSink:
    """Text (elog(1) lines) or JSON lines on stdout, as events arrive."""

    def __init__(self, o: CaptureOptions, providers: list[Provider], out: IO[str]):
        names = {p.provider_id: p.name for p in providers}
        decoder = ConsumerSet.with_extra(o.schemas)
        self.out = out
        self.providers = providers
        self.json = o.json
        self.bytes_written = 0
        self.stored_events = 0
        if o.json:
            from pyelog.records.jsonl import JsonEventFormatter
            self.printer = JsonEventFormatter(names, decoder)
        else:
            self.printer = TextPrinter(names, decoder, o.text)
        self._started = False

    def write_run(self, run: memoryview, count: int) -> int:
        if not count:
            return 0
        # Per run, not per record: the C printer's lines (records/_records.c).
        pieces: Iterator[str] = self.printer.run_lines(run, count)
        if self.json and not self._started:
            # The header line a JSON capture starts with, anchored like an
            # .elog header (first event, wall clock now); counts stay 0 as
            # in a capture that was never closed, so the stream converts.
            from pyelog.records.jsonl import header_line
            first = EVENT_HEADER.unpack_from(run)[4]
            head = header_line(FileHeader(first, utc_us_at(first), 0, 0), self.providers) + "\n"
            pieces = itertools.chain([head], pieces)
        self._started = True
        for piece in pieces:
            self.out.write(piece)
            self.bytes_written += len(piece)
        self.out.flush()
        self.stored_events += count
        return count

    def tick(self) -> None:
        pass

    def flush(self) -> None:
        self.out.flush()

    def close(self, dropped: int) -> None:
        self.out.flush()


class PrivateRecorder:
    """A capture's own instance (no host instance, or one it cannot share):
    this process compiles and attaches the core and its providers, with
    one ring subscriber, as pyelog always has. The same methods as
    :class:`pyelog.kernel.host.HostSubscriber`, which the loop below also runs on."""

    def __init__(self, o: CaptureOptions, factories: dict[str, Callable[[], ProviderSpec]]) -> None:
        self.loader = Loader(providers=[factories[name]() for name in
                                        dict.fromkeys(s.provider for s in o.subscriptions)],
                             max_sessions=o.max_sessions)
        flags = SUBSCRIPTION_DUMP_STATE if o.dump_state else 0
        self.sub = self.loader.add_ring_subscriber(o.buffer_size, [
            Subscription(s.provider, s.level, s.keywords, flags) for s in o.subscriptions])
        self.providers = self.sub.providers
        self.drain_counted = self.sub.drain_counted
        self.housekeeping = self.loader.housekeeping
        self.provider_lost = lambda: self.loader.provider_lost(self.sub.subscriptions)
        self.sessions_failed = self.loader.sessions_failed
        self.open_sessions = self.loader.open_sessions

    def start(self) -> None:
        with kernel_load_errors():
            self.loader.start()

    def stats(self):
        return self.sub.stats()

    def attached(self) -> bool:
        return self.sub.reader is not None

    def check(self) -> None:
        """Nothing to check: this process owns its instance."""

    def close(self) -> None:
        self.loader.close()

    def __enter__(self) -> "PrivateRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_sink(o: CaptureOptions, providers: list[Provider], dropped: Callable[[], int],
               out: IO[str]) -> "Sink":
    if o.output_dir:
        return SessionSink(o, providers)
    if o.output:
        return FileSink(o, providers, dropped)
    return LineSink(o, providers, out)


def _check_output(o: CaptureOptions) -> None:
    """Fail now on an output that could not be created (a missing or
    unwritable directory), in the words opening it would use."""
    if o.output_dir:
        with os_errors_as(f"mkdir({o.output_dir})"):
            make_private_dir(o.output_dir)
    elif o.output:
        d = os.path.dirname(o.output) or "."
        with os_errors_as(f"fopen({o.output})"):
            if not os.path.isdir(d):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), o.output)
            if not os.access(d, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), o.output)


#: The nice value a capture drains its rings at unless --nice says otherwise.
#: With every CPU busy, a reader at the default nice waits for the next
#: tick (4 ms at HZ=250) to preempt the work it records, longer than two
#: 512 KiB buffers last at 5 M events/s per CPU: 6-13 % dropped in the
#: recorder benchmark against 0-0.6 % at -10 (README Performance). auditd
#: boosts its reader for the same reason (priority_boost).
READER_NICE = -10


def reader_nice(requested: int | None) -> int | None:
    """The nice value to drain at, or None to keep the current one.

    ``requested`` None: :data:`READER_NICE` if that raises the priority and
    the process may take it (root, CAP_SYS_NICE, RLIMIT_NICE), else None.
    An explicit value the process may not take is a :class:`CaptureError`
    now, before anything starts. Only probed here (set and set back): the
    host instance a capture may start should not inherit it.
    """
    now = os.getpriority(os.PRIO_PROCESS, 0)
    target = READER_NICE if requested is None else requested
    if target == now or (requested is None and target > now):
        return None
    if target > now:
        return target                   # a lower priority is always allowed
    try:
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except PermissionError:
        if requested is None:
            return None
        raise CaptureError(f"--nice {requested}: permission denied (a nice value below the current "
                           f"{now} needs root or CAP_SYS_NICE)") from None
    os.setpriority(os.PRIO_PROCESS, 0, now)   # back to a higher value: always allowed
    return target


@contextlib.contextmanager
def draining_at(nice: int | None) -> Iterator[None]:
    """Run the block at ``nice`` (a value from :func:`reader_nice`; None:
    unchanged), then restore the caller's (Linux: per thread)."""
    if nice is None:
        yield
        return
    old = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        yield
    finally:
        # Back from a higher value (--nice 5) needs the privilege a
        # non-root process lacks: it then stays at the lower priority.
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, old)


def _quietly(count: Callable[[], int]) -> int | None:
    """A status-line figure, or None: the status line is a nicety and never
    ends a capture."""
    try:
        return count()
    except Exception:
        return None


def _host_instance_runs() -> bool:
    from pyelog.kernel.host import HostError, status
    try:
        return status() is not None
    except (HostError, OSError):
        return False


def shares_host_instance(o: CaptureOptions) -> str | None:
    """Why this capture cannot use the host instance (its providers run
    with their defaults), or None if it can."""
    if any(o.tcp_filters.values()):
        return "TCP filter flags"
    if not o.tcp_default_enabled:
        return "--tcp-default none"
    if o.max_sessions != MAX_SESSIONS_DEFAULT:
        return "--max-sessions"
    return None


#: How long a recorder waits for the host instance it started to listen
#: (it compiles first: seconds here, a minute on an emulated machine).
SPAWN_WAIT = 300.0


def _recorder(o: CaptureOptions, factories, err: IO[str]):
    """The host instance's subscriber when the capture can share one: the
    running instance, or one this capture starts (detached, with the
    providers it subscribes to) so that later recorders can join it.
    Otherwise, or with ``--private``, a private instance."""
    # Only a private instance, or starting the host instance, needs root
    # and BPF: the host instance's subscribers may be anyone its socket admits.
    reason = unavailable_reason()
    why = None
    if o.instance != "private":
        why = shares_host_instance(o)
        if why and o.instance == "shared":
            raise CaptureError(f"--shared: the host instance runs its providers with their defaults; "
                               f"{why} need a private instance (leave --shared out)")
        from pyelog.kernel.host import HostMismatch, HostStartFailed, HostSubscriber
        if why is None:
            flags = SUBSCRIPTION_DUMP_STATE if o.dump_state else 0
            names = list(dict.fromkeys(s.provider for s in o.subscriptions))
            spawn = [sys.executable, "-m", "pyelog.cli", "host", "serve", "--spawned",
                     "-b", str(o.buffer_size)] + [a for n in names for a in ("--provider", n)]
            try:
                rec = HostSubscriber.attach(
                    [Subscription(s.provider, s.level, s.keywords, flags) for s in o.subscriptions],
                    o.buffer_size, start=reason is None, spawn=spawn, wait=SPAWN_WAIT,
                    strict=o.instance == "shared")
            except HostMismatch as e:
                why, rec = str(e), None
            except HostStartFailed as e:
                if o.instance == "shared":
                    raise
                # The private instance below says why in detail (or works).
                print(f"pyelog: note: {e}; this capture runs its own instance", file=err)
                rec = None
            if rec is not None:
                return rec
        if why is not None and _host_instance_runs():
            # Say so: this capture's hooks run beside the instance's.
            print(f"pyelog: note: not using the host instance ({why}): this capture runs its "
                  "own instance (--private says so quietly)", file=err)
    if reason:
        raise CaptureError(reason)
    with kernel_load_errors():
        return PrivateRecorder(o, factories)


def run_capture(o: CaptureOptions, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    """Run a live capture for parsed elog options (see pyelog.cli.Options)."""
    factories = provider_factories(o)
    for s in o.subscriptions:
        if s.provider not in factories:
            known = ", ".join(sorted(factories))
            raise CaptureError(f"provider {s.provider!r} not found (available: {known})")
    # As elog opens -o while parsing, a bad path fails at once: before a
    # host instance is started for this capture (the slow compile), whose
    # provider ids the capture's file header needs, so the output itself
    # is opened only once attached.
    _check_output(o)
    nice = reader_nice(o.nice)
    rec = _recorder(o, factories, err)
    providers = [Provider(*p) for p in rec.providers()]

    def dropped() -> int:
        # Ring drops plus events a provider lost before its ring (the TCP
        # outbox): both are events this capture should hold and does not.
        if not rec.attached():
            return 0
        return rec.stats().dropped + rec.provider_lost()

    # Opened before a private instance's (slow) compile.
    sink: Sink
    try:
        sink = _open_sink(o, providers, dropped, out)
    except BaseException:
        rec.close()
        raise
    # Status only where it cannot mix with the events: a terminal on stderr
    # while the events go to a file (or stdout is not that terminal).
    status = None
    if wanted(err) and not o.no_status and (o.output or o.output_dir or not wanted(out)):
        status = StatusLine(err, lambda: _quietly(rec.open_sessions), untracked=rec.sessions_failed)

    stop = _Stop()
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    received = 0
    failure: OSError | None = None      # the output's first failure ends the capture
    ended: EventlogError | None = None  # the host instance went away

    def store(run: memoryview, n: int) -> None:
        nonlocal received, failure
        received += n
        if failure is None:
            try:
                sink.write_run(run, n)
            except OSError as e:
                failure = e

    stats = None
    provider_lost = not_stored = untracked = lost = 0
    try:
        try:
            rec.start()
        except BaseException:
            sink.close(0)
            rec.close()
            raise
        with rec, draining_at(nice):
            deadline = time.monotonic() + o.duration if o.duration else None
            if o.providers:
                print(f"[Providers] {len(providers)} registered: "
                      + " ".join(p.name for p in providers), file=err)
            try:
                while not stop.flag and failure is None and ended is None:
                    wait = 1.0
                    if deadline is not None:
                        wait = deadline - time.monotonic()
                        if wait <= 0:
                            break
                        wait = min(wait, 1.0)
                    for run, n in rec.drain_counted(timeout=wait):
                        store(run, n)
                    rec.housekeeping()
                    try:
                        rec.check()
                    except EventlogError as e:
                        ended = e
                    if failure is None:
                        try:
                            sink.tick()
                        except OSError as e:
                            failure = e
                    if status:
                        status.update(received, dropped(), sink.bytes_written)
                rec.housekeeping(final=True)     # e.g. handshakes still in progress
                # What is left after the stop; after a failure, only counted.
                for run, n in rec.drain_counted(timeout=0):
                    store(run, n)
                stats = rec.stats()
                provider_lost = rec.provider_lost()
                untracked = rec.sessions_failed()
            finally:
                if failure is None:
                    try:
                        sink.flush()
                    except OSError as e:
                        failure = e
                # Whatever was received and is not in the output is lost,
                # and counted with the ring's drops.
                not_stored = received - sink.stored_events
                lost = (stats.dropped + provider_lost if stats else dropped()) + not_stored
                try:
                    sink.close(lost)
                except OSError as e:
                    failure = failure or e
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if status:
            status.clear()
    if o.stats:
        print(f"\n[Stats]\n  Providers: {len(providers)}\n  Events received: {received}", file=err)
        if lost:
            print(f"  Dropped events: {lost}", file=err)
        if provider_lost:
            print(f"    of which lost in providers before the ring: {provider_lost}", file=err)
        if not_stored:
            print(f"    of which not stored (the output failed): {not_stored}", file=err)
        if stats.oversized:
            print(f"  Oversized events discarded: {stats.oversized}", file=err)
        if untracked:
            print(f"  Sessions not tracked (table full, see --max-sessions): {untracked}", file=err)
    if isinstance(failure, BrokenPipeError):
        raise failure       # the reader went away: a quiet end (run_reporting)
    if failure is not None:
        where = failure.filename or o.output or o.output_dir or "stdout"
        raise CaptureError(f"{where}: {failure.strerror or failure}: {not_stored} events "
                           f"received were not stored; the output holds {received - not_stored}")
    if ended is not None:
        raise CaptureError(f"{ended}; the output holds the {received - not_stored} events received")
    return 0
