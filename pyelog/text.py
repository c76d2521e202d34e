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
(``pyelog.consumer.ConsumerSet``) or :class:`RawPayloads`, which shows the
bytes in hex, clearly marked, for captures whose schema is not at hand.

Departure from elog(1): elog builds lines in fixed 1024/2048-byte buffers and
truncates longer payload text; pyelog prints the whole text.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Protocol

from .format import SESSION_END_ID, Record

_EPOCH = _dt.datetime(1970, 1, 1)


class PayloadDecoder(Protocol):
    """What the printer needs from a schema: event names and payload text."""

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


class TextPrinter:
    """Turns records into elog(1) lines; keeps the state ``-n/-t/--delta-time`` need.

    ``utc_anchor`` is ``(capture_start, start_utc_us)`` from a file header;
    None (or a zero ``start_utc_us``) prints time since boot, as live mode does.
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

    def timestamp_text(self, ts: int) -> str:
        if self.utc_anchor is None:
            secs, us = divmod(ts, 1_000_000)
            return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{us:06d}"
        capture_start, start_utc_us = self.utc_anchor
        utc = start_utc_us + (ts - capture_start)
        try:
            t = _EPOCH + _dt.timedelta(microseconds=utc)
        except OverflowError:
            return f"<utc {utc}>"
        if self.options.date:
            return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond:06d}"
        return f"{t:%H:%M:%S}.{t.microsecond:06d}"

    def line(self, rec: Record) -> str:
        """The text line for one record (without newline)."""
        o = self.options
        parts = []
        self._count += 1
        if o.numbers:
            parts.append(f"{self._count:<8d} ")
        if o.relative:
            if self._first is None:
                self._first = rec.timestamp
            parts.append(f"+{_seconds(rec.timestamp - self._first)} ")
        if o.delta:
            prev = rec.timestamp if self._prev is None else self._prev
            parts.append(f"d{_seconds(rec.timestamp - prev)} ")
        self._prev = rec.timestamp
        provider = self.provider_names.get(rec.provider_id, "?")
        parts.append(f"[{rec.cpu:2d}]{rec.thread_id & 0xFFFFFFFF:04x}::{self.timestamp_text(rec.timestamp)}"
                     f" [{provider}][{rec.session_id}]")
        if o.event_names:
            if rec.event_id == SESSION_END_ID:
                name = "SESSION_END"
            else:
                name = self.decoder.event_name(provider, rec.event_id) or f"?{rec.event_id}"
            parts.append(f"[{name}]")
        text = self.decoder.format_payload(provider, rec.event_id, rec.payload)
        parts.append(" " + (text or f"[UNKNOWN_EVENT_ID:{rec.event_id}]"))
        return "".join(parts)
