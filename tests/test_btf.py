# SPDX-License-Identifier: BSD-2-Clause
"""pyelog.btf: struct member offsets from BTF.

Two halves:

* hand-built BTF blobs, assembled here from the documented layout
  (``Documentation/bpf/btf.rst``), with every kind placed before the
  structs so that a walker that skips trailing data wrongly finds garbage;
  and malformed blobs, each of which must raise a one-line BtfError;
* the running kernel's ``/sys/kernel/btf/vmlinux``, checked member by
  member against ``bpftool btf dump ... format raw`` (an independent
  reader: libbpf's), whose text this file parses and follows itself.

No eBPF is loaded, so nothing here is marked ``kernel``.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time

import pytest

from pyelog.kernel.btf import VMLINUX, Btf, BtfError, Member

# ---------------------------------------------------------------------------
# A tiny BTF assembler (layout from include/uapi/linux/btf.h).

K_INT, K_PTR, K_ARRAY, K_STRUCT, K_UNION, K_ENUM, K_FWD, K_TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
K_VOLATILE, K_CONST, K_RESTRICT, K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC = 9, 10, 11, 12, 13, 14, 15
K_FLOAT, K_DECL_TAG, K_TYPE_TAG, K_ENUM64 = 16, 17, 18, 19

HDR = 24


class Builder:
    """Collects types and strings; :meth:`build` lays out header, types, strings."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.strings = bytearray(b"\0")
        self.offsets = {"": 0}
        self.types: list[bytes] = []

    def s(self, name: str) -> int:
        if name not in self.offsets:
            self.offsets[name] = len(self.strings)
            self.strings += name.encode() + b"\0"
        return self.offsets[name]

    def raw(self, name: str, kind: int, vlen: int, size_or_type: int, trailer: bytes = b"",
            kflag: int = 0) -> int:
        info = kflag << 31 | kind << 24 | vlen
        self.types.append(struct.pack(self.e + "III", self.s(name), info, size_or_type) + trailer)
        return len(self.types)                                  # type id (1-based)

    def pos(self, tid: int) -> int:
        """Byte offset of type ``tid`` in the built blob (type_off is 0)."""
        return HDR + sum(len(t) for t in self.types[:tid - 1])

    def u32(self, *vals: int) -> bytes:
        return struct.pack(self.e + f"{len(vals)}I", *vals)

    def int_(self, name: str, size: int, bits: int | None = None, offset: int = 0, signed: bool = False) -> int:
        enc = (1 if signed else 0) << 24 | offset << 16 | (size * 8 if bits is None else bits)
        return self.raw(name, K_INT, 0, size, self.u32(enc))

    def ref(self, kind: int, target: int, name: str = "") -> int:
        return self.raw(name, kind, 0, target)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.raw("", K_ARRAY, 0, 0, self.u32(elem, index, n))

    def composite(self, kind: int, name: str, size: int, members, kflag: int = 0) -> int:
        """members: (name, type, bit offset[, bitfield size])."""
        body = b""
        for m in members:
            mname, mtype, bits, *bf = m
            off = (bf[0] << 24 | bits) if kflag else bits
            body += self.u32(self.s(mname), mtype, off)
        return self.raw(name, kind, len(members), size, body, kflag)

    def build(self, *, magic: int = 0xEB9F, version: int = 1, hdr_len: int = HDR,
              type_len: int | None = None, cut: int = 0) -> bytes:
        types = b"".join(self.types)
        tl = len(types) if type_len is None else type_len
        hdr = struct.pack(self.e + "HBBI4I", magic, version, 0, hdr_len, 0, tl, len(types), len(self.strings))
        hdr += b"\0" * (hdr_len - HDR)
        blob = hdr + types + bytes(self.strings)
        return blob[:len(blob) - cut] if cut else blob


