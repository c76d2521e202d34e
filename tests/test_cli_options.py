# SPDX-License-Identifier: BSD-2-Clause
"""elog(1)'s command line (FreeBSD's options and messages), option by option, and pyelog's additions.

(The status line itself: tests/test_status_line.py.)
"""
from __future__ import annotations

import pytest

from pyelog.cli import UsageError, main, parse_args
from pyelog.kernel.loader import KEYWORD_SESSION


def err(argv) -> str:
    with pytest.raises(UsageError) as e:
        parse_args(argv)
    return str(e.value)


# --- -c ---------------------------------------------------------------------

@pytest.mark.parametrize("argv, level, keywords", [
    (["-c", "tcp"], 4, 0xFFFFFFFF),
    (["--capture", "tcp", "info"], 3, 0xFFFFFFFF),
    (["-c", "tcp", "TRACE", "0x3"], 5, 0x3 | KEYWORD_SESSION),
    (["-c", "tcp", "0"], 0, 0xFFFFFFFF),
    (["-c", "tcp", "5", "0X10"], 5, 0x10 | KEYWORD_SESSION),
    (["-c", "tcp", "VERBOSE", "RX|tx"], 4, 0x1 | 0x2 | KEYWORD_SESSION),
])
def test_capture_level_and_keywords(argv, level, keywords):
    (s,) = parse_args(argv).subscriptions
    assert (s.provider, s.level, s.keywords) == ("tcp", level, keywords)


def test_capture_repeats_and_session_always_added():
    o = parse_args(["-c", "tcp", "ERROR", "0x0", "-c", "test"])
    assert [(s.provider, s.level, s.keywords) for s in o.subscriptions] == [
        ("tcp", 1, KEYWORD_SESSION), ("test", 4, 0xFFFFFFFF)]


def test_unknown_keyword_is_not_consumed():
    # elog: an unknown keyword list is not keywords; it then fails as an argument.
    assert err(["-c", "tcp", "INFO", "RX|NOPE"]) == "unknown argument: RX|NOPE (use --capture or -c)"
    # A token that is no level is not consumed either.
    assert err(["-c", "tcp", "6"]).startswith("unknown argument: 6")


def test_capture_errors():
    assert err(["-c"]).startswith("-c requires")
    assert err(["-c", "x" * 32]) == "provider name too long"
    assert parse_args(["-c", "x" * 31]).subscriptions[0].provider == "x" * 31


# --- -b, --duration, -f, -o ---------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("65536", 65536), ("64K", 65536), ("64 k", 65536), ("2M", 2 << 20), ("0x20000", 0x20000),
    ("0400000", 0o400000), ("1023m", 1023 << 20), ("1G", None),
])
def test_buffer_size(text, value):
    if value is None:
        assert err(["-c", "tcp", "-b", text]) == "buffer size too large (maximum 1023MB)"
    else:
        assert parse_args(["-c", "tcp", "--buffer-size", text]).buffer_size == value


def test_buffer_size_errors():
    assert err(["-c", "tcp", "-b", "1000"]) == "buffer size too small (minimum 64KB)"
    assert err(["-c", "tcp", "-b", "lots"]).startswith("invalid buffer size")
    assert err(["-c", "tcp", "-b"]).startswith("-b requires")
    assert parse_args(["-c", "tcp"]).buffer_size == 512 * 1024


def test_duration():
    assert parse_args(["-c", "tcp", "--duration", "0"]).duration == 0
    assert parse_args(["-c", "tcp", "--duration", "4294967295"]).duration == 4294967295
    for bad in ("", "1.5", "-1", "4294967296", "soon"):
        assert err(["-c", "tcp", "--duration", bad]).startswith("invalid duration")
    assert err(["-c", "tcp", "--duration"]).startswith("--duration requires")


def test_format_tcp():
    assert parse_args(["-c", "tcp", "-f", "tcp"]).format_tcp
    assert err(["-c", "tcp", "-f", "json"]) == "--format requires 'tcp' argument"
    assert err(["-c", "tcp", "--format"]) == "--format requires 'tcp' argument"


def test_output_file_and_dir():
    assert parse_args(["-c", "tcp", "-o", "x.elog"]).output == "x.elog"
    o = parse_args(["-c", "tcp", "--output", "dir=caps"])
    assert (o.output, o.output_dir) == (None, "caps")


