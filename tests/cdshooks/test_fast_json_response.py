"""Cards are written by orjson, and the bytes are the compact JSON starlette itself writes."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.responses import JSONResponse

from neurocds.cdshooks.app import FastJSONResponse

CARDS: list[Any] = [
    {"cards": []},
    {
        "cards": [
            {
                "uuid": "0b6c1f0e-3c1e-4a1e-9d55-1d2f3c4b5a69",
                "summary": "Potassium 2.4 mmol/L (2026-11-20): severe hypokalaemia — “urgent” ✓",
                "indicator": "critical",
                "source": {"label": "neurocds", "url": "https://cds.example.org/evidence/x?y=1&z=<2>"},
                "suggestions": [
                    {"label": "Remove the draft", "actions": [{"type": "delete", "resourceId": "MedicationRequest/1"}]}
                ],
                "selectionBehavior": "at-most-one",
                "detail": "line 1\nline 2\t\"quoted\" \\ back\u2028slash",
                "score": 0.25,
                "count": 12345678901,
                "flag": True,
                "none": None,
            }
        ]
    },
]


@pytest.mark.parametrize("content", CARDS)
def test_fast_response_writes_the_bytes_starlette_writes(content: Any) -> None:
    fast = FastJSONResponse(content)
    assert fast.body == JSONResponse(content).body
    assert fast.headers["content-type"] == "application/json"


def test_what_orjson_cannot_write_falls_back_to_the_standard_library() -> None:
    content = {"cards": [{"summary": "x", "count": 2**70}]}  # beyond 64 bits: orjson refuses it
    assert FastJSONResponse(content).body == JSONResponse(content).body
