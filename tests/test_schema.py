# SPDX-License-Identifier: BSD-2-Clause
"""The schema DSL parser: FreeBSD eventlog_gen.awk semantics and quirks.

Directives, blocks and comments, keyword values, field types and their C
layout, formats, the errors and warnings, and the shipped test schema."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyelog.records.untrusted import CLIP_LIMIT, clip
from pyelog.schema.dsl import (
    DUMP_COMPLETE_ID,
    KEYWORD_SESSION,
    SESSION_CREATE_ID,
    SESSION_END_ID,
    SchemaError,
    load_schema,
    parse_schema,
)

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def parse(text: str, provider: str = "foo", warn=None):
    return parse_schema(text, f"/x/{provider}_eventlog_schema.src", warn)


MINIMAL = "PROVIDER foo\nKEYWORD A 1\n"


# ---- the shipped test schema (schemas/test_eventlog_schema.src) --------------

@pytest.fixture(scope="module")
def test_schema():
    return load_schema(SCHEMAS / "test_eventlog_schema.src")


def test_test_schema_keywords_use_bit_position_quirk(test_schema):
    assert [(k.name, k.mask) for k in test_schema.keywords] == [
        ("BASIC", 0x1), ("ADVANCED", 0x2), ("COMPLEX", 0x8), ("SESSION", 0x80000000)]


def test_test_schema_events_ids_levels_masks(test_schema):
    got = [(e.name, e.id, e.level, e.mask, e.struct_name) for e in test_schema.events]
    assert got == [
        ("SIMPLE_EVENT", 0, 3, 0x1, "SIMPLE_EVENT"),
        ("STATUS_EVENT", 1, 3, 0x1, "STATUS_EVENT"),
        ("FLAGS_EVENT", 2, 4, 0x2, "FLAGS_EVENT"),
        ("COMPLEX_EVENT", 3, 2, 0x8, "COMPLEX_EVENT"),
        ("VARLEN_EVENT", 4, 3, 0x1, "VARLEN_EVENT"),
        ("SESSION_CREATE", SESSION_CREATE_ID, 3, KEYWORD_SESSION, "SESSION_CREATE"),
        ("SESSION_END", SESSION_END_ID, 3, KEYWORD_SESSION, None),
    ]


@pytest.mark.parametrize("struct, size, offsets", [
    ("SIMPLE_EVENT", 4, {"value": 0}),
    ("STATUS_EVENT", 16, {"id": 0, "status": 8}),
    ("FLAGS_EVENT", 16, {"id": 0, "flags": 8}),
    ("COMPLEX_EVENT", 24, {"id": 0, "value": 8, "status": 12, "flags": 16, "counter": 20}),
    ("VARLEN_EVENT", 16, {"id": 0, "count": 8}),
    ("SESSION_CREATE", 1, {"_unused": 0}),
])
def test_test_schema_layouts_are_natural_c_layouts(test_schema, struct, size, offsets):
    s = test_schema.structs[struct]
    assert s.size == size
    assert {f.name: f.offset for f in s.fixed_fields} == offsets


def test_test_schema_varlen_and_tables(test_schema):
    v = test_schema.structs["VARLEN_EVENT"].varlen
    assert (v.name, v.type.name, v.count_field, v.max_count) == ("values", "uint64_t", "count", 8)
    assert test_schema.enums["test_status"].items == [(0, "INIT"), (1, "RUNNING"), (2, "SUCCESS"), (3, "FAILED")]
    assert test_schema.flags["test_flags"].items == [(1, "FLAG_A"), (2, "FLAG_B"), (4, "FLAG_C"), (8, "FLAG_D")]
    assert test_schema.event("VARLEN_EVENT").format_style == "numbered"
    assert test_schema.event("SIMPLE_EVENT").format_style == "printf"
    assert test_schema.event("SESSION_END").format_style == "literal"


# ---- keywords -----------------------------------------------------------------

@pytest.mark.parametrize("value, mask", [
    ("1", 0x1), ("2", 0x2), ("3", 0x4), ("4", 0x8), ("9", 0x100), ("15", 0x4000),  # bit positions
    ("16", 0x10), ("17", 17), ("4096", 0x1000),                                     # literal masks
    ("0x4", 0x4), ("0X80", 0x80), ("0x80000000", 0x80000000),                        # hex verbatim
    ("0", 0),                                                                       # awk: 2^-1 printed %x
])
def test_keyword_values(value, mask):
    s = parse(f"PROVIDER foo\nKEYWORD K {value}\nEVENT E 1 INFO K NONE \"x\"\n")
    assert s.keyword_mask("K") == mask


def test_session_keyword_added_only_when_absent():
    s = parse(MINIMAL + "EVENT E 1 INFO A NONE \"x\"\n")
    assert s.keyword_mask("SESSION") == 0x80000000
    s = parse(MINIMAL + "KEYWORD SESSION 0x40000000\nEVENT E 1 INFO A NONE \"x\"\n")
    assert [k.name for k in s.keywords].count("SESSION") == 1
    assert s.keyword_mask("SESSION") == 0x40000000


def test_event_keywords_match_by_substring():
    s = parse("PROVIDER foo\nKEYWORD RX 1\nKEYWORD TX 2\nKEYWORD CC 4\n"
              "EVENT A 1 INFO RX,CC NONE \"a\"\n"
              "EVENT B 2 INFO RXT NONE \"b\"\n"        # contains RX
              "EVENT C 3 INFO XTXX NONE \"c\"\n"       # contains TX
              "EVENT D 4 INFO NOPE NONE \"d\"\n")      # matches nothing: mask 0
    assert s.event("A").mask == 0x1 | 0x8
    assert s.event("B").mask == 0x1
    assert s.event("C").mask == 0x2
    assert s.event("D").mask == 0
    assert any("matches no defined keyword" in w for w in s.warnings)


# ---- levels -----------------------------------------------------------------

@pytest.mark.parametrize("level, value", [("ERROR", 1), ("WARN", 2), ("INFO", 3), ("VERBOSE", 4), ("TRACE", 5)])
def test_levels(level, value):
    s = parse(MINIMAL + f"EVENT E 1 {level} A NONE \"x\"\n")
    assert s.event("E").level == value
    assert s.warnings == []


@pytest.mark.parametrize("level", ["DEBUG", "info", "WARNING", "Error"])
def test_unknown_level_means_info_with_warning(level, capsys):
    s = load_or_parse = parse(MINIMAL + "\n" + f"EVENT E 1 {level} A NONE \"x\"\n", warn=print)
    assert load_or_parse.event("E").level == 3
    out = capsys.readouterr().out
    assert out.startswith("/x/foo_eventlog_schema.src:4: warning: unknown level")
    assert f"'{level}'" in out
    assert s.warnings == [out.strip()]


def test_warnings_go_to_stderr_by_default(tmp_path, capsys):
    path = tmp_path / "foo_eventlog_schema.src"
    path.write_text(MINIMAL + "EVENT E 1 LOUD A NONE \"x\"\n")
    load_schema(path)
    err = capsys.readouterr().err
    assert err == f"{path}:3: warning: unknown level 'LOUD' for EVENT E: using INFO " \
                  "(levels: ERROR, WARN, INFO, VERBOSE, TRACE)\n"


# ---- reserved events ------------------------------------------------------------

def test_session_events_added_with_auto_struct():
    s = parse(MINIMAL + "EVENT E 1 INFO A NONE \"x\"\n")
    create, end = s.event("SESSION_CREATE"), s.event("SESSION_END")
    assert (create.id, create.level, create.mask, create.format, create.auto) == (
        0xFFFFFFFE, 3, 0x80000000, "Session created", True)
    assert [(f.name, f.type.name) for f in create.struct.fields] == [("_unused", "uint8_t")]
    assert create.struct.size == 1
    assert (end.id, end.level, end.mask, end.struct, end.format) == (0xFFFFFFFF, 3, 0x80000000, None, "Session ended")


def test_session_create_uses_schema_struct_of_that_name():
    s = parse(MINIMAL + "STRUCT SESSION_CREATE tp:void*\n\nEVENT E 1 INFO A NONE \"x\"\n")
    assert s.event("SESSION_CREATE").struct.size == 8
    assert s.event("SESSION_CREATE").auto


def test_schema_defined_session_events_are_kept():
    s = parse(MINIMAL + "STRUCT SC tp:void*\n\n"
                        "EVENT SESSION_CREATE 0xFFFFFFFE INFO SESSION SC \"Session created (tp=%1)\"\n"
                        "EVENT SESSION_END 4294967295 WARN SESSION NONE \"Bye\"\n")
    assert [e.name for e in s.events] == ["SESSION_CREATE", "SESSION_END"]
    assert s.event("SESSION_END").level == 2 and not s.event("SESSION_END").auto
    assert s.event("SESSION_CREATE").mask == 0x80000000


# ---- lexical rules ---------------------------------------------------------------

def test_continuation_lines_and_whitespace_collapsing():
    s = parse("PROVIDER foo\nKEYWORD A 1\n"
              "ENUM e 0:ZERO\n\t1:ONE\n  2:TWO\n"
              "FLAG f 0x1:X\n 0x2:Y\n"
              "STRUCT S\n    a:uint32_t\n\tb:uint8_t:enum_e   c:uint16_t:flag_f\n"
              "EVENT E 7 INFO A S\n     \"spaced    \t out   %1  %2\"\n")
    assert s.enums["e"].items == [(0, "ZERO"), (1, "ONE"), (2, "TWO")]
    assert s.flags["f"].items == [(1, "X"), (2, "Y")]
    assert [f.name for f in s.structs["S"].fields] == ["a", "b", "c"]
    assert s.event("E").format == "spaced out %1 %2"


def test_block_ends_at_unindented_line():
    s = parse("PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint32_t\n// comment closes the block\n"
              "EVENT E 1 INFO A S \"%1\"\n")
    assert [f.name for f in s.structs["S"].fields] == ["a"]
    with pytest.raises(SchemaError, match="unrecognised line"):
        parse("PROVIDER foo\nSTRUCT S a:uint32_t\nb:uint32_t\n")


def test_awk_rule_order_keyword_leaves_enum_block_open():
    # KEYWORD is matched before the ENUM continuation rule, so the ENUM block
    # stays open and the later indented line still belongs to it.
    s = parse("PROVIDER foo\nENUM e 0:A\nKEYWORD K 1\n  1:B\n\nEVENT E 1 INFO K NONE \"x\"\n")
    assert s.enums["e"].items == [(0, "A"), (1, "B")]


def test_comment_lines_are_ignored():
    s = parse("// line comment\n# hash comment\n/* block\n * star line\n */\n   // indented\n\n"
              "PROVIDER foo\n#KEYWORD NOT 2\nKEYWORD A 1\n/*\n*/\nEVENT E 1 INFO A NONE \"x\"\n")
    assert [k.name for k in s.keywords] == ["A", "SESSION"]


def test_indented_comment_inside_block_is_content_with_warning():
    s = parse(MINIMAL + "EVENT E 1 INFO A NONE \"x\"\n  // oops\n")
    assert s.event("E").format == 'x" // oops'
    assert any("indented comment line continues the EVENT block" in w for w in s.warnings)


def test_directive_prefix_match_with_warning():
    s = parse("PROVIDER foo\nKEYWORDS A 1\nEVENTS E 1 INFO A NONE \"x\"\n")
    assert s.event("E").mask == 1
    assert any("'EVENTS' is read as EVENT" in w for w in s.warnings)


def test_directive_may_be_indented_outside_blocks():
    s = parse("  PROVIDER foo\n\tKEYWORD A 1\n  EVENT E 1 INFO A NONE \"x\"\n")
    assert s.provider == "foo" and s.event("E").mask == 1


def test_format_quotes_stripped_once():
    s = parse(MINIMAL + 'EVENT E 1 INFO A NONE "say "hi""\nEVENT F 2 INFO A NONE no quotes\n')
    assert s.event("E").format == 'say "hi"'
    assert s.event("F").format == "no quotes"


def test_definitions_in_any_order_and_provider_not_first():
    s = parse("EVENT E 1 INFO A S \"%1\"\n\nSTRUCT S v:uint8_t:enum_e\n\nENUM e 0:Z\n"
              "KEYWORD A 1\nPROVIDER foo\n")
    assert s.event("E").struct.name == "S"


def test_provider_name_case_insensitive_match_with_file():
    s = parse("PROVIDER FOO\nKEYWORD A 1\nEVENT E 1 INFO A NONE \"x\"\n")
    assert s.provider == "FOO" and s.prefix == "foo_eventlog" and s.macro_prefix == "FOO_EVENTLOG"


# ---- types and layout --------------------------------------------------------------

@pytest.mark.parametrize("type_name, size, align", [
    ("uint8_t", 1, 1), ("u_char", 1, 1), ("int8_t", 1, 1), ("char", 1, 1),
    ("uint16_t", 2, 2), ("u_short", 2, 2), ("int16_t", 2, 2), ("short", 2, 2),
    ("uint32_t", 4, 4), ("u_int", 4, 4), ("lwpid_t", 4, 4), ("int32_t", 4, 4), ("int", 4, 4),
    ("uint64_t", 8, 8), ("u_long", 8, 8), ("size_t", 8, 8), ("int64_t", 8, 8), ("long", 8, 8),
    ("uintptr_t", 8, 8), ("intptr_t", 8, 8), ("void*", 8, 8), ("void *", 8, 8),
    ("in_addr_t", 4, 4), ("struct in_addr", 4, 4), ("in6_addr_t", 16, 4), ("struct in6_addr", 16, 4),
    ("char[5]", 5, 1),
])
def test_every_dsl_type_size_and_alignment(type_name, size, align):
    s = parse(MINIMAL + f"STRUCT S a:uint8_t b:{type_name} c:uint8_t\n\nEVENT E 1 INFO A S \"%1\"\n")
    st = s.structs["S"]
    b = st.fields[1]
    assert b.size == size and b.offset == align
    assert st.fields[2].offset == align + size
    assert st.size == -(-(align + size + 1) // align) * align


def test_layout_padding_like_c():
    s = parse(MINIMAL + "STRUCT S a:uint8_t b:uint64_t c:uint16_t d:char[3] e:uint32_t\n\n"
                        "EVENT E 1 INFO A S \"%1\"\n")
    st = s.structs["S"]
    assert [f.offset for f in st.fields] == [0, 8, 16, 18, 24]
    assert st.size == 32 and st.align == 8


def test_empty_struct_has_size_zero():
    s = parse(MINIMAL + "STRUCT EMPTY\n\nEVENT E 1 INFO A EMPTY \"HPTS entry created\"\n")
    assert s.structs["EMPTY"].size == 0 and s.structs["EMPTY"].fields == []


def test_varlen_head_aligned_to_element_size():
    s = parse(MINIMAL + "STRUCT V n:uint8_t a:uint64_t[n:4]\n\nSTRUCT W n:uint16_t a:in6_addr_t[n:2]\n\n"
                        "STRUCT X n:uint8_t a:uint16_t[n:3]\n\nEVENT E 1 INFO A V \"%1\"\n")
    assert s.structs["V"].size == 8          # 1 byte head, aligned(8)
    assert s.structs["W"].size == 16         # aligned(sizeof(in6_addr)) = 16
    assert s.structs["X"].size == 2
    assert s.structs["V"].varlen.offset == 8


def test_annotations_parsed():
    s = parse(MINIMAL + "ENUM e 0:Z\nFLAG f 1:O\nSTRUCT S a:uint32_t:hex b:uint16_t:ntohs c:uint8_t:enum_e "
                        "d:uint32_t:flag_f\n\nEVENT E 1 INFO A S \"%1\"\n")
    assert [(f.annotation, f.table) for f in s.structs["S"].fields] == [
        ("hex", None), ("ntohs", None), ("enum", "e"), ("flag", "f")]


def test_c_integer_literals_for_enum_values_and_ids():
    s = parse(MINIMAL + "ENUM e 0x10:HEX 010:OCT 7U:SUFFIX\n\nEVENT E 0x20 INFO A NONE \"x\"\n")
    assert s.enums["e"].items == [(16, "HEX"), (8, "OCT"), (7, "SUFFIX")]
    assert s.event("E").id == 32


def test_printf_more_conversions_than_fields_warns():
    s = parse(MINIMAL + "STRUCT S a:uint32_t\n\nEVENT E 1 INFO A S \"%u and %u\"\n")
    assert any("format has 2 conversion(s) but only 1 field(s)" in w for w in s.warnings)


def test_freebsd_tcp_schema_layouts():
    s = load_schema(Path(__file__).resolve().parent / "data" / "freebsd_tcp" / "tcp_eventlog_schema.src")
    sizes = {e.name: (e.struct.size if e.struct else 0) for e in s.events}
    assert sizes["CONN_SET_IP_V4"] == 16 and sizes["CONN_SET_IP_V6"] == 40 and sizes["SESSION_CREATE"] == 8
    assert sizes["IN"] == 40 and sizes["OUT"] == 32 and sizes["CONN_PARAMS"] == 64 and sizes["SACK"] == 72
    assert sizes["GOODPUT"] == 32 and sizes["TIMER_CANCEL"] == 0 and sizes["OUTPUT_DECISION"] == 24
    offs = {f.name: f.offset for f in s.structs["IN"].fields}
    assert offs == {"seq": 0, "ack": 4, "flags": 8, "win_raw": 10, "win": 12, "len": 16, "state": 20,
                    "th_off": 21, "th_sum": 22, "th_urp": 24, "rcv_time_us": 32}
    offs = {f.name: f.offset for f in s.structs["OUT"].fields}
    assert offs == {"seq": 0, "ack": 4, "flags": 8, "win_raw": 10, "win": 12, "len": 16, "cwnd": 20,
                    "state": 24, "th_off": 25, "th_sum": 26, "th_urp": 28}
    assert {k.name: k.mask for k in s.keywords} == {
        "RX": 0x1, "TX": 0x2, "LOSS": 0x4, "CC": 0x8, "PACING": 0x10, "TIMER": 0x20, "APP": 0x40,
        "CONN": 0x80, "RTT": 0x100, "SESSION": 0x80000000}
    assert s.event("IN").id == 100 and s.event("IN").level == 4 and s.event("IN").mask == 0x1
    assert s.event("ENTER_RECOVERY").mask == 0xC and s.event("SOCKET_OPT_ERR").mask == 0xC0
    assert s.enums["tcp_state"].items[4] == (4, "ESTABLISHED")
    assert s.warnings == []


# ---- fatal errors (FreeBSD's awk errors, plus pyelog's own) ---------------------------

ERRORS = [
    # (name, schema text, line, message fragment)
    ("provider_line", "PROVIDER\n", 1, "invalid PROVIDER line"),
    ("provider_twice", "PROVIDER foo\nPROVIDER foo\n", 2, "PROVIDER already defined at line 1"),
    ("provider_mismatch", "PROVIDER bar\n", 1, "PROVIDER 'bar' does not match the file name (expected 'foo'"),
    ("keyword_line", "PROVIDER foo\nKEYWORD A\n", 2, "invalid KEYWORD line"),
    ("keyword_value", "PROVIDER foo\nKEYWORD A (1<<3)\n", 2, "invalid KEYWORD value '(1<<3)'"),
    ("keyword_dup", "PROVIDER foo\nKEYWORD A 1\nKEYWORD A 2\n", 3, "KEYWORD A already defined"),
    ("enum_line", "PROVIDER foo\nENUM e\n", 2, "invalid ENUM line"),
    ("flag_line", "PROVIDER foo\nFLAG f\n", 2, "invalid FLAG line"),
    ("enum_value", "PROVIDER foo\nENUM e 0:A\n  1B\n", 3, "invalid enum value definition '1B'"),
    ("enum_value_colons", "PROVIDER foo\nENUM e 0:A:B\n", 2, "invalid enum value definition '0:A:B'"),
    ("flag_value", "PROVIDER foo\nFLAG f 0x1:A 2\n", 2, "invalid flag value definition '2'"),
    ("struct_line", "PROVIDER foo\nSTRUCT\n", 2, "invalid STRUCT line"),
    ("event_line", "PROVIDER foo\nKEYWORD A 1\nEVENT E 1 INFO A NONE\n", 3, "invalid EVENT line"),
    ("field_no_type", "PROVIDER foo\nSTRUCT S\n  a\n", 3, "invalid field definition 'a'"),
    ("field_too_many_parts", "PROVIDER foo\nSTRUCT S a:uint8_t:hex:x\n", 2, "invalid field definition"),
    ("field_unknown_type", "PROVIDER foo\nSTRUCT S a:float\n", 2, "unknown type 'float'"),
    ("annotation", "PROVIDER foo\nSTRUCT S\n  a:uint32_t:decimal\n", 3, "invalid annotation 'decimal'"),
    ("annotation_on_string", "PROVIDER foo\nSTRUCT S a:in_addr_t:hex\n", 2, "needs an integer field"),
    ("varlen_not_last", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:4]\n  x:uint8_t\n", 3,
     "varlen field 'v' must be the last field"),
    ("varlen_two", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:4] w:uint32_t[n:4]\n", 2,
     "varlen field 'v' must be the last field"),
    ("varlen_max_zero", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:0]\n", 2, "max must be a positive decimal"),
    ("varlen_max_hex", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:0x8]\n", 2, "max must be a positive decimal"),
    ("varlen_char", "PROVIDER foo\nSTRUCT S n:uint8_t v:char[n:8]\n", 2, "may not have element type char"),
    ("varlen_count_missing", "PROVIDER foo\nSTRUCT S v:uint32_t[n:8] n:uint8_t\n", 2,
     "varlen count field 'n' must be an earlier field"),
    ("varlen_count_signed", "PROVIDER foo\nSTRUCT S n:int32_t v:uint32_t[n:8]\n", 2,
     "varlen count field 'n' must have an unsigned type"),
    ("varlen_count_lwpid", "PROVIDER foo\nSTRUCT S n:lwpid_t v:uint32_t[n:8]\n", 2,
     "varlen count field 'n' must have an unsigned type"),
    ("varlen_missing_bracket", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:8\n", 2, "missing ']'"),
    ("varlen_malformed", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n]\n", 2, "expected name:type[countfield:max]"),
    ("varlen_max_too_big", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:300]\n", 2, "does not fit count field"),
    ("char_size", "PROVIDER foo\nSTRUCT S s:char[0]\n", 2, "char[N] needs a positive decimal N"),
    ("struct_not_found", "PROVIDER foo\nKEYWORD A 1\n\nEVENT E 1 INFO A NOPE \"x\"\n", 4,
     "STRUCT NOPE not found for EVENT E"),
    ("provider_missing", "KEYWORD A 1\nEVENT E 1 INFO A NONE \"x\"\n", 2, "PROVIDER missing"),
    ("no_events", "PROVIDER foo\nKEYWORD A 1\n\n", 3, "no EVENT defined"),
    ("placeholder_zero", "PROVIDER foo\nSTRUCT S a:uint8_t\n\nEVENT E 1 INFO A S \"%0\"\n", 4,
     "invalid placeholder %0"),
    ("placeholder_range", "PROVIDER foo\nSTRUCT S a:uint8_t\n\nEVENT E 1 INFO A S \"%1 %2\"\n", 4,
     "invalid placeholder %2"),
    ("placeholder_none", "PROVIDER foo\nEVENT E 1 INFO A NONE \"%1\"\n", 2, "invalid placeholder %1"),
    ("format_varlen", "PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:4]\n\nEVENT E 1 INFO A S \"%2\"\n", 4,
     "format references varlen field 'v'"),
    ("unknown_directive", "PROVIDER foo\nEVNT E 1 INFO A NONE \"x\"\n", 2, "unrecognised line"),
    ("stray_indented_line", "PROVIDER foo\n   stray\n", 2, "unrecognised line"),
    ("undefined_enum", "PROVIDER foo\nSTRUCT S\n  a:uint8_t:enum_nope\n\nEVENT E 1 INFO A S \"%1\"\n", 3,
     "undefined ENUM 'nope'"),
    ("undefined_flag", "PROVIDER foo\nSTRUCT S a:uint8_t:flag_nope\n\nEVENT E 1 INFO A S \"%1\"\n", 2,
     "undefined FLAG 'nope'"),
    ("duplicate_event_id", "PROVIDER foo\nEVENT E 1 INFO A NONE \"x\"\nEVENT F 1 INFO A NONE \"y\"\n", 3,
     "reuses id 1"),
    ("duplicate_event_name", "PROVIDER foo\nEVENT E 1 INFO A NONE \"x\"\nEVENT E 2 INFO A NONE \"y\"\n", 3,
     "EVENT E already defined"),
    ("duplicate_struct", "PROVIDER foo\nSTRUCT S a:uint8_t\nSTRUCT S a:uint8_t\n", 3, "STRUCT S already defined"),
    ("duplicate_field", "PROVIDER foo\nSTRUCT S a:uint8_t a:uint8_t\n", 2, "duplicate field 'a'"),
    ("reserved_id", "PROVIDER foo\nEVENT E 0xFFFFFFFD INFO A NONE \"x\"\n", 2, "reserved for DUMP_COMPLETE"),
    ("event_id", "PROVIDER foo\nEVENT E one INFO A NONE \"x\"\n", 2, "invalid EVENT id 'one'"),
    ("event_id_range", "PROVIDER foo\nEVENT E 4294967296 INFO A NONE \"x\"\n", 2, "invalid EVENT id"),
    ("flag_label_clash", "PROVIDER foo\nFLAG f 1:X\nFLAG g 2:X\nEVENT E 1 INFO A NONE \"x\"\n", 3,
     "FLAG label X is defined with two different values"),
]


@pytest.mark.parametrize("name, text, line, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_fatal_errors(name, text, line, message):
    with pytest.raises(SchemaError) as info:
        parse(text)
    err = info.value
    assert (err.path, err.line) == ("/x/foo_eventlog_schema.src", line)
    assert message in err.message
    assert str(err) == f"/x/foo_eventlog_schema.src:{line}: {err.message}"
    assert "\n" not in str(err)


def test_file_name_must_follow_pattern():
    with pytest.raises(SchemaError, match="schema file name must be <provider>_eventlog_schema.src"):
        parse_schema("PROVIDER foo\n", "/x/foo.src")


def test_unreadable_schema(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "missing_eventlog_schema.src")


def test_dump_complete_id_constant():
    assert DUMP_COMPLETE_ID == 0xFFFFFFFD


# ---- hostile input: huge numbers, long tokens, line separators (issue 17) ----

_HUGE = "9" * 5000  # past Python's 4300-digit int() limit


@pytest.mark.parametrize("name, text, line, message", [
    ("keyword", f"PROVIDER foo\nKEYWORD A {_HUGE}\n", 2, "does not fit in 32 bits"),
    ("event_id", f"PROVIDER foo\nKEYWORD A 1\nEVENT E {_HUGE} INFO A NONE \"x\"\n", 3, "invalid EVENT id"),
    ("enum_value", f"PROVIDER foo\nENUM e {_HUGE}:A\n", 2, "value must be a 32-bit C integer literal"),
    ("char_size", f"PROVIDER foo\nSTRUCT S s:char[{_HUGE}]\n", 2, "char[N] needs a positive decimal N"),
    ("varlen_max", f"PROVIDER foo\nSTRUCT S n:uint8_t v:uint32_t[n:{_HUGE}]\n", 2, "does not fit count field"),
    ("placeholder", f"PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint8_t\nEVENT E 1 INFO A S \"%{_HUGE}\"\n", 4,
     "invalid placeholder %999"),
    ("printf_width", f"PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint8_t\nEVENT E 1 INFO A S \"%-{_HUGE}d\"\n", 4,
     "printf width or precision above 1024"),
    ("printf_precision", "PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint8_t\nEVENT E 1 INFO A S \"%.2000d\"\n", 4,
     "printf width or precision above 1024"),
])
def test_huge_numbers_are_schema_errors(name, text, line, message):
    with pytest.raises(SchemaError) as info:
        parse(text)
    assert info.value.line == line and message in info.value.message
    assert len(str(info.value)) < 200


def test_printf_width_up_to_the_limit_is_kept():
    # (A bare "%1024d" would be placeholder %1024, as in FreeBSD.)
    e = parse(MINIMAL + "STRUCT S a:uint8_t\nEVENT E 1 INFO A S \"%-1024d|%.1024d\"\n").event("E")
    assert [p.spec.text for p in e.format_parts if not isinstance(p, str)] == ["%-1024d", "%.1024d"]


def test_non_ascii_digits_are_no_number():
    with pytest.raises(SchemaError, match="invalid KEYWORD value '٣'"):
        parse("PROVIDER foo\nKEYWORD A ٣\n")
    with pytest.raises(SchemaError, match="invalid placeholder %٣"):
        parse(MINIMAL + "STRUCT S a:uint8_t b:uint8_t c:uint8_t\nEVENT E 1 INFO A S \"%٣\"\n")


@pytest.mark.parametrize("text", [
    "PROVIDER foo\nKEYWORD " + "A" * 1_000_000 + "- 1\n",
    "PROVIDER foo\nSTRUCT S " + "a:" + "x" * 1_000_000 + "\n",
    "PROVIDER foo\n" + "BOGUS" * 200_000 + "\n",
    "PROVIDER foo\nKEYWORD A 1\nEVENT E 1 INFO A NONE \"x\"\nEVENT " + "E" * 1_000_000 + " 2 INFO A NONE \"y\"\n"
    "EVENT " + "E" * 1_000_000 + " 3 INFO A NONE \"y\"\n",
])
def test_error_messages_echo_a_clipped_token(text):
    with pytest.raises(SchemaError) as info:
        parse(text)
    assert "..." in info.value.message and len(str(info.value)) < 500


def test_clip_bounds_and_escapes():
    assert clip("short") == "short"
    assert clip("x" * 100) == "x" * CLIP_LIMIT + "..."
    assert clip("a\x1b[31mb\udcff") == "a\\x1b[31mb\\udcff"


def test_long_warning_tokens_are_clipped():
    schema = parse("PROVIDER foo\nKEYWORD A 1\nEVENT E 1 " + "L" * 10_000 + " A NONE \"x\"\n")
    assert len(schema.warnings[0]) < 300 and "L" * CLIP_LIMIT + "..." in schema.warnings[0]


def test_invalid_utf8_content_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "foo_eventlog_schema.src"
    path.write_bytes(b"PROVIDER foo\n# caf\xe9 in a comment is fine\nKEYWORD A 1\n"
                     b"EVENT E 1 INFO A NONE \"x\xff y\"\n")
    with pytest.raises(SchemaError) as info:
        load_schema(path)
    assert (info.value.line, info.value.message) == (4, "not UTF-8 text (byte 0xff at column 25)")


def test_invalid_utf8_in_indented_block_line_is_content(tmp_path):
    path = tmp_path / "foo_eventlog_schema.src"
    path.write_bytes(b"PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint8_t\n  # \xff\nEVENT E 1 INFO A S \"x\"\n")
    with pytest.raises(SchemaError, match="not UTF-8 text") as info:
        load_schema(path, warn=None)
    assert info.value.line == 4


@pytest.mark.parametrize("sep", ["\f", "\v", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"])
def test_only_newline_ends_a_line(sep):
    # splitlines() would make two lines of line 3 and blame line 5 for line 4.
    text = f"PROVIDER foo\nKEYWORD A 1\n// a comment{sep}with a separator\nBOGUS\n"
    with pytest.raises(SchemaError) as info:
        parse(text)
    assert (info.value.line, info.value.message) == (
        4, "unrecognised line (not a directive, continuation or comment): 'BOGUS'")


def test_separator_inside_a_directive_line_is_blank():
    schema = parse("PROVIDER foo\nKEYWORD A\f1\nEVENT E 1 INFO A NONE \"x\u2028y\"\n")
    assert schema.keyword_mask("A") == 1
    assert schema.event("E").format == "x y"


def test_crlf_lines_read_as_before():
    lf = "PROVIDER foo\nKEYWORD A 1\nSTRUCT S a:uint8_t\n  b:uint16_t\nEVENT E 1 INFO A S \"%1 %2\"\n"
    a, b = parse(lf), parse(lf.replace("\n", "\r\n"))
    assert [(e.name, e.format, e.line) for e in a.events] == [(e.name, e.format, e.line) for e in b.events]
    assert [f.name for f in b.structs["S"].fields] == ["a", "b"]
    with pytest.raises(SchemaError) as info:
        parse("PROVIDER foo\r\nKEYWORD A 1\r\n\r\nBOGUS\r\n")
    assert info.value.line == 4


def test_end_of_file_line_number_without_and_with_final_newline():
    for text, line in [("PROVIDER foo\nKEYWORD A 1", 2), ("PROVIDER foo\nKEYWORD A 1\n", 2),
                       ("PROVIDER foo\nKEYWORD A 1\n\n", 3), ("", 1)]:
        with pytest.raises(SchemaError) as info:
            parse(text)
        assert info.value.line == line, text
