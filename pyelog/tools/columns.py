# SPDX-License-Identifier: BSD-2-Clause
"""Captured events as Arrow tables: one table per event kind, typed columns from the schema.

A run of records (what :meth:`ElogReader.runs` yields) is split by provider
and event id, and each kind's payloads are read as one numpy structured
array whose fields sit at the schema's offsets: the work is per run and per
kind, not per record, except where a value becomes text (addresses,
``char[N]``, enum and flag names), which is converted once per distinct
value in the run.

Columns of every table (:data:`COMMON`): ``ts`` (UTC, µs: the capture's
clock anchor applied to the record's time), ``boot_us`` (the record's own
timestamp, µs since boot), ``cpu``, ``thread_id``, ``session_id``,
``record`` (its index in the capture, from 0: the capture's order across
tables) and ``length`` (its payload's bytes: which layout it was written
with, when a schema grew). Then one
column per field, with the value the generated decoder gives
(``Consumer.decode``): integers in their C width and signedness, ``ntohs``
fields in host order, addresses and ``char[N]`` as text. An ENUM or FLAG
field also gets ``<field>_name``: the label (null when the value has none),
for flags the set bits' labels joined by ``|``. Payloads shorter than the
schema's layout read as zeros past their end and longer ones are cut, as
the decoder does. Kinds the fast path cannot read (a varlen field, an
event id or provider no schema describes) go to the ``unknown-events`` table of
their provider, one row per record: ``event_id``, ``event`` (the name when
known), ``fields`` (the decoded fields as JSON text, when a schema knows
them) and ``payload``.
"""
from __future__ import annotations

import json
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from pyelog.records import _records
from pyelog.schema.consumer import Consumer
from pyelog.schema.dsl import Event, Field
from pyelog.schema.runtime import cstr, enum_functions, flag_functions, ntop4, ntop6

__all__ = ["COMMON", "UNKNOWN", "US_PER_DAY", "RunSplitter"]

#: The record header as numpy reads it (elog(5): 32 bytes, little-endian, packed).
HEADER_DTYPE = np.dtype([("event_length", "<u2"), ("cpu", "<u2"), ("provider_id", "<u2"),
                         ("reserved", "<u2"), ("timestamp", "<u8"), ("session_id", "<u8"),
                         ("event_id", "<u4"), ("thread_id", "<i4")])
assert HEADER_DTYPE.itemsize == 32

#: The columns every table starts with.
COMMON = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("boot_us", pa.uint64()),
                    ("cpu", pa.uint16()), ("thread_id", pa.int32()), ("session_id", pa.uint64()),
                    ("record", pa.uint64()), ("length", pa.uint16())])

#: The table (of each provider) of records the fast path cannot read (not an
#: identifier, so no event of a schema has its name; no leading "_", which
#: dataset readers skip as hidden).
UNKNOWN = "unknown-events"
UNKNOWN_COLUMNS = [("event_id", pa.uint32()), ("event", pa.string()), ("fields", pa.string()),
                   ("payload", pa.binary())]
US_PER_DAY = 86_400_000_000

TEXT = pa.dictionary(pa.int32(), pa.string())

_INTEGERS = {("uint", 1): ("u1", pa.uint8()), ("uint", 2): ("u2", pa.uint16()),
             ("uint", 4): ("u4", pa.uint32()), ("uint", 8): ("u8", pa.uint64()),
             ("ptr", 8): ("u8", pa.uint64()),
             ("int", 1): ("i1", pa.int8()), ("int", 2): ("i2", pa.int16()),
             ("int", 4): ("i4", pa.int32()), ("int", 8): ("i8", pa.int64())}


def text_column(values: np.ndarray, to_text: Callable) -> pa.DictionaryArray:
    """Dictionary-encoded text of ``values``, ``to_text`` called once per distinct value."""
    if values.dtype.kind in "ui" and len(values) and 0 <= values.min() and values.max() < 1 << 16:
        # Flags, enums, ports: a lookup table instead of np.unique's sort.
        present = np.zeros(1 << 16, bool)
        present[values] = True
        uniq = np.flatnonzero(present)
        lut = np.zeros(1 << 16, np.int32)
        lut[uniq] = np.arange(len(uniq), dtype=np.int32)
        index = lut[values]
    else:
        uniq, index = np.unique(values, return_inverse=True)
        index = index.reshape(-1).astype(np.int32)
    texts = [to_text(v) for v in uniq.tolist()]
    missing = np.array([t is None for t in texts])
    # Null rows, not a null in the dictionary (Parquet cannot write that).
    indices = pa.array(index, mask=missing[index]) if missing.any() else pa.array(index)
    return pa.DictionaryArray.from_arrays(indices, pa.array([t or "" for t in texts], pa.string()))


