# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog -r``: the command as a user runs it (a subprocess), elog(1)'s errors."""
from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYELOG = ROOT / ".venv" / "bin" / "pyelog"
CMD = [str(PYELOG)] if PYELOG.exists() else [sys.executable, "-m", "pyelog.cli"]
# The elog command (elog(1)'s personality): the installed script when there is one.
ELOG = ROOT / ".venv" / "bin" / "elog"
ELOG_CMD = ([str(ELOG)] if ELOG.exists() else
            [sys.executable, "-c", "import sys; from pyelog.cli import elog_main; sys.exit(elog_main())"])

UTC0 = 1_700_000_000_000_000          # 2023-11-14 22:13:20 UTC
CS = 5_000_000


def hdr(capture_start=CS, start_utc_us=UTC0, count=0, dropped=0):
    return struct.pack("<4sIQQQQ", b"ELOG", 1, capture_start, start_utc_us, count, dropped)


def table(providers):
    return struct.pack("<I", len(providers)) + b"".join(
        struct.pack("<H32s", pid, name.encode()) for pid, name in providers)


def ev(ts, event_id, payload=b"", *, provider_id=1, session_id=42, cpu=0, tid=100003, length=None):
    n = 32 + len(payload) if length is None else length
    return struct.pack("<HHHHQQIi", n, cpu, provider_id, 0, ts, session_id, event_id, tid) + payload


TWO_TCP = [(1, "tcp"), (2, "tcp")]
BODY = (ev(CS, 0xFFFFFFFE, b"\x11" * 8, cpu=1)
        + ev(CS + 250, 100, b"\x01\x02\x03", provider_id=2, cpu=3, tid=100004)
        + ev(CS + 1_000_250, 101, provider_id=5, cpu=12, tid=-1)
        + ev(CS + 1_000_300, 0xFFFFFFFF, cpu=1))
CAPTURE = hdr(count=4) + table(TWO_TCP) + BODY

LINES_E = [
    "[ 1]186a3::22:13:20.000000 [tcp][42][?4294967294] [RAW 8] 1111111111111111",
    "[ 3]186a4::22:13:20.000250 [tcp][42][?100] [RAW 3] 010203",
    "[12]ffffffff::22:13:21.000250 [?][42][?101] [RAW 0]",
    "[ 1]186a3::22:13:21.000300 [tcp][42][SESSION_END] [RAW 0]",
]


def run(*args, cwd=None):
    p = subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert "Traceback" not in p.stderr, p.stderr
    assert "Traceback" not in p.stdout
    return p


def parse(data: bytes):
    """The test's own elog(5) walk: header tuple, providers, records."""
    h = struct.unpack_from("<4sIQQQQ", data)
    (n,) = struct.unpack_from("<I", data, 40)
    provs = [struct.unpack_from("<H32s", data, 44 + 34 * i) for i in range(n)]
    off = 44 + 34 * n
    recs = []
    while off + 32 <= len(data):
        length = struct.unpack_from("<H", data, off)[0]
        recs.append(data[off:off + length])
        off += length
    return h, provs, recs


@pytest.fixture
def capture(tmp_path):
    p = tmp_path / "cap.elog"
    p.write_bytes(CAPTURE)
    return p


# --- elog_test.py's CLI checks ----------------------------------------------------

@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    p = run(flag)
    assert p.returncode == 1
    assert "usage: pyelog" in p.stderr
    assert p.stdout == ""


def test_no_arguments():
    p = run()
    assert p.returncode == 1
    assert "no subscriptions specified" in p.stderr


@pytest.mark.parametrize("flag", ["--bogus", "-x", "-dt", "--read-binary=foo"])
def test_unknown_argument(flag):
    p = run(flag)
    assert p.returncode == 1
    assert "unknown argument" in p.stderr and flag in p.stderr


def test_read_missing_file(tmp_path):
    p = run("-r", tmp_path / "nope.elog")
    assert p.returncode == 1
    # elog's err(3) line: "fopen(FILE): strerror".
    assert p.stderr == f"pyelog: fopen({tmp_path / 'nope.elog'}): No such file or directory\n"
    assert p.stdout == ""


def test_read_missing_gz_file(tmp_path):
    p = run("-r", tmp_path / "nope.elog.gz")
    assert p.returncode == 1 and f"gzopen({tmp_path / 'nope.elog.gz'}): No such file" in p.stderr


def test_read_64_zero_bytes(tmp_path):
    f = tmp_path / "zero.elog"
    f.write_bytes(bytes(64))
    p = run("-r", f)
    assert p.returncode == 1
    assert "bad magic number" in p.stderr


