# SPDX-License-Identifier: BSD-2-Clause
"""Hostile input (issue 17): every command that reads what someone else wrote.

Properties, each over inputs hypothesis builds from valid seeds
(tests/helpers/fuzz.py says how):

* every reader command (``-r`` in each display mode, ``-r -o``, ``convert``
  to each kind of output, merged, filtered and split, ``summary``, ``plot``)
  on mutated .elog, .elog.gz and JSON-lines captures;
* ``pyelog gen`` (``-h``, ``-c``, ``-M``) on mutated schema files, and
  schema line numbers that only ``\\n`` moves;
* the elog(1) parser on command lines built from its real option set
  (Unicode digits, empty strings, huge and negative numbers, options
  without values), and the subcommands' parsers on theirs.

The contract checked (README, pyelog/tools/command.py): exit status 0 or 1
(2 only for a subcommand's documented usage error), never a traceback nor
an exception out of ``main``, a failure is exactly one line on stderr (at
most :data:`tests.helpers.fuzz.MAX_LINE` characters besides the file names
given), an output a failed command leaves behind still reads back; and, as
separate properties so that one failure does not hide another, nothing
from a file reaches the terminal with a raw control character. Commands
run in this process (``main(argv)``, stdout and stderr captured) for speed.

Budget: ``make test`` runs each property for a fixed, derandomized number
of examples (about a minute in all on two cores once every property
holds; shrinking failures takes a minute or two more). ``PYELOG_FUZZ=N`` selects
the fuzz profile: N times the examples, from a random start, failures kept
in ``.hypothesis/`` and replayed first; ``make fuzz`` sets N=20
(``make fuzz FUZZ=N``).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyelog import cli
from pyelog.schema.codegen import gen_main
from pyelog.tools.command import describe
from tests.helpers.fuzz import (LINE_SEPARATORS, MAX_LINE, Corpus, Mutant, Outcome, check_outcome,
                                check_outputs, mutated_elog, mutated_jsonl, mutated_schema, run_tool,
                                schema_files, write_seed_captures)

# --- budget ---------------------------------------------------------------------------

_FUZZ = os.environ.get("PYELOG_FUZZ", "").strip()
FUZZING = _FUZZ not in ("", "0")
SCALE = (int(_FUZZ) if _FUZZ.isascii() and _FUZZ.isdigit() else 20) if FUZZING else 1
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
          HealthCheck.filter_too_much, HealthCheck.large_base_example]
settings.register_profile("pyelog-test", deadline=None, derandomize=True, database=None,
                          suppress_health_check=_QUIET, print_blob=False)
settings.register_profile("pyelog-fuzz", deadline=None, derandomize=False,
                          suppress_health_check=_QUIET, print_blob=True)
PROFILE = settings.get_profile("pyelog-fuzz" if FUZZING else "pyelog-test")


def budget(examples: int) -> settings:
    """``examples`` under ``make test``, SCALE times as many under ``make fuzz``
    (profiles per test, not loaded globally: other test files keep theirs)."""
    return settings(PROFILE, max_examples=examples * SCALE)


# --- fixtures -------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Seeds:
    """The valid captures mutations start from: paths, and bytes by name."""
    paths: dict[str, Path]
    elog: Corpus
    jsonl: Corpus

    def __repr__(self) -> str:
        return f"Seeds({sorted(self.paths)})"

    def _repr_pretty_(self, p, cycle: bool) -> None:  # hypothesis's pretty printer
        p.text(repr(self))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    """Seed captures (pyelog's writer, the shipped schemas, demo.elog when
    present) and their JSON-lines forms made by ``pyelog convert`` itself."""
    d = tmp_path_factory.mktemp("seeds")
    paths = write_seed_captures(d)
    jsonl = {}
    for name, p in paths.items():
        target = d / f"{name}.jsonl"
        o = run_tool(cli.main, ["convert", str(p), str(target)], [cli.read_capture])
        assert o.status == 0, str(o)
        jsonl[name] = target.read_bytes()
    return Seeds(paths, Corpus({n: p.read_bytes() for n, p in paths.items()}), Corpus(jsonl))


Scratch = Callable[[], Path]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    """A fresh empty directory per hypothesis example (removed after the
    next one is made: disk stays small over thousands of examples)."""
    made: list[Path] = []

    def fresh() -> Path:
        while made:
            shutil.rmtree(made.pop(), ignore_errors=True)
        made.append(Path(tempfile.mkdtemp(dir=tmp_path)))
        return made[-1]
    yield fresh


# --- the reader commands --------------------------------------------------------------

IN, OUT, SEED = "{in}", "{out}", "{seed}"

#: Lines a command documents on stderr besides its one error line.
PROVIDERS_LINE = r"\[Providers\] "
SCHEMA_LINE = r"\[Schema\] "            # -r -p: which schema decodes each provider
PLOT_SESSION_LINE = r"pyelog plot: session \d+$"


@dataclass(frozen=True)
class Reader:
    """One way to read a capture: argv (IN/OUT/SEED placeholders), the
    output it writes (a file name, or a directory for ``--split``), the
    informational stderr lines (regexes) it may print before its error."""
    argv: tuple[str, ...]
    output: str | None = None
    info: tuple[str, ...] = ()

    def run(self, src: Path, workdir: Path, seed: Path) -> tuple[Outcome, Path | None]:
        out = workdir / self.output if self.output else None
        argv = [str(src) if a == IN else str(out) if a == OUT else str(seed) if a == SEED else a
                for a in self.argv]
        return run_tool(cli.main, argv, [cli.read_capture]), out


# ``-r -o X.jsonl`` is not listed: -r -o always writes elog(5), whatever the name.
ELOG_READERS = {
    "r": Reader(("-r", IN)),
    "r-all-display": Reader(("-r", IN, "-e", "-n", "-t", "--delta-time", "-d")),
    "r-providers": Reader(("-r", IN, "-p", "-e"), info=(PROVIDERS_LINE, SCHEMA_LINE)),
    "r-raw": Reader(("-r", IN, "--raw", "-e")),
    "r-json": Reader(("-r", IN, "--json")),
    "r-o-elog": Reader(("-r", IN, "-o", OUT), "out.elog"),
    "r-o-gz": Reader(("-r", IN, "-o", OUT), "out.elog.gz"),
    "convert-elog": Reader(("convert", IN, OUT), "out.elog"),
    "convert-gz": Reader(("convert", IN, OUT), "out.elog.gz"),
    "convert-jsonl": Reader(("convert", IN, OUT), "out.jsonl"),
    "convert-filter": Reader(("convert", "--provider", "tcp", "--event", "OUT", "--event", "100",
                              "--since", "0", IN, OUT), "out.jsonl"),
    "convert-merge": Reader(("convert", IN, SEED, OUT), "out.elog"),
    "convert-split": Reader(("convert", IN, "--split", OUT), "split"),
    "summary": Reader(("summary", IN)),
    "summary-json": Reader(("summary", IN, "--json", "--listeners")),
}
JSON_READERS = {k: ELOG_READERS[k] for k in (
    "convert-elog", "convert-gz", "convert-jsonl", "convert-filter", "convert-merge", "convert-split",
    "summary", "summary-json")}
PLOT = Reader(("plot", IN, "-o", OUT), "out.png", info=(PLOT_SESSION_LINE,))

#: C0 and C1 control characters, DEL: never printed raw (tab and newline aside).
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_read(o: Outcome, out: Path | None, info: tuple[str, ...], paths: tuple[Path, ...]) -> None:
    """The reader commands' contract: :func:`check_outcome` and outputs
    that read back (:func:`check_outputs`)."""
    check_outcome(o, info=info, paths=paths)
    if out is not None:
        check_outputs([out], succeeded=o.status == 0)


def check_escaped(o: Outcome) -> None:
    """Nothing a capture holds reaches the terminal raw (issue 17: a
    process name with escape sequences did): no control character on
    stdout or stderr but newline and tab."""
    bad = CONTROL.search(o.out)
    assert bad is None, f"stdout carries a raw control character {bad.group()!r}\n{o}"
    bad = CONTROL.search(o.err)
    assert bad is None, f"stderr carries a raw control character {bad.group()!r}\n{o}"


def _write(d: Path, m: Mutant) -> Path:
    src = d / f"in{m.suffix}"
    src.write_bytes(m.data)
    return src


@budget(400)
@pytest.mark.parametrize("reader", sorted(ELOG_READERS))
@given(data=st.data())
def test_reader_on_mutated_elog(reader: str, seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """Every reader command on a mutated .elog or .elog.gz keeps the contract."""
    _read_mutant(ELOG_READERS[reader], data.draw(mutated_elog(seeds.elog), label="capture"),
                 seeds, scratch)


@budget(250)
@pytest.mark.parametrize("reader", sorted(JSON_READERS))
@given(data=st.data())
def test_reader_on_mutated_jsonl(reader: str, seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """The commands that read JSON captures (convert, summary) on mutated
    JSON lines: bad UTF-8, deep nesting, wrong types, missing keys, ids
    out of range."""
    _read_mutant(JSON_READERS[reader], data.draw(mutated_jsonl(seeds.jsonl), label="capture"),
                 seeds, scratch)


def _read_mutant(r, m, seeds: Seeds, scratch: Scratch) -> None:
    """Run reader ``r`` on mutant ``m`` in a fresh directory and check the contract."""
    d = scratch()
    o, out = r.run(_write(d, m), d, seeds.paths["multi"])
    check_read(o, out, r.info, (d, seeds.paths["multi"]))


@budget(25)
@pytest.mark.parametrize("kind", ["elog", "jsonl"])
@given(data=st.data())
def test_plot_on_mutated_capture(kind: str, seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """``pyelog plot`` on a mutated capture (fewer examples: matplotlib
    draws in a third of a second). Its ``session N`` line may precede the
    error line; a failed plot leaves no picture, a successful one a PNG."""
    m = data.draw(mutated_elog(seeds.elog) if kind == "elog" else mutated_jsonl(seeds.jsonl),
                  label="capture")
    d = scratch()
    o, out = PLOT.run(_write(d, m), d, seeds.paths["multi"])
    check_read(o, out, PLOT.info, (d,))
    assert out is not None and out.exists() == (o.status == 0), f"a picture left after a failure\n{o}"


#: Every reader, as the escaping property draws them (plot last: it is slow).
ALL_READERS = [(k, ELOG_READERS[k]) for k in sorted(ELOG_READERS)] + [("plot", PLOT)]


@budget(400)
@given(data=st.data())
def test_reader_output_is_escaped(seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """Whatever a capture holds (names, comm strings, payload text), no
    reader prints a raw control character: a separate property, so that
    it does not hide the contract's failures (every seed already has
    control bytes in its payloads)."""
    name, r = data.draw(st.sampled_from(ALL_READERS), label="reader")
    json_input = name != "plot" and name in JSON_READERS and data.draw(st.booleans(), label="json")
    m = data.draw(mutated_jsonl(seeds.jsonl) if json_input else mutated_elog(seeds.elog),
                  label="capture")
    d = scratch()
    o, _ = r.run(_write(d, m), d, seeds.paths["multi"])
    if o.exception is None:     # the contract properties report those
        check_escaped(o)


# --- pyelog gen -----------------------------------------------------------------------

SCHEMAS = schema_files()
GEN_OUTPUT = {"-h": "out.h", "-c": "out.py", "-M": "out.py"}


def check_gen(o: Outcome, src: Path, mode: str, out: Path) -> None:
    """``pyelog gen``'s contract on one schema (README "Departures": "a
    failed generation leaves no output file behind"): exit 0/1 (its usage
    status 2 cannot occur: the command line is well formed), warnings
    ``FILE:LINE: warning: ...``, a failure's last line ``FILE:LINE: ...``,
    every line short (a megabyte token must be cut), no output nor
    temporary file after a failure, and -c/-M code that compiles after
    success. (Line numbers: :func:`test_gen_line_numbers_count_newlines_only`.)"""
    warning = rf"{re.escape(str(src))}:\d+: warning: "
    check_outcome(o, info=(warning,), paths=(src,))
    for line in o.err_lines:
        assert re.match(rf"{re.escape(str(src))}:\d+: ", line), f"not FILE:LINE: {line[:200]!r}\n{o}"
    if o.status:
        assert sorted(p.name for p in src.parent.iterdir()) == [src.name], \
            f"a failed gen left {sorted(p.name for p in src.parent.iterdir())}"
    else:
        assert out.exists(), str(o)
        if mode != "-h":
            compile(out.read_text(encoding="utf-8"), str(out), "exec")


def _schema_mutant(d: Path, data: st.DataObject, control: bool = False) -> Path:
    """A mutated shipped schema written into ``d`` under its own name
    (which must match its PROVIDER line)."""
    path = data.draw(st.sampled_from(SCHEMAS), label="schema")
    m = data.draw(mutated_schema(path.name, Corpus(text=path.read_bytes()), control=control),
                  label="mutant")
    src = d / path.name
    src.write_bytes(m.data)
    return src


@budget(300)
@pytest.mark.parametrize("mode", ["-h", "-c", "-M"])
@given(data=st.data())
def test_gen_on_mutated_schema(mode: str, scratch: Scratch, data: st.DataObject) -> None:
    """``pyelog gen`` on mutated shipped schemas: huge numbers, invalid
    UTF-8, line separators inside lines, very long tokens, dropped and
    swapped lines."""
    src = _schema_mutant(scratch(), data)
    out = src.parent / GEN_OUTPUT[mode]
    o = run_tool(gen_main, [str(src), mode, "-o", str(out)])
    check_gen(o, src, mode, out)


@budget(150)
@given(data=st.data())
def test_gen_messages_are_escaped(scratch: Scratch, data: st.DataObject) -> None:
    """A schema's bytes (escape sequences, NUL, invalid UTF-8) reach the
    terminal escaped in gen's warnings and errors."""
    src = _schema_mutant(scratch(), data, control=True)
    o = run_tool(gen_main, [str(src), "-c", "-o", str(src.parent / "out.py")])
    if o.exception is not None:     # test_gen_on_mutated_schema reports those
        return
    check_escaped(o)


