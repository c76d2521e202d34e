# SPDX-License-Identifier: BSD-2-Clause
"""Helpers shared by the tests; none of them holds tests itself.

* :mod:`tests.helpers.netns` -- network namespaces (pyroute2) for kernel
  tests: ``Namespace``, a veth pair between two of them, connected sockets
  and a whole client/server ``exchange`` (``exchange_alone``: in a
  namespace of its own) with the sockets' ``SO_COOKIE`` (the session ids
  the TCP provider logs), so that test traffic never leaves the machine.
* :mod:`tests.helpers.recorder` -- ``Recorder``: a ``pyelog -p ...`` running
  in the background as users run it (``PYELOG``), waited for until its
  programs are attached, stopped by a signal, with its stderr, its
  ``Events received`` count and the BPF program and link ids it holds;
  ``records`` and ``assert_header_counts`` read back the capture it wrote;
  ``TIME_SCALE`` stretches the deadlines of kernel tests (emulated VMs).
* :mod:`tests.helpers.wire` -- the wire seen independently of pyelog, the
  truth of the TCP differential tests: frame parsing into ``Segment``,
  ``WireCapture`` (AF_PACKET capture of one interface in one namespace) and
  ``LossyPath`` (client -- router -- server namespaces whose router drops
  data segments at random).
"""
