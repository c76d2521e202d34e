# SPDX-License-Identifier: BSD-2-Clause
"""Live capture that cannot run: one clear line on stderr, exit status 1, no traceback.

Not root, no bcc, a compiler error, a verifier refusal, a bad output path,
an unknown provider, bad filter values.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyelog import cli
from pyelog.tools import capture
from pyelog.kernel.loader import ProviderSpec

ROOT = Path(__file__).resolve().parent.parent
PYELOG = [sys.executable, "-m", "pyelog.cli"]


def one_line_failure(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run pyelog as nobody")
@pytest.mark.parametrize("args", [["-c", "tcp"], ["-c", "tcp", "-o", "/tmp/pyelog-nobody.elog"],
                                  ["-c", "test", "-o", "dir=/tmp/pyelog-nobody"]])
def test_not_root(args):
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        *PYELOG, *args], capture_output=True, text=True, cwd="/", timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = one_line_failure(p)
    assert "needs root" in line and "run it as root" in line


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run pyelog as nobody")
def test_nice_not_permitted():
    # The default (-10 where allowed) quietly stays at 0 for nobody (test_not_root);
    # an explicit value nobody may not take fails before anything starts.
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        *PYELOG, "-c", "tcp", "--nice", "-5"], capture_output=True, text=True, cwd="/",
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert one_line_failure(p) == ("pyelog: --nice -5: permission denied (a nice value below the "
                                   "current 0 needs root or CAP_SYS_NICE)")
    # A lower priority is anyone's to take: nobody then fails only for want of root.
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        *PYELOG, "-c", "tcp", "--nice", "5"], capture_output=True, text=True, cwd="/",
                       timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "needs root" in one_line_failure(p)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root check comes first")
def test_missing_bcc(tmp_path):
    # A bcc that cannot be imported, in front of the real one.
    stub = tmp_path / "bcc"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('simulated: no bcc here')\n")
    p = subprocess.run(PYELOG + ["-c", "tcp"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"})
    line = one_line_failure(p)
    assert "bcc is not importable" in line and "python3-bpfcc" in line


def test_unknown_provider():
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    p = subprocess.run(PYELOG + ["-c", "nosuch"], capture_output=True, text=True, timeout=120)
    line = one_line_failure(p)
    assert "provider 'nosuch' not found" in line


@pytest.mark.parametrize("args, message", [
    (["-c", "tcp", "--port", "70000"], "invalid port 70000"),
    (["-c", "tcp", "--addr", "10.0.0.300/8"], "invalid address or CIDR"),
    (["-c", "tcp", "--netns", "no-such-namespace-here"], "no network namespace"),
    (["-c", "tcp", "--cgroup", "no/such/cgroup"], "no cgroup-v2 directory"),
])
def test_bad_tcp_filter_values(args, message):
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    line = one_line_failure(subprocess.run(PYELOG + args, capture_output=True, text=True, timeout=120))
    assert message in line


def test_unwritable_output_fails_before_compiling(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    p = subprocess.run(PYELOG + ["-c", "test", "-o", str(tmp_path / "no" / "dir" / "x.elog")],
                       capture_output=True, text=True, timeout=120)
    line = one_line_failure(p)
    assert line.startswith("pyelog: fopen(")


def _bad_provider(source: str) -> ProviderSpec:
    return ProviderSpec(name="bad", source=source, test_run=["bad_prog"])


_VERIFIER_REJECTS = """
int EL_FN(bad_prog)(struct bpf_raw_tracepoint_args *ctx)
{
	volatile char buf[8] = {};
	/* An unbounded index into the stack: no verifier accepts this. */
	return buf[ctx->args[0]];
}
"""

_DOES_NOT_COMPILE = """
int EL_FN(bad_prog)(struct bpf_raw_tracepoint_args *ctx)
{
	return this_is_not_declared_anywhere;
}
"""


@pytest.mark.kernel
@pytest.mark.parametrize("source, expect", [
    (_VERIFIER_REJECTS, "verifier: math between fp pointer"),
    (_DOES_NOT_COMPILE, "this_is_not_declared_anywhere"),
])
def test_bcc_failures_are_one_line(monkeypatch, capfd, source, expect):
    monkeypatch.setattr(capture, "provider_factories",
                        lambda o=None: {"bad": lambda: _bad_provider(source)})
    rc = cli.main(["-c", "bad"])
    out, err = capfd.readouterr()
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyelog: cannot load the eBPF programs into this kernel")
    assert expect in lines[0]
    assert "Traceback" not in err and out == ""
    # The full bcc output is kept where the line says.
    log = lines[0].split("bcc output in ", 1)[1].split(";", 1)[0]
    assert os.path.getsize(log) > 0
    os.unlink(log)