def _directive_lines(lines: list[str]) -> list[int]:
    """Indexes of the lines that start a directive (nothing open before them)."""
    return [i for i, ln in enumerate(lines)
            if re.match(r"(PROVIDER|KEYWORD|ENUM|FLAG|STRUCT|EVENT)\b", ln)]


@budget(100)
@given(data=st.data())
def test_gen_line_numbers_count_newlines_only(scratch: Scratch, data: st.DataObject) -> None:
    """A schema error names its line as ``\\n`` counts them: a form feed, a
    vertical tab, \\x1c-\\x1e, NEL, U+2028/9 or a CR inside an earlier
    comment line changes nothing (str.splitlines() would split there)."""
    path = data.draw(st.sampled_from(SCHEMAS), label="schema")
    lines = path.read_text(encoding="utf-8").split("\n")
    comments = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("//") and len(ln) > 3]
    c = data.draw(st.sampled_from(comments), label="comment line")
    at = data.draw(st.integers(2, len(lines[c])), label="column")
    sep = data.draw(st.sampled_from(LINE_SEPARATORS), label="separator")
    lines[c] = lines[c][:at] + sep + lines[c][at:]
    later = [i for i in _directive_lines(lines) if i > c]
    k = data.draw(st.sampled_from(later), label="bogus line before")
    lines.insert(k, "BOGUS_DIRECTIVE")
    d = scratch()
    src = d / path.name
    src.write_bytes("\n".join(lines).encode("utf-8"))
    o = run_tool(gen_main, [str(src), "-c", "-o", str(d / "out.py")])
    check_outcome(o, info=(rf"{re.escape(str(src))}:\d+: warning: ",), paths=(src,))
    assert o.status == 1 and o.err_lines[-1].startswith(f"{src}:{k + 1}: "), \
        f"expected an error at line {k + 1} (separator {sep!r} in line {c + 1})\n{o}"