def test_elog_personality_passes_freebsds_cli_checks(tmp_path):
    """FreeBSD's own CLI smoke tests (tests/sys/kern/elog_test.py), in our
    words, against the elog command: help, no arguments, an unknown
    argument, a missing file, bad magic; every message prefixed elog:."""
    def elog(*args):
        p = subprocess.run(ELOG_CMD + [str(a) for a in args], capture_output=True, text=True,
                           timeout=60)
        assert "Traceback" not in p.stderr and p.stdout == "", p.stderr
        return p.returncode, p.stderr
    code, err = elog("--help")
    assert code == 1 and err.startswith("usage: elog -c ") and "pyelog" not in err.splitlines()[1]
    assert "convert" not in err.split("\n\n")[0]          # pyelog's subcommands are not elog's
    code, err = elog()
    assert code == 1 and err.startswith("elog: ") and "no subscriptions specified" in err
    code, err = elog("--bogus")
    assert code == 1 and err.startswith("elog: ") and "unknown argument" in err
    code, err = elog("-r", tmp_path / "nope.elog")
    assert code == 1 and err.startswith("elog: ") and "fopen" in err
    (tmp_path / "zero.elog").write_bytes(bytes(64))
    code, err = elog("-r", tmp_path / "zero.elog")
    assert code == 1 and err.startswith("elog: ") and "bad magic number" in err


# --- more errors ---------------------------------------------------------------------

def test_read_requires_value():
    p = run("-r")
    assert p.returncode == 1 and "requires" in p.stderr


def test_read_with_capture_refused(capture):
    p = run("-r", capture, "-c", "tcp")
    assert p.returncode == 1
    assert "--read-binary cannot be used with subscribe options" in p.stderr


@pytest.mark.parametrize("data, message", [
    (b"", "File is empty"),
    (hdr()[:17], "Unexpected end of file (read 17 of 40 bytes)"),
    (struct.pack("<4sIQQQQ", b"ELOG", 2, 0, 0, 0, 0) + table([]), "Unsupported file version: 2 (expected 1)"),
    (hdr() + struct.pack("<I", 33), "Invalid provider count 33 in file"),
    (hdr() + struct.pack("<I", 2) + struct.pack("<H32s", 1, b"tcp"), "Unexpected end of file"),
])
def test_read_format_errors(tmp_path, data, message):
    f = tmp_path / "bad.elog"
    f.write_bytes(data)
    p = run("-r", f, "--raw")
    assert p.returncode == 1
    assert message in p.stderr
    assert len(p.stderr.splitlines()) == 1
    assert p.stdout == ""


def test_read_directory(tmp_path):
    p = run("-r", tmp_path)
    assert p.returncode == 1 and "fopen" in p.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_read_unreadable_file(capture):
    capture.chmod(0)
    p = run("-r", capture, "--raw")
    assert p.returncode == 1 and "fopen" in p.stderr


def test_bad_record_after_good_ones(tmp_path):
    f = tmp_path / "bad.elog"
    good = BODY[:-32]                          # first three records
    f.write_bytes(hdr() + table(TWO_TCP) + good + ev(1, 1, length=5) + ev(2, 2))
    p = run("-r", f, "-e", "--raw")
    assert p.returncode == 1
    assert p.stdout.splitlines() == LINES_E[:3]
    err = p.stderr.splitlines()
    assert len(err) == 1
    off = 40 + 4 + 68 + len(good)
    assert f"invalid event_length 5 at offset {off}" in err[0]


def test_corrupt_gz(tmp_path):
    f = tmp_path / "bad.elog.gz"
    f.write_bytes(CAPTURE)                     # not gzip at all
    p = run("-r", f, "--raw")
    assert p.returncode == 1
    assert len(p.stderr.splitlines()) == 1


def test_output_to_unwritable_path(capture, tmp_path):
    """elog opens -o with fopen("wb") and reports "fopen" on failure; no traceback."""
    p = run("-r", capture, "-o", tmp_path / "no" / "such" / "dir" / "out.elog")
    assert p.returncode == 1
    assert "fopen" in p.stderr


# --- printing ---------------------------------------------------------------------------

def test_read_lines(capture):
    p = run("-r", capture, "-e", "--raw")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == LINES_E
    assert p.stderr == ""


def test_read_without_e(capture):
    p = run("-r", capture, "--raw")
    assert p.returncode == 0
    assert p.stdout.splitlines() == [
        "[ 1]186a3::22:13:20.000000 [tcp][42] [RAW 8] 1111111111111111",
        "[ 3]186a4::22:13:20.000250 [tcp][42] [RAW 3] 010203",
        "[12]ffffffff::22:13:21.000250 [?][42] [RAW 0]",
        "[ 1]186a3::22:13:21.000300 [tcp][42] [RAW 0]",
    ]


