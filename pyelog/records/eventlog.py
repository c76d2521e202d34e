# SPDX-License-Identifier: BSD-2-Clause
"""The eventlog(9) framework's vocabulary, shared by every layer.

What FreeBSD's ``sys/eventlog.h`` defines and every part of pyelog speaks:
the levels a subscription or an event names, the keyword bit every session
event carries, the three reserved event ids, the session id of events that
belong to no session, and the limits of one record and of a provider name.
Defined here once; the C side (``bpf/eventlog.h``) has the same values, and
the loader checks them against it when it compiles (``_Static_assert``).
"""
from __future__ import annotations

__all__ = ["LEVEL_NONE", "LEVEL_ERROR", "LEVEL_WARN", "LEVEL_INFO", "LEVEL_VERBOSE", "LEVEL_TRACE",
           "LEVELS", "EVENT_LEVELS", "KEYWORD_SESSION", "SESSION_END_ID", "SESSION_CREATE_ID",
           "DUMP_COMPLETE_ID", "RESERVED_EVENT_IDS", "SESSION_ID_NONE", "EVENT_HEADER_SIZE",
           "MAX_EVENT_LENGTH", "PROVIDER_NAME_MAX"]

#: Levels, most severe first; a subscription passes events whose level is
#: at most its own. NONE (0) is "not subscribed": no event has it.
LEVEL_NONE, LEVEL_ERROR, LEVEL_WARN, LEVEL_INFO, LEVEL_VERBOSE, LEVEL_TRACE = range(6)
LEVELS = {"NONE": LEVEL_NONE, "ERROR": LEVEL_ERROR, "WARN": LEVEL_WARN, "INFO": LEVEL_INFO,
          "VERBOSE": LEVEL_VERBOSE, "TRACE": LEVEL_TRACE}
#: The levels a schema's EVENT may name.
EVENT_LEVELS = {name: value for name, value in LEVELS.items() if value != LEVEL_NONE}

#: Keyword of the framework's own session events (SESSION_CREATE/END,
#: DUMP_COMPLETE); every subscription includes it.
KEYWORD_SESSION = 0x80000000

SESSION_END_ID = 0xFFFFFFFF
SESSION_CREATE_ID = 0xFFFFFFFE
DUMP_COMPLETE_ID = 0xFFFFFFFD
RESERVED_EVENT_IDS = {SESSION_END_ID: "SESSION_END", SESSION_CREATE_ID: "SESSION_CREATE",
                      DUMP_COMPLETE_ID: "DUMP_COMPLETE"}
#: The session id of events of no session (DUMP_COMPLETE).
SESSION_ID_NONE = 0xFFFFFFFFFFFFFFFF

EVENT_HEADER_SIZE = 32          # every record starts with this header
MAX_EVENT_LENGTH = 65535        # event_length is a uint16: header included
PROVIDER_NAME_MAX = 31          # bytes, a char[32] with its NUL