# --- command lines --------------------------------------------------------------------

#: Every option spelling the usage text shows, and the TCP filter flags.
ELOG_OPTIONS = sorted(set(re.findall(r"(?<![\w-])--?[a-zA-Z][a-zA-Z-]*", cli.USAGE))
                      | {f"--{k}" for k in cli._TCP_FILTERS})
NUMBERS = ["0", "1", "-1", "42", "65535", "65536", "4294967295", "4294967296", "9" * 5000, "0x10", "010",
           "\u00b2", "\u0663", "\u0661\u0662", "\U0001d7d7", "\u2167", "1.5", "1e3", " 1", "1 ", "+1",
           "64K", "1023M", "1G", "64 K", "0x", "08", "1_000"]
WORDS = ["", "tcp", "test", "nosuch", "INFO", "verbose", "5", "6", "RX|TX", "RX|NOPE", "0xffff",
         "0xZZ", "x" * 31, "x" * 32, "\u00e9" * 16, "dir=", "dir=split", "all", "none", "10.0.0.0/8",
         "::1/200", "\udcff", "-", "--", "=", "tcp=1"]
#: Arguments a terminal would show on more than one line, or not as typed.
HOSTILE = ["a\nb", "\n", "x\r", "\x1b[31mred", "\u2028", "tcp\n"]
#: Files in the working directory of an argv example (all relative: no
#: generated argument may name a path outside it).
FILES = ["cap.elog", "cap.elog.gz", "cap.jsonl", "empty.elog", "dir", "missing.elog", "out.elog",
         "out.elog.gz", "out.jsonl", "out.png", "dir/x.elog", "test_eventlog_schema.src",
         "tcp_eventlog_schema.src"]


