# SPDX-License-Identifier: BSD-2-Clause
"""A ``pyelog`` recorder running in the background, as users run it, for kernel tests.

``-p`` is always passed: the recorder's ``[Providers]`` line on stderr says
that its programs are attached, which (unlike looking for any sock_ops link
in bpftool) holds even while other recorders run on the machine.
:func:`records` and :func:`assert_header_counts` read back the capture it wrote.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyelog.records.format import ElogReader

PYELOG = [sys.executable, "-m", "pyelog.cli"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A test run killed mid-test must not leave a recorder attached to the
    # kernel (seen: an orphan from a killed pytest kept recording for an hour).
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
# Deadlines of kernel tests are multiplied by this: an emulated VM (QEMU TCG)
# compiles and loads the programs in ~50 s instead of ~1 s (vm-test sets 5).
TIME_SCALE = float(os.environ.get("PYELOG_TEST_TIME_SCALE", "1"))


#: Recorders started and not yet reaped: conftest kills what a failed test
#: left running (it would keep a host instance alive for the next tests).
running: list["Recorder"] = []


class Recorder:
    """A background ``pyelog -p ...``; its stderr is collected by a thread."""

    def __init__(self, args: list[str], stdout=subprocess.DEVNULL):
        self.p = subprocess.Popen(PYELOG + ["-p", *args], stdout=stdout, stderr=subprocess.PIPE,
                                  text=True, preexec_fn=_die_with_parent)
        running.append(self)
        self.err_lines: list[str] = []
        self._t = threading.Thread(target=self._collect, daemon=True)
        self._t.start()
        attach_s = 60 * TIME_SCALE
        deadline = time.monotonic() + attach_s
        while not any(line.startswith("[Providers]") for line in self.err_lines):
            if self.p.poll() is not None:
                self._t.join(5)
                pytest.fail(f"pyelog exited early ({self.p.returncode}): {self.stderr}")
            if time.monotonic() > deadline:
                self.p.kill()
                pytest.fail(f"pyelog did not attach within {attach_s:g} s")
            time.sleep(0.1)
        time.sleep(0.2)

    def _collect(self) -> None:
        for line in self.p.stderr:
            self.err_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def stop(self, sig: int = signal.SIGTERM, settle: float = 0.5) -> int:
        time.sleep(settle)
        self.p.send_signal(sig)
        try:
            rc = self.p.wait(60 * TIME_SCALE)
        except subprocess.TimeoutExpired:
            self.p.kill()
            pytest.fail(f"pyelog did not stop on signal {sig}")
        self._t.join(10)
        assert "Traceback" not in self.stderr, self.stderr
        return rc

    def holder(self) -> int:
        """The pid holding this capture's programs: the host instance the
        recorder subscribes to, or the recorder itself (a private instance)."""
        from pyelog.kernel.host import status
        st = status()
        if st and any(pid == self.p.pid for pid, _uid, _slot in st["attached"]):
            return st["pid"]
        return self.p.pid

    def bpf_ids(self, pid: int | None = None) -> tuple[set[int], set[int]]:
        """(prog ids, link ids) the recorder (or ``pid``) holds fds for."""
        progs, links = set(), set()
        fdinfo = f"/proc/{pid or self.p.pid}/fdinfo"
        for fd in os.listdir(fdinfo):
            try:
                text = Path(fdinfo, fd).read_text()
            except OSError:
                continue
            for key, bucket in (("prog_id", progs), ("link_id", links)):
                m = re.search(rf"^{key}:\s*(\d+)", text, re.M)
                if m:
                    bucket.add(int(m.group(1)))
        return progs, links

    def nice(self, pid: int | None = None) -> int:
        """The nice value of the recorder's main thread (or ``pid``'s),
        field 19 of /proc/PID/stat."""
        stat = Path(f"/proc/{pid or self.p.pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])

    def events_received(self) -> int:
        m = re.search(r"Events received: (\d+)", self.stderr)
        assert m, self.stderr
        return int(m.group(1))


def wait_detached(progs: set[int], links: set[int] = frozenset(), seconds: float = 10.0,
                  pid: int | None = None) -> None:
    """Fail unless none of these programs and links exists any more (and
    process ``pid`` has ended) within ``seconds`` (bpftool, the kernel's own
    lists; freed after an RCU grace period, and a host instance detaches
    once it sees its last subscriber go)."""
    import json
    deadline = time.monotonic() + seconds * TIME_SCALE
    while True:
        if pid is not None and os.path.exists(f"/proc/{pid}"):
            if time.monotonic() > deadline:
                pytest.fail(f"process {pid} (the host instance) outlived its last subscriber")
            time.sleep(0.1)
            continue
        # check=True: a bpftool that fails must not read as "nothing left".
        live_progs = {p["id"] for p in json.loads(subprocess.run(
            ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout or "[]")}
        live_links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True,
                                               text=True, check=True).stdout or "[]")
        left_progs = progs & (live_progs | {lk.get("prog_id") for lk in live_links})
        left_links = links & {lk["id"] for lk in live_links}
        if not left_progs and not left_links:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"programs {sorted(left_progs)} and links {sorted(left_links)} outlived "
                        "their owner")
        time.sleep(0.1)


def records(path) -> list:
    """Every record of a capture the recorder wrote."""
    with ElogReader(path) as r:
        return list(r)


def assert_header_counts(path) -> int:
    """A capture's header counts exactly the records it holds, none cut
    short (the recorder stopped cleanly); returns that count."""
    with ElogReader(path) as r:
        n = sum(1 for _ in r)
        assert r.header.event_count == n, path
        assert r.truncated_bytes == 0
    return n
