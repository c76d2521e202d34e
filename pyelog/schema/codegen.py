# SPDX-License-Identifier: BSD-2-Clause
"""Code generation from a :class:`~pyelog.schema.dsl.Schema` (``pyelog gen``).

The back half of FreeBSD's ``eventlog_gen.awk``: from one parsed schema it
produces

* the eBPF **producer** header (``-h``): payload structs, constants and the
  per-event ``_ENABLED`` / ``_LOG_ALWAYS`` / ``_LOG`` / ``_FORMAT`` macros,
  compiled by bcc together with the core ``eventlog.h``. Every ``_LOG`` and
  ``_LOG_ALWAYS`` macro hands its event to ``<PREFIX>_WRITE`` (e.g.
  ``TCP_EVENTLOG_WRITE``; varlen events to ``<PREFIX>_WRITE_GATHER``),
  which the header defines as the core's ``eventlog_event_write``
  (``eventlog_event_write_gather``) unless already defined: a provider may
  route its events through its own writer, e.g. a queue, by defining
  ``PREFIX_WRITE`` before the header. A queue that can hand out the space
  of a queued event also defines ``PREFIX_RESERVE(session, id, level,
  keywords, len)``: fixed-size payloads are then stored straight into that
  space instead of built on the stack and copied (in BPF a copy of a
  computed length is a helper call per event);
* the Python **consumer** module source (``-c``): one ``struct.Struct`` per
  payload layout and elog(1)-compatible formatters and decoders per event,
  on top of the schema-independent :mod:`pyelog.schema.runtime`. pyelog
  execs exactly this text at load time (see :mod:`pyelog.schema.consumer`);
* the **aggregate** consumer (``-M``): one module dispatching by provider
  name over several schemas' consumers.

Both outputs come from the same model, so the C layout and the Python
consumer cannot drift apart; the producer header additionally asserts every
size and offset at C compile time.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyelog.records.untrusted import clip, terminal_safe
from pyelog.schema.dsl import (
    SESSION_CREATE_ID,
    Event,
    Field,
    FieldRef,
    PrintfSpec,
    Schema,
    SchemaError,
    Struct,
    load_schema,
)

# Payload structs up to this size are built on the BPF stack (512 bytes in
# all); bigger ones go to the core's per-CPU scratch area.
STACK_PAYLOAD_MAX = 256

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# Producer (-h)
# ---------------------------------------------------------------------------

def _c_member(f: Field) -> str:
    if f.array_len is not None:
        return f"char {f.name}[{f.array_len}];"
    if f.type.kind == "ipv6":
        return f"__u32 {f.name}[4]; /* struct in6_addr, network order */"
    if f.type.kind == "ipv4":
        return f"__u32 {f.name}; /* struct in_addr, network order */"
    return f"{f.type.c_type} {f.name};"


def _c_assign(ptr: str, f: Field, arg: str) -> str:
    """C statement storing macro argument ``arg`` into ``ptr->field``."""
    dst = f"{ptr}->{f.name}"
    if f.array_len is not None:
        n = f.array_len
        # Bounded copy of at most N-1 bytes; NULL becomes "" (already zeroed).
        return (f"if ({arg}) EVENTLOG_COPY_STR({dst}, {n}, {arg}); "
                f"{dst}[{n - 1}] = 0;")
    if f.type.kind == "ipv6":
        return f"__builtin_memcpy({dst}, (const void *)({arg}), 16);"
    return f"{dst} = ({f.type.c_type})({arg});"


def _macro(lines: list[str]) -> str:
    return " \\\n".join(lines)


def generate_producer(schema: Schema) -> str:
    """The eBPF producer header (``pyelog gen -h``) for ``schema``.

    Include it after the core ``eventlog.h`` (which defines ``struct
    eventlog_session``, ``eventlog_event_write[_gather]`` and
    ``eventlog_scratch``). The ``_LOG``/``_LOG_ALWAYS`` macros write through
    ``<PREFIX>_WRITE(session, id, level, keywords, payload, len)`` and, for
    varlen events, ``<PREFIX>_WRITE_GATHER(session, id, level, keywords,
    head, head_len, tail, tail_len)``: by default the core's
    ``eventlog_event_write`` and ``eventlog_event_write_gather``; a provider
    may route its events through its own writer, e.g. a queue, by defining
    ``PREFIX_WRITE`` (and, if the schema has varlen events,
    ``PREFIX_WRITE_GATHER``: the header refuses to compile when only the
    first is defined) before the header; ``PREFIX_RESERVE(session, id,
    level, keywords, len)``, if defined, returns the space of a queued
    event (or NULL: not queued, counted by it), where fixed-size payloads
    are then stored directly. Macro arguments: one per STRUCT field in
    declaration order; ``char[N]`` takes a pointer to a NUL-terminated string
    in BPF-readable memory (copied with ``EVENTLOG_COPY_STR``, by default
    ``bpf_probe_read_kernel_str``; define it first for program types without
    that helper); ``in6_addr`` takes a pointer to 16 bytes; ``in_addr`` a
    ``__u32`` in network order; a varlen field takes a pointer to the
    element array whose length is the count argument (clamped to max).
    """
    P = schema.macro_prefix
    guard = f"_{P}_H_"
    gather = _has_varlen_event(schema)
    out: list[str] = [
        "/* THIS FILE AUTOMATICALLY GENERATED by pyelog gen -h. DO NOT EDIT.",
        f" * Generated from {schema.path.name} (provider {schema.provider}).",
        " *",
        f" * Every {P}_<EVENT>_LOG and _LOG_ALWAYS macro calls",
        f" * {P}_WRITE(session, id, level, keywords, payload, len),",
        " * which is the core's eventlog_event_write unless defined before this",
        " * header: a provider may route its events through its own writer, e.g. a",
        f" * queue, by defining {P}_WRITE first. Fixed-size payloads are stored",
        f" * straight into the space {P}_RESERVE(session, id, level, keywords, len)",
        " * returns (NULL: not queued) instead, if it is defined before this header.",
    ]
    if gather:
        out += [
            f" * Varlen events call {P}_WRITE_GATHER(session, id, level, keywords,",
            " * head, head_len, tail, tail_len), eventlog_event_write_gather unless",
            f" * defined before; a provider defining {P}_WRITE defines it too.",
        ]
    out[-1] += " */"
    out += [
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
    ]
    if gather:
        out += [
            f"#if defined({P}_WRITE) && !defined({P}_WRITE_GATHER)",
            f'#error "{P}_WRITE is defined but {P}_WRITE_GATHER is not: varlen events would bypass it"',
            "#endif",
        ]
    out += [
        f"#ifndef {P}_WRITE",
        f"#define {P}_WRITE eventlog_event_write",
        "#endif",
    ]
    if gather:
        out += [
            f"#ifndef {P}_WRITE_GATHER",
            f"#define {P}_WRITE_GATHER eventlog_event_write_gather",
            "#endif",
        ]
    out += [
        "",
        "#ifndef EVENTLOG_COPY_STR",
        "/* Copy at most n-1 bytes of a NUL-terminated string; dst is pre-zeroed. */",
        "#define EVENTLOG_COPY_STR(dst, n, src) bpf_probe_read_kernel_str((dst), (n), (const void *)(src))",
        "#endif",
        "",
        "/* Keyword masks */",
    ]
    for k in schema.keywords:
        out.append(f"#define {P}_KEYWORD_{k.name.upper()} 0x{k.mask:08x}U")
    if schema.enums:
        out += ["", "/* Enum values */"]
        for t in schema.enums.values():
            for value, label in t.items:
                out.append(f"#define {P}_{t.name.upper()}_{label.upper()} {value}U")
    if schema.flags:
        out += ["", "/* Flag bits (one namespace for all flag sets, as in FreeBSD) */"]
        seen: set[str] = set()
        for t in schema.flags.values():
            for value, label in t.items:
                if label.upper() not in seen:
                    seen.add(label.upper())
                    out.append(f"#define {P}_FLAG_{label.upper()} 0x{value:x}U")
    out += ["", "/* Payload structs: natural C layout, checked against pyelog's model */"]
    for s in schema.structs.values():
        out += _producer_struct(schema, s)
    out += ["", "/* Events */"]
    for e in schema.events:
        out += _producer_event(schema, e)
    out += [f"#endif /* {guard} */", ""]
    return "\n".join(out)


def _has_varlen_event(schema: Schema) -> bool:
    """Whether some event's payload ends with a varlen field (written with _WRITE_GATHER)."""
    return any(e.struct is not None and e.struct.varlen is not None for e in schema.events)