def sample(endian: str = "<") -> Builder:
    """Every kind first, then the structs the tests look into."""
    b = Builder(endian)
    i32 = b.int_("int", 4, signed=True)                                  # 1
    u32 = b.int_("unsigned int", 4)                                      # 2
    u8 = b.int_("unsigned char", 1)                                      # 3
    b.int_("long int", 8, signed=True)                                   # 4 (pointer size)
    ptr = b.ref(K_PTR, i32)                                              # 5
    b.raw("", K_FUNC_PROTO, 3, i32, b.u32(b.s("a"), i32, b.s("b"), ptr, 0, 0))  # 6
    b.raw("f", K_FUNC, 0, 6)                                             # 7
    big = b.raw("big", K_ENUM64, 3, 8, b.u32(b.s("A"), 1, 0, b.s("B"), 0, 1, b.s("C"), 5, 5))  # 8
    b.raw("e", K_ENUM, 2, 4, b.u32(b.s("X"), 0, b.s("Y"), 0xFFFFFFFF))   # 9
    arr = b.array(i32, i32, 4)                                           # 10
    b.raw("fwd", K_FWD, 0, 0)                                            # 11
    myint = b.ref(K_TYPEDEF, i32, "myint")                               # 12
    cmy = b.ref(K_CONST, myint)                                          # 13
    vol = b.ref(K_VOLATILE, cmy)                                         # 14
    tag = b.ref(K_TYPE_TAG, vol, "user")                                 # 15
    cint = b.ref(K_TYPEDEF, tag, "cint_t")                               # 16 cint_t -> tag -> volatile -> const -> myint -> int
    b.ref(K_RESTRICT, ptr)                                               # 17
    b.raw("v", K_VAR, 0, i32, b.u32(1))                                  # 18
    b.raw(".data", K_DATASEC, 1, 4, b.u32(18, 0, 4))                     # 19
    b.raw("double", K_FLOAT, 0, 8)                                       # 20
    b.raw("tag", K_DECL_TAG, 0, i32, b.u32(0xFFFFFFFF))                  # 21

    inner = b.composite(K_STRUCT, "inner", 8, [("a", i32, 0), ("b", cint, 32)])
    inner_t = b.ref(K_TYPEDEF, inner, "inner_t")
    c_inner_t = b.ref(K_CONST, inner_t)
    halves = b.composite(K_STRUCT, "", 8, [("lo", u32, 0), ("hi", u32, 32)])
    anon_u = b.composite(K_UNION, "", 8, [("x", b.int_("long long unsigned int", 8), 0), ("", halves, 0)])
    flags = b.composite(K_STRUCT, "flags", 4, [("f1", u32, 0, 3), ("f2", u32, 3, 4), ("f3", u32, 7, 9),
                                               ("c", u8, 16, 0), ("f4", u32, 24, 8)], kflag=1)
    old_f = b.int_("", 4, bits=5, offset=2)
    old = b.composite(K_STRUCT, "old", 4, [("lead", u8, 0), ("g", old_f, 8), ("h", u8, 16)])
    b.composite(K_STRUCT, "outer", 72, [
        ("id", i32, 0), ("in", inner, 32), ("", anon_u, 96), ("fl", flags, 160), ("arr", arr, 192),
        ("p", ptr, 320), ("e", big, 384), ("t", cint, 448), ("it", c_inner_t, 480)])
    b.composite(K_UNION, "num", 8, [("i", i32, 0), ("o", old, 0)])
    assert b.types and big and vol and inner_t
    return b


@pytest.fixture(scope="module")
def btf() -> Btf:
    return Btf(sample().build())


@pytest.mark.parametrize("struct_name, path, want", [
    ("outer", "id", Member(0, 0, 0, 4)),
    ("outer", "in", Member(4, 0, 0, 8)),
    ("outer", "in.a", Member(4, 0, 0, 4)),
    ("outer", "in.b", Member(8, 0, 0, 4)),           # typedef/type_tag/volatile/const chain to int
    ("outer", "x", Member(12, 0, 0, 8)),             # inside the anonymous union
    ("outer", "lo", Member(12, 0, 0, 4)),            # anonymous struct inside the anonymous union
    ("outer", "hi", Member(16, 0, 0, 4)),
    ("outer", "fl", Member(20, 0, 0, 4)),
    ("outer", "fl.f1", Member(20, 0, 3, 4)),         # kind_flag bitfields
    ("outer", "fl.f2", Member(20, 3, 4, 4)),
    ("outer", "fl.f3", Member(20, 7, 9, 4)),         # straddles two bytes
    ("outer", "fl.c", Member(22, 0, 0, 1)),          # ordinary member of a kind_flag struct
    ("outer", "fl.f4", Member(23, 0, 8, 4)),         # byte-aligned bitfield is still a bitfield
    ("outer", "arr", Member(24, 0, 0, 16)),
    ("outer", "p", Member(40, 0, 0, 8)),
    ("outer", "e", Member(48, 0, 0, 8)),
    ("outer", "t", Member(56, 0, 0, 4)),
    ("outer", "it.b", Member(64, 0, 0, 4)),          # through const + typedef to a struct
    ("flags", "f3", Member(0, 7, 9, 4)),
    ("old", "g", Member(1, 2, 5, 4)),                # no kind_flag: INT offset/bits make the bitfield
    ("old", "h", Member(2, 0, 0, 1)),
    ("num", "o.g", Member(1, 2, 5, 4)),              # a named union as the outer type
])
def test_member(btf, struct_name, path, want):
    assert btf.member(struct_name, path) == want


