"""Validate facts documents against the facts JSON Schema plus the packs' extension schemas.

A document is valid when (a) it is plain JSON data: ``dict`` with string keys,
``list``, ``str``, ``int``, finite ``float``, ``bool``, ``None``, nested no deeper than
``ParseLimits.max_depth``; and (b) ``jsonschema``'s Draft 2020-12 validator, with a
real ``date-time`` check, accepts it against the composed schema. jsonschema-rs
(:mod:`neurocds.facts.rust_schema`, with jsonschema's format checks) answers the common
"valid" case, or where it is unavailable a compiled check (:mod:`neurocds.facts.fastschema`); every invalid
document is explained by ``jsonschema`` itself, with every violation at once.

Messages never contain values from the document (the audit log keeps messages);
only ``Violation.found`` does, and callers that log must drop it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from neurocds.errors import FactsValidationError, PackLoadError, Violation
from neurocds.facts.fastschema import Predicate, Unsupported, compile_schema, is_rfc3339_date_time
from neurocds.facts.rust_schema import compile_rust
from neurocds.facts.strictjson import (
    ParseLimits,
    describe_value,
    escape_pointer_token,
    is_plain_json,
    parse_strict,
    plain_json_problems,
    sha256_canonical,
    violation_sort_key,
)

__all__ = ["EXTENSIONS_KEY", "FactsValidator", "make_format_checker"]

#: Member of the facts document under which each pack owns ``<pack-name>``.
EXTENSIONS_KEY = "extensions"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Each pack sub-schema becomes a schema resource of its own, so that its "#/..."
# references resolve inside it once it is embedded in the composed schema.
_EXTENSION_ID = "https://neurocds.invalid/schemas/extensions/{}.schema.json"
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


def make_format_checker() -> FormatChecker:
    """A ``FormatChecker`` whose ``date-time`` check really runs (RFC 3339, offset required).

    jsonschema checks ``date-time`` only when an optional package is installed and
    otherwise passes every string; registering our own function on this instance
    (not globally) makes the check unconditional without a new dependency.
    """
    checker = FormatChecker()
    checker.checks("date-time")(is_rfc3339_date_time)
    return checker


def _pointer(path: Any) -> str:
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
    if not names:
        return "no members"
    shown = ", ".join(names[:8])
    return f"only the members: {shown}" + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")


def _map_error(error: ValidationError) -> list[Violation]:
    """Turn one ``jsonschema`` error into violations (several for a multi-member error)."""
    pointer = _pointer(error.absolute_path)
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
        return [
            Violation(
                pointer=f"{pointer}/{escape_pointer_token(key)}",
                message=f"member {key!r} is not allowed here",
                expected=_members_text(schema),
                found=describe_value(member),
                code="additional_property",
            )
            for key, member in value.items()
            if key not in allowed and not any(re.search(p, str(key)) for p in patterns)
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


def _plain(value: Any) -> Any:
    """Deep copy with every Mapping made a dict and every tuple a list (schemas, documents)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def _hash_or_none(doc: Any) -> str | None:
    try:
        return sha256_canonical(doc)
    except (ValueError, TypeError, RecursionError):
        return None


