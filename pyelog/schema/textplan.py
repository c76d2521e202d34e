# SPDX-License-Identifier: BSD-2-Clause
"""An event's text as a *plan* for the C printer (pyelog/records/_records.c).

The generated Python formatter of an event (:mod:`pyelog.schema.codegen`)
is the definition of its text. For the common cases this module describes
the same text as a list of steps the C printer follows without calling
Python: literal text, an integer field through a printf conversion, an
enum/flag field through the generated module's label dict (a miss calls
the module's own function), an address, a ``char[N]``. Each step mirrors
one branch of codegen's ``_numbered_piece``/``_printf_piece``/
``_text_expr``; whatever has no exact C equivalent gets no plan (None) and
stays with the Python formatter: varlen arrays, ``%c``, ``%p``, floats,
``#`` and width on ``%s``, more conversions than fields, SESSION_CREATE
(its empty payload has a text of its own).

Steps are tuples: ``("lit", bytes)``, ``("int", offset, size,
field_signed, swap16, mask_bits, to_signed, print_signed, fmt)``,
``("table", offset, size, field_signed, dict, function)``,
``("ipv4", offset)``, ``("ipv6", offset)``, ``("cstr", offset, size)``;
:func:`json_plan` adds ``("jstr", offset, size)`` (a ``char[N]`` inside a
JSON string: Python's unless no byte needs escaping).
"""
from __future__ import annotations

import json
import types

from pyelog.records.eventlog import SESSION_CREATE_ID
from pyelog.schema.dsl import Event, Field, FieldRef, PrintfSpec

__all__ = ["text_plan", "json_plan"]

_INT_KINDS = ("uint", "int")
_PRINTABLE = frozenset(range(0x20, 0x7F))


class _NoPlan(Exception):
    """This event's text has a part the C printer does not render."""


def _int(f: Field, *, swap16: bool = False, mask_bits: int = 0, to_signed: bool = False,
         print_signed: bool, fmt: str) -> tuple:
    return ("int", f.offset, f.size, f.type.kind == "int", swap16, mask_bits, to_signed,
            print_signed, fmt.encode())


def _decimal(f: Field) -> tuple:
    """An integer field (or pointer) as a plain decimal number."""
    signed = f.type.kind == "int"
    return _int(f, print_signed=signed, fmt="%lld" if signed else "%llu")


def _ntohs(f: Field) -> tuple:
    """An ntohs field: its two low bytes swapped, in decimal."""
    return _int(f, swap16=True, print_signed=True, fmt="%lld")


def _plannable(event: Event) -> bool:
    """Whether a plan can render the event at all: not SESSION_CREATE (an
    empty payload has a text and fields of its own), no varlen array."""
    s = event.struct
    return event.id != SESSION_CREATE_ID and (s is None or s.varlen is None)


def _text(f: Field, module: types.ModuleType) -> tuple:
    """Codegen's ``_text_expr``: the field as its type/annotation shows it."""
    kind = f.type.kind
    if f.annotation in ("enum", "flag"):
        if kind not in _INT_KINDS:
            raise _NoPlan
        prefix = ("_ENUM_", "_enum_") if f.annotation == "enum" else ("_FLAG_TEXT_", "_flag_")
        return ("table", f.offset, f.size, kind == "int",
                getattr(module, prefix[0] + f.table), getattr(module, prefix[1] + f.table))
    if f.annotation == "hex":
        if kind not in (*_INT_KINDS, "ptr"):
            raise _NoPlan
        return _int(f, mask_bits=32 if f.size <= 4 else 64, print_signed=False, fmt="0x%llx")
    if f.annotation == "ntohs":
        if kind not in _INT_KINDS:
            raise _NoPlan
        return _ntohs(f)
    if kind == "ipv4":
        return ("ipv4", f.offset)
    if kind == "ipv6":
        return ("ipv6", f.offset)
    if kind == "char":
        return ("cstr", f.offset, f.size)
    if kind == "ptr":
        return _int(f, print_signed=False, fmt="0x%llx")
    if kind in _INT_KINDS:
        return _decimal(f)
    raise _NoPlan


