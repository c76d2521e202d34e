# SPDX-License-Identifier: BSD-2-Clause
"""What every generated consumer module shares: the schema-independent half.

``pyelog gen -c`` turns one schema into a Python module (see
:func:`pyelog.schema.codegen.generate_consumer`). That module holds only
what the schema decides: the provider's tables (keywords, events, enums,
flags), one :class:`struct.Struct` per payload layout, and one formatter
and one decoder function per event. Everything that is the same for every
schema is here, and the generated module imports it::

    from pyelog.schema.runtime import (...)

* the reserved event ids (from :mod:`pyelog.records.eventlog`);
* how a field's bytes become text: :func:`cstr` (``char[N]``),
  :func:`ntop4`/:func:`ntop6` (addresses), :func:`bad_varlen` (the marker
  for an untrustworthy varlen count);
* :func:`enum_functions` and :func:`flag_functions`: the lookup functions of
  one ENUM or FLAG table (label or number, ``|``-joined flag names);
* :func:`event_names`, :func:`event_id_to_name_function`,
  :func:`keyword_from_string_function`: name and keyword look-ups;
* :func:`dispatch_functions`: ``format_payload``, ``formatter`` and
  ``decode``, which pick the generated per-event function by event id
  (DUMP_COMPLETE included: the framework's event, not a schema's);
* :func:`aggregate_functions`: the same dispatch by provider name, for the
  aggregate module of ``pyelog gen -M``; :func:`exec_source` loads the
  per-provider modules it embeds.

The per-event code stays generated because it is the hot path: each event's
formatter unpacks with a bound ``Struct.unpack_from`` and builds its text
with one ``%`` expression, in which an enum or flag field is an inline dict
look-up (``_ENUM_x.get(v) or _enum_x(v)``) and an address or string field a
direct call of :func:`ntop4`/:func:`ntop6`/:func:`cstr` (imported as
module globals of the generated module). The enum and flag functions here
run only when that dict misses; the dispatch runs once per event id
(``formatter``) or once per call (``format_payload``, ``decode``).
"""
from __future__ import annotations

import linecache
import socket
import types
from collections.abc import Callable, Mapping

from pyelog.records.eventlog import DUMP_COMPLETE_ID, SESSION_CREATE_ID, SESSION_END_ID

__all__ = [
    "SESSION_END_ID", "SESSION_CREATE_ID", "DUMP_COMPLETE_ID",
    "cstr", "ntop4", "ntop6", "bad_varlen", "no_fields",
    "enum_functions", "flag_functions", "FLAG_TEXT_CACHE_MAX",
    "event_names", "event_id_to_name_function", "keyword_from_string_function",
    "format_dump_complete", "decode_dump_complete", "dispatch_functions",
    "exec_source", "aggregate_functions",
]

_Formatter = Callable[[bytes], str]
_Decoder = Callable[[bytes], dict]

_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_inet_ntop = socket.inet_ntop


# ---------------------------------------------------------------------------
# Field values
# ---------------------------------------------------------------------------

def cstr(raw: bytes) -> str:
    """``char[N]`` text: up to the first NUL (the producer forces one), undecodable bytes replaced."""
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("utf-8", "replace")


def ntop4(raw: bytes) -> str:
    """Dotted IPv4 text of 4 bytes in network order."""
    return _inet_ntop(_AF_INET, raw)


def ntop6(raw: bytes) -> str:
    """IPv6 text (RFC 5952, as inet_ntop(3)) of 16 bytes in network order."""
    return _inet_ntop(_AF_INET6, raw)


def bad_varlen(name: str, count: int, max_count: int, available: int) -> str:
    """Marker for a varlen count that cannot be trusted (never raises, never reads past the payload).

    ``[BAD_VARLEN:<name> count=N max=M]`` when the count exceeds the
    schema's maximum, otherwise ``[BAD_VARLEN:<name> count=N
    payload_bytes=B]`` (``available``: payload bytes after the head struct).
    """
    if count > max_count:
        return "[BAD_VARLEN:%s count=%d max=%d]" % (name, count, max_count)
    return "[BAD_VARLEN:%s count=%d payload_bytes=%d]" % (name, count, max(available, 0))


def no_fields(payload: bytes) -> dict:
    """The decoder of an event without fields: an empty dict (a new one per call)."""
    return {}


