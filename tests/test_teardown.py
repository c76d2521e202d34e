# SPDX-License-Identifier: BSD-2-Clause
"""Teardown: how pyelog ends, and what it leaves behind, on the running kernel.

Checked against the kernel's own view (``/proc/<pid>/fdinfo`` and bpftool's
lists of programs, links and perf attachments), never against pyelog's word:

* the Loader API: a SIGKILLed owner leaves nothing attached or loaded, and
  ``Loader.close()`` (twice) detaches everything;
* the recorder as users run it (``pyelog -c tcp -o FILE``, traffic made in
  namespaces of the test's own): SIGINT is a clean stop (the header counts
  every event received), SIGKILL leaves no program or link behind (of the
  recorder's own instance, or of the host instance it started and was the
  only subscriber of) and a file that reads up to its last whole record.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyelog.kernel.bpf import programs_held
from pyelog.records.format import ElogReader
from tests.conftest import have
from tests.helpers.netns import exchange_alone as exchange
from tests.helpers.recorder import (PYELOG, TIME_SCALE, Recorder, assert_header_counts, records,
                                    wait_detached)

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parent.parent

# Run from the repository root (cwd), where ``python -c`` finds pyelog.
CHILD = r"""
import time, warnings
warnings.simplefilter("ignore")
from pyelog.kernel.loader import Loader, Subscription
from pyelog.providers import test as tp
L = Loader([tp.provider(getppid_hook=True)])
L.add_ring_subscriber(65536, [Subscription("test", 5, 0xFFFFFFFF)])
L.start()
print("ready", flush=True)
time.sleep(600)
"""


def _perf_of(pid: int) -> list:
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, check=True)
    return [e for e in json.loads(out.stdout or "[]") if e.get("pid") == pid]


# -- the Loader API ------------------------------------------------------------------

@pytest.mark.skipif(not have("bpftool"), reason="bpftool not installed")
def test_sigkill_leaves_nothing_attached():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "ready"
        ids = programs_held(child.pid)
        assert ids, "bpftool does not show the child's programs"
        assert _perf_of(child.pid), "the tracepoint attachment is not visible"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    wait_detached(ids)
    assert not _perf_of(child.pid)


def test_close_detaches():
    from pyelog.kernel.loader import Loader
    from pyelog.providers import test as tp
    L = Loader([tp.provider(getppid_hook=True)])
    L.add_ring_subscriber(65536)
    L.start()
    ids = programs_held(os.getpid())
    L.close()
    L.close()
    assert not _perf_of(os.getpid()) if have("bpftool") else True
    if ids:
        wait_detached(ids)


# -- the recorder (from test_capture_live.py) ------------------------------------------

def test_sigint_is_a_clean_stop(tmp_path):
    path = tmp_path / "int.elog"
    rec = Recorder(["-s", "-c", "tcp", "-o", str(path)])
    try:
        info = exchange(5103)
    finally:
        assert rec.stop(signal.SIGINT) == 0
    n = assert_header_counts(path)
    assert n == rec.events_received()
    sids = {r.session_id for r in records(path)}
    assert {info.client, info.server} <= sids


@pytest.mark.parametrize("instance", ["--private", "--shared"])
def test_sigkill_file_reads_and_nothing_stays_attached(tmp_path, instance):
    """Whichever process holds the programs (the recorder's own instance,
    or the host instance it started and is the only subscriber of)."""
    path = tmp_path / "killed.elog"
    rec = Recorder([instance, "-c", "tcp", "-o", str(path)])
    holder = rec.holder()
    assert (holder == rec.p.pid) == (instance == "--private")
    progs, links = rec.bpf_ids(holder)
    assert progs and links, "the instance should hold program and link fds"
    exchange(5104)
    time.sleep(1.5)                     # a drain or two reach the file
    rec.stop(signal.SIGKILL, settle=0)
    wait_detached(progs, links)
    # What is there reads, under a header patched at the last flush: it
    # counts records the file holds (never more), and -r accepts it.
    recs = records(path)
    assert recs, "a second of drains should have reached the file"
    with ElogReader(path) as r:
        assert 0 < r.header.event_count <= len(recs)
        assert r.header.dropped_events == 0
    p = subprocess.run(PYELOG + ["-r", str(path)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


# -- the recorder (from test_tcp_capture.py; renamed: the Loader test above has its name) --

def test_sigkill_tcp_capture_leaves_nothing_attached(tmp_path):
    """As users run it: the recorder subscribes to the host instance it
    started; when it is SIGKILLed, the instance ends and detaches all."""
    path = tmp_path / "killed.elog"
    rec = Recorder(["-c", "tcp", "-o", str(path)])
    exchange(5003, send=5000)
    time.sleep(1.5 * TIME_SCALE)
    holder = rec.holder()
    assert holder != rec.p.pid, "pyelog -c should have started a host instance"
    progs, links = rec.bpf_ids(holder)
    assert links                       # sock_ops and setsockopt links at least
    rec.p.kill()
    rec.p.wait(10 * TIME_SCALE)
    wait_detached(progs, links)
    # Whatever reached the file reads up to its last whole record.
    if os.path.getsize(path):
        list(ElogReader(path))
