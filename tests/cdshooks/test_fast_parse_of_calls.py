"""CDS Hooks calls built from Synthea records take the strict parser's fast path (issue 15, item 7).

Synthea writes a 19-digit "Person seed" into every Patient's narrative. The fast path
sent any document holding 19 digits in a row to the exact path (orjson turns integers
beyond 64 bits into floats), so every call from a Synthea patient was parsed the slow
way, about 0.7 ms of a 4-6 ms call. Only digit runs outside strings can be such integers.
"""

from __future__ import annotations

import json

import pytest

from neurocds.errors import FactsValidationError
from neurocds.facts.fastparse import fast_parse
from neurocds.facts.strictjson import parse_strict

from .support import SYNTHEA_DATA, hook_request, synthea_prefetch


def _trusted(document: bytes) -> bool:
    return fast_parse(document.decode(), document, 64)[0]


def test_a_synthea_call_is_parsed_on_the_fast_path_to_the_exact_value() -> None:
    name = next(p.name for p in sorted(SYNTHEA_DATA.glob("*.json")) if b"Person seed" in p.read_bytes())
    patient_id, prefetch = synthea_prefetch(name)
    body = json.dumps(hook_request("patient-view", patient_id, prefetch)).encode()
    assert b"0" * 19 in body.translate(bytes.maketrans(b"123456789", b"000000000"))  # the seed is there
    assert _trusted(body)
    assert parse_strict(body) == json.loads(body)


@pytest.mark.parametrize(
    ("document", "trusted"),
    [
        (b'{"a": "seed 12345678901234567890123"}', True),
        (b'{"a": "quote \\" then 12345678901234567890123", "b": 1}', True),
        (b'{"a": "backslash \\\\", "b": "12345678901234567890123"}', True),
        (b'{"a": 12345678901234567890123}', False),
        (b'{"a": "\\\\", "b": 12345678901234567890123}', False),
        (b'{"a": "x\\"", "b": [1, 12345678901234567890123]}', False),
        (b'[123456789012345678901234567890, "12"]', False),
    ],
)
def test_only_long_digit_runs_outside_strings_take_the_exact_path(document: bytes, trusted: bool) -> None:
    assert _trusted(document) is trusted
    assert parse_strict(document) == json.loads(document)  # an integer beyond 64 bits stays an int
    assert trusted or any(isinstance(v, int) and v > 2**64 for v in _numbers(parse_strict(document)))


def _numbers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]


def test_a_duplicate_name_beside_a_long_string_run_is_still_refused() -> None:
    with pytest.raises(FactsValidationError):
        parse_strict(b'{"a": "12345678901234567890123", "a": 1}')
