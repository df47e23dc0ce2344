"""Read rule files (data), validate them, and build typed :class:`Rule` objects.

Every problem is a :class:`~neurocds.errors.PackLoadError` naming the pack, the
file and the JSON pointer of the offending rule. Values in rules are checked
against the facts schema, so a rule can never compare a number field with a
string (durable_rules would silently compare them as strings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neurocds.errors import PackLoadError
from neurocds.resources import load_schema, schemas_dir
from neurocds.rules.cache import LoadCache
from neurocds.rules.conditions import (
    NUMERIC_OPS,
    All,
    AnyOf,
    Condition,
    DerivedRef,
    FactTest,
    FindingRef,
    ItemTest,
    Not,
)

if TYPE_CHECKING:
    import jsonschema

URGENCY_RANK = {"emergency": 4, "urgent": 3, "routine": 2, "info": 1, "none": 0}
RULESET_FORMAT = "neurocds-ruleset/1"
RULESET_SCHEMA = "ruleset.schema.json"


@dataclass(frozen=True)
class Evidence:
    source: str
    citation: str


@dataclass(frozen=True)
class WorsenedBy:
    """Classes of list items (``medications[].class`` in the facts) that can worsen a finding, and why.

    Pack data for the service, never part of evaluation: a draft order of one of these
    classes is offered for removal on the card of the fired rule.
    """

    classes: tuple[str, ...]
    rationale: str


# Where ``worsened_by`` classes are looked up in the facts schema: the list and its item field.
WORSENING_LIST, WORSENING_FIELD = "medications", "class"


@dataclass(frozen=True)
class Rule:
    """One declarative rule, ready to compile. ``concludes`` is ``(kind, key, value)``."""

    id: str
    pack: str
    title: str
    when: Condition
    kind: str  # "finding" | "derive"
    key: str  # finding id or derived-fact name
    value: Any
    urgency: str | None
    detail: str
    rationale: str
    recommendations: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    file: str
    pointer: str
    worsened_by: WorsenedBy | None = None

    @property
    def conclusion(self) -> tuple[str, str, Any]:
        return (self.kind, self.key, self.value if self.kind == "derive" else True)

    def references(self) -> frozenset[tuple[str, str, Any]]:
        return self._references

    @cached_property
    def _references(self) -> frozenset[tuple[str, str, Any]]:
        # Once per rule: loading asks again for every pack added after this rule's own.
        return frozenset(node.key for node in self.when.walk() if isinstance(node, DerivedRef | FindingRef))


@lru_cache(maxsize=1)
def _unique_key_loader() -> type:
    """Safe YAML loader that refuses duplicate keys (PyYAML silently keeps the last).

    Built on first need: a rule file from the load cache is never parsed, so PyYAML is
    not even imported. The libyaml parser where PyYAML has it (several times faster); the
    constructors, including the duplicate-key check, stay the safe Python ones.
    """
    import yaml

    def construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if key in mapping:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    loader: type = type("UniqueKeyLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)  # type: ignore[attr-defined]  # a class made at run time is opaque to the checker
    return loader


@lru_cache(maxsize=1)
def _ruleset_validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # only when a rule file is not in the cache: it is most of a cold start

    return jsonschema.Draft202012Validator(load_schema(RULESET_SCHEMA))


@lru_cache(maxsize=1)
def _ruleset_schema_bytes() -> bytes:
    return (schemas_dir() / RULESET_SCHEMA).read_bytes()


@dataclass(frozen=True)
class RuleFile:
    """A rule file as read once: the checked document and the exact bytes it was parsed from.

    ``data`` is what every later use of the file's content goes by (the pack's content hash,
    which keys the compile check): a second read could see other bytes.
    """

    path: Path
    doc: dict[str, Any]
    data: bytes


def read_rule_file(path: Path, pack: str, cache: LoadCache | None = None) -> RuleFile:
    """Read a YAML or JSON rule file once, parse it and validate it against the ruleset schema.

    With ``cache``, a file whose bytes (with the schema's and neurocds' version) were
    parsed and validated before is taken from it, parsed and checked by neither.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PackLoadError(f"cannot read rule file: {exc}", pack=pack, file=str(path)) from exc
    # Hashed here for the cache key only; the pack's content hash reads ``data`` itself.
    key = ""
    if cache is not None:
        key = LoadCache.key(_ruleset_schema_bytes(), path.suffix.encode(), hashlib.sha256(data).digest())
    doc: Any = cache.get("rule-files", key) if cache is not None else None
    if doc is None:
        doc = _parse_and_check(path, data, pack)
        if cache is not None:
            cache.put("rule-files", key, doc)
    if doc["pack"] != pack:
        raise PackLoadError(f"rule file declares pack {doc['pack']!r}", pack=pack, file=str(path), pointer="/pack")
    return RuleFile(path, doc, data)  # the schema requires an object: doc is a dict