def test_sizes_and_names(btf):
    assert btf.size_of("outer") == 72
    assert btf.size_of("inner") == 8
    assert btf.size_of("num") == 8
    assert btf.has_struct("inner") and btf.has_struct("num")
    assert not btf.has_struct("int") and not btf.has_struct("nope") and not btf.has_struct("")


def test_big_endian_blob():
    big = Btf(sample(">").build())
    assert big.member("outer", "it.b") == Member(64, 0, 0, 4)
    assert big.member("outer", "hi") == Member(16, 0, 0, 4)


def test_longer_header_and_load(tmp_path):
    data = sample().build(hdr_len=32)
    path = tmp_path / "btf"
    path.write_bytes(data)
    assert Btf.load(str(path)).member("outer", "in.b") == Member(8, 0, 0, 4)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("struct_name, path, words", [
    ("nope", "x", ["'nope'"]),
    ("outer", "nope", ["outer", "'nope'"]),
    ("outer", "in.nope", ["'in.nope'", "'nope'", "struct inner"]),
    ("outer", "id.x", ["'id'", "INT", "not a struct"]),
    ("outer", "fl.f1.x", ["'fl.f1'", "not a struct"]),
    ("outer", "in..a", ["'in..a'"]),
    ("outer", "", ["outer"]),
])
def test_unknown_member(btf, struct_name, path, words):
    with pytest.raises(BtfError) as exc:
        btf.member(struct_name, path)
    msg = one_line(exc)
    for w in words:
        assert w in msg


def test_unknown_struct_size(btf):
    with pytest.raises(BtfError) as exc:
        btf.size_of("nope")
    assert "'nope'" in one_line(exc)


def test_ambiguous_name():
    b = Builder()
    i32 = b.int_("int", 4)
    b.composite(K_STRUCT, "dup", 4, [("a", i32, 0)])
    b.composite(K_STRUCT, "dup", 8, [("b", i32, 32)])
    btf = Btf(b.build())
    assert btf.has_struct("dup")
    with pytest.raises(BtfError) as exc:
        btf.member("dup", "a")
    assert "ambiguous" in one_line(exc) and "2, 3" in str(exc.value)


def test_bad_magic():
    with pytest.raises(BtfError) as exc:
        Btf(sample().build(magic=0x1234))
    msg = one_line(exc)
    assert "magic" in msg and "byte offset 0" in msg


@pytest.mark.parametrize("data, words", [
    (b"", ["byte offset 0", "too short"]),
    (sample().build()[:10], ["byte offset 10", "header"]),
    (sample().build(version=2), ["byte offset 2", "version 2"]),
    (sample().build(hdr_len=8), ["byte offset 4", "header length 8"]),
])
def test_bad_header(data, words):
    with pytest.raises(BtfError) as exc:
        Btf(data)
    msg = one_line(exc)
    for w in words:
        assert w in msg


def test_truncated_file():
    """The header promises more than the file holds."""
    with pytest.raises(BtfError) as exc:
        Btf(sample().build(cut=5))
    msg = one_line(exc)
    assert "byte offset 20" in msg and "string section" in msg