def _safe(token: str) -> bool:
    return not token.startswith("/") and ".." not in token


#: Short printable text (no control characters: those are HOSTILE's; no NUL,
#: which no real argv holds).
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6).filter(_safe)


def argvs(options: list[str], max_size: int) -> st.SearchStrategy[list[str]]:
    """Command lines: mostly an option followed by a value (a number, a
    word, a file, any short printable text), sometimes a lone option or
    value, so that options without values and values without options
    occur too."""
    value = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(WORDS), st.sampled_from(FILES), _TEXT)
    option = st.sampled_from(options)
    piece = st.one_of(st.tuples(option, value), st.tuples(option, value),
                      st.tuples(option), st.tuples(value))
    return st.lists(piece, max_size=max_size).map(lambda ps: [a for p in ps for a in p])


@contextlib.contextmanager
def argv_workdir(d: Path, seeds: Seeds) -> Iterator[None]:
    """``d`` as the working directory, holding FILES' inputs."""
    shutil.copy(seeds.paths["schema"], d / "cap.elog")
    (d / "cap.elog.gz").write_bytes(gzip.compress(seeds.elog["schema"], mtime=0))
    (d / "cap.jsonl").write_bytes(seeds.jsonl["schema"])
    (d / "empty.elog").touch()
    (d / "dir").mkdir()
    for f in SCHEMAS[:2]:
        shutil.copy(f, d / f.name)
    with contextlib.chdir(d):
        yield


