# SPDX-License-Identifier: BSD-2-Clause
"""Run a Python module as ``python -m`` would, then report its peak memory.

    peakrss.py MODULE [ARGS...]

Prints ``peak_rss_kib=N`` on stderr: VmHWM of this process's address space
after the module returned. (wait4()'s ru_maxrss would not do: Linux carries
the parent's resident size into the child across fork and exec.)
"""
from __future__ import annotations

import runpy
import sys


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    module, sys.argv = sys.argv[1], sys.argv[1:]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    sys.stdout.flush()
    print(f"peak_rss_kib={vm_hwm_kib()}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
