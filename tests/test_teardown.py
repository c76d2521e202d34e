"""A SIGKILLed owner leaves nothing of pyelog attached or loaded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import have

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
from pyelog.kernel.loader import Loader, Subscription
from pyelog.providers import test as tp
L = Loader([tp.provider(getppid_hook=True)])
L.add_ring_subscriber(65536, [Subscription("test", 5, 0xFFFFFFFF)])
L.start()
print("ready", flush=True)
time.sleep(600)
"""


def _progs_of(pid: int) -> set[int]:
    """Program ids held by a process's fds (/proc fdinfo; works without
    a bpftool built with pid support)."""
    ids = set()
    d = Path(f"/proc/{pid}/fdinfo")
    for f in d.iterdir():
        try:
            for line in f.read_text().splitlines():
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def _perf_of(pid: int) -> list:
    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, check=True)
    return [e for e in json.loads(out.stdout or "[]") if e.get("pid") == pid]


def _all_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {p["id"] for p in json.loads(out.stdout or "[]")}


@pytest.mark.skipif(not have("bpftool"), reason="bpftool not installed")
def test_sigkill_leaves_nothing_attached():
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        ids = _progs_of(child.pid)
        assert ids, "bpftool does not show the child's programs"
        assert _perf_of(child.pid), "the tracepoint attachment is not visible"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 10
    while ids & _all_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & _all_prog_ids(), "programs outlived their SIGKILLed owner"
    assert not _perf_of(child.pid)


def test_close_detaches():
    from pyelog.kernel.loader import Loader
    from pyelog.providers import test as tp
    L = Loader([tp.provider(getppid_hook=True)])
    L.add_ring_subscriber(65536)
    L.start()
    ids = _progs_of(os.getpid())
    L.close()
    L.close()
    assert not _perf_of(os.getpid()) if have("bpftool") else True
    if ids:
        deadline = time.monotonic() + 10
        while ids & _all_prog_ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not ids & _all_prog_ids()