def _ipv4_text(v: int) -> str:
    """An in_addr read as a little-endian uint32 (for the lookup-free column path) as text."""
    return ntop4(v.to_bytes(4, "little"))


def _field_column(f: Field) -> tuple[str, pa.DataType, Callable[[np.ndarray], pa.Array]]:
    """(numpy format, Arrow type, values -> Arrow array) of one fixed field."""
    kind = f.type.kind
    if kind == "char":
        return f"S{f.array_len}", TEXT, lambda v: text_column(v, cstr)
    if kind == "ipv4":
        return "<u4", TEXT, lambda v: text_column(v, _ipv4_text)
    if kind == "ipv6":
        return "V16", TEXT, lambda v: text_column(v, ntop6)
    code, arrow = _INTEGERS[(kind, f.type.size)]
    if f.annotation == "ntohs":
        return "<" + code, arrow, lambda v: pa.array(v.byteswap())
    return "<" + code, arrow, pa.array


class EventTable:
    """One fixed-layout event kind: its numpy record type and Arrow columns."""

    def __init__(self, consumer: Consumer, event: Event) -> None:
        self.name = event.name
        self.size = event.struct.size if event.struct is not None else 0
        fields = event.struct.fields if event.struct is not None else []
        names, formats, offsets = [], [], []
        arrow = list(COMMON)
        self._makers: list[tuple[str, Callable, Callable | None]] = []
        for f in fields:
            fmt, typ, make = _field_column(f)
            names.append(f.name)
            formats.append(fmt)
            offsets.append(f.offset)
            arrow.append((f.name, typ))
            label = None
            if f.annotation == "enum":
                label = enum_functions(f.table, consumer.enums.get(f.table, {}))[0]
            elif f.annotation == "flag":
                label = flag_functions(f.table, consumer.flags.get(f.table, ()))[0]
            if label is not None:
                arrow.append((f"{f.name}_name", TEXT))
            self._makers.append((f.name, make, label))
        self.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                               "itemsize": max(self.size, 1)})
        self.schema = pa.schema(arrow)

    def table(self, common: list[pa.Array], payloads: np.ndarray) -> pa.Table:
        """The rows of one run: ``common`` columns and the payloads (n × size bytes, flat)."""
        cols = list(common)
        if self._makers:
            rows = payloads.view(self.dtype)
            for name, make, label in self._makers:
                values = np.ascontiguousarray(rows[name])
                cols.append(make(values))
                if label is not None:
                    cols.append(text_column(values.astype(np.int64), label))
        return pa.Table.from_arrays(cols, schema=self.schema)


def _fast(event: Event) -> bool:
    return event.struct is None or not any(f.is_varlen for f in event.struct.fields)


