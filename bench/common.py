# SPDX-License-Identifier: BSD-2-Clause
"""Shared helpers for the benchmarks in bench/ (run them from the repo root).

Every benchmark prints human-readable detail lines, then exactly one result
line of the form ``<name>: <key>=<value> ... ratio=<x>`` (see
:func:`result`), so runs can be compared with ``grep '^[a-z]*:'``.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

# bcc 0.26 warns on every str argument it converts to bytes.
import warnings  # noqa: E402
warnings.filterwarnings("ignore", category=DeprecationWarning)


def result(name: str, **figures) -> str:
    """Print (and return) the one comparable result line of a benchmark."""
    parts = []
    for k, v in figures.items():
        if isinstance(v, float):
            v = f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        parts.append(f"{k}={v}")
    line = f"{name}: " + " ".join(parts)
    print(line, flush=True)
    return line


def note(text: str) -> None:
    """A detail line (indented, so it never looks like a result line)."""
    print(f"  {text}", flush=True)


def machine() -> str:
    """One line naming the machine and the date, for the README."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 30)
    return (f"{datetime.date.today()} {platform.node()} kernel {platform.release()} "
            f"{os.cpu_count()}x {cpu} {mem} GiB python {platform.python_version()}")


class Steal:
    """CPU time the hypervisor took from this VM ("steal" in /proc/stat)
    while a benchmark ran, as a share of all CPU time: on a shared machine
    it is what makes a reader miss its wake-up, so recorder lines show it."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return ticks[7] if len(ticks) > 7 else 0, sum(ticks)

    def pct(self) -> float:
        steal, total = self._read()
        return 100 * (steal - self.start[0]) / max(total - self.start[1], 1)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# -- C drivers, compiled at bench time --------------------------------------------

_built: dict[str, str] = {}
_tmp: str | None = None


def scratch_dir() -> str:
    """This run's temp directory (captures and compiled drivers go here, on
    disk rather than tmpfs); :func:`cleanup` removes it."""
    global _tmp
    if _tmp is None:
        _tmp = tempfile.mkdtemp(prefix="pyelog-bench-", dir=os.environ.get("BENCH_TMP"))
    return _tmp


# Libraries a driver links with (Debian's -dev packages, installed by setup.sh).
_LIBS = {"libbpf_ringbuf": ["-lbpf"]}


def driver(name: str) -> str:
    """Compile bench/drivers/<name>.c with gcc into the temp dir (once); its path."""
    if name not in _built:
        exe = os.path.join(scratch_dir(), name)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, str(BENCH / "drivers" / f"{name}.c"),
                        *_LIBS.get(name, [])], check=True)
        _built[name] = exe
    return _built[name]


def cleanup() -> None:
    if _tmp is not None:
        shutil.rmtree(_tmp, ignore_errors=True)


def parse_kv(text: str) -> dict[str, float]:
    """``a=1 b=2.5`` (last such line of the text) -> {"a": 1.0, "b": 2.5}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kv = dict(re.findall(r"(\w+)=([-\d.eE+]+)", line))
        if kv:
            out = {k: float(v) for k, v in kv.items()}
    return out


