# SPDX-License-Identifier: BSD-2-Clause
"""The kernel layer: loading the eventlog core and providers, reading the rings.

* :mod:`~pyelog.kernel.bpf` -- the bpf(2) calls bcc does not make, and the
  one check of whether this process can load eBPF at all;
* :mod:`~pyelog.kernel.btf` -- struct member offsets from the running
  kernel's BTF;
* :mod:`~pyelog.kernel.ring` -- the reader half of the ring protocol;
* :mod:`~pyelog.kernel.loader` -- one BPF object per recorder: core
  (``bpf/eventlog.h``), rings, providers; subscribers and subscriptions.

Imports the records and schema layers, never providers or tools.
"""
