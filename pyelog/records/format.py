# SPDX-License-Identifier: BSD-2-Clause
"""elog(5): the binary capture format, byte for byte.

A capture is three packed little-endian sections with no gaps::

    file header     40 bytes      magic "ELOG", version 1, clock anchor, counts
    provider table  4 + 34*N      count, then (uint16 id, char[32] name) entries
    event stream    to EOF        records: 32-byte header + payload, back to back

The structures are declared once, with ``construct``, below; that declaration
is the specification. The hot paths (walking millions of records) use
``struct.Struct`` formats that are checked against the declarations at import
time, because ``construct`` parses a 32-byte header about 50 times slower.

:class:`ElogReader` streams a capture in constant memory (``.gz`` read
transparently); :class:`ElogWriter` writes one, either whole buffers of
already-encoded records (as the kernel rings hand them over) or single events
built from fields.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import time
import zlib
from typing import BinaryIO, Iterable, Iterator, NamedTuple

import construct as cs

from pyelog.records.eventlog import EVENT_HEADER_SIZE, MAX_EVENT_LENGTH, PROVIDER_NAME_MAX
from pyelog.records.output import PrivateFile
from pyelog.records.untrusted import clip

MAGIC = b"ELOG"
VERSION = 1
#: Entries an elog(5) provider table may hold (a reader refuses more).
FILE_MAX_PROVIDERS = 32

# --- the declarations (elog(5)) --------------------------------------------

FileHeaderStruct = cs.Struct(
    "magic" / cs.Const(MAGIC),
    "version" / cs.Int32ul,
    "capture_start" / cs.Int64ul,    # µs since boot of the first event
    "start_utc_us" / cs.Int64ul,     # wall clock (µs since epoch) at that moment
    "event_count" / cs.Int64ul,      # 0 while capturing, patched at close
    "dropped_events" / cs.Int64ul,   # 0 while capturing, patched at close
)

ProviderEntryStruct = cs.Struct(
    "provider_id" / cs.Int16ul,
    "name" / cs.PaddedString(32, "ascii"),   # NUL-terminated, zero-padded
)

ProviderTableStruct = cs.Struct(
    "count" / cs.Int32ul,
    "entries" / cs.Array(cs.this.count, ProviderEntryStruct),
)

EventHeaderStruct = cs.Struct(
    "event_length" / cs.Int16ul,     # whole record, header included
    "cpu" / cs.Int16ul,
    "provider_id" / cs.Int16ul,
    "reserved" / cs.Int16ul,         # written 0, ignored, copied through
    "timestamp" / cs.Int64ul,        # µs since boot
    "session_id" / cs.Int64ul,
    "event_id" / cs.Int32ul,
    "thread_id" / cs.Int32sl,
)

# --- the same layouts for the hot paths --------------------------------------

FILE_HEADER = struct.Struct("<4sIQQQQ")
PROVIDER_COUNT = struct.Struct("<I")
PROVIDER_ENTRY = struct.Struct("<H32s")
EVENT_HEADER = struct.Struct("<HHHHQQIi")
_LENGTH = struct.Struct("<H")
_TIMESTAMP = struct.Struct("<Q")

assert FILE_HEADER.size == FileHeaderStruct.sizeof() == 40
assert PROVIDER_ENTRY.size == ProviderEntryStruct.sizeof() == 34
assert EVENT_HEADER.size == EventHeaderStruct.sizeof() == EVENT_HEADER_SIZE


class FileHeader(NamedTuple):
    """The 40-byte file header (magic and version are implied)."""
    capture_start: int
    start_utc_us: int
    event_count: int
    dropped_events: int

    def pack(self) -> bytes:
        return FILE_HEADER.pack(MAGIC, VERSION, *self)


class Provider(NamedTuple):
    """One provider-table entry: the id found in event headers and its name."""
    provider_id: int
    name: str


class Record(NamedTuple):
    """One event record: the 32-byte header fields and the payload."""
    event_length: int
    cpu: int
    provider_id: int
    reserved: int
    timestamp: int
    session_id: int
    event_id: int
    thread_id: int
    payload: bytes

    def pack(self) -> bytes:
        return EVENT_HEADER.pack(*self[:8]) + self.payload


class ElogFormatError(Exception):
    """A capture that violates elog(5).

    ``offset`` is the byte offset of the problem (a line number for JSON
    captures); ``path`` the file, filled in by the reader that found it."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.path = path


