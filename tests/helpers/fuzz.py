# SPDX-License-Identifier: BSD-2-Clause
"""Hostile input for the fuzz suite (tests/test_fuzz.py): seeds, mutations, the contract.

* :func:`run_tool` runs one pyelog entry point (``main(argv)``) in this
  process, with stdout and stderr captured, and says how it ended: its exit
  status, or the exception that escaped it (a bug: the suite re-raises it so
  that hypothesis reports each distinct one with its own traceback).
* :func:`write_seed_captures` writes valid captures with pyelog's own writer:
  one holding every event of every shipped schema (payloads of the size the
  schema gives, contents from a fixed pseudo-random stream, so the decoders
  and ``summary``/``plot`` see plausible and implausible values alike), one
  with several providers (an unknown one among them).
* Strategies for what a hostile file looks like: :func:`mutated_elog` (byte
  flips and truncations at every structural boundary, record lengths set to
  0/31/odd/huge, provider tables with non-ASCII or unterminated names,
  header counts that lie, gzip-wrapped and broken gzip), :func:`mutated_jsonl`
  (bad UTF-8, deep nesting, out-of-range ids, wrong types, missing keys) and
  :func:`mutated_schema` (dropped and swapped lines, huge numbers, invalid
  UTF-8, line separators other than ``\\n`` inside lines, very long tokens).
* The contract every command keeps (README, pyelog/tools/command.py): a
  failure is exactly one line on stderr and exit status 1, success is 0,
  never a traceback (:func:`check_outcome`); an output that a failed
  command leaves behind still reads back (:func:`check_outputs`).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import re
import struct
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from hypothesis import strategies as st

from pyelog.records.captures import open_capture
from pyelog.records.eventlog import SESSION_CREATE_ID, SESSION_END_ID
from pyelog.records.format import (EVENT_HEADER, FILE_HEADER, PROVIDER_COUNT, PROVIDER_ENTRY,
                                   ElogWriter)
from pyelog.schema.consumer import ConsumerSet

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"

#: The longest stderr line a command may print, not counting the file names
#: it was given (those are the user's; tmp paths are long). Messages quote
#: the offending token; a token of a megabyte must be cut.
MAX_LINE = 400

# --- running a command in this process ---------------------------------------------


@dataclass
class Outcome:
    """How one in-process run ended: ``status`` (None when an exception escaped)."""
    argv: list[str]
    status: int | None
    out: str
    err: str
    exception: BaseException | None = None

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def __str__(self) -> str:
        return (f"argv={self.argv!r} status={self.status!r}\n"
                f"stderr={self.err[:2000]!r}\nstdout[:300]={self.out[:300]!r}")


class _Stream(io.TextIOWrapper):
    """A text stream over memory with a real ``.buffer`` (tools may write bytes)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="surrogateescape",
                         newline="\n", write_through=True)

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


@contextlib.contextmanager
def _captured(functions: Sequence[Callable]) -> Iterator[tuple[_Stream, _Stream]]:
    """Point sys.stdout/sys.stderr at memory, and the ``out=sys.stdout`` /
    ``err=sys.stderr`` defaults that ``functions`` bound at import time too
    (e.g. ``pyelog.cli.read_capture``), so that nothing reaches the terminal."""
    out, err = _Stream(), _Stream()
    old_out, old_err = sys.stdout, sys.stderr
    saved = []
    for f in functions:
        defaults = getattr(f, "__defaults__", None)
        if defaults:
            saved.append((f, defaults))
            f.__defaults__ = tuple(out if d is old_out else err if d is old_err else d
                                   for d in defaults)
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        for f, defaults in saved:
            f.__defaults__ = defaults