def _producer_struct(schema: Schema, s: Struct) -> list[str]:
    name = f"{schema.prefix}_{s.name.lower()}"
    out = [f"struct {name} {{"]
    out += [f"\t{_c_member(f)}" for f in s.fixed_fields]
    varlen = s.varlen
    if varlen is not None:
        out.append(f"\t/* followed by {varlen.name}: {varlen.type.c_type}[{varlen.count_field}], "
                   f"at most {varlen.max_count} */")
        out.append(f"}} __attribute__((aligned({varlen.type.size})));")
        out.append(f"#define {schema.macro_prefix}_{s.name.upper()}_{varlen.name.upper()}_MAX {varlen.max_count}")
    else:
        out.append("};")
    out.append(f'_Static_assert(sizeof(struct {name}) == {s.size}, "{name}: size differs from pyelog");')
    for f in s.fixed_fields:
        out.append(f"_Static_assert(__builtin_offsetof(struct {name}, {f.name}) == {f.offset}, "
                   f'"{name}.{f.name}: offset differs from pyelog");')
    out.append("")
    return out


def _fill_payload(schema: Schema, s: Struct, write_args: str, writer: str) -> list[str]:
    """The body of an event's _LOG_ALWAYS: zero the payload, store the
    fields, hand it to the writer. ``writer``: "reserve" fills the space
    ``<PREFIX>_RESERVE`` returns, which leaves nothing to copy; "write"
    builds the payload on the stack (in the core's scratch area when
    large) for ``<PREFIX>_WRITE``; "gather" likewise, with the varlen
    tail, for ``<PREFIX>_WRITE_GATHER``."""
    P = schema.macro_prefix
    sname = f"struct {schema.prefix}_{s.name.lower()}"
    ptr = f"__{schema.prefix}_p"
    body: list[str] = []
    if writer == "reserve":
        body += [f"\t{sname} *{ptr} = ({sname} *){P}_RESERVE((_s), {write_args}, sizeof({sname}));",
                 f"\tif (!{ptr})",
                 "\t\tbreak; /* not queued: the writer counted it */"]
    elif s.size <= STACK_PAYLOAD_MAX:
        evt = f"__{schema.prefix}_evt"
        body += [f"\t{sname} {evt};", f"\t{sname} *{ptr} = &{evt};"]
    else:
        body += [f"\t{sname} *{ptr} = eventlog_scratch();",
                 f"\tif (!{ptr})",
                 "\t\tbreak; /* no scratch area: emit nothing */"]
    if s.size <= STACK_PAYLOAD_MAX:
        body.append(f"\t__builtin_memset({ptr}, 0, sizeof(*{ptr}));")
    else:
        body += [f"\tfor (__u32 __i = 0; __i < sizeof(*{ptr}); __i++)",
                 f"\t\t((volatile __u8 *){ptr})[__i] = 0; /* zero padding too */"]
    varlen = s.varlen
    count = f"__{schema.prefix}_n"
    if varlen is not None:
        body += [f"\t__u64 {count} = (__u64)(_f_{varlen.count_field});",
                 f"\tif ({count} > {varlen.max_count})",
                 f"\t\t{count} = {varlen.max_count};"]
    for f in s.fixed_fields:
        arg = count if varlen is not None and f.name == varlen.count_field else f"_f_{f.name}"
        body.append(f"\t{_c_assign(ptr, f, arg)}")
    if writer == "write":
        body.append(f"\t{P}_WRITE((_s), {write_args}, {ptr}, sizeof(*{ptr}));")
    elif writer == "gather":
        body.append(f"\t{P}_WRITE_GATHER((_s), {write_args}, {ptr}, sizeof(*{ptr}), "
                    f"(const void *)(_f_{varlen.name}), (__u32)({count} * {varlen.type.size}));")
    return body


