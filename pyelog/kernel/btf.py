# SPDX-License-Identifier: BSD-2-Clause
"""Struct member offsets from the running kernel's BTF.

Reads a raw BTF blob, by default ``/sys/kernel/btf/vmlinux``, and answers
"at which byte (and bit) of struct X does member a.b.c sit, and how big is
it". The TCP provider uses this instead of the kernel headers bcc compiles
against, which may belong to another kernel version: the loader looks the
offsets up here and hands them to the BPF C code as ``#define``\\ s, which
reads ``bpf_probe_read_kernel(&v, size, (void *)sk + OFFSET)``.

Format rules followed (``Documentation/bpf/btf.rst``, ``include/uapi/linux/btf.h``):

* The blob is ``struct btf_header`` (magic ``0xeB9F``, version 1, flags,
  ``hdr_len``, then ``type_off``/``type_len``/``str_off``/``str_len``, all
  ``u32`` and relative to the end of the header, i.e. to ``hdr_len``), the
  type section and the string section. The byte order is the one in which
  the magic reads ``0xeB9F`` (little-endian on x86 and arm64).
* The type section is a sequence of 12-byte ``struct btf_type`` (``name_off``,
  ``info``, ``size``/``type``); type ids count from 1 in that order (0 is
  void). ``info`` holds vlen in bits 0-15, the kind in bits 24-28 and
  kind_flag in bit 31. Each type is followed by kind-specific data: INT 4,
  ARRAY 12, STRUCT/UNION 12 per member, ENUM 8 per value, FUNC_PROTO 8 per
  parameter, VAR 4, DATASEC 12 per variable, DECL_TAG 4, ENUM64 12 per
  value; PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT and
  TYPE_TAG have none. Any other kind is an error.
* A member is ``name_off``, ``type``, ``offset``. If the struct's
  kind_flag is set, ``offset`` is ``bitfield_size << 24 | bit_offset``
  (bitfield_size 0 for ordinary members); otherwise it is a bit offset, and
  a bitfield is a member whose type is an INT with a bit offset or a bit
  count other than its size in bits (the int's own bit offset then adds to
  the member's).
* Names are offsets into the NUL-terminated string section; an anonymous
  struct/union member has name offset 0. typedef, const, volatile, restrict
  and type_tag are followed to the type they name; a pointer's size is that
  of the ``long`` INT (8 if there is none).

Not supported: split BTF (``/sys/kernel/btf/<module>``, whose type ids
continue those of vmlinux).

Measured on the development machine (6.18 kernel, 5.5 MB BTF, 127k types,
Python 3.11): :meth:`Btf.load` takes 0.08-0.09 s (one pass over the type
section, recording where each type starts and the names of STRUCT and
UNION types); 15 :meth:`Btf.member` lookups add 0.5-0.7 ms (members are
decoded only for the structs asked about, then cached).
"""
from __future__ import annotations

import struct as _struct
from typing import NamedTuple

__all__ = ["Btf", "BtfError", "Member", "VMLINUX"]

VMLINUX = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HEADER_LEN = 24  # struct btf_header as of version 1

# BTF kinds (include/uapi/linux/btf.h).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

_KIND_NAMES = ("UNKN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF",
               "VOLATILE", "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC",
               "FLOAT", "DECL_TAG", "TYPE_TAG", "ENUM64")

# Trailing data after the 12-byte btf_type, per kind: (fixed bytes, bytes per vlen).
# None marks a kind this reader does not know (0 is BTF_KIND_UNKN, never valid in a blob).
_TRAILER: tuple[tuple[int, int] | None, ...] = (
    None,      # UNKN
    (4, 0),    # INT: u32 encoding/offset/bits
    (0, 0),    # PTR
    (12, 0),   # ARRAY: struct btf_array
    (0, 12),   # STRUCT: struct btf_member[vlen]
    (0, 12),   # UNION
    (0, 8),    # ENUM: struct btf_enum[vlen]
    (0, 0),    # FWD
    (0, 0),    # TYPEDEF
    (0, 0),    # VOLATILE
    (0, 0),    # CONST
    (0, 0),    # RESTRICT
    (0, 0),    # FUNC
    (0, 8),    # FUNC_PROTO: struct btf_param[vlen]
    (4, 0),    # VAR: struct btf_var
    (0, 12),   # DATASEC: struct btf_var_secinfo[vlen]
    (0, 0),    # FLOAT
    (4, 0),    # DECL_TAG: struct btf_decl_tag
    (0, 0),    # TYPE_TAG
    (0, 12),   # ENUM64: struct btf_enum64[vlen]
)