def utc_us_at(boot_us: int) -> int:
    """The wall clock (UTC µs since the epoch) at ``boot_us``, a time in µs
    since boot as events carry it (Linux: CLOCK_BOOTTIME, which BPF's
    bpf_ktime_get_boot_ns() reads).

    A header's ``start_utc_us`` is the wall clock *at* ``capture_start``, so
    that ``utc = start_utc_us + (timestamp - capture_start)`` holds for every
    event; sampling the wall clock when the first buffer is written instead
    (as FreeBSD's elog does) would make every converted time late by
    however long that buffer waited. Both clocks are read back to back,
    the boot clock on either side, so the pair is off by well under 1 µs.
    """
    b0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    wall = time.time_ns()
    b1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    utc = (wall - (b0 + b1) // 2) // 1000 + boot_us
    # A timestamp no clock can have (a corrupt capture being split) has no
    # wall-clock time: 0, which readers take as "no anchor".
    return utc if 0 <= utc < 1 << 64 else 0


def pack_provider_table(providers: Iterable[tuple[int, str]]) -> bytes:
    """Encode a provider table.

    Names are bytes to elog(5): a name read from a capture (as latin-1, one
    character per byte) is written back as the same bytes, even one that
    fills the 32-byte field without its NUL. A longer name, or one that is
    not one byte per character, raises :class:`ElogFormatError`.
    """
    providers = list(providers)
    if len(providers) > FILE_MAX_PROVIDERS:
        raise ElogFormatError(f"too many providers: {len(providers)} (elog(5) allows {FILE_MAX_PROVIDERS})")
    out = [PROVIDER_COUNT.pack(len(providers))]
    for pid, name in providers:
        try:
            raw = name.encode("latin-1")
        except UnicodeEncodeError:
            raise ElogFormatError(f"provider name {clip(name)!r} is not bytes elog(5) can hold") from None
        if len(raw) > PROVIDER_NAME_MAX + 1:
            raise ElogFormatError(f"provider name too long: {clip(name)!r} "
                                  f"(max {PROVIDER_NAME_MAX} bytes)")
        if not 0 <= pid <= 0xFFFF:
            raise ElogFormatError(f"provider id out of range: {pid}")
        out.append(PROVIDER_ENTRY.pack(pid, raw))
    return b"".join(out)


def pack_event(*, provider_id: int, timestamp: int, session_id: int, event_id: int,
               cpu: int = 0, thread_id: int = 0, payload: bytes = b"", reserved: int = 0) -> bytes:
    """Encode one record from its fields."""
    length = EVENT_HEADER_SIZE + len(payload)
    if length > MAX_EVENT_LENGTH:
        raise ValueError(f"event too large for binary format: {length} bytes (max {MAX_EVENT_LENGTH})")
    return EVENT_HEADER.pack(length, cpu, provider_id, reserved, timestamp,
                             session_id, event_id, thread_id) + payload


def count_records(buf: bytes | memoryview) -> int:
    """Count the whole records in ``buf``, which must hold whole records only."""
    n = 0
    off = 0
    end = len(buf)
    unpack = _LENGTH.unpack_from
    while off < end:
        if end - off < EVENT_HEADER_SIZE:
            raise ValueError(f"partial record header at offset {off} of the buffer")
        (length,) = unpack(buf, off)
        if length < EVENT_HEADER_SIZE:
            raise ValueError(f"invalid event_length {length} at offset {off} of the buffer")
        off += length
        n += 1
    if off != end:
        raise ValueError("buffer ends inside a record")
    return n


def split_point(buf: bytes | memoryview, room: int) -> tuple[int, int]:
    """(bytes, records) of the longest prefix of whole records that fits in ``room``."""
    off = n = 0
    end = len(buf)
    while off < end:
        (length,) = _LENGTH.unpack_from(buf, off)
        if length < EVENT_HEADER_SIZE or off + length > room:
            break
        off += length
        n += 1
    return off, n


def record_of(raw: bytes) -> Record:
    """The :class:`Record` of one whole record's bytes."""
    return tuple.__new__(Record, EVENT_HEADER.unpack_from(raw) + (raw[EVENT_HEADER_SIZE:],))


def iter_records(buf: bytes | memoryview) -> Iterator[Record]:
    """Decode a buffer of whole records (as :meth:`ElogReader.runs` and the rings give them).

    Raises :class:`ElogFormatError` (with the offset in the buffer) at a
    record whose length is below the header's or runs past the buffer."""
    # One copy per buffer (ring buffers are reused once released), then
    # cheap slices per record.
    # Record is built with tuple.__new__: the NamedTuple's own __new__ is a
    # Python-level function and cost half the walk.
    raw = buf if isinstance(buf, bytes) else bytes(buf)
    unpack = EVENT_HEADER.unpack_from
    new = tuple.__new__
    off = 0
    end = len(raw)
    while off < end:
        h = unpack(raw, off)
        length = h[0]
        if length < EVENT_HEADER_SIZE or off + length > end:
            raise ElogFormatError(f"invalid event_length {length} at offset {off} of a buffer "
                                  f"of {end} bytes")
        yield new(Record, h + (raw[off + EVENT_HEADER_SIZE:off + length],))
        off += length


def _open_input(source: str | os.PathLike | BinaryIO) -> tuple[BinaryIO, bool]:
    if hasattr(source, "read"):
        return source, False  # type: ignore[return-value]
    path = os.fspath(source)
    if path.endswith(".gz"):
        return gzip.open(path, "rb"), True
    return open(path, "rb"), True


def _read_exact(f: BinaryIO, n: int) -> bytes:
    chunks = []
    need = n
    while need:
        chunk = f.read(need)
        if not chunk:
            break
        chunks.append(chunk)
        need -= len(chunk)
    return b"".join(chunks)


class CaptureSource:
    """What every capture reader offers: ``header``, ``providers``, records by iteration."""

    header: FileHeader
    providers: list[Provider]
    _f: BinaryIO
    _owned: bool
    name: str | None

    @property
    def provider_names(self) -> dict[int, str]:
        """provider_id → name; the first entry wins, like elog's linear search."""
        names: dict[int, str] = {}
        for p in self.providers:
            names.setdefault(p.provider_id, p.name)
        return names

    def close(self) -> None:
        if self._owned:
            self._f.close()

    records_read: int | None = None     # by a reader that counts (elog(5) files)
    end_offset: int | None = None

    def check_complete(self) -> None:
        """After reading to the end: raise :class:`ElogFormatError` when the
        header promises more records than the file held (a record length
        corrupted in mid-file reads like a truncated tail). A header count
        of 0 is an unfinished capture and promises nothing."""
        want = self.header.event_count
        if self.records_read is None or not want or self.records_read >= want:
            return
        where = f" at byte offset {self.end_offset}" if self.end_offset is not None else ""
        raise self._located(ElogFormatError(
            f"the header says {want} events, the file holds {self.records_read}: "
            f"the records stop{where}", self.end_offset))

    def _located(self, e: ElogFormatError) -> ElogFormatError:
        """``e`` with this capture's name, so that the one line a tool
        prints says which of its inputs is at fault."""
        if e.path is None:
            e.path = self.name
        return e

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ElogReader(CaptureSource):
    """Stream a capture: header and provider table up front, then records.

    ``ElogReader(path)`` opens the file (gzip when the name ends in ``.gz``,
    as elog(1) does) and validates the header and table at once, raising
    :class:`ElogFormatError` with elog(1)'s messages. Iterating yields
    :class:`Record` objects in file order while holding at most one chunk in
    memory. A truncated final record (an interrupted capture) ends the
    iteration quietly; its size is left in :attr:`truncated_bytes`. An
    ``event_length`` below 32 raises :class:`ElogFormatError` naming the
    byte offset, after every record before it has been yielded.
    """

    CHUNK = 1 << 20

    def __init__(self, source: str | os.PathLike | BinaryIO):
        self._f, self._owned = _open_input(source)
        self.name = getattr(source, "name", None) if hasattr(source, "read") else os.fspath(source)
        self.truncated_bytes = 0
        self.records_read = 0
        try:
            self._read_preamble()
        except EOFError as e:  # gzip stream cut short
            self.close()
            raise self._located(ElogFormatError(f"Unexpected end of compressed file: {e}", 0)) from None
        except (gzip.BadGzipFile, zlib.error) as e:
            self.close()
            raise self._located(ElogFormatError(f"corrupt compressed data: {e}", 0)) from None
        except ElogFormatError as e:
            self.close()
            raise self._located(e)

    def _read_preamble(self) -> None:
        raw = _read_exact(self._f, FILE_HEADER.size)
        if not raw:
            raise ElogFormatError("File is empty", 0)
        if len(raw) < FILE_HEADER.size:
            raise ElogFormatError(
                f"Unexpected end of file (read {len(raw)} of {FILE_HEADER.size} bytes)", len(raw))
        magic, version, *fields = FILE_HEADER.unpack(raw)
        if magic != MAGIC:
            raise ElogFormatError("Invalid binary file: bad magic number", 0)
        if version != VERSION:
            raise ElogFormatError(f"Unsupported file version: {version} (expected {VERSION})", 4)
        self.header = FileHeader(*fields)

        off = FILE_HEADER.size
        raw = _read_exact(self._f, PROVIDER_COUNT.size)
        if len(raw) < PROVIDER_COUNT.size:
            raise ElogFormatError(
                f"Unexpected end of file (read {len(raw)} of {PROVIDER_COUNT.size} bytes of the provider count)",
                off + len(raw))
        (count,) = PROVIDER_COUNT.unpack(raw)
        if count > FILE_MAX_PROVIDERS:
            raise ElogFormatError(f"Invalid provider count {count} in file", off)
        off += PROVIDER_COUNT.size
        want = count * PROVIDER_ENTRY.size
        raw = _read_exact(self._f, want)
        if len(raw) < want:
            raise ElogFormatError(
                f"Unexpected end of file (read {len(raw)} of {want} bytes of the provider table)",
                off + len(raw))
        self.providers = [
            Provider(pid, name.split(b"\0", 1)[0].decode("latin-1"))
            for pid, name in PROVIDER_ENTRY.iter_unpack(raw)
        ]
        self.data_offset = off + want

    def _chunks(self, consumed: _Consumed) -> Iterator[tuple[bytes, int]]:
        """Yield ``(buf, file offset of buf)``; before asking for the next,
        the caller sets ``consumed.n`` to how many bytes of ``buf`` were
        whole records, and the rest is carried into the next chunk."""
        f = self._f
        read = getattr(f, "read1", f.read)
        pending = b""
        pos = self.data_offset
        while True:
            try:
                # read1: a gzip stream cut short raises EOFError from the
                # call that finds no more input; read() would drop what it
                # had already decompressed in that call.
                chunk = read(self.CHUNK)
            except EOFError:  # gzip stream cut short: what was decoded stands
                chunk = b""
            except (gzip.BadGzipFile, zlib.error) as e:
                raise self._located(
                    ElogFormatError(f"corrupt compressed data: {e}", pos + len(pending))) from None
            if not chunk:
                self.truncated_bytes = len(pending)
                self.end_offset = pos
                return
            buf = pending + chunk if pending else chunk
            consumed.n = 0
            yield buf, pos
            pos += consumed.n
            pending = buf[consumed.n:]

    def _bad_length(self, length: int, offset: int) -> ElogFormatError:
        return self._located(
            ElogFormatError(f"invalid event_length {length} at offset {offset}", offset))

    def runs(self) -> Iterator[tuple[memoryview, int, int]]:
        """Yield ``(buffer, count, offset)``: runs of whole records, in order.

        This is the per-buffer path for copying records without decoding them
        (rewrite, split, merge). ``offset`` is the file offset of the run.
        """
        consumed = _Consumed()
        for buf, pos in self._chunks(consumed):
            n, off, bad = _walk(buf)
            if bad >= 0:
                self.records_read += n
                if n:
                    yield memoryview(buf)[:off], n, pos
                raise self._bad_length(_LENGTH.unpack_from(buf, bad)[0], pos + bad)
            consumed.n = off
            self.records_read += n
            if n:
                yield memoryview(buf)[:off], n, pos

    def __iter__(self) -> Iterator[Record]:
        # One pass over each chunk, records sliced straight from it (the hot
        # path of -r, convert, summary); runs() + iter_records() would walk twice.
        unpack = EVENT_HEADER.unpack_from
        new = tuple.__new__
        consumed = _Consumed()
        for buf, pos in self._chunks(consumed):
            end = len(buf)
            off = 0
            n = 0           # counted per chunk: an attribute per record costs 5 %
            while end - off >= EVENT_HEADER_SIZE:
                h = unpack(buf, off)
                nxt = off + h[0]
                if h[0] < EVENT_HEADER_SIZE:
                    self.records_read += n
                    raise self._bad_length(h[0], pos + off)
                if nxt > end:
                    break
                n += 1
                yield new(Record, h + (buf[off + EVENT_HEADER_SIZE:nxt],))
                off = nxt
            self.records_read += n
            consumed.n = off


def _walk_python(buf: bytes) -> tuple[int, int, int]:
    """``(count, end, bad)`` of the whole records at the start of ``buf``
    (``bad``: offset of a record shorter than its header, else -1); the
    C extension's ``walk`` does the same per chunk without a Python step
    per record."""
    unpack = _LENGTH.unpack_from
    end = len(buf)
    off = n = 0
    while end - off >= EVENT_HEADER_SIZE:
        (length,) = unpack(buf, off)
        if length < EVENT_HEADER_SIZE:
            return n, off, off
        if off + length > end:
            break
        off += length
        n += 1
    return n, off, -1


try:
    from pyelog.records._records import walk as _walk
except ImportError:                 # the extension not built: the same in Python
    _walk = _walk_python


class _Consumed:
    """How much of the chunk :meth:`ElogReader._chunks` handed out last was
    whole records (the walker's answer; the rest starts the next chunk)."""
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class WriteFailed(OSError):
    """The output refused a write (disk full, EIO, a closed pipe).

    ``lost`` is how many records of this call (with those still buffered)
    are not in the file; :attr:`ElogWriter.lost_events` keeps the total."""

    def __init__(self, error: OSError, path: str | None, lost: int):
        super().__init__(error.errno, error.strerror, path)
        self.lost = lost


class ElogWriter:
    """Write a capture.

    The header and provider table are written lazily, with the first event
    (as elog(1) does): ``capture_start`` is that event's timestamp and
    ``start_utc_us`` the wall clock at that timestamp (:func:`utc_us_at`),
    unless given explicitly (when a
    capture is rewritten and its anchor must be kept). If no event arrives
    the output stays 0 bytes.

    A path is created private (:mod:`pyelog.records.output`: 0600, never
    through a planted link); ``publish="close"`` keeps it under a temporary
    name until :meth:`close` succeeds (:meth:`abort` removes it). Records are
    buffered in whole records and written with ``write(2)``: when the output
    fails (a full disk) the file is cut back to its last whole record,
    :class:`WriteFailed` says how many records were lost, and every later
    write is refused and counted in :attr:`lost_events`; the header counts
    only :attr:`stored_events`, and the caller says what it lost in
    ``dropped_events``. :meth:`flush` can also patch the header's counts (a
    killed recorder's header is as true as its last flush); :meth:`close`
    patches the final ones.
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, providers: Iterable[tuple[int, str]],
                 *, capture_start: int | None = None, start_utc_us: int | None = None,
                 publish: str = "open", buffer_size: int = 256 << 10):
        self._publish = publish
        self._buffer_size = buffer_size
        self.providers = [Provider(*p) for p in providers]
        try:
            self._table = pack_provider_table(self.providers)
        except ElogFormatError as e:
            e.path = getattr(target, "name", None) if hasattr(target, "write") else os.fspath(target)
            raise
        self._gzip_path: str | None = None
        self._stream: BinaryIO | None = None
        self._out = None
        if hasattr(target, "write"):
            self._stream = target  # type: ignore[assignment]
            self.path = getattr(target, "name", None)
        else:
            self.path = os.fspath(target)
            plain = self.path
            if plain.endswith(".gz"):
                # gzip cannot seek back to patch the counts: write plain
                # beside it and compress at close.
                self._gzip_path = plain
                plain = plain + ".partial"
            self._out = PrivateFile(plain, publish=publish)
        self._capture_start = capture_start
        self._start_utc_us = start_utc_us
        self.started = False
        self._pending = bytearray()
        self._pending_count = 0
        self._stored = 0            # records in the file
        self._stored_bytes = 0
        self.bytes_written = 0
        self.lost_events = 0
        self.failure: OSError | None = None
        self.closed = False

    def _start(self, first_timestamp: int) -> None:
        if self._capture_start is None:
            self._capture_start = first_timestamp
        if self._start_utc_us is None:
            self._start_utc_us = utc_us_at(self._capture_start)
        head = FileHeader(self._capture_start, self._start_utc_us, 0, 0).pack() + self._table
        self._pending += head
        self.bytes_written += len(head)
        self.started = True

    @property
    def header(self) -> FileHeader | None:
        """The header as it stands (counts as of now), or None before the first event."""
        if not self.started:
            return None
        return FileHeader(self._capture_start, self._start_utc_us, self.event_count, 0)

    @property
    def event_count(self) -> int:
        """Records accepted and not lost: stored, or buffered to be."""
        return self._stored + self._pending_count

    @property
    def stored_events(self) -> int:
        """Records the output has taken (buffered ones not yet)."""
        return self._stored

    def write_records(self, buf: bytes | memoryview, count: int | None = None) -> int:
        """Write whole, already-encoded records as they are; return how many.

        ``count`` saves walking the buffer when the caller knows it (the ring
        reader does). Without it the record lengths are checked and counted.
        Raises :class:`WriteFailed` when the output fails (now or before).
        """
        if not len(buf):
            return 0
        if count is None:
            count = count_records(buf)
        if self.failure is not None:
            self.lost_events += count
            raise WriteFailed(self.failure, self.path, count)
        if not self.started:
            (ts,) = _TIMESTAMP.unpack_from(buf, 8)
            self._start(ts)
        self._pending += buf
        self._pending_count += count
        self.bytes_written += len(buf)
        if len(self._pending) >= self._buffer_size:
            self._write_pending()
        return count

    def write_record(self, record: Record) -> None:
        """Write one decoded record back (header fields copied through)."""
        self.write_records(record.pack(), 1)

    def write_event(self, **fields) -> None:
        """Write one event built from fields (see :func:`pack_event`)."""
        self.write_records(pack_event(**fields), 1)

    def _write_pending(self) -> None:
        """Hand the buffered records to the output, or fail whole-record clean."""
        if not self._pending:
            return
        data = memoryview(self._pending)
        done = 0
        try:
            if self._stream is not None:
                self._stream.write(data)
                done = len(data)
            else:
                while done < len(data):
                    done += os.write(self._out.fd, data[done:])
        except OSError as e:
            kept_bytes, kept = self._whole_prefix(data, done)
            if self._out is not None and self._out.seekable and done > kept_bytes:
                try:       # no part of a record stays in the file
                    os.ftruncate(self._out.fd, self._stored_bytes + kept_bytes)
                except OSError:
                    pass
            self._stored += kept
            self._stored_bytes += kept_bytes
            lost = self._pending_count - kept
            self.lost_events += lost
            self.failure = e
            data.release()
            self._pending = bytearray()
            self._pending_count = 0
            raise WriteFailed(e, self.path, lost) from None
        data.release()
        self._stored += self._pending_count
        self._stored_bytes += len(self._pending)
        self._pending = bytearray()
        self._pending_count = 0

    def _whole_prefix(self, data: memoryview, done: int) -> tuple[int, int]:
        """(bytes, records) of the buffered data that reached the output
        whole, when a write stopped after ``done`` bytes."""
        start = 0 if self._stored_bytes else FILE_HEADER.size + len(self._table)
        if done < start:
            return 0, 0
        nbytes, n = split_point(data[start:], done - start)
        return start + nbytes, n

    def _patch_header(self, dropped_events: int, event_count: int | None = None) -> None:
        if not (self.started and self._stored_bytes):
            return
        count = self._stored if event_count is None else event_count
        head = FileHeader(self._capture_start, self._start_utc_us, count, dropped_events).pack()
        if self._out is not None:
            if self._out.seekable:
                os.pwrite(self._out.fd, head, 0)   # no new blocks: works on a full disk
        elif self._seekable():
            self._stream.seek(0)
            self._stream.write(head)
            self._stream.seek(0, io.SEEK_END)

    def flush(self, dropped_events: int | None = None) -> None:
        """Write what is buffered; with ``dropped_events``, also patch the
        header's counts as they stand. Raises :class:`WriteFailed`."""
        if self.failure is not None:
            return
        self._write_pending()
        if dropped_events is not None:
            self._patch_header(dropped_events)
        if self._stream is not None:
            self._stream.flush()

    def close(self, dropped_events: int = 0, event_count: int | None = None) -> None:
        """Write what is buffered, patch the final counts into the header
        and close the output.

        ``event_count`` overrides the number of records written (a converted
        capture keeps its original header). Raises :class:`WriteFailed` when
        the last write fails; the header is patched all the same.
        """
        if self.closed:
            return
        self.closed = True
        failed: WriteFailed | None = None
        try:
            try:
                if self.failure is None:
                    self._write_pending()
            except WriteFailed as e:
                failed = e
            if self.failure is not None:
                event_count = None          # the file holds only what it holds
            try:
                self._patch_header(dropped_events, event_count)
                if self._stream is not None:
                    self._stream.flush()
            except OSError as e:
                if failed is None and self.failure is None:
                    self.failure = e
                    failed = WriteFailed(e, self.path, 0)
        finally:
            if self._out is not None:
                self._finish_file(failed is None and self.failure is None)
        if failed is not None:
            raise failed

    def _finish_file(self, ok: bool) -> None:
        out = self._out
        if self._gzip_path is None:
            out.close()
            if ok:
                out.commit()
            else:
                out.discard()
            return
        try:
            if not ok:
                out.discard()      # a live capture's .partial stays: it reads
                return
            gz = PrivateFile(self._gzip_path, publish=self._publish)
            try:
                with open(out.fd, "rb", closefd=False) as src, \
                        open(gz.fd, "wb", closefd=False) as raw, \
                        gzip.GzipFile(fileobj=raw, mode="wb") as dst:
                    src.seek(0)
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            except OSError as e:
                gz.close()
                gz.discard()
                self.failure = e
                raise WriteFailed(e, self._gzip_path, 0) from None
            gz.close()
            gz.commit()
            out.remove()
        finally:
            out.close()

    def abort(self) -> None:
        """Close without keeping the output (a failed conversion): a
        ``publish="close"`` file is removed, an already published one kept."""
        if self.closed:
            return
        self.closed = True
        self._pending = bytearray()
        if self._out is not None:
            self._out.close()
            self._out.discard()

    def _seekable(self) -> bool:
        try:
            return self._stream.seekable()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> "ElogWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._publish == "close":
            self.abort()
        else:
            self.close()
