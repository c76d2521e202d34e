# SPDX-License-Identifier: BSD-2-Clause
"""The ``pyelog`` command: elog(1) for Linux.

The first argument picks a tool::

    pyelog [elog options]      capture or print events (elog(1)'s options)
    pyelog gen ...             schema compiler (eventlog_gen.awk's options)
    pyelog convert ...         rewrite, merge, filter, split captures
    pyelog summary FILE        one row per TCP connection of a capture
    pyelog plot FILE -o OUT    one TCP connection: time-sequence graph, cwnd, RTT
    pyelog export FILE -o DIR  captures as a Parquet dataset (DuckDB, Spark)
    pyelog query SQL DIR|FILE  SQL over a dataset or captures (DuckDB)
    pyelog host serve|status   the host instance that recorders share
    pyelog selftest            check that this kernel can host pyelog

elog's parser is mirrored: arguments are read left to right, long and short
spellings are exact strings (no ``--opt=value``, no bundling), every error is
one line on stderr and exit status 1, and ``-h`` prints usage and exits 1.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from pyelog.records.format import ElogReader, ElogWriter
from pyelog.records.jsonl import JsonEventFormatter, header_line
from pyelog.kernel.loader import (MAX_SESSIONS_DEFAULT, MAX_SESSIONS_LIMIT, EventlogError,
                                  Subscription)
from pyelog.schema.consumer import ConsumerSet
from pyelog.records.untrusted import clip, terminal_safe
from pyelog.tools.command import (ToolError, UsageError, ascii_uint, os_errors_as, parse_bytes,  # noqa: F401
                                  parse_size, run_reporting)
from pyelog.records.eventlog import KEYWORD_SESSION, LEVELS
from pyelog.records.text import RawPayloads, TextOptions, TextPrinter

USAGE = """\
usage: pyelog -c PROVIDER [LEVEL [KEYWORDS]] [-c ...] [options]
       pyelog -r FILE [-e] [-n] [-t] [--delta-time] [-d] [-p] [-o FILE] [--json]
       pyelog convert IN... OUT | --split DIR [filters]   (pyelog convert -h)
       pyelog summary FILE... [--json] [--listeners]      (pyelog summary -h)
       pyelog plot FILE [--session ID] -o PNG|HTML        (pyelog plot -h)
       pyelog export CAPTURE|DIR... -o DIR [--host NAME]  (pyelog export -h)
       pyelog query SQL DATASET|CAPTURE... [--csv|--json] (pyelog query -h)
       pyelog host serve|status [options]                 (pyelog host -h)
       pyelog gen SCHEMA... (-h | -c | -M) [-o OUT]
       pyelog selftest

