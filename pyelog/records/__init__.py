# SPDX-License-Identifier: BSD-2-Clause
"""Capture records, the bottom layer: what a capture holds and how it reads.

* :mod:`~pyelog.records.eventlog` -- the framework's vocabulary (levels,
  reserved event ids, the session keyword, limits), shared by every layer;
* :mod:`~pyelog.records.format` -- elog(5), the binary capture format;
* :mod:`~pyelog.records.text` -- elog(1)'s text line;
* :mod:`~pyelog.records.jsonl` -- captures as JSON lines;
* :mod:`~pyelog.records.captures` -- open a capture of any of those kinds.

Nothing here imports from another layer: decoding payloads is the schema
layer's job, handed in as an object (see ``text.PayloadFormatter``).
"""
