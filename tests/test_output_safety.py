# SPDX-License-Identifier: BSD-2-Clause
"""Outputs stay private and true: modes, planted links, terminal escapes,
full disks, provider names that are bytes.

What the truth is here: file modes and owners from ``os.stat``, the bytes
a planted victim file held, the records a capture holds by the test's own
walk (``tests/test_cli_read.parse``-style, not pyelog's reader), and the
kernel's own refusal of writes past ``RLIMIT_FSIZE`` (a real failing
``write(2)``, no mocked file). The live capture against a full file system
is in tests/test_capture_live.py's neighbourhood: see
``test_live_capture_on_a_full_disk`` below (kernel).
"""
from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import textwrap

import pytest

from pyelog.records.format import ElogFormatError, ElogReader, ElogWriter, Provider, iter_records, pack_event
from pyelog.records.output import PrivateFile, UnsafeOutputError, make_private_dir
from pyelog.records.text import TextPrinter
from pyelog.records.untrusted import terminal_safe
from pyelog.tools.persession import PerSessionWriter
from pyelog.tools.rotate import RotatingWriter
from tests.helpers.recorder import PYELOG

PROVIDERS = [(1, "tcp")]
NOBODY = 65534


def capture(path, n: int = 50, providers=PROVIDERS) -> bytes:
    """A plain capture of ``n`` 40-byte records over two sessions; returns its bytes."""
    w = ElogWriter(path, providers, start_utc_us=1_700_000_000_000_000)
    for i in range(n):
        w.write_event(provider_id=providers[0][0], timestamp=1000 + i, session_id=7 + i % 2,
                      event_id=100, cpu=0, thread_id=1, payload=struct.pack("<Q", i))
    w.close()
    return open(path, "rb").read()


def walk(data: bytes) -> tuple[int, int, list[bytes]]:
    """The test's own elog(5) walk: (event_count, dropped_events, whole records)."""
    count, dropped = struct.unpack_from("<QQ", data, 24)
    (n,) = struct.unpack_from("<I", data, 40)
    off = 44 + 34 * n
    recs = []
    while off + 32 <= len(data):
        (length,) = struct.unpack_from("<H", data, off)
        if length < 32 or off + length > len(data):
            break
        recs.append(data[off:off + length])
        off += length
    return count, dropped, recs


def run(*args, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(PYELOG + [str(a) for a in args], capture_output=True, text=True,
                       timeout=120, **kw)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- modes --------------------------------------------------------------------------------

def test_outputs_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        src = tmp_path / "src.elog"
        capture(src)
        assert mode(src) == 0o600
        gz = tmp_path / "c.elog.gz"
        capture(gz)
        assert mode(gz) == 0o600 and not list(tmp_path.glob("*.partial"))
        rot = RotatingWriter(str(tmp_path / "r.elog"), PROVIDERS, max_bytes=300)
        with ElogReader(src) as r:
            for buf, n, _ in r.runs():
                rot.write_records(buf, n)
        rot.close()
        assert len(rot.files) > 2 and {mode(f) for f in rot.files} == {0o600}
        split = tmp_path / "split"
        with PerSessionWriter(split, [Provider(1, "tcp")]) as w:
            with ElogReader(src) as r:
                for rec in r:
                    w.write_record(rec)
        assert mode(split) == 0o700 and {mode(f) for f in split.iterdir()} == {0o600}
        for out, args in ((tmp_path / "rw.elog", ("-r", src, "-o")),
                          (tmp_path / "c.jsonl", ("convert", src)),
                          (tmp_path / "back.elog", ("convert", tmp_path / "c.jsonl"))):
            p = run(*args, out)
            assert p.returncode == 0, p.stderr
            assert mode(out) == 0o600, out
    finally:
        os.umask(old)


def test_an_existing_world_writable_session_directory_is_closed(tmp_path):
    d = tmp_path / "s"
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)
    make_private_dir(d)
    assert mode(d) == 0o700


# -- planted links (root: the attack is another user's link) --------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's link needs root "
                                "(lchown); as non-root every link is the caller's own")


@pytest.fixture
def sticky(tmp_path):
    """A sticky, world-writable directory (like /tmp), a root-owned 0600
    victim elsewhere, and a plant(name) that puts nobody's link to it there."""
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret\n")
    os.chmod(victim, 0o600)

    def plant(name: str):
        link = d / name
        os.symlink(victim, link)
        os.lchown(link, NOBODY, NOBODY)
        return link
    return d, victim, plant


