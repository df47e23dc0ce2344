"""``json_text`` writes what ``json.dumps(indent=..., ensure_ascii=False)`` writes, only cheaper."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import pytest
from answer_corpus import documents

from neurocds import Engine
from neurocds.facts.canonical import json_text
from neurocds_packs import BUILTIN_PACKS


def reference(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=False)


def test_every_corpus_result_is_written_exactly_as_json_dumps_wrote_it() -> None:
    engine = Engine(packs=BUILTIN_PACKS)
    docs = list(documents())[::3]  # a third of the corpus: every kind of document, in a third of the time
    for _, doc in docs:
        result = engine.evaluate(doc)
        assert result.to_json() == reference(result.to_dict())
    assert len(docs) == 321


TRICKY: list[Any] = [
    {"small": [1e-05, 0.00001234, 1e-4, 0.0001, 5e-324, -2.5e-07], "big": [1e16, 1.5e300, -1e22, 123456789012345.6]},
    {"plain": [0.1, 0.5, 2.0, -0.0, 0.0, 3.141592653589793, 1234567890123456.0, 100.25]},
    {"ints": [0, -1, 2**53, 2**63 - 1, -(2**63), 2**64, -(2**70)]},
    {"text": "control \x00\x01\x08\x0c\x1f\x7f tab\t nl\n cr\r quote\" back\\ slash/ é 漢字 \u2028 \U0001f600"},
    {"keys": {"": 1, "é": [], "x": {}, "nested": {"a": [[], {}, [None, True, False]]}}},
    {"null": None, "text with 1e5 and null": "1e-05 0.0000"},
    {1: "int key", "2": "str key"},
    {"surrogate": "\ud800"},
    {"tuple": (1, 2), "bool": True},
    [],
    {},
    "just text",
    3.5e-10,
]


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
@pytest.mark.parametrize("indent", [2, None, 4])
def test_tricky_values_match_json_dumps(value: Any, indent: int | None) -> None:
    assert json_text(value, indent=indent) == reference(value, indent)


def test_what_json_dumps_refuses_is_refused_the_same_way() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    for value in (Point(1), datetime.datetime(2026, 12, 3), {"s": {1, 2}}):
        with pytest.raises(TypeError):
            reference(value)
        with pytest.raises(TypeError):
            json_text(value)


def test_results_take_the_fast_path_despite_hex_digests_and_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    # Digests and uuids are full of "3e5"-like runs; they are strings, so orjson's text stands.
    engine = Engine(packs=BUILTIN_PACKS)
    result = engine.evaluate(next(iter(documents()))[1])
    expected = reference(result.to_dict())
    from neurocds.facts import canonical

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("json.dumps was used")

    monkeypatch.setattr(canonical.json, "dumps", refuse)
    assert canonical.json_text(result.to_dict()) == expected
    assert canonical.json_text({"id": "3e5f-0e1", "sha": "ab0e12", "note": "1e-05 in text"}) is not None
