"""One reader of a facts document's patient id, for the CLI, population runs and the audit log."""

from __future__ import annotations

from typing import Any

import pytest

from neurocds.facts.patient import patient_id_of


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"patient": {"id": "p-1"}}, "p-1"),
        (b'{"facts_version":"1","patient":{"id":"p-2"}}', "p-2"),
        ('{"patient": {"id": "p-3"}}', "p-3"),
        (bytearray(b'{"patient":{"id":"p-4"}}'), "p-4"),
        (b'{"patient":{"id":"first"},"patient":{"id":"last"}}', "last"),  # refused by the strict parse, still named
        (b'{"patient":{"id":"p-5"},"strength":{"left_leg":"x"}}', "p-5"),  # invalid elsewhere: still named
        (b"{not json", None),
        (b"", None),
        ({"patient": {"id": 7}}, None),  # not a string: no id rather than a made-up one
        ({"patient": "p-6"}, None),
        ({"facts_version": "1"}, None),
        ([{"patient": {"id": "p-7"}}], None),
        (None, None),
    ],
)
def test_patient_id_of(facts: Any, expected: str | None) -> None:
    assert patient_id_of(facts) == expected
