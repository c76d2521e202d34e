# SPDX-License-Identifier: BSD-2-Clause
"""Open a capture of any kind pyelog writes: .elog, .elog.gz or JSON lines.

The kind is chosen by the file name, as ``pyelog convert`` writes them:
``.json``/``.jsonl`` are JSON lines (:class:`pyelog.records.jsonl.JsonReader`),
anything else elog(5), gzip-compressed when the name ends in ``.gz``
(:class:`pyelog.records.format.ElogReader`). Both readers offer the same
interface: ``header``, ``providers``, ``provider_names``, iteration over
:class:`~pyelog.records.format.Record`, use as a context manager.
"""
from __future__ import annotations

from pyelog.records.format import ElogReader
from pyelog.records.jsonl import JsonReader

__all__ = ["is_json", "open_capture"]


def is_json(path: str) -> bool:
    """Whether ``path`` names a JSON-lines capture."""
    return path.endswith((".json", ".jsonl"))


def open_capture(path: str) -> ElogReader | JsonReader:
    """Open a capture of either kind (chosen by file name)."""
    return JsonReader(path) if is_json(path) else ElogReader(path)
