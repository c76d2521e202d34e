# SPDX-License-Identifier: BSD-2-Clause
"""One eventlog per host: the host instance and the subscribers that attach to it.

FreeBSD's eventlog is one instance per host: providers register once, hooks
run once per event, and subscribers come and go through /dev/eventlog. The
Linux analogue here is a daemon (``pyelog host serve``, the
:class:`HostInstance`) that owns one :class:`~pyelog.kernel.loader.Loader`:
the core, every provider with its hooks attached once, and ``slots`` ring
subscribers compiled in with no subscriptions. A recorder attaches over a
Unix socket (:class:`HostSubscriber`):

1. it connects and asks for a slot with its subscriptions (JSON, one line);
2. the daemon checks the peer's credentials, clears a free slot's rings
   (control blocks zeroed: counters start at 0), writes the slot's filters,
   replays state for DUMP_STATE subscriptions, and answers with the slot's
   three map fds (``SCM_RIGHTS``) and what the reader needs to map them;
3. the recorder maps the rings and drains them itself, exactly as a private
   recorder does: events never pass through the daemon, and each subscriber
   has its own per-CPU rings and exact drop counts;
4. the connection is the subscription: when it closes (exit, crash,
   SIGKILL), the daemon sets the slot's filters to nothing and the slot is
   free again. When the last one closes, the daemon exits, unless it runs
   as a service (``--service``, the systemd unit).

Why a daemon that hands out fds, not bpffs pins: with pins, the programs
and maps outlive every process by design, so a SIGKILLed last subscriber
leaves them attached and someone must notice and unpin; a daemon holds
everything by fd (programs, links, maps) and pins nothing, so when it ends,
however it ends, the kernel detaches it all. Its socket is also where
permissions are decided (the socket file's mode and group, checked again
with SO_PEERCRED). Events do not go through the daemon either way, so it
costs nothing per event.

Providers are configured once, for the instance (the TCP provider with its
defaults: every connection enabled, no filter flags, the default session
table); a recorder that needs another configuration (TCP filter flags,
``--tcp-default none``, ``--max-sessions``, another buffer size or a
provider the instance does not run) runs its own private instance. A
recorder that finds no instance starts one (``pyelog host serve
--spawned``, detached, with its buffer size and providers) and attaches.

Events a provider loses before the core are counted by event id in the
kernel, and each subscriber is charged those its subscriptions admit
(Loader.provider_lost): its drop count is its own.
"""
from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import selectors
import signal
import socket
import struct
import subprocess
import time
from typing import Iterable, Iterator

from pyelog.kernel.loader import (MAX_SESSIONS_DEFAULT, EventlogError, KernelSubscriberSpec, Loader,
                                  ProviderSpec, RingSubscriber, Subscription)
from pyelog.kernel.ring import BUFFER_SIZE_DEFAULT, RingReader, RingStats

#: Where the host instance listens (``PYELOG_HOST_SOCKET`` overrides it).
SOCKET_PATH = "/run/pyelog/eventlog.sock"
#: Subscribers one host instance has room for (each slot's rings are
#: allocated when the instance starts: slots x 2 x buffer size x CPUs).
DEFAULT_SLOTS = 8
#: How long a daemon started by a recorder waits for its first subscriber.
FIRST_CLIENT_WAIT = 30.0
_MAX_REQUEST = 1 << 16


class HostError(EventlogError):
    """Attaching to the host instance failed: one line for the user."""


class HostMismatch(HostError):
    """A host instance runs, but with another configuration than the one
    asked for (its buffer size): the caller may run its own instance."""


class HostStartFailed(HostError):
    """The host instance a recorder started exited before it listened
    (its own error line is the message): the caller may run a private one."""


def socket_path() -> str:
    """The host instance's socket (``PYELOG_HOST_SOCKET`` or the default)."""
    return os.environ.get("PYELOG_HOST_SOCKET") or SOCKET_PATH


def log_path(path: str) -> str:
    """Where an instance a recorder started writes its messages (its
    stderr, from when it serves), beside its socket and lock."""
    return path + ".log"


