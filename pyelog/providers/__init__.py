"""Providers: each module builds a :class:`pyelog.kernel.loader.ProviderSpec`.

A provider is BPF C text (pasted after ``bpf/eventlog.h`` and the producer
header generated from its schema) plus the hooks to attach. ``test`` is the
test-schema provider used by the test suite and ``pyelog selftest``.
"""