Live capture (root):
  -c, --capture PROVIDER [LEVEL [KEYWORDS]]
                          subscribe to PROVIDER (tcp, test); repeatable.
                          LEVEL: NONE ERROR WARN INFO VERBOSE TRACE or 0-5
                          (default VERBOSE); KEYWORDS: 0xHEX or NAME|NAME
                          (default all); SESSION is always added
  -b, --buffer-size SIZE  per-CPU buffer, bytes with optional K/M/G,
                          64KB to 1023MB (default 512K)
  --duration SEC          stop after SEC seconds (0: until SIGINT/SIGTERM)
  -D, --dump-state        start with the state of existing sessions
  -o, --output FILE       write a binary capture (elog(5); .gz compresses)
  -o dir=PATH             one capture per session, PATH/<session>.elog
  -f, --format tcp        with -o dir=: name files
                          <session>_<lport>_<raddr>_<rport>.elog
  -s, --stats             print statistics to stderr at the end
  --json                  print events as JSON lines instead of text
  --rotate-size SIZE      with -o FILE: start a new file when this one
                          reaches SIZE bytes (K/M/G)
  --rotate-time SEC       with -o FILE: start a new file every SEC seconds
                          (files: FILE, then FILE with .1, .2, ... before
                          the extension, e.g. cap.elog cap.1.elog ...;
                          each is a complete capture with its own header)
  --max-files N           with rotation: keep only the newest N files
  --max-sessions N        sessions the kernel can track at once (default
                          1048576, about 216 bytes of kernel memory each);
                          those that do not fit are counted in -s and the
                          status line, their SESSION_CREATE as a dropped
                          event
  --nice N                drain the rings at nice value N, -20..19
                          (default -10 where allowed, as root: with every
                          CPU busy, a reader that runs late drops events;
                          the drops are counted either way)
  --no-status             no status line (shown on stderr when it is a
                          terminal and the events go elsewhere)
  --shared                the host instance or an error, never an own one
  --private               run this capture's own instance (hooks of its own)
                          Without either, a capture subscribes to the host
                          instance (pyelog host -h), starting it when none
                          runs, so that later captures share its hooks;
                          one that cannot share it (TCP flags below,
                          --tcp-default none, --max-sessions, or another
                          buffer size or providers than the running
                          instance's) runs its own instance
TCP provider (which connections the default enables; kinds are ANDed,
repeated values ORed):
  --tcp-default all|none  new connections start enabled (all, default) or
                          only when they ask with setsockopt(TCP_EVENTLOG)
  --port N, --lport N, --rport N   local or remote / local / remote port
  --addr CIDR             local or remote address in CIDR (v4 or v6)
  --netns NS              network namespace: inode, path or `ip netns` name
  --cgroup PATH           only sockets of this cgroup-v2 subtree are seen
  --pid N, --comm NAME    process that called connect()/listen()

Reading a capture (.elog, or .elog.gz):
  -r, --read-binary FILE  print the events of FILE as text
  -o, --output FILE       with -r: rewrite the records into a new capture instead
  --schema FILE           decode payloads with this schema file as well (repeatable)
  --schema-dir DIR        ... or with every *_eventlog_schema.src in DIR (repeatable),
                          e.g. a copy of FreeBSD's include/eventlog/ for
                          captures taken on FreeBSD
  --raw                   print payloads as hex instead of decoding them
  --json                  print one JSON object per event (after a line
                          describing the capture), instead of text

Display (live capture and -r):
  -e, --event-name        print [NAME] after the session id
  -n, --event-number      prefix each line with its number
  -t, --relative-time     prefix +S.UUUUUU since the first event printed
  --delta-time            prefix dS.UUUUUU since the previous event
  -d, --date              show the date with the time (-r only: live captures
                          have no wall-clock anchor and show time since boot)
  -p, --providers         print the provider table to stderr first; with -r,
                          also the schema file that decodes each provider
  -h, --help              this text (exit status 1, as elog(1))
"""





@dataclass
class Options:
    subscriptions: list[Subscription] = field(default_factory=list)
    read_binary: str | None = None
    output: str | None = None
    output_dir: str | None = None
    buffer_size: int = 512 * 1024
    duration: int = 0
    dump_state: bool = False
    format_tcp: bool = False
    stats: bool = False
    providers: bool = False
    schemas: list[str] = field(default_factory=list)
    raw: bool = False
    json: bool = False
    rotate_size: int | None = None
    rotate_time: int | None = None
    max_files: int | None = None
    max_sessions: int = MAX_SESSIONS_DEFAULT
    no_status: bool = False
    tcp_default_enabled: bool = True
    instance: str = "auto"              # auto / shared / private (the host instance)
    nice: int | None = None             # None: the capture's default (READER_NICE where allowed)
    tcp_filters: dict[str, list] = field(default_factory=lambda: {k: [] for k in _TCP_FILTERS})
    text: TextOptions = field(default_factory=TextOptions)


_PORTS = range(1, 1 << 16)
# Linux's PID_MAX_LIMIT on 64-bit (include/linux/threads.h): no pid is higher.
_PIDS = range(1, (1 << 22) + 1)
_U32 = 0xFFFFFFFF

# flag -> its values: str, or the range a number must be in
_TCP_FILTERS: dict[str, type | range] = {"port": _PORTS, "lport": _PORTS, "rport": _PORTS, "addr": str,
                                         "netns": str, "cgroup": str, "pid": _PIDS, "comm": str}


def parse_uint(text: str, lo: int, hi: int, invalid: str, out_of_range: str | None = None) -> int:
    """``text`` as an integer from ``lo`` to ``hi`` (:func:`ascii_uint`:
    every numeric option goes through it). Raises :class:`UsageError` with
    ``invalid`` for text that is no such number, with ``out_of_range``
    (default ``invalid``) for a number outside the range.
    """
    value = ascii_uint(text, lo, hi)
    if value is None:
        raise UsageError(out_of_range or invalid if text.isascii() and text.isdigit() else invalid)
    return value


def _keyword_mask(provider: str, token: str, schemas: list[str]) -> int | None:
    """Resolve ``0x...`` or ``NAME|NAME`` for ``provider``; None if it is not a keyword list."""
    if token[:2] in ("0x", "0X"):
        # ASCII hex only: int(token, 16) also takes '_' and non-ASCII digits.
        return int(token, 16) if re.fullmatch(r"0[xX][0-9a-fA-F]+", token) else None
    consumers = ConsumerSet.with_extra(schemas)
    consumer = consumers.get(provider) if consumers else None
    if consumer is None:
        return None
    mask = 0
    for name in token.split("|"):
        bit = consumer.keyword_from_string(name)
        if not bit:
            return None
        mask |= bit
    return mask


def parse_args(argv: list[str]) -> Options:
    """Parse elog(1)'s command line (left to right, exact spellings)."""
    o = Options()
    i = 0

    def value(flag: str, what: str) -> str:
        nonlocal i
        if i + 1 >= len(argv):
            raise UsageError(f"{flag} requires {what}")
        i += 1
        return argv[i]

    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            raise UsageError("")
        elif a in ("-c", "--capture"):
            name = value(a, "a provider name")
            if len(name.encode("utf-8", "surrogateescape")) >= 32:
                raise UsageError("provider name too long")
            sub = Subscription(name)
            if i + 1 < len(argv):
                lv = argv[i + 1]
                if lv.upper() in LEVELS or re.fullmatch(r"[0-5]", lv):
                    sub.level = LEVELS[lv.upper()] if lv.upper() in LEVELS else int(lv)
                    i += 1
                    if i + 1 < len(argv):
                        mask = _keyword_mask(name, argv[i + 1], o.schemas)
                        if mask is not None:
                            sub.keywords = mask
                            i += 1
            sub.keywords |= KEYWORD_SESSION
            o.subscriptions.append(sub)
        elif a in ("-b", "--buffer-size"):
            o.buffer_size = parse_size(value(a, "a size"))
        elif a == "--duration":
            v = value(a, "a number of seconds")
            o.duration = parse_uint(v, 0, _U32, f"invalid duration: {clip(v)}")
        elif a in ("-d", "--date"):
            o.text.date = True
        elif a in ("-D", "--dump-state"):
            o.dump_state = True
        elif a in ("-e", "--event-name"):
            o.text.event_names = True
        elif a in ("-f", "--format"):
            if i + 1 >= len(argv) or argv[i + 1] != "tcp":
                raise UsageError("--format requires 'tcp' argument")
            i += 1
            o.format_tcp = True
        elif a in ("-n", "--event-number"):
            o.text.numbers = True
        elif a in ("-o", "--output"):
            v = value(a, "a file name")
            if v.startswith("dir="):
                o.output_dir = v[4:]
            else:
                o.output = v
        elif a in ("-p", "--providers"):
            o.providers = True
        elif a in ("-r", "--read-binary"):
            o.read_binary = value(a, "a file name")
        elif a in ("-s", "--stats"):
            o.stats = True
        elif a in ("-t", "--relative-time"):
            o.text.relative = True
        elif a == "--delta-time":
            o.text.delta = True
        elif a == "--schema":
            o.schemas.append(value(a, "a schema file"))
        elif a == "--schema-dir":
            o.schemas.append(value(a, "a directory"))
        elif a == "--raw":
            o.raw = True
        elif a == "--json":
            o.json = True
        elif a == "--rotate-size":
            o.rotate_size = parse_bytes(value(a, "a size"), "rotation size")
            if o.rotate_size < 4096:
                raise UsageError("rotation size too small (minimum 4K)")
        elif a == "--rotate-time":
            v = value(a, "a number of seconds")
            o.rotate_time = parse_uint(v, 1, _U32, f"invalid rotation time: {clip(v)}")
        elif a == "--max-files":
            v = value(a, "a number")
            o.max_files = parse_uint(v, 1, _U32, f"invalid number of files: {clip(v)}")
        elif a == "--max-sessions":
            v = value(a, "a number")
            o.max_sessions = parse_uint(v, 1, MAX_SESSIONS_LIMIT, f"invalid number of sessions: {clip(v)} "
                                        f"(1..{MAX_SESSIONS_LIMIT})")
        elif a == "--nice":
            v = value(a, "a nice value")
            negative = v.startswith("-")
            n = ascii_uint(v[1:] if negative else v, 0, 20 if negative else 19)
            if n is None:
                raise UsageError(f"invalid nice value: {clip(v)} (-20..19)")
            o.nice = -n if negative else n
        elif a == "--no-status":
            o.no_status = True
        elif a in ("--shared", "--private"):
            o.instance = a[2:]
        elif a == "--tcp-default":
            v = value(a, "'all' or 'none'")
            if v not in ("all", "none"):
                raise UsageError("--tcp-default requires 'all' or 'none'")
            o.tcp_default_enabled = v == "all"
        elif a.startswith("--") and a[2:] in _TCP_FILTERS:
            kind = _TCP_FILTERS[a[2:]]
            if kind is str:
                o.tcp_filters[a[2:]].append(value(a, "a value"))
            else:
                v = value(a, "a number")
                o.tcp_filters[a[2:]].append(parse_uint(
                    v, kind.start, kind.stop - 1, f"{a} requires a number: {clip(v)}",
                    f"invalid {a[2:]} {clip(v)} ({kind.start}..{kind.stop - 1})"))
        else:
            raise UsageError(f"unknown argument: {clip(a)} (use --capture or -c)")
        i += 1

    if o.read_binary is not None:
        if o.subscriptions:
            raise UsageError("--read-binary cannot be used with subscribe options")
    elif not o.subscriptions:
        raise UsageError("no subscriptions specified (use --capture or -c)")
    if (o.rotate_size or o.rotate_time) and (not o.output or o.read_binary is not None):
        raise UsageError("--rotate-size/--rotate-time require a live capture with -o FILE")
    if o.max_files and not (o.rotate_size or o.rotate_time):
        raise UsageError("--max-files requires --rotate-size or --rotate-time")
    if o.json and (o.output or o.output_dir) and o.read_binary is None:
        raise UsageError("--json prints to stdout; it cannot be combined with -o "
                         "(convert a capture with `pyelog convert FILE.elog FILE.jsonl`)")
    return o


def read_capture(o: Options, out=sys.stdout, err=sys.stderr) -> int:
    """``-r``: print a capture as text, or rewrite it with ``-o``."""
    # elog's err(3) lines: "fopen(FILE): strerror", gzopen for a .gz name.
    opener = "gzopen" if o.read_binary.endswith(".gz") else "fopen"
    with os_errors_as(f"{opener}({o.read_binary})"):
        reader = ElogReader(o.read_binary)
    with reader:
        if o.providers:
            names = " ".join(terminal_safe(p.name) for p in reader.providers)
            print(f"[Providers] {len(reader.providers)} registered: {names}", file=err)
        decodes = not (o.output_dir is not None or o.output or o.raw)
        if o.providers and decodes:
            # pyelog's own: which schema file decodes each provider, as a
            # provider's name does not say whose schema its events follow
            # (FreeBSD's tcp is not pyelog's Linux tcp).
            schemas = ConsumerSet.with_extra(o.schemas)
            for p in reader.providers:
                path = schemas.source(p.name)
                where = (terminal_safe(str(path)) if path is not None else
                         f"none (payloads print as [UNKNOWN_PROVIDER:{terminal_safe(p.name)}]; see --schema-dir)")
                print(f"[Schema] {terminal_safe(p.name)}: {where}", file=err)
        if o.output_dir is not None:
            # As elog: one capture per session in the directory, named as a
            # live -o dir= capture names them (-f tcp included).
            from pyelog.tools.convert import split
            tcp = ConsumerSet.with_extra(o.schemas).get("tcp") if o.format_tcp else None
            split(iter(reader), o.output_dir, reader.providers, reader.check_complete,
                  reader.header, tcp)
            return 0
        if o.output:
            # elog's quirk, kept: -r with -o rewrites instead of printing.
            # Published at close: a failure leaves no half-written copy.
            with os_errors_as(f"fopen({o.output})"):
                writer = ElogWriter(o.output, reader.providers, publish="close")
            with writer as w:
                for buf, n, _pos in reader.runs():
                    w.write_records(buf, n)
                if not w.started:
                    reader.check_complete()     # nothing to salvage: no copy at all
            # After the copy is kept: it salvages every whole record, under
            # a header that counts them; the shortfall still fails the run.
            reader.check_complete()
            return 0
        decoder = RawPayloads() if o.raw else ConsumerSet.with_extra(o.schemas)
        if o.json:
            out.write(header_line(reader.header, reader.providers) + "\n")
            printer = JsonEventFormatter(reader.provider_names, decoder)
        else:
            printer = TextPrinter(reader.provider_names, decoder, o.text,
                                  (reader.header.capture_start, reader.header.start_utc_us))
        write = out.write
        for buf, n, _pos in reader.runs():      # per run: the C printer's
            for piece in printer.run_lines(buf, n):
                write(piece)
        reader.check_complete()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "gen":
        from pyelog.schema.codegen import gen_main
        return gen_main(argv[1:])
    if argv and argv[0] == "convert":
        from pyelog.tools.convert import main as convert_main
        return convert_main(argv[1:])
    if argv and argv[0] == "selftest":
        from pyelog.tools.selftest import main as selftest_main
        return selftest_main(argv[1:])
    if argv and argv[0] == "summary":
        from pyelog.tools.summary import main as summary_main
        return summary_main(argv[1:])
    if argv and argv[0] == "query":
        from pyelog.tools.query import main as query_main
        return query_main(argv[1:])
    if argv and argv[0] == "export":
        from pyelog.tools.export import main as export_main
        return export_main(argv[1:])
    if argv and argv[0] == "host":
        from pyelog.tools.host import main as host_main
        return host_main(argv[1:])
    if argv and argv[0] == "plot":
        from pyelog.tools.plot import main as plot_main
        return plot_main(argv[1:])
    return run_reporting("pyelog", lambda: _elog(argv, USAGE), expected=(EventlogError,))


def elog_usage() -> str:
    """The usage text as the ``elog`` command prints it: elog(1)'s name and
    only elog(1)'s forms (``pyelog``'s subcommands are not ``elog``'s)."""
    lines = USAGE.splitlines(keepends=True)
    forms = [line.replace("pyelog", "elog", 1) for line in lines[:2]]
    rest = lines[next(i for i, line in enumerate(lines) if not line.strip()):]
    return "".join(forms + rest)


def elog_main(argv: list[str] | None = None) -> int:
    """The ``elog`` command: pyelog's elog(1) personality, so that scripts
    written for FreeBSD's elog run unchanged on Linux: the same options and
    exit statuses, ``usage: elog`` for help, messages prefixed ``elog:``."""
    argv = sys.argv[1:] if argv is None else argv
    return run_reporting("elog", lambda: _elog(argv, elog_usage()), expected=(EventlogError,))


def _elog(argv: list[str], usage: str) -> int:
    """elog(1) proper: print a capture (-r) or run a live one."""
    try:
        o = parse_args(argv)
    except UsageError as e:
        if not str(e):
            sys.stderr.write(usage)
            return 1
        raise
    if o.read_binary is not None:
        return read_capture(o)
    from pyelog.tools.capture import run_capture
    return run_capture(o)

if __name__ == "__main__":
    sys.exit(main())
