# SPDX-License-Identifier: BSD-2-Clause
"""The live status line: what a running capture is doing, on a terminal.

One line on stderr, rewritten in place about once a second::

    pyelog: 1523 ev/s  41230 events  0 dropped  12 sessions open  2.1 MiB written

It exists only when stderr is a terminal (never in logs or pipes) and is
erased before anything else is printed to stderr at the end.
"""
from __future__ import annotations

import os
import time
from typing import IO, Callable


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def wanted(stream: IO[str]) -> bool:
    """A status line only makes sense on a terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class StatusLine:
    """Rate-limited in-place status on ``stream``.

    ``update`` is cheap to call on every loop iteration: it redraws only
    when ``interval`` seconds have passed. ``sessions`` is called then (it
    may cost a map lookup) and may return None when unknown; so is
    ``untracked`` (sessions the kernel's table had no room for), shown only
    when not 0.
    """

    def __init__(self, stream: IO[str], sessions: Callable[[], int | None] = lambda: None,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 untracked: Callable[[], int | None] = lambda: None):
        self.stream = stream
        self.sessions = sessions
        self.untracked = untracked
        self.interval = interval
        self.clock = clock
        self._last_time = clock()
        self._last_events = 0
        self._shown = False

    def update(self, events: int, dropped: int, bytes_written: int, force: bool = False) -> None:
        now = self.clock()
        elapsed = now - self._last_time
        if elapsed < self.interval and not force:
            return
        rate = (events - self._last_events) / elapsed if elapsed > 0 else 0.0
        self._last_time, self._last_events = now, events
        parts = [f"{rate:.0f} ev/s", f"{events} events", f"{dropped} dropped"]
        open_sessions = self.sessions()
        if open_sessions is not None:
            parts.append(f"{open_sessions} sessions open")
        untracked = self.untracked()
        if untracked:
            parts.append(f"{untracked} untracked (table full)")
        parts.append(f"{human_bytes(bytes_written)} written")
        text = "pyelog: " + "  ".join(parts)
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns - 1
        except (OSError, ValueError, AttributeError):
            width = 0
        if width < 20:          # unknown (0 columns, e.g. under script(1)): assume 80
            width = 79
        self.stream.write("\r\033[K" + text[:width])
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line (before the final statistics or an error)."""
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False