class RunSplitter:
    """Turns runs of records into ``(provider, table name, day, Arrow table)``.

    ``providers``: the capture's provider table ({id: name}); ``decoder``: a
    ConsumerSet (``get(name)`` -> Consumer or None); ``start_utc_us`` and
    ``capture_start``: the capture header's clock anchor.
    """

    def __init__(self, providers: dict[int, str], decoder, start_utc_us: int,
                 capture_start: int) -> None:
        self._providers = providers
        self._decoder = decoder
        self._offset_us = start_utc_us - capture_start
        self._kinds: dict[tuple[int, int], EventTable | None] = {}
        self.unknown_schema = pa.schema(list(COMMON) + UNKNOWN_COLUMNS)

    def _kind(self, provider_id: int, event_id: int) -> EventTable | None:
        key = (provider_id, event_id)
        if key not in self._kinds:
            consumer = self._consumer(provider_id)
            event = consumer.schema_event(event_id) if consumer is not None else None
            self._kinds[key] = EventTable(consumer, event) if event is not None and _fast(event) else None
        return self._kinds[key]

    def _consumer(self, provider_id: int) -> Consumer | None:
        name = self._providers.get(provider_id)
        return self._decoder.get(name) if name is not None and self._decoder is not None else None

    def split(self, buf, count: int, first: int = 0) -> Iterator[tuple[str, str, int, pa.Table]]:
        """The tables of ``count`` whole records in ``buf`` (the capture's
        records ``first`` onwards): one per provider, kind and UTC day,
        records in their order within each."""
        offs, hdrs = _records.index(buf, count)
        raw = np.frombuffer(buf, np.uint8)
        heads = np.frombuffer(hdrs, HEADER_DTYPE)
        # Plain arrays first: fancy indexing a structured array is 10x slower.
        cols = {name: np.ascontiguousarray(heads[name]) for name in HEADER_DTYPE.names}
        cols["offset"] = np.frombuffer(offs, "<u4").astype(np.int64)
        cols["record"] = np.arange(first, first + count, dtype=np.uint64)
        pids, eids = cols["provider_id"], cols["event_id"]
        days = (cols["timestamp"].astype(np.int64) + self._offset_us) // US_PER_DAY
        one_day = days[0] == days[-1] and (days == days[0]).all()
        if one_day and (pids == pids[0]).all() and int(eids.max()) < 65536:
            # The usual batch: one provider, one day, small ids: a stable
            # sort of 16-bit keys (radix, linear time).
            order = np.argsort(eids.astype(np.uint16), kind="stable")
            change = np.diff(eids[order])
        else:
            kinds = (pids.astype(np.int64) << 32) | eids
            order = np.lexsort((days, kinds))
            change = np.diff(kinds[order]) | np.diff(days[order])
        starts = np.flatnonzero(change) + 1
        bounds = [0, *starts.tolist(), len(order)]
        for a, b in zip(bounds, bounds[1:]):
            sel = order[a:b]
            first = int(sel[0])
            pid, eid, day = int(pids[first]), int(eids[first]), int(days[first])
            rows = {name: col[sel] for name, col in cols.items()}
            yield (self._providers.get(pid, f"provider_{pid}"), *self._rows(pid, eid, raw, rows, day))

    def _common(self, rows: dict[str, np.ndarray]) -> list[pa.Array]:
        boot = rows["timestamp"]
        ts = (boot.astype(np.int64) + self._offset_us).astype("datetime64[us]")
        return [pa.array(ts, COMMON.field("ts").type), pa.array(boot), pa.array(rows["cpu"]),
                pa.array(rows["thread_id"]), pa.array(rows["session_id"]), pa.array(rows["record"]),
                pa.array(rows["event_length"] - 32)]

    def _rows(self, pid: int, eid: int, raw: np.ndarray, rows: dict[str, np.ndarray],
              day: int) -> tuple[str, int, pa.Table]:
        kind = self._kind(pid, eid)
        common = self._common(rows)
        if kind is None:
            return UNKNOWN, day, self._unknown(pid, eid, raw, rows, common)
        # Cut or zero-filled to the schema's layout, as decode() reads them.
        payloads = np.frombuffer(_records.payloads(raw, rows["offset"], kind.size), np.uint8)
        return kind.name, day, kind.table(common, payloads)

    def _unknown(self, pid: int, eid: int, raw: np.ndarray, rows: dict[str, np.ndarray],
                 common: list[pa.Array]) -> pa.Table:
        consumer = self._consumer(pid)
        name = consumer.event_name(eid) if consumer is not None else None
        payloads, fields = [], []
        for off, length in zip(rows["offset"].tolist(), rows["event_length"].tolist()):
            payload = raw[off + 32:off + length].tobytes()
            payloads.append(payload)
            decoded = consumer.decode(eid, payload) if consumer is not None and name else None
            fields.append(None if decoded is None else json.dumps(decoded, default=repr))
        n = len(payloads)
        cols = common + [pa.array(np.full(n, eid, np.uint32)), pa.array([name] * n, pa.string()),
                         pa.array(fields, pa.string()), pa.array(payloads, pa.binary())]
        return pa.Table.from_arrays(cols, schema=self.unknown_schema)
