# SPDX-License-Identifier: BSD-2-Clause
"""pyelog's test suite (a package, so that tests import their helpers as
``tests.helpers.*``; pytest puts the repository root on ``sys.path`` through
``pythonpath`` in pyproject.toml)."""
