# SPDX-License-Identifier: BSD-2-Clause
"""One capture file per session, as elog(1)'s ``-o dir=PATH`` writes them.

Each session gets ``<session_id>.elog`` in the directory, with the full
provider table, finalised (header patched, closed) at that session's
SESSION_END; files still open are finalised by :meth:`PerSessionWriter.close`.
``dropped_events`` is always 0 in these files: drops cannot be attributed to
a session.

With ``tcp_names`` (elog's ``-f tcp``: the TCP schema's consumer) a closed
file is renamed from the connection it recorded: ``<id>_<local
port>_<remote address>_<remote port>.elog`` taken from the first
CONN_SET_IP_V4/V6 event (found by name) of a provider named ``tcp``.
FreeBSD puts the BB log id first; Linux sockets have none, so the session id
(the socket cookie) stands there. Missing parts read ``unknown``.
"""
from __future__ import annotations

import os
import re
import resource
from typing import Protocol

from pyelog.records.eventlog import SESSION_END_ID
from pyelog.records.format import ElogWriter, Provider, Record
from pyelog.records.output import make_private_dir


class TcpSchema(Protocol):
    """What naming files needs from the TCP schema (a
    :class:`pyelog.schema.consumer.Consumer` is one)."""

    def event_name(self, event_id: int) -> str | None: ...

    def decode(self, event_id: int, payload: bytes) -> dict | None: ...


# Thousands of sessions may be open at once: each file buffers little.
SESSION_BUFFER = 8 << 10


def _safe_name(text: str) -> str:
    """elog's file-name rule: keep [A-Za-z0-9_-], '/' and '\\' become '_', max 31."""
    text = text.replace("/", "_").replace("\\", "_")
    text = re.sub(r"[^A-Za-z0-9_-]", "", text)[:31]
    return text or "global"


def _connection(tcp: TcpSchema, event_id: int, payload: bytes) -> tuple[int, str, int] | None:
    """(local port, remote address, remote port) from a CONN_SET_IP_V4/V6 payload."""
    name = tcp.event_name(event_id)
    if name not in ("CONN_SET_IP_V4", "CONN_SET_IP_V6"):
        return None
    f = tcp.decode(event_id, payload)
    if not f:
        return None
    addr = f["dst_addr"] if name == "CONN_SET_IP_V4" else f["dst_addr"].replace(":", "-")
    return f["src_port"], addr, f["dst_port"]


class PerSessionWriter:
    """Route records to per-session captures under ``directory``."""

    def __init__(self, directory: str | os.PathLike, providers: list[Provider],
                 *, tcp_names: TcpSchema | None = None,
                 anchor: tuple[int, int] | None = None):
        """``tcp_names``: the TCP schema, to name files after connections
        (``-f tcp``); None keeps session-id names. ``anchor``: the
        (capture_start, start_utc_us) pair every file's header carries (a
        split keeps its source's, so each event keeps its wall-clock time;
        None: each file's first event and this host's clocks, as a live
        capture)."""
        self.anchor = anchor
        # Private (0700, ours alone): file names follow session ids, which
        # anyone can guess, and the captures hold addresses and pids.
        self.directory = make_private_dir(directory)
        self.providers = providers
        self.tcp_provider_ids = {p.provider_id for p in providers if p.name == "tcp"}
        self.tcp_names = tcp_names
        self._open: dict[int, tuple[ElogWriter, str]] = {}
        self._conn: dict[int, tuple[int, str, int]] = {}
        self.files_written: list[str] = []
        self._closed_bytes = 0
        self._closed_stored = 0
        # Every live session holds a file open; let as many as the hard limit allows.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def write_record(self, rec: Record) -> None:
        sid = rec.session_id
        entry = self._open.get(sid)
        if entry is None:
            path = os.path.join(self.directory, _safe_name(str(sid)) + ".elog")
            cs, utc = self.anchor or (None, None)
            entry = self._open[sid] = (ElogWriter(path, self.providers, buffer_size=SESSION_BUFFER,
                                                  capture_start=cs, start_utc_us=utc), path)
        entry[0].write_record(rec)
        if self.tcp_names and sid not in self._conn and rec.provider_id in self.tcp_provider_ids:
            conn = _connection(self.tcp_names, rec.event_id, rec.payload)
            if conn:
                self._conn[sid] = conn
        if rec.event_id == SESSION_END_ID:
            self._finish(sid)

    @property
    def bytes_written(self) -> int:
        """Bytes written to every file so far."""
        return self._closed_bytes + sum(w.bytes_written for w, _ in self._open.values())

    @property
    def stored_events(self) -> int:
        """Records the files have taken."""
        return self._closed_stored + sum(w.stored_events for w, _ in self._open.values())

    @property
    def open_sessions(self) -> int:
        return len(self._open)

    def flush(self) -> None:
        """Push what the open files hold to the kernel (so a SIGKILL loses little)."""
        for w, _ in self._open.values():
            w.flush()

    def _finish(self, sid: int) -> None:
        writer, path = self._open.pop(sid)
        try:
            writer.close(dropped_events=0)
        finally:
            self._closed_bytes += writer.bytes_written
            self._closed_stored += writer.stored_events
        conn = self._conn.pop(sid, None)
        if self.tcp_names and conn:
            lport, raddr, rport = conn
            name = f"{sid}_{lport}_{raddr}_{rport}.elog"
            final = os.path.join(self.directory, name)
            os.replace(path, final)
            path = final
        self.files_written.append(path)

    def close(self) -> None:
        """Finalise every file still open (all of them, even when one
        fails; the first failure is raised after)."""
        first: OSError | None = None
        for sid in list(self._open):
            try:
                self._finish(sid)
            except OSError as e:
                first = first or e
        if first is not None:
            raise first

    def __enter__(self) -> "PerSessionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
