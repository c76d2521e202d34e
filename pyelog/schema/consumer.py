# SPDX-License-Identifier: BSD-2-Clause
"""Payload decoding: schemas compiled to Python and loaded.

A :class:`Consumer` is one provider's compiled schema: it wraps the module
that ``pyelog gen -c`` prints for that provider, exec'd here, so the code
that decodes events is exactly the code the command shows (with
:mod:`pyelog.schema.runtime`, which that code imports). A
:class:`ConsumerSet` is several of them: it loads schemas through the
aggregate module of ``pyelog gen -M`` and dispatches by provider name, like
elog(1)'s compiled-in ``eventlog_consumer.h``.

Difference from FreeBSD: every consumer knows the framework's
DUMP_COMPLETE id (0xFFFFFFFD) by name ("DUMP_COMPLETE", text "Dump
complete"); FreeBSD's generated tables do not, so its elog prints
``[?4294967293]`` / ``[UNKNOWN_EVENT_ID:4294967293]`` for it.
"""
from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from pathlib import Path

from pyelog.resources import schema_dir
from pyelog.schema.codegen import generate_aggregate, generate_consumer
from pyelog.schema.dsl import SCHEMA_SUFFIX, Event, Schema, load_schema
from pyelog.schema.runtime import DUMP_COMPLETE_ID, SESSION_END_ID, exec_source
from pyelog.schema.textplan import json_plan, text_plan

#: The schemas shipped with pyelog: its own providers (tcp, test). FreeBSD's
#: providers are not shipped: their schemas change with FreeBSD, and a
#: decoder printing other texts than FreeBSD's for FreeBSD's events would
#: mislead; users point ``--schema-dir`` at FreeBSD's own files.
SCHEMAS_DIR = schema_dir()


def exec_generated(source: str, name: str) -> types.ModuleType:
    """Exec generated Python ``source`` as a fresh module called ``name``.

    The source is registered with :mod:`linecache` (as ``<name>``) so
    tracebacks show the generated lines.
    """
    return exec_source(source, name)


class Consumer:
    """One provider's compiled schema: names, keywords, payload text and fields."""

    def __init__(self, module: types.ModuleType, schema: Schema | None = None) -> None:
        self.module = module
        # The schema's events, for text plans (C printer); none without it.
        self._schema_events = {e.id: e for e in schema.events} if schema is not None else {}
        self.provider: str = module.PROVIDER
        #: NAME -> mask, including SESSION.
        self.keywords: dict[str, int] = dict(module.KEYWORDS)
        #: enum name -> {value: label}; flag name -> ((bit, label), ...).
        self.enums: dict[str, dict[int, str]] = module.ENUMS
        self.flags: dict[str, tuple[tuple[int, str], ...]] = module.FLAGS
        #: id -> (name, level, keyword mask, fixed payload size or None).
        self.events: dict[int, tuple[str, int, int, int | None]] = module.EVENTS
        # Bound once: these are on the per-event path.
        self._format = module.format_payload
        self._decode = module.decode
        self._names = module.EVENT_NAMES

    @classmethod
    def from_schema(cls, schema: Schema) -> "Consumer":
        """Compile ``schema`` with ``generate_consumer`` and load the result."""
        return cls(exec_generated(generate_consumer(schema), f"pyelog consumer {schema.provider}"), schema)

    def schema_event(self, event_id: int) -> Event | None:
        """The schema's declaration of event ``event_id`` (None: unknown, or no schema kept)."""
        return self._schema_events.get(event_id)

    def text_plan(self, event_id: int) -> tuple[tuple, int] | None:
        """The event's text as steps for the C printer (:mod:`pyelog.schema.textplan`),
        or None: the generated formatter renders it."""
        event = self._schema_events.get(event_id)
        return text_plan(event, self.module) if event is not None else None

    def json_plan(self, event_id: int) -> tuple[tuple, int] | None:
        """The JSON of :meth:`decode`'s dict as steps for the C printer, or None."""
        event = self._schema_events.get(event_id)
        return json_plan(event) if event is not None else None

    @classmethod
    def from_path(cls, path: str | Path) -> "Consumer":
        """Load and compile one schema file (raises SchemaError)."""
        return cls.from_schema(load_schema(path))

    def event_name(self, event_id: int) -> str | None:
        """The event's name, or None if the schema does not define ``event_id``."""
        return self._names.get(event_id)

    def event_id(self, name: str) -> int | None:
        """The id of the event called ``name``, or None if the schema has none."""
        return next((i for i, e in self.events.items() if e[0] == name), None)

    def payload_size(self, name: str) -> int | None:
        """The fixed payload size of the event called ``name`` (None: unknown or varlen)."""
        i = self.event_id(name)
        return None if i is None else self.events[i][3]

    def format_payload(self, event_id: int, payload: bytes) -> str:
        """elog(1)'s text for one payload.

        Unknown ids give ``[UNKNOWN_EVENT_ID:<id>]``; SESSION_CREATE with an
        empty payload gives "Session created". Short payloads read missing
        tail fields as 0, extra bytes are ignored, an untrustworthy varlen
        count appends ``[BAD_VARLEN:<field> count=N max=M]`` or
        ``[BAD_VARLEN:<field> count=N payload_bytes=B]``. Never raises for
        any payload bytes.
        """
        return self._format(event_id, payload)

    def formatter(self, event_id: int) -> Callable[[bytes], str]:
        """payload -> text for one event id: :meth:`format_payload` without the per-call look-up.

        The generated per-event function itself (a constant
        ``[UNKNOWN_EVENT_ID:<id>]`` for unknown ids): what a printer calls
        once per record after looking it up once per event id.
        """
        return self.module.formatter(event_id)

    def decode(self, event_id: int, payload: bytes) -> dict | None:
        """``{field: value}`` for one payload (for JSON output), None for unknown ids.

        Integers stay numbers (ntohs fields are byte-swapped to host order;
        enum and flag fields keep their numeric value, see :attr:`enums` and
        :attr:`flags` for labels), addresses are text, ``char[N]`` is str
        and a varlen field is a list. A bad varlen count gives an empty list
        and a ``_bad_varlen`` entry with the same marker text as
        :meth:`format_payload`.
        """
        return self._decode(event_id, payload)

    def keyword_from_string(self, name: str) -> int:
        """Keyword mask by name, case-insensitive like strcasecmp; 0 if unknown."""
        return self.module.keyword_from_string(name)


