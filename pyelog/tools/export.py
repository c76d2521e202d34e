# SPDX-License-Identifier: BSD-2-Clause
"""pyelog export: captures as a Parquet dataset, one table per event kind.

Writes, under the output directory::

    <provider>/<EVENT>/host=<host>/day=<YYYY-MM-DD>/<capture key>.parquet
    _captures/<capture key>.json         what was exported from which capture

Each table's columns come from the provider's schema (pyelog/tools/columns.py:
the common record fields, ts as a UTC timestamp, then every event field
typed, enums and flags with their names, then ``capture``, the capture's
file name). host= and day= (UTC) are Hive-style partitions, read as the
columns ``host`` and ``day``: DuckDB (``hive_partitioning``), Spark and
pyarrow.dataset read only the hosts and days a query names. Records whose kind the schemas do
not describe go to ``<provider>/unknown-events``.

Incremental: a capture already exported (same host, file name, clock anchor,
size and modification time) is skipped; one that changed since (a capture
still being written) is exported again, replacing its earlier files. Files
appear under their final names only once the capture is fully read, and the
_captures entry last: an interrupted export leaves nothing a query would
read twice, and the next run redoes that capture.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from pathlib import Path

from pyelog.records.captures import is_json
from pyelog.records.format import ElogFormatError, ElogReader
from pyelog.records.output import PrivateFile, make_private_dir
from pyelog.records.untrusted import terminal_safe
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting

#: Rows a Parquet row group holds (at most; fewer at a capture's end).
ROW_GROUP = 131_072
MANIFEST_DIR = "_captures"
#: Columns whose min/max each row group records.
STATISTICS = ["ts", "boot_us", "session_id"]
#: Parquet compressions offered: lz4 writes 1.5x as fast as zstd, zstd's files are 30 % smaller.
COMPRESSIONS = ("lz4", "zstd", "snappy", "none")
_CAPTURE_SUFFIXES = (".elog", ".elog.gz")


def capture_files(paths: list[str]) -> list[str]:
    """The captures named, directories walked (sorted) for ``*.elog`` and ``*.elog.gz``."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out += [os.path.join(root, f) for f in sorted(files)
                        if f.endswith(_CAPTURE_SUFFIXES) and not f.startswith(".")]
        elif is_json(p):
            raise ToolError(f"{p}: export reads elog captures (pyelog convert {p} OUT.elog first)")
        else:
            out.append(p)
    return out


def host_value(name: str) -> str:
    """``name`` as a partition value: letters, digits, ``.``, ``_`` and ``-``."""
    value = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:253]
    if not value or value.startswith("."):
        raise ToolError(f"--host {name!r}: not a usable host name")
    return value