class Getppid:
    """A gated getppid_loop process: its pid is known before it starts calling."""

    def __init__(self, seconds: float, threads: int = 1, rate: float = 0, first_cpu: int = 0):
        self.proc = subprocess.Popen(
            [driver("getppid_loop"), "-g", "-s", str(seconds), "-t", str(threads),
             "-r", str(rate), "-c", str(first_cpu)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def wait(self) -> dict[str, float]:
        """{"calls", "seconds", "rate"} once it has finished."""
        out = self.proc.stdout.read()
        self.proc.wait()
        return parse_kv(out)


def testrun(prog_id: int, seconds: float, threads: int = 1, rate: float = 0) -> dict[str, float]:
    """Run bench/drivers/testrun_loop on a batch emitter (flat out, or ``rate``
    events/s); {"calls" (events emitted), "seconds", "rate"}."""
    out = subprocess.run([driver("testrun_loop"), "-p", str(prog_id), "-s", str(seconds),
                          "-t", str(threads), "-r", str(rate)],
                         check=True, capture_output=True, text=True).stdout
    return parse_kv(out)


# -- processes ------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    """Current resident set of a process, KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- BPF program run time (kernel.bpf_stats, scoped to an fd) ---------------------------

def enable_bpf_stats() -> int | None:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run_time_ns/run_cnt are counted
    for every program while the returned fd is open (it ends with the
    process, unlike the kernel.bpf_stats_enabled sysctl). None if refused."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 32)()          # attr.enable_stats.type = 0 (RUN_TIME)
    fd = libc.syscall(321, 32, ctypes.byref(attr), 4)   # SYS_bpf (x86_64), BPF_ENABLE_STATS
    return fd if fd >= 0 else None


def _fdinfo(fd: int | str, pid: int | str = "self") -> dict[str, str]:
    info = {}
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    return info


def prog_runtime(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a BPF program fd of this process (its fdinfo)."""
    info = _fdinfo(fd)
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


def prog_id(fd: int) -> int:
    """The kernel id of a BPF program fd of this process."""
    return int(_fdinfo(fd)["prog_id"])


def process_prog_ns(pid: int) -> int:
    """Run time (ns) summed over the BPF programs process ``pid`` holds
    (each program once, however many fds it has; 0 without stats). Tail
    calls count in the program that made them."""
    seen: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        with contextlib.suppress(OSError):
            info = _fdinfo(fd, pid)
            if "run_time_ns" in info:      # a program's fd (a link's names its prog_id too)
                seen[info["prog_id"]] = int(info["run_time_ns"])
    return sum(seen.values())


def total_prog_ns(funcs) -> int:
    """Run time (ns) summed over bcc Function objects (0 if no stats)."""
    return sum(prog_runtime(fn.fd)[0] for fn in funcs)


def busiest_prog_ns(funcs) -> float:
    """ns per run of the most-run program among bcc Function objects (0 if no stats)."""
    best = (0, 0)
    for fn in funcs:
        ns, cnt = prog_runtime(fn.fd)
        if cnt > best[1]:
            best = (ns, cnt)
    return best[0] / best[1] if best[1] else 0.0


# -- network namespace ------------------------------------------------------------------

@contextlib.contextmanager
def namespace(prefix: str = "pyelog-bench") -> Iterator[str]:
    """A fresh network namespace with loopback up, removed afterwards.

    All benchmark traffic runs inside it (``ip netns exec NAME ...``), on its
    own loopback: nothing leaves the machine.
    """
    from pyroute2 import NetNS, netns
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    netns.create(name)
    try:
        with NetNS(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        with contextlib.suppress(Exception):
            netns.remove(name)


# -- recorders under test, as child processes ---------------------------------------

class Recorder:
    """``bench/record.py`` (pyelog) in a child process: start, wait for ready, stop."""

    script = "record.py"

    def __init__(self, *args: str, cpu: int | None = None):
        argv = [sys.executable, str(BENCH / self.script), *args]
        if cpu is not None:             # taskset execs: same pid
            argv = ["taskset", "-c", str(cpu), *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.proc.kill()
            raise RuntimeError(f"{self.script} failed to start: {line!r}")
        self.prog_id = int(parse_kv(line).get("prog_id", 0))   # batch emitter, if any

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> dict[str, float]:
        """SIGTERM, final drain; the recorder's figures (written, dropped, ...)."""
        self.proc.send_signal(signal.SIGTERM)
        out = self.proc.stdout.read()
        self.proc.wait()
        return parse_kv(out)


class BccRecorder(Recorder):
    """``bench/bcc_record.py`` (bcc's usual Python path) in a child process."""

    script = "bcc_record.py"


class TcpStates(Recorder):
    """``bench/bcc_tcpstates.py`` (bcc's tcpstates, inline) in a child process."""

    script = "bcc_tcpstates.py"


class HooksFloor(Recorder):
    """``bench/hooks_floor.py`` (the TCP provider's hooks, empty) in a child process."""

    script = "hooks_floor.py"