def test_read_all_display_options(capture):
    p = run("-r", capture, "--raw", "-e", "-n", "-t", "--delta-time", "-d")
    assert p.returncode == 0
    assert p.stdout.splitlines() == [
        "1        +0.000000 d0.000000 [ 1]186a3::2023-11-14 22:13:20.000000 [tcp][42][?4294967294] "
        "[RAW 8] 1111111111111111",
        "2        +0.000250 d0.000250 [ 3]186a4::2023-11-14 22:13:20.000250 [tcp][42][?100] [RAW 3] 010203",
        "3        +1.000250 d1.000000 [12]ffffffff::2023-11-14 22:13:21.000250 [?][42][?101] [RAW 0]",
        "4        +1.000300 d0.000050 [ 1]186a3::2023-11-14 22:13:21.000300 [tcp][42][SESSION_END] [RAW 0]",
    ]


def test_read_long_option_spellings(capture):
    p = run("--read-binary", capture, "--raw", "--event-name", "--event-number", "--relative-time", "--date")
    assert p.returncode == 0
    assert p.stdout.splitlines()[3] == \
        "4        +1.000300 [ 1]186a3::2023-11-14 22:13:21.000300 [tcp][42][SESSION_END] [RAW 0]"


def test_read_gz(tmp_path):
    f = tmp_path / "cap.elog.gz"
    f.write_bytes(gzip.compress(CAPTURE))
    p = run("-r", f, "-e", "--raw")
    assert p.returncode == 0
    assert p.stdout.splitlines() == LINES_E


def test_read_unfinished_capture_exits_0(tmp_path):
    # Header count 0: a capture still being written (or killed before its
    # first flush). Its cut tail is ignored, as elog(1) does.
    f = tmp_path / "cut.elog"
    f.write_bytes(hdr(count=0) + table(TWO_TCP) + BODY[:-10])
    p = run("-r", f, "-e", "--raw")
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.splitlines() == LINES_E[:3]


def test_read_capture_short_of_its_header_count_says_so(tmp_path):
    # The header promises 4; a length corrupted in mid-file (or a cut
    # tail) leaves 3: every whole record printed, then one line and exit 1.
    f = tmp_path / "cut.elog"
    f.write_bytes(CAPTURE[:-10])
    corrupt = bytearray(CAPTURE)
    second = len(hdr()) + len(table(TWO_TCP)) + 40
    corrupt[second:second + 2] = (0xFFFF).to_bytes(2, "little")
    g = tmp_path / "corrupt.elog"
    g.write_bytes(bytes(corrupt))
    for path, held, offset in ((f, 3, len(CAPTURE) - len(BODY) + 40 + 35 + 32), (g, 1, second)):
        p = run("-r", path, "-e", "--raw")
        assert p.returncode == 1
        assert p.stdout.splitlines() == LINES_E[:held]
        assert p.stderr == (f"pyelog: {path}: the header says 4 events, the file holds {held}: "
                            f"the records stop at byte offset {offset}\n")


def test_read_header_only_capture(tmp_path):
    f = tmp_path / "h.elog"
    f.write_bytes(hdr() + table(TWO_TCP))
    p = run("-r", f, "--raw")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_providers(capture):
    p = run("-r", capture, "-p", "--raw")
    assert p.returncode == 0
    assert p.stderr.splitlines()[0] == "[Providers] 2 registered: tcp tcp"
    assert len(p.stdout.splitlines()) == 4


def test_live_anchor_zero_prints_time_since_boot(tmp_path):
    f = tmp_path / "z.elog"
    f.write_bytes(hdr(start_utc_us=0) + table(TWO_TCP) + ev(360_000_000_001, 1))
    p = run("-r", f, "-d", "--raw")
    assert p.stdout == "[ 0]186a3::100:00:00.000001 [tcp][42] [RAW 0]\n"


