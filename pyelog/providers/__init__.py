# SPDX-License-Identifier: BSD-2-Clause
"""Providers: each module builds a :class:`pyelog.kernel.loader.ProviderSpec`.

A provider is BPF C text (pasted after ``bpf/eventlog.h`` and the producer
header generated from its schema) plus the hooks to attach:

=========  ================================  ===================================
provider   Python                            C (bpf/)
=========  ================================  ===================================
``tcp``    :mod:`pyelog.providers.tcp`       ``tcp_provider.bpf.c``, ``tcp_outbox.h``
           (:mod:`pyelog.providers.tcp_diag`: existing connections, netns lookup)
``test``   :mod:`pyelog.providers.test`      ``test_provider.bpf.c``
=========  ================================  ===================================

``test`` is the test-schema provider used by the test suite and
``pyelog selftest``. :func:`registry` is the list a live capture chooses from.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyelog.kernel.loader import ProviderSpec
    from pyelog.providers.tcp import TcpFilter

__all__ = ["registry"]


def registry(tcp_default_enabled: bool = True,
             tcp_filter: "TcpFilter | None" = None) -> dict[str, Callable[[], "ProviderSpec"]]:
    """The providers a live capture can subscribe to: name -> spec factory.

    ``tcp_default_enabled`` and ``tcp_filter`` configure the TCP provider
    (``--tcp-default``, ``--port`` and the other TCP filter flags).
    """
    from pyelog.providers import tcp, test
    return {"tcp": lambda: tcp.provider(default_enabled=tcp_default_enabled, filters=tcp_filter),
            "test": test.provider}