def _producer_event(schema: Schema, e: Event) -> list[str]:
    P = f"{schema.macro_prefix}_{e.name.upper()}"
    out = [
        f"/* {e.name}: id {e.id}, level {e.level}, keywords {e.keywords} */",
        f"#define {P}_ID {e.id}U",
        f"#define {P}_LEVEL {e.level}U",
        f"#define {P}_KEYWORDS 0x{e.mask:08x}U",
        f"#define {P}_FORMAT {_c_string(e.format)}",
        f"#define {P}_ENABLED(session) ((session) && (session)->effective_level >= {P}_LEVEL && "
        f"((session)->effective_keywords & {P}_KEYWORDS))",
    ]
    s = e.struct
    write_args = f"{P}_ID, {P}_LEVEL, {P}_KEYWORDS"
    fields = s.fields if s else []
    args = ["_s"] + [f"_f_{f.name}" for f in fields]
    params = ", ".join(args)
    head = f"#define {P}_LOG_ALWAYS({params}) do {{"
    tail = "} while (0)"
    if s is None:
        out.append(_macro([head, f"\t{schema.macro_prefix}_WRITE((_s), {write_args}, 0, 0);", tail]))
    elif s.varlen is None:
        # Filled in place where the writer queues it if the provider
        # offers that (<PREFIX>_RESERVE), else built here for _WRITE.
        out += [f"#ifdef {schema.macro_prefix}_RESERVE",
                _macro([head] + _fill_payload(schema, s, write_args, "reserve") + [tail]),
                "#else",
                _macro([head] + _fill_payload(schema, s, write_args, "write") + [tail]),
                "#endif"]
    else:
        out.append(_macro([head] + _fill_payload(schema, s, write_args, "gather") + [tail]))
    out.append(f"#define {P}_LOG({params}) do {{ if ({P}_ENABLED(_s)) {P}_LOG_ALWAYS({params}); }} while (0)")
    out.append("")
    return out


