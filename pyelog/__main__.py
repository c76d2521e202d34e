# SPDX-License-Identifier: BSD-2-Clause
"""``python -m pyelog``: the ``pyelog`` command (pyelog.cli)."""
import sys

from pyelog.cli import main

sys.exit(main())
