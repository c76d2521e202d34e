# SPDX-License-Identifier: BSD-2-Clause
"""Rotating captures for long recordings: ``--rotate-size``, ``--rotate-time``, ``--max-files``.

A rotating capture is a series of complete elog(5) files, each with its own
header (clock anchor at its first event, counts patched when it is closed)
and the full provider table::

    base.elog, base.1.elog, base.2.elog, ...        (-o base.elog)
    cap.elog.gz, cap.1.elog.gz, ...                  (-o cap.elog.gz)

The first file has exactly the name given with ``-o``; later ones insert the
sequence number before the extension. Numbers only grow, so a name is never
reused within a capture and ``ls -v`` lists the files in recording order.

Rotation happens only between whole records: the ring hands over runs of
whole records and a run that would overflow ``max_bytes`` is cut at a
record boundary, so every event lands in exactly one file. A new file is
opened when the next record arrives (an idle capture leaves no empty
files behind); with ``max_seconds`` an idle file is finalised on time
anyway (:meth:`RotatingWriter.tick`). ``max_files`` deletes the oldest
finished files so that at most that many exist, the open one included.

``dropped_events`` in each header is the number of drops counted since the
previous file was finished (``dropped()`` is sampled as each file is
finished, so drops between two files go to the later one and the headers
sum to the capture's total), plus, for the last file, the events the capture could not store.
"""
from __future__ import annotations

import os
import struct
import time
from typing import Callable

from pyelog.records.format import ElogWriter, Provider, split_point

_LENGTH = struct.Struct("<H")


def rotated_name(path: str, index: int) -> str:
    """The ``index``-th file of a rotating capture (0 is ``path`` itself)."""
    if index == 0:
        return path
    for ext in (".elog.gz", ".elog"):
        if path.endswith(ext):
            return f"{path[:-len(ext)]}.{index}{ext}"
    stem, ext = os.path.splitext(path)
    if ext == ".gz":
        stem2, ext2 = os.path.splitext(stem)
        return f"{stem2}.{index}{ext2}{ext}"
    return f"{stem}.{index}{ext}"


class RotatingWriter:
    """An :class:`ElogWriter` look-alike that starts a new file by size or age.

    ``max_bytes`` counts whole files (header and provider table included);
    a file always takes at least one record, so a record bigger than the
    limit makes a file of its own. ``dropped`` returns the ring's cumulative
    drop counter.
    """

    def __init__(self, path: str | os.PathLike, providers: list[Provider], *,
                 max_bytes: int | None = None, max_seconds: float | None = None,
                 max_files: int | None = None, dropped: Callable[[], int] = lambda: 0,
                 clock: Callable[[], float] = time.monotonic):
        if max_files is not None and max_files < 1:
            raise ValueError("max_files must be at least 1")
        self.path = os.fspath(path)
        self.providers = providers
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.max_files = max_files
        self._dropped = dropped
        self._clock = clock
        self.files: list[str] = []          # every file written, in order (deleted ones included)
        self.event_count = 0                # over all files
        self._closed_bytes = 0
        self._index = 0
        self._current: ElogWriter | None = None
        self._opened_at = 0.0
        self._drops_attributed = 0          # drops already in a finished file's header
        self._stored_closed = 0
        self.closed = False
        # elog(1) creates the -o file before the first event: so does the first file here.
        self._open()

    @property
    def bytes_written(self) -> int:
        """Bytes written over all files."""
        return self._closed_bytes + (self._current.bytes_written if self._current else 0)

    @property
    def current_path(self) -> str | None:
        return self.files[-1] if self._current else None

    def _open(self) -> None:
        name = rotated_name(self.path, self._index)
        self._index += 1
        self._current = ElogWriter(name, self.providers)
        self.files.append(name)
        self._opened_at = self._clock()

    @property
    def stored_events(self) -> int:
        """Records the files have taken (pruned files included)."""
        return self._stored_closed + (self._current.stored_events if self._current else 0)

    def _finish(self, dropped_total: int | None = None) -> None:
        w = self._current
        if w is None:
            return
        self._current = None
        total = self._dropped() if dropped_total is None else dropped_total
        try:
            w.close(dropped_events=total - self._drops_attributed)
        finally:
            self._drops_attributed = total
            self._stored_closed += w.stored_events
            self._closed_bytes += w.bytes_written
        self._prune()

    def _prune(self) -> None:
        if self.max_files is None:
            return
        # The open file is always the newest, so it is never the one deleted.
        alive = [f for f in self.files if os.path.exists(f)]
        for name in alive[:max(0, len(alive) - self.max_files)]:
            os.unlink(name)

    def _due_by_time(self) -> bool:
        return (self.max_seconds is not None and self._current is not None
                and self._current.started and self._clock() - self._opened_at >= self.max_seconds)

    def tick(self) -> None:
        """Finalise the current file if its time is up (call when idle, too)."""
        if self._due_by_time():
            self._finish()

    def write_records(self, buf: bytes | memoryview, count: int | None = None) -> int:
        """Write a run of whole records, starting new files as the limits require."""
        view = memoryview(buf)
        written = 0
        while len(view):
            if self._due_by_time():
                self._finish()
            if self._current is None:
                self._open()
                if self.max_files is not None:
                    self._prune()
            w = self._current
            if self.max_bytes is None:
                n = w.write_records(view, count if written == 0 else None)
                written += n
                break
            room = self.max_bytes - w.bytes_written
            if not w.started:
                room -= 44 + 34 * len(self.providers)     # header and table come with the first record
            if count is not None and written == 0 and len(view) <= room:
                # The whole run fits and the ring counted it: no walk.
                written += w.write_records(view, count)
                break
            nbytes, n = split_point(view, max(room, 0))
            if n == 0:
                if w.started:                              # full: next file
                    self._finish()
                    continue
                # A record bigger than the limit gets a file of its own.
                nbytes, n = split_point(view, _LENGTH.unpack_from(view, 0)[0])
            written += w.write_records(view[:nbytes], n)
            view = view[nbytes:]
            if len(view):
                self._finish()
        self.event_count += written
        return written

    def flush(self, dropped_events: int | None = None) -> None:
        """Write what is buffered and patch the current file's header
        (``dropped_events``: the capture's total so far; default ``dropped()``)."""
        if self._current:
            total = self._dropped() if dropped_events is None else dropped_events
            self._current.flush(total - self._drops_attributed)

    def close(self, dropped_events: int | None = None) -> None:
        """Finalise the current file; ``dropped_events`` is the capture's
        total (default ``dropped()``): what the earlier files do not hold
        goes to this one."""
        if self.closed:
            return
        self.closed = True
        self._finish(dropped_events)

    def __enter__(self) -> "RotatingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
