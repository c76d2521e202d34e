# SPDX-License-Identifier: BSD-2-Clause
"""Captures as JSON lines, for jq and log pipelines.

The first line describes the capture (everything the elog(5) file header and
provider table hold); each following line is one event: its header fields,
provider and event names, the payload decoded by the schema (``fields``, or
null when no schema knows it) and the raw payload in hex. Nothing of the
.elog is lost, so a JSON capture converts back to the identical bytes::

    {"elog": 1, "capture_start": 5000000, "start_utc_us": ..., "event_count": 2,
     "dropped_events": 0, "providers": [[1, "tcp"]]}
    {"timestamp": 5000000, "cpu": 1, "thread_id": 4242, "provider_id": 1,
     "provider": "tcp", "session_id": 42, "event_id": 0, "event": "CONN_SET_IP_V4",
     "reserved": 0, "fields": {"src_addr": "127.0.0.1", ...}, "payload": "7f00..."}
"""
from __future__ import annotations

import json
import os
import struct
from typing import IO, Iterator

from pyelog.records.eventlog import MAX_EVENT_LENGTH
from pyelog.records.format import (EVENT_HEADER, EVENT_HEADER_SIZE, CaptureSource, ElogFormatError, FileHeader,
                                   Provider, Record, iter_records, pack_provider_table, record_of)
from pyelog.records.text import EventKinds, PayloadDecoder, compiled_plan, pieces

try:
    from pyelog.records import _records       # the C printer (pyelog/records/_records.c)
except ImportError:                           # not built: every line from Python
    _records = None


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def header_line(header: FileHeader, providers: list[Provider]) -> str:
    """The first line of a JSON capture."""
    return json.dumps({"elog": 1, **header._asdict(),
                       "providers": [[p.provider_id, p.name] for p in providers]})


class JsonEventFormatter:
    """One JSON object per record, with names and fields from a decoder.

    The line is what ``json.dumps`` gives for the object (same key order and
    separators), assembled with one f-string: integers and the hex payload
    need no escaping, the provider and event names are encoded once per
    (provider id, event id), and only the decoded fields go through one
    encoder bound at construction (``json.dumps(..., default=...)`` would
    build a new encoder per call).
    """

    def __init__(self, provider_names: dict[int, str], decoder: PayloadDecoder):
        self.provider_names = provider_names
        self.decoder = decoder
        self._encode = json.JSONEncoder(default=_jsonable).encode
        self._decode = getattr(decoder, "decode", None)
        self._events = EventKinds(self._event)
        self._fast: EventKinds | None = None      # kinds for the C printer, made on first use

    def _event(self, provider_id: int, event_id: int) -> tuple[str, str, str]:
        provider = self.provider_names.get(provider_id, "?")
        enc = self._encode
        return (provider, enc(provider), enc(self.decoder.event_name(provider, event_id)))

    def run_lines(self, buf: bytes | memoryview, count: int) -> Iterator[str]:
        """The lines (each ending in a newline) of ``count`` whole records at
        the start of ``buf``, as :meth:`line` gives them: by the C printer
        (records/_records.c) for the kinds whose fields have a JSON plan
        (the decoder's ``json_plan(provider, event_id)``), by :meth:`line`
        for the rest; in pieces, as :meth:`TextPrinter.run_lines`."""
        if _records is None:
            yield "".join([self.line(rec) + "\n" for rec in iter_records(buf)])
            return
        if self._fast is None:
            self._fast = EventKinds(self._fast_event)
        yield from pieces(buf, count, lambda view, n: _records.json_lines(
            view, n, self._fast, self._line_of_bytes))

    def _line_of_bytes(self, raw: bytes) -> str:
        return self.line(record_of(raw))

    def _fast_event(self, provider_id: int, event_id: int) -> tuple[bytes, bytes, object]:
        """(provider as JSON, event name as JSON, compiled fields plan or None)."""
        provider, provider_json, event_json = self._events[provider_id << 32 | event_id]
        plan = compiled_plan(self.decoder, "json_plan", provider, event_id) if self._decode else None
        return provider_json.encode(), event_json.encode(), plan

    def line(self, rec: Record) -> str:
        _, cpu, provider_id, reserved, ts, session_id, event_id, tid, payload = rec
        provider, provider_json, event_json = self._events[provider_id << 32 | event_id]
        decode = self._decode
        fields = decode(provider, event_id, payload) if decode else None
        fields_json = "null" if fields is None else self._encode(fields)
        return (f'{{"timestamp": {ts}, "cpu": {cpu}, "thread_id": {tid}, '
                f'"provider_id": {provider_id}, "provider": {provider_json}, '
                f'"session_id": {session_id}, "event_id": {event_id}, '
                f'"event": {event_json}, "reserved": {reserved}, '
                f'"fields": {fields_json}, "payload": "{payload.hex()}"}}')