@contextlib.contextmanager
def _warnings_as_the_cli_prints_them() -> Iterator[None]:
    """Warnings go to (the captured) stderr, as a ``pyelog`` process prints
    them (pytest would otherwise collect them): each time (so that every
    example sees its own), but not the categories Python ignores by
    default (a ResourceWarning for a file an earlier example leaked would
    land in this one's stderr)."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _no_stdin() -> Iterator[None]:
    """An empty stdin: no generated argument may make a command wait for input."""
    old = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = old


def run_tool(main: Callable[[list[str]], int], argv: Sequence[str],
             rebind: Sequence[Callable] = ()) -> Outcome:
    """Run ``main(argv)`` here, as ``pyelog`` would run it, and say how it ended.

    ``SystemExit`` (argparse's way out) gives its code as the status; any
    other exception escaping ``main`` is kept in ``Outcome.exception``.
    """
    argv = [str(a) for a in argv]
    with _captured(rebind) as (out, err), _no_stdin(), _warnings_as_the_cli_prints_them():
        try:
            status: int | None = main(list(argv))
            exc = None
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):  # what the interpreter would print
                err.write(e.code + "\n")
            exc = None
        except BaseException as e:  # noqa: BLE001 - a bug to report, with its traceback
            status, exc = None, e
    return Outcome(argv, status, out.text(), err.text(), exc)


def check_outcome(o: Outcome, *, info: Sequence[str] = (), usage_status: int | None = None,
                  usage_line: str | None = None, paths: Sequence[object] = ()) -> None:
    """The contract of every pyelog command (README "Errors are one line on
    stderr with exit status 1"; pyelog/tools/command.py).

    * no exception escapes ``main`` (re-raised here, with its own traceback);
    * exit status 0 or 1 (``usage_status`` too, for a parser that documents
      another one for usage errors: argparse's 2, ``pyelog gen``'s 2);
    * no "Traceback" anywhere;
    * on failure stderr is exactly one line, ending in one newline, after
      any lines that match one of the documented ``info`` regexes (e.g.
      ``-p``'s ``[Providers] ...``, gen's warnings); a usage error may
      instead match ``usage_line`` (a regex for argparse's ``error:`` line);
    * no stderr line longer than :data:`MAX_LINE` once the ``paths`` the
      command was given are left out, the ``info`` lines excepted (``-p``
      lists every name of a provider table: up to 32 of 32 bytes, escaped).
    """
    if o.exception is not None:
        raise o.exception
    allowed = {0, 1} | ({usage_status} if usage_status is not None else set())
    assert o.status in allowed, f"exit status {o.status!r} not in {sorted(allowed)}\n{o}"
    assert "Traceback" not in o.err and "Traceback" not in o.out, str(o)
    if o.status == usage_status and usage_line is not None:
        assert re.search(usage_line, o.err, re.M), str(o)
        return
    if o.status != 0:
        assert o.err.endswith("\n") and not o.err.endswith("\n\n"), f"stderr is not whole lines\n{o}"
        lines = o.err.split("\n")[:-1]
        problems = [ln for ln in lines if not any(re.match(p, ln) for p in info)]
        assert len(problems) == 1, f"a failure printed {len(problems)} lines, not one\n{o}"

    def length(line: str) -> int:
        """The line's length with the names the command was given left out."""
        for p in sorted(map(str, paths), key=len, reverse=True):
            if p:
                line = line.replace(p, "F")
        return len(line)
    long = [ln for ln in o.err_lines
            if length(ln) > MAX_LINE and not any(re.match(p, ln) for p in info)]
    assert not long, f"stderr line of {length(long[0])} characters (max {MAX_LINE})\n{o}"


def check_outputs(paths: Sequence[Path], succeeded: bool) -> None:
    """What a reader command leaves behind.

    pyelog's documented behaviour (ElogWriter: "records are written whole,
    so a process killed at any moment leaves a file that reads up to its
    last whole record"; command.py: "whatever the tool wrote before the
    failure stays written") is to keep a partial output. So: after a
    failure each output either does not exist or reads back, header and
    every record, without error; after success each output exists and
    reads back. An empty output (0 bytes, or a .gz of nothing) does not
    read back ("File is empty"): a failure must not leave one; after
    success it is the documented lazy header (ElogWriter: "if no event
    arrives the output stays 0 bytes": nothing was selected). Never a
    ``.partial`` or temporary file beside an output.
    """
    for p in paths:
        leftovers = [q.name for q in p.parent.iterdir()
                     if q.name.startswith((p.name + ".", "." + p.name)) and q.name != p.name]
        assert not leftovers, f"temporary files left beside {p.name}: {leftovers}"
        if p.is_dir():
            for f in sorted(p.iterdir()):
                _reads_back(f)
            continue
        if not p.exists():
            assert not succeeded, f"{p.name}: no output after success"
            continue
        if succeeded and _empty(p):
            continue
        _reads_back(p)


def _empty(p: Path) -> bool:
    """Whether ``p`` holds nothing (a .gz: nothing once decompressed)."""
    if p.name.endswith(".gz"):
        try:
            with gzip.open(p, "rb") as f:
                return not f.read(1)
        except (OSError, EOFError):
            return False
    return p.stat().st_size == 0


def _reads_back(p: Path) -> None:
    """``p`` is a whole capture pyelog reads to the end (or a PNG picture)."""
    if p.suffix == ".png":
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{p.name}: not a PNG"
        return
    try:
        with open_capture(str(p)) as r:
            for _ in r:
                pass
    except Exception as e:  # noqa: BLE001 - the assertion says what broke
        raise AssertionError(f"{p.name} ({p.stat().st_size} bytes) does not read back: "
                             f"{type(e).__name__}: {str(e)[:200]}") from None


class Corpus(dict):
    """Seed inputs by name; shown by their names only in hypothesis's reports."""

    def __repr__(self) -> str:
        return f"Corpus({sorted(self)})"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # hypothesis's pretty printer
        p.text(repr(self))


# --- seed captures ------------------------------------------------------------------

SEED_PROVIDERS = [(1, "tcp"), (2, "test")]


def _schema_events(provider: str) -> list[tuple[int, int | None]]:
    """(event id, fixed payload size or None for varlen) of one shipped schema."""
    consumer = ConsumerSet.default().get(provider)
    assert consumer is not None, provider
    return [(eid, size) for eid, (_n, _l, _k, size) in sorted(consumer.events.items())]


def schema_capture(path: Path, sessions: int = 3, seed: int = 17) -> Path:
    """Every event of the shipped tcp and test schemas, on a few sessions,
    with payloads of the schema's size (varlen: a few sizes) from a fixed
    pseudo-random stream, written by pyelog's own ElogWriter."""
    rng = random.Random(seed)
    ts = 5_000_000
    with ElogWriter(path, SEED_PROVIDERS, start_utc_us=1_700_000_000_000_000) as w:
        for sid in range(4097, 4097 + sessions):
            for pid, provider in SEED_PROVIDERS:
                events = _schema_events(provider)
                ids = [SESSION_CREATE_ID] + [e for e, _ in events
                                             if e not in (SESSION_CREATE_ID, SESSION_END_ID)]
                sizes = dict(events)
                for eid in ids + [SESSION_END_ID]:
                    size = sizes.get(eid)
                    for n in ([size] if size is not None else [0, 9, 40]):
                        ts += rng.randrange(1, 5000)
                        w.write_event(provider_id=pid, timestamp=ts, session_id=sid, event_id=eid,
                                      cpu=rng.randrange(4), thread_id=rng.randrange(1, 1 << 20),
                                      payload=rng.randbytes(n))
        w.close(dropped_events=7)
    return path


def multi_provider_capture(path: Path) -> Path:
    """Several providers, one the shipped schemas do not know, ids out of order."""
    providers = [(9, "tcp"), (3, "test"), (70, "nosuchprovider"), (0xFFFF, "x")]
    with ElogWriter(path, providers, start_utc_us=1) as w:
        for i in range(12):
            pid = providers[i % len(providers)][0]
            w.write_event(provider_id=pid, timestamp=1000 + i, session_id=i % 3,
                          event_id=[0, 100, 101, 1000, SESSION_END_ID][i % 5],
                          payload=bytes(range(i * 3)))
    return path


def write_seed_captures(directory: Path) -> dict[str, Path]:
    """The valid captures mutations start from, by name: made here, never
    taken from the checkout, so that a clean clone (CI) and a working tree
    draw the same examples."""
    directory.mkdir(parents=True, exist_ok=True)
    return {"schema": schema_capture(directory / "schema.elog"),
            "multi": multi_provider_capture(directory / "multi.elog")}


# --- elog(5) layout and mutations ---------------------------------------------------

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class Layout:
    """Where a valid capture's structures start (the boundaries mutations aim at)."""
    entries: tuple[int, ...]     # offsets of the provider entries
    data: int                    # first record
    records: tuple[int, ...]     # offset of each record

    @classmethod
    def of(cls, data: bytes) -> "Layout":
        (count,) = PROVIDER_COUNT.unpack_from(data, FILE_HEADER.size)
        first = FILE_HEADER.size + PROVIDER_COUNT.size
        entries = tuple(first + i * PROVIDER_ENTRY.size for i in range(count))
        off = first + count * PROVIDER_ENTRY.size
        start, records = off, []
        while off + EVENT_HEADER.size <= len(data):
            records.append(off)
            off += _U16.unpack_from(data, off)[0]
        assert off == len(data), "seed captures are whole"
        return cls(entries, start, tuple(records))

    def boundaries(self) -> list[int]:
        """Offsets worth aiming at: header fields, table entries, record
        fields of the first 40 and last 5 records."""
        heads = [0, 4, 8, 16, 24, 32, FILE_HEADER.size]
        recs = [r + d for r in self.records[:40] + self.records[-5:] for d in (0, 2, 4, 8, 16, 24, 28)]
        return sorted(set(heads + list(self.entries) + [e + 2 for e in self.entries]
                          + [self.data] + recs))


#: Provider names a hostile table may hold (32 bytes, packed as is).
BAD_NAMES = [b"tcp\xe9", b"\xff\xfe\xfd", b"A" * 32, b"tcp" + b"x" * 29, b"t\x1b[31mcp",
             b"tc\np", b"", b"tcp\0junk\xff", b"\0" * 32, b"test", b"\x80" * 32]
LENGTHS = [0, 1, 2, 31, 32, 33, 63, 0xFFFF, 0x8000, 0x7FFF]
COUNTS64 = [0, 1, 2**63, 2**64 - 1]


@dataclass(frozen=True)
class Mutant:
    """A hostile input: its bytes, the suffix of the file that holds it, and
    the recipe (seed and mutations) that a failure report shows."""
    suffix: str
    data: bytes
    recipe: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Mutant({self.suffix!r}, {len(self.data)} bytes: {'; '.join(self.recipe)})"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # hypothesis's pretty printer
        p.text(repr(self))


@st.composite
def _elog_mutation(draw, data: bytearray, layout: Layout) -> str:
    """Apply one mutation to ``data`` in place; say what it did."""
    kind = draw(st.sampled_from([
        "flip", "truncate", "length", "name", "count", "entry_id", "header", "version",
        "record_field", "resize", "insert", "delete", "duplicate", "tail"]))
    n = len(data)
    rec = (draw(st.sampled_from(layout.records)) if layout.records and n > layout.data
           else None)
    if rec is not None and rec + EVENT_HEADER.size > n:
        rec = None

    def somewhere() -> int:
        """An offset in ``data``: near a structural boundary, or anywhere."""
        if draw(st.booleans()):
            near = draw(st.sampled_from(layout.boundaries())) + draw(st.integers(-2, 3))
            return max(0, min(n - 1, near))
        return draw(st.integers(0, max(0, n - 1)))

    if kind == "flip" and n:
        at, bits = somewhere(), draw(st.integers(1, 255))
        data[at] ^= bits
        return f"byte {at} ^= {bits:#x}"
    if kind == "truncate":
        at = max(0, somewhere())
        del data[at:]
        return f"truncated at {at}"
    if kind == "length" and rec is not None:
        length = _U16.unpack_from(data, rec)[0]
        new = draw(st.sampled_from(LENGTHS + [length - 1, length + 1, length | 1, length * 2])) & 0xFFFF
        _U16.pack_into(data, rec, new)
        return f"event_length of the record at {rec}: {length} -> {new}"
    if kind == "name" and layout.entries:
        e = draw(st.sampled_from(layout.entries))
        if e + PROVIDER_ENTRY.size <= n:
            name = draw(st.sampled_from(BAD_NAMES) | st.binary(min_size=32, max_size=32))
            data[e + 2:e + PROVIDER_ENTRY.size] = name.ljust(32, b"\0")[:32]
            return f"provider name at {e} = {name!r}"
    if kind == "count" and n >= FILE_HEADER.size + 4:
        have = len(layout.entries)
        new = draw(st.sampled_from([0, have - 1 if have else 0, have + 1, 32, 33, 2**32 - 1]))
        _U32.pack_into(data, FILE_HEADER.size, new)
        return f"provider count {have} -> {new}"
    if kind == "entry_id" and layout.entries:
        e = draw(st.sampled_from(layout.entries))
        if e + 2 <= n:
            new = draw(st.sampled_from([0, 1, 2, 0xFFFF]))
            _U16.pack_into(data, e, new)
            return f"provider id at {e} = {new}"
    if kind == "header" and n >= FILE_HEADER.size:
        field = draw(st.sampled_from([8, 16, 24, 32]))
        records = len(layout.records)
        new = draw(st.sampled_from(COUNTS64 + [max(0, records - 1), records + 1, records * 2]))
        _U64.pack_into(data, field, new)
        name = {8: "capture_start", 16: "start_utc_us", 24: "event_count", 32: "dropped_events"}[field]
        return f"header {name} = {new} ({records} records)"
    if kind == "version" and n >= 8:
        if draw(st.booleans()):
            new = draw(st.sampled_from([0, 2, 0x01000000, 2**32 - 1]))
            _U32.pack_into(data, 4, new)
            return f"version = {new}"
        magic = draw(st.sampled_from([b"GOLE", b"ELOg", b"\0\0\0\0", b"\x1f\x8b\x08\0"]))
        data[0:4] = magic
        return f"magic = {magic!r}"
    if kind == "record_field" and rec is not None:
        field, fmt, values = draw(st.sampled_from([
            (2, _U16, [0, 0xFFFF]),                               # cpu
            (4, _U16, [0, 2, 3, 70, 0xFFFF, 0x1234]),             # provider_id
            (8, _U64, [0, 2**63, 2**64 - 1, 1]),                  # timestamp
            (16, _U64, [0, 2**64 - 1, 4097]),                     # session_id
            (24, _U32, [0, 3, 100, 101, 1000, 1005, 2**32 - 1, 2**32 - 2, 2**32 - 3, 12345]),
            (28, _U32, [0, 2**31, 2**32 - 1]),                    # thread_id
        ]))
        new = draw(st.sampled_from(values))
        fmt.pack_into(data, rec + field, new)
        return f"record at {rec}: field at +{field} = {new}"
    if kind == "resize" and rec is not None:
        length = _U16.unpack_from(data, rec)[0]
        if rec + length <= n and length >= EVENT_HEADER.size:
            payload = bytes(data[rec + EVENT_HEADER.size:rec + length])
            new = draw(st.sampled_from([b"", payload[:1], payload[: len(payload) // 2], payload[:-1],
                                        payload + b"\0", payload + b"\xff" * 64]))
            new = new[:0xFFFF - EVENT_HEADER.size]
            data[rec + EVENT_HEADER.size:rec + length] = new
            _U16.pack_into(data, rec, EVENT_HEADER.size + len(new))
            return f"payload of the record at {rec}: {len(payload)} -> {len(new)} bytes (length kept true)"
    if kind == "insert":
        at = somewhere()
        junk = draw(st.binary(min_size=1, max_size=40) | st.sampled_from([b"\0" * 32, b"\xff" * 32]))
        data[at:at] = junk
        return f"inserted {junk!r} at {at}"
    if kind == "delete" and n:
        at, size = somewhere(), draw(st.integers(1, 64))
        del data[at:at + size]
        return f"deleted {size} bytes at {at}"
    if kind == "duplicate" and rec is not None:
        length = _U16.unpack_from(data, rec)[0]
        if rec + length <= n:
            data[rec:rec] = data[rec:rec + length]
            return f"record at {rec} duplicated"
    if kind == "tail":
        tail = draw(st.sampled_from([b"\0", b"\0" * 31, b"\x20\0" + b"\0" * 30, b"\x1f\0" + bytes(40),
                                     b"\xff\xff" + bytes(30)]))
        data += tail
        return f"appended {tail[:4]!r}... ({len(tail)} bytes)"
    return "unchanged"


@st.composite
def mutated_elog(draw, seeds: dict[str, bytes], gz: bool | None = None) -> Mutant:
    """A seed with one to four mutations, then
    plain (``.elog``) or gzip-wrapped (``.elog.gz``, sometimes with a
    truncated or corrupted gzip stream, or garbage after it). ``gz`` forces
    the wrapping (None: either)."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    layout = Layout.of(seeds[name])
    recipe = [f"seed {name}"]
    for _ in range(draw(st.integers(1, 4))):
        recipe.append(draw(_elog_mutation(data, layout)))
    if gz is None:
        gz = draw(st.booleans())
    if not gz:
        return Mutant(".elog", bytes(data), tuple(recipe))
    packed = bytearray(gzip.compress(bytes(data), mtime=0))
    how = draw(st.sampled_from(["whole", "whole", "cut", "flip", "garbage", "two members"]))
    if how == "cut":
        at = draw(st.integers(0, max(0, len(packed) - 1)))
        del packed[at:]
        how = f"cut at {at}"
    elif how == "flip" and packed:
        at = draw(st.integers(0, len(packed) - 1))
        packed[at] ^= draw(st.integers(1, 255))
        how = f"flipped byte {at}"
    elif how == "garbage":
        packed += draw(st.sampled_from([b"\0", b"garbage", b"\x1f\x8b", b"\x1f\x8b\x08\0" + bytes(8)]))
    elif how == "two members":
        packed += gzip.compress(b"\0" * 40, mtime=0)
    return Mutant(".elog.gz", bytes(packed), (*recipe, f"gzip: {how}"))


# --- JSON lines -----------------------------------------------------------------------

#: Values a hostile JSON capture puts where a field should be.
BAD_VALUES = [None, True, -1, -2**63 - 1, 2**16, 65536, 2**32, 2**64, 2**64 + 1, 1.5, 1e308, "x", "",
              [], {}, [1, 2], "zz", "0", "g0", "ab" * 40000, [[1, "tcp"], [1, "other"]],
              [[70000, "tcp"]], [["a", "b"]], [[1]], [[1, "\u00e9t\u00e9"]], [[1, "x" * 40]],
              [[i, f"p{i}"] for i in range(40)], [[-1, "tcp"]], "\u2028", "\x1b[31m"]
#: Whole lines a hostile JSON capture may hold.
BAD_LINES = [b"", b"{", b"[" * 100000, b"{\"a\":" * 50000, b"null", b"[]", b"{}", b"1e999", b"\"x\"",
             b"{\"elog\": 1}", b"\xff\xfe", b"\xef\xbb\xbf{}", b"\0", b"NaN", b"{\"payload\": \"\"}",
             b"\xc3\x28", b"\xed\xa0\x80", b"   ", b"\r"]


def _line_mutation(draw, kind: str, lines: list[bytes], i: int, recipe: list[str]) -> list[bytes]:
    """Line mutations every text format shares: drop line ``i``, swap it
    with another, or cut the text at a byte; returns the lines."""
    if kind == "drop" and lines:
        del lines[i]
        recipe.append(f"line {i + 1} dropped")
    elif kind == "swap" and len(lines) > 1:
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        recipe.append(f"lines {i + 1} and {j + 1} swapped")
    elif kind == "truncate":
        whole = b"\n".join(lines)
        at = draw(st.integers(0, len(whole)))
        lines = whole[:at].split(b"\n")
        recipe.append(f"truncated at byte {at}")
    return lines


@st.composite
def mutated_jsonl(draw, seeds: dict[str, bytes]) -> Mutant:
    """A JSON capture (``pyelog convert`` of a seed) with one to three mutations."""
    name = draw(st.sampled_from(sorted(seeds)))
    recipe = [f"seed {name}"]
    lines = seeds[name].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "field", "line", "drop", "swap", "bytes", "truncate"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if kind == "field" and lines:
            try:
                obj = json.loads(lines[i])
            except (ValueError, RecursionError):  # a hostile line already
                continue
            if not isinstance(obj, dict) or not obj:
                continue
            key = draw(st.sampled_from(sorted(obj)))
            if draw(st.integers(0, 4)) == 0:
                del obj[key]
                recipe.append(f"line {i + 1}: key {key!r} removed")
            else:
                value = draw(st.sampled_from(BAD_VALUES))
                obj[key] = value
                recipe.append(f"line {i + 1}: {key!r} = {_short(value)}")
            lines[i] = json.dumps(obj).encode()
        elif kind == "line":
            bad_line = draw(st.sampled_from(BAD_LINES))
            lines.insert(i, bad_line)
            recipe.append(f"line {i + 1} inserted: {_short(bad_line)}")
        elif kind in ("drop", "swap", "truncate"):
            lines = _line_mutation(draw, kind, lines, i, recipe)
        elif kind == "bytes" and lines:
            at = draw(st.integers(0, len(lines[i])))
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0", b"\"", b"\\",
                                        b"\xe2\x80\xa8"]))
            lines[i] = lines[i][:at] + bad + lines[i][at:]
            recipe.append(f"line {i + 1}: {bad!r} inserted at column {at}")
    newline = draw(st.booleans())
    return Mutant(".jsonl", b"\n".join(lines) + (b"\n" if newline else b""), tuple(recipe))


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# --- schemas --------------------------------------------------------------------------

#: Characters ``str.splitlines()`` breaks at that are not ``\n`` (UTF-8).
LINE_SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]
HUGE_NUMBERS = ["9" * 5000, "1" * 4301, "0x" + "f" * 5000, "0" + "7" * 5000, "4294967296",
                "18446744073709551616", "-1", "99999999999999999999999", "0", "08", "1e3",
                "\u00b2", "\u0663", "0x", "1" * 4300 + "u"]
#: Control sequences a hostile file holds (all but ``\n``, which ends a line).
CONTROL_BYTES = [b"\x1b[31m", b"\x1b]0;title\x07", b"\x00", b"\x08", b"\x7f", b"\xc2\x9b2J", b"\r"]
SNIPPETS = [b"EVENT X 5 INFO", b"EVENT X 5 INFO CONN SIMPLE_EVENT", b"STRUCT", b"STRUCT S",
            b"    v:uint32_t[count:99999999999]", b"    a:char[0]", b"ENUM e 0:A 0:A",
            b"KEYWORD K 99999", b"KEYWORD", b"FLAG f 0x1:A", b"PROVIDER other", b"PROVIDER",
            b"    \"%s%s%s%s%n\"", b"    \"%99999999d\"", b"    \"%9\"", b"EVENTS Y 6 INFO",
            b"    \"unterminated", b"\t", b"    x:uint33_t", b"EVENT Z 4294967293 INFO CONN"]


@st.composite
def mutated_schema(draw, name: str, source: Corpus, control: bool = False) -> Mutant:
    """A shipped schema file (``name``: its file name, kept, since it must
    match PROVIDER; ``source["text"]``: its bytes) with one to four
    mutations (``control``: zero to three, then a control sequence put
    inside one token, which the error or warning it causes will quote);
    the bytes may no longer be UTF-8."""
    lines = source["text"].split(b"\n")
    recipe = [f"schema {name}"]
    if control:
        i = draw(st.sampled_from([k for k, ln in enumerate(lines) if ln.split()]))
        token = draw(st.sampled_from(lines[i].split()))
        at = draw(st.integers(1, len(token)))
        bad = draw(st.sampled_from(CONTROL_BYTES))
        lines[i] = lines[i].replace(token, token[:at] + bad + token[at:], 1)
        recipe.append(f"line {i + 1}: {bad!r} put inside {_short(token)}")
    for _ in range(draw(st.integers(0 if control else 1, 3 if control else 4))):
        kind = draw(st.sampled_from(["drop", "duplicate", "swap", "token", "number", "insert",
                                     "long", "indent", "snippet", "truncate"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        line = lines[i] if lines else b""
        tokens = line.split()
        where = f"line {i + 1}"
        if kind in ("drop", "swap", "truncate"):
            lines = _line_mutation(draw, kind, lines, i, recipe)
        elif kind == "duplicate" and lines:
            lines.insert(i, line)
            recipe.append(f"{where} duplicated")
        elif kind == "token" and tokens:
            donor = draw(st.sampled_from(lines)).split() or [b""]
            old, new = draw(st.sampled_from(tokens)), draw(st.sampled_from(donor))
            lines[i] = line.replace(old, new, 1)
            recipe.append(f"{where}: {_short(old)} -> {_short(new)}")
        elif kind == "number" and tokens:
            old = draw(st.sampled_from(tokens))
            numeric = re.search(rb"\d+", old)
            new = draw(st.sampled_from(HUGE_NUMBERS)).encode()
            lines[i] = line.replace(old, old[:numeric.start()] + new + old[numeric.end():]
                                    if numeric else new, 1)
            recipe.append(f"{where}: number in {_short(old)} -> {_short(new)}")
        elif kind == "insert" and lines:
            at = draw(st.integers(0, len(line)))
            bad = draw(st.sampled_from(LINE_SEPARATORS).map(str.encode)
                       | st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\0", b"%", b"%n",
                                          b"\"", b"\\", b"\x1b[31m", b"%s", b"%99"]))
            lines[i] = line[:at] + bad + line[at:]
            recipe.append(f"{where}: {bad!r} inserted at column {at}")
        elif kind == "long" and tokens:
            old = draw(st.sampled_from(tokens))
            size = draw(st.sampled_from([301, 5000, 100000]))
            lines[i] = line.replace(old, (old * (size // max(1, len(old)) + 1))[:size], 1)
            recipe.append(f"{where}: {_short(old)} repeated to {size} bytes")
        elif kind == "indent" and lines:
            lines[i] = line.lstrip() if line[:1] in (b" ", b"\t") else b"    " + line
            recipe.append(f"{where}: indentation toggled")
        elif kind == "snippet":
            snippet = draw(st.sampled_from(SNIPPETS))
            lines.insert(i, snippet)
            recipe.append(f"{snippet!r} inserted as {where}")
    return Mutant(name, b"\n".join(lines), tuple(recipe))


def schema_files() -> list[Path]:
    """The shipped schema files (FreeBSD's included)."""
    return sorted(SCHEMAS.rglob("*_eventlog_schema.src"))
