# SPDX-License-Identifier: BSD-2-Clause
"""The eventlog schema DSL: parse ``<provider>_eventlog_schema.src`` into a model.

This is the front half of FreeBSD's ``eventlog_gen.awk``: it reads the
line-oriented DSL with the awk tool's exact semantics and quirks and produces
a :class:`Schema` that :mod:`pyelog.schema.codegen` turns into the eBPF
producer header and the Python consumer. Nothing else reads schema files.

FreeBSD's schema DSL, as its awk tool reads it:

* Directives ``PROVIDER``, ``KEYWORD``, ``ENUM``, ``FLAG``, ``STRUCT``,
  ``EVENT``, recognised by a case-sensitive *prefix* match after optional
  blanks (so ``EVENTS`` is read as ``EVENT``; pyelog warns about that).
* ``ENUM``/``FLAG``/``STRUCT``/``EVENT`` blocks continue on following lines
  that start with a space or tab; each block kind has its own buffer and the
  awk rule order decides which open block an indented line joins.
* Runs of blanks collapse to one space (also inside format strings).
* Lines starting with ``//``, ``#``, ``/*`` or ``*`` are comments.
* ``KEYWORD`` decimal values below 16 are 1-based bit positions; ``SESSION``
  (0x80000000) is added when absent; ``EVENT`` keyword lists OR every defined
  keyword whose name is a *substring* of the list token.
* ``SESSION_CREATE``/``SESSION_END`` events are added when absent.

Deliberate differences from FreeBSD (each one turns a silent surprise or a C
compile failure into a clear ``FILE:LINE: message`` error):

* unrecognised non-comment lines are errors (awk ignores them, hiding typos);
* errors carry the line number (awk prints ``FILE():``) and no output is
  written after an error (awk may still write a header);
* values that awk pastes verbatim into C (keyword values that are neither hex
  nor decimal, enum/flag values, event ids) must be integer literals;
* unknown field types are errors (awk guesses 4 bytes);
* duplicate names/ids, undefined ``enum_``/``flag_`` references, reserved ids
  used by other events, and varlen maxima that do not fit the count field
  are errors;
* ``uintptr_t``/``intptr_t`` print as full 64-bit decimals (awk has no printf
  entry for them and warns).
"""
from __future__ import annotations

import re
import struct as _struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# The framework's vocabulary (sys/sys/eventlog.h), defined once for every
# layer: the reserved event ids, the session keyword, the levels an EVENT
# may name (LEVELS here: ERROR..TRACE, without NONE).
from pyelog.records.eventlog import DUMP_COMPLETE_ID, KEYWORD_SESSION, LEVEL_INFO, SESSION_CREATE_ID, SESSION_END_ID
from pyelog.records.eventlog import EVENT_LEVELS as LEVELS
from pyelog.records.untrusted import clip, terminal_safe

SCHEMA_SUFFIX = "_eventlog_schema.src"