# ---------------------------------------------------------------------------
# ENUM and FLAG tables
# ---------------------------------------------------------------------------

#: A FLAG table's text cache stops growing at this many distinct values.
FLAG_TEXT_CACHE_MAX = 4096


def _named(function: Callable, name: str, doc: str) -> Callable:
    function.__name__ = function.__qualname__ = name
    function.__doc__ = doc
    return function


def enum_functions(name: str, labels: Mapping[int, str]) -> tuple[Callable[[int], str | None],
                                                                    Callable[[int], str]]:
    """``(enum_<name>_to_string, text)`` for the ENUM table ``labels`` ({value: label}).

    ``enum_<name>_to_string(value)`` is the label of ``value`` looked up as a
    uint32, or None. ``text(value)`` is what a format shows for the field:
    the label (of the value as read, else of its uint32 cast), else the
    number in decimal. Generated code calls ``text`` only when the inline
    ``labels.get(value)`` found nothing.
    """
    get = labels.get

    def to_string(value: int) -> str | None:
        return get(value & 0xFFFFFFFF)

    def text(value: int) -> str:
        label = get(value)
        if label is None:
            value &= 0xFFFFFFFF
            label = get(value)
        return label if label is not None else str(value)

    return (_named(to_string, f"enum_{name}_to_string", "Label for value (looked up as uint32), or None."),
            _named(text, f"_enum_{name}", f"Text of an enum_{name} field: its label, else the decimal number."))


def flag_functions(name: str, bits: tuple[tuple[int, str], ...]) -> tuple[Callable[[int], str],
                                                                           Callable[[int], str],
                                                                           dict[int, str]]:
    """``(flag_<name>_to_string, text, cache)`` for the FLAG table ``bits`` ((bit, label), ...).

    ``flag_<name>_to_string(value)`` joins the labels of the known set bits
    of the uint32 ``value`` with ``|`` in declaration order ("" if none).
    ``text(value)`` is what a format shows: those labels, else the decimal
    uint32; it remembers its answers in ``cache`` ({value: text}, at most
    :data:`FLAG_TEXT_CACHE_MAX` entries: few distinct values occur in
    practice), which generated code reads inline (``cache.get(value) or
    text(value)``) so that a known value costs one dict look-up.
    """
    cache: dict[int, str] = {}

    def to_string(value: int) -> str:
        value &= 0xFFFFFFFF
        return "|".join([label for bit, label in bits if value & bit])

    def text(value: int) -> str:
        result = cache.get(value)
        if result is None:
            result = to_string(value) or str(value & 0xFFFFFFFF)
            if len(cache) < FLAG_TEXT_CACHE_MAX:
                cache[value] = result
        return result

    return (_named(to_string, f"flag_{name}_to_string",
                   'Labels of the known set bits joined by "|" in declaration order, "" if none.'),
            _named(text, f"_flag_{name}", f"Text of a flag_{name} field: its labels, else the decimal number."),
            cache)


# ---------------------------------------------------------------------------
# Names and keywords
# ---------------------------------------------------------------------------

def event_names(events: Mapping[int, tuple]) -> dict[int, str]:
    """{event id: name} from a generated ``EVENTS`` table, plus DUMP_COMPLETE.

    DUMP_COMPLETE (0xFFFFFFFD) is the framework's event and is known by name
    to every consumer (FreeBSD's generated tables do not know it; its elog
    prints ``[?4294967293]``).
    """
    names = {event_id: event[0] for event_id, event in events.items()}
    names.setdefault(DUMP_COMPLETE_ID, "DUMP_COMPLETE")
    return names


def event_id_to_name_function(names: Mapping[int, str]) -> Callable[[int], str | None]:
    """``event_id_to_name(event_id)``: the name in ``names``, or None."""
    get = names.get

    def event_id_to_name(event_id: int) -> str | None:
        """Event name for event_id, or None."""
        return get(event_id)

    return event_id_to_name


def keyword_from_string_function(keywords: Mapping[str, int]) -> Callable[[str], int]:
    """``keyword_from_string(name)``: the mask in ``keywords``, case-insensitive, 0 if unknown."""
    by_lower_name = {name.lower(): mask for name, mask in keywords.items()}

    def keyword_from_string(name: str) -> int:
        """Keyword mask for name, case-insensitive (strcasecmp), 0 if unknown."""
        return by_lower_name.get(name.lower(), 0)

    return keyword_from_string


