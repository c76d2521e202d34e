# SPDX-License-Identifier: BSD-2-Clause
"""Code generation: elog(1) golden texts, decoding tolerance, producer header and `pyelog gen`."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyelog.schema import runtime
from pyelog.schema.codegen import gen_main, generate_aggregate, generate_consumer, generate_producer
from pyelog.schema.consumer import Consumer, exec_generated
from pyelog.schema.dsl import load_schema, parse_schema

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TEST_SCHEMA = SCHEMAS / "test_eventlog_schema.src"
# A large schema in FreeBSD's style (test data, not shipped).
FREEBSD_TCP = Path(__file__).resolve().parent / "data" / "freebsd_tcp" / "tcp_eventlog_schema.src"


@pytest.fixture(scope="module")
def test_consumer() -> Consumer:
    return Consumer.from_path(TEST_SCHEMA)


def consumer_for(text: str, provider: str = "foo") -> Consumer:
    return Consumer.from_schema(parse_schema(text, f"/x/{provider}_eventlog_schema.src", None))


# ---- golden texts: exactly what FreeBSD's elog(1) prints for the test schema --------------

GOLDEN = [
    (0, struct.pack("<I", 42), "Simple event: value=42"),
    (0, struct.pack("<I", 4294967295), "Simple event: value=4294967295"),
    (1, struct.pack("<QB7x", 7, 1), "[7] Status event: status=RUNNING"),
    (1, struct.pack("<QB7x", 7, 0), "[7] Status event: status=INIT"),
    (1, struct.pack("<QB7x", 7, 9), "[7] Status event: status=9"),                 # unknown enum: decimal
    (2, struct.pack("<QI4x", 7, 0x5), "[7] Flags event: flags=FLAG_A|FLAG_C"),
    (2, struct.pack("<QI4x", 7, 0xF), "[7] Flags event: flags=FLAG_A|FLAG_B|FLAG_C|FLAG_D"),
    (2, struct.pack("<QI4x", 7, 0), "[7] Flags event: flags=0"),                    # none set: 0
    (2, struct.pack("<QI4x", 7, 0x30), "[7] Flags event: flags=48"),                # no known bit: decimal
    (2, struct.pack("<QI4x", 7, 0x32), "[7] Flags event: flags=FLAG_B"),            # unknown bits dropped
    (3, struct.pack("<QIB3xIi", 18446744073709551615, 100, 2, 0x9, -5),
     "[18446744073709551615] Complex event: value=100 status=SUCCESS flags=FLAG_A|FLAG_D counter=-5"),
    (4, struct.pack("<QB7x3Q", 1, 3, 10, 20, 30), "[1] Varlen event: count=3"),
    (4, struct.pack("<QB7x", 5, 0), "[5] Varlen event: count=0"),
    (0xFFFFFFFE, b"", "Session created"),
    (0xFFFFFFFE, b"\x00", "Session created"),
    (0xFFFFFFFF, b"", "Session ended"),
    (0xFFFFFFFD, b"", "Dump complete"),
    (5, b"", "[UNKNOWN_EVENT_ID:5]"),
    (0xFFFFFFFC, b"abc", "[UNKNOWN_EVENT_ID:4294967292]"),
]


@pytest.mark.parametrize("event_id, payload, text", GOLDEN)
def test_golden_text(test_consumer, event_id, payload, text):
    assert test_consumer.format_payload(event_id, payload) == text


def test_event_names_and_keywords(test_consumer):
    assert test_consumer.event_name(3) == "COMPLEX_EVENT"
    assert test_consumer.event_name(0xFFFFFFFE) == "SESSION_CREATE"
    assert test_consumer.event_name(0xFFFFFFFD) == "DUMP_COMPLETE"
    assert test_consumer.event_name(99) is None
    assert test_consumer.keywords == {"BASIC": 1, "ADVANCED": 2, "COMPLEX": 8, "SESSION": 0x80000000}
    assert test_consumer.keyword_from_string("complex") == 8
    assert test_consumer.keyword_from_string("Session") == 0x80000000
    assert test_consumer.keyword_from_string("COMPLE") == 0
    assert test_consumer.module.enum_test_status_to_string(2) == "SUCCESS"
    assert test_consumer.module.enum_test_status_to_string(7) is None
    assert test_consumer.module.flag_test_flags_to_string(0) == ""
    assert test_consumer.module.flag_test_flags_to_string(3) == "FLAG_A|FLAG_B"


def test_decode_values(test_consumer):
    assert test_consumer.decode(3, struct.pack("<QIB3xIi", 1, 2, 3, 4, -5)) == {
        "id": 1, "value": 2, "status": 3, "flags": 4, "counter": -5}
    assert test_consumer.decode(4, struct.pack("<QB7x2Q", 1, 2, 10, 2**64 - 1)) == {
        "id": 1, "count": 2, "values": [10, 2**64 - 1]}
    assert test_consumer.decode(0xFFFFFFFF, b"") == {}
    assert test_consumer.decode(0xFFFFFFFE, b"") == {}
    assert test_consumer.decode(77, b"") is None


# ---- decoding tolerance -----------------------------------------------------------------

def test_short_payload_reads_missing_tail_as_zero(test_consumer):
    full = struct.pack("<QIB3xIi", 7, 100, 1, 1, -5)
    assert test_consumer.format_payload(3, full[:12]) == "[7] Complex event: value=100 status=INIT flags=0 counter=0"
    assert test_consumer.format_payload(3, b"") == "[0] Complex event: value=0 status=INIT flags=0 counter=0"
    assert test_consumer.decode(3, full[:8]) == {"id": 7, "value": 0, "status": 0, "flags": 0, "counter": 0}
    assert test_consumer.format_payload(0, b"\x2a") == "Simple event: value=42"


def test_extra_bytes_ignored(test_consumer):
    assert test_consumer.format_payload(0, struct.pack("<I", 42) + b"\xff" * 20) == "Simple event: value=42"
    assert test_consumer.decode(4, struct.pack("<QB7x1Q", 1, 1, 5) + b"junk") == {"id": 1, "count": 1, "values": [5]}


def test_varlen_count_above_max_reported(test_consumer):
    payload = struct.pack("<QB7x", 1, 9) + bytes(9 * 8)
    assert test_consumer.format_payload(4, payload) == "[1] Varlen event: count=9 [BAD_VARLEN:values count=9 max=8]"
    d = test_consumer.decode(4, payload)
    assert d["values"] == [] and d["_bad_varlen"] == "[BAD_VARLEN:values count=9 max=8]"


def test_varlen_count_past_payload_end_reported(test_consumer):
    payload = struct.pack("<QB7x2Q", 1, 5, 1, 2)
    assert test_consumer.format_payload(4, payload) == \
        "[1] Varlen event: count=5 [BAD_VARLEN:values count=5 payload_bytes=16]"
    assert test_consumer.decode(4, payload)["_bad_varlen"] == "[BAD_VARLEN:values count=5 payload_bytes=16]"
    assert test_consumer.format_payload(4, payload[:10]) == \
        "[1] Varlen event: count=5 [BAD_VARLEN:values count=5 payload_bytes=0]"


def test_payload_may_be_bytearray_or_memoryview(test_consumer):
    p = struct.pack("<QB7x1Q", 3, 1, 9)
    for view in (bytearray(p), memoryview(p), memoryview(p)[:4]):
        assert test_consumer.format_payload(4, view).startswith("[")
        assert test_consumer.decode(4, view)["id"] in (3, 3 & 0xFFFFFFFF)


ALL_TYPES = """\
PROVIDER foo
KEYWORD A 1
ENUM e 0:ZERO 1:ONE
FLAG f 0x1:F0 0x2:F1
STRUCT ALL
    a:uint8_t b:int8_t c:char d:uint16_t:ntohs e:int16_t f:uint32_t:hex g:int32_t h:uint64_t:hex
    i:int64_t j:void* k:in_addr_t l:struct in6_addr m:char[7] n:uint8_t:enum_e o:uint16_t:flag_f
    p:uintptr_t q:intptr_t r:lwpid_t