@needs_root
def test_planted_links_are_not_written_through(sticky, tmp_path):
    d, victim, plant = sticky
    src = tmp_path / "src.elog"
    capture(src)
    cases = [("-r", src, "-o", plant("rw.elog")),
             ("convert", src, plant("c.jsonl")),
             ("convert", src, plant("c.elog")),
             ("convert", src, "--split", d / "split")]
    split = d / "split"
    split.mkdir()
    os.chown(split, NOBODY, NOBODY)
    for args in cases:
        p = run(*args)
        assert p.returncode == 1, (args, p.stderr)
        assert p.stderr.count("\n") == 1 and ("owned by uid 65534" in p.stderr), p.stderr
    assert victim.read_bytes() == b"secret\n" and mode(victim) == 0o600
    # A rotation's next name and a .gz's temporary are outputs too.
    plant("r.1.elog")
    rot = RotatingWriter(str(d / "r.elog"), PROVIDERS, max_bytes=300)
    with pytest.raises(UnsafeOutputError), ElogReader(src) as r:
        for buf, n, _ in r.runs():
            rot.write_records(buf, n)
    plant("g.elog.gz.partial")
    with pytest.raises(UnsafeOutputError):
        ElogWriter(d / "g.elog.gz", PROVIDERS)
    assert victim.read_bytes() == b"secret\n"


def test_own_links_and_devices_are_written(tmp_path):
    # A link of one's own (or root's: /dev/stdout) is followed; a device is
    # written in place, never replaced.
    target = tmp_path / "real.elog"
    link = tmp_path / "link.elog"
    os.symlink(target, link)
    capture(link)
    assert os.path.islink(link) and walk(target.read_bytes())[0] == 50
    f = PrivateFile("/dev/null")
    assert not f.seekable
    f.close()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- terminal escapes ---------------------------------------------------------------------

def test_terminal_safe():
    assert terminal_safe("curl 1.2 ü") == "curl 1.2 ü"
    assert terminal_safe("\x1b]0;owned\x07x") == "\\x1b]0;owned\\x07x"
    assert terminal_safe("a\u202eb\x9bc\nd") == "a\\u202eb\\x9bc\\x0ad"


class _Decoder:
    """A decoder whose one event's text carries a process name as the kernel gave it."""

    def event_name(self, provider, event_id):
        return "CONN_OWNER"

    def format_payload(self, provider, event_id, payload):
        return f"owner pid 1 comm {payload.decode('latin-1')}"


def test_provider_table_line_escapes_names(tmp_path):
    src = tmp_path / "p.elog"
    data = bytearray(capture(src))
    data[46:78] = b"t\x1b[2Jcp".ljust(32, b"\0")
    src.write_bytes(bytes(data))
    p = run("-r", src, "-p")
    assert p.returncode == 0 and "[Providers] 1 registered: t\\x1b[2Jcp\n" in p.stderr
    assert "\x1b" not in p.stdout + p.stderr


def test_text_lines_escape_what_a_process_named_itself():
    printer = TextPrinter({1: "t\x1bcp"}, _Decoder())
    (r,) = iter_records(pack_event(provider_id=1, timestamp=5, session_id=1, event_id=100,
                                   payload=b"\x1b[2J\x1b[31mevil"))
    line = printer.line(r)
    assert "\x1b" not in line and "[t\\x1bcp]" in line and "comm \\x1b[2J\\x1b[31mevil" in line


# -- failing outputs ----------------------------------------------------------------------

