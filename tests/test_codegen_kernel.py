# SPDX-License-Identifier: BSD-2-Clause
"""C and Python agree: the generated producer header, compiled by bcc and run in
the kernel, writes payloads that the generated Python consumer decodes back to
the values the BPF program logged.

The core (bpf/eventlog.h) is replaced by a tiny stub with the same contract
that copies each written payload into a BPF array map; everything else is the
real generated header running on the real kernel.
"""
from __future__ import annotations

import ctypes
import os
import socket
import struct
from pathlib import Path

import pytest

from pyelog.schema.codegen import generate_producer
from pyelog.schema.consumer import Consumer
from pyelog.schema.dsl import load_schema

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"

# bcc's own __init__.py (line 749: re.match(b'^.*\.cold(\.\d+)?$', fn)) has an
# invalid escape sequence; Python reports it whenever it compiles that file
# afresh (no cached bytecode). Not pyelog's code: tests/test_codegen.py checks
# that the generated consumer compiles without warnings.
pytestmark = pytest.mark.filterwarnings(r"ignore:invalid escape sequence '\\\.':DeprecationWarning")

SLOTS = 32
DATA_MAX = 1024

# Same contract as the core's eventlog.h (struct eventlog_session's first two
# fields, write/write_gather/scratch), recording instead of publishing.
STUB_CORE = r"""
struct eventlog_session {
	__u32 effective_level;
	__u32 effective_keywords;
};
#define EVENTLOG_LEVEL_NONE 0
#define EVENTLOG_LEVEL_ERROR 1
#define EVENTLOG_LEVEL_WARN 2
#define EVENTLOG_LEVEL_INFO 3
#define EVENTLOG_LEVEL_VERBOSE 4
#define EVENTLOG_LEVEL_TRACE 5
#define EVENTLOG_KEYWORD_SESSION 0x80000000U

struct captured {
	__u32 event_id;
	__u32 level;
	__u32 keywords;
	__u32 len;
	__u8 data[DATA_MAX];
};
struct scratch_area { __u8 bytes[4096]; };
BPF_ARRAY(captured, struct captured, SLOTS);
BPF_ARRAY(next_slot, __u32, 1);
BPF_ARRAY(scratch, struct scratch_area, 1);

static __always_inline void *eventlog_scratch(void)
{
	__u32 zero = 0;
	return scratch.lookup(&zero);
}

static __always_inline int eventlog_event_write_gather(struct eventlog_session *s,
    __u32 event_id, __u32 level, __u32 keywords, const void *head, __u32 head_len,
    const void *tail, __u32 tail_len)
{
	__u32 zero = 0;
	__u32 *next = next_slot.lookup(&zero);
	if (!next)
		return -1;
	__u32 i = *next;
	if (i >= SLOTS)
		return -1;
	*next = i + 1;
	struct captured *c = captured.lookup(&i);
	if (!c)
		return -1;
	if (head_len > DATA_MAX / 2 || tail_len > DATA_MAX / 2)
		return -1;
	c->event_id = event_id;
	c->level = level;
	c->keywords = keywords;
	c->len = head_len + tail_len;
	if (head_len)
		bpf_probe_read_kernel(c->data, head_len, head);
	if (tail_len)
		bpf_probe_read_kernel(c->data + head_len, tail_len, tail);
	return 0;
}

static __always_inline int eventlog_event_write(struct eventlog_session *s, __u32 event_id,
    __u32 level, __u32 keywords, const void *payload, __u32 len)
{
	return eventlog_event_write_gather(s, event_id, level, keywords, payload, len, 0, 0);
}
"""

