# SPDX-License-Identifier: BSD-2-Clause
"""Shared test plumbing.

Kernel tests (marked ``kernel``) load eBPF into the running kernel. Outside CI
they skip, saying why, when the machine cannot host them (not root, no bcc,
no BPF). Under ``CI=true`` a skipped kernel test is a failure: those tests
are the point of the project and must really run there.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Recorders started by the tests share host instances (pyelog -c starts one
# when none runs) on a socket of the test run's own, never the machine's
# /run/pyelog one: a host instance a user runs is not joined by the tests,
# nor disturbed by them. Tests of the host instance set their own paths.
# Searchable by all, as /run/pyelog is: tests run pyelog as other users too.
_HOST_DIR = tempfile.mkdtemp(prefix="pyelog-tests-host-")
os.chmod(_HOST_DIR, 0o755)
os.environ["PYELOG_HOST_SOCKET"] = os.path.join(_HOST_DIR, "eventlog.sock")


def kernel_unavailable_reason() -> str | None:
    """Why this process cannot load eBPF, or None when it can."""
    if os.geteuid() != 0:
        return "kernel tests need root (they load eBPF programs)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not importable (run `make setup`: python3-bpfcc in a --system-site-packages venv)"
    if not os.path.exists("/sys/kernel/btf/vmlinux") and not os.path.exists("/proc/kallsyms"):
        return "no BPF support visible in this kernel"
    if not os.path.isdir(f"/lib/modules/{os.uname().release}/build"):
        return "kernel headers missing at /lib/modules/$(uname -r)/build (run `make setup`)"
    return None


@pytest.fixture(scope="session")
def kernel() -> None:
    """Request this fixture (or use the ``kernel`` marker) in tests that load eBPF."""
    reason = kernel_unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"kernel test cannot run in CI: {reason}")
        pytest.skip(reason)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("kernel") and "kernel" not in item.fixturenames:
            item.fixturenames.insert(0, "kernel")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    # Under CI, any skip of a kernel test (whatever raised it) fails the run.
    if IN_CI and report.skipped and item.get_closest_marker("kernel"):
        report.outcome = "failed"
        report.longrepr = f"kernel test skipped under CI=true: {report.longrepr}"


@pytest.fixture(autouse=True)
def _no_recorder_left():
    """Kill recorders a test left running (one that failed before stopping
    them): each would keep its host instance for the tests after it."""
    yield
    from tests.helpers import recorder
    for rec in recorder.running:
        if rec.p.poll() is None:
            rec.p.kill()
            rec.p.wait(30)
    recorder.running.clear()


@pytest.fixture
def tmp_elog(tmp_path):
    """A path for a capture file inside the test's temporary directory."""
    return tmp_path / "capture.elog"


def have(program: str) -> bool:
    return shutil.which(program) is not None
