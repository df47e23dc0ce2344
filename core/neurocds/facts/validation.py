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
import difflib
import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from neurocds.errors import PackLoadError, Violation
from neurocds.facts.fastschema import Predicate, Unsupported, compile_schema, is_rfc3339_date_time
from neurocds.facts.plainjson import (
    MAX_VIOLATIONS,
    capped_error,
    describe_value,
    escape_pointer_token,
    is_plain_json,
    plain_json_problems,
    printable_unicode,
)
from neurocds.facts.regex_safety import UnsafePattern, check_schema_patterns
from neurocds.facts.rust_schema import compile_rust
from neurocds.facts.strictjson import ParseLimits, parse_strict, sha256_canonical

# jsonschema is imported where it is used: a valid document is judged by jsonschema-rs, so
# an engine whose schemas come from the load cache starts and answers without it.
if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import ValidationError

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
    from jsonschema import FormatChecker

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
    return f"only the members: {', '.join(names)}" if names else "no members"


def _unknown_member_message(key: Any, allowed: set[str]) -> str:
    """"member 'pateint' is not allowed here; did you mean 'patient'?" (when one is close)."""
    message = f"member {printable_unicode(repr(key))} is not allowed here"
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6) if len(str(key)) < 200 else []
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _map_error(error: ValidationError, room: int) -> list[Violation]:
    """Turn one ``jsonschema`` error into violations (several for a multi-member error, at most ``room``)."""
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


def _unknown_member_flood(schema: Any, doc: Any, pointer: str = "") -> list[Violation]:
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


