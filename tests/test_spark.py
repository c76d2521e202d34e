# SPDX-License-Identifier: BSD-2-Clause
"""The Spark job (pyelog/tools/sparkjob.py) in Spark's local mode gives DuckDB's host_report."""
from __future__ import annotations

import csv
import glob
import os
import shutil
import subprocess
import sys

import pytest

from pyelog import cli
from tests.conftest import IN_CI
from tests.test_query import _capture


def _need_spark() -> None:
    """Spark needs pyspark and Java: `make setup` installs both (PYELOG_SPARK=1)."""
    missing = []
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing.append("pyspark")
    if shutil.which("java") is None:
        missing.append("java")
    if missing:
        reason = f"no {' or '.join(missing)} (make setup installs them)"
        if IN_CI:
            pytest.fail(f"the Spark test cannot run in CI: {reason}")
        pytest.skip(reason)


def test_spark_report_equals_duckdb(tmp_path, capsys):
    _need_spark()
    ds = tmp_path / "ds"
    for host in ("db-1", "web-1", "web-2"):
        _capture(tmp_path / f"{host}.elog")
        assert cli.main(["export", str(tmp_path / f"{host}.elog"), "-o", str(ds), "--host", host]) == 0
    capsys.readouterr()
    assert cli.main(["query", "SELECT * FROM host_report ORDER BY host", str(ds), "--csv"]) == 0
    duck = list(csv.reader(capsys.readouterr().out.splitlines()))
    out = tmp_path / "report"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    run = subprocess.run([sys.executable, "-m", "pyelog.tools.sparkjob", str(ds), "--csv", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (part,) = glob.glob(str(out / "part-*.csv"))
    spark = list(csv.reader(open(part)))
    assert spark[0] == duck[0]
    assert len(spark) == len(duck) == 4

    assert [r[0] for r in spark[1:]] == [r[0] for r in duck[1:]] == ["db-1", "web-1", "web-2"]
    # Percentiles computed by two engines agree to the last bits of a double.
    for s, d in zip(spark[1:], duck[1:]):
        assert [float(v) for v in s[1:]] == pytest.approx([float(v) for v in d[1:]], rel=1e-12)
    assert all(float(r[2]) == 4 for r in spark[1:])     # retransmitted segments per host