TEST_PROBE = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
	if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
		return 0;
	__u32 zero = 0;
	__u32 *next = next_slot.lookup(&zero);
	if (!next || *next != 0)
		return 0; /* record one getppid() only */
	struct eventlog_session all = { .effective_level = EVENTLOG_LEVEL_TRACE, .effective_keywords = 0xffffffff };
	struct eventlog_session errors_only = { .effective_level = EVENTLOG_LEVEL_ERROR, .effective_keywords = 0xffffffff };
	struct eventlog_session basic_only = { .effective_level = EVENTLOG_LEVEL_TRACE,
		.effective_keywords = TEST_EVENTLOG_KEYWORD_BASIC };
	struct eventlog_session warn_complex = { .effective_level = EVENTLOG_LEVEL_WARN,
		.effective_keywords = TEST_EVENTLOG_KEYWORD_COMPLEX };
	/* element by element: an initialised array would live in .rodata, which bcc cannot load */
	__u64 values[8];
	for (int k = 0; k < 8; k++)
		values[k] = 11 * (k + 1);

	TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(&all, 42);
	TEST_EVENTLOG_STATUS_EVENT_LOG_ALWAYS(&all, 7, TEST_EVENTLOG_TEST_STATUS_RUNNING);
	TEST_EVENTLOG_FLAGS_EVENT_LOG_ALWAYS(&all, 7, TEST_EVENTLOG_FLAG_FLAG_A | TEST_EVENTLOG_FLAG_FLAG_C);
	TEST_EVENTLOG_COMPLEX_EVENT_LOG_ALWAYS(&all, 0x1122334455667788ULL, 4000000000U,
		TEST_EVENTLOG_TEST_STATUS_FAILED, TEST_EVENTLOG_FLAG_FLAG_B | TEST_EVENTLOG_FLAG_FLAG_D, -5);
	TEST_EVENTLOG_VARLEN_EVENT_LOG_ALWAYS(&all, 1, 3, values);
	TEST_EVENTLOG_VARLEN_EVENT_LOG_ALWAYS(&all, 2, 32, values); /* clamped to 8 */
	TEST_EVENTLOG_SESSION_CREATE_LOG_ALWAYS(&all, 0);
	TEST_EVENTLOG_SESSION_END_LOG_ALWAYS(&all);
	/* _LOG: only the enabled ones write */
	TEST_EVENTLOG_SIMPLE_EVENT_LOG(&all, 43);
	TEST_EVENTLOG_SIMPLE_EVENT_LOG(&errors_only, 44);       /* level too low */
	TEST_EVENTLOG_FLAGS_EVENT_LOG(&basic_only, 8, 1);        /* keyword not enabled */
	TEST_EVENTLOG_SIMPLE_EVENT_LOG((struct eventlog_session *)0, 45); /* no session */
	TEST_EVENTLOG_COMPLEX_EVENT_LOG(&warn_complex, 9, 1, 0, 0, 1); /* WARN >= WARN, 0x8 */
	TEST_EVENTLOG_SESSION_END_LOG(&basic_only);              /* SESSION keyword not enabled */
	return 0;
}
"""

KTYPES_SCHEMA = """\
PROVIDER ktypes
KEYWORD ALL 0x7fffffff
ENUM color 0:RED 1:GREEN
FLAG bits 0x1:B0 0x100:B8

STRUCT ALLTYPES
    u8:uint8_t s8:int8_t c:char u16:uint16_t s16:int16_t sh:short u32:uint32_t s32:int32_t
    lw:lwpid_t u64:uint64_t s64:int64_t ul:u_long sz:size_t up:uintptr_t ip:intptr_t
    ptr:void* p2:void * a4:in_addr_t a4b:struct in_addr a6:in6_addr_t a6b:struct in6_addr
    port:uint16_t:ntohs hx:uint32_t:hex col:uint8_t:enum_color fl:uint16_t:flag_bits
    name:char[5] uc:u_char us:u_short ui:u_int i:int l:long

STRUCT BIG
    tag:uint32_t text:char[300] tail:uint8_t

STRUCT V6LIST
    n:uint32_t addrs:in6_addr_t[n:4]

EVENT ALLTYPES 1 TRACE ALL ALLTYPES
    "a4=%18 a6=%21 port=%22 hx=%23 col=%24 fl=%25 name=%26 ptr=%16 s8=%2 s64=%11"
