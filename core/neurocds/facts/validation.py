"""Validate facts documents against the facts JSON Schema plus the packs' extension schemas.

A document is valid when (a) it is plain JSON data: ``dict`` with string keys,
``list``, ``str``, ``int``, finite ``float``, ``bool``, ``None``, nested no deeper than
``ParseLimits.max_depth``; and (b) ``jsonschema``'s Draft 2020-12 validator, with a
real ``date-time`` check, accepts it against the composed schema. jsonschema-rs
(:mod:`neurocds.facts.rust_schema`, with jsonschema's format checks) answers the common
"valid" case, or where it is unavailable a compiled check (:mod:`neurocds.facts.fastschema`); every invalid
document is explained by ``jsonschema`` itself, with every violation at once, in the
terms of :mod:`neurocds.facts.violations`.

Messages never contain values from the document (the audit log keeps messages);
only ``Violation.found`` does, and callers that log must drop it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from neurocds.errors import PackLoadError, Violation
from neurocds.facts.fastschema import Predicate, Unsupported, compile_schema, is_rfc3339_date_time
from neurocds.facts.plainjson import (
    MAX_VIOLATIONS,
    capped_error,
    is_plain_json,
    over_structure_limit,
    plain_json_problems,
)
from neurocds.facts.readonly import plain_copy
from neurocds.facts.regex_safety import UnsafePattern, check_schema_patterns
from neurocds.facts.rust_schema import compile_rust
from neurocds.facts.strictjson import (
    ParseLimits,
    containers_violation,
    members_violation,
    parse_strict,
    sha256_canonical,
    values_violation,
)
from neurocds.facts.validated import ValidatedFacts
from neurocds.facts.violations import map_error, pointer_of, unknown_member_flood

# jsonschema is imported where it is used: a valid document is judged by jsonschema-rs, so
# an engine whose schemas come from the load cache starts and answers without it.
if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker

__all__ = ["EXTENSIONS_KEY", "FactsValidator", "ValidatedFacts", "make_format_checker"]

#: Member of the facts document under which each pack owns ``<pack-name>``.
EXTENSIONS_KEY = "extensions"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Each pack sub-schema becomes a schema resource of its own, so that its "#/..."
# references resolve inside it once it is embedded in the composed schema.
_EXTENSION_ID = "https://neurocds.invalid/schemas/extensions/{}.schema.json"


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


def _format_names(schema: Any, found: set[str] | None = None) -> set[str]:
    """Every string value of a ``format`` member anywhere in ``schema`` (a superset is harmless)."""
    found = set() if found is None else found  # one set filled on the way: no union per node
    if isinstance(schema, Mapping):
        if isinstance(schema.get("format"), str):
            found.add(schema["format"])
        for value in schema.values():
            _format_names(value, found)
    elif isinstance(schema, list):
        for value in schema:
            _format_names(value, found)
    return found


def _conforms(checker: FormatChecker, name: str, value: str) -> bool:
    return bool(checker.conforms(value, name))


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
    :param limits: size, depth and container limits for :meth:`parse_and_validate`; depth
        and containers also bound the Python documents passed to :meth:`validate`.
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
        composed = plain_copy(base_schema)
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

        sub = plain_copy(schema)
        if isinstance(sub, dict) and str(sub.get("$schema", _DIALECT)).rstrip("#") != _DIALECT:
            raise PackLoadError(f"facts_schema must use JSON Schema {_DIALECT}", pack=name)
        try:
            Draft202012Validator.check_schema(sub)
        except SchemaError as exc:
            where = pointer_of(exc.absolute_path)
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
        copied: dict[str, Any] = plain_copy(self._schema)  # plain data (dicts, lists, leaves): the same copy, faster
        return copied

    def is_valid(self, doc: Any) -> bool:
        """True exactly when :meth:`violations` would be empty; no explanation, less work."""
        limits = self._limits
        if not is_plain_json(doc, limits.max_depth, limits.max_containers, limits.max_members, limits.max_values):
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
        limits = self._limits
        max_depth, max_containers, max_members = limits.max_depth, limits.max_containers, limits.max_members
        max_values = limits.max_values
        # parse_strict output is plain, finite and depth-checked: no need to walk it again.
        if not known_plain and not is_plain_json(doc, max_depth, max_containers, max_members, max_values):
            # The limits the JSON text is held to (brackets, members, values), checked first as there.
            over = over_structure_limit(doc, max_depth, max_containers, max_members, max_values)
            if over == "containers" and max_containers is not None:
                return [containers_violation(max_containers)], False
            if over == "members" and max_members is not None:
                return [members_violation(max_members)], False
            if over == "values" and max_values is not None:
                return [values_violation(max_values)], False
            # Like parse_strict on the same document's text: what JSON cannot carry is
            # reported alone, and the schema never sees values it cannot compare.
            unfit = plain_json_problems(doc, max_depth)
            if unfit:
                return unfit, False
            # Nothing JSON cannot carry, only subclasses (numpy.str_, a str Enum): the
            # schema still judges the document, as it would its JSON text.
        if self._fast is not None and self._fast(doc):
            return [], True
        flood = unknown_member_flood(self._schema, doc)
        if flood:
            return flood, True
        problems: list[Violation] = []
        seen: set[tuple[str, str]] = set()
        try:
            # jsonschema descends no deeper than the schema does, so an over-deep document
            # is safe here unless the schema is recursive ($ref): hence the guard.
            # Its errors come lazily: stopping at the bound keeps a refusal cheap.
            for error in self._validator.iter_errors(doc):
                for violation in map_error(error, MAX_VIOLATIONS + 1 - len(problems)):
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

    def parse_valid(self, data: bytes | str) -> ValidatedFacts:
        """Strictly parse and validate ``data`` once: the document, read-only, which
        :meth:`parse_and_validate` (and so ``Engine.evaluate``) then takes as it is.

        :raises FactsValidationError: as :meth:`parse_and_validate`.
        """
        return ValidatedFacts._vouched(self._validate(parse_strict(data, self._limits), known_plain=True), self)

    def document_to_evaluate(self, data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`parse_and_validate` for the engine, which only reads the document: this
        validator's own :class:`ValidatedFacts` is given as it is, without a copy. For the
        engine only: handed to a caller, that document could be changed after it was validated."""
        if type(data) is ValidatedFacts and data._validator is self:
            return data._document
        return self.parse_and_validate(data)

    def parse_and_validate(self, data: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
        """Strictly parse ``data`` (bytes or text) then validate; any other value is validated as is.

        A Mapping that is not a ``dict`` is first copied into plain dicts and lists.
        """
        if isinstance(data, bytes | bytearray | memoryview | str):
            return self._validate(parse_strict(data, self._limits), known_plain=True)
        if type(data) is ValidatedFacts and data._validator is self:
            return data.to_dict()  # this validator's own verdict: a copy, as the document stays read-only
        # Any other value is judged as the document it is (a list, None, 42: the wrong
        # type at "/"), exactly as the same value written as JSON text would be.
        doc = plain_copy(data) if isinstance(data, Mapping) and not isinstance(data, dict) else data
        return self.validate(doc)