def _format_names(schema: Any) -> set[str]:
    """Every string value of a ``format`` member anywhere in ``schema`` (a superset is harmless)."""
    if isinstance(schema, Mapping):
        found = {schema["format"]} if isinstance(schema.get("format"), str) else set()
        return found.union(*(_format_names(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_format_names(v) for v in schema))
    return set()


def _conforms(checker: FormatChecker, name: str, value: str) -> bool:
    return bool(checker.conforms(value, name))


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


def check_extension(name: str, schema: Any) -> Any:
    """A pack's extension schema checked on its own (valid 2020-12, no unsafe regex), as a plain copy.

    :raises PackLoadError: naming the pack and the JSON pointer of the problem.
    """
    return FactsValidator._extension(name, schema, {})


class FactsValidator:
    """Validates facts documents; build once (schema composition and checks are up front).

    :param base_schema: the facts JSON Schema (``load_schema("facts.schema.json")``).
        Never mutated: it is deep-copied.
    :param extension_schemas: pack name -> that pack's sub-schema (Draft 2020-12) for
        ``extensions.<pack name>``. A pack not listed may not appear under extensions.
    :param limits: size and depth limits for :meth:`parse_and_validate` and for the
        depth of Python documents passed to :meth:`validate`.
    :param schema_checked: skip the meta-schema check of the composed schema.
    :raises PackLoadError: a pack's sub-schema is not a valid 2020-12 schema, or the
        base schema has no ``extensions`` object to put it in.
    :raises jsonschema.exceptions.SchemaError: the base schema itself is invalid.
    """

    def __init__(
        self,
        base_schema: Mapping[str, Any],
        extension_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        limits: ParseLimits = ParseLimits(),  # noqa: B008 (frozen dataclass: safe default)
        *,
        schema_checked: bool = False,
    ) -> None:
        composed = _plain(base_schema)
        if extension_schemas:
            slot = composed.get("properties", {}).get(EXTENSIONS_KEY)
            if not isinstance(slot, dict):
                raise PackLoadError(f"base schema has no object member {EXTENSIONS_KEY!r}")
            members = slot.setdefault("properties", {})
            for name in sorted(extension_schemas):
                members[name] = self._extension(name, extension_schemas[name], members)
        if not schema_checked:  # the caller proved this exact schema passed before (a load cache)
            from jsonschema import Draft202012Validator

            Draft202012Validator.check_schema(composed)
        self._schema = composed
        self._limits = limits
        self._fast = self._compile(composed)

    @cached_property
    def _format_checker(self) -> FormatChecker:
        return make_format_checker()

    @cached_property
    def _validator(self) -> Draft202012Validator:
        """``jsonschema`` itself: it explains every invalid document (built on first need)."""
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self._schema, format_checker=self._format_checker)

    @staticmethod
    def _extension(name: str, schema: Any, taken: Mapping[str, Any]) -> Any:
        if not isinstance(name, str) or not name:
            raise PackLoadError(f"extension name must be a non-empty string, not {name!r}")
        if name in taken:
            raise PackLoadError("extension already defined by the base schema", pack=name)
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        sub = _plain(schema)
        if isinstance(sub, dict) and str(sub.get("$schema", _DIALECT)).rstrip("#") != _DIALECT:
            raise PackLoadError(f"facts_schema must use JSON Schema {_DIALECT}", pack=name)
        try:
            Draft202012Validator.check_schema(sub)
        except SchemaError as exc:
            where = _pointer(exc.absolute_path)
            raise PackLoadError(f"invalid facts_schema: {exc.message}", pack=name, pointer=where) from None
        try:
            check_schema_patterns(sub)
        except UnsafePattern as exc:
            raise PackLoadError(f"facts_schema: {exc}", pack=name, pointer=exc.pointer) from None
        if isinstance(sub, dict):
            sub.setdefault("$id", _EXTENSION_ID.format(quote(name, safe="")))
        return sub

    def _compile(self, composed: dict[str, Any]) -> Predicate | None:
        rust = compile_rust(composed, self._format_checks(composed), lambda doc: bool(self._validator.is_valid(doc)))
        if rust is not None:
            return rust
        from jsonschema import Draft202012Validator
        from referencing import Registry
        from referencing.jsonschema import DRAFT202012

        root_id = composed.get("$id")
        registry: Registry = Registry()
        if isinstance(root_id, str):
            registry = registry.with_resource(root_id, DRAFT202012.create_resource(composed))
        checker = self._format_checker

        def delegate(sub: Mapping[str, Any]) -> Predicate:
            # A subschema with its own $id resolves its references the same way standalone.
            return Draft202012Validator(sub, format_checker=checker, registry=registry).is_valid

        try:
            return compile_schema(composed, conforms=checker.conforms, delegate=delegate)
        except Unsupported:
            return None  # correct but slower: jsonschema judges every document

    def _format_checks(self, composed: Any) -> dict[str, Callable[[str], bool]]:
        """The checks of the formats ``composed`` names, the very functions ``jsonschema`` runs.

        ``date-time`` is this project's own (:func:`make_format_checker` registers it); any
        other format is judged by jsonschema's ``FormatChecker``, imported only then.
        """
        names = _format_names(composed)
        if names <= {"date-time"}:
            return dict.fromkeys(names, is_rfc3339_date_time)
        checker = self._format_checker
        return {name: functools.partial(_conforms, checker, name) for name in checker.checkers}

    @property
    def schema(self) -> dict[str, Any]:
        """A copy of the composed schema (base plus extension sub-schemas)."""
        return copy.deepcopy(self._schema)

    def is_valid(self, doc: Any) -> bool:
        """True exactly when :meth:`violations` would be empty; no explanation, less work."""
        if not is_plain_json(doc, self._limits.max_depth):
            return not self._violations(doc, known_plain=False)[0]
        if self._fast is not None:
            return self._fast(doc)
        return bool(self._validator.is_valid(doc))

    def violations(self, doc: Any) -> list[Violation]:
        """The violations in ``doc`` (empty when valid), sorted by pointer then code.

        At most :data:`~neurocds.facts.strictjson.MAX_VIOLATIONS`; :meth:`validate`'s
        error says when more were left out.
        """
        problems = self._violations(doc, known_plain=False)[0]
        return capped_error(problems).violations if problems else []

    def _violations(self, doc: Any, *, known_plain: bool) -> tuple[list[Violation], bool]:
        """Up to :data:`MAX_VIOLATIONS` + 1 violations (one more than is listed marks a cut),
        and whether ``doc`` is plain JSON data."""
        max_depth = self._limits.max_depth
        # parse_strict output is plain, finite and depth-checked: no need to walk it again.
        if not known_plain and not is_plain_json(doc, max_depth):
            # Like parse_strict on the same document's text: what JSON cannot carry is
            # reported alone, and the schema never sees values it cannot compare.
            return plain_json_problems(doc, max_depth), False
        if self._fast is not None and self._fast(doc):
            return [], True
        flood = _unknown_member_flood(self._schema, doc)
        if flood:
            return flood, True
        problems: list[Violation] = []
        seen: set[tuple[str, str]] = set()
        try:
            # jsonschema descends no deeper than the schema does, so an over-deep document
            # is safe here unless the schema is recursive ($ref): hence the guard.
            # Its errors come lazily: stopping at the bound keeps a refusal cheap.
            for error in self._validator.iter_errors(doc):
                for violation in _map_error(error, MAX_VIOLATIONS + 1 - len(problems)):
                    if (violation.pointer, violation.code) not in seen:
                        seen.add((violation.pointer, violation.code))
                        problems.append(violation)
                if len(problems) > MAX_VIOLATIONS:
                    break
        except RecursionError:
            problems.append(Violation("", "document nests too deeply to validate", code="depth"))
        return problems, True

    def validate(self, doc: Any) -> dict[str, Any]:
        """Return ``doc`` unchanged when valid.

        :raises FactsValidationError: with every violation, and ``facts_sha256`` when the
            document can be canonicalised.
        """
        return self._validate(doc, known_plain=False)

    def _validate(self, doc: Any, *, known_plain: bool) -> dict[str, Any]:
        problems, plain = self._violations(doc, known_plain=known_plain)
        if problems:
            # A document JSON cannot carry has no canonical form, so no hash (as parse_strict).
            raise capped_error(problems, facts_sha256=(lambda: _hash_or_none(doc)) if plain else None)
        valid: dict[str, Any] = doc  # the schema's top level is an object
        return valid

    def parse_and_validate(self, data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Strictly parse ``data`` (bytes or text) then validate; any other value is validated as is.

        A Mapping that is not a ``dict`` is first copied into plain dicts and lists.
        """
        if isinstance(data, bytes | bytearray | memoryview | str):
            return self._validate(parse_strict(data, self._limits), known_plain=True)
        # Any other value is judged as the document it is (a list, None, 42: the wrong
        # type at "/"), exactly as the same value written as JSON text would be.
        doc = _plain(data) if isinstance(data, Mapping) and not isinstance(data, dict) else data
        return self.validate(doc)