EVENT BIG 2 INFO ALL BIG "big %1 [%2] %3"
EVENT V6LIST 3 INFO ALL V6LIST "n=%1"
EVENT NOTHING 4 ERROR ALL NONE "Nothing here"
"""

KTYPES_PROBE = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
	if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
		return 0;
	__u32 zero = 0;
	__u32 *next = next_slot.lookup(&zero);
	if (!next || *next != 0)
		return 0;
	struct eventlog_session all = { .effective_level = EVENTLOG_LEVEL_TRACE, .effective_keywords = 0xffffffff };
	/* byte by byte: initialised arrays would live in .rodata, which bcc cannot load */
	__u8 v6a[16], v6b[16], list[64];
	char name[8], text[8];
	__builtin_memset(v6a, 0, 16);
	__builtin_memset(v6b, 0, 16);
	__builtin_memset(list, 0, 64);
	v6a[0] = 0x20; v6a[1] = 0x01; v6a[2] = 0x0d; v6a[3] = 0xb8; v6a[15] = 1;   /* 2001:db8::1 */
	v6b[10] = 0xff; v6b[11] = 0xff; v6b[12] = 127; v6b[15] = 1;                 /* ::ffff:127.0.0.1 */
	list[15] = 1;                                                               /* ::1 */
	list[16] = 0xfe; list[17] = 0x80; list[31] = 2;                             /* fe80::2 */
	for (int k = 0; k < 7; k++)
		name[k] = 'a' + k;   /* "abcdefg": longer than char[5], truncated to 4 + NUL */
	name[7] = 0;
	text[0] = 'h'; text[1] = 'e'; text[2] = 'l'; text[3] = 'l'; text[4] = 'o'; text[5] = 0;

	KTYPES_EVENTLOG_ALLTYPES_LOG_ALWAYS(&all, 200, -3, -4, 60000, -30000, -2, 4000000000U, -100000,
		12345, 0xfedcba9876543210ULL, -9000000000LL, 1ULL << 63, 77, 0xffffffffffffffffULL, -1,
		(void *)0xffff888012345678ULL, 0x10, 0x0100007f, 0x0200000a, v6a, v6b,
		0x8913 /* 5001 in network order */, 0xdeadbeef, 1, 0x101, name, 255, 65535, 4294967295U,
		-2147483647, -1);
	KTYPES_EVENTLOG_BIG_LOG_ALWAYS(&all, 9, text, 0xab);
	KTYPES_EVENTLOG_V6LIST_LOG_ALWAYS(&all, 2, list);
	KTYPES_EVENTLOG_NOTHING_LOG(&all);
	return 0;
}
"""


class Captured(ctypes.Structure):
    _fields_ = [("event_id", ctypes.c_uint32), ("level", ctypes.c_uint32), ("keywords", ctypes.c_uint32),
                ("len", ctypes.c_uint32), ("data", ctypes.c_uint8 * DATA_MAX)]


def run_probe(header: str, probe: str) -> list[tuple[int, int, int, bytes]]:
    """Compile stub core + generated header + probe, trigger it once, return the writes."""
    from bcc import BPF

    text = STUB_CORE + header + probe
    b = BPF(text=text.encode(), cflags=[f"-DTARGET_PID={os.getpid()}", f"-DSLOTS={SLOTS}", f"-DDATA_MAX={DATA_MAX}"])
    try:
        os.getppid()
        out = []
        table = b[b"captured"]
        count = b[b"next_slot"][ctypes.c_uint32(0)].value
        for i in range(min(count, SLOTS)):
            c = table[ctypes.c_uint32(i)]
            out.append((c.event_id, c.level, c.keywords, bytes(c.data[: c.len])))
        return out
    finally:
        b.cleanup()


@pytest.mark.kernel
def test_generated_c_and_python_agree_on_test_schema():
    schema = load_schema(SCHEMAS / "test_eventlog_schema.src")
    consumer = Consumer.from_schema(schema)
    writes = run_probe(generate_producer(schema), TEST_PROBE)

    ids = [w[0] for w in writes]
    assert ids == [0, 1, 2, 3, 4, 4, 0xFFFFFFFE, 0xFFFFFFFF, 0, 3]
    by_index = {i: w for i, w in enumerate(writes)}
    # level and keyword mask travel with each write
    assert [(w[1], w[2]) for w in writes[:4]] == [(3, 1), (3, 1), (4, 2), (2, 8)]
    assert writes[6][1:3] == (3, 0x80000000)

    def check(i, size, fields, text):
        event_id, _, _, payload = by_index[i]
        assert len(payload) == size
        assert consumer.decode(event_id, payload) == fields
        assert consumer.format_payload(event_id, payload) == text

    check(0, 4, {"value": 42}, "Simple event: value=42")
    check(1, 16, {"id": 7, "status": 1}, "[7] Status event: status=RUNNING")
    check(2, 16, {"id": 7, "flags": 5}, "[7] Flags event: flags=FLAG_A|FLAG_C")
    check(3, 24, {"id": 0x1122334455667788, "value": 4000000000, "status": 3, "flags": 10, "counter": -5},
          f"[{0x1122334455667788}] Complex event: value=4000000000 status=FAILED flags=FLAG_B|FLAG_D counter=-5")
    check(4, 16 + 3 * 8, {"id": 1, "count": 3, "values": [11, 22, 33]}, "[1] Varlen event: count=3")
    check(5, 16 + 8 * 8, {"id": 2, "count": 8, "values": [11, 22, 33, 44, 55, 66, 77, 88]},
          "[2] Varlen event: count=8")
    check(6, 1, {"_unused": 0}, "Session created")
    check(7, 0, {}, "Session ended")
    check(8, 4, {"value": 43}, "Simple event: value=43")
    check(9, 24, {"id": 9, "value": 1, "status": 0, "flags": 0, "counter": 1},
          "[9] Complex event: value=1 status=INIT flags=0 counter=1")
    # Padding bytes are zero (the struct is memset before the fields are set).
    assert writes[1][3][9:16] == bytes(7)
    assert writes[3][3][13:16] == bytes(3)


