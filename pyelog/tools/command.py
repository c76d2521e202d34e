# SPDX-License-Identifier: BSD-2-Clause
"""What every pyelog subcommand shares: how it fails, its common options.

A command fails with one line on stderr, exit status 1, no traceback.
Every tool runs its body through :func:`run_reporting`. The failures a
user can cause -- a file that is missing or unreadable, a capture that
breaks elog(5), a schema with an error, options that do not go together
-- become one line naming the tool, then what and where: ``FILE: message``
(the message gives the byte offset, or the line of a JSON capture) or
``SCHEMA:LINE: message``. Whatever the tool wrote before the failure
stays written: stdout is flushed before the line goes to stderr, so the
two interleave in order on a terminal.

Anything else is a bug in pyelog and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Callable, Iterator, NoReturn

from pyelog.records.format import ElogFormatError
from pyelog.records.untrusted import clip, terminal_safe
from pyelog.schema.dsl import SchemaError

__all__ = ["ArgumentParser", "EXIT_FAILURE", "EXIT_INTERRUPTED", "ToolError", "UsageError", "add_schema_option",
           "ascii_uint", "describe", "os_errors_as", "parse_bytes", "parse_size", "report", "run_reporting",
           "uint64_arg"]

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 128 + 2  # the shell's status for a command ended by SIGINT


class ToolError(Exception):
    """A failure a tool has already phrased for the user."""


class UsageError(ToolError):
    """A command-line mistake: reported as one line, exit status 1 (the
    message escaped at once: it may quote any argument)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(terminal_safe(message))


def parse_bytes(text: str, what: str = "buffer size") -> int:
    """A number (C base-0 rules) with an optional K/M/G (x1024^n), blanks allowed around the unit."""
    m = re.fullmatch(r"\s*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise UsageError(f"invalid {what}: {clip(text)}")
    number, unit = m.groups()
    if len(number) > 24:         # past any range, and past int()'s 4300-digit limit
        return 1 << 80
    value = int(number, 0) if not re.fullmatch(r"0[0-7]+", number) else int(number, 8)
    return value << {"": 0, "k": 10, "m": 20, "g": 30}[unit.lower()]


def parse_size(text: str) -> int:
    """elog's -b value: :func:`parse_bytes`, 64 KiB to 1 GiB - 1."""
    value = parse_bytes(text)
    if value < 65536:
        raise UsageError("buffer size too small (minimum 64KB)")
    if value > (1 << 30) - 1:
        raise UsageError("buffer size too large (maximum 1023MB)")
    return value


def describe(exc: BaseException) -> str | None:
    """The one line for a failure the user can cause, or None for a bug."""
    if isinstance(exc, ElogFormatError):
        return f"{exc.path}: {exc.message}" if exc.path else exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    if isinstance(exc, (SchemaError, ToolError)):
        return str(exc)
    return None


@contextlib.contextmanager
def os_errors_as(prefix: str) -> Iterator[None]:
    """Inside, an OSError becomes ``ToolError("PREFIX: strerror")``: the
    lines elog(1) prints through err(3), e.g. ``fopen(cap.elog): Permission
    denied``, where PREFIX names the call and the path as elog does."""
    try:
        yield
    except OSError as e:
        raise ToolError(f"{prefix}: {e.strerror or e}") from None


def report(tool: str, line: str) -> None:
    """Print ``tool: line`` on stderr, after whatever stdout still holds."""
    try:
        sys.stdout.flush()
    except OSError:  # stdout itself is what failed
        pass
    # The line may quote file names and tokens from the command line or a
    # capture: shown escaped, it stays one line and drives no terminal.
    print(f"{tool}: {terminal_safe(line)}", file=sys.stderr)


def run_reporting(tool: str, body: Callable[[], int],
                  expected: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``body`` (a tool's work, returning its exit status) and turn the
    failures a user can cause into one line and :data:`EXIT_FAILURE`.

    ``expected``: further exception types whose text is already phrased
    for the user (e.g. the kernel loader's). A reader that goes away
    (``| head``) ends the tool quietly with status 0; Ctrl-C ends it with
    :data:`EXIT_INTERRUPTED` and no traceback.
    """
    try:
        return body()
    except BrokenPipeError:
        _drop_stdout()
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        line = str(e) if isinstance(e, expected) else describe(e)
        if line is None:
            raise
        report(tool, line)
        return EXIT_FAILURE


def _drop_stdout() -> None:
    # Python flushes stdout again at exit; with the pipe gone that flush
    # would print "Exception ignored ... BrokenPipeError". Point the
    # descriptor at /dev/null so the final flush has somewhere to go.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse for a subcommand, failing as every pyelog command fails:
    one line (``pyelog convert: argument --session: ...; see --help``),
    exit status 1, instead of the usage block and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_FAILURE, f"{self.prog}: {clip(message, 200)}; see --help\n")


def ascii_uint(text: str, lo: int, hi: int) -> int | None:
    """``text`` as an integer from ``lo`` to ``hi`` written in ASCII decimal
    digits, or None. ``str.isdigit`` also accepts '²' or '٣' (which ``int``
    refuses or reads), ``int`` takes signs, blanks and '_', and refuses more
    than 4300 digits: every numeric option is read here instead."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(hi)) or not lo <= int(digits) <= hi:
        return None
    return int(digits)


def uint64_arg(text: str) -> int:
    """An argparse ``type``: a 64-bit unsigned integer (session ids, µs)."""
    value = ascii_uint(text, 0, 2**64 - 1)
    if value is None:
        raise argparse.ArgumentTypeError(f"not an integer from 0 to 2^64-1: {clip(text)!r}")
    return value


def add_schema_option(p: argparse.ArgumentParser) -> None:
    """``--schema FILE|DIR`` (repeatable, into ``schema``): schemas beyond
    the shipped ones, for :meth:`pyelog.schema.consumer.ConsumerSet.with_extra`."""
    p.add_argument("--schema", action="append", default=[], metavar="FILE|DIR",
                   help="extra schema file or directory, for event names and fields (repeatable)")