def test_flags():
    o = parse_args(["-c", "tcp", "-d", "-D", "-e", "-n", "-p", "-s", "-t", "--delta-time"])
    assert (o.text.date, o.dump_state, o.text.event_names, o.text.numbers, o.providers,
            o.stats, o.text.relative, o.text.delta) == (True,) * 8
    o = parse_args(["-c", "tcp", "--date", "--dump-state", "--event-name", "--event-number",
                    "--providers", "--stats", "--relative-time"])
    assert o.text.date and o.dump_state and o.stats and o.text.relative


def test_no_bundling_no_equals():
    assert err(["-c", "tcp", "-es"]) == "unknown argument: -es (use --capture or -c)"
    assert err(["--duration=5", "-c", "tcp"]).startswith("unknown argument: --duration=5")


def test_subscriptions_required_and_exclusive_with_read():
    assert err([]) == "no subscriptions specified (use --capture or -c)"
    assert err(["-s"]) == "no subscriptions specified (use --capture or -c)"
    assert err(["-r", "x.elog", "-c", "tcp"]) == "--read-binary cannot be used with subscribe options"


# --- pyelog additions ---------------------------------------------------------

def test_rotation_options():
    o = parse_args(["-c", "tcp", "-o", "c.elog", "--rotate-size", "10M", "--rotate-time", "60",
                    "--max-files", "5"])
    assert (o.rotate_size, o.rotate_time, o.max_files) == (10 << 20, 60, 5)
    assert err(["-c", "tcp", "--rotate-size", "1M"]).startswith("--rotate-size/--rotate-time require")
    assert err(["-c", "tcp", "-o", "dir=d", "--rotate-time", "5"]).startswith("--rotate-size/--rotate-time")
    assert err(["-c", "tcp", "-o", "c.elog", "--max-files", "3"]) == \
        "--max-files requires --rotate-size or --rotate-time"
    assert err(["-c", "tcp", "-o", "c", "--rotate-size", "1K"]) == "rotation size too small (minimum 4K)"
    assert err(["-c", "tcp", "-o", "c", "--rotate-time", "0"]) == "invalid rotation time: 0"
    assert err(["-c", "tcp", "-o", "c", "--rotate-time", "5", "--max-files", "0"]) == \
        "invalid number of files: 0"


def test_json_live_goes_to_stdout_only():
    assert parse_args(["-c", "tcp", "--json"]).json
    assert err(["-c", "tcp", "--json", "-o", "x.elog"]).startswith("--json prints to stdout")
    assert parse_args(["-r", "x.elog", "--json"]).json


def test_tcp_filter_flags():
    o = parse_args(["-c", "tcp", "--tcp-default", "none", "--port", "80", "--port", "443",
                    "--lport", "22", "--rport", "53", "--addr", "10.0.0.0/8", "--netns", "blue",
                    "--cgroup", "system.slice", "--pid", "42", "--comm", "curl"])
    assert not o.tcp_default_enabled
    assert o.tcp_filters == {"port": [80, 443], "lport": [22], "rport": [53], "addr": ["10.0.0.0/8"],
                             "netns": ["blue"], "cgroup": ["system.slice"], "pid": [42],
                             "comm": ["curl"]}
    assert parse_args(["-c", "tcp"]).tcp_default_enabled
    assert err(["-c", "tcp", "--tcp-default", "some"]) == "--tcp-default requires 'all' or 'none'"
    assert err(["-c", "tcp", "--pid", "me"]) == "--pid requires a number: me"
    assert err(["-c", "tcp", "--comm"]).startswith("--comm requires")


def test_tcp_filter_reaches_the_provider():
    pytest.importorskip("bcc")
    from pyelog.tools.capture import tcp_filter
    o = parse_args(["-c", "tcp", "--port", "80", "--rport", "53", "--addr", "::1", "--pid", "7"])
    f = tcp_filter(o)
    assert (f.ports, f.rports, f.cidrs, f.pids) == ([80], [53], ["::1"], [7])


def test_errors_exit_1_one_line(capsys):
    assert main(["-c", "tcp", "-b", "12"]) == 1
    e = capsys.readouterr().err
    assert e == "pyelog: buffer size too small (minimum 64KB)\n"
    assert main(["-h"]) == 1
    assert capsys.readouterr().err.startswith("usage: pyelog")