DIRECTIVES = ("PROVIDER", "KEYWORD", "ENUM", "FLAG", "STRUCT", "EVENT")
ANNOTATIONS = ("hex", "ntohs")  # plus enum_<name> and flag_<name>

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_C_INT = re.compile(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([uU]?[lL]{0,2}|[lL]{1,2}[uU])\Z")


class SchemaError(Exception):
    """A fatal schema error at ``path:line``; ``str()`` is the one-line report."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass(frozen=True)
class FieldType:
    """A DSL scalar type with its LP64 size/alignment and how it is handled.

    ``kind`` is one of ``uint``, ``int``, ``ptr``, ``ipv4``, ``ipv6``, ``char``
    (``char`` only for ``char[N]`` arrays; plain ``char`` is a signed byte).
    ``struct_code`` is the Python :mod:`struct` code for one element and
    ``c_type`` the kernel-friendly C type used in the producer header.
    """

    name: str
    kind: str
    size: int
    align: int
    struct_code: str
    c_type: str

    @property
    def is_integer(self) -> bool:
        return self.kind in ("uint", "int", "ptr")


def _t(names: str, kind: str, size: int, align: int, code: str, c_type: str) -> dict[str, FieldType]:
    return {n: FieldType(n, kind, size, align, code, c_type) for n in names.split(",")}


# The DSL's field types with their LP64 C size and alignment (FreeBSD's
# eventlog_gen.awk knows the same names). IP addresses are kept as raw
# network-order bytes; the producer stores IPv4 as a __u32 (already network order) and IPv6 as __u32[4]
# so the C alignment (4) matches FreeBSD's struct in6_addr.
TYPES: dict[str, FieldType] = {
    **_t("uint8_t,u_char", "uint", 1, 1, "B", "__u8"),
    **_t("int8_t,char", "int", 1, 1, "b", "__s8"),
    **_t("uint16_t,u_short", "uint", 2, 2, "H", "__u16"),
    **_t("int16_t,short", "int", 2, 2, "h", "__s16"),
    **_t("uint32_t,u_int,lwpid_t", "uint", 4, 4, "I", "__u32"),
    **_t("int32_t,int", "int", 4, 4, "i", "__s32"),
    **_t("uint64_t,u_long,size_t,uintptr_t", "uint", 8, 8, "Q", "__u64"),
    **_t("int64_t,long,intptr_t", "int", 8, 8, "q", "__s64"),
    **_t("void*,void *", "ptr", 8, 8, "Q", "__u64"),
    **_t("in_addr_t,struct in_addr", "ipv4", 4, 4, "4s", "__u32"),
    **_t("in6_addr_t,struct in6_addr", "ipv6", 16, 4, "16s", "__u32"),
}

# Types a varlen count field may have: the unsigned integer types.
COUNT_TYPES = ("uint8_t", "uint16_t", "uint32_t", "uint64_t", "u_char", "u_short", "u_int", "u_long", "size_t")


@dataclass
class Field:
    """One STRUCT field, with its offset in the natural C layout.

    ``annotation`` is None, ``"hex"``, ``"ntohs"``, ``"enum"`` or ``"flag"``
    (``table`` then names the ENUM/FLAG). ``array_len`` is N for ``char[N]``.
    A varlen field has ``count_field``/``max_count`` set and no offset: its
    elements follow the head struct on the wire.
    """

    name: str
    type: FieldType
    line: int
    annotation: str | None = None
    table: str | None = None
    array_len: int | None = None
    count_field: str | None = None
    max_count: int | None = None
    offset: int = 0

    @property
    def is_varlen(self) -> bool:
        return self.count_field is not None

    @property
    def size(self) -> int:
        """Bytes in the head struct (element size for a varlen field)."""
        return self.array_len if self.array_len is not None else self.type.size


@dataclass
class Struct:
    """A STRUCT: the payload layout. ``fields`` includes the varlen field last."""

    name: str
    line: int
    fields: list[Field]
    size: int = 0
    align: int = 1
    auto: bool = False

    @property
    def fixed_fields(self) -> list[Field]:
        return [f for f in self.fields if not f.is_varlen]

    @property
    def varlen(self) -> Field | None:
        return self.fields[-1] if self.fields and self.fields[-1].is_varlen else None

    @property
    def struct_format(self) -> str:
        """The head's layout as a little-endian :mod:`struct` format, with
        explicit pad bytes: offsets as the C compiler lays the struct out."""
        codes: list[str] = ["<"]
        pos = 0
        for f in self.fixed_fields:
            if f.offset > pos:
                codes.append(f"{f.offset - pos}x")
            codes.append(f"{f.array_len}s" if f.array_len is not None else f.type.struct_code)
            pos = f.offset + f.size
        if self.size > pos:
            codes.append(f"{self.size - pos}x")
        return "".join(codes)


@dataclass
class ValueTable:
    """An ENUM (single value lookup) or FLAG (bit set) table, in declaration order."""

    name: str
    line: int
    items: list[tuple[int, str]]


@dataclass
class Keyword:
    name: str
    mask: int
    line: int


@dataclass(frozen=True)
class PrintfSpec:
    """One C printf conversion of an old-style format, e.g. ``%-5lu``."""

    flags: str
    width: str
    precision: str | None
    length: str
    conv: str

    @property
    def text(self) -> str:
        prec = "" if self.precision is None else "." + self.precision
        return f"%{self.flags}{self.width}{prec}{self.length}{self.conv}"


@dataclass(frozen=True)
class FieldRef:
    """A reference to field ``index`` (0-based) in a format string.

    ``spec`` is None for ``%N`` placeholders (the field is rendered the way
    its type/annotation dictates) or the printf conversion for old-style
    formats. ``index`` is None when an old-style format has more conversions
    than the struct has fields (rendered as 0 / empty).
    """

    index: int | None
    spec: PrintfSpec | None = None


FormatPart = str | FieldRef


@dataclass
class Event:
    """An EVENT: id, level, keyword mask, payload struct (None = NONE) and format."""

    name: str
    id: int
    level: int
    keywords: str
    mask: int
    struct_name: str | None
    format: str
    line: int
    auto: bool = False
    struct: Struct | None = None
    format_parts: list[FormatPart] = field(default_factory=list)
    format_style: str = "literal"  # "numbered" (%N), "printf" (old style) or "literal"


@dataclass
class Schema:
    """A parsed, validated schema: everything codegen needs, nothing more."""

    path: Path
    provider: str
    keywords: list[Keyword]
    enums: dict[str, ValueTable]
    flags: dict[str, ValueTable]
    structs: dict[str, Struct]
    events: list[Event]
    warnings: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Lower-case C identifier prefix, e.g. ``test_eventlog``."""
        return f"{self.provider.lower()}_eventlog"

    @property
    def macro_prefix(self) -> str:
        """Upper-case macro prefix, e.g. ``TEST_EVENTLOG``."""
        return f"{self.provider.upper()}_EVENTLOG"

    def keyword_mask(self, name: str) -> int:
        """Mask of keyword ``name`` (exact name), KeyError if undefined."""
        for k in self.keywords:
            if k.name == name:
                return k.mask
        raise KeyError(name)

    def event(self, name: str) -> Event:
        """The event called ``name``, KeyError if undefined."""
        for e in self.events:
            if e.name == name:
                return e
        raise KeyError(name)

    def event_filters(self) -> dict[int, tuple[int, int]]:
        """Event id -> (level, keyword mask) of every event: what delivery
        decides by (ProviderSpec.events)."""
        return {e.id: (e.level, e.mask) for e in self.events}

    def payload(self, name: str, *values) -> bytes:
        """The payload of event ``name`` with its fields' ``values`` in order
        (bytes for addresses and char arrays), laid out as the producer's C
        struct: for payloads built in user space (dump-state replays)."""
        struct_ = self.event(name).struct
        if struct_ is None:
            return b""
        return _struct.pack(struct_.struct_format, *values)


def provider_from_filename(path: str | Path) -> str | None:
    """The provider a schema file name implies (``foo_eventlog_schema.src`` ⇒ ``foo``)."""
    name = Path(path).name
    if name.endswith(SCHEMA_SUFFIX) and len(name) > len(SCHEMA_SUFFIX):
        return name[: -len(SCHEMA_SUFFIX)]
    return None


# More significant decimal digits than any 64-bit value has. Python's int()
# also refuses decimal strings of more than 4300 digits (a ValueError).
_MAX_DECIMAL_DIGITS = 20


def _decimal(digits: str) -> int | None:
    """The value of ASCII decimal ``digits`` (leading zeros allowed), or None
    when they are not that or the value needs more than 64 bits."""
    if not (digits.isascii() and digits.isdigit()):
        return None
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DECIMAL_DIGITS:
        return None
    value = int(significant or "0")
    return value if value < 1 << 64 else None


def parse_c_int(token: str) -> int | None:
    """Value of a C integer literal (hex, octal, decimal, U/L suffixes) or
    None; a decimal literal beyond 64 bits, which no C type holds, is None."""
    m = _C_INT.match(token)
    if not m:
        return None
    digits = m.group(1)
    if digits[:2] in ("0x", "0X"):
        return int(digits, 16)  # base 16 and 8 have no int() digit limit
    if len(digits) > 1 and digits[0] == "0":
        return int(digits, 8)
    return _decimal(digits)


def keyword_mask_from_token(token: str) -> int | None:
    """FreeBSD's KEYWORD value rule: hex verbatim, decimal < 16 is a 1-based bit.

    ``0`` gives mask 0 (awk computes 2^-1 and prints it with %x). Returns
    None for anything else (awk would paste it verbatim into C), and for a
    decimal beyond 64 bits.
    """
    if token[:2] in ("0x", "0X"):
        try:
            return int(token[2:], 16)
        except ValueError:
            return None
    n = _decimal(token)
    if n is not None:
        if n < 16:
            return 0 if n == 0 else 1 << (n - 1)
        return n
    return None


_PRINTF = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>[0-9]*)(?:\.(?P<prec>[0-9]*))?"
    r"(?P<len>hh|h|ll|l|j|z|t|L|q)?(?P<conv>[diouxXeEfFgGcsp%])"
)
_PLACEHOLDER = re.compile(r"%%|%(\d+)")
#: The widest printf field width or precision a format may ask for (the
#: consumer would pad every line to it; Python's % refuses huge ones).
MAX_PRINTF_WIDTH = 1024