# ---------------------------------------------------------------------------
# Consumer (-c)
# ---------------------------------------------------------------------------

def _swap16(v: str) -> str:
    return f"((({v}) & 0xFF) << 8 | (({v}) >> 8) & 0xFF)"


def _text_expr(f: Field, v: str) -> str:
    """Python expression giving the field's text as FreeBSD's %N rendering does."""
    # The dict lookup inline; the function only when the value is not cached
    # (labels and cached flag texts are never empty strings' stand-ins: the
    # fallbacks return the same text for an empty label).
    if f.annotation == "enum":
        return f"(_ENUM_{f.table}.get({v}) or _enum_{f.table}({v}))"
    if f.annotation == "flag":
        return f"(_FLAG_TEXT_{f.table}.get({v}) or _flag_{f.table}({v}))"
    if f.annotation == "hex":
        return f"'0x%x' % ({v} & 0x{_M32 if f.size <= 4 else _M64:X})"
    if f.annotation == "ntohs":
        return f"str({_swap16(v)})"
    kind = f.type.kind
    if kind == "ipv4":
        return f"_ntop4({v})"
    if kind == "ipv6":
        return f"_ntop6({v})"
    if kind == "char":
        return f"_cstr({v})"
    if kind == "ptr":
        return f"'0x%x' % {v}"
    return f"str({v})"


def _numbered_piece(f: Field, v: str) -> tuple[str, str]:
    """(Python %-conversion, argument) for a ``%N`` placeholder."""
    if f.annotation == "hex":
        return "0x%x", f"{v} & 0x{_M32 if f.size <= 4 else _M64:X}"
    if f.annotation == "ntohs":
        return "%d", _swap16(v)
    if f.annotation is None and f.type.kind in ("uint", "int"):
        return "%d", v
    if f.annotation is None and f.type.kind == "ptr":
        return "0x%x", v
    return "%s", _text_expr(f, v)


def _length_bits(spec: PrintfSpec) -> int:
    return {"hh": 8, "h": 16, "": 32}.get(spec.length, 64)