# A child whose files may not grow past LIMIT bytes: the kernel refuses the
# write that would (EFBIG; SIGXFSZ ignored, as a recorder would).
LIMITED = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    {body}
""")


def limited(limit: int, body: str, *args) -> subprocess.CompletedProcess:
    code = LIMITED.format(limit=limit, body=textwrap.dedent(body))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_writer_on_a_full_output_keeps_whole_records_and_counts_the_rest(tmp_path):
    out = tmp_path / "full.elog"
    p = limited(10_000, """
        from pyelog.records.format import ElogWriter, WriteFailed, pack_event
        w = ElogWriter(sys.argv[1], [(1, "tcp")], buffer_size=1000)
        try:
            for i in range(1000):
                w.write_records(pack_event(provider_id=1, timestamp=i, session_id=1,
                                           event_id=100, payload=bytes(8)), 1)
        except WriteFailed as e:
            print("failed", e.errno, e.lost, w.lost_events, w.stored_events)
        w.close(dropped_events=1000 - w.stored_events)
        print("closed")
    """, out)
    assert p.returncode == 0, p.stderr
    words = p.stdout.split()
    assert words[0] == "failed" and int(words[1]) == 27          # EFBIG
    stored = int(words[4])
    data = out.read_bytes()
    count, dropped, recs = walk(data)
    # Whole records only, all of them counted, the rest counted as dropped.
    assert len(data) == 44 + 34 + 40 * len(recs) <= 10_000
    assert count == stored == len(recs) > 0 and dropped == 1000 - stored
    assert int(words[3]) == int(words[2]) > 0


def test_rewrite_and_convert_on_a_full_disk_leave_nothing(tmp_path):
    src = tmp_path / "big.elog"
    capture(src, n=5000)
    before = set(os.listdir(tmp_path))
    for args in (("-r", src, "-o", tmp_path / "out.elog"),
                 ("convert", src, tmp_path / "out.jsonl"),
                 ("convert", src, tmp_path / "out.elog.gz")):
        p = limited(20_000, "from pyelog.cli import main; sys.exit(main(sys.argv[1:]))", *args)
        assert p.returncode == 1, (args, p.stderr)
        assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert "File too large" in p.stderr
        assert set(os.listdir(tmp_path)) == before, args


def test_printing_to_a_full_device_is_one_line(tmp_path):
    src = tmp_path / "c.elog"
    capture(src, n=3000)
    for args in (("-r", src, "-e"), ("summary", src)):
        with open("/dev/full", "w") as full:
            p = subprocess.run(PYELOG + [str(a) for a in args], stdout=full, stderr=subprocess.PIPE,
                               text=True, timeout=60)
        assert p.returncode == 1, p.stderr
        assert p.stderr.count("\n") == 1 and "No space left on device" in p.stderr, p.stderr


# -- provider names are bytes ------------------------------------------------------------

@pytest.mark.parametrize("name", [b"tcp\xe9", b"A" * 32])
def test_provider_names_that_are_not_ascii_survive_rewrite_and_convert(tmp_path, name):
    src = tmp_path / "n.elog"
    data = bytearray(capture(src))
    data[46:78] = name.ljust(32, b"\0")
    src.write_bytes(bytes(data))
    for args, out in ((("-r", src, "-o"), tmp_path / "rw.elog"),
                      (("convert", src), tmp_path / "n.jsonl")):
        p = run(*args, out)
        assert p.returncode == 0, p.stderr
    p = run("convert", tmp_path / "n.jsonl", tmp_path / "back.elog")
    assert p.returncode == 0, p.stderr
    for out in (tmp_path / "rw.elog", tmp_path / "back.elog"):
        assert out.read_bytes()[46:78] == name.ljust(32, b"\0"), out
    p = run("-r", src)
    assert p.returncode == 0 and p.stdout.count("\n") == 50


def test_writer_refuses_names_elog_cannot_hold(tmp_path):
    with pytest.raises(ElogFormatError) as e:
        ElogWriter(tmp_path / "x.elog", [(1, "\u20ac" * 3)])
    assert e.value.path == str(tmp_path / "x.elog")
    assert not list(tmp_path.iterdir())


# -- a live capture against a full file system (kernel) ------------------------------------

@pytest.mark.kernel
def test_live_capture_on_a_full_disk(tmp_path):
    """A 48 KiB tmpfs fills during a TCP capture: the recorder stops by
    itself with one line, prints [Stats], detaches, and its file holds whole
    records under a header that counts exactly them, with every received
    event it could not store counted as dropped."""
    import re
    from tests.helpers.netns import Namespace, exchange
    from tests.helpers.recorder import Recorder
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "full.elog"
        rec = Recorder(["-s", "-c", "tcp", "TRACE", "-o", str(out)])
        try:
            with Namespace() as ns:
                for i in range(400):
                    if rec.p.poll() is not None:
                        break
                    exchange(ns, 5200 + i, send=20_000)
        finally:
            rc = rec.stop(settle=0.2)
        err = rec.stderr
        assert rc == 1, err
        failures = [ln for ln in err.splitlines() if ln.startswith("pyelog:")]
        assert len(failures) == 1 and "No space left on device" in failures[0], err
        received = rec.events_received()
        dropped = int(re.search(r"Dropped events: (\d+)", err).group(1))
        not_stored = int(re.search(r"not stored \(the output failed\): (\d+)", err).group(1))
        count, hdr_dropped, recs = walk(out.read_bytes())
        assert count == len(recs) > 0 and not_stored > 0
        assert received == len(recs) + not_stored
        assert hdr_dropped == dropped >= not_stored
        assert f"the output holds {len(recs)}" in failures[0]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