def test_truncated_type_section():
    """type_len ends inside a type's trailing data (the ENUM64 at type 8)."""
    b = sample()
    at = b.pos(8)
    with pytest.raises(BtfError) as exc:
        Btf(b.build(type_len=at - HDR + 12 + 20))    # header plus 20 of its 36 trailing bytes
    msg = one_line(exc)
    assert f"byte offset {at}" in msg and "ENUM64" in msg and "type 8 " in msg


def test_type_section_cut_inside_header():
    b = sample()
    at = b.pos(3)
    with pytest.raises(BtfError) as exc:
        Btf(b.build(type_len=at - HDR + 7))
    assert f"byte offset {at}" in one_line(exc)


@pytest.mark.parametrize("kind", [0, 20, 31])
def test_unknown_kind(kind):
    b = Builder()
    b.int_("int", 4)
    b.raw("odd", kind, 0, 0)
    at = b.pos(2)
    with pytest.raises(BtfError) as exc:
        Btf(b.build())
    msg = one_line(exc)
    assert f"byte offset {at}" in msg and f"unknown kind {kind}" in msg


def test_bad_references():
    b = Builder()
    i32 = b.int_("int", 4)
    b.composite(K_STRUCT, "s", 8, [("dangling", 99, 0), ("v", 0, 32), ("i", i32, 36)])
    btf = Btf(b.build())
    with pytest.raises(BtfError) as exc:
        btf.member("s", "dangling")
    assert "type id 99" in one_line(exc)
    with pytest.raises(BtfError) as exc:
        btf.member("s", "v")
    assert "void" in one_line(exc)
    with pytest.raises(BtfError) as exc:
        btf.member("s", "i")                       # bit 36: not a byte, not a bitfield
    assert "bit 36" in one_line(exc)


def test_name_outside_string_section():
    b = Builder()
    b.int_("int", 4)
    b.types.append(struct.pack("<III", 10_000, K_STRUCT << 24, 0))
    at = b.pos(2)
    with pytest.raises(BtfError) as exc:
        Btf(b.build())
    assert f"byte offset {at}" in one_line(exc)


def test_load_missing_file(tmp_path):
    with pytest.raises(BtfError) as exc:
        Btf.load(str(tmp_path / "absent"))
    assert "absent" in one_line(exc)


# ---------------------------------------------------------------------------
# The running kernel, against bpftool.

# What the TCP provider asks for, plus neighbours of interest.
KERNEL_MEMBERS = [
    ("inet_connection_sock", "icsk_rto"),
    ("inet_connection_sock", "icsk_inet.inet_sport"),
    ("tcp_sock", "mdev_us"),
    ("tcp_sock", "srtt_us"),
    ("tcp_sock", "snd_cwnd"),
    ("tcp_sock", "rx_opt.rcv_wscale"),
    ("tcp_sock", "rx_opt.snd_wscale"),
    ("sock", "sk_shutdown"),
    ("sock", "__sk_common.skc_cookie"),
    ("sock_common", "skc_state"),
    ("sock_common", "skc_family"),
    ("sock_common", "skc_cookie"),
    ("sock_common", "skc_nulls_node.pprev"),
    ("sock_common", "skc_daddr"),
    ("sock_common", "skc_dport"),
    ("sk_buff", "cb"),
    ("tcp_skb_cb", "seq"),
    ("tcp_skb_cb", "tcp_gso_segs"),
]

_HEAD = re.compile(r"\[(\d+)\] (\w+) '([^']*)'(.*)")
_MEMBER = re.compile(r"\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?$")


