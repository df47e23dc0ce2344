"""Strict JSON parsing and canonical JSON (neurocds.facts.strictjson)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocds.errors import FactsValidationError
from neurocds.facts.strictjson import ParseLimits, canonical_json, parse_strict, sha256_canonical


def rejected(data: bytes | str, limits: ParseLimits = ParseLimits()) -> list[tuple[str, str]]:  # noqa: B008
    """(pointer, code) of every violation parse_strict reports; fails if it accepts."""
    with pytest.raises(FactsValidationError) as info:
        parse_strict(data, limits)
    return [(v.pointer, v.code) for v in info.value.violations]


def message(data: bytes | str, limits: ParseLimits = ParseLimits()) -> str:  # noqa: B008
    with pytest.raises(FactsValidationError) as info:
        parse_strict(data, limits)
    (only,) = info.value.violations
    return only.message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


# --- accepted input -----------------------------------------------------------------


@settings(max_examples=200)
@given(json_values)
def test_round_trips_any_json_value(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert parse_strict(text) == value
    assert parse_strict(text.encode("utf-8")) == value


def test_keeps_integer_and_float_apart() -> None:
    parsed = parse_strict(b'{"i": 1, "f": 1.0, "big": 1e308, "tiny": 1e-400}')
    assert type(parsed["i"]) is int and type(parsed["f"]) is float
    assert parsed["big"] == 1e308 and parsed["tiny"] == 0.0


def test_strips_one_leading_bom_in_bytes_and_text() -> None:
    assert parse_strict(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert parse_strict('\ufeff{"a": 1}') == {"a": 1}


def test_second_bom_is_a_syntax_error() -> None:
    assert rejected(b"\xef\xbb\xbf\xef\xbb\xbf{}") == [("", "syntax")]


def test_brackets_inside_strings_do_not_count_towards_depth() -> None:
    text = json.dumps(["[" * 1000 + "{" * 1000 + '\\"['])
    assert parse_strict(text, ParseLimits(max_depth=2)) == [json.loads(text)[0]]


def test_depth_limit_is_inclusive() -> None:
    limits = ParseLimits(max_depth=64)
    assert parse_strict("[" * 64 + "]" * 64, limits) is not None
    assert rejected("[" * 65 + "]" * 65, limits) == [("", "depth")]
    assert parse_strict('{"a":' * 3 + "1" + "}" * 3, ParseLimits(max_depth=3)) == {"a": {"a": {"a": 1}}}
    assert rejected('{"a":' * 4 + "1" + "}" * 4, ParseLimits(max_depth=3)) == [("", "depth")]


def test_valid_surrogate_pair_escape_is_accepted() -> None:
    assert parse_strict(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


# --- rejections, one kind at a time -------------------------------------------------


def test_rejects_documents_over_max_bytes() -> None:
    limits = ParseLimits(max_bytes=16)
    exactly = b'{"a": "' + b"x" * 7 + b'"}'
    assert len(exactly) == 16 and parse_strict(exactly, limits) == {"a": "x" * 7}
    assert rejected(exactly + b" ", limits) == [("", "size")]
    # Size is counted in UTF-8 bytes even for text: 10 characters, 18 bytes.
    assert rejected('"' + "é" * 8 + '"', limits) == [("", "size")]


def test_default_size_limit_is_one_mebibyte() -> None:
    assert rejected(b'"' + b"x" * 1_048_575 + b'"') == [("", "size")]
    assert ParseLimits().max_bytes == 1_048_576


@pytest.mark.parametrize(
    ("data", "offset"),
    [
        (b'{"a": "\xff"}', 7),
        (b'{"a": "\xc0\xaf"}', 7),  # overlong encoding of "/"
        (b'{"a": "\xed\xa0\x80"}', 7),  # an encoded UTF-16 surrogate
        (b'\xef\xbb\xbf{"a": "\xe2\x82"}', 10),  # truncated sequence; offset counts the BOM
    ],
)
def test_rejects_invalid_utf8_with_byte_offset(data: bytes, offset: int) -> None:
    assert rejected(data) == [("", "utf8")]
    assert f"byte offset {offset}" in message(data)


def test_rejects_text_holding_a_lone_surrogate() -> None:
    assert rejected('{"a": "\ud800"}') == [("", "utf8")]


def test_rejects_escaped_lone_surrogates_everywhere() -> None:
    # A member name's surrogate is written as the text \udc00 so the pointer can be printed.
    assert rejected(b'{"a": "\\ud800", "b": ["\\udfff"], "\\udc00": 1}') == [
        ("/\\udc00", "utf8"),
        ("/a", "utf8"),
        ("/b/0", "utf8"),
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"a": 1,}', "line 1, column 9"),
        ('{\n  "a": 1,\n  "b": }', "line 3, column 8"),
        ("", "line 1, column 1"),
        ("{} x", "line 1, column 4"),
        ("{'a': 1}", "line 1, column 2"),
        ('{"a": 1 /* c */}', "line 1, column 9"),
        ('["[[[', "line 1, column 2"),  # unterminated string: not mistaken for nesting
        ('{"a": 01}', "line 1, column 8"),
    ],
)
def test_rejects_syntax_errors_with_line_and_column(text: str, where: str) -> None:
    assert rejected(text) == [("", "syntax")]
    assert where in message(text)


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ('{"a": NaN}', "/a"),
        ('{"a": [1, Infinity]}', "/a/1"),
        ('{"a": {"b": -Infinity}}', "/a/b"),
        ('{"a": 1e999}', "/a"),
        ('{"a": -1e999}', "/a"),
        ('{"a": 1' + "0" * 400 + "}", "/a"),
        ('{"a": -1' + "0" * 5000 + "}", "/a"),  # beyond Python's int-string limit too
        ("NaN", ""),
    ],
)
def test_rejects_non_finite_numbers_with_pointer(text: str, pointer: str) -> None:
    assert rejected(text) == [(pointer, "non_finite")]


def test_rejects_duplicate_keys_with_member_pointer() -> None:
    text = '{"labs": {"potassium_mmol_l": 4.1, "potassium_mmol_l": 5.2}}'
    assert rejected(text) == [("/labs/potassium_mmol_l", "duplicate_key")]


def test_duplicate_reported_once_and_pointer_escaped() -> None:
    text = '{"a/b": 1, "a/b": 2, "a/b": 3, "m~n": 1, "m~n": 1}'
    assert rejected(text) == [("/a~1b", "duplicate_key"), ("/m~0n", "duplicate_key")]


def test_reports_every_non_finite_and_duplicate_problem_at_once() -> None:
    text = '{"labs": {"k": 1, "k": 2, "x": NaN}, "m": [1, Infinity, {"d": 1, "d": 1}], "n": -Infinity}'
    assert rejected(text) == [
        ("/labs/k", "duplicate_key"),
        ("/labs/x", "non_finite"),
        ("/m/1", "non_finite"),
        ("/m/2/d", "duplicate_key"),
        ("/n", "non_finite"),
    ]


@pytest.mark.parametrize("opener", ["[", '{"a":', '[{"a":'])
def test_rejects_100000_levels_without_recursion_error(opener: str) -> None:
    text = opener * 100_000
    assert rejected(text) == [("", "depth")]
    assert rejected(text.encode()) == [("", "depth")]
    assert "column" in message(text)


def test_rejects_non_text_input() -> None:
    with pytest.raises(TypeError):
        parse_strict(123)  # type: ignore[arg-type]


# --- canonical JSON -------------------------------------------------------------------


def test_canonical_json_exact_bytes() -> None:
    doc = {"b": 1, "a": {"d": [1.5, True, None], "c": "é\u2028"}, "A": 1.0}
    assert canonical_json(doc) == '{"A":1.0,"a":{"c":"é\u2028","d":[1.5,true,null]},"b":1}'.encode()


def test_canonical_json_is_key_order_independent() -> None:
    one = {"b": 1, "a": {"y": 2, "x": 3}}
    two = {"a": {"x": 3, "y": 2}, "b": 1}
    assert list(one) != list(two)
    assert canonical_json(one) == canonical_json(two)
    assert sha256_canonical(one) == sha256_canonical(two)


def test_canonical_json_keeps_integral_floats_as_written() -> None:
    assert canonical_json({"x": 1}) == b'{"x":1}'
    assert canonical_json({"x": 1.0}) == b'{"x":1.0}'
    assert sha256_canonical({"x": 1}) != sha256_canonical({"x": 1.0})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": [bad]})


def test_sha256_canonical_is_sha256_of_canonical_bytes() -> None:
    assert sha256_canonical({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


@settings(max_examples=200)
@given(json_values)
def test_canonical_hash_stable_under_key_reordering(value: Any) -> None:
    assert canonical_json(_reordered(value)) == canonical_json(value)
    assert sha256_canonical(_reordered(value)) == sha256_canonical(value)


@settings(max_examples=200)
@given(json_values)
def test_canonical_json_round_trips_through_strict_parser(value: Any) -> None:
    data = canonical_json(value)
    assert canonical_json(parse_strict(data)) == data