def parse_elog_argv(argv: list[str]) -> tuple[cli.Options | None, str | None]:
    """``cli.parse_args(argv)``: the options, or the one line pyelog
    reports for the error (``describe``; an exception it does not phrase
    is a bug and propagates). Never runs anything: nothing loads eBPF."""
    try:
        return cli.parse_args(list(argv)), None
    except Exception as e:
        line = describe(e)
        if line is None:
            raise
        if isinstance(e, cli.UsageError) and not line:
            assert {"-h", "--help"} & set(argv), "an empty usage error (the -h text) without -h"
        return None, line


@budget(1500)
@given(argv=argvs(ELOG_OPTIONS, 5))
def test_elog_parser_on_generated_argv(seeds: Seeds, scratch: Scratch, argv: list[str]) -> None:
    """``parse_args`` (elog(1)'s parser) on generated command lines: it
    returns options or raises an error pyelog reports as one line
    (UsageError, or a schema/file error from ``-c P LEVEL KEYWORDS`` with
    ``--schema``); a ValueError from ``int('²')`` is a bug. Only ``-r``
    command lines are then run (no live capture ever starts: nothing
    loads eBPF here), with the reader contract."""
    with argv_workdir(scratch(), seeds):
        o, line = parse_elog_argv(argv)
        if o is None:
            assert line is not None and "\n" not in line, f"a multi-line error: {line!r}"
            assert len(line) <= MAX_LINE or any(len(a) > MAX_LINE // 2 for a in argv), line[:400]
            return
        if o.read_binary is None:
            assert o.subscriptions, "no -r and no subscription, yet accepted"
            return
        out = run_tool(cli.main, argv, [cli.read_capture])
        check_outcome(out, info=(PROVIDERS_LINE, SCHEMA_LINE), paths=argv)


SUBCOMMANDS: dict[str, list[str]] = {
    "convert": ["--split", "--session", "--event", "--provider", "--since", "--until", "--schema", "-h"],
    "summary": ["--json", "--listeners", "--schema", "-h"],
    "plot": ["--session", "--from", "--to", "-o", "--output", "--schema", "-h"],
    "gen": ["-h", "-c", "-M", "-o", "-v", "outdir=dir", "outdir=", "--help", "-x"],
}
#: How each subcommand's parser reports a usage error: argparse exits 2
#: with its usage lines and ``PROG: error: ...``; ``pyelog gen`` exits 2
#: with one line ending ``(see pyelog gen --help)`` (its usage text).
GEN_WARNING = r"[^:\n]+:\d+: warning: "
USAGE_LINE = {"convert": r"^pyelog convert: error: ", "summary": r"^pyelog summary: error: ",
              "plot": r"^pyelog plot: error: ", "gen": r"\A[^\n]*\(see pyelog gen --help\)\n\Z"}


@budget(150)
@pytest.mark.parametrize("sub", sorted(SUBCOMMANDS))
@given(data=st.data())
def test_subcommand_on_generated_argv(sub: str, seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """``pyelog convert/summary/plot/gen`` on generated command lines over
    real, missing, empty and directory paths: exit 0 or 1, or 2 for a
    usage error in the parser's documented form; otherwise one line."""
    argv = data.draw(argvs(SUBCOMMANDS[sub], 4), label="argv")
    with argv_workdir(scratch(), seeds):
        o = run_tool(cli.main, [sub, *argv], [cli.read_capture])
        check_outcome(o, usage_status=2, usage_line=USAGE_LINE[sub], paths=argv,
                      info=(PLOT_SESSION_LINE, GEN_WARNING))


@budget(150)
@given(data=st.data())
def test_argument_echo_stays_one_line(seeds: Seeds, scratch: Scratch, data: st.DataObject) -> None:
    """An argument holding a newline (or CR, an escape sequence, U+2028)
    that an error quotes still makes one line: every parser, a separate
    property so that it does not hide the others' failures."""
    sub = data.draw(st.sampled_from(["elog", *sorted(SUBCOMMANDS)]), label="command")
    options = ELOG_OPTIONS if sub == "elog" else SUBCOMMANDS[sub]
    argv = data.draw(argvs(options, 2), label="argv")
    at = data.draw(st.integers(0, len(argv)), label="at")
    option = data.draw(st.one_of(st.just(()), st.tuples(st.sampled_from(options))), label="option")
    argv[at:at] = [*option, data.draw(st.sampled_from(HOSTILE), label="hostile")]
    with argv_workdir(scratch(), seeds):
        if sub == "elog":
            o, line = parse_elog_argv(argv)
            if o is None:
                assert line is not None and "\n" not in line, f"a multi-line error: {line!r}"
            return
        out = run_tool(cli.main, [sub, *argv], [cli.read_capture])
        if out.exception is None:
            check_outcome(out, usage_status=2, usage_line=USAGE_LINE[sub], paths=argv,
                          info=(PLOT_SESSION_LINE, GEN_WARNING))