class RawDump:
    """``bpftool btf dump format raw`` text, indexed by type id and STRUCT/UNION name."""

    def __init__(self, text: str) -> None:
        self.types: dict[int, tuple[str, str, str]] = {}     # id -> (kind, name, attributes)
        self.members: dict[int, list[str]] = {}              # id -> its indented lines
        self.by_name: dict[str, list[int]] = {}
        lines: list[str] = []
        for line in text.splitlines():
            if line.startswith("\t"):
                lines.append(line)
                continue
            m = _HEAD.match(line)
            if not m:
                continue
            tid, kind, name = int(m[1]), m[2], m[3]
            self.types[tid] = (kind, name, m[4])
            lines = self.members[tid] = []
            if kind in ("STRUCT", "UNION") and name != "(anon)":
                self.by_name.setdefault(name, []).append(tid)

    def attr(self, tid: int, key: str) -> int:
        return int(re.search(rf"\b{key}=(\d+)", self.types[tid][2])[1])

    def resolve(self, tid: int) -> int:
        while self.types[tid][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            tid = self.attr(tid, "type_id")
        return tid

    def size(self, tid: int) -> int:
        tid = self.resolve(tid)
        kind = self.types[tid][0]
        if kind == "PTR":
            return 8
        if kind == "ARRAY":
            return self.attr(tid, "nr_elems") * self.size(self.attr(tid, "type_id"))
        return self.attr(tid, "size")

    def find(self, tid: int, name: str) -> tuple[int, int, int] | None:
        """(bits offset, type id, bitfield size) of ``name`` in ``tid``, through '(anon)' members."""
        for line in self.members[tid]:
            m = _MEMBER.match(line)
            mname, mtype, bits, bf = m[1], int(m[2]), int(m[3]), int(m[4] or 0)
            if mname == name:
                return bits, mtype, bf
            if mname == "(anon)" and self.types[self.resolve(mtype)][0] in ("STRUCT", "UNION"):
                hit = self.find(self.resolve(mtype), name)
                if hit:
                    return bits + hit[0], hit[1], hit[2]
        return None

    def member(self, struct_name: str, path: str) -> Member:
        (tid,) = self.by_name[struct_name]
        bits = 0
        for name in path.split("."):
            hit = self.find(tid, name)
            assert hit, f"bpftool dump: no {name} in {struct_name}.{path}"
            bits += hit[0]
            tid = self.resolve(hit[1])
        bf = hit[2]
        return Member(bits // 8, bits % 8 if bf else 0, bf, self.size(hit[1]))


@pytest.fixture(scope="module")
def raw_dump() -> RawDump:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing: this kernel exposes no BTF (CONFIG_DEBUG_INFO_BTF)")
    bpftool = shutil.which("bpftool") or next(
        (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if os.access(p, os.X_OK)), None)
    if bpftool is None:
        pytest.skip("bpftool is not installed (apt install bpftool): nothing to compare against")
    run = subprocess.run([bpftool, "btf", "dump", "file", VMLINUX, "format", "raw"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"bpftool btf dump failed: {run.stderr.strip().splitlines()[-1:]}")
    return RawDump(run.stdout)


@pytest.fixture(scope="module")
def vmlinux(raw_dump) -> Btf:
    return Btf.load()


@pytest.mark.parametrize("struct_name, path", KERNEL_MEMBERS, ids=[f"{s}.{p}" for s, p in KERNEL_MEMBERS])
def test_kernel_member_matches_bpftool(vmlinux, raw_dump, struct_name, path):
    assert vmlinux.member(struct_name, path) == raw_dump.member(struct_name, path)


def test_kernel_known_shapes(vmlinux, raw_dump):
    """Facts the TCP provider relies on, independent of this kernel's exact layout."""
    for name in ("sock", "sock_common", "tcp_sock", "inet_connection_sock", "sk_buff", "tcp_skb_cb"):
        assert vmlinux.has_struct(name)
        assert vmlinux.size_of(name) == raw_dump.size(raw_dump.by_name[name][0])
    wscale = vmlinux.member("tcp_sock", "rx_opt.rcv_wscale")
    assert wscale.bit_size == 4                                  # a bitfield in every kernel
    assert vmlinux.member("sk_buff", "cb").size == 48
    assert vmlinux.member("sock_common", "skc_nulls_node.pprev").size == 8
    assert vmlinux.member("sock", "__sk_common.skc_cookie") == vmlinux.member("sock_common", "skc_cookie")
    assert vmlinux.member("tcp_skb_cb", "seq") == Member(0, 0, 0, 4)
    with pytest.raises(BtfError, match="'no_such_member'"):
        vmlinux.member("tcp_sock", "no_such_member")


def test_kernel_load_is_fast(raw_dump):
    """Load plus 15 lookups, best of three, well under a second."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        btf = Btf.load()
        for struct_name, path in KERNEL_MEMBERS[:15]:
            btf.member(struct_name, path)
        best = min(best, time.perf_counter() - t0)
    assert best < 1.0, f"load + 15 lookups took {best:.3f} s"
