# SPDX-License-Identifier: BSD-2-Clause
"""Text from untrusted sources, made safe to show a person.

Captures carry strings that any process chose (``prctl(PR_SET_NAME)``
names), and schemas, captures and command lines can be hostile. Whatever of
them reaches a terminal or an error line goes through here: control
characters, escape sequences, bidi overrides and undecodable bytes are
shown escaped (:func:`terminal_safe`), and an echoed token is cut
(:func:`clip`) so that one huge token cannot make a megabyte-long line.
"""
from __future__ import annotations

CLIP_LIMIT = 48


def terminal_safe(text: str) -> str:
    """``text`` with every character that is not printable (``\\x1b``,
    ``\\u202e``, a surrogate escape) shown as ``\\xNN``/``\\uNNNN``;
    printable text, the normal case, comes back as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


def clip(text: str, limit: int = CLIP_LIMIT) -> str:
    """``text`` as an error message may echo it: at most ``limit``
    characters (then ``...``), made :func:`terminal_safe`."""
    return terminal_safe(text if len(text) <= limit else text[:limit] + "...")
