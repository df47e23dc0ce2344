"""Property: the dict path and the JSON path refuse exactly the same documents, with the same pointers.

Documents are generated as pairs (Python value, JSON text of it) so that values
``json.dumps`` cannot write (NaN, integers of thousands of digits, lone surrogates,
which it would write as an escape) reach the JSON path as the text an attacker would
send. Then ``Engine.validate(text)`` and ``Engine.validate(dict)`` must both accept,
or both refuse with the same (pointer, code) pairs.

CI runs a fixed, derandomized set (profile ``hostile-ci``). A larger random run:

    NEUROCDS_HYPOTHESIS_PROFILE=hostile-large pytest tests/hostile/test_paths_agree.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError
from neurocds_packs import BUILTIN_PACKS

settings.register_profile(
    "hostile-ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "hostile-large", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("NEUROCDS_HYPOTHESIS_PROFILE", "hostile-ci"))

Pair = tuple[Any, str]  # (Python value, its JSON text)


def _string(value: str) -> Pair:
    # ensure_ascii writes a lone surrogate as its \\udXXX escape, as a hostile sender would.
    return value, json.dumps(value, ensure_ascii=True)


def _number(value: Any, text: str) -> Pair:
    return value, text


class _Huge:
    """Stands for ±10**digits until the sample is built: hypothesis calls repr() on what
    it generates, and repr() of an integer over 4,300 digits raises."""

    def __init__(self, signed_digits: int) -> None:
        self.signed_digits = signed_digits

    def __repr__(self) -> str:
        return f"10**{abs(self.signed_digits)}" if self.signed_digits > 0 else f"-10**{-self.signed_digits}"

    def value(self) -> int:
        number: int = pow(10, abs(self.signed_digits))
        return number if self.signed_digits > 0 else -number


def _real(value: Any) -> Any:
    """The Python document: every _Huge made the integer it stands for."""
    if isinstance(value, _Huge):
        return value.value()
    if isinstance(value, dict):
        return {k: _real(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_real(v) for v in value]
    return value


_HOSTILE_NUMBERS = [
    _number(float("nan"), "NaN"),
    _number(float("inf"), "Infinity"),
    _number(float("-inf"), "-Infinity"),
    _number(10**400, "1" + "0" * 400),
    _number(_Huge(-5000), "-1" + "0" * 5000),
    _number(10**308, "1" + "0" * 308),  # the largest power of ten a float holds: valid
    _number(2**64, str(2**64)),
    _number(0, "0"),
    _number(4.5, "4.5"),
    _number(-1, "-1"),
]
# Drawn by index: hypothesis describes a strategy with repr(), which an integer of
# 5,000 digits makes raise.
HOSTILE_NUMBERS = st.integers(0, len(_HOSTILE_NUMBERS) - 1).map(_HOSTILE_NUMBERS.__getitem__)


class Sample:
    """A generated (value, JSON text) whose repr is the text: failures print what was sent."""

    def __init__(self, pair: Pair) -> None:
        self.value, self.text = _real(pair[0]), pair[1]

    def __repr__(self) -> str:
        return self.text if len(self.text) < 400 else self.text[:400] + "…"


# A high surrogate followed by a low one has no JSON text of its own: the escapes
# "\ud800\udfff" decode to one character, U+103FF. Such strings are left out.
TEXT = st.text(alphabet=st.sampled_from(["a", "é", "\x1b", "\ud800", "\udfff", "~", "/", "0"]), max_size=4).filter(
    lambda text: "\ud800\udfff" not in text
)
MEMBER_NAMES = st.one_of(
    st.sampled_from(["facts_version", "patient", "labs", "potassium_mmol_l", "id", "symptoms", "back_pain", "name"]),
    TEXT,
)
LEAVES: st.SearchStrategy[Pair] = st.one_of(
    st.just((None, "null")),
    st.booleans().map(lambda b: (b, json.dumps(b))),
    st.integers(-5, 200).map(lambda i: (i, str(i))),
    HOSTILE_NUMBERS,
    TEXT.map(_string),
    st.sampled_from(["1", "p1", "statin", "sudden"]).map(_string),
)


def _array(items: list[Pair]) -> Pair:
    return [v for v, _ in items], "[" + ",".join(t for _, t in items) + "]"


def _object(members: dict[str, Pair]) -> Pair:
    value = {k: v for k, (v, _) in members.items()}
    return value, "{" + ",".join(f"{_string(k)[1]}:{t}" for k, (_, t) in members.items()) + "}"


VALUES: st.SearchStrategy[Pair] = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.dictionaries(MEMBER_NAMES, inner, max_size=4).map(_object),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn) -> Pair:
    """Mostly facts-shaped documents (so the schema is reached too), with hostile parts."""
    members: dict[str, Pair] = {"facts_version": _string("1")}
    if draw(st.booleans()):
        members["patient"] = _object({"id": draw(st.one_of(LEAVES, TEXT.map(_string)))})
    extra = draw(st.dictionaries(MEMBER_NAMES, VALUES, max_size=3))
    members.update(extra)
    return _object(members)


# A str passed to the API is JSON text, not a string value: top-level strings are left out.
SAMPLES = VALUES.filter(lambda pair: not isinstance(pair[0], str)).map(Sample)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS, backend="reference")


def outcome(engine: Engine, facts: Any) -> set[tuple[str, str]] | None:
    """None when accepted, else the (pointer, code) pairs of the refusal."""
    try:
        engine.validate(facts)
    except FactsValidationError as exc:
        str(exc)  # the message can always be built
        json.dumps(exc.to_dict(), ensure_ascii=False).encode("utf-8")  # and written as UTF-8
        return {(v.pointer, v.code) for v in exc.violations}
    return None


@PROFILE
@given(documents().map(Sample))
def test_dict_and_json_paths_agree(engine: Engine, sample: Sample) -> None:
    assert outcome(engine, sample.value) == outcome(engine, sample.text.encode("utf-8"))


@PROFILE
@given(SAMPLES)
def test_any_value_is_refused_or_accepted_alike(engine: Engine, sample: Sample) -> None:
    assert outcome(engine, sample.value) == outcome(engine, sample.text.encode("utf-8"))


@pytest.mark.parametrize(
    "value",
    [1 + 2j, b"bytes", {1, 2}, (1, 2), object(), Ellipsis],
    ids=["complex", "bytes", "set", "tuple", "object", "ellipsis"],
)
def test_python_values_json_cannot_hold_are_refused_with_their_pointer(engine: Engine, value: Any) -> None:
    with pytest.raises(FactsValidationError) as info:
        engine.validate({"facts_version": "1", "patient": {"id": "p"}, "labs": {"ck_u_l": value}})
    assert [(v.pointer, v.code) for v in info.value.violations] == [("/labs/ck_u_l", "type")]


def _nested(levels: int) -> Any:
    deep: Any = {"x": 1}
    for _ in range(levels):
        deep = {"d": deep}
    return deep


@pytest.mark.parametrize(
    ("members", "code"),
    [
        ({"m": {f"k{i}": 0 for i in range(26_000)}, "deep": _nested(70)}, "depth"),  # over max_members too
        ({"deep": _nested(70), "v": [0] * 50_001}, "depth"),  # over max_values too
        ({"deep": _nested(70), "c": [[] for _ in range(10_001)]}, "depth"),  # too deep within the first 10,001
        ({"c": [[] for _ in range(10_001)], "deep": _nested(70)}, "containers"),  # 10,001 shallow ones first
    ],
    ids=["members-and-deep", "values-and-deep", "deep-then-containers", "containers-then-deep"],
)
def test_a_document_over_a_count_and_too_deep_is_refused_alike(engine: Engine, members: Any, code: str) -> None:
    """The text is checked for depth before members and values, and for containers only up
    to the first one over the limit: the dict path refuses for the same reason."""
    doc = {"facts_version": "1", **members}
    as_dict, as_text = outcome(engine, doc), outcome(engine, json.dumps(doc).encode())
    assert as_dict is not None and as_text is not None
    assert {c for _, c in as_dict} == {c for _, c in as_text} == {code}
