# SPDX-License-Identifier: BSD-2-Clause
"""The tools layer: the commands built on the layers below.

* :mod:`~pyelog.tools.capture` -- live capture (elog(1)'s main loop), with
  :mod:`~pyelog.tools.rotate` (rotating files),
  :mod:`~pyelog.tools.persession` (one file per session) and
  :mod:`~pyelog.tools.status` (the status line);
* :mod:`~pyelog.tools.convert` -- ``pyelog convert``;
* :mod:`~pyelog.tools.summary` and :mod:`~pyelog.tools.plot` -- per
  connection views of a TCP capture (:mod:`~pyelog.tools.tcpseq`: sequence
  arithmetic);
* :mod:`~pyelog.tools.selftest`, :mod:`~pyelog.tools.demo`;
* :mod:`~pyelog.tools.command` -- what they share: one-line failures
  (:func:`~pyelog.tools.command.run_reporting`), the ``--schema`` option.

The command line itself (``pyelog.cli``) sits above.
"""