def _printf_piece(f: Field | None, v: str, spec: PrintfSpec) -> tuple[str, str]:
    """(Python %-conversion, argument) for one C printf conversion.

    Integers are cast to the conversion's width and signedness as C's
    printf would read them; ``%s`` gets the field's text (enum label, flag
    names, address, string); ``%p`` prints ``0x`` + lowercase hex.
    """
    prec = "" if spec.precision is None else "." + (spec.precision or "0")
    conv = spec.conv
    if f is None:  # more conversions than fields
        arg = "''" if conv == "s" else "0"
    elif conv == "s":
        arg = _text_expr(f, v)
    else:
        if f.type.kind in ("ipv4", "ipv6"):
            num = f"int.from_bytes({v}, 'little')"
        elif f.type.kind == "char":
            num = "0"
        elif f.annotation == "ntohs":
            num = _swap16(v)
        else:
            num = v
        bits = 64 if conv == "p" else _length_bits(spec)
        mask = (1 << bits) - 1
        narrow = f.type.kind == "char" or f.type.size * 8 > bits or f.annotation == "ntohs"
        if conv in "di":
            if f.type.kind == "int" and not narrow:
                arg = num
            else:
                arg = f"(({num}) & 0x{mask:X} ^ 0x{1 << (bits - 1):X}) - 0x{1 << (bits - 1):X}"
        elif conv == "c":
            arg = f"({num}) & 0xFF"
        elif conv == "p":
            arg = f"'0x%x' % (({num}) & 0x{mask:X})"
        elif conv in "ouxX":
            arg = num if (f.type.kind != "int" and not narrow) else f"({num}) & 0x{mask:X}"
        else:  # floating conversions: C would read a double register; show the number
            arg = num
    pyconv = {"u": "d", "i": "d", "p": "s"}.get(conv, conv)
    return f"%{spec.flags}{spec.width}{prec}{pyconv}", arg


def _event_template(e: Event, names: list[str]) -> tuple[str, list[str]]:
    fields = e.struct.fields if e.struct else []
    template: list[str] = []
    args: list[str] = []
    for part in e.format_parts:
        if isinstance(part, str):
            template.append(part.replace("%", "%%"))
            continue
        assert isinstance(part, FieldRef)
        f = fields[part.index] if part.index is not None else None
        v = names[part.index] if part.index is not None else "0"
        if part.spec is None:
            assert f is not None
            conv, arg = _numbered_piece(f, v)
        else:
            conv, arg = _printf_piece(f, v, part.spec)
        template.append(conv)
        args.append(arg)
    return "".join(template), args


def _decode_expr(f: Field, v: str) -> str:
    if f.annotation == "ntohs":
        return _swap16(v)
    if f.type.kind == "ipv4":
        return f"_ntop4({v})"
    if f.type.kind == "ipv6":
        return f"_ntop6({v})"
    if f.type.kind == "char":
        return f"_cstr({v})"
    return v


# Names the generated module takes from pyelog.schema.runtime: the public
# ones as they are, the helpers its per-event code calls under private
# names (module globals, looked up as fast as before they moved).
_RUNTIME_IMPORTS = [
    "DUMP_COMPLETE_ID",
    "SESSION_CREATE_ID",
    "SESSION_END_ID",
    "bad_varlen as _bad_varlen",
    "cstr as _cstr",
    "dispatch_functions as _dispatch_functions",
    "enum_functions as _enum_functions",
    "event_id_to_name_function as _event_id_to_name_function",
    "event_names as _event_names",
    "flag_functions as _flag_functions",
    "keyword_from_string_function as _keyword_from_string_function",
    "no_fields as _no_fields",
    "ntop4 as _ntop4",
    "ntop6 as _ntop6",
]


