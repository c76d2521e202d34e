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
from typing import IO, Iterator

from pyelog.records.format import EVENT_HEADER_SIZE, CaptureSource, ElogFormatError, FileHeader, Provider, Record
from pyelog.records.text import EventKinds, PayloadDecoder


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

    def _event(self, provider_id: int, event_id: int) -> tuple[str, str, str]:
        provider = self.provider_names.get(provider_id, "?")
        enc = self._encode
        return (provider, enc(provider), enc(self.decoder.event_name(provider, event_id)))

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

    Errors name the line number (``ElogFormatError.offset`` holds it).
    """

    def __init__(self, source: str | os.PathLike | IO[str]):
        self._f = open(source, encoding="utf-8") if not hasattr(source, "read") else source
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
            first = self._f.readline()
        except UnicodeDecodeError as e:
            raise ElogFormatError(f"line 1: not a JSON capture (not UTF-8 text: {e.reason})", 1) from None
        if not first.strip():
            raise ElogFormatError("File is empty", 0)
        try:
            head = json.loads(first)
            if head.get("elog") != 1:
                raise ValueError("not a pyelog JSON capture (first line lacks \"elog\": 1)")
            self.header = FileHeader(head["capture_start"], head["start_utc_us"],
                                     head["event_count"], head["dropped_events"])
            self.providers = [Provider(int(i), str(n)) for i, n in head["providers"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ElogFormatError(f"line 1: bad capture header: {e}", 1) from None

    def __iter__(self) -> Iterator[Record]:
        try:
            for line in self._f:
                self._lineno += 1
                if line.strip():
                    yield self._record(line)
        except UnicodeDecodeError as e:
            raise self._located(ElogFormatError(
                f"line {self._lineno + 1}: not UTF-8 text ({e.reason})", self._lineno + 1)) from None

    def _record(self, line: str) -> Record:
        try:
            o = json.loads(line)
            payload = bytes.fromhex(o["payload"])
            return Record(EVENT_HEADER_SIZE + len(payload), o["cpu"], o["provider_id"],
                          o.get("reserved", 0), o["timestamp"], o["session_id"],
                          o["event_id"], o["thread_id"], payload)
        except (ValueError, KeyError, TypeError) as e:
            raise self._located(
                ElogFormatError(f"line {self._lineno}: bad event: {e}", self._lineno)) from None
