# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog convert``: rewrite captures between .elog, .elog.gz and JSON lines.

    pyelog convert IN [IN...] OUT [filters]        one output file
    pyelog convert IN [IN...] --split DIR [filters] one .elog per session

The output kind follows OUT's name: ``.json``/``.jsonl`` for JSON lines,
``.gz`` for gzip, anything else plain elog(5). Several inputs are merged in
timestamp order. A single input converted without filters keeps its header
(anchor and counts), so .elog → JSON → .elog gives back identical bytes.
Filters keep records matching every option given; each option may repeat.
"""
from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import struct
import sys
from typing import Callable, Iterator

from pyelog.records.format import ElogWriter, FileHeader, Provider, Record
from pyelog.records.captures import is_json, open_capture
from pyelog.records.jsonl import JsonEventFormatter, header_line
from pyelog.records.output import open_private_text
from pyelog.records.untrusted import clip
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting, uint64_arg
from pyelog.tools.persession import PerSessionWriter


def merged_providers(readers) -> list[Provider]:
    """The union of the inputs' provider tables; one id must mean one name."""
    seen: dict[int, tuple[Provider, str | None]] = {}
    for r in readers:
        for p in r.providers:
            other, where = seen.setdefault(p.provider_id, (p, r.name))
            if other.name != p.name:
                raise ToolError(f"provider id {p.provider_id} is '{clip(other.name)}' in {where} "
                                f"and '{clip(p.name)}' in {r.name}")
    return [p for p, _ in seen.values()]


class RecordFilter:
    """Which records to keep: sessions, events (name or id), providers, time window (µs since boot)."""

    def __init__(self, sessions=(), events=(), providers=(), since=None, until=None):
        self.sessions = {int(s) for s in sessions}
        self.event_ids = {int(e) for e in events if str(e).isdigit()}
        self.event_names = {e for e in events if not str(e).isdigit()}
        self.providers = set(providers)
        self.since, self.until = since, until

    @property
    def active(self) -> bool:
        return bool(self.sessions or self.event_ids or self.event_names or self.providers
                    or self.since is not None or self.until is not None)

    def __call__(self, rec: Record, provider_names: dict[int, str], decoder) -> bool:
        if self.sessions and rec.session_id not in self.sessions:
            return False
        if self.since is not None and rec.timestamp < self.since:
            return False
        if self.until is not None and rec.timestamp > self.until:
            return False
        if self.providers and provider_names.get(rec.provider_id, "?") not in self.providers:
            return False
        if self.event_ids or self.event_names:
            if rec.event_id in self.event_ids:
                return True
            name = decoder.event_name(provider_names.get(rec.provider_id, "?"), rec.event_id)
            return name in self.event_names
        return True


class _SplitCleanup:
    """What a failed ``--split`` removes: the session files it wrote that
    were not there before, and the directory if it made it. (A single
    output needs none: it is published only when complete.)"""

    def __init__(self, split_dir: str):
        self.split_dir = split_dir
        self.new_dir = not os.path.lexists(split_dir)
        self.old_entries = set(os.listdir(split_dir)) if os.path.isdir(split_dir) else set()
        self.splitter: PerSessionWriter | None = None

    def remove(self) -> None:
        files = self.splitter.files_written if self.splitter is not None else []
        for path in files:
            if os.path.basename(path) not in self.old_entries:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        if self.new_dir:
            with contextlib.suppress(OSError):  # not empty: someone else's files are in it
                os.rmdir(self.split_dir)


def convert(inputs: list[str], output: str | None, split_dir: str | None,
            keep: RecordFilter, decoder) -> int:
    """Do the conversion; returns the number of records written.

    The output is published only when complete (:mod:`pyelog.records.output`):
    a failure -- a malformed input, one that holds fewer records than its
    header promises, a full disk -- leaves nothing behind."""
    readers = [open_capture(p) for p in inputs]
    try:
        providers = merged_providers(readers)
        names = {p.provider_id: p.name for p in providers}
        streams: list[Iterator[Record]] = [iter(r) for r in readers]
        records = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=lambda r: r.timestamp)
        if keep.active:
            records = (r for r in records if keep(r, names, decoder))
        passthrough = len(readers) == 1 and not keep.active
        first = readers[0].header
        dropped = sum(r.header.dropped_events for r in readers)

        def complete() -> None:
            for r in readers:
                r.check_complete()
        if split_dir:
            return split(records, split_dir, providers, complete, first)
        if is_json(output):
            return _to_json(records, output, providers, JsonEventFormatter(names, decoder),
                            first, None if passthrough else dropped, complete)
        w = ElogWriter(output, providers, capture_start=first.capture_start,
                       start_utc_us=first.start_utc_us, publish="close")
        written = 0
        with w:
            for rec in records:
                try:
                    w.write_record(rec)
                except struct.error as e:
                    raise ToolError(f"{output}: event {written + 1} does not fit elog(5): {e}") from None
                written += 1
            complete()
            w.close(dropped_events=first.dropped_events if passthrough else dropped,
                    event_count=first.event_count if passthrough else None)
        return written
    finally:
        for r in readers:
            r.close()