STRUCT V n:uint16_t v:in_addr_t[n:3]
STRUCT EMPTY
EVENT ALL 1 INFO A ALL "%1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 [%13] %14 %15 %16 %17 %18"
EVENT OLD 2 INFO A ALL "%u|%d|%c|%hu|%hd|%#x|%-5d|%lx|%ld|%p|%s|%s|%-8s|%s|%s|%lu|%ld|%u|%u|%%|%"
EVENT V 3 INFO A V "n=%1"
EVENT EMPTY 4 INFO A EMPTY "HPTS entry created"
EVENT LIT 5 INFO A NONE "100%% literal"
EVENT PCT 6 INFO A ALL "%%1 is %1 at 50%"
"""


@pytest.fixture(scope="module")
def all_types() -> Consumer:
    return consumer_for(ALL_TYPES)


def all_types_payload() -> bytes:
    import socket
    return struct.pack(
        "<BbbHhIiQqQ4s16s7sBHQqI",
        255, -1, 65, 0x8913, -2, 0xBEEF, -3, 0xABCDEF0123, -4, 0xFFFF800012340000,
        socket.inet_pton(socket.AF_INET, "10.1.2.3"), socket.inet_pton(socket.AF_INET6, "fe80::1"),
        b"eth0\0xx", 1, 3, 2**64 - 1, -9, 4000000000)


def test_struct_format_has_c_offsets(all_types):
    s = parse_schema(ALL_TYPES, "/x/foo_eventlog_schema.src", None).structs["ALL"]
    assert all_types.module._STRUCT_ALL.size == s.size == 96
    assert [f.offset for f in s.fields] == [0, 1, 2, 4, 6, 8, 12, 16, 24, 32, 40, 44, 60, 67, 68, 72, 80, 88]


def test_numbered_placeholders_render_like_freebsd(all_types):
    payload = struct.pack("<BbbxHhIiQqQ4s16s7sBHxxQqI4x", *struct.unpack(
        "<BbbHhIiQqQ4s16s7sBHQqI", all_types_payload()))
    assert len(payload) == 96
    assert all_types.format_payload(1, payload) == (
        "255 -1 65 5001 -2 0xbeef -3 0xabcdef0123 -4 0xffff800012340000 10.1.2.3 fe80::1 [eth0] ONE F0|F1 "
        "18446744073709551615 -9 4000000000")
    assert all_types.decode(1, payload) == {
        "a": 255, "b": -1, "c": 65, "d": 5001, "e": -2, "f": 0xBEEF, "g": -3, "h": 0xABCDEF0123, "i": -4,
        "j": 0xFFFF800012340000, "k": "10.1.2.3", "l": "fe80::1", "m": "eth0", "n": 1, "o": 3,
        "p": 2**64 - 1, "q": -9, "r": 4000000000}


def test_old_style_printf_conversions(all_types):
    payload = struct.pack("<BbbxHhIiQqQ4s16s7sBHxxQqI4x", *struct.unpack(
        "<BbbHhIiQqQ4s16s7sBHQqI", all_types_payload()))
    # %u of uint8 255; %d of int8 -1; %c of 'A'; %hu of ntohs field (swapped); %hd of -2;
    # %#x; %-5d (no %<digits>: that would be a %N placeholder, as in FreeBSD); %lx; %ld; %p; %s address/address/string(-8 wide)/enum/flag; %lu; %ld; %u of
    # lwpid 4e9; one conversion too many prints 0; %% is '%'; a lone trailing % stays.
    assert all_types.format_payload(2, payload) == (
        "255|-1|A|5001|-2|0xbeef|-3   |abcdef0123|-4|0xffff800012340000|10.1.2.3|fe80::1|eth0    |ONE|F0|F1"
        "|18446744073709551615|-9|4000000000|0|%|%")


def test_printf_casts_like_c():
    c = consumer_for("PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint32_t b:int32_t c:uint64_t\n\n"
                     "EVENT E 1 INFO A S \"%d %u %hhu\"\nEVENT F 2 INFO A S \"%x %x %d\"\n")
    p = struct.pack("<IiQ", 0xFFFFFFFF, -1, 0x1FF)
    assert c.format_payload(1, p) == "-1 4294967295 255"
    assert c.format_payload(2, p) == "ffffffff ffffffff 511"


def test_literal_and_percent_handling(all_types):
    assert all_types.format_payload(4, b"") == "HPTS entry created"
    assert all_types.format_payload(4, b"extra") == "HPTS entry created"
    assert all_types.format_payload(5, b"") == "100% literal"
    assert all_types.format_payload(6, bytes([3]) + bytes(95)) == "%1 is 3 at 50%"
    assert all_types.decode(4, b"") == {}


def test_varlen_address_elements(all_types):
    import socket
    p = struct.pack("<H2x", 2) + socket.inet_pton(socket.AF_INET, "1.2.3.4") + socket.inet_pton(
        socket.AF_INET, "5.6.7.8")
    assert all_types.decode(3, p) == {"n": 2, "v": ["1.2.3.4", "5.6.7.8"]}
    assert all_types.format_payload(3, p) == "n=2"
    assert all_types.format_payload(3, struct.pack("<H2x", 4)) == "n=4 [BAD_VARLEN:v count=4 max=3]"


def test_hex_of_signed_and_ntohs_of_u32():
    c = consumer_for("PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:int8_t:hex b:int64_t:hex c:uint32_t:ntohs\n\n"
                     "EVENT E 1 INFO A S \"%1 %2 %3\"\n")
    assert c.format_payload(1, struct.pack("<b7xqI4x", -1, -1, 0x12345678)) == \
        "0xffffffff 0xffffffffffffffff 30806"


SCHEMA_PATHS = [TEST_SCHEMA, FREEBSD_TCP]


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=lambda p: p.parent.name + "/" + p.name)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_bytes_never_raise(path, data):
    consumer = _consumer_cache(path)
    event_id = data.draw(st.sampled_from(sorted(consumer.events) + [0xFFFFFFFD, 12345]))
    payload = data.draw(st.binary(max_size=200))
    text = consumer.format_payload(event_id, payload)
    assert isinstance(text, str)
    decoded = consumer.decode(event_id, payload)
    assert decoded is None or isinstance(decoded, dict)


@settings(max_examples=300, deadline=None)
@given(event_id=st.integers(0, 6), payload=st.binary(max_size=160))
def test_random_bytes_never_raise_all_types(all_types, event_id, payload):
    assert isinstance(all_types.format_payload(event_id, payload), str)
    all_types.decode(event_id, payload)


_CACHE: dict[Path, Consumer] = {}


def _consumer_cache(path: Path) -> Consumer:
    if path not in _CACHE:
        _CACHE[path] = Consumer.from_path(path)
    return _CACHE[path]


# ---- generated source: the schema's part only, clean Python --------------------------------

SHIPPED_SCHEMAS = sorted({FREEBSD_TCP, *SCHEMAS.glob("*_eventlog_schema.src")})


@pytest.mark.parametrize("path", [*SHIPPED_SCHEMAS, None],
                         ids=lambda p: "ALL_TYPES" if p is None else p.parent.name + "/" + p.name)
def test_generated_source_compiles_without_warnings(path):
    """No invalid escape sequences or other compile-time warnings in what `pyelog gen -c/-M` print."""
    schema = parse_schema(ALL_TYPES, "/x/foo_eventlog_schema.src", None) if path is None else load_schema(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(generate_consumer(schema), "<consumer>", "exec")
        compile(generate_aggregate([schema]), "<aggregate>", "exec")


def test_backslashes_in_formats_are_text_not_escapes():
    schema = parse_schema('PROVIDER foo\nKEYWORD A 1\nSTRUCT S v:uint32_t\n\n'
                          'EVENT E 1 INFO A S "C:\\dir\\.cold\\d %1"\nEVENT F 2 INFO A S "\\. %u"\n',
                          "/x/foo_eventlog_schema.src", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = exec_generated(generate_consumer(schema), "backslashes")
    assert module.format_payload(1, struct.pack("<I", 3)) == "C:\\dir\\.cold\\d 3"
    assert module.format_payload(2, struct.pack("<I", 4)) == "\\. 4"


def test_generated_consumer_imports_the_fixed_part():
    source = generate_consumer(load_schema(TEST_SCHEMA))
    assert "\nfrom pyelog.schema.runtime import (\n" in source
    for helper in ("def _cstr", "def _ntop4", "def _bad_varlen", "def format_payload", "def decode",
                   "def formatter", "def event_id_to_name", "def keyword_from_string", "def enum_", "def flag_",
                   "import socket", "= 0xFFFFFFFD"):
        assert helper not in source, helper
    # What stays: the tables, the struct formats and a formatter and a decoder per event.
    for schema_part in ("PROVIDER = 'test'", "EVENTS = {", "ENUMS = {", "FLAGS = {",
                        "_STRUCT_COMPLEX_EVENT = _struct.Struct('<QIB3xIi')",
                        "_unpack_COMPLEX_EVENT = _STRUCT_COMPLEX_EVENT.unpack_from",
                        "def _format_COMPLEX_EVENT(payload):", "def _decode_COMPLEX_EVENT(payload):"):
        assert schema_part in source, schema_part


def test_generated_consumer_public_names(test_consumer):
    m = test_consumer.module
    assert (m.SESSION_END_ID, m.SESSION_CREATE_ID, m.DUMP_COMPLETE_ID) == (0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD)
    assert m.event_id_to_name(0xFFFFFFFD) == "DUMP_COMPLETE" and m.event_id_to_name(1) == "STATUS_EVENT"
    assert m.EVENT_NAMES[0xFFFFFFFE] == "SESSION_CREATE"
    assert m.enum_test_status_to_string.__name__ == "enum_test_status_to_string"
    assert m.flag_test_flags_to_string.__doc__
    assert m.formatter(3) is m._format_COMPLEX_EVENT
    assert m.formatter(99)(b"x") == "[UNKNOWN_EVENT_ID:99]"
    assert m.formatter(0xFFFFFFFD)(b"") == "Dump complete"
    assert m.decode(0xFFFFFFFD, b"") == {} and m.decode(0xFFFFFFFF, b"") is not m.decode(0xFFFFFFFF, b"")


def test_schema_defining_dump_complete_keeps_its_own_format():
    c = consumer_for('PROVIDER foo\nKEYWORD A 1\nSTRUCT D n:uint32_t\n\n'
                     'EVENT DUMP_COMPLETE 0xFFFFFFFD INFO A D "dumped %1 sessions"\n')
    assert c.format_payload(0xFFFFFFFD, struct.pack("<I", 5)) == "dumped 5 sessions"
    assert c.decode(0xFFFFFFFD, struct.pack("<I", 5)) == {"n": 5}


def test_runtime_helpers():
    assert runtime.cstr(b"eth0\0junk") == "eth0" and runtime.cstr(b"\xffab") == "\ufffdab"
    assert runtime.ntop4(bytes([10, 0, 0, 1])) == "10.0.0.1"
    assert runtime.ntop6(bytes(15) + b"\x01") == "::1"
    assert runtime.bad_varlen("v", 9, 8, 100) == "[BAD_VARLEN:v count=9 max=8]"
    assert runtime.bad_varlen("v", 3, 8, -4) == "[BAD_VARLEN:v count=3 payload_bytes=0]"
    to_string, text = runtime.enum_functions("e", {1: "ONE", 0xFFFFFFFF: "ALL"})
    assert (to_string(1), to_string(2), text(-1), text(7)) == ("ONE", None, "ALL", "7")
    to_string, text, cache = runtime.flag_functions("f", ((1, "A"), (4, "C")))
    assert (to_string(5), to_string(2), text(5), text(2), text(-1)) == ("A|C", "", "A|C", "2", "A|C")
    assert cache == {5: "A|C", 2: "2", -1: "A|C"}
    for value in range(runtime.FLAG_TEXT_CACHE_MAX + 10):
        text(value)
    assert len(cache) == runtime.FLAG_TEXT_CACHE_MAX
    kw = runtime.keyword_from_string_function({"RX": 1, "SESSION": 0x80000000})
    assert (kw("rx"), kw("Session"), kw("R")) == (1, 0x80000000, 0)


# ---- producer header ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def producer() -> str:
    return generate_producer(load_schema(TEST_SCHEMA))


def test_producer_names_follow_freebsd(producer):
    for line in [
        "#ifndef _TEST_EVENTLOG_H_",
        "#define TEST_EVENTLOG_KEYWORD_COMPLEX 0x00000008U",
        "#define TEST_EVENTLOG_KEYWORD_SESSION 0x80000000U",
        "#define TEST_EVENTLOG_TEST_STATUS_RUNNING 1U",
        "#define TEST_EVENTLOG_FLAG_FLAG_C 0x4U",
        "struct test_eventlog_complex_event {",
        "#define TEST_EVENTLOG_VARLEN_EVENT_VALUES_MAX 8",
        "#define TEST_EVENTLOG_SIMPLE_EVENT_ID 0U",
        "#define TEST_EVENTLOG_SESSION_CREATE_ID 4294967294U",
        "#define TEST_EVENTLOG_SESSION_END_ID 4294967295U",
        '#define TEST_EVENTLOG_STATUS_EVENT_FORMAT "[%lu] Status event: status=%s"',
        "#define TEST_EVENTLOG_FLAGS_EVENT_ENABLED(session) ((session) && (session)->effective_level >= "
        "TEST_EVENTLOG_FLAGS_EVENT_LEVEL && ((session)->effective_keywords & TEST_EVENTLOG_FLAGS_EVENT_KEYWORDS))",
        "} __attribute__((aligned(8)));",
        "_Static_assert(sizeof(struct test_eventlog_complex_event) == 24, "
        '"test_eventlog_complex_event: size differs from pyelog");',
    ]:
        assert line in producer.splitlines(), line
    assert "#include" not in producer  # the BPF program includes the core eventlog.h first
    for event in ["SIMPLE_EVENT", "STATUS_EVENT", "FLAGS_EVENT", "COMPLEX_EVENT", "VARLEN_EVENT",
                  "SESSION_CREATE", "SESSION_END"]:
        for suffix in ["_ENABLED(", "_LOG_ALWAYS(", "_LOG(", "_FORMAT ", "_LEVEL ", "_KEYWORDS "]:
            assert f"TEST_EVENTLOG_{event}{suffix}" in producer


def test_producer_macros(producer):
    assert "#define TEST_EVENTLOG_SESSION_END_LOG_ALWAYS(_s) do {" in producer
    assert "TEST_EVENTLOG_SESSION_END_KEYWORDS, 0, 0);" in producer
    assert ("#define TEST_EVENTLOG_SIMPLE_EVENT_LOG(_s, _f_value) do { if (TEST_EVENTLOG_SIMPLE_EVENT_ENABLED(_s)) "
            "TEST_EVENTLOG_SIMPLE_EVENT_LOG_ALWAYS(_s, _f_value); } while (0)") in producer
    assert "__builtin_memset(__test_eventlog_p, 0, sizeof(*__test_eventlog_p));" in producer
    assert "TEST_EVENTLOG_WRITE_GATHER((_s)," in producer
    assert "__test_eventlog_p->count = (__u8)(__test_eventlog_n);" in producer


def _macro_bodies(header: str) -> dict[str, str]:
    """{macro name: its definition with continuations joined} of the _LOG/_LOG_ALWAYS macros."""
    text = header.replace("\\\n", " ")
    return {m.group(1): m.group(0) for m in re.finditer(r"^#define (\w+_LOG(?:_ALWAYS)?)\(.*$", text, re.M)}


def test_producer_writes_through_overridable_write_macro(producer):
    lines = producer.splitlines()
    # Defined as the core's writers unless the includer defined them first.
    for name, default in [("TEST_EVENTLOG_WRITE", "eventlog_event_write"),
                          ("TEST_EVENTLOG_WRITE_GATHER", "eventlog_event_write_gather")]:
        i = lines.index(f"#ifndef {name}")
        assert lines[i + 1:i + 3] == [f"#define {name} {default}", "#endif"]
        assert i < lines.index("#define TEST_EVENTLOG_SIMPLE_EVENT_ID 0U")
    banner = producer[:producer.index("*/")]
    assert "by defining TEST_EVENTLOG_WRITE first" in banner
    # Every _LOG_ALWAYS writes through the macro, never the core function by name;
    # every _LOG goes through its _LOG_ALWAYS.
    bodies = _macro_bodies(producer)
    always = {k: v for k, v in bodies.items() if k.endswith("_LOG_ALWAYS")}
    assert len(always) == 7 and len(bodies) == 14
    for name, body in always.items():
        writer = "TEST_EVENTLOG_WRITE_GATHER((_s)," if name.startswith("TEST_EVENTLOG_VARLEN_EVENT") \
            else "TEST_EVENTLOG_WRITE((_s),"
        assert body.count(writer) == 1, name
        assert "eventlog_event_write" not in body, name
    for name, body in bodies.items():
        if name.endswith("_LOG"):
            assert f"{name}_ALWAYS(" in body and "eventlog_event_write" not in body


_CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def preprocess(text: str) -> subprocess.CompletedProcess:
    """The C preprocessor's output for ``text`` (a host compiler's ``-E``: macros only)."""
    return subprocess.run([_CC, "-E", "-P", "-x", "c", "-"], input=text, capture_output=True, text=True)


def test_producer_write_macro_can_be_overridden():
    """A provider routing its events elsewhere (e.g. a queue) defines PREFIX_WRITE before the header."""
    h = generate_producer(parse_schema("PROVIDER foo\nKEYWORD A 1\nSTRUCT S v:uint32_t\n\n"
                                       "EVENT E 1 INFO A S \"%1\"\n", "/x/foo_eventlog_schema.src", None))
    assert "#ifndef FOO_EVENTLOG_WRITE\n#define FOO_EVENTLOG_WRITE eventlog_event_write\n#endif\n" in h
    assert "WRITE_GATHER" not in h  # no varlen event: one writer
    assert ("\tFOO_EVENTLOG_WRITE((_s), FOO_EVENTLOG_E_ID, FOO_EVENTLOG_E_LEVEL, FOO_EVENTLOG_E_KEYWORDS, "
            "__foo_eventlog_p, sizeof(*__foo_eventlog_p)); \\") in h
    if _CC is None:
        pytest.skip("no C compiler to run the preprocessor (the string checks passed)")
    use = "\nvoid f(void *s) { FOO_EVENTLOG_E_LOG(s, 7); FOO_EVENTLOG_SESSION_END_LOG_ALWAYS(s); }\n"
    default = preprocess(h + use).stdout
    assert default.count("eventlog_event_write((s)") == 2 and "my_queue_add" not in default
    routed = preprocess("#define FOO_EVENTLOG_WRITE my_queue_add\n" + h + use).stdout
    assert routed.count("my_queue_add((s)") == 2 and "eventlog_event_write" not in routed


def test_producer_reserve_macro_fills_fixed_payloads_in_place(producer):
    """A queueing provider may also define PREFIX_RESERVE (e.g. the TCP outbox): fixed
    payloads are then stored where the writer returns, with no copy; events without a
    payload and varlen events still go through PREFIX_WRITE / _WRITE_GATHER."""
    h = generate_producer(parse_schema("PROVIDER foo\nKEYWORD A 1\nSTRUCT S v:uint32_t w:uint8_t\n\n"
                                       "EVENT E 1 INFO A S \"%1\"\n", "/x/foo_eventlog_schema.src", None))
    assert ("\tstruct foo_eventlog_s *__foo_eventlog_p = (struct foo_eventlog_s *)FOO_EVENTLOG_RESERVE((_s), "
            "FOO_EVENTLOG_E_ID, FOO_EVENTLOG_E_LEVEL, FOO_EVENTLOG_E_KEYWORDS, sizeof(struct foo_eventlog_s)); \\") in h
    if _CC is None:
        pytest.skip("no C compiler to run the preprocessor (the string check passed)")
    use = "\nvoid f(void *s) { FOO_EVENTLOG_E_LOG(s, 7, 8); FOO_EVENTLOG_SESSION_END_LOG_ALWAYS(s); }\n"
    out = preprocess("#define FOO_EVENTLOG_WRITE q_add\n#define FOO_EVENTLOG_RESERVE q_reserve\n" + h + use).stdout
    body = out[out.index("void f("):]
    assert body.count("q_reserve((s)") == 1 and body.count("q_add((s)") == 1  # SESSION_END: no payload
    # zeroed (padding too), then the fields, all in the reserved space; nothing copied after
    assert re.search(r"q_reserve\(.*?\); if \(!__foo_eventlog_p\) break; "
                     r"__builtin_memset\(__foo_eventlog_p, 0, sizeof\(\*__foo_eventlog_p\)\); "
                     r"__foo_eventlog_p->v = \(__u32\)\(7\); __foo_eventlog_p->w = \(__u8\)\(8\); \}", body)
    # varlen events keep the copying writer
    routed = preprocess("#define TEST_EVENTLOG_WRITE q_add\n#define TEST_EVENTLOG_WRITE_GATHER q_gather\n"
                        "#define TEST_EVENTLOG_RESERVE q_reserve\n" + producer +
                        "\nvoid g(void *s, void *v) { TEST_EVENTLOG_VARLEN_EVENT_LOG_ALWAYS(s, 1, 2, v); }\n").stdout
    g = routed[routed.index("void g("):]
    assert "q_gather((s)" in g and "q_reserve" not in g


def test_producer_varlen_schema_needs_both_writers_overridden(producer):
    """Defining only PREFIX_WRITE would let varlen events bypass it: the header stops the build."""
    assert "#if defined(TEST_EVENTLOG_WRITE) && !defined(TEST_EVENTLOG_WRITE_GATHER)\n#error " in producer
    if _CC is None:
        pytest.skip("no C compiler to run the preprocessor (the string check passed)")
    assert preprocess(producer).returncode == 0
    only_write = preprocess("#define TEST_EVENTLOG_WRITE q_add\n" + producer)
    assert only_write.returncode != 0 and "TEST_EVENTLOG_WRITE_GATHER is not" in only_write.stderr
    use = "\nvoid f(void *s, void *v) { TEST_EVENTLOG_VARLEN_EVENT_LOG_ALWAYS(s, 1, 2, v); }\n"
    both = preprocess("#define TEST_EVENTLOG_WRITE q_add\n#define TEST_EVENTLOG_WRITE_GATHER q_add_gather\n"
                      + producer + use)
    assert both.returncode == 0 and "q_add_gather((s)" in both.stdout


def test_producer_big_struct_uses_scratch_and_strings_are_bounded():
    s = parse_schema("PROVIDER foo\nKEYWORD A 1\nSTRUCT BIG name:char[300] ip6:in6_addr_t\n\n"
                     "EVENT BIG 1 INFO A BIG \"%1 \\\"q\\\"\"\n", "/x/foo_eventlog_schema.src", None)
    h = generate_producer(s)
    assert "struct foo_eventlog_big *__foo_eventlog_p = eventlog_scratch();" in h
    assert "if (_f_name) EVENTLOG_COPY_STR(__foo_eventlog_p->name, 300, _f_name); " \
           "__foo_eventlog_p->name[299] = 0;" in h
    assert "__u32 ip6[4];" in h
    assert r'#define FOO_EVENTLOG_BIG_FORMAT "%1 \\\"q\\\""' in h


def test_producer_is_deterministic(producer):
    assert generate_producer(load_schema(TEST_SCHEMA)) == producer


# ---- pyelog gen ------------------------------------------------------------------------------

def copy_schema(tmp_path: Path, src: Path = TEST_SCHEMA) -> Path:
    dst = tmp_path / src.name
    dst.write_text(src.read_text())
    return dst


def test_gen_default_output_names(tmp_path, monkeypatch):
    schema = copy_schema(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert gen_main([str(schema), "-h"]) == 0
    assert gen_main(["-c", str(schema)]) == 0
    assert (tmp_path / "test_eventlog.h").read_text() == generate_producer(load_schema(schema))
    assert (tmp_path / "test_eventlog_consumer.py").read_text() == generate_consumer(load_schema(schema))


def test_gen_output_option_anywhere(tmp_path):
    schema = copy_schema(tmp_path)
    out = tmp_path / "sub.h"
    assert gen_main(["-o", str(out), "-h", str(schema)]) == 0
    assert out.read_text().startswith("/* THIS FILE AUTOMATICALLY GENERATED")
    assert gen_main(["-v", f"outdir={tmp_path}", "-c", str(schema)]) == 0
    assert (tmp_path / "test_eventlog_consumer.py").exists()


def test_gen_c_prints_the_code_that_runs(capsys):
    assert gen_main([str(TEST_SCHEMA), "-c", "-o", "-"]) == 0
    printed = capsys.readouterr().out
    assert printed == generate_consumer(load_schema(TEST_SCHEMA))
    module = exec_generated(printed, "printed")
    assert module.format_payload(0, struct.pack("<I", 42)) == "Simple event: value=42"


def test_gen_consumer_file_is_importable(tmp_path):
    schema = copy_schema(tmp_path)
    out = tmp_path / "c.py"
    assert gen_main([str(schema), "-c", "-o", str(out)]) == 0
    import importlib.util
    spec = importlib.util.spec_from_file_location("c", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.format_payload(1, struct.pack("<QB7x", 7, 1)) == "[7] Status event: status=RUNNING"


def test_gen_aggregate(tmp_path, capsys):
    other = tmp_path / "zed_eventlog_schema.src"
    other.write_text("PROVIDER zed\nKEYWORD K 1\nEVENT HELLO 1 INFO K NONE \"hello\"\n")
    assert gen_main(["-M", str(TEST_SCHEMA), str(other)]) == 0
    text = capsys.readouterr().out
    assert text == generate_aggregate([load_schema(TEST_SCHEMA), load_schema(other)])
    agg = exec_generated(text, "agg")
    assert sorted(agg.PROVIDERS) == ["test", "zed"]
    assert agg.format_payload("zed", 1, b"") == "hello"
    assert agg.format_payload("test", 0, struct.pack("<I", 1)) == "Simple event: value=1"
    assert agg.format_payload("nope", 0, b"") == "[UNKNOWN_PROVIDER:nope]"
    assert agg.event_id_to_name("nope", 0xFFFFFFFF) == "SESSION_END"
    assert agg.event_id_to_name("zed", 1) == "HELLO"
    assert agg.event_id_to_name("zed", 2) is None
    assert agg.keyword_from_string("zed", "k") == 1
    assert agg.keyword_from_string("nope", "k") == 0
    assert agg.is_session_end("x", 0xFFFFFFFF)
    out = tmp_path / "agg.py"
    assert gen_main([str(other), "-M", "-o", str(out)]) == 0
    assert "zed" in out.read_text()


def test_gen_aggregate_rejects_duplicate_provider(tmp_path, capsys):
    dup = tmp_path / "test_eventlog_schema.src"
    dup.write_text("PROVIDER test\nKEYWORD K 1\nEVENT HELLO 1 INFO K NONE \"hello\"\n")
    assert gen_main(["-M", str(TEST_SCHEMA), str(dup), "-o", str(tmp_path / "a.py")]) == 1
    assert "provider 'test' also defined by" in capsys.readouterr().err
    assert not (tmp_path / "a.py").exists()


@pytest.mark.parametrize("mode", ["-h", "-c", "-M"])
def test_gen_schema_error_is_one_line_and_leaves_no_output(tmp_path, capsys, mode):
    bad = tmp_path / "bad_eventlog_schema.src"
    bad.write_text("PROVIDER bad\nKEYWORD K 1\n\nEVENT E 1 INFO K NOPE \"x\"\n")
    out = tmp_path / "out"
    assert gen_main([str(bad), mode, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"{bad}:4: STRUCT NOPE not found for EVENT E\n"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [bad]


def test_gen_error_keeps_existing_output_untouched(tmp_path, capsys):
    bad = tmp_path / "bad_eventlog_schema.src"
    bad.write_text("PROVIDER bad\nEVNT E 1 INFO K NONE \"x\"\n")
    out = tmp_path / "bad_eventlog.h"
    out.write_text("old")
    assert gen_main([str(bad), "-h", "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2: unrecognised line")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_eventlog.h", "bad_eventlog_schema.src"]


def test_gen_warning_does_not_fail(tmp_path, capsys):
    warn = tmp_path / "w_eventlog_schema.src"
    warn.write_text("PROVIDER w\nKEYWORD K 1\nEVENT E 1 LOUD K NONE \"x\"\n")
    assert gen_main([str(warn), "-c", "-o", "-"]) == 0
    assert capsys.readouterr().err == f"{warn}:3: warning: unknown level 'LOUD' for EVENT E: using INFO " \
                                      "(levels: ERROR, WARN, INFO, VERBOSE, TRACE)\n"


@pytest.mark.parametrize("argv, message", [
    ([], "one of -h, -c or -M is required"),
    (["-h"], "no schema file given"),
    (["x", "-h", "-c"], "-h and -c are exclusive"),
    (["x", "-h", "-o"], "-o requires a file name"),
    (["x", "-q"], "unknown option -q"),
    (["a", "b", "-h", "-o", "z"], "-o with -h/-c takes a single schema"),
])
def test_gen_usage_errors(argv, message, capsys):
    assert gen_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_gen_help(capsys):
    assert gen_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pyelog gen SCHEMA... (-h | -c | -M) [-o OUT]")
    assert re.search(r"-M .*stdout", out, re.S)


def test_gen_missing_schema_file(tmp_path, capsys):
    assert gen_main([str(tmp_path / "none_eventlog_schema.src"), "-h"]) == 1
    assert "cannot read schema" in capsys.readouterr().err


# ---- hostile schemas (issue 17): one line, exit 1, no output ----------------

_HOSTILE_SCHEMAS = {
    "huge_keyword": b"PROVIDER bad\nKEYWORD K " + b"9" * 5000 + b"\nEVENT E 1 INFO K NONE \"x\"\n",
    "huge_event_id": b"PROVIDER bad\nKEYWORD K 1\nEVENT E " + b"9" * 5000 + b" INFO K NONE \"x\"\n",
    "huge_placeholder": b"PROVIDER bad\nKEYWORD K 1\nSTRUCT S a:uint8_t\n"
                        b"EVENT E 1 INFO K S \"%" + b"9" * 5000 + b"\"\n",
    "huge_char_array": b"PROVIDER bad\nKEYWORD K 1\nSTRUCT S s:char[" + b"9" * 5000 + b"]\n"
                       b"EVENT E 1 INFO K S \"x\"\n",
    "format_not_utf8": b"PROVIDER bad\nKEYWORD K 1\nEVENT E 1 INFO K NONE \"caf\xe9 \xff\"\n",
    "long_token": b"PROVIDER bad\nKEYWORD " + b"K" * 1_000_000 + b"! 1\nEVENT E 1 INFO K NONE \"x\"\n",
}


@pytest.mark.parametrize("mode", ["-h", "-c", "-M"])
@pytest.mark.parametrize("name", sorted(_HOSTILE_SCHEMAS))
def test_gen_hostile_schema_is_one_short_line(tmp_path, capsys, name, mode):
    bad = tmp_path / "bad_eventlog_schema.src"
    bad.write_bytes(_HOSTILE_SCHEMAS[name])
    out = tmp_path / "out"
    assert gen_main([str(bad), mode, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:") and err.count("\n") == 1 and len(err) < 300
    assert list(tmp_path.iterdir()) == [bad]


def test_gen_format_not_utf8_names_line_and_byte(tmp_path, capsys):
    bad = tmp_path / "bad_eventlog_schema.src"
    bad.write_bytes(_HOSTILE_SCHEMAS["format_not_utf8"])
    assert gen_main([str(bad), "-h", "-o", "-"]) == 1
    assert capsys.readouterr() == ("", f"{bad}:3: not UTF-8 text (byte 0xe9 at column 27)\n")


def test_gen_utf8_format_still_generates(tmp_path, capsys):
    good = tmp_path / "good_eventlog_schema.src"
    good.write_text("PROVIDER good\n# caf\udce9 in a comment\nKEYWORD K 1\nEVENT E 1 INFO K NONE \"30 \u00b0C\"\n",
                    encoding="utf-8", errors="surrogateescape")
    assert gen_main([str(good), "-h", "-o", str(tmp_path / "good.h")]) == 0
    assert '"30 \u00b0C"' in (tmp_path / "good.h").read_text(encoding="utf-8")


def test_gen_unknown_option_is_clipped(capsys):
    assert gen_main(["-" + "q" * 100_000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 200
