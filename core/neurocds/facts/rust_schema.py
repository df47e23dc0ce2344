"""The yes/no schema check by jsonschema-rs, with jsonschema's own format checks.

jsonschema-rs answers "valid?" about ten times cheaper than the hand-written
compiled check in :mod:`neurocds.facts.fastschema` (15k against 167k instructions
on a benchmark document); ``jsonschema`` still explains every invalid document.
Format checks are the very functions of the ``FormatChecker`` jsonschema uses (our
RFC 3339 ``date-time`` among them), so the two libraries cannot disagree on a
format; tests/test_fastschema.py and tests/core/test_rust_schema.py keep them in
agreement on generated valid and invalid documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Any], bool]


def compile_rust(
    schema: Mapping[str, Any], formats: Mapping[str, Callable[[str], bool]], fallback: Predicate
) -> Predicate | None:
    """A predicate for ``schema``, or None when jsonschema-rs is missing or refuses the schema.

    ``formats``: the check of each format the schema names (jsonschema's own functions).
    ``fallback`` answers a document jsonschema-rs cannot take (an integer beyond its
    range raises instead of answering).
    """
    try:
        import jsonschema_rs
    except ImportError:
        return None

    try:
        validator = jsonschema_rs.validator_for(dict(schema), formats=dict(formats), validate_formats=True)
    except Exception:  # a schema it cannot compile (an unsupported $ref): the slower checks answer
        return None
    rust_is_valid = validator.is_valid

    def is_valid(doc: Any) -> bool:
        try:
            return bool(rust_is_valid(doc))
        except (ValueError, OverflowError, TypeError):
            return fallback(doc)

    return is_valid
