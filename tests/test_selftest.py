# SPDX-License-Identifier: BSD-2-Clause
"""pyelog selftest: all checks pass on the real kernel; clear line without privileges."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.kernel
def test_selftest_passes(capsys):
    from pyelog.tools.selftest import main
    rc = main([])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0, out
    assert out[-1].startswith("selftest: ") and out[-1].endswith(" 0 failed")
    assert all(line.startswith("ok   ") for line in out[:-1])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_selftest_non_root_one_line():
    r = subprocess.run([sys.executable, "-c", "import sys; from pyelog.tools.selftest import main; sys.exit(main([]))"],
                       cwd=ROOT, capture_output=True, text=True, user=65534,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert len((r.stdout + r.stderr).strip().splitlines()) == 1
