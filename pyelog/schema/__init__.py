# SPDX-License-Identifier: BSD-2-Clause
"""The schema layer: a provider's eventlog schema, from DSL text to decoded payloads.

A provider describes its events in FreeBSD's schema DSL
(``schemas/<provider>_eventlog_schema.src``: keywords, enums, flags, payload
structs, events with their formats). One model of it feeds both sides, so the
C that writes a payload and the Python that reads it cannot disagree:

* :mod:`~pyelog.schema.dsl` -- parses the DSL, with the semantics and quirks
  of FreeBSD's ``eventlog_gen.awk``, into a :class:`~pyelog.schema.dsl.Schema`
  (natural C layout of every payload struct);
* :mod:`~pyelog.schema.codegen` -- ``pyelog gen``: the eBPF producer header
  (``-h``: structs, constants, ``_LOG`` macros writing through an overridable
  ``<PREFIX>_WRITE``), the Python consumer module (``-c``) and the aggregate
  of several (``-M``);
* :mod:`~pyelog.schema.runtime` -- what every generated consumer module
  imports: field renderings, enum/flag look-ups, dispatch by event id and by
  provider, the reserved ids; the generated module keeps only the schema's
  tables, struct formats and per-event formatters and decoders;
* :mod:`~pyelog.schema.consumer` -- loads that generated code: a
  :class:`~pyelog.schema.consumer.Consumer` is one provider's compiled
  schema, a :class:`~pyelog.schema.consumer.ConsumerSet` several, dispatching
  by provider name (elog(1) text, decoded fields, event names, keywords).

Imports the records layer (the framework's vocabulary), nothing above it.
"""
