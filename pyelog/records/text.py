# SPDX-License-Identifier: BSD-2-Clause
"""elog(1)'s text line, exactly.

One line per event::

    <num><rel><delta>[<cpu>]<tid>::<time> [<provider>][<session>]<[NAME]> <payload>

``<num>`` is ``%-8llu `` (``-n``), ``<rel>`` ``+S.UUUUUU `` since the first
event printed (``-t``), ``<delta>`` ``dS.UUUUUU `` since the previous one
(``--delta-time``); ``[%2u]`` CPU, ``%04x`` thread id, then the time: UTC
``HH:MM:SS.uuuuuu`` (``YYYY-MM-DD `` prefixed with ``-d``) when the capture
has a wall-clock anchor, otherwise time since boot ``HH:MM:SS.uuuuuu`` with
unwrapped hours (live mode). ``[NAME]`` appears with ``-e``.

Payload text comes from a :class:`PayloadDecoder`: the schema consumers
(``pyelog.schema.consumer.ConsumerSet``) or :class:`RawPayloads`, which shows the
bytes in hex, clearly marked, for captures whose schema is not at hand.

Departure from elog(1): elog builds lines in fixed 1024/2048-byte buffers and
truncates longer payload text; pyelog prints the whole text.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from pyelog.records.eventlog import SESSION_END_ID
from pyelog.records.format import Record, iter_records, record_of
from pyelog.records.untrusted import terminal_safe

try:
    from pyelog.records import _records       # the C printer (pyelog/records/_records.c)
except ImportError:                           # not built: every line from Python
    _records = None

_EPOCH = _dt.datetime(1970, 1, 1)


class PayloadDecoder(Protocol):
    """What the printer needs from a schema: event names and payload text.

    A decoder may also offer ``formatter(provider, event_id)``, returning
    a payload -> text function for that event (or None), which the printer
    then calls directly for every such event instead of going through
    ``format_payload`` (the schema consumers do: their generated per-event
    function).
    """

    def event_name(self, provider: str, event_id: int) -> str | None: ...

    def format_payload(self, provider: str, event_id: int, payload: bytes) -> str: ...


class RawPayloads:
    """Decoder of last resort: no names, payload bytes in hex, marked ``[RAW n]``."""

    def event_name(self, provider: str, event_id: int) -> str | None:
        return "SESSION_END" if event_id == SESSION_END_ID else None

    def format_payload(self, provider: str, event_id: int, payload: bytes) -> str:
        return f"[RAW {len(payload)}] {payload.hex()}" if payload else "[RAW 0]"


@dataclass
class TextOptions:
    """elog(1)'s display switches."""
    event_names: bool = False     # -e
    numbers: bool = False         # -n
    relative: bool = False        # -t
    delta: bool = False           # --delta-time
    date: bool = False            # -d (only with a UTC anchor)


def _seconds(us: int) -> str:
    sign = "-" if us < 0 else ""
    us = abs(us)
    return f"{sign}{us // 1_000_000}.{us % 1_000_000:06d}"


class EventKinds(dict):
    """What a formatter prepares once per kind of event, by
    ``provider_id << 32 | event_id``: built by ``make(provider_id,
    event_id)`` on first sight. Bounded, as a corrupt capture can name any
    number of kinds; past the bound entries are built per record."""

    LIMIT = 65536

    def __init__(self, make: Callable[[int, int], Any]):
        super().__init__()
        self._make = make

    def __missing__(self, key: int):
        entry = self._make(key >> 32, key & 0xFFFFFFFF)
        if len(self) < self.LIMIT:
            self[key] = entry
        return entry