def _send(sock: socket.socket, msg: dict, fds: Iterable[int] = ()) -> None:
    data = (json.dumps(msg) + "\n").encode()
    fds = list(fds)
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _recv_line(sock: socket.socket, buf: bytearray, fds: list[int] | None = None,
               deadline: float | None = None, limit: int | None = _MAX_REQUEST) -> dict | None:
    """One JSON line (None at EOF); file descriptors that came with it are
    appended to ``fds``. ``limit``: the most bytes a line may have (the
    instance's bound on requests; answers may be long)."""
    while b"\n" not in buf:
        if deadline is not None:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data, got, _flags, _addr = socket.recv_fds(sock, 65536, 8)
        except socket.timeout:
            raise HostError("the host instance did not answer in time") from None
        if fds is not None:
            fds.extend(got)
        else:
            for fd in got:
                os.close(fd)
        if not data:
            return None
        buf += data
        if limit is not None and len(buf) > limit:
            raise HostError("a message of more than 64 KiB on the host socket")
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    try:
        msg = json.loads(line)
    except ValueError:
        raise HostError("a malformed message on the host socket") from None
    if not isinstance(msg, dict):
        raise HostError("a malformed message on the host socket")
    return msg


# -- the daemon ---------------------------------------------------------------------

def _json_keys(v):
    """Dict keys as text, all the way down (JSON has no integer keys)."""
    if isinstance(v, dict):
        return {str(k): _json_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_keys(x) for x in v]
    return v


class _Client:
    def __init__(self, sock: socket.socket, uid: int, pid: int) -> None:
        self.sock = sock
        self.uid = uid
        self.pid = pid
        self.buf = bytearray()
        self.slot: RingSubscriber | None = None