def test_help_mentions_every_option(capsys):
    main(["--help"])
    usage = capsys.readouterr().err
    for opt in ["-c, --capture", "-b, --buffer-size", "--duration", "-d, --date", "-D, --dump-state",
                "-e, --event-name", "-f, --format tcp", "-n, --event-number", "-o, --output",
                "-o dir=PATH", "-p, --providers", "-r, --read-binary", "-s, --stats",
                "-t, --relative-time", "--delta-time", "-h, --help", "--json", "--rotate-size",
                "--rotate-time", "--max-files", "--tcp-default", "--port", "--lport", "--rport",
                "--addr", "--netns", "--cgroup", "--pid", "--comm", "--no-status",
                "pyelog summary", "pyelog plot", "pyelog convert"]:
        assert opt in usage, opt


# --- numbers: ASCII decimal digits in range, for every numeric option (issue 17) ----

_NOT_NUMBERS = ["²", "١٢", "５", "+5", "-5", "5_0", " 5", "5.0", "", "0x10"]


@pytest.mark.parametrize("text", _NOT_NUMBERS)
@pytest.mark.parametrize("argv, message", [
    (["--duration"], "invalid duration: {}"),
    (["-o", "c.elog", "--rotate-time"], "invalid rotation time: {}"),
    (["-o", "c.elog", "--rotate-time", "5", "--max-files"], "invalid number of files: {}"),
    (["--port"], "--port requires a number: {}"),
    (["--lport"], "--lport requires a number: {}"),
    (["--rport"], "--rport requires a number: {}"),
    (["--pid"], "--pid requires a number: {}"),
])
def test_numeric_options_take_ascii_digits_only(argv, message, text):
    assert err(["-c", "tcp", *argv, text]) == message.format(text)


@pytest.mark.parametrize("argv, value, message", [
    (["--duration"], "4294967296", "invalid duration: 4294967296"),
    (["--duration"], "9" * 5000, "invalid duration: " + "9" * 48 + "..."),
    (["-o", "c.elog", "--rotate-time"], "0", "invalid rotation time: 0"),
    (["-o", "c.elog", "--rotate-time"], "4294967296", "invalid rotation time: 4294967296"),
    (["-o", "c.elog", "--rotate-time", "5", "--max-files"], "0", "invalid number of files: 0"),
    (["-o", "c.elog", "--rotate-time", "5", "--max-files"], "9" * 5000, "invalid number of files: " + "9" * 48 + "..."),
    (["--port"], "0", "invalid port 0 (1..65535)"),
    (["--lport"], "65536", "invalid lport 65536 (1..65535)"),
    (["--rport"], "9" * 5000, f"invalid rport {'9' * 48}... (1..65535)"),
    (["--pid"], "0", "invalid pid 0 (1..4194304)"),
    (["--pid"], "4194305", "invalid pid 4194305 (1..4194304)"),
    (["--max-sessions"], "0", "invalid number of sessions: 0 (1..16777216)"),
    (["--max-sessions"], "16777217", "invalid number of sessions: 16777217 (1..16777216)"),
])
def test_numeric_options_are_range_checked(argv, value, message):
    assert err(["-c", "tcp", *argv, value]) == message


@pytest.mark.parametrize("value", ["-21", "20", "--3", "+5", "-", "-²", "5.0", "", "9" * 5000])
def test_nice_is_checked(value):
    assert err(["-c", "tcp", "--nice", value]) == f"invalid nice value: {value[:48]}{'...' if len(value) > 48 else ''} (-20..19)"


def test_nice_values():
    assert parse_args(["-c", "tcp"]).nice is None          # the capture's default
    assert [parse_args(["-c", "tcp", "--nice", v]).nice for v in ("-20", "-0", "0", "007", "19")] == \
        [-20, 0, 0, 7, 19]


def test_numeric_option_bounds_and_leading_zeros():
    o = parse_args(["-c", "tcp", "-o", "c.elog", "--duration", "00004294967295", "--rotate-time", "4294967295",
                    "--max-files", "1", "--port", "65535", "--lport", "1", "--rport", "0080",
                    "--pid", "4194304"])
    assert (o.duration, o.rotate_time, o.max_files) == (4294967295, 4294967295, 1)
    assert (o.tcp_filters["port"], o.tcp_filters["lport"], o.tcp_filters["rport"], o.tcp_filters["pid"]) == \
        ([65535], [1], [80], [4194304])


@pytest.mark.parametrize("token", ["0x١", "0x_1", "0x1 "])
def test_hex_keyword_mask_is_ascii_hex_only(token):
    assert err(["-c", "tcp", "INFO", token]) == f"unknown argument: {token} (use --capture or -c)"


def test_unicode_digit_is_a_usage_line_from_main(capsys):
    assert main(["-c", "tcp", "--duration", "²"]) == 1
    assert capsys.readouterr().err == "pyelog: invalid duration: ²\n"