# ---------------------------------------------------------------------------
# Dispatch by event id
# ---------------------------------------------------------------------------

def format_dump_complete(payload: bytes) -> str:
    """The text of DUMP_COMPLETE, whatever its payload."""
    return "Dump complete"


def decode_dump_complete(payload: bytes) -> dict:
    """The fields of DUMP_COMPLETE: none."""
    return {}


def dispatch_functions(formatters: dict[int, _Formatter], decoders: dict[int, _Decoder]
                       ) -> tuple[Callable[[int, bytes], str], Callable[[int], _Formatter],
                                  Callable[[int, bytes], dict | None]]:
    """``(format_payload, formatter, decode)`` over the per-event functions.

    ``formatters``/``decoders`` map event ids to the generated per-event
    functions; DUMP_COMPLETE is added to both unless the schema defines it
    (the dicts are updated in place).
    """
    formatters.setdefault(DUMP_COMPLETE_ID, format_dump_complete)
    decoders.setdefault(DUMP_COMPLETE_ID, decode_dump_complete)
    get_formatter = formatters.get
    get_decoder = decoders.get

    def format_payload(event_id: int, payload: bytes) -> str:
        """elog(1) text for one event payload; [UNKNOWN_EVENT_ID:<id>] for unknown ids."""
        function = get_formatter(event_id)
        if function is None:
            return "[UNKNOWN_EVENT_ID:%d]" % event_id
        return function(payload)

    def formatter(event_id: int) -> _Formatter:
        """payload -> elog(1) text for one event id: format_payload without the per-call lookup."""
        function = get_formatter(event_id)
        if function is None:
            text = "[UNKNOWN_EVENT_ID:%d]" % event_id
            return lambda payload: text
        return function

    def decode(event_id: int, payload: bytes) -> dict | None:
        """{field name: value} for one event payload, or None for unknown ids.

        Integers (ntohs fields byte-swapped to host order, enum/flag fields as
        their numbers), addresses as text, char[N] as str, varlen arrays as lists.
        """
        function = get_decoder(event_id)
        if function is None:
            return None
        return function(payload)

    return format_payload, formatter, decode


# ---------------------------------------------------------------------------
# Loading generated source; the aggregate (-M)
# ---------------------------------------------------------------------------

def exec_source(source: str, name: str, filename: str | None = None) -> types.ModuleType:
    """Exec generated Python ``source`` as a fresh module called ``name``.

    The source is registered with :mod:`linecache` under ``filename``
    (default ``<name>``) so tracebacks show the generated lines.
    """
    if filename is None:
        filename = f"<{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def aggregate_functions(providers: Mapping[str, types.ModuleType]) -> tuple[Callable, ...]:
    """``(is_session_end, format_payload, event_id_to_name, keyword_from_string)`` by provider name.

    ``providers`` maps provider names to loaded consumer modules, as
    FreeBSD's ``eventlog_consumer.h`` dispatches: an unknown provider gives
    ``[UNKNOWN_PROVIDER:<name>]`` text, no names except SESSION_END (any
    provider's 0xFFFFFFFF) and DUMP_COMPLETE, and keyword mask 0.
    """
    get = providers.get

    def is_session_end(provider: str, event_id: int) -> bool:
        """Whether event_id ends a session (SESSION_END, the same id for every provider)."""
        return event_id == SESSION_END_ID

    def format_payload(provider: str, event_id: int, payload: bytes) -> str:
        """elog(1) text; [UNKNOWN_PROVIDER:<name>] if no schema names provider."""
        module = get(provider)
        if module is None:
            return "[UNKNOWN_PROVIDER:%s]" % provider
        return module.format_payload(event_id, payload)

    def event_id_to_name(provider: str, event_id: int) -> str | None:
        """Event name; SESSION_END (and DUMP_COMPLETE) for any provider, even unknown ones."""
        if event_id == SESSION_END_ID:
            return "SESSION_END"
        module = get(provider)
        if module is None:
            return "DUMP_COMPLETE" if event_id == DUMP_COMPLETE_ID else None
        return module.event_id_to_name(event_id)

    def keyword_from_string(provider: str, name: str) -> int:
        """Keyword mask of provider by name (case-insensitive), 0 if unknown."""
        module = get(provider)
        return module.keyword_from_string(name) if module is not None else 0

    return is_session_end, format_payload, event_id_to_name, keyword_from_string