class TextPrinter:
    """Turns records into elog(1) lines; keeps the state ``-n/-t/--delta-time`` need.

    ``utc_anchor`` is ``(capture_start, start_utc_us)`` from a file header;
    None (or a zero ``start_utc_us``) prints time since boot, as live mode does.

    Per line the work is one f-string: the ``[provider][``, ``][NAME]`` parts
    and the payload formatter are looked up once per (provider id, event id),
    ``[cpu]tid::`` once per (cpu, thread), the ``HH:MM:SS.`` prefix once per
    second of capture time. Options are
    read when the printer is made.
    """

    def __init__(self, provider_names: dict[int, str], decoder: PayloadDecoder,
                 options: TextOptions | None = None, utc_anchor: tuple[int, int] | None = None):
        self.provider_names = provider_names
        self.decoder = decoder
        self.options = options or TextOptions()
        self.utc_anchor = utc_anchor if utc_anchor and utc_anchor[1] else None
        self._count = 0
        self._first: int | None = None
        self._prev: int | None = None
        o = self.options
        self._plain = not (o.numbers or o.relative or o.delta)
        # utc = ts + offset; the cached text is that of second _sec.
        self._offset = self.utc_anchor[1] - self.utc_anchor[0] if self.utc_anchor else 0
        self._sec: int | None = None
        self._sec_text: str | None = None
        self._events = EventKinds(self._event)
        self._fast: EventKinds | None = None      # kinds for the C printer, made on first use
        self._cpu_tid: dict[int, str] = {}     # "[cpu]tid::" by (cpu << 33) + tid

    def _second_text(self, sec: int) -> str | None:
        """``HH:MM:SS.`` (``YYYY-MM-DD HH:MM:SS.`` with -d) of one second; None if out of range."""
        if self.utc_anchor is None:
            return f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}."
        try:
            t = _EPOCH + _dt.timedelta(seconds=sec)
        except OverflowError:
            return None
        return f"{t:%Y-%m-%d %H:%M:%S}." if self.options.date else f"{t:%H:%M:%S}."

    def timestamp_text(self, ts: int) -> str:
        utc = ts + self._offset
        sec, us = divmod(utc, 1_000_000)
        if sec != self._sec:
            self._sec_text = self._second_text(sec)
            self._sec = sec
        pre = self._sec_text
        if pre is None:
            return f"<utc {utc}>"
        return f"{pre}{us:06d}"

    def _event(self, provider_id: int, event_id: int) -> tuple[str, str, object]:
        """(`` [provider][``, ``]`` or ``][NAME]``, payload -> text) of one event kind."""
        provider = self.provider_names.get(provider_id, "?")
        close = "]"
        if self.options.event_names:
            if event_id == SESSION_END_ID:
                name = "SESSION_END"
            else:
                name = self.decoder.event_name(provider, event_id) or f"?{event_id}"
            close = f"][{name}]"
        fmt = _payload_formatter(self.decoder, provider, event_id)
        return (terminal_safe(f" [{provider}]["), terminal_safe(close), fmt)

    def line(self, rec: Record) -> str:
        """The text line for one record (without newline)."""
        _, cpu, provider_id, _, ts, session_id, event_id, tid, payload = rec
        head, close, fmt = self._events[provider_id << 32 | event_id]
        text = fmt(payload) or f"[UNKNOWN_EVENT_ID:{event_id}]"
        if not text.isprintable():
            text = terminal_safe(text)
        self._count += 1
        sec, us = divmod(ts + self._offset, 1_000_000)
        if sec != self._sec:
            self._sec_text = self._second_text(sec)
            self._sec = sec
        ct = self._cpu_tid.get((cpu << 33) + tid)      # tid is an s32: no collisions
        if ct is None:
            ct = f"[{cpu:2d}]{tid & 0xFFFFFFFF:04x}::"
            if len(self._cpu_tid) < 65536:
                self._cpu_tid[(cpu << 33) + tid] = ct
        pre = self._sec_text
        if pre is not None:
            line = f"{ct}{pre}{us:06d}{head}{session_id}{close} {text}"
        else:
            line = f"{ct}{self.timestamp_text(ts)}{head}{session_id}{close} {text}"
        if self._plain:
            return line
        o = self.options
        parts = []
        if o.numbers:
            parts.append(f"{self._count:<8d} ")
        if o.relative:
            if self._first is None:
                self._first = ts
            parts.append(f"+{_seconds(ts - self._first)} ")
        if o.delta:
            prev = ts if self._prev is None else self._prev
            parts.append(f"d{_seconds(ts - prev)} ")
        self._prev = ts
        parts.append(line)
        return "".join(parts)


    # ---- runs of records: the C printer (records/_records.c) ----------------

    def run_lines(self, buf: bytes | memoryview, count: int) -> Iterator[str]:
        """The lines (each ending in a newline) of ``count`` whole records at
        the start of ``buf``, as :meth:`line` gives them, in pieces of some
        tens of KiB (to be written one by one: memory stays small).

        The C printer (records/_records.c) renders the records whose kind has a text plan (the
        decoder's ``text_plan(provider, event_id)``); it hands every other
        record back to :meth:`line`. With ``-n``, ``-t`` or ``--delta-time``
        (state carried from line to line), or an anchor beyond 64 bits, every
        line is :meth:`line`'s.
        """
        if _records is None or not self._plain or not -2**63 <= self._offset < 2**63:
            yield "".join([self.line(rec) + "\n" for rec in iter_records(buf)])
            return
        if self._fast is None:
            self._fast = EventKinds(self._fast_event)
        yield from pieces(buf, count, lambda view, n: _records.lines(
            view, n, self._fast, self._line_of_bytes, self._offset, self.utc_anchor is not None,
            self.options.date))

    def _line_of_bytes(self, raw: bytes) -> str:
        return self.line(record_of(raw))

    def _fast_event(self, provider_id: int, event_id: int) -> tuple[bytes, bytes, object]:
        """(head, close, compiled plan or None) of one event kind, for the C printer."""
        head, close, _ = self._events[provider_id << 32 | event_id]
        plan = compiled_plan(self.decoder, "text_plan", self.provider_names.get(provider_id, "?"), event_id)
        return (head.encode("utf-8", "surrogatepass"), close.encode("utf-8", "surrogatepass"), plan)


def pieces(buf: bytes | memoryview, count: int,
           render: Callable[[memoryview, int], tuple[str, int, int]]) -> Iterator[str]:
    """The C printer's output for ``count`` records of ``buf``, piece by
    piece: ``render(view, n)`` prints from the start of ``view`` and says
    how many records and bytes it did."""
    view = memoryview(buf)
    while count:
        text, n, used = render(view, count)
        yield text
        view = view[used:]
        count -= n


def compiled_plan(decoder: object, kind: str, provider: str, event_id: int) -> object:
    """The C printer's compiled plan for one event from ``decoder.<kind>``
    (``text_plan`` or ``json_plan``), or None when the decoder has none."""
    get_plan = getattr(decoder, kind, None)
    steps = get_plan(provider, event_id) if get_plan is not None else None
    return _records.compile(*steps) if steps is not None else None


def _payload_formatter(decoder: PayloadDecoder, provider: str, event_id: int):
    """payload -> text for one (provider, event id): the decoder's own
    per-event function where it offers one (``formatter``), otherwise a call
    through its ``format_payload``."""
    direct = getattr(decoder, "formatter", None)
    if direct is not None:
        f = direct(provider, event_id)
        if f is not None:
            return f
    fmt = decoder.format_payload
    return lambda payload: fmt(provider, event_id, payload)
