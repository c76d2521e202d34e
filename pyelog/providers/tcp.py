"""The Linux TCP provider: every TCP socket of the host, session id = socket cookie.

Programs (bpf/tcp_provider.bpf.c): a sock_ops program attached to the
cgroup-v2 root with a BPF link (it goes away with the recorder, even after
SIGKILL), and tcp tracepoints auto-attached by bcc through perf-event fds.
Events follow schemas/tcp_eventlog_schema.src.
"""
from __future__ import annotations

from pathlib import Path

from pyelog.loader import EventlogError, Loader, ProviderInstance, ProviderSpec, attach_cgroup_link

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schemas" / "tcp_eventlog_schema.src"
SOURCE = ROOT / "bpf" / "tcp_provider.bpf.c"
BPF_CGROUP_SOCK_OPS = 3


def cgroup2_root() -> str:
    """Where the cgroup-v2 hierarchy is mounted (its root sees every socket)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, where, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return where
    raise EventlogError("no cgroup2 file system is mounted (the TCP provider attaches sock_ops there)")


def _attach(loader: Loader, inst: ProviderInstance) -> None:
    from bcc import BPF
    fn = loader.bpf.load_func(inst.fn("tcp_sockops"), BPF.SOCK_OPS)
    loader.add_link(attach_cgroup_link(fn.fd, cgroup2_root(), BPF_CGROUP_SOCK_OPS))


def producer_header() -> str:
    """The producer header generated from the TCP schema."""
    from pyelog.codegen import generate_producer
    from pyelog.schema import load_schema
    return generate_producer(load_schema(SCHEMA))


def provider(default_enabled: bool = True) -> ProviderSpec:
    """The TCP provider spec (one instance per loader: its maps are not per-instance)."""
    return ProviderSpec(name="tcp", source=SOURCE.read_text(), header=producer_header(),
                        attach=_attach, default_enabled=default_enabled)
