# SPDX-License-Identifier: BSD-2-Clause
"""pyelog: FreeBSD's eventlog(9) -- providers, sessions, per-CPU rings, elog(1)
and the elog(5) capture format -- on a running Linux kernel, with eBPF.

The package by layer, each importing only from those before it
(``tests/test_layers.py`` checks):

1. :mod:`pyelog.records` -- capture records: elog(5), elog(1) text, JSON lines;
2. :mod:`pyelog.schema` -- the schema DSL, code generation, payload decoding;
3. :mod:`pyelog.kernel` -- bpf(2), BTF, the rings, the loader;
4. :mod:`pyelog.providers` -- TCP and the test provider;
5. :mod:`pyelog.tools` -- capture, convert, summary, plot, selftest, demo;
6. :mod:`pyelog.cli` -- the ``pyelog`` command.

:mod:`pyelog.resources` (where ``bpf/`` and ``schemas/`` are) may be used
by any layer.
"""

__version__ = "0.1.0"
