"""Which patient a facts document names: its ``patient.id``, read without judging the document.

The one reader for every caller that needs the id beside the engine: the CLI's text
report, population result lines and error entries, the audit log's pseudonym. It
takes a parsed document or its JSON bytes/text, and also serves documents the engine
refuses (a duplicate member, a wrong type elsewhere), so that an error entry still
names its patient when the document says who it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def patient_id_of(facts: Any) -> str | None:
    """``facts["patient"]["id"]`` when it is a string, else ``None`` (also for text that is not JSON).

    Bytes and text are parsed leniently (a repeated member: the last one counts); a
    caller holding the parsed document should pass that instead of parsing twice.
    """
    if isinstance(facts, bytes | bytearray | memoryview | str):
        try:
            facts = orjson.loads(facts)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(facts, Mapping):
        return None
    patient = facts.get("patient")
    patient_id = patient.get("id") if isinstance(patient, Mapping) else None
    return patient_id if isinstance(patient_id, str) else None