class JsonReader(CaptureSource):
    """Read a JSON capture back: ``header``, ``providers``, then :class:`Record` objects.

    Only what elog(5) can hold is read (so that ``pyelog convert`` can write
    the capture as .elog): every number must fit its field, the provider
    table must be one :func:`pack_provider_table` accepts. Errors name the
    line number (``ElogFormatError.offset`` holds it).
    """

    def __init__(self, source: str | os.PathLike | IO[str] | IO[bytes]):
        # A file is read as bytes and decoded line by line: a text stream
        # decodes ahead in chunks and would blame bad UTF-8 on the wrong line.
        self._f = open(source, "rb") if not hasattr(source, "read") else source
        self._owned = not hasattr(source, "read")
        self.name = getattr(source, "name", None) if hasattr(source, "read") else os.fspath(source)
        self._lineno = 1
        try:
            self._read_header()
        except ElogFormatError as e:
            self.close()
            raise self._located(e)

    def _read_header(self) -> None:
        try:
            first = _text(self._f.readline())
        except UnicodeDecodeError as e:
            raise ElogFormatError(f"line 1: not a JSON capture (not UTF-8 text: {e.reason})", 1) from None
        if not first.strip():
            raise ElogFormatError("File is empty", 0)
        try:
            head = _loads(first)
            if not isinstance(head, dict) or head.get("elog") != 1:
                raise ValueError("not a pyelog JSON capture (first line lacks \"elog\": 1)")
            self.header = FileHeader(head["capture_start"], head["start_utc_us"],
                                     head["event_count"], head["dropped_events"])
            try:
                self.header.pack()
                if bool in map(type, self.header):
                    raise struct.error("a boolean")
            except struct.error:
                raise ValueError("capture_start, start_utc_us, event_count and dropped_events "
                                 "must be integers from 0 to 2**64-1") from None
            entries = head["providers"]
            if not isinstance(entries, list):
                raise ValueError("providers must be a list of [id, name] pairs")
            self.providers = [_provider(entry, i) for i, entry in enumerate(entries, 1)]
            try:
                pack_provider_table(self.providers)  # what elog(5) can hold, as the writer decides it
            except ElogFormatError as e:  # (a ValueError it raises is handled below)
                raise ValueError(e.message) from None
        except KeyError as e:
            raise ElogFormatError(f"line 1: bad capture header: no {e} field", 1) from None
        except (ValueError, TypeError) as e:
            raise ElogFormatError(f"line 1: bad capture header: {e}", 1) from None

    def __iter__(self) -> Iterator[Record]:
        while True:
            # Counted before reading: a text stream's decoder fails while
            # reading the line, ours after.
            self._lineno += 1
            try:
                line = self._f.readline()
                if not line:
                    return
                text = _text(line)
            except UnicodeDecodeError as e:
                raise self._located(ElogFormatError(
                    f"line {self._lineno}: not UTF-8 text ({e.reason})", self._lineno)) from None
            if text.strip():
                yield self._record(text)

    def _record(self, line: str) -> Record:
        try:
            o = _loads(line)
            if not isinstance(o, dict):
                raise ValueError("not a JSON object")
            payload = bytes.fromhex(o["payload"])
            if len(payload) > MAX_EVENT_LENGTH - EVENT_HEADER_SIZE:
                raise ValueError(f"payload of {len(payload)} bytes: elog(5) records hold at most "
                                 f"{MAX_EVENT_LENGTH - EVENT_HEADER_SIZE}")
            rec = Record(EVENT_HEADER_SIZE + len(payload), o["cpu"], o["provider_id"],
                         o.get("reserved", 0), o["timestamp"], o["session_id"],
                         o["event_id"], o["thread_id"], payload)
            _check_header_fields(rec)
            return rec
        except KeyError as e:
            raise self._located(
                ElogFormatError(f"line {self._lineno}: bad event: no {e} field", self._lineno)) from None
        except (ValueError, TypeError) as e:
            raise self._located(
                ElogFormatError(f"line {self._lineno}: bad event: {e}", self._lineno)) from None


def _text(line: str | bytes) -> str:
    """A line as text (a UnicodeDecodeError if a file's line is not UTF-8)."""
    return line.decode("utf-8") if isinstance(line, bytes) else line


def _loads(line: str):
    """``json.loads``, failing with a ValueError that fits in one line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at character {e.pos + 1})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None


def _provider(entry, index: int) -> Provider:
    """Entry ``index`` (from 1) of a JSON header's provider table: an
    [integer, string] pair (what elog(5) can hold is checked on the table)."""
    if not (isinstance(entry, list) and len(entry) == 2
            and type(entry[0]) is int and isinstance(entry[1], str)):  # bool is no id
        raise ValueError(f"provider {index} is not an [id, name] pair")
    return Provider(*entry)


def _check_header_fields(rec: Record) -> None:
    """Raise a ValueError naming the first header field of ``rec`` that
    elog(5)'s event header cannot hold (true and false are not numbers
    here, though struct would pack them)."""
    try:
        EVENT_HEADER.pack(*rec[:8])
        if bool not in map(type, rec[:8]):
            return
    except struct.error:
        pass
    for name, code, value in zip(Record._fields, EVENT_HEADER.format[1:], rec):
        try:
            if type(value) is bool:
                raise struct.error("a boolean")
            struct.pack("<" + code, value)
        except struct.error:
            bits = 8 * struct.calcsize(code)
            low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if code.islower() else (0, (1 << bits) - 1)
            raise ValueError(f"{name} must be an integer from {low} to {high}") from None
