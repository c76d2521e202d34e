# SPDX-License-Identifier: BSD-2-Clause
"""The bpf(2) calls pyelog makes itself, and whether this process can make any.

bcc compiles, loads and attaches most programs; what it does not offer is
here, as plain ctypes wrappers of the system call:

* :func:`prog_test_run` -- run a program once (BPF_PROG_TEST_RUN): the
  user-space emit path (dump-state replays, DUMP_COMPLETE) and the test
  provider's on-demand events;
* :func:`attach_cgroup_link` -- attach a cgroup program with a BPF link
  (BPF_LINK_CREATE), which lives exactly as long as its fd, so a killed
  recorder leaves nothing attached (BPF_PROG_ATTACH would outlive it);
* :func:`helpers_allowed` -- whether a program type may call some helpers
  (loads a three-instruction program), for the features a kernel offers;
* :func:`unavailable_reason` -- the one check of "can this process load
  eBPF here" that the loader, the CLI, ``pyelog selftest`` and the test
  suite share.
"""
from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable
from pathlib import Path

__all__ = ["prog_test_run", "attach_cgroup_link", "helpers_allowed", "unavailable_reason",
           "BPF_PROG_TYPE_SOCK_OPS", "BPF_PROG_TYPE_CGROUP_SKB", "BPF_PROG_TYPE_CGROUP_SOCKOPT",
           "BPF_CGROUP_INET_INGRESS", "BPF_CGROUP_INET_EGRESS", "BPF_CGROUP_SOCK_OPS",
           "BPF_CGROUP_SETSOCKOPT", "BPF_FUNC_GET_CURRENT_PID_TGID"]

# include/uapi/linux/bpf.h
_SYS_BPF = 321 if os.uname().machine == "x86_64" else 280
_BPF_PROG_LOAD = 5
_BPF_PROG_TEST_RUN = 10
_BPF_LINK_CREATE = 28
_BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_PROG_TYPE_CGROUP_SKB = 8
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_CGROUP_SOCKOPT = 25
BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
BPF_CGROUP_SOCK_OPS = 3
BPF_CGROUP_SETSOCKOPT = 22
BPF_FUNC_GET_CURRENT_PID_TGID = 14

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Structure | ctypes.Array, what: str) -> int:
    r = _libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_long(cmd), ctypes.byref(attr),
                      ctypes.c_uint(ctypes.sizeof(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return r


class _TestRunAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


class _LinkCreateAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("_pad", ctypes.c_uint64 * 6)]


def prog_test_run(prog_fd: int, args: Iterable[int], cpu: int | None = None) -> int:
    """Run a raw-tracepoint program once with ``args`` as its u64 context.

    cpu=None runs it here (process context, preemption off); a CPU number
    runs it on that CPU from an IPI (hard-irq context). Returns the
    program's return value (as signed 32-bit).
    """
    vals = [int(a) & 0xFFFFFFFFFFFFFFFF for a in args]
    # The kernel wants ctx_size_in >= the highest argument the program reads:
    # always pass the maximum (12 u64), zero-padded.
    vals += [0] * (12 - len(vals))
    ctx = (ctypes.c_uint64 * 12)(*vals)
    attr = _TestRunAttr(prog_fd=prog_fd, ctx_size_in=8 * len(vals), ctx_in=ctypes.addressof(ctx))
    if cpu is not None:
        attr.flags = _BPF_F_TEST_RUN_ON_CPU
        attr.cpu = cpu
    _bpf(_BPF_PROG_TEST_RUN, attr, "BPF_PROG_TEST_RUN")
    return ctypes.c_int32(attr.retval).value


def attach_cgroup_link(prog_fd: int, cgroup_path: str, attach_type: int) -> int:
    """Attach a cgroup program with BPF_LINK_CREATE; returns the link fd.

    The attachment lives exactly as long as the fd (unlike BPF_PROG_ATTACH,
    which outlives its process): close it, or die, and it is gone.
    attach_type: e.g. :data:`BPF_CGROUP_SOCK_OPS`.
    """
    cg = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = _LinkCreateAttr(prog_fd=prog_fd, target_fd=cg, attach_type=attach_type)
        return _bpf(_BPF_LINK_CREATE, attr, "BPF_LINK_CREATE")
    finally:
        os.close(cg)


def helpers_allowed(prog_type: int, attach_type: int, helpers: tuple[int, ...]) -> bool:
    """Whether this kernel lets a program of ``prog_type`` call every helper
    of ``helpers``, helpers without arguments (loads ``call h; ...; r0 = 1;
    exit``)."""
    insns = b"".join(struct.pack("<BBhi", 0x85, 0, 0, h) for h in helpers)
    insns += struct.pack("<BBhi", 0xb7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = (ctypes.c_char * 128)()
    struct.pack_into("<IIQQ", attr, 0, prog_type, len(insns) // 8,
                     ctypes.addressof(buf), ctypes.addressof(lic))
    struct.pack_into("<I", attr, 68, attach_type)      # expected_attach_type
    try:
        fd = _bpf(_BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError:
        return False
    os.close(fd)
    return True


def programs_held(pid: int) -> set[int]:
    """The ids of the eBPF programs process ``pid`` holds file descriptors
    of, from /proc/PID/fdinfo (no bpftool needed)."""
    ids = set()
    for f in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            for line in f.read_text().splitlines():
                if line.startswith("prog_id:"):
                    ids.add(int(line.split()[1]))
        except OSError:  # the fd closed while we looked
            pass
    return ids


def unavailable_reason() -> str | None:
    """Why this process cannot load eBPF programs, as one line of advice;
    None when it can (root, bcc importable, BPF in the kernel, headers for
    bcc where ``make setup`` puts them)."""
    if os.geteuid() != 0:
        return "loading eBPF programs needs root: run it as root (e.g. with sudo)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return ("bcc is not importable: install Debian's python3-bpfcc (`make setup` does, "
                "into a --system-site-packages venv)")
    except Exception as e:  # a broken bcc install raises all sorts
        return f"bcc failed to import ({e}): reinstall python3-bpfcc"
    if not os.path.exists("/sys/kernel/btf/vmlinux") and not os.path.exists("/proc/kallsyms"):
        return "no BPF support visible in this kernel"
    if not os.path.isdir(f"/lib/modules/{os.uname().release}/build"):
        return "kernel headers missing at /lib/modules/$(uname -r)/build (run `make setup`)"
    return None