_with_extra_cache: dict[tuple[str, ...], "ConsumerSet"] = {}


class ConsumerSet:
    """Consumers for several providers, looked up by provider *name*."""

    def __init__(self, consumers: dict[str, Consumer], sources: dict[str, Path] | None = None) -> None:
        self._consumers = dict(consumers)
        self._sources = dict(sources or {})

    @classmethod
    def from_schemas(cls, schemas: Iterable[Schema]) -> "ConsumerSet":
        """Load ``schemas`` through the aggregate module (``pyelog gen -M``)."""
        schemas = list(schemas)
        aggregate = exec_generated(generate_aggregate(schemas), "pyelog aggregate consumer")
        by_name = {s.provider: s for s in schemas}
        return cls({name: Consumer(module, by_name.get(name)) for name, module in aggregate.PROVIDERS.items()},
                   {s.provider: s.path for s in schemas})

    def source(self, provider: str) -> Path | None:
        """The schema file that decodes ``provider``, or None (no schema: its
        payloads print as ``[UNKNOWN_PROVIDER:<name>]``)."""
        return self._sources.get(provider) if provider in self._consumers else None

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> "ConsumerSet":
        """Schema files and/or directories (every ``*_eventlog_schema.src`` directly in them).

        A later path overrides an earlier one defining the same provider
        name. Raises SchemaError for a bad schema.
        """
        by_provider: dict[str, Schema] = {}
        for path in paths:
            path = Path(path)
            files = sorted(path.glob(f"*{SCHEMA_SUFFIX}")) if path.is_dir() else [path]
            for file in files:
                schema = load_schema(file)
                by_provider[schema.provider] = schema
        return cls.from_schemas(by_provider.values())

    @classmethod
    def default(cls) -> "ConsumerSet":
        """The schemas shipped in pyelog's ``schemas/`` directory (top level)."""
        return cls.from_paths([SCHEMAS_DIR])

    @classmethod
    def with_extra(cls, paths: Iterable[str | Path] = ()) -> "ConsumerSet":
        """The shipped schemas plus the user's (``--schema FILE``,
        ``--schema-dir DIR``; later ones override a provider of the same
        name), compiled once per list of paths.

        Raises FileNotFoundError for a path that does not exist and
        SchemaError for a bad schema: the commands say either in one line.
        """
        key = tuple(str(p) for p in paths)
        if key not in _with_extra_cache:
            for path in key:
                if not Path(path).exists():
                    raise FileNotFoundError(2, "No such file or directory", path)
            _with_extra_cache[key] = cls.from_paths([SCHEMAS_DIR, *key])
        return _with_extra_cache[key]

    @property
    def providers(self) -> list[str]:
        """Provider names, sorted."""
        return sorted(self._consumers)

    def get(self, provider: str) -> Consumer | None:
        """The consumer for ``provider``, or None."""
        return self._consumers.get(provider)

    def event_name(self, provider: str, event_id: int) -> str | None:
        """Event name; SESSION_END (and DUMP_COMPLETE) for any provider, even unknown ones."""
        if event_id == SESSION_END_ID:
            return "SESSION_END"
        consumer = self._consumers.get(provider)
        if consumer is None:
            return "DUMP_COMPLETE" if event_id == DUMP_COMPLETE_ID else None
        return consumer.event_name(event_id)

    def format_payload(self, provider: str, event_id: int, payload: bytes) -> str:
        """elog(1) text; ``[UNKNOWN_PROVIDER:<name>]`` if no schema names ``provider``."""
        consumer = self._consumers.get(provider)
        if consumer is None:
            return f"[UNKNOWN_PROVIDER:{provider}]"
        return consumer.format_payload(event_id, payload)

    def formatter(self, provider: str, event_id: int) -> Callable[[bytes], str]:
        """payload -> text for one (provider, event id), as :meth:`format_payload` gives it."""
        consumer = self._consumers.get(provider)
        if consumer is None:
            text = f"[UNKNOWN_PROVIDER:{provider}]"
            return lambda payload: text
        return consumer.formatter(event_id)

    def text_plan(self, provider: str, event_id: int) -> tuple[tuple, int] | None:
        """Steps for the C printer rendering what :meth:`formatter` renders, or None."""
        consumer = self._consumers.get(provider)
        return consumer.text_plan(event_id) if consumer is not None else None

    def json_plan(self, provider: str, event_id: int) -> tuple[tuple, int] | None:
        """Steps for the C printer rendering the JSON of what :meth:`decode` gives, or None."""
        consumer = self._consumers.get(provider)
        return consumer.json_plan(event_id) if consumer is not None else None

    def decode(self, provider: str, event_id: int, payload: bytes) -> dict | None:
        """Decoded fields, or None for an unknown provider or event id."""
        consumer = self._consumers.get(provider)
        return consumer.decode(event_id, payload) if consumer is not None else None

    def keyword_from_string(self, provider: str, name: str) -> int:
        """Keyword mask of ``provider`` by name (case-insensitive), 0 if unknown."""
        consumer = self._consumers.get(provider)
        return consumer.keyword_from_string(name) if consumer is not None else 0
