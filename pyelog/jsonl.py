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

from .format import EVENT_HEADER_SIZE, CaptureSource, ElogFormatError, FileHeader, Provider, Record
from .text import PayloadDecoder


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


def header_line(header: FileHeader, providers: list[Provider]) -> str:
    """The first line of a JSON capture."""
    return json.dumps({"elog": 1, **header._asdict(),
                       "providers": [[p.provider_id, p.name] for p in providers]})


class JsonEventFormatter:
    """One JSON object per record, with names and fields from a decoder."""

    def __init__(self, provider_names: dict[int, str], decoder: PayloadDecoder):
        self.provider_names = provider_names
        self.decoder = decoder

    def line(self, rec: Record) -> str:
        provider = self.provider_names.get(rec.provider_id, "?")
        decode = getattr(self.decoder, "decode", None)
        fields = decode(provider, rec.event_id, rec.payload) if decode else None
        return json.dumps({
            "timestamp": rec.timestamp, "cpu": rec.cpu, "thread_id": rec.thread_id,
            "provider_id": rec.provider_id, "provider": provider,
            "session_id": rec.session_id, "event_id": rec.event_id,
            "event": self.decoder.event_name(provider, rec.event_id),
            "reserved": rec.reserved, "fields": fields, "payload": rec.payload.hex(),
        }, default=_jsonable)


class JsonReader(CaptureSource):
    """Read a JSON capture back: ``header``, ``providers``, then :class:`Record` objects.

    Errors name the line number (``ElogFormatError.offset`` holds it).
    """

    def __init__(self, source: str | os.PathLike | IO[str]):
        self._f = open(source, encoding="utf-8") if not hasattr(source, "read") else source
        self._owned = not hasattr(source, "read")
        self._lineno = 1
        first = self._f.readline()
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
        for line in self._f:
            self._lineno += 1
            if not line.strip():
                continue
            try:
                o = json.loads(line)
                payload = bytes.fromhex(o["payload"])
                yield Record(EVENT_HEADER_SIZE + len(payload), o["cpu"], o["provider_id"],
                             o.get("reserved", 0), o["timestamp"], o["session_id"],
                             o["event_id"], o["thread_id"], payload)
            except (ValueError, KeyError, TypeError) as e:
                raise ElogFormatError(f"line {self._lineno}: bad event: {e}", self._lineno) from None