def generate_consumer(schema: Schema) -> str:
    """Python source of the consumer module (``pyelog gen -c``) for ``schema``.

    The module holds what the schema decides: its tables, one
    ``struct.Struct`` per payload layout and one formatter and one decoder
    per event; the rest (field renderings, enum/flag look-ups, dispatch by
    event id, reserved ids) it imports from :mod:`pyelog.schema.runtime`.
    It defines ``PROVIDER``, ``KEYWORDS``, ``ENUMS``, ``FLAGS``, ``EVENTS``,
    ``EVENT_NAMES``, ``event_id_to_name``, ``keyword_from_string``,
    ``format_payload``, ``formatter``, ``decode`` and
    ``enum_<name>_to_string`` / ``flag_<name>_to_string``.
    """
    o: list[str] = [
        f'"""pyelog consumer for provider {schema.provider!r}.',
        "",
        f"THIS FILE AUTOMATICALLY GENERATED by `pyelog gen -c` from {schema.path.name}. DO NOT EDIT.",
        "",
        "format_payload(event_id, payload) gives elog(1)'s text; decode(event_id, payload)",
        "gives {field: value}. Both decode whatever the payload holds: missing tail",
        "bytes read as 0 (schema evolution), extra bytes are ignored, an untrustworthy",
        "varlen count is reported as [BAD_VARLEN:...] (text) or under '_bad_varlen'",
        "(decode, with an empty list), and no payload bytes make them raise.",
        "DUMP_COMPLETE (0xFFFFFFFD) is known by name here; FreeBSD's elog prints it",
        "as unknown ([?4294967293]). What does not depend on the schema is in",
        "pyelog.schema.runtime.",
        '"""',
        "import struct as _struct",
        "",
        "from pyelog.schema.runtime import (",
        *[f"    {name}," for name in _RUNTIME_IMPORTS],
        ")",
        "",
        f"PROVIDER = {schema.provider!r}",
        "KEYWORDS = {",
    ]
    o += [f"    {k.name!r}: 0x{k.mask:08X}," for k in schema.keywords]
    o += ["}",
          "",
          "# id: (name, level, keyword mask, fixed payload size or None for NONE events)",
          "EVENTS = {"]
    for e in schema.events:
        size = e.struct.size if e.struct else None
        o.append(f"    0x{e.id:X}: ({e.name!r}, {e.level}, 0x{e.mask:08X}, {size}),")
    o += ["}",
          "EVENT_NAMES = _event_names(EVENTS)",
          "",
          "ENUMS = {"]
    for t in schema.enums.values():
        o.append(f"    {t.name!r}: {{{', '.join(f'{v}: {label!r}' for v, label in t.items)}}},")
    o += ["}", "FLAGS = {"]
    for t in schema.flags.values():
        o.append(f"    {t.name!r}: ({''.join(f'(0x{v:X}, {label!r}), ' for v, label in t.items).rstrip()}),")
    o += ["}",
          "",
          "event_id_to_name = _event_id_to_name_function(EVENT_NAMES)",
          "keyword_from_string = _keyword_from_string_function(KEYWORDS)"]
    if schema.enums or schema.flags:
        # See _text_expr for how the formatters use these.
        o += ["",
              "# Per ENUM/FLAG table: the public *_to_string, and the text a formatter shows,",
              "# read inline from a dict (_ENUM_*, _FLAG_TEXT_*) with a function for a miss."]
    for t in schema.enums.values():
        o += [f"_ENUM_{t.name} = ENUMS[{t.name!r}]",
              f"enum_{t.name}_to_string, _enum_{t.name} = _enum_functions({t.name!r}, _ENUM_{t.name})"]
    for t in schema.flags.values():
        o += [f"flag_{t.name}_to_string, _flag_{t.name}, _FLAG_TEXT_{t.name} = "
              f"_flag_functions({t.name!r}, FLAGS[{t.name!r}])"]
    o.append("")
    for e in schema.events:
        o += _consumer_event(e)
    o += ["",
          "_FORMATTERS = {",
          *[f"    0x{e.id:X}: _format_{e.name}," for e in schema.events],
          "}",
          "_DECODERS = {",
          *[f"    0x{e.id:X}: _decode_{e.name}," for e in schema.events],
          "}",
          "format_payload, formatter, decode = _dispatch_functions(_FORMATTERS, _DECODERS)",
          ""]
    return "\n".join(o)


