# SPDX-License-Identifier: BSD-2-Clause
"""The live status line (pyelog.tools.status): one line on stderr, only on a terminal.

Checked against the exact bytes written:

* :class:`StatusLine` on a fake terminal with a fake clock: rewritten in
  place (``\\r\\033[K``) at most once a second, then erased; wanted only
  on a terminal; byte counts in human units;
* the recorder on a real terminal (script(1) gives it one; ``kernel``): the
  line appears while it captures and is erased when it ends.

(That a recorder whose stderr is no terminal prints none:
tests/test_capture_live.py, test_live_text_and_json.)
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import pytest

from pyelog.tools.status import StatusLine, human_bytes, wanted


# -- StatusLine (from test_cli_options.py) ----------------------------------------------

class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_rate_limited_and_cleared():
    now = [0.0]
    s = FakeTTY()
    line = StatusLine(s, sessions=lambda: 3, clock=lambda: now[0])
    line.update(10, 0, 100)
    assert s.getvalue() == ""                          # not a second yet
    now[0] = 1.0
    line.update(1500, 2, 3 * 1024 * 1024)
    assert s.getvalue() == ("\r\033[Kpyelog: 1500 ev/s  1500 events  2 dropped  3 sessions open"
                            "  3.0 MiB written")
    now[0] = 1.5
    line.update(2000, 2, 0)
    assert s.getvalue().count("\r") == 1
    line.clear()
    assert s.getvalue().endswith("\r\033[K")


def test_status_only_on_a_terminal():
    assert wanted(FakeTTY()) and not wanted(io.StringIO())
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"


# -- the recorder on a terminal (from test_capture_live.py) -----------------------------

@pytest.mark.kernel
@pytest.mark.skipif(not shutil.which("script"), reason="needs script(1) for a terminal")
def test_status_line_on_a_terminal(tmp_path):
    path = tmp_path / "st.elog"
    cmd = f"{sys.executable} -m pyelog.cli -c tcp -o {path} --duration 3"
    # Bytes: text mode would turn the carriage returns into newlines.
    p = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert "Traceback" not in out
    assert re.search(r"\r\033\[Kpyelog: \d+ ev/s  \d+ events  \d+ dropped  \d+ sessions open  "
                     r"[\d.]+ (B|KiB|MiB) written", out), out
    assert out.rstrip("\r\n").endswith("\r\033[K")      # erased at the end