_MODIFIERS = frozenset((TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG))
_SIZED = frozenset((INT, ENUM, ENUM64, STRUCT, UNION, FLOAT, DATASEC))
_MAX_CHAIN = 256  # longest typedef/modifier/array chain or anonymous nesting followed


class BtfError(Exception):
    """Malformed BTF (the message gives the byte offset), or an unknown struct or member."""


class Member(NamedTuple):
    """Where a struct member sits, as :meth:`Btf.member` reports it."""

    offset: int
    """Bytes from the start of the outermost struct (for a bitfield: the byte holding its first bit)."""
    bit_offset: int
    """For a bitfield, its first bit within the byte at ``offset`` (0..7, in the BTF's bit
    numbering: from the least significant bit on little-endian); 0 otherwise."""
    bit_size: int
    """Width of a bitfield in bits; 0 for an ordinary member."""
    size: int
    """Bytes of the member's type after following typedef/const/volatile/restrict/type_tag;
    for a bitfield, the size of its underlying integer type."""


def _kind_name(kind: int) -> str:
    if kind == 0:
        return "void"
    return _KIND_NAMES[kind] if kind < len(_KIND_NAMES) else f"kind {kind}"


class Btf:
    """A parsed BTF blob; look struct members up with :meth:`member`."""

    def __init__(self, data: bytes) -> None:
        """Parse ``data`` (a whole raw BTF blob); raise :class:`BtfError` if it is malformed."""
        data = bytes(data)
        self._data = data
        if len(data) < 4:
            raise BtfError(f"malformed BTF at byte offset 0: {len(data)} bytes, too short for a header")
        if _struct.unpack_from("<H", data)[0] == BTF_MAGIC:
            e = "<"
        elif _struct.unpack_from(">H", data)[0] == BTF_MAGIC:
            e = ">"
        else:
            raise BtfError(f"malformed BTF at byte offset 0: bad magic 0x{_struct.unpack_from('<H', data)[0]:04x}"
                           f" (expected 0x{BTF_MAGIC:04x})")
        self._e = e
        version = data[2]
        if version != BTF_VERSION:
            raise BtfError(f"malformed BTF at byte offset 2: version {version}, only {BTF_VERSION} is known")
        if len(data) < 8:
            raise BtfError(f"malformed BTF at byte offset 4: {len(data)} bytes, too short for a header")
        hdr_len = _struct.unpack_from(e + "I", data, 4)[0]
        if hdr_len < _HEADER_LEN:
            raise BtfError(f"malformed BTF at byte offset 4: header length {hdr_len}, at least {_HEADER_LEN} expected")
        if len(data) < hdr_len:
            raise BtfError(f"malformed BTF at byte offset {len(data)}: data ends inside the"
                           f" {hdr_len}-byte header")
        type_off, type_len, str_off, str_len = _struct.unpack_from(e + "4I", data, 8)
        self._type_start = hdr_len + type_off
        self._type_end = self._type_start + type_len
        self._str_start = hdr_len + str_off
        self._str_end = self._str_start + str_len
        for what, field, end in (("type", 12, self._type_end), ("string", 20, self._str_end)):
            if end > len(data):
                raise BtfError(f"malformed BTF at byte offset {field}: {what} section ends at byte offset {end},"
                               f" past the end of the data ({len(data)} bytes)")
        self._ptr_size = 8
        self._pos: list[int] = [0]           # byte offset of each type's btf_type; [0] is void
        self._by_name: dict[str, list[int]] = {}
        self._members: dict[int, list[tuple[str, int, int, int]]] = {}
        self._walk()

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        """Read and parse the BTF blob at ``path`` (by default the running kernel's)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise BtfError(f"cannot read BTF from {path}: {exc.strerror or exc}") from exc
        return cls(data)

    # -- public lookups ---------------------------------------------------

    def has_struct(self, name: str) -> bool:
        """Whether a struct or union (they share one name space in C) called ``name`` exists."""
        return name in self._by_name

    def size_of(self, struct: str) -> int:
        """Size in bytes of the struct or union called ``struct``."""
        return self._size(self._struct_id(struct), 0)

    def member(self, struct: str, path: str) -> Member:
        """Locate member ``path`` (dotted names, e.g. ``"rx_opt.rcv_wscale"``) of struct ``struct``.

        Members of anonymous structs and unions are found as if they were
        members of the enclosing type, at every level of ``path``; offsets add
        up across the nesting. Raises :class:`BtfError` naming the struct or
        member that does not exist.
        """
        names = path.split(".")
        if not all(names):
            raise BtfError(f"bad member path {path!r} for struct {struct}")
        tid = self._struct_id(struct)
        bits = 0
        for i, name in enumerate(names):
            hit = self._find(tid, name, 0)
            if hit is None:
                raise BtfError(f"struct {struct} has no member {path!r}: no {name!r} in"
                               f" {self._describe(tid)}")
            mbits, mtype, bitfield_size, ref = hit
            bits += mbits
            if i + 1 < len(names):
                rid = self._resolve(mtype, ref)
                kind = self._kind(rid)
                if bitfield_size or kind not in (STRUCT, UNION):
                    raise BtfError(f"struct {struct} has no member {path!r}: "
                                   f"{'.'.join(names[:i + 1])!r} is a {_kind_name(kind)}, not a struct or union")
                tid = rid
        rid = self._resolve(mtype, ref)
        size = self._size(rid, ref)
        if not bitfield_size and self._kind(rid) == INT:
            # Without kind_flag, a bitfield is a member whose INT type says so.
            enc = _struct.unpack_from(self._e + "I", self._data, self._pos[rid] + 12)[0]
            int_off, nr_bits = (enc >> 16) & 0xFF, enc & 0xFF
            if int_off or nr_bits != size * 8:
                bits += int_off
                bitfield_size = nr_bits
        if bitfield_size:
            return Member(bits // 8, bits % 8, bitfield_size, size)
        if bits % 8:
            raise BtfError(f"malformed BTF at byte offset {ref}: member {path!r} of struct {struct}"
                           f" starts at bit {bits}, not on a byte, and is no bitfield")
        return Member(bits // 8, 0, 0, size)

    # -- internals --------------------------------------------------------

    def _walk(self) -> None:
        """One pass over the type section: where each type starts, STRUCT/UNION names."""
        data, end = self._data, self._type_end
        unpack = _struct.Struct(self._e + "III").unpack_from
        pos = self._type_start
        positions = self._pos
        append = positions.append
        by_name = self._by_name
        trailer = _TRAILER
        ntrailer = len(trailer)
        while pos < end:
            tid = len(positions)
            if pos + 12 > end:
                raise BtfError(f"malformed BTF at byte offset {pos}: type {tid} is cut off by the end"
                               f" of the type section at byte offset {end}")
            name_off, info, _ = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            t = trailer[kind] if kind < ntrailer else None
            if t is None:
                raise BtfError(f"malformed BTF at byte offset {pos}: type {tid} has unknown kind {kind}")
            nxt = pos + 12 + t[0] + t[1] * (info & 0xFFFF)
            if nxt > end:
                raise BtfError(f"malformed BTF at byte offset {pos}: type {tid} ({_KIND_NAMES[kind]})"
                               f" needs {nxt - pos} bytes, the type section ends at byte offset {end}")
            append(pos)
            if kind == STRUCT or kind == UNION:
                if name_off:
                    name = self._str(name_off, pos)
                    ids = by_name.get(name)
                    if ids is None:
                        by_name[name] = [tid]
                    else:
                        ids.append(tid)
            elif kind == INT and name_off:
                if self._str(name_off, pos) in ("long int", "long unsigned int"):
                    self._ptr_size = _struct.unpack_from(self._e + "I", data, pos + 8)[0]
            pos = nxt

    def _str(self, off: int, ref: int) -> str:
        """The string at ``off`` in the string section; ``ref`` is where it was referenced."""
        start = self._str_start + off
        if off >= self._str_end - self._str_start:
            raise BtfError(f"malformed BTF at byte offset {ref}: name offset {off} is outside"
                           f" the {self._str_end - self._str_start}-byte string section")
        nul = self._data.find(b"\0", start, self._str_end)
        if nul < 0:
            raise BtfError(f"malformed BTF at byte offset {start}: string runs past the end of"
                           " the string section")
        return self._data[start:nul].decode("utf-8", "replace")

    def _check_id(self, tid: int, ref: int) -> int:
        if not 0 < tid < len(self._pos):
            raise BtfError(f"malformed BTF at byte offset {ref}: type id {tid} is not a type"
                           f" (ids run from 1 to {len(self._pos) - 1})")
        return self._pos[tid]

    def _kind(self, tid: int) -> int:
        """Kind of type ``tid`` (0 for void)."""
        if tid == 0:
            return 0
        return self._data[self._pos[tid] + 7 if self._e == "<" else self._pos[tid] + 4] & 0x1F

    def _header(self, tid: int) -> tuple[int, int, int]:
        return _struct.unpack_from(self._e + "III", self._data, self._pos[tid])

    def _describe(self, tid: int) -> str:
        name_off, info, _ = self._header(tid)
        name = self._str(name_off, self._pos[tid]) if name_off else "(anonymous)"
        return f"{_KIND_NAMES[(info >> 24) & 0x1F].lower()} {name}"

    def _struct_id(self, name: str) -> int:
        ids = self._by_name.get(name)
        if not ids:
            raise BtfError(f"no struct or union named {name!r} in BTF")
        if len(ids) > 1:
            raise BtfError(f"struct name {name!r} is ambiguous: {len(ids)} definitions in BTF"
                           f" (type ids {', '.join(map(str, ids))})")
        return ids[0]

    def _resolve(self, tid: int, ref: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag from ``tid``; 0 stays void."""
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            pos = self._check_id(tid, ref)
            _, info, target = self._header(tid)
            if (info >> 24) & 0x1F not in _MODIFIERS:
                return tid
            tid, ref = target, pos
        raise BtfError(f"malformed BTF at byte offset {ref}: typedef/modifier chain longer than"
                       f" {_MAX_CHAIN} (a cycle?)")

    def _size(self, tid: int, ref: int, depth: int = 0) -> int:
        """Size in bytes of type ``tid`` (modifiers followed)."""
        tid = self._resolve(tid, ref)
        if tid == 0:
            raise BtfError(f"malformed BTF at byte offset {ref}: member or element of type void")
        pos = self._pos[tid]
        _, info, size = self._header(tid)
        kind = (info >> 24) & 0x1F
        if kind in _SIZED:
            return size
        if kind == PTR:
            return self._ptr_size
        if kind == ARRAY and depth < _MAX_CHAIN:
            elem, _, nelems = _struct.unpack_from(self._e + "III", self._data, pos + 12)
            return nelems * self._size(elem, pos, depth + 1)
        if kind == VAR and depth < _MAX_CHAIN:
            return self._size(size, pos, depth + 1)
        raise BtfError(f"malformed BTF at byte offset {pos}: type {tid} ({_kind_name(kind)}) has no size")

    def _member_list(self, tid: int) -> list[tuple[str, int, int, int]]:
        """(name, type id, bit offset, bitfield size) of each member of STRUCT/UNION ``tid``."""
        members = self._members.get(tid)
        if members is None:
            pos = self._pos[tid]
            _, info, _ = self._header(tid)
            kflag = info >> 31
            vlen = info & 0xFFFF
            members = []
            for i, (name_off, mtype, off) in enumerate(
                    _struct.iter_unpack(self._e + "III", self._data[pos + 12:pos + 12 + 12 * vlen])):
                name = self._str(name_off, pos + 12 + 12 * i) if name_off else ""
                if kflag:
                    members.append((name, mtype, off & 0xFFFFFF, off >> 24))
                else:
                    members.append((name, mtype, off, 0))
            self._members[tid] = members
        return members

    def _find(self, tid: int, name: str, depth: int) -> tuple[int, int, int, int] | None:
        """Member ``name`` of STRUCT/UNION ``tid``, looking into anonymous members.

        Returns (bit offset from the start of ``tid``, type id, bitfield size,
        byte offset of the btf_member record), or None.
        """
        if depth > _MAX_CHAIN:
            raise BtfError(f"malformed BTF at byte offset {self._pos[tid]}: anonymous members nested"
                           f" deeper than {_MAX_CHAIN} (a cycle?)")
        base = self._pos[tid] + 12
        for i, (mname, mtype, bits, bitfield_size) in enumerate(self._member_list(tid)):
            if mname == name:
                return bits, mtype, bitfield_size, base + 12 * i
            if not mname:
                rid = self._resolve(mtype, base + 12 * i)
                if rid and self._kind(rid) in (STRUCT, UNION):
                    hit = self._find(rid, name, depth + 1)
                    if hit is not None:
                        return bits + hit[0], hit[1], hit[2], hit[3]
        return None