def _printf(f: Field, spec: PrintfSpec, module: types.ModuleType) -> tuple:
    """Codegen's ``_printf_piece`` for the conversions C renders alike."""
    conv = spec.conv
    if not spec.width.isdigit() and spec.width:
        raise _NoPlan
    if conv == "s":
        if spec.flags or spec.width or spec.precision is not None:
            raise _NoPlan               # padding counts characters in Python, bytes in C
        return _text(f, module)
    if conv not in "diouxX" or f.type.kind not in (*_INT_KINDS, "ptr"):
        raise _NoPlan
    allowed = "-0 +" if conv in "di" else "-0"
    if any(c not in allowed for c in spec.flags):
        raise _NoPlan                   # '#' differs ('0x0' against '0'); '+' on unsigned
    prec = "" if spec.precision is None else "." + (spec.precision or "0")
    if prec and (not prec[1:].isdigit() or int(prec[1:]) == 0):
        raise _NoPlan                   # %.0d of 0: C prints nothing, Python "0"
    bits = {"hh": 8, "h": 16, "": 32}.get(spec.length, 64)
    ntohs = f.annotation == "ntohs"
    narrow = f.type.size * 8 > bits or ntohs
    head = f"%{spec.flags}{spec.width}{prec}ll"
    if conv in "di":
        if f.type.kind == "int" and not narrow:
            return _int(f, print_signed=True, fmt=head + "d")
        return _int(f, swap16=ntohs, mask_bits=bits, to_signed=True, print_signed=True, fmt=head + "d")
    if f.type.kind != "int" and not narrow:
        return _int(f, print_signed=False, fmt=head + conv)
    return _int(f, swap16=ntohs, mask_bits=bits, print_signed=False, fmt=head + conv)


def json_plan(event: Event) -> tuple[tuple, int] | None:
    """``(steps, struct size)`` rendering ``json.dumps`` of the event's
    generated decoder's dict (``{"field": value, ...}``), or None: varlen
    events, SESSION_CREATE (an empty payload decodes to ``{}``). A
    ``char[N]`` that needs escaping goes back to Python record by record."""
    if not _plannable(event):
        return None
    s = event.struct
    steps: list[tuple] = []
    for i, f in enumerate(s.fields if s else []):
        key = (", " if i else "") + json.dumps(f.name) + ": "
        kind = f.type.kind
        if kind in ("ipv4", "ipv6", "char"):
            text = ("jstr", f.offset, f.size) if kind == "char" else (kind, f.offset)
            steps += [("lit", (key + '"').encode()), text, ("lit", b'"')]
        elif f.annotation == "ntohs":
            steps += [("lit", key.encode()), _ntohs(f)]
        elif kind in (*_INT_KINDS, "ptr"):
            steps += [("lit", key.encode()), _decimal(f)]
        else:
            return None
    return (("lit", b"{"), *steps, ("lit", b"}")), (s.size if s else 0)


def text_plan(event: Event, module: types.ModuleType) -> tuple[tuple, int] | None:
    """``(steps, struct size)`` rendering ``event`` as its generated
    formatter in ``module`` does, or None when the C printer must leave it
    to that formatter."""
    if not _plannable(event):
        return None
    s = event.struct
    fields = s.fields if s else []
    steps: list[tuple] = []
    try:
        for part in event.format_parts:
            if isinstance(part, str):
                raw = part.encode()
                if not set(raw) <= _PRINTABLE:
                    raise _NoPlan       # Python escapes it: every record would go back
                if raw:
                    steps.append(("lit", raw))
                continue
            assert isinstance(part, FieldRef)
            if part.index is None:
                raise _NoPlan
            f = fields[part.index]
            steps.append(_text(f, module) if part.spec is None else _printf(f, part.spec, module))
    except _NoPlan:
        return None
    return tuple(steps), (s.size if s else 0)
