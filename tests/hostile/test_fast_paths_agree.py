"""The C-speed paths answer exactly what the step-by-step paths answer.

parse_strict's fast path (orjson plus counting, neurocds.facts.fastparse) must return the
very value the exact path returns, and refuse (by handing over) whatever the exact path
refuses; is_plain_json's level-at-a-time check must agree with a plain recursive
reading of its definition. Generated documents aim at the edges: repeated member names,
escaped colons and backslashes, integers around 64 bits, NaN, lone surrogates,
subclasses, tuples, non-string keys and nesting around the limit.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocds.errors import FactsValidationError
from neurocds.facts import strictjson
from neurocds.facts.fastparse import bracket_depth_at_most, outside_brackets
from neurocds.facts.plainjson import LONE_SURROGATE, capped_error, is_plain_json
from neurocds.facts.repeated_names import repeated_name_problems
from neurocds.facts.strictjson import ParseLimits, parse_strict

_OVERFLOW = 2**1024 - 2**970


def reference_is_plain(value: Any, max_depth: int, depth: int = 0) -> bool:
    """is_plain_json's definition, read recursively (the old walk's rules)."""
    kind = type(value)
    if kind is dict or kind is list:
        if depth + 1 > max_depth:
            return False
        if kind is dict:
            for key in value:
                if type(key) is not str or LONE_SURROGATE.search(key):
                    return False
        children = value.values() if kind is dict else value
        return all(reference_is_plain(child, max_depth, depth + 1) for child in children)
    if kind is str:
        return LONE_SURROGATE.search(value) is None
    if kind is int:
        return bool(-_OVERFLOW < value < _OVERFLOW)
    if kind is float:
        return math.isfinite(value)
    return kind is bool or value is None


class Text(str):
    pass


class Number(float):
    pass


atoms = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**1024, -(2**1024), _OVERFLOW - 1, 10**400])
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["\ud800", "a\udfffb", "\U0001f600", Text("x"), Number(1.5), (1, 2), 1 + 2j])
)
keys = st.text(max_size=4) | st.sampled_from(["\udc00", 1, None, Text("k")])
python_values = st.recursive(
    atoms,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=5) | st.tuples(kids),
    max_leaves=30,
)


@settings(max_examples=600, derandomize=True)
@given(python_values, st.integers(min_value=1, max_value=5))
def test_is_plain_json_agrees_with_its_definition(value: Any, max_depth: int) -> None:
    assert is_plain_json(value, max_depth) is reference_is_plain(value, max_depth)


def test_is_plain_json_walks_a_cycle_no_deeper_than_the_limit() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert is_plain_json(loop, 64) is False


# JSON texts: members written one by one so that names can repeat, with the spellings the
# counting must see through (escaped colons, escaped backslashes before "u003a").
names = st.sampled_from(['"a"', '"b"', '"a:b"', '"\\u003a"', '"\\u003A"', '"\\\\u003a"', '"\\""', '"\\\\"', '"{"'])
numbers = st.sampled_from(
    ["0", "-0", "1.0", "1e5", "18446744073709551615", "18446744073709551616", "-9223372036854775809",
     "1e400", "NaN", "-Infinity", "123456789012345678901234567890", "0.30000000000000004", "1" + "0" * 320]
)  # fmt: skip
strings = st.sampled_from(['"x"', '"\\ud800"', '"\\ud83d\\ude00"', '"[{"', '"a\\\\"', '"\\u005b"'])


def _object(members: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{name} : {value}" for name, value in members) + "}"


json_texts = st.recursive(
    numbers | strings | st.sampled_from(["true", "null"]),
    lambda kids: st.lists(kids, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
    | st.lists(st.tuples(names, kids), max_size=4).map(_object),
    max_leaves=14,
)


def outcome(text: str) -> tuple[str, Any]:
    try:
        return "value", json.dumps(parse_strict(text.encode()), sort_keys=True, ensure_ascii=True)
    except FactsValidationError as exc:
        return "refused", sorted((v.pointer, v.code, v.message) for v in exc.violations)


@settings(max_examples=800, derandomize=True)
@given(json_texts)
def test_the_fast_parse_returns_what_the_exact_parse_returns(text: str) -> None:
    fast = outcome(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(strictjson, "fast_parse", lambda _text, _encoded, _depth: (False, None))
        exact = outcome(text)
    assert fast == exact
    if fast[0] == "value":  # integers stay integers, floats floats, exactly as json.loads reads them
        assert repr(parse_strict(text)) == repr(json.loads(text))


@settings(max_examples=400, derandomize=True)
@given(json_texts, st.integers(min_value=1, max_value=6))
def test_the_depth_shortcut_never_passes_what_the_exact_count_refuses(text: str, max_depth: int) -> None:
    depth = deepest = 0
    for char in outside_brackets(text.encode()):
        depth += 1 if char == ord("[") else -1
        deepest = max(deepest, depth)
    if bracket_depth_at_most(text.encode(), max_depth):
        assert deepest <= max_depth
    codes = []
    try:
        parse_strict(text, ParseLimits(max_depth=max_depth))
    except FactsValidationError as exc:
        codes = [v.code for v in exc.violations]
    assert ("depth" in codes) is (deepest > max_depth)


@pytest.mark.parametrize(
    ("last", "problem"),
    [
        ("1e-100", False),  # looks risky (a three-digit exponent) but is finite
        ("1" + "0" * 308, False),  # the largest power of ten a float holds, as an integer
        ("0." + "3" * 4400, False),  # a run of digits int() could not convert, in a finite float
        ("1e400", True),
        ("-1" + "0" * 400, True),
        ("9" * 5000, True),  # over int()'s 4,300-digit limit
        ("-Infinity", True),
    ],
    ids=["tiny-float", "largest-integer", "long-fraction", "1e400", "negative-401-digits", "5000-digits", "infinity"],
)
def test_a_large_text_with_risky_numbers_gets_the_exact_answer(last: str, problem: bool) -> None:
    """Over 64 KiB the strict parser reads numbers at C speed and reads a clean document again
    exactly: integers stay integers, and every non-finite literal is named where it is."""
    count = 24_000  # 48,002 values (under the value limit), 144 KB (over 64 KiB)
    text = '{"a":[' + ",".join(["7", "2.5"] * count) + "," + last + "]}"
    if problem:
        with pytest.raises(FactsValidationError) as info:
            parse_strict(text)
        assert [(v.pointer, v.code) for v in info.value.violations] == [(f"/a/{2 * count}", "non_finite")]
    else:
        value = parse_strict(text)
        assert repr(value) == repr(json.loads(text))  # 7 stays an int, 1e308 stays an int
        assert type(value["a"][-1]) is type(json.loads(last))


# Names that read alike once objects are read as lists ("{}:" -> "[],"), escaped colons
# and braces, and a quote: the repeated-name route must tell them apart or hand over.
listed_names = st.sampled_from(
    ['"a"', '"a:b"', '"a,b"', '"\\u003a"', '":"', '","', '"{"', '"["', '"\\u007b"', '"\\""', '"\\\\"']
)
member_values = st.sampled_from(["0", '"x:{}"', "[]", "{}", "[1,{}]", '{"a":1,"a":2}', "1.5", "null"])
small_objects = st.lists(st.tuples(listed_names, member_values), max_size=4).map(_object)
bodies = st.tuples(
    st.lists(small_objects | json_texts, max_size=70),  # over 32 entries: runs of them are skipped whole
    st.sampled_from(["", ' , "meta" : {"a": 1, "a": 2}', ' ,"entry": []']),
).map(lambda parts: '{"resourceType": "Bundle", "entry": [' + ",\n ".join(parts[0]) + "]" + parts[1] + "}")


def outcome_with(text: str, limits: ParseLimits) -> tuple[str, Any]:
    try:
        return "value", json.dumps(parse_strict(text.encode(), limits), sort_keys=True, ensure_ascii=True)
    except FactsValidationError as exc:
        return "refused", [(v.pointer, v.code, v.message) for v in exc.violations]


@settings(max_examples=500, derandomize=True)
@given(bodies, st.sampled_from([strictjson.ParseLimits(), strictjson.fhir_limits(1_048_576), ParseLimits(max_depth=3)]))
def test_bodies_get_from_the_repeated_name_route_what_the_exact_parse_gives(text: str, limits: ParseLimits) -> None:
    """FHIR-like bodies, valid and not: the C-speed route (orjson, the value's depth, objects
    read as lists to find repeated names) answers exactly what the per-object hook answers,
    violations in the same order."""
    fast = outcome_with(text, limits)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(strictjson, "fast_parse", lambda _text, _encoded, _depth: (False, None))
        exact = outcome_with(text, limits)
    assert fast == exact


def test_many_repeating_objects_are_named_as_the_exact_parse_names_them() -> None:
    entries = ['{"a":1,"b":{"c":[1,{"d":0,"d":1}]}}'] * 40 + ['{"a":1,"a":2}'] * 150 + ['{"x:y":1,"x,y":2,"x:y":3}']
    text = '{"entry":[' + ",".join(entries) + "]}"
    fast = outcome_with(text, strictjson.fhir_limits(1_048_576))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(strictjson, "fast_parse", lambda _text, _encoded, _depth: (False, None))
        exact = outcome_with(text, strictjson.fhir_limits(1_048_576))
    assert fast == exact
    assert fast[1][0][0] == "/entry/0/b/c/1/d" and len(fast[1]) == 100
    # The route named them itself (an empty answer would hand over to the exact parse).
    found = repeated_name_problems(text.encode(), orjson.loads(text), 64)
    assert found is not None
    assert [(v.pointer, v.code, v.message) for v in capped_error(found).violations] == exact[1]