class HostInstance:
    """The daemon: one Loader, ``slots`` ring subscribers, a Unix socket.

    ``group``: members of this group may attach besides root (the socket
    is made 0660 and given to the group; without a group it is 0600, root's).
    ``service``: keep running with no subscriber (the systemd unit);
    otherwise exit when the last one leaves, or when none came within
    ``first_wait`` seconds of starting.
    """

    def __init__(self, providers: list[ProviderSpec], slots: int = DEFAULT_SLOTS,
                 buffer_size: int = BUFFER_SIZE_DEFAULT, max_sessions: int = MAX_SESSIONS_DEFAULT,
                 path: str | None = None, group: str | None = None, service: bool = False,
                 first_wait: float = FIRST_CLIENT_WAIT,
                 kernel_subscribers: Iterable[tuple[KernelSubscriberSpec, int]] = ()) -> None:
        if not 1 <= slots <= 16:
            raise HostError("slots must be 1..16")
        self.path = path or socket_path()
        self.group = group
        self.gid = None
        if group is not None:
            try:
                self.gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise HostError(f"no group named {group!r}") from None
        self.service = service
        self.first_wait = first_wait
        #: The file this instance's stderr goes to, if any (told to its
        #: subscribers, who name it when the instance ends under them).
        self.log: str | None = None
        self.buffer_size = buffer_size
        self.loader = Loader(providers=providers, max_sessions=max_sessions)
        self.slots = [self.loader.add_ring_subscriber(buffer_size) for _ in range(slots)]
        self.kernel_subscribers = [self.loader.add_kernel_subscriber(spec, level)
                                   for spec, level in kernel_subscribers]
        self.clients: dict[int, _Client] = {}
        self._lock_fd: int | None = None
        self._listener: socket.socket | None = None
        self._stop = False
        self._served = False        # a subscriber has had a slot

    # -- lifetime --------------------------------------------------------------------
    def _take_lock(self) -> None:
        d = os.path.dirname(self.path) or "."
        os.makedirs(d, mode=0o755, exist_ok=True)
        fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise HostError(f"a host instance already runs on {self.path}") from None
        self._lock_fd = fd

    def _listen(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)     # a dead instance's (the lock says none runs)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
            os.chmod(self.path, 0o660)
        s.listen(16)
        s.setblocking(False)
        return s

    def open(self) -> None:
        """Take the host's lock (one instance per socket), load and attach
        everything, listen. HostError if an instance already runs."""
        self._take_lock()
        try:
            self.loader.start()
            self._listener = self._listen()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop listening, release the lock, detach everything."""
        for c in list(self.clients.values()):
            c.sock.close()
        self.clients.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        # The socket is gone, so this instance serves nobody any more: the
        # lock goes before the (slow) detach, and a recorder that starts
        # right after the last one left can start the next instance at once.
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.loader.close()

    def serve(self, ready=None) -> int:
        """Serve subscribers (after :meth:`open`) until the instance should
        end, then :meth:`close`; 0. ``ready()`` runs once it accepts."""
        if self._listener is None:
            self.open()
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if ready:
                ready()
            sel = selectors.DefaultSelector()
            sel.register(self._listener, selectors.EVENT_READ, None)
            idle_since = time.monotonic()
            while not self._stop:
                for key, _ in sel.select(timeout=1.0):
                    if key.data is None:
                        self._accept(self._listener, sel)
                    else:
                        self._serve_client(key.data, sel)
                self.loader.housekeeping()
                if self.clients or self.service:
                    # A connection without a slot yet may be a subscriber
                    # on its way: it keeps the instance too.
                    idle_since = time.monotonic()
                elif self._served:
                    break            # the last subscriber left
                elif time.monotonic() - idle_since > self.first_wait:
                    break            # started for a recorder that never came
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            self.close()
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    # -- subscribers -----------------------------------------------------------------
    def _permitted(self, uid: int, gid: int) -> bool:
        if uid in (0, os.geteuid()):
            return True
        if self.gid is None:
            return False
        if gid == self.gid:
            return True
        try:
            name = pwd.getpwuid(uid).pw_name
            return self.gid in os.getgrouplist(name, gid)
        except KeyError:
            return False

    def _accept(self, listener: socket.socket, sel) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
        if not self._permitted(uid, gid):
            with contextlib.suppress(OSError):
                _send(sock, {"ok": False, "error": "permission denied: the host instance admits root"
                             + (f" and group {self.group}" if self.group else " only")})
            sock.close()
            return
        sock.setblocking(True)
        sock.settimeout(5.0)     # a client that stops reading must not stall the others
        c = _Client(sock, uid, pid)
        self.clients[sock.fileno()] = c
        sel.register(sock, selectors.EVENT_READ, c)

    def _drop(self, c: _Client, sel) -> None:
        sel.unregister(c.sock)
        self.clients.pop(c.sock.fileno(), None)
        if c.slot is not None:
            for name in list(c.slot.subscriptions):
                self.loader.unsubscribe(c.slot, name)
        c.sock.close()

    def _serve_client(self, c: _Client, sel) -> None:
        try:
            msg = _recv_line(c.sock, c.buf)
            if msg is None:
                self._drop(c, sel)
                return
            op = msg.get("op")
            if op == "subscribe":
                self._subscribe(c, msg)
            elif op == "aggregates":
                _send(c.sock, {"ok": True, "aggregates": {
                    k.spec.name: {str(inst): _json_keys(v) for inst, v in k.read(self.loader).items()}
                    for k in self.kernel_subscribers if k.level}})
            elif op == "stats":
                if msg.get("housekeeping"):
                    # Not final: that would log (and forget) every handshake
                    # in progress for all subscribers, for one that leaves.
                    self.loader.housekeeping()
                _send(c.sock, {"ok": True, **self._counters(c.slot.subscriptions if c.slot else None)})
            else:
                _send(c.sock, {"ok": False, "error": f"unknown request {str(op)[:40]!r}"})
        except (OSError, HostError, EventlogError, ValueError, TypeError):
            self._drop(c, sel)

    def _counters(self, subscriptions: dict[str, Subscription] | None = None) -> dict:
        """The instance's counters; "lost": what the providers lost of the
        events ``subscriptions`` (a subscriber's) admit, or of all."""
        return {"pid": os.getpid(), "slots": len(self.slots),
                "lost": self.loader.provider_lost(subscriptions), "failed": self.loader.sessions_failed(),
                "sessions": self.loader.open_sessions(),
                "subscribers": sum(1 for c in self.clients.values() if c.slot is not None),
                "attached": sorted([c.pid, c.uid, c.slot.index] for c in self.clients.values()
                                   if c.slot is not None)}

    def _subscribe(self, c: _Client, msg: dict) -> None:
        if c.slot is not None:
            _send(c.sock, {"ok": False, "error": "this connection already subscribes"})
            return
        if msg.get("buffer_size", self.buffer_size) != self.buffer_size:
            _send(c.sock, {"ok": False, "config": True,
                           "error": f"the host instance's buffers are {self.buffer_size} bytes"})
            return
        try:
            subs = [Subscription(str(p), int(lv), int(kw), int(fl))
                    for p, lv, kw, fl in msg.get("subscriptions", [])]
            names = {p.name for p in self.loader.providers}
            missing = sorted({s.provider for s in subs} - names)
        except (ValueError, TypeError) as e:
            _send(c.sock, {"ok": False, "error": str(e)})
            return
        if missing:
            _send(c.sock, {"ok": False, "config": True,
                           "error": f"the host instance runs no provider {', '.join(missing)} "
                                    f"(it runs {', '.join(sorted(names))})"})
            return
        taken = {id(x.slot) for x in self.clients.values() if x.slot is not None}
        free = [s for s in self.slots if id(s) not in taken]
        if not free:
            _send(c.sock, {"ok": False, "error": f"all {len(self.slots)} subscriber slots of the "
                                                 "host instance are taken"})
            return
        slot = free[0]
        slot.reader.reset()       # counters from 0, both buffers empty
        # The providers' losses this subscriber is charged: from now on,
        # of the events its subscriptions admit.
        baseline = self._counters({s.provider: s for s in subs})
        # The slot is the client's before its filters are written: a
        # dump-state replay goes to its rings, which it drains once attached.
        c.slot = slot
        self._served = True
        for s in subs:
            self.loader.subscribe(slot, s)
        b = self.loader.bpf
        fds = [b[f"eventlog_buf_{slot.index}"].map_fd, b[f"eventlog_state_{slot.index}"].map_fd,
               b[f"eventlog_bell_{slot.index}"].map_fd]
        _send(c.sock, {"ok": True, "slot": slot.index, "ncpu": self.loader.ncpu,
                       "buffer_size": slot.buffer_size, "chunk_size": slot.chunk_size,
                       "providers": slot.providers(), "log": self.log, **baseline}, fds)


# -- the subscriber's side ----------------------------------------------------------------

class HostSubscriber:
    """One subscriber of the host instance, with what a capture loop needs
    (the same methods as a private recorder: see pyelog.tools.capture)."""

    def __init__(self, sock: socket.socket, reply: dict, fds: list[int]) -> None:
        self.sock = sock
        self.log = reply.get("log")
        self._buf = bytearray()
        self.slot = reply["slot"]
        self.daemon_pid = reply["pid"]
        self._providers = [tuple(p) for p in reply["providers"]]
        self._base_lost = reply["lost"]
        self._base_failed = reply["failed"]
        self._last = {"lost": reply["lost"], "failed": reply["failed"], "sessions": reply["sessions"]}
        try:
            self.reader = RingReader(fds[0], fds[1], fds[2], reply["ncpu"], reply["buffer_size"],
                                     chunk_size=reply["chunk_size"])
        finally:
            for fd in fds:      # the mappings and the epoll keep what they need
                os.close(fd)
        self.gone = False

    @classmethod
    def attach(cls, subscriptions: list[Subscription], buffer_size: int,
               path: str | None = None, start: bool = False,
               spawn: list[str] | None = None, wait: float = 60.0,
               strict: bool | None = None) -> "HostSubscriber | None":
        """Subscribe to the host instance at ``path``.

        None when there is none and ``start`` is false. With ``start``, a
        missing instance is started (``spawn``: the daemon's command line).
        An instance configured otherwise (buffer size, providers) raises
        HostMismatch, after which the caller may run a private instance;
        with ``strict`` (default: ``start``) it is a HostError instead.
        """
        path = path or socket_path()
        strict = start if strict is None else strict
        # An instance whose last subscriber has just left closes its socket
        # while ending: a connection it accepted then is closed unanswered.
        # The next attempt finds no socket, and starts (or does not find)
        # the next instance.
        for attempt in range(5):
            sock = _connect(path)
            if sock is None:
                if not start:
                    return None
                sock = _spawn_and_connect(path, spawn or [], wait)
            try:
                reply, fds = _request_slot(sock, subscriptions, buffer_size, wait)
                if reply is None:
                    sock.close()
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if not reply.get("ok"):
                    for fd in fds:
                        os.close(fd)
                    if reply.get("config") and not strict:
                        raise HostMismatch(reply.get("error", "another configuration"))
                    raise HostError(f"{path}: {reply.get('error', 'refused')}")
                if len(fds) != 3:
                    raise HostError(f"{path}: the host instance sent {len(fds)} of 3 ring descriptors")
                return cls(sock, reply, fds)
            except BaseException:
                sock.close()
                raise
        raise HostError(f"the host instance on {path} closed every connection unanswered")

    # -- what the capture loop calls --------------------------------------------------
    def start(self) -> "HostSubscriber":
        return self

    def __enter__(self) -> "HostSubscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attached(self) -> bool:
        """Whether the rings are still mapped (until :meth:`close`)."""
        return self.reader is not None

    def providers(self) -> list[tuple[int, str]]:
        """(id, name) of the provider instances subscribed to (the .elog table)."""
        return list(self._providers)

    def drain_counted(self, timeout: float = 0.0,
                      ordered: bool = True) -> Iterator[tuple[memoryview, int]]:
        """Runs of whole records and their counts (RingReader.read_counted)."""
        return self.reader.read_counted(timeout, ordered)

    def stats(self) -> RingStats:
        """This subscriber's exact ring counters (from 0 when it attached)."""
        return self.reader.stats()

    def _ask(self, housekeeping: bool = False) -> dict:
        if self.gone:
            return self._last
        try:
            _send(self.sock, {"op": "stats", "housekeeping": housekeeping})
            reply = _recv_line(self.sock, self._buf, None, time.monotonic() + 30)
        except (OSError, HostError):
            reply = None
        if not reply or not reply.get("ok"):
            self.gone = True
            return self._last
        self._last = reply
        return reply

    def check(self) -> None:
        """Raise HostError if the host instance has ended (its programs with it)."""
        if not self.gone:
            self._ask()
        if self.gone:
            why = f" (its messages: {self.log})" if self.log else ""
            raise HostError(f"the host instance (pid {self.daemon_pid}) ended{why}: nothing is "
                            "recorded after this point")

    def housekeeping(self, final: bool = False) -> None:
        """The instance does the providers' periodic work; before the last
        drain, ask for a round now. (Not a private recorder's final round:
        handshakes still in progress stay for the subscribers that stay.)"""
        if final:
            self._ask(housekeeping=True)

    def provider_lost(self) -> int:
        """Events providers lost before any ring since this subscriber
        attached, of those its subscriptions admit (Loader.provider_lost),
        as of the instance's last answer (the capture loop asks
        once a round in :meth:`check`, and once more before its last drain)."""
        return self._last["lost"] - self._base_lost

    def sessions_failed(self) -> int:
        """Sessions the table refused since this subscriber attached."""
        return self._last["failed"] - self._base_failed

    def open_sessions(self) -> int:
        """Sessions alive in the kernel, as of the last answer."""
        return self._last["sessions"]

    def close(self) -> None:
        """Leave: the instance frees the slot when the connection closes."""
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.sock.close()


def status(path: str | None = None, op: str = "stats") -> dict | None:
    """The running host instance's counters (pid, slots, subscribers,
    sessions, lost, failed), or with ``op="aggregates"`` what its kernel
    subscribers kept; None if none runs."""
    sock = _connect(path or socket_path())
    if sock is None:
        return None
    with sock:
        _send(sock, {"op": op})
        reply = _recv_line(sock, bytearray(), None, time.monotonic() + 30, limit=None)
    return reply if reply and reply.get("ok") else None


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
        return s
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None             # none runs (or a dead one's socket file)
    except PermissionError:
        s.close()
        group = ""
        with contextlib.suppress(OSError, KeyError):
            group = grp.getgrgid(os.stat(path).st_gid).gr_name
        raise HostError(f"{path}: permission denied: the host instance admits root"
                        + (f" and members of group {group}" if group and group != "root" else "")
                        ) from None


def _request_slot(sock: socket.socket, subscriptions: list[Subscription], buffer_size: int,
                  wait: float) -> tuple[dict | None, list[int]]:
    """Ask for a slot; the answer (None: closed unanswered) and its fds."""
    fds: list[int] = []
    try:
        _send(sock, {"op": "subscribe", "buffer_size": buffer_size,
                     "subscriptions": [[s.provider, s.level, s.keywords, s.flags]
                                       for s in subscriptions]})
        return _recv_line(sock, bytearray(), fds, time.monotonic() + wait), fds
    except (BrokenPipeError, ConnectionResetError):
        for fd in fds:
            os.close(fd)
        return None, []


def _lock_free(path: str) -> bool:
    """Whether no instance holds ``path``'s lock (none runs, starts or ends)."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _spawn_and_connect(path: str, cmd: list[str], wait: float) -> socket.socket:
    """Start a daemon (``cmd``) and connect once it listens.

    Another recorder may be starting one at the same moment: whichever
    holds the lock serves both. If ours found the lock taken by an instance
    that was ending, not starting, it is started again once the lock is
    free. ``wait`` bounds each start (an emulated machine compiles for a
    minute).
    """
    def start() -> subprocess.Popen:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        os.set_blocking(p.stderr.fileno(), False)
        return p

    proc = start()
    err = b""
    restarts = 0
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            s = _connect(path)
            if s is not None:
                return s
            with contextlib.suppress(BlockingIOError, TypeError):
                err += proc.stderr.read() or b""
            if proc.poll() is not None:
                if b"already runs" not in err:
                    line = err.decode(errors="replace").strip().splitlines()
                    raise HostStartFailed(f"the host instance did not start: "
                                    f"{line[-1] if line else proc.returncode}")
                if _lock_free(path) and restarts < 5:
                    proc.stderr.close()
                    proc, err = start(), b""
                    restarts += 1
                    deadline = time.monotonic() + wait
            time.sleep(0.05)
        raise HostError(f"the host instance did not listen on {path} within {wait:.0f} s")
    finally:
        proc.stderr.close()


__all__ = ["HostInstance", "HostSubscriber", "HostError", "HostMismatch", "HostStartFailed", "socket_path", "log_path",
           "status", "SOCKET_PATH",
           "DEFAULT_SLOTS"]