def split(records: Iterator[Record], split_dir: str, providers: list[Provider],
          complete: Callable[[], None], source: FileHeader, tcp_names=None) -> int:
    """One capture per session of ``records`` in ``split_dir`` (``convert
    --split``, ``pyelog -r FILE -o dir=PATH``); ``complete()`` raises if the
    input fell short. Each file's header carries ``source``'s (the input
    header's) anchor, capture_start and start_utc_us, so every event keeps
    its wall-clock time. On failure the files written are removed (and the
    directory, if this made it). ``tcp_names``: the TCP schema, for ``-f
    tcp`` file names. Returns the records written."""

    cleanup = _SplitCleanup(split_dir)
    written = 0
    try:
        cleanup.splitter = PerSessionWriter(split_dir, providers, tcp_names=tcp_names,
                                            anchor=(source.capture_start, source.start_utc_us))
        with cleanup.splitter as w:
            for rec in records:
                w.write_record(rec)
                written += 1
            complete()
    except BaseException:
        cleanup.remove()
        raise
    return written


def _to_json(records: Iterator[Record], output: str, providers: list[Provider],
             fmt: JsonEventFormatter, first: FileHeader, dropped: int | None,
             complete: Callable[[], None]) -> int:
    """JSON lines; ``dropped`` None keeps the input's header (one input, no filter)."""
    f, out = open_private_text(output, publish="close")
    written = 0
    try:
        with f:
            if dropped is None:
                f.write(header_line(first, providers) + "\n")
            else:
                # Counts are known only at the end: reserve the header
                # line's room (JSON ignores the trailing blanks), patch later.
                placeholder = header_line(FileHeader(first.capture_start, first.start_utc_us, 0, 0), providers)
                f.write(placeholder + " " * 48 + "\n")
            for rec in records:
                f.write(fmt.line(rec) + "\n")
                written += 1
            complete()
            if dropped is not None:
                final = header_line(FileHeader(first.capture_start, first.start_utc_us, written, dropped), providers)
                f.seek(0)
                f.write(final.ljust(len(placeholder) + 48))
        out.commit()
    except BaseException:
        out.discard()
        raise
    return written


def main(argv: list[str]) -> int:
    """``pyelog convert``: parse ``argv``, convert; the exit status."""
    p = ArgumentParser(prog="pyelog convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="inputs, then the output (unless --split)")
    p.add_argument("--split", metavar="DIR", help="write one .elog per session into DIR")
    p.add_argument("--session", action="append", default=[], type=uint64_arg, metavar="ID")
    p.add_argument("--event", action="append", default=[], metavar="NAME|ID")
    p.add_argument("--provider", action="append", default=[], metavar="NAME")
    p.add_argument("--since", type=uint64_arg, metavar="US", help="keep events at or after this timestamp (µs since boot)")
    p.add_argument("--until", type=uint64_arg, metavar="US", help="keep events at or before this timestamp")
    add_schema_option(p)
    a = p.parse_args(argv)
    if a.split:
        inputs, output = a.paths, None
    else:
        if len(a.paths) < 2:
            p.error("need at least one input and an output (or --split DIR)")
        inputs, output = a.paths[:-1], a.paths[-1]
        if os.path.abspath(output) in {os.path.abspath(i) for i in inputs}:
            p.error(f"output {output} is also an input")
    keep = RecordFilter(a.session, a.event, a.provider, a.since, a.until)

    def run() -> int:
        n = convert(inputs, output, a.split, keep, ConsumerSet.with_extra(a.schema))
        print(f"pyelog convert: {n} events written to {a.split or output}", file=sys.stderr)
        return 0
    return run_reporting("pyelog convert", run)