def parse_format(fmt: str, struct: Struct | None) -> tuple[str, list[FormatPart], list[str]]:
    """Split a format string into literal text and field references.

    Returns ``(style, parts, problems)``. ``problems`` are fatal messages
    (bad ``%N``, printf widths above :data:`MAX_PRINTF_WIDTH`); the parser
    warns, not fails, when a printf-style format has more conversions than
    fields. FreeBSD's schema DSL knows three
    styles of format:

    * ``numbered``: any ``%<digits>``; each must be 1..field count and not
      the varlen field. ``%%`` prints ``%``; any other ``%`` is literal text
      (FreeBSD would hand it to printf, which is undefined behaviour here).
    * ``printf``: no ``%N`` but a ``%``: C printf conversions consume all
      non-varlen fields in declaration order.
    * ``literal``: no ``%`` at all.
    """
    fields = struct.fields if struct else []
    problems: list[str] = []
    if any(m.group(1) for m in _PLACEHOLDER.finditer(fmt)):
        parts: list[FormatPart] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(fmt):
            _append_text(parts, fmt[pos:m.start()])
            pos = m.end()
            if m.group(1) is None:
                _append_text(parts, "%")
                continue
            n = _decimal(m.group(1))
            if n is None or not 1 <= n <= len(fields):
                problems.append(f"invalid placeholder {clip(m.group(0))}: struct has {len(fields)} field(s)")
                continue
            if fields[n - 1].is_varlen:
                problems.append(f"format references varlen field '{clip(fields[n - 1].name)}' (%{n})")
                continue
            parts.append(FieldRef(n - 1))
        _append_text(parts, fmt[pos:])
        return "numbered", parts, problems
    if "%" not in fmt:
        return "literal", [fmt] if fmt else [], problems
    fixed = [i for i, f in enumerate(fields) if not f.is_varlen]
    parts = []
    pos = 0
    next_arg = 0
    i = 0
    while True:
        i = fmt.find("%", pos)
        if i < 0:
            break
        m = _PRINTF.match(fmt, i)
        if m is None:  # not a conversion: printed as is
            _append_text(parts, fmt[pos:i + 1])
            pos = i + 1
            continue
        _append_text(parts, fmt[pos:i])
        pos = m.end()
        if m.group("conv") == "%":
            _append_text(parts, "%")
            continue
        spec = PrintfSpec(m.group("flags"), m.group("width"), m.group("prec"), m.group("len") or "", m.group("conv"))
        for number in (spec.width, spec.precision):
            value = _decimal(number) if number else 0
            if value is None or value > MAX_PRINTF_WIDTH:
                problems.append(f"printf width or precision above {MAX_PRINTF_WIDTH} in {clip(m.group(0))}")
                break
        index = fixed[next_arg] if next_arg < len(fixed) else None
        next_arg += 1
        parts.append(FieldRef(index, spec))
    _append_text(parts, fmt[pos:])
    return "printf", parts, problems