class _Writes:
    """One thread that encodes and writes row groups while the main thread
    splits the next batch (Parquet encoding releases the GIL); at most
    ``depth`` row groups wait, so memory stays bounded."""

    def __init__(self, depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyelog-export")
        self._waiting: list = []
        self._depth = depth

    def submit(self, fn, *args) -> None:
        self._waiting.append(self._pool.submit(fn, *args))
        while len(self._waiting) > self._depth:
            self._waiting.pop(0).result()

    def wait(self) -> None:
        """Wait for every write; the first failure is raised."""
        waiting, self._waiting = self._waiting, []
        for f in waiting:
            f.result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Part:
    """One Parquet file being written: a table's rows of one capture and day."""

    def __init__(self, path: Path, schema, writes: _Writes, compression: str) -> None:
        import pyarrow.parquet as pq
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = PrivateFile(path, publish="close")
        # Held while the file is written: a later export tells a part a
        # SIGKILLed one left behind (lock free) from one being written now.
        fcntl.flock(self.file.fd, fcntl.LOCK_EX)
        self.sink = os.fdopen(self.file.fd, "wb")
        self.file.fd = -1
        # Dictionary pages only for the text columns (already dictionary
        # arrays): on integer columns they tripled the write time and made
        # the files larger, not smaller. Min/max statistics only for the
        # columns that select rows by time or session (row-group pruning);
        # on every column they cost 15 % of the write time.
        text = [f.name for f in schema if str(f.type).startswith("dictionary")]
        self.writer = pq.ParquetWriter(self.sink, schema, compression=compression,
                                       use_dictionary=text, write_statistics=STATISTICS)
        self.writes = writes
        self.pending: list = []
        self.rows = 0

    def add(self, table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        if self.pending:
            self.writes.submit(self.writer.write_table, pa.concat_tables(self.pending), ROW_GROUP)
            self.pending, self.rows = [], 0

    def close(self, commit: bool) -> None:
        """Finish the file (after the caller's ``writes.wait()``) and give it
        its name, or discard it."""
        try:
            self.writer.close()
            self.sink.close()
        finally:
            if commit:
                self.file.commit()
            else:
                self.file.discard()


#: Runs are gathered into batches of about this size before they are split
#: into tables: the split's cost is per batch and event kind.
BATCH = 4 << 20


def _batches(runs):
    """``(buffer, count)`` of whole records, ~BATCH bytes each, from ``runs()``."""
    pending, count, size = [], 0, 0
    for buf, n, _ in runs:
        pending.append(bytes(buf))
        count += n
        size += len(buf)
        if size >= BATCH:
            yield b"".join(pending), count
            pending, count, size = [], 0, 0
    if pending:
        yield b"".join(pending), count


class Exporter:
    """Exports captures into one dataset directory (see the module docstring)."""

    def __init__(self, out_dir: str, host: str, decoder, compression: str = "lz4") -> None:
        self.out = Path(make_private_dir(out_dir))
        self.compression = compression
        self.host = host_value(host)
        self.decoder = decoder
        make_private_dir(self.out / MANIFEST_DIR)

    def remove_stale_parts(self) -> int:
        """Remove the temporary part files of exports that died (SIGKILL,
        power loss) before naming them: unnamed, no reader ever saw them.
        Parts being written hold a lock and stay. Returns how many went."""
        n = 0
        for p in self.out.glob("*/*/host=*/day=*/.*.parquet.*.tmp"):
            with contextlib.suppress(OSError):
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(p)
                    n += 1
                finally:
                    os.close(fd)
        return n

    def _key(self, path: str, header) -> str:
        ident = f"{self.host}\0{os.path.basename(path)}\0{header.capture_start}\0{header.start_utc_us}"
        return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:20]

    def export(self, path: str) -> tuple[str, int]:
        """Export one capture: ("exported"/"unchanged", events). Raises
        ElogFormatError after exporting the whole records of a damaged one."""
        import pyarrow as pa
        from pyelog.tools.columns import RunSplitter

        st = os.stat(path)
        with ElogReader(path) as reader:
            key = self._key(path, reader.header)
            manifest = self.out / MANIFEST_DIR / f"{key}.json"
            old = _read_manifest(manifest)
            if old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns:
                return "unchanged", old.get("events", 0)
            splitter = RunSplitter(reader.provider_names, self.decoder,
                                   reader.header.start_utc_us, reader.header.capture_start)
            parts: dict[tuple[str, str, int], _Part] = {}
            writes = _Writes()
            capture = pa.array([os.path.basename(path)])
            events, damage = 0, None
            try:
                try:
                    for buf, n in _batches(reader.runs()):
                        first, events = events, events + n
                        for provider, table, day, rows in splitter.split(buf, n, first):
                            rows = rows.append_column("capture", pa.DictionaryArray.from_arrays(
                                pa.nulls(rows.num_rows, pa.int32()).fill_null(0), capture))
                            part = parts.get((provider, table, day))
                            if part is None:
                                part = parts[provider, table, day] = _Part(
                                    self._part_path(provider, table, day, key), rows.schema, writes,
                                    self.compression)
                            part.add(rows)
                    reader.check_complete()
                except ElogFormatError as e:
                    damage = e      # the whole records before it are exported
                for part in parts.values():
                    part.flush()
                writes.wait()
            except BaseException:
                writes.shutdown()
                for part in parts.values():
                    part.close(commit=False)
                raise
            writes.shutdown()
            for part in parts.values():
                part.close(commit=True)
            files = sorted(str(Path(p.file.path).relative_to(self.out)) for p in parts.values())
            for f in set(old.get("files", []) if old else ()) - set(files):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.out / f)     # its earlier export's days no longer in it
            _write_manifest(manifest, {"capture": os.path.abspath(path), "host": self.host,
                                       "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                       "events": events, "files": files,
                                       "damaged": str(damage) if damage else None})
        if damage:
            raise damage
        return "exported", events

    def _part_path(self, provider: str, table: str, day: int, key: str) -> Path:
        date = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", provider) or "_"
        return self.out / safe / table / f"host={self.host}" / f"day={date}" / f"{key}.parquet"


def _read_manifest(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def _write_manifest(path: Path, entry: dict) -> None:
    f = PrivateFile(path, publish="close")
    try:
        os.write(f.fd, (json.dumps(entry, indent=1) + "\n").encode())
        f.commit()
    finally:
        f.discard()
        f.close()


def main(argv: list[str]) -> int:
    """``pyelog export``: parse ``argv``, export; the exit status."""
    p = ArgumentParser(prog="pyelog export", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("captures", nargs="+", metavar="CAPTURE",
                   help="captures (.elog, .elog.gz) or directories of them (rotation, -o dir=)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the dataset directory")
    p.add_argument("--host", default=socket.gethostname(),
                   help="the host the captures were recorded on (default: this machine's name, %(default)s)")
    p.add_argument("--compression", choices=COMPRESSIONS, default="lz4",
                   help="Parquet compression (default %(default)s; zstd: smaller, slower)")
    add_schema_option(p)
    a = p.parse_args(argv)
    return run_reporting("pyelog export", lambda: _export(a))


def _export(a: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ToolError("export needs pyarrow (pip install 'pyelog[fleet]')") from None
    exporter = Exporter(a.output, a.host, ConsumerSet.with_extra(a.schema), a.compression)
    stale = exporter.remove_stale_parts()
    if stale:
        print(f"removed {stale} unfinished part files of an interrupted export", file=sys.stderr)
    files = capture_files(a.captures)
    total, status, t0 = 0, 0, time.monotonic()
    for path in files:
        try:
            what, n = exporter.export(path)
        except ElogFormatError as e:
            print(f"pyelog export: {terminal_safe(str(e))} (its whole records exported)", file=sys.stderr)
            status = 1
            continue
        total += n if what == "exported" else 0
        print(f"{what} {terminal_safe(path)}: {n} events", file=sys.stderr)
    secs = time.monotonic() - t0
    print(f"{len(files)} captures, {total} events exported to {terminal_safe(a.output)} "
          f"in {secs:.1f} s", file=sys.stderr)
    return status
