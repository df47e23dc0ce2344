"""Violations from ``jsonschema``'s errors: one line each, with a pointer, the rule broken and a code.

Split from :mod:`neurocds.facts.validation`, which decides *whether* a document is
valid; this module says *how* it is not, in the terms a caller can act on: the JSON
pointer, a short message (never a value from the document: the audit log keeps
messages), what was expected, what was found, and a stable code. Unknown members get
a "did you mean" from the schema's own names, and a flood of them is listed without
``jsonschema`` (which would sort them all first), so refusing stays cheap.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from neurocds.errors import Violation

if TYPE_CHECKING:  # only named in annotations: importing jsonschema is left to the first invalid document
    from jsonschema.exceptions import ValidationError

from neurocds.facts.plainjson import MAX_VIOLATIONS, describe_value, escape_pointer_token, printable_unicode

__all__ = ["map_error", "pointer_of", "unknown_member_flood"]

_RANGE_WORDS = {
    "minimum": "below the minimum of {}",
    "maximum": "above the maximum of {}",
    "exclusiveMinimum": "not greater than {}",
    "exclusiveMaximum": "not less than {}",
    "minLength": "shorter than {} characters",
    "maxLength": "longer than {} characters",
    "minItems": "fewer than {} items",
    "maxItems": "more than {} items",
    "minProperties": "fewer than {} members",
    "maxProperties": "more than {} members",
    "multipleOf": "not a multiple of {}",
}
_CODES = {
    "additionalProperties": "additional_property",
    "unevaluatedProperties": "additional_property",
    "uniqueItems": "unique",
    **dict.fromkeys(_RANGE_WORDS, "range"),
}



def pointer_of(path: Any) -> str:
    return "".join(f"/{escape_pointer_token(token)}" for token in path)


def _bounds(low: Any, high: Any, xlow: Any = None, xhigh: Any = None) -> str:
    if low is not None and high is not None:
        return f"{low}..{high}"
    parts = [f"{op} {v}" for op, v in ((">=", low), ("<=", high), (">", xlow), ("<", xhigh))]
    return " and ".join(p for p, v in zip(parts, (low, high, xlow, xhigh), strict=True) if v is not None)


def _expected(schema: Any) -> str:
    """Short statement of what ``schema`` requires ("integer 0..5", "one of: a, b")."""
    if not isinstance(schema, Mapping):
        return "any value" if schema is not False else "no value at all"
    if "const" in schema:
        return f"exactly {json.dumps(schema['const'], ensure_ascii=False)}"
    if "enum" in schema:
        names = [v if isinstance(v, str) else json.dumps(v) for v in schema["enum"]]
        return "one of: " + ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    kind = schema.get("type", "value")
    parts = [" or ".join(kind) if isinstance(kind, list) else kind]
    get = schema.get
    number = _bounds(get("minimum"), get("maximum"), get("exclusiveMinimum"), get("exclusiveMaximum"))
    for text, unit in (
        (number, ""),
        (_bounds(get("minLength"), get("maxLength")), " characters"),
        (_bounds(get("minItems"), get("maxItems")), " items"),
    ):
        if text:
            parts.append(f"{text}{unit}")
    if "format" in schema:
        fmt = schema["format"]
        parts.append("RFC 3339 date-time with time zone" if fmt == "date-time" else f"format {fmt}")
    if "pattern" in schema:
        parts.append(f"matching /{schema['pattern']}/")
    return " ".join(parts)


def _code(keyword: object) -> str:
    if not isinstance(keyword, str):
        return "forbidden"  # a `false` subschema: nothing is allowed there
    if keyword in _CODES:
        return _CODES[keyword]
    # Other keywords keep their own name, snake_cased, as a stable code.
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in keyword).lstrip("$")


def _members_text(schema: Mapping[str, Any]) -> str:
    names = sorted(schema.get("properties", {}))
    return f"only the members: {', '.join(names)}" if names else "no members"


def _unknown_member_message(key: Any, allowed: set[str]) -> str:
    """"member 'pateint' is not allowed here; did you mean 'patient'?" (when one is close)."""
    message = f"member {printable_unicode(repr(key))} is not allowed here"
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6) if len(str(key)) < 200 else []
    return f"{message}; did you mean {close[0]!r}?" if close else message


def map_error(error: ValidationError, room: int) -> list[Violation]:
    """Turn one ``jsonschema`` error into violations (several for a multi-member error, at most ``room``)."""
    pointer = pointer_of(error.absolute_path)
    keyword, schema, value = error.validator, error.schema, error.instance
    code = _code(keyword)
    if keyword == "required" and isinstance(value, dict) and isinstance(schema, Mapping):
        props = schema.get("properties", {})
        return [
            Violation(
                pointer=f"{pointer}/{escape_pointer_token(name)}",
                message=f"required member {name!r} is missing",
                expected=_expected(props.get(name, True)),
                found="absent",
                code="required",
            )
            for name in (error.validator_value if isinstance(error.validator_value, list) else ())
            if name not in value
        ]
    if (
        keyword == "additionalProperties"
        and error.validator_value is False
        and isinstance(value, dict)
        and isinstance(schema, Mapping)
    ):
        allowed = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        unknown = (
            (key, member)
            for key, member in value.items()
            if key not in allowed and not any(re.search(p, str(key)) for p in patterns)
        )
        expected = _members_text(schema)
        return [
            Violation(
                pointer=f"{pointer}/{escape_pointer_token(key)}",
                message=_unknown_member_message(key, allowed),
                expected=expected,
                found=describe_value(member),
                code="additional_property",
            )
            for key, member in itertools.islice(unknown, room)
        ]
    expected = _expected(schema)
    if code == "type":
        message = f"wrong type: expected {expected}"
    elif code == "range" and keyword in _RANGE_WORDS:
        message = f"value is {_RANGE_WORDS[keyword].format(error.validator_value)}"
    elif code in ("enum", "const"):
        message = f"value is not allowed: expected {expected}"
    elif code == "format":
        message = f"not a valid {error.validator_value}"
    else:
        message = f"value fails the schema rule {keyword!r}"
    return [Violation(pointer, message, expected, describe_value(value), code)]


def unknown_member_flood(schema: Any, doc: Any, pointer: str = "") -> list[Violation]:
    """More than :data:`MAX_VIOLATIONS` unknown members, found without ``jsonschema`` (else ``[]``).

    ``jsonschema`` sorts and lists every unknown member of an object before yielding
    its error, so one object of 100,000 made-up members costs it a long time. This
    follows only ``properties`` (the objects the schema spells out, never arrays) and
    stops at the bound, so its cost does not grow with the document.
    """
    found: list[Violation] = []
    stack = [(schema, doc, pointer)]
    while stack and len(found) <= MAX_VIOLATIONS:
        node_schema, node, where = stack.pop()
        if not isinstance(node_schema, Mapping) or not isinstance(node, dict):
            continue
        props = node_schema.get("properties", {})
        if node_schema.get("additionalProperties") is False and not node_schema.get("patternProperties"):
            names, unknown = set(props), ((k, v) for k, v in node.items() if k not in props)
            for key, member in itertools.islice(unknown, MAX_VIOLATIONS + 1 - len(found)):
                found.append(
                    Violation(
                        f"{where}/{escape_pointer_token(key)}",
                        _unknown_member_message(key, names),
                        _members_text(node_schema),
                        describe_value(member),
                        "additional_property",
                    )
                )
        known = (name for name in props if name in node)
        stack.extend((props[name], node[name], f"{where}/{escape_pointer_token(name)}") for name in known)
    return found if len(found) > MAX_VIOLATIONS else []