def _append_text(parts: list[FormatPart], text: str) -> None:
    if not text:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)


WarningSink = Callable[[str], None]


def _stderr_warning(message: str) -> None:
    print(terminal_safe(message), file=sys.stderr)


def load_schema(path: str | Path, warn: WarningSink | None = _stderr_warning) -> Schema:
    """Read and validate one schema file.

    Raises :class:`SchemaError` on the first fatal error. Warnings
    (``FILE:LINE: warning: ...``) are passed to ``warn`` (stderr by default,
    None to drop them) and also kept in ``Schema.warnings``.
    """
    path = Path(path)
    try:
        # Bytes, then decoded: read_text() would take a lone '\r' for a
        # line end (universal newlines), and awk does not.
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as e:
        raise SchemaError(path, 0, f"cannot read schema: {e.strerror or e}") from None
    return parse_schema(text, path, warn)


def parse_schema(text: str, path: str | Path, warn: WarningSink | None = _stderr_warning) -> Schema:
    """Parse schema ``text`` as if read from ``path`` (the name must match PROVIDER)."""
    return _Parser(Path(path), warn).run(text)


class _Block:
    """An open ENUM/FLAG/STRUCT/EVENT block: its tokens with their line numbers."""

    def __init__(self, kind: str, line: int) -> None:
        self.kind = kind
        self.line = line
        self.tokens: list[tuple[str, int]] = []

    def add(self, text: str, line: int) -> None:
        self.tokens.extend((t, line) for t in text.split())


def _directive(stripped: str, name: str) -> bool:
    return stripped.startswith(name)


def _is_comment_or_blank(stripped: str) -> bool:
    return not stripped or stripped.startswith(("//", "#", "/*", "*"))