def _consumer_event(e: Event) -> list[str]:
    s = e.struct
    o = ["", f"# {e.name}: id {e.id}, " + (f"struct {s.name}, {s.size} bytes" if s else "no payload")]
    fixed = s.fixed_fields if s else []
    names = [f"v{i}" for i in range(len(s.fields))] if s else []
    template, args = _event_template(e, names)
    if args:
        text = f"{template!r} % ({', '.join(args)},)"
    else:
        text = repr(template.replace("%%", "%"))
    if s is None or not fixed:
        o += ["", "", f"def _format_{e.name}(payload):", f"    return {text}",
              "", "", f"_decode_{e.name} = _no_fields", ""]
        return o
    st = f"_STRUCT_{e.name}"
    unpack = ["    size = len(payload)",
              f"    if size < {s.size}:",
              f"        payload = bytes(payload) + bytes({s.size} - size)",
              f"    {', '.join(names[:len(fixed)])}, = _unpack_{e.name}(payload)"]
    empty_create = e.id == SESSION_CREATE_ID
    o += [f"{st} = _struct.Struct({s.struct_format!r})",
          f"_unpack_{e.name} = {st}.unpack_from", "", ""]
    o += [f"def _format_{e.name}(payload):"]
    if empty_create:
        o += ["    if not payload:", "        return 'Session created'"]
    varlen = s.varlen
    if not args and varlen is None:  # the text uses no field: nothing to decode
        o += [f"    return {text}"]
    elif varlen is not None:
        o += unpack
        count = names[[f.name for f in s.fields].index(varlen.count_field)]
        esize = varlen.type.size
        o += [f"    text = {text}",
              f"    if {count} > {varlen.max_count} or ({count} and {s.size} + {count} * {esize} > size):",
              f"        return text + ' ' + _bad_varlen({varlen.name!r}, {count}, {varlen.max_count}, "
              f"size - {s.size})",
              "    return text"]
    else:
        o += unpack
        o += [f"    return {text}"]
    o += ["", "", f"def _decode_{e.name}(payload):"]
    if empty_create:
        o += ["    if not payload:", "        return {}"]
    o += unpack
    items = ", ".join(f"{f.name!r}: {_decode_expr(f, names[i])}" for i, f in enumerate(fixed))
    if varlen is None:
        o += [f"    return {{{items}}}", ""]
        return o
    count = names[[f.name for f in s.fields].index(varlen.count_field)]
    esize = varlen.type.size
    conv = _decode_expr(varlen, "x")
    o += [f"    fields = {{{items}}}",
          f"    if {count} > {varlen.max_count} or ({count} and {s.size} + {count} * {esize} > size):",
          f"        fields[{varlen.name!r}] = []",
          f"        fields['_bad_varlen'] = _bad_varlen({varlen.name!r}, {count}, {varlen.max_count}, "
          f"size - {s.size})",
          "    else:",
          f"        tail = payload[{s.size}:{s.size} + {count} * {esize}]",
          f"        fields[{varlen.name!r}] = [{conv} for x, in _struct.iter_unpack('<{varlen.type.struct_code}', tail)]",
          "    return fields",
          ""]
    return o


# ---------------------------------------------------------------------------
# Aggregate (-M)
# ---------------------------------------------------------------------------

def generate_aggregate(schemas: list[Schema]) -> str:
    """Python source of the aggregate consumer (``pyelog gen -M``).

    Embeds every provider's consumer module (sorted by provider name) and
    dispatches by provider *name* like FreeBSD's eventlog_consumer.h:
    ``format_payload(provider, id, payload)`` (``[UNKNOWN_PROVIDER:<name>]``
    for unknown names), ``event_id_to_name(provider, id)`` (0xFFFFFFFF is
    SESSION_END for every provider), ``keyword_from_string(provider, name)``
    and ``is_session_end(provider, id)``. ``PROVIDERS`` maps names to the
    loaded per-provider modules.
    """
    names = ", ".join(s.provider for s in sorted(schemas, key=lambda s: s.provider))
    o = [
        '"""pyelog aggregate consumer for providers: ' + names + '.',
        "",
        "THIS FILE AUTOMATICALLY GENERATED by `pyelog gen -M`. DO NOT EDIT.",
        '"""',
        "from pyelog.schema.runtime import (",
        "    DUMP_COMPLETE_ID,",
        "    SESSION_END_ID,",
        "    aggregate_functions as _aggregate_functions,",
        "    exec_source as _exec_source,",
        ")",
        "",
        "_SOURCES = {",
    ]
    for s in sorted(schemas, key=lambda s: s.provider):
        o.append(f"    {s.provider!r}: {generate_consumer(s)!r},")
    o += ["}",
          "",
          "# Each under its own file name, so tracebacks show the generated lines.",
          "PROVIDERS = {name: _exec_source(source, 'pyelog_consumer_' + name, '<pyelog consumer %s>' % name)",
          "             for name, source in _SOURCES.items()}",
          "",
          "is_session_end, format_payload, event_id_to_name, keyword_from_string = _aggregate_functions(PROVIDERS)",
          ""]
    return "\n".join(o)