def test_broken_pipe_no_traceback(tmp_path):
    f = tmp_path / "big.elog"
    f.write_bytes(hdr() + table(TWO_TCP) + ev(CS, 1, bytes(100)) * 20000)
    proc = subprocess.Popen(CMD + ["-r", str(f), "--raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err


# --- rewrite with -o -----------------------------------------------------------------------

def test_rewrite_gives_identical_records(capture, tmp_path):
    out = tmp_path / "new.elog"
    p = run("-r", capture, "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    h, provs, recs = parse(out.read_bytes())
    h0, provs0, recs0 = parse(CAPTURE)
    assert recs == recs0
    assert provs == provs0
    assert h[0:3] == (b"ELOG", 1, CS)          # capture_start = first record
    assert h[4] == 4                            # counts patched (elog never does; harmless)


def test_rewrite_from_gz_and_truncated(tmp_path):
    src = tmp_path / "cap.elog.gz"
    src.write_bytes(gzip.compress(CAPTURE[:-3]))
    out = tmp_path / "new.elog"
    p = run("-r", src, "-o", out)
    # The copy salvages the 3 whole records under a header that counts
    # them; the header's promise of 4 still fails the run.
    assert p.returncode == 1 and "the header says 4 events, the file holds 3" in p.stderr
    header, _, records = parse(out.read_bytes())
    assert records == parse(CAPTURE)[2][:3] and header[4] == 3


def test_rewrite_then_read_same_text(capture, tmp_path):
    out = tmp_path / "new.elog"
    assert run("-r", capture, "-o", out).returncode == 0
    a = run("-r", capture, "-e", "-t", "--raw").stdout
    b = run("-r", out, "-e", "-t", "--raw").stdout
    # the wall-clock anchor is re-sampled by the rewrite; everything else matches
    def strip(text):
        out = []
        for ln in text.splitlines():
            head, rest = ln.split("::", 1)
            out.append(head + "::" + rest.split(" ", 1)[1])
        return out
    assert strip(a) == strip(b) and len(a.splitlines()) == 4


def test_rewrite_bad_record(tmp_path):
    f = tmp_path / "bad.elog"
    f.write_bytes(hdr() + table(TWO_TCP) + BODY[:-32] + ev(1, 1, length=0))
    out = tmp_path / "new.elog"
    p = run("-r", f, "-o", out)
    assert p.returncode == 1
    assert "invalid event_length 0" in p.stderr


# --- the schema decoder ---------------------------------------------------------------------

def test_read_with_schema_decoder(capture):
    p = run("-r", capture, "-e")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 4
    assert lines[3].startswith("[ 1]186a3::22:13:21.000300 [tcp][42][SESSION_END] ")
    assert lines[0].startswith("[ 1]186a3::22:13:20.000000 [tcp][42][SESSION_CREATE] ")
    assert lines[1].startswith("[ 3]186a4::22:13:20.000250 [tcp][42][")
    # elog(5): an id missing from the provider table shows as "?" and "[UNKNOWN_PROVIDER:?]"
    assert lines[2] == "[12]ffffffff::22:13:21.000250 [?][42][?101] [UNKNOWN_PROVIDER:?]"
    assert "Traceback" not in p.stderr


def test_p_says_which_schema_decodes_each_provider(tmp_path):
    """A provider's name does not say whose schema its events follow
    (FreeBSD's tcp is not pyelog's): ``-r -p`` names the file that decoded
    each provider, or says that none did."""
    from pyelog.schema.consumer import SCHEMAS_DIR
    cap = tmp_path / "two.elog"
    cap.write_bytes(hdr(count=2) + table([(1, "tcp"), (7, "hpts")])
                    + ev(CS, 1004, struct.pack("<4I", 1, 2, 3, 4)) + ev(CS + 5, 1, b"\x2a\0\0\0", provider_id=7))
    p = run("-r", cap, "-p")
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [
        "[Providers] 2 registered: tcp hpts",
        f"[Schema] tcp: {SCHEMAS_DIR / 'tcp_eventlog_schema.src'}",
        "[Schema] hpts: none (payloads print as [UNKNOWN_PROVIDER:hpts]; see --schema-dir)"]
    assert p.stdout.splitlines()[1].endswith("[hpts][42] [UNKNOWN_PROVIDER:hpts]")
    # The user's schemas (e.g. a copy of FreeBSD's include/eventlog/): named, and used.
    mine = tmp_path / "eventlog"
    mine.mkdir()
    (mine / "hpts_eventlog_schema.src").write_text(
        "PROVIDER hpts\nKEYWORD PACE 1\nSTRUCT S slot:uint32_t\nEVENT SLOT 1 INFO PACE S\n    \"slot %1\"\n")
    p = run("-r", cap, "-p", "--schema-dir", mine)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines()[2] == f"[Schema] hpts: {mine / 'hpts_eventlog_schema.src'}"
    assert p.stdout.splitlines()[1].endswith("[hpts][42] slot 42")
    # Not decoding (--raw, or rewriting with -o): no schema lines.
    assert "[Schema]" not in run("-r", cap, "-p", "--raw").stderr