class _Parser:
    # FreeBSD's awk rule order: an indented line joins the first
    # open block in this order; an unindented line closes each open block
    # whose continuation rule it reaches.
    def __init__(self, path: Path, warn: WarningSink | None) -> None:
        self.path = path
        self.warn_sink = warn
        self.warnings: list[str] = []
        self.provider: str | None = None
        self.provider_line = 0
        self.keywords: list[Keyword] = []
        self.enums: dict[str, ValueTable] = {}
        self.flags: dict[str, ValueTable] = {}
        self.structs: dict[str, Struct] = {}
        self.events: list[Event] = []
        self.open: dict[str, _Block] = {}

    def error(self, line: int, message: str) -> SchemaError:
        return SchemaError(self.path, line, message)

    def warning(self, line: int, message: str) -> None:
        text = f"{self.path}:{line}: warning: {message}"
        self.warnings.append(text)
        if self.warn_sink is not None:
            self.warn_sink(text)

    # -- line dispatch -------------------------------------------------

    def run(self, text: str) -> Schema:
        # Lines end at '\n' only, as awk reads them: str.splitlines() would
        # also split at a form feed, \x1c-\x1e, \x85, \u2028 ... inside a line
        # and shift every later line number. A CRLF file's '\r' is dropped.
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the text's final newline ends the last line
        for lineno, raw in enumerate(lines, 1):
            self.line(raw.removesuffix("\r"), lineno)
        end = max(len(lines), 1)
        for kind in ("STRUCT", "ENUM", "FLAG", "EVENT"):
            self.close(kind)
        return self.finish(end)

    def line(self, raw: str, lineno: int) -> None:
        # eventlog_gen.awk's rules, in its order: the order decides which
        # rule a line that could match two of them obeys.
        indented = raw[:1] in (" ", "\t")
        stripped = raw.strip(" \t\r\f\v")
        collapsed = " ".join(stripped.split())
        self.check_text(raw, indented, stripped, lineno)
        if _directive(stripped, "PROVIDER"):
            return self.on_provider(collapsed, lineno)
        if self.block_rules("STRUCT", indented, stripped, collapsed, lineno):
            return
        if _directive(stripped, "KEYWORD"):
            return self.on_keyword(collapsed, lineno)
        for kind in ("ENUM", "FLAG", "EVENT"):
            if self.block_rules(kind, indented, stripped, collapsed, lineno):
                return
        if _is_comment_or_blank(stripped):
            return
        raise self.error(lineno, f"unrecognised line (not a directive, continuation or comment): "
                                 f"'{clip(collapsed)}'")

    def check_text(self, raw: str, indented: bool, stripped: str, lineno: int) -> None:
        """Refuse a line that is read as content and is not UTF-8 text.

        load_schema keeps undecodable bytes as surrogate escapes, which no
        output could encode. Comments may hold any bytes; an indented line
        while a block is open is content, whatever it starts with.
        """
        if raw.isascii() or (_is_comment_or_blank(stripped) and not (indented and self.open)):
            return
        for column, c in enumerate(raw, 1):
            if "\udc80" <= c <= "\udcff":
                raise self.error(lineno, f"not UTF-8 text (byte 0x{ord(c) - 0xDC00:02x} at column {column})")

    def block_rules(self, kind: str, indented: bool, stripped: str, collapsed: str, lineno: int) -> bool:
        """The two rules of a block kind: a line continuing the open block,
        or the directive opening one. True if either took the line."""
        if self.continue_block(kind, indented, stripped, collapsed, lineno):
            return True
        if not _directive(stripped, kind):
            return False
        if kind == "FLAG":
            self.close("ENUM")
        self.start(kind, collapsed, lineno)
        return True

    def continue_block(self, kind: str, indented: bool, stripped: str, collapsed: str, lineno: int) -> bool:
        block = self.open.get(kind)
        if block is None:
            return False
        if indented:
            if stripped and _is_comment_or_blank(stripped):
                self.warning(lineno, f"indented comment line continues the {kind} block started at line "
                                     f"{block.line} and is read as content (FreeBSD semantics); "
                                     "put comments in column 0")
            block.add(collapsed, lineno)
            return True
        self.close(kind)
        return False

    def start(self, kind: str, collapsed: str, lineno: int) -> None:
        self.check_directive_word(kind, collapsed, lineno)
        block = _Block(kind, lineno)
        block.add(collapsed, lineno)
        self.open[kind] = block

    def check_directive_word(self, kind: str, collapsed: str, lineno: int) -> None:
        word = collapsed.split(" ", 1)[0]
        if word != kind:
            self.warning(lineno, f"'{clip(word)}' is read as {kind} (directives match by prefix, as in FreeBSD)")

    def close(self, kind: str) -> None:
        block = self.open.pop(kind, None)
        if block is None:
            return
        {"STRUCT": self.on_struct, "ENUM": self.on_table, "FLAG": self.on_table, "EVENT": self.on_event}[kind](block)

    # -- directives ----------------------------------------------------

    def on_provider(self, collapsed: str, lineno: int) -> None:
        self.check_directive_word("PROVIDER", collapsed, lineno)
        tokens = collapsed.split()
        if len(tokens) < 2:
            raise self.error(lineno, "invalid PROVIDER line: expected 'PROVIDER <name>'")
        if self.provider is not None:
            raise self.error(lineno, f"PROVIDER already defined at line {self.provider_line}")
        name = tokens[1]
        if not _IDENT.match(name):
            raise self.error(lineno, f"invalid PROVIDER name '{clip(name)}': must be a C identifier")
        stem = provider_from_filename(self.path)
        if stem is None:
            raise self.error(lineno, f"schema file name must be <provider>{SCHEMA_SUFFIX}, not '{self.path.name}'")
        if name.lower() != stem:
            raise self.error(lineno, f"PROVIDER '{clip(name)}' does not match the file name "
                                     f"(expected '{clip(stem)}' from {self.path.name})")
        self.provider = name
        self.provider_line = lineno

    def on_keyword(self, collapsed: str, lineno: int) -> None:
        self.check_directive_word("KEYWORD", collapsed, lineno)
        tokens = collapsed.split()
        if len(tokens) < 3:
            raise self.error(lineno, "invalid KEYWORD line: expected 'KEYWORD <NAME> <value>'")
        name, value = tokens[1], tokens[2]
        if not _IDENT.match(name):
            raise self.error(lineno, f"invalid KEYWORD name '{clip(name)}': must be a C identifier")
        if any(k.name == name for k in self.keywords):
            raise self.error(lineno, f"KEYWORD {clip(name)} already defined")
        mask = keyword_mask_from_token(value)
        decimal = value.isascii() and value.isdigit()  # None then means beyond 64 bits
        if mask is None and not decimal:
            raise self.error(lineno, f"invalid KEYWORD value '{clip(value)}': expected 0x<hex> or a decimal number")
        if mask is None or mask > 0xFFFFFFFF:
            raise self.error(lineno, f"KEYWORD {clip(name)} value {clip(value)} does not fit in 32 bits")
        if mask == 0:
            self.warning(lineno, f"KEYWORD {clip(name)} has mask 0 and can never match a filter")
        self.keywords.append(Keyword(name, mask, lineno))

    def on_table(self, block: _Block) -> None:
        kind = block.kind
        what = kind.lower()
        tokens = block.tokens
        if len(tokens) < 3:
            raise self.error(block.line, f"invalid {kind} line: expected '{kind} <name> <value>:<LABEL> ...'")
        name = tokens[1][0]
        if not _IDENT.match(name):
            raise self.error(block.line, f"invalid {kind} name '{clip(name)}': must be a C identifier")
        tables = self.enums if kind == "ENUM" else self.flags
        if name in tables:
            raise self.error(block.line, f"{kind} {clip(name)} already defined at line {tables[name].line}")
        items: list[tuple[int, str]] = []
        for token, line in tokens[2:]:
            parts = token.split(":")
            if len(parts) != 2:
                raise self.error(line, f"invalid {what} value definition '{clip(token)}': expected <value>:<LABEL>")
            value = parse_c_int(parts[0])
            if value is None or value > 0xFFFFFFFF:
                raise self.error(line, f"invalid {what} value definition '{clip(token)}': "
                                       "value must be a 32-bit C integer literal")
            if not _IDENT.match(parts[1]):
                raise self.error(line, f"invalid {what} value definition '{clip(token)}': "
                                       "label must be a C identifier")
            items.append((value, parts[1]))
        tables[name] = ValueTable(name, block.line, items)

    def on_struct(self, block: _Block) -> None:
        tokens = _merge_type_tokens(block.tokens)
        if len(tokens) < 2:
            raise self.error(block.line, "invalid STRUCT line: expected 'STRUCT <name> <field>...'")
        name = tokens[1][0]
        if not _IDENT.match(name):
            raise self.error(block.line, f"invalid STRUCT name '{clip(name)}': must be a C identifier")
        if name in self.structs:
            raise self.error(block.line, f"STRUCT {clip(name)} already defined at line {self.structs[name].line}")
        fields: list[Field] = []
        for token, line in tokens[2:]:
            if fields and fields[-1].is_varlen:
                raise self.error(line, f"varlen field '{clip(fields[-1].name)}' must be the last field "
                                       f"of STRUCT {clip(name)}")
            fields.append(self.parse_field(token, line, fields, name))
        struct = Struct(name, block.line, fields)
        _layout(struct)
        self.structs[name] = struct

    def parse_field(self, token: str, line: int, earlier: list[Field], struct_name: str) -> Field:
        if ":" not in token:
            raise self.error(line, f"invalid field definition '{clip(token)}': expected name:type[:annotation]")
        name, rest = token.split(":", 1)
        if not _IDENT.match(name):
            raise self.error(line, f"invalid field definition '{clip(token)}': field name must be a C identifier")
        if any(f.name == name for f in earlier):
            raise self.error(line, f"duplicate field '{clip(name)}' in STRUCT {clip(struct_name)}")
        if "[" in rest:
            return self.parse_array_field(token, name, rest, line, earlier)
        parts = rest.split(":")
        if len(parts) > 2:
            raise self.error(line, f"invalid field definition '{clip(token)}': expected name:type[:annotation]")
        ftype = self.field_type(parts[0], token, line)
        f = Field(name, ftype, line)
        if len(parts) == 2:
            self.annotate(f, parts[1], token, line)
        return f

    def parse_array_field(self, token: str, name: str, rest: str, line: int, earlier: list[Field]) -> Field:
        type_name, bracket = rest.split("[", 1)
        if not bracket.endswith("]"):
            if "]" in bracket:
                raise self.error(line, f"invalid field definition '{clip(token)}': nothing may follow ']'")
            raise self.error(line, f"invalid field definition '{clip(token)}': missing ']'")
        inner = bracket[:-1]
        if type_name == "char":
            if ":" in inner:
                raise self.error(line, f"varlen field '{clip(name)}' may not have element type char")
            size = _decimal(inner)
            if not size:
                raise self.error(line, f"invalid field definition '{clip(token)}': "
                                       "char[N] needs a positive decimal N (64 bits at most)")
            return Field(name, FieldType("char", "char", 1, 1, "s", "char"), line, array_len=size)
        spec = inner.split(":")
        if len(spec) != 2 or not spec[0] or not spec[1]:
            raise self.error(line, f"invalid varlen field '{clip(token)}': expected name:type[countfield:max]")
        count_name, max_text = spec
        max_count = _decimal(max_text)
        if not (max_text.isascii() and max_text.isdigit()) or max_count == 0:
            raise self.error(line, f"invalid varlen field '{clip(token)}': max must be a positive decimal integer")
        elem = self.field_type(type_name, token, line)
        count = next((f for f in earlier if f.name == count_name), None)
        if count is None:
            raise self.error(line, f"varlen count field '{clip(count_name)}' must be an earlier field of the struct")
        if count.type.name not in COUNT_TYPES or count.array_len is not None:
            raise self.error(line, f"varlen count field '{clip(count_name)}' must have an unsigned type "
                                   f"({', '.join(COUNT_TYPES)}), not {count.type.name}")
        if max_count is None or max_count >= 1 << (8 * count.type.size):
            raise self.error(line, f"varlen max {clip(max_text)} does not fit count field '{clip(count_name)}' "
                                   f"({count.type.name})")
        return Field(name, elem, line, count_field=count_name, max_count=max_count)

    def field_type(self, type_name: str, token: str, line: int) -> FieldType:
        ftype = TYPES.get(type_name)
        if ftype is None:
            raise self.error(line, f"unknown type '{clip(type_name)}' in field '{clip(token)}' "
                                   f"(known: {', '.join(sorted(TYPES))}, char[N])")
        return ftype

    def annotate(self, f: Field, annotation: str, token: str, line: int) -> None:
        if annotation in ANNOTATIONS:
            f.annotation = annotation
        elif annotation.startswith("enum_") and len(annotation) > 5:
            f.annotation, f.table = "enum", annotation[5:]
        elif annotation.startswith("flag_") and len(annotation) > 5:
            f.annotation, f.table = "flag", annotation[5:]
        else:
            raise self.error(line, f"invalid annotation '{clip(annotation)}' in field '{clip(token)}' "
                                   "(allowed: hex, ntohs, enum_<name>, flag_<name>)")
        if not f.type.is_integer:
            raise self.error(line, f"annotation '{clip(annotation)}' needs an integer field, "
                                   f"'{clip(f.name)}' is {f.type.name}")

    def on_event(self, block: _Block) -> None:
        tokens = [t for t, _ in block.tokens]
        if len(tokens) < 7:
            raise self.error(block.line, "invalid EVENT line: expected "
                                         "'EVENT <NAME> <id> <LEVEL> <KW,...> <STRUCT|NONE> \"<format>\"'")
        name, id_text, level_text, kw_text, struct_name = tokens[1:6]
        if not _IDENT.match(name):
            raise self.error(block.line, f"invalid EVENT name '{clip(name)}': must be a C identifier")
        event_id = parse_c_int(id_text)
        if event_id is None or event_id > 0xFFFFFFFF:
            raise self.error(block.line, f"invalid EVENT id '{clip(id_text)}': must be a 32-bit C integer literal")
        level = LEVELS.get(level_text)
        if level is None:
            self.warning(block.line, f"unknown level '{clip(level_text)}' for EVENT {clip(name)}: using INFO "
                                     "(levels: ERROR, WARN, INFO, VERBOSE, TRACE)")
            level = LEVEL_INFO
        fmt = " ".join(tokens[6:])
        if fmt.startswith('"'):
            fmt = fmt[1:]
        if fmt.endswith('"'):
            fmt = fmt[:-1]
        self.events.append(Event(name, event_id, level, kw_text, 0,
                                 None if struct_name == "NONE" else struct_name, fmt, block.line))

    # -- end of file ---------------------------------------------------

    def finish(self, end: int) -> Schema:
        if self.provider is None:
            raise self.error(end, "PROVIDER missing (a schema needs 'PROVIDER <name>')")
        if not self.events:
            raise self.error(end, "no EVENT defined")
        if not any(k.name == "SESSION" for k in self.keywords):
            self.keywords.append(Keyword("SESSION", KEYWORD_SESSION, 0))
        self.check_annotations()
        names = {e.name for e in self.events}
        if "SESSION_CREATE" not in names:
            if "SESSION_CREATE" not in self.structs:
                auto = Struct("SESSION_CREATE", 0, [Field("_unused", TYPES["uint8_t"], 0)], auto=True)
                _layout(auto)
                self.structs["SESSION_CREATE"] = auto
            self.events.append(Event("SESSION_CREATE", SESSION_CREATE_ID, LEVEL_INFO, "SESSION", 0,
                                     "SESSION_CREATE", "Session created", 0, auto=True))
        if "SESSION_END" not in names:
            self.events.append(Event("SESSION_END", SESSION_END_ID, LEVEL_INFO, "SESSION", 0,
                                     None, "Session ended", 0, auto=True))
        seen_names: dict[str, Event] = {}
        seen_ids: dict[int, Event] = {}
        for e in self.events:
            if e.name in seen_names:
                raise self.error(e.line, f"EVENT {clip(e.name)} already defined at line {seen_names[e.name].line}")
            if e.id in seen_ids:
                raise self.error(e.line, f"EVENT {clip(e.name)} reuses id {e.id} of "
                                         f"EVENT {clip(seen_ids[e.id].name)} "
                                         f"(line {seen_ids[e.id].line})")
            seen_names[e.name] = e
            seen_ids[e.id] = e
            self.resolve_event(e)
        return Schema(self.path, self.provider, self.keywords, self.enums, self.flags,
                      self.structs, self.events, self.warnings)

    def check_annotations(self) -> None:
        for s in self.structs.values():
            for f in s.fields:
                if f.annotation == "enum" and f.table not in self.enums:
                    raise self.error(f.line, f"field '{clip(f.name)}' refers to undefined ENUM '{clip(f.table)}'")
                if f.annotation == "flag" and f.table not in self.flags:
                    raise self.error(f.line, f"field '{clip(f.name)}' refers to undefined FLAG '{clip(f.table)}'")
        labels: dict[str, int] = {}
        for table in self.flags.values():
            for value, label in table.items:
                # Flag constants are <PROV>_EVENTLOG_FLAG_<LABEL>, shared by all sets.
                if labels.setdefault(label.upper(), value) != value:
                    raise self.error(table.line, f"FLAG label {clip(label)} is defined with two different values "
                                                 "(flag constants share one namespace)")

    def resolve_event(self, e: Event) -> None:
        reserved = {SESSION_CREATE_ID: "SESSION_CREATE", SESSION_END_ID: "SESSION_END",
                    DUMP_COMPLETE_ID: "DUMP_COMPLETE"}
        if e.name in reserved.values() and reserved.get(e.id) != e.name:
            raise self.error(e.line, f"EVENT {clip(e.name)} must use its reserved id")
        if e.id in reserved and reserved[e.id] != e.name:
            raise self.error(e.line, f"EVENT {clip(e.name)}: id {e.id:#x} is reserved for {reserved[e.id]}")
        # FreeBSD quirk: every defined keyword whose name is a substring of
        # the token counts, e.g. token "RXT" also selects keyword "RX".
        e.mask = 0
        for k in self.keywords:
            if k.name in e.keywords:
                e.mask |= k.mask
        if e.mask == 0:
            self.warning(e.line, f"EVENT {clip(e.name)} matches no defined keyword ('{clip(e.keywords)}'): "
                                 "mask 0, it can never pass a filter")
        if e.struct_name is not None:
            e.struct = self.structs.get(e.struct_name)
            if e.struct is None:
                raise self.error(e.line, f"STRUCT {clip(e.struct_name)} not found for EVENT {clip(e.name)}")
        style, parts, problems = parse_format(e.format, e.struct)
        if problems:
            raise self.error(e.line, f"EVENT {clip(e.name)}: {problems[0]}")
        e.format_style, e.format_parts = style, parts
        if style == "printf":
            refs = [p for p in parts if isinstance(p, FieldRef)]
            fixed = e.struct.fixed_fields if e.struct else []
            if any(r.index is None for r in refs):
                self.warning(e.line, f"EVENT {clip(e.name)}: format has {len(refs)} conversion(s) but only "
                                     f"{len(fixed)} field(s); missing ones print as 0/empty")