class FactsValidator:
    """Validates facts documents; build once (schema composition and checks are up front).

    :param base_schema: the facts JSON Schema (``load_schema("facts.schema.json")``).
        Never mutated: it is deep-copied.
    :param extension_schemas: pack name -> that pack's sub-schema (Draft 2020-12) for
        ``extensions.<pack name>``. A pack not listed may not appear under extensions.
    :param limits: size and depth limits for :meth:`parse_and_validate` and for the
        depth of Python documents passed to :meth:`validate`.
    :raises PackLoadError: a pack's sub-schema is not a valid 2020-12 schema, or the
        base schema has no ``extensions`` object to put it in.
    :raises jsonschema.exceptions.SchemaError: the base schema itself is invalid.
    """

    def __init__(
        self,
        base_schema: Mapping[str, Any],
        extension_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        limits: ParseLimits = ParseLimits(),  # noqa: B008 (frozen dataclass: safe default)
    ) -> None:
        composed = _plain(base_schema)
        if extension_schemas:
            slot = composed.get("properties", {}).get(EXTENSIONS_KEY)
            if not isinstance(slot, dict):
                raise PackLoadError(f"base schema has no object member {EXTENSIONS_KEY!r}")
            members = slot.setdefault("properties", {})
            for name in sorted(extension_schemas):
                members[name] = self._extension(name, extension_schemas[name], members)
        Draft202012Validator.check_schema(composed)
        self._schema = composed
        self._limits = limits
        self._format_checker = make_format_checker()
        self._validator = Draft202012Validator(composed, format_checker=self._format_checker)
        self._fast = self._compile(composed)

    @staticmethod
    def _extension(name: str, schema: Any, taken: Mapping[str, Any]) -> Any:
        if not isinstance(name, str) or not name:
            raise PackLoadError(f"extension name must be a non-empty string, not {name!r}")
        if name in taken:
            raise PackLoadError("extension already defined by the base schema", pack=name)
        sub = _plain(schema)
        if isinstance(sub, dict) and str(sub.get("$schema", _DIALECT)).rstrip("#") != _DIALECT:
            raise PackLoadError(f"facts_schema must use JSON Schema {_DIALECT}", pack=name)
        try:
            Draft202012Validator.check_schema(sub)
        except SchemaError as exc:
            where = _pointer(exc.absolute_path)
            raise PackLoadError(f"invalid facts_schema: {exc.message}", pack=name, pointer=where) from None
        if isinstance(sub, dict):
            sub.setdefault("$id", _EXTENSION_ID.format(quote(name, safe="")))
        return sub

    def _compile(self, composed: dict[str, Any]) -> Predicate | None:
        root_id = composed.get("$id")
        registry: Registry = Registry()
        if isinstance(root_id, str):
            registry = registry.with_resource(root_id, DRAFT202012.create_resource(composed))
        checker = self._format_checker

        def delegate(sub: Mapping[str, Any]) -> Predicate:
            # A subschema with its own $id resolves its references the same way standalone.
            return Draft202012Validator(sub, format_checker=checker, registry=registry).is_valid

        rust = compile_rust(composed, checker, self._validator.is_valid)
        if rust is not None:
            return rust
        try:
            return compile_schema(composed, conforms=checker.conforms, delegate=delegate)
        except Unsupported:
            return None  # correct but slower: jsonschema judges every document

    @property
    def schema(self) -> dict[str, Any]:
        """A copy of the composed schema (base plus extension sub-schemas)."""
        return copy.deepcopy(self._schema)

    def is_valid(self, doc: Any) -> bool:
        """True exactly when :meth:`violations` would be empty; no explanation, less work."""
        if not is_plain_json(doc, self._limits.max_depth):
            return not self._violations(doc, known_plain=False)
        if self._fast is not None:
            return self._fast(doc)
        return bool(self._validator.is_valid(doc))

    def violations(self, doc: Any) -> list[Violation]:
        """Every violation in ``doc`` (empty when valid), sorted by pointer then code."""
        return self._violations(doc, known_plain=False)

    def _violations(self, doc: Any, *, known_plain: bool) -> list[Violation]:
        max_depth = self._limits.max_depth
        # parse_strict output is plain, finite and depth-checked: no need to walk it again.
        if known_plain or is_plain_json(doc, max_depth):
            if self._fast is not None and self._fast(doc):
                return []
            problems: list[Violation] = []
        else:
            problems = plain_json_problems(doc, max_depth)
        try:
            # jsonschema descends no deeper than the schema does, so an over-deep document
            # is safe here unless the schema is recursive ($ref): hence the guard.
            for error in self._validator.iter_errors(doc):
                problems.extend(_map_error(error))
        except RecursionError:
            problems.append(Violation("", "document nests too deeply to validate", code="depth"))
        unique = {(v.pointer, v.code): v for v in reversed(problems)}
        return sorted(unique.values(), key=violation_sort_key)

    def validate(self, doc: Any) -> dict[str, Any]:
        """Return ``doc`` unchanged when valid.

        :raises FactsValidationError: with every violation, and ``facts_sha256`` when the
            document can be canonicalised.
        """
        return self._validate(doc, known_plain=False)

    def _validate(self, doc: Any, *, known_plain: bool) -> dict[str, Any]:
        problems = self._violations(doc, known_plain=known_plain)
        if problems:
            raise FactsValidationError(problems, facts_sha256=_hash_or_none(doc))
        valid: dict[str, Any] = doc  # the schema's top level is an object
        return valid

    def parse_and_validate(self, data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Strictly parse ``data`` (bytes or text) then validate; a Mapping is validated as is.

        A Mapping that is not a ``dict`` is first copied into plain dicts and lists.
        """
        if isinstance(data, bytes | bytearray | memoryview | str):
            return self._validate(parse_strict(data, self._limits), known_plain=True)
        if isinstance(data, Mapping):
            doc = data if isinstance(data, dict) else _plain(data)
        else:
            raise TypeError(f"facts must be bytes, str or a mapping, not {type(data).__name__}")
        return self.validate(doc)