def _parse_and_check(path: Path, data: bytes, pack: str) -> Any:
    import yaml

    try:
        text = data.decode("utf-8")
        doc: Any = json.loads(text) if path.suffix == ".json" else yaml.load(text, _unique_key_loader())
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise PackLoadError(f"cannot read rule file: {exc}", pack=pack, file=str(path)) from exc
    validator = _ruleset_validator()
    errors = sorted(validator.iter_errors(doc), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        from jsonschema.exceptions import best_match

        best = best_match(errors)
        pointer = "/" + "/".join(str(p) for p in best.absolute_path)
        raise PackLoadError(
            f"rule file does not match ruleset.schema.json: {best.message}", pack=pack, file=str(path), pointer=pointer
        )
    return doc


class FactsIndex:
    """Leaf schemas of the facts document by dotted path, for type-checking rules."""

    def __init__(self, facts_schema: Mapping[str, Any]):
        self.leaves: dict[str, Mapping[str, Any]] = {}
        self.arrays: dict[str, Mapping[str, Any]] = {}
        self._walk(facts_schema, ())

    def _walk(self, schema: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for name, sub in schema.get("properties", {}).items():
            here = (*path, name)
            dotted = ".".join(here)
            if sub.get("type") == "object" or "properties" in sub:
                self.leaves[dotted] = sub
                self._walk(sub, here)
            elif sub.get("type") == "array":
                self.arrays[dotted] = sub.get("items", {})
                self.leaves[dotted] = sub
            else:
                self.leaves[dotted] = sub


def schema_labels(schema: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """JSON pointer -> the short name people know each fact by (schema title, else description)."""
    out: dict[str, str] = {}
    for name, sub in schema.get("properties", {}).items():
        pointer = f"{prefix}/{name}"
        # The schema's short title names a fact for people; the description is the fallback.
        label = sub.get("title") or sub.get("description")
        if label:
            out[pointer] = label
        out.update(schema_labels(sub, pointer))
    return out


def _value_fits(schema: Mapping[str, Any], value: Any) -> bool:
    kind = schema.get("type")
    if "enum" in schema:
        # type() identity: True == 1 in Python, but a boolean is never an enum string/number.
        return any(type(v) is type(value) and v == value for v in schema["enum"])
    if "const" in schema:
        return bool(value == schema["const"])
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("number", "integer"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return False


class RuleBuilder:
    """Turns validated rule-file documents into :class:`Rule` objects."""

    def __init__(self, facts_index: FactsIndex):
        self.facts = facts_index
        # (kind, name, value, file, pointer) of every derived/finding reference built so far
        self.references: list[tuple[str, str, Any, str, str]] = []

    def build(self, doc: Mapping[str, Any], file: str) -> list[Rule]:
        pack, namespace = doc["pack"], doc["namespace"]
        rules = []
        for index, raw in enumerate(doc["rules"]):
            pointer = f"/rules/{index}"

            def fail(message: str, where: str = "", pointer: str = pointer) -> PackLoadError:
                return PackLoadError(message, pack=pack, file=file, pointer=pointer + where)

            kind, key, value = (
                ("finding", raw["finding"], True)
                if "finding" in raw
                else ("derive", raw["derive"]["name"], raw["derive"].get("value", True))
            )
            for label, name in (("rule id", raw["id"]), (f"{kind} name", key)):
                if not name.startswith(namespace + "."):
                    raise fail(f"{label} {name!r} is outside the pack namespace {namespace!r}")
            refs_before = len(self.references)
            when = self._condition(raw["when"], fail, "/when")
            # The condition builder knows where in the rule; here the file and the rule are added.
            new_refs = self.references[refs_before:]
            self.references[refs_before:] = [(k, n, v, file, pointer + w) for k, n, v, _, w in new_refs]
            rules.append(
                Rule(
                    id=raw["id"],
                    pack=pack,
                    title=raw["title"],
                    when=when,
                    kind=kind,
                    key=key,
                    value=value,
                    urgency=raw.get("urgency"),
                    detail=raw.get("detail", raw["rationale"]),
                    rationale=raw["rationale"],
                    recommendations=tuple(raw.get("recommendations", ())),
                    evidence=tuple(Evidence(e["source"], e["citation"]) for e in raw["evidence"]),
                    file=file,
                    pointer=pointer,
                    worsened_by=self._worsened_by(raw.get("worsened_by"), fail),
                )
            )
        return rules

    def _worsened_by(self, raw: Mapping[str, Any] | None, fail: Any) -> WorsenedBy | None:
        """Checked against the facts schema as conditions are: a misspelt class would never match a draft."""
        if raw is None:
            return None
        items = self.facts.arrays.get(WORSENING_LIST)
        leaf = (items or {}).get("properties", {}).get(WORSENING_FIELD)
        if leaf is None:
            raise fail(f"worsened_by needs {WORSENING_LIST}[].{WORSENING_FIELD} in the facts schema", "/worsened_by")
        for index, name in enumerate(raw["medication_classes"]):
            if not _value_fits(leaf, name):
                where = f"/worsened_by/medication_classes/{index}"
                field = f"{WORSENING_LIST}[].{WORSENING_FIELD}"
                raise fail(f"worsened_by class {name!r} is not a {field} ({_describe(leaf)})", where)
        return WorsenedBy(tuple(raw["medication_classes"]), raw["rationale"])

    def _condition(self, raw: Mapping[str, Any], fail: Any, where: str) -> Condition:
        if "all" in raw:
            return All(tuple(self._condition(c, fail, f"{where}/all/{i}") for i, c in enumerate(raw["all"])))
        if "any" in raw:
            return AnyOf(tuple(self._condition(c, fail, f"{where}/any/{i}") for i, c in enumerate(raw["any"])))
        if "not" in raw:
            return Not(self._condition(raw["not"], fail, f"{where}/not"))
        if "derived" in raw:
            self.references.append(("derived", raw["derived"], raw.get("eq", True), "", where))
            return DerivedRef(raw["derived"], raw.get("eq", True))
        if "finding" in raw:
            self.references.append(("finding", raw["finding"], True, "", where))
            return FindingRef(raw["finding"])
        if "any_item" in raw:
            return self._item_test(raw, fail, where)
        return self._fact_test(raw, fail, where)

    def _fact_test(self, raw: Mapping[str, Any], fail: Any, where: str) -> FactTest:
        path = raw["fact"]
        op = next(k for k in raw if k != "fact")
        value = raw[op]
        leaf = self.facts.leaves.get(path)
        if leaf is None:
            raise fail(f"unknown fact {path!r} (not in the facts schema)", where)
        if op == "known":
            return FactTest(tuple(path.split(".")), op, value)
        self._check_value(leaf, op, value, path, fail, where)
        stored = tuple(value) if op == "in" else value
        return FactTest(tuple(path.split(".")), op, stored)

    def _item_test(self, raw: Mapping[str, Any], fail: Any, where: str) -> ItemTest:
        path, spec = raw["any_item"], raw["where"]
        items = self.facts.arrays.get(path)
        if items is None:
            raise fail(f"{path!r} is not an array fact", where)
        field = spec["field"]
        leaf = items.get("properties", {}).get(field)
        if leaf is None:
            raise fail(f"items of {path!r} have no field {field!r}", where)
        op = next(k for k in spec if k != "field")
        self._check_value(leaf, op, spec[op], f"{path}[].{field}", fail, where)
        value = tuple(spec[op]) if op == "in" else spec[op]
        return ItemTest(tuple(path.split(".")), field, op, value)

    @staticmethod
    def _check_value(leaf: Mapping[str, Any], op: str, value: Any, path: str, fail: Any, where: str) -> None:
        if op in NUMERIC_OPS and leaf.get("type") not in ("number", "integer"):
            raise fail(f"operator {op!r} needs a numeric fact; {path!r} is {leaf.get('type')}", where)
        values: Sequence[Any] = value if op == "in" else [value]
        for item in values:
            if not _value_fits(leaf, item):
                raise fail(f"value {item!r} cannot be compared with {path!r} ({_describe(leaf)})", where)
            if leaf.get("type") in ("number", "integer") and op != "ne":
                outside = _outside_range(leaf, op, item)
                if outside:
                    raise fail(f"threshold {op} {item!r} on {path!r} {outside}", where)


def _outside_range(leaf: Mapping[str, Any], op: str, value: Any) -> str:
    """Why a numeric threshold is wrong for the schema's range ("" when it is not).

    A threshold outside the range is almost always a typo (``lte: 9`` for a 0-5 grade): the
    test is then always or never true. ``lt`` the minimum and ``gt`` the maximum can never be.
    """
    low, high = leaf.get("minimum"), leaf.get("maximum")
    low_x, high_x = leaf.get("exclusiveMinimum"), leaf.get("exclusiveMaximum")
    span = f"the facts schema allows {_range_text(leaf)}"
    if (low is not None and value < low) or (low_x is not None and value <= low_x):
        return f"is below the range ({span})"
    if (high is not None and value > high) or (high_x is not None and value >= high_x):
        return f"is above the range ({span})"
    if (op == "lt" and value == low) or (op == "gt" and value == high):
        return f"is at the end of the range ({span}), so the test is never true"
    return ""


def _range_text(leaf: Mapping[str, Any]) -> str:
    low = f"> {leaf['exclusiveMinimum']}" if "exclusiveMinimum" in leaf else f">= {leaf.get('minimum', '-inf')}"
    high = f"< {leaf['exclusiveMaximum']}" if "exclusiveMaximum" in leaf else f"<= {leaf.get('maximum', 'inf')}"
    return f"{low} and {high}"


def _describe(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    return str(schema.get("type", "?"))