# ---------------------------------------------------------------------------
# Command line: pyelog gen
# ---------------------------------------------------------------------------

USAGE = """\
usage: pyelog gen SCHEMA... (-h | -c | -M) [-o OUT] [-v outdir=DIR]

Compile eventlog schema files (<provider>_eventlog_schema.src), like FreeBSD's
eventlog_gen.awk. Options may appear anywhere.

  -h          eBPF producer C header; default output <provider>_eventlog.h
  -c          Python consumer module; default output <provider>_eventlog_consumer.py
              (the exact code pyelog execs to decode that provider)
  -M          aggregate Python consumer over all SCHEMAs (dispatch by provider
              name); written to OUT, or to stdout without -o
  -o OUT      output file ('-' = stdout); with -h/-c only for a single SCHEMA
  -v outdir=DIR  directory for default output names (legacy awk option)
  --help      this text

With several SCHEMAs, -h/-c write one default-named file per schema.
A schema error prints one line FILE:LINE: message and exits 1 without
writing any output; usage errors exit 2.
"""


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so no partial output is left behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def gen_main(argv: list[str]) -> int:
    """``pyelog gen`` entry point: ``argv`` excludes the ``gen`` word. Returns the exit status."""
    mode: str | None = None
    out: str | None = None
    outdir: str | None = None
    schemas: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--help":
            sys.stdout.write(USAGE)
            return 0
        if arg in ("-h", "-c", "-M"):
            if mode is not None and mode != arg:
                return _usage_error(f"{mode} and {arg} are exclusive")
            mode = arg
        elif arg == "-o":
            out = next(it, None)
            if out is None:
                return _usage_error("-o requires a file name")
        elif arg == "-v":
            value = next(it, "")
            if not value.startswith("outdir="):
                return _usage_error("-v takes outdir=DIR")
            outdir = value[len("outdir="):]
        elif arg.startswith("-") and arg != "-":
            return _usage_error(f"unknown option {clip(arg)}")
        else:
            schemas.append(arg)
    if mode is None:
        return _usage_error("one of -h, -c or -M is required")
    if not schemas:
        return _usage_error("no schema file given")
    if out is not None and mode != "-M" and len(schemas) > 1:
        return _usage_error("-o with -h/-c takes a single schema")
    try:
        loaded = [load_schema(path) for path in schemas]
        outputs: list[tuple[str, str]] = []
        if mode == "-M":
            seen: dict[str, Schema] = {}
            for s in loaded:
                if s.provider in seen:
                    raise SchemaError(s.path, 1, f"provider '{clip(s.provider)}' also defined by "
                                                  f"{seen[s.provider].path}")
                seen[s.provider] = s
            outputs.append((out or "-", generate_aggregate(loaded)))
        else:
            for s in loaded:
                if mode == "-h":
                    text, default = generate_producer(s), f"{s.prefix}.h"
                else:
                    text, default = generate_consumer(s), f"{s.prefix}_consumer.py"
                target = out or str(Path(outdir) / default if outdir else default)
                outputs.append((target, text))
    except SchemaError as e:
        print(terminal_safe(str(e)), file=sys.stderr)
        return 1
    for target, text in outputs:
        if target == "-":
            sys.stdout.write(text)
            continue
        try:
            _write_atomically(Path(target), text)
        except OSError as e:
            print(terminal_safe(f"pyelog gen: cannot write {target}: {e.strerror or e}"), file=sys.stderr)
            return 1
    return 0


def _usage_error(message: str) -> int:
    print(f"pyelog gen: {message} (see pyelog gen --help)", file=sys.stderr)
    return 2