def _merge_type_tokens(tokens: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Re-join types that contain a blank: ``f:struct in_addr``, ``f:void *``.

    Whitespace collapsing splits them into two tokens; a field whose type
    component is ``struct`` or ``void`` takes the next token as the rest.
    """
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        text, line = tokens[i]
        last = text.rsplit(":", 1)[-1]
        if ":" in text and last in ("struct", "void") and i + 1 < len(tokens):
            text = f"{text} {tokens[i + 1][0]}"
            i += 1
        out.append((text, line))
        i += 1
    return out


def _layout(struct: Struct) -> None:
    """Assign natural LP64 C offsets, size and alignment: the layout of the C
    struct the producer header declares (which checks it with _Static_assert).

    A varlen head is ``__attribute__((aligned(sizeof(elem))))``, so its size
    is a multiple of the element size too.
    """
    offset = 0
    align = 1
    for f in struct.fixed_fields:
        a = f.type.align
        offset = (offset + a - 1) // a * a
        f.offset = offset
        offset += f.size
        align = max(align, a)
    varlen = struct.varlen
    if varlen is not None:
        align = max(align, varlen.type.size)
        varlen.offset = 0
    struct.align = align
    struct.size = (offset + align - 1) // align * align
    if varlen is not None:
        varlen.offset = struct.size