@pytest.mark.kernel
def test_generated_c_and_python_agree_on_every_type(tmp_path):
    path = tmp_path / "ktypes_eventlog_schema.src"
    path.write_text(KTYPES_SCHEMA)
    schema = load_schema(path)
    consumer = Consumer.from_schema(schema)
    writes = run_probe(generate_producer(schema), KTYPES_PROBE)
    assert [w[0] for w in writes] == [1, 2, 3, 4]

    all_id, all_payload = writes[0][0], writes[0][3]
    assert len(all_payload) == schema.structs["ALLTYPES"].size
    assert consumer.decode(all_id, all_payload) == {
        "u8": 200, "s8": -3, "c": -4, "u16": 60000, "s16": -30000, "sh": -2, "u32": 4000000000,
        "s32": -100000, "lw": 12345, "u64": 0xFEDCBA9876543210, "s64": -9000000000, "ul": 1 << 63,
        "sz": 77, "up": 0xFFFFFFFFFFFFFFFF, "ip": -1, "ptr": 0xFFFF888012345678, "p2": 0x10,
        "a4": "127.0.0.1", "a4b": "10.0.0.2", "a6": "2001:db8::1", "a6b": "::ffff:127.0.0.1",
        "port": 5001, "hx": 0xDEADBEEF, "col": 1, "fl": 0x101, "name": "abcd", "uc": 255, "us": 65535,
        "ui": 4294967295, "i": -2147483647, "l": -1,
    }
    assert consumer.format_payload(all_id, all_payload) == (
        "a4=127.0.0.1 a6=::ffff:127.0.0.1 port=5001 hx=0xdeadbeef col=GREEN fl=B0|B8 name=abcd "
        "ptr=0xffff888012345678 s8=-3 s64=-9000000000")

    big_id, big_payload = writes[1][0], writes[1][3]
    assert len(big_payload) == 308  # > 256: built in the scratch area
    assert consumer.format_payload(big_id, big_payload) == "big 9 [hello] 171"
    assert big_payload[4 + 5:304] == bytes(295)  # zero-filled after the string

    v6_id, v6_payload = writes[2][0], writes[2][3]
    assert len(v6_payload) == 16 + 2 * 16  # head aligned to sizeof(in6_addr) = 16
    assert consumer.decode(v6_id, v6_payload) == {"n": 2, "addrs": ["::1", "fe80::2"]}
    assert consumer.format_payload(writes[3][0], writes[3][3]) == "Nothing here"
    assert writes[3][3] == b""
    assert socket.inet_ntop(socket.AF_INET, struct.pack("<I", 0x0100007F)) == "127.0.0.1"


# A provider routing its events through its own writer (e.g. a queue) defines
# TEST_EVENTLOG_WRITE and TEST_EVENTLOG_WRITE_GATHER before the header; here
# the routed writers mark each event's keywords with bit 30 and pass it on.
ROUTED_WRITERS = r"""
#define ROUTED 0x40000000U
#define TEST_EVENTLOG_WRITE(s, id, level, kw, p, len) \
	eventlog_event_write((s), (id), (level), (kw) | ROUTED, (p), (len))
#define TEST_EVENTLOG_WRITE_GATHER(s, id, level, kw, h, hl, t, tl) \
	eventlog_event_write_gather((s), (id), (level), (kw) | ROUTED, (h), (hl), (t), (tl))
"""


@pytest.mark.kernel
def test_generated_c_writes_through_the_providers_writer():
    header = generate_producer(load_schema(SCHEMAS / "test_eventlog_schema.src"))
    direct = run_probe(header, TEST_PROBE)
    routed = run_probe(ROUTED_WRITERS + header, TEST_PROBE)
    assert len(routed) == len(direct) == 10
    assert all(w[2] & 0x40000000 for w in routed)  # every event, varlen ones too
    assert [(i, lv, kw | 0x40000000, p) for i, lv, kw, p in direct] == routed
