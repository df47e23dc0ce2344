"""Compile declarative rules into the safe subset of durable_rules' JSON grammar.

What the compiler guarantees (see the shared durable-rules fact sheet):

* every pattern starts with a positive type field (``t``), so no rule can match
  the session state object and loop forever;
* no joins on ``id``, no ``when_any``, no negated (``$not``) patterns: negation
  is pushed down to the leaves of the input-fact pattern (Kleene logic obeys De
  Morgan), and references to derived facts and findings must be positive;
* disjunctions that span several facts are split into sibling durable rules
  (the adapter counts a rule once however many siblings fire);
* rule sets beyond the measured caps are refused with a clear error instead of
  being handed to ``create_ruleset``, which hangs on them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from neurocds.errors import PackLoadError
from neurocds.rules.alpha_network import MAX_HASH_CHILDREN, first_overflow
from neurocds.rules.cache import LoadCache
from neurocds.rules.conditions import (
    NEGATED_OP,
    All,
    AnyOf,
    Condition,
    DerivedRef,
    FactTest,
    FindingRef,
    ItemTest,
    Not,
)
from neurocds.rules.ruleset import Rule

# Fact type tags seen by durable_rules: input facts, derived facts, findings, and the
# sentinel fact the adapter asserts first in every session (only the sentinel rule matches it).
TYPE_INPUT, TYPE_DERIVED, TYPE_FINDING, TYPE_SENTINEL = "f", "d", "g", "s"
INPUT_ROOT = "f"  # input facts are nested under this key of the durable fact
SENTINEL_RULE = "sentinel"

MAX_RULES = 4096  # durable_rules hard cap per ruleset
MAX_IDENTICAL = 256  # rules sharing one identical condition path
MAX_SIBLINGS = MAX_HASH_CHILDREN  # tests under one alpha node (see rules/alpha_network.py)
MAX_JOIN = 16  # facts joined by one durable rule; asserting fails beyond (error 304)
MAX_SPLITS_PER_RULE = 64  # our own bound on the disjunction split of one rule
# Beyond 2**53 durable_rules compares an integer with a float as two doubles (and clamps
# integers to 64 bits), where Python compares exactly: the backends would disagree.
MAX_EXACT_INT = 2**53


class CompileError(PackLoadError):
    """A rule cannot be expressed in the safe durable_rules subset."""


_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]")


def encode(value: Any) -> str:
    """JSON for durable_rules' C parser (fast path: the C json encoder when it is safe).

    The standard encoder is exact except for floats it writes with a bare exponent;
    when its output contains no digit-e-digit run at all, there is none.
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    if _EXPONENT.search(text) is None:
        return text
    return encode_exact(value)


def encode_exact(value: Any) -> str:
    """JSON for durable_rules' C parser: finite numbers only, ASCII only.

    Python writes ``1e-05``; the C parser rejects an exponent without a fraction
    (error 204), so a ``.0`` is inserted. Strings are ASCII-escaped because the
    parser compares rule strings and fact strings byte by byte, and only the
    escaped form matched non-ASCII text when measured.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number cannot be sent to durable_rules")
        text = repr(value)
        mantissa, sep, exponent = text.partition("e")
        if sep and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_exact(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} for durable_rules")


@dataclass
class CompiledRuleset:
    """The durable_rules definition plus what the adapter needs to interpret firings."""

    definition: dict[str, Any]
    rule_of: dict[str, int]  # durable rule name -> index into ``rules``
    rules: Sequence[Rule]
    referenced: set[tuple[str, str, Any]] = field(default_factory=set)
    input_paths: list[tuple[str, ...]] = field(default_factory=list)
    derived_kinds: dict[str, str] = field(default_factory=dict)  # derived-fact name -> value_kind()
    encoded: str = ""  # the definition as durable_rules reads it, when already known (a cache hit)

    @property
    def json(self) -> str:
        return self.encoded or encode(self.definition)

    def to_cache(self) -> dict[str, Any]:
        """Everything but ``rules`` as plain JSON data (the cache's round trip check refuses anything else)."""
        return {
            "definition": self.definition,
            "encoded": self.json,
            "rule_of": self.rule_of,
            "referenced": sorted([list(key) for key in self.referenced], key=repr),
            "input_paths": [list(path) for path in self.input_paths],
            "derived_kinds": self.derived_kinds,
        }

    @classmethod
    def from_cache(cls, stored: dict[str, Any], rules: Sequence[Rule]) -> CompiledRuleset:
        return cls(
            stored["definition"],
            stored["rule_of"],
            rules,
            {(kind, name, value) for kind, name, value in stored["referenced"]},
            [tuple(path) for path in stored["input_paths"]],
            stored["derived_kinds"],
            stored["encoded"],
        )


def compile_cached(rules: Sequence[Rule], cache: LoadCache, key: str) -> CompiledRuleset:
    """:func:`compile_rules` without the durable caps (already checked), from ``cache`` when ``key`` hit.

    ``key`` must name everything ``rules`` were built from (the packs' content hashes in order
    and the composed facts schema); the cache's own key part adds the compiler's source.
    """
    stored = cache.get("compiled", key)
    if stored is not None:
        return CompiledRuleset.from_cache(stored, rules)
    compiled = compile_rules(rules, durable_caps=False)
    cache.put("compiled", key, compiled.to_cache())
    return compiled


def compile_rules(rules: Sequence[Rule], durable_caps: bool = True) -> CompiledRuleset:
    """Compile ``rules``; ``durable_caps=False`` skips the limits of durable_rules' tables
    (the reference backend has none, so it loads rule sets durable_rules cannot)."""
    definition: dict[str, Any] = {SENTINEL_RULE: {"all": [{"m": {"t": TYPE_SENTINEL}}]}}
    rule_of: dict[str, int] = {}
    referenced: set[tuple[str, str, Any]] = set()
    paths: set[tuple[str, ...]] = set()
    kinds: dict[str, tuple[str, Rule]] = {}
    for index, rule in enumerate(rules):
        for node in rule.when.walk():
            if isinstance(node, FactTest | ItemTest):
                paths.add(node.path)
            if isinstance(node, FactTest | ItemTest | DerivedRef) and inexact_number(node.value):
                raise _error(rule, f"{node.describe()!r}: integers beyond ±2**53 cannot be compared exactly")
            if isinstance(node, DerivedRef):
                _note_kind(kinds, node.name, node.value, rule)
        if rule.kind == "derive":
            if inexact_number(rule.value):
                raise _error(rule, "derived value: integers beyond ±2**53 cannot be compared exactly")
            _note_kind(kinds, rule.key, rule.value, rule)
        referenced |= rule.references()
        splits = _split(_nnf(rule.when, False, rule))
        if len(splits) > MAX_SPLITS_PER_RULE:
            raise _error(rule, f"condition splits into {len(splits)} durable rules (cap {MAX_SPLITS_PER_RULE})")
        for k, (inputs, refs) in enumerate(splits):
            patterns: list[dict[str, Any]] = []
            if inputs:
                cond = inputs[0] if len(inputs) == 1 else {"$and": inputs}
                patterns.append({"m": {"$and": [{"t": TYPE_INPUT}, cond]}})
            for j, key in enumerate(sorted(refs, key=repr)):
                patterns.append({f"r{j}": _ref_pattern(key)})
            if len(patterns) > MAX_JOIN:
                raise _error(rule, f"condition joins {len(patterns)} facts (cap {MAX_JOIN}); use fewer references")
            name = f"r{index}_{k}"
            definition[name] = {"all": patterns}
            rule_of[name] = index
    if durable_caps:
        _check_caps(definition, rules, rule_of)
    derived_kinds = {name: kind for name, (kind, _) in kinds.items()}
    return CompiledRuleset(definition, rule_of, rules, referenced, sorted(paths), derived_kinds)


def value_kind(value: Any) -> str:
    """``boolean``, ``number`` or ``string``: the kinds of a derived value that must never mix.

    Python has ``True == 1`` and durable_rules compares across types loosely, so one
    derived fact holding a boolean in one rule and a number in another would be
    matched differently by the two backends.
    """
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _note_kind(kinds: dict[str, tuple[str, Rule]], name: str, value: Any, rule: Rule) -> None:
    kind = value_kind(value)
    first = kinds.setdefault(name, (kind, rule))
    if first[0] != kind:
        other = first[1]
        raise _error(
            rule,
            f"derived fact {name!r} is a {kind} here but a {first[0]} in rule {other.id} ({other.file}{other.pointer})",
        )


def inexact_number(value: Any) -> bool:
    """True when ``value`` holds an integer durable_rules cannot compare exactly (beyond ±2**53)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > MAX_EXACT_INT
    if isinstance(value, dict):
        return any(inexact_number(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(inexact_number(v) for v in value)
    return False


def _error(rule: Rule, message: str) -> CompileError:
    return CompileError(f"rule {rule.id}: {message}", pack=rule.pack, file=rule.file, pointer=rule.pointer)


def _path(parts: tuple[str, ...]) -> str:
    return ".".join((INPUT_ROOT, *parts))


# NNF nodes: ("and", [...]) | ("or", [...]) | ("leaf", durable-json) | ("ref", key)
Nnf = tuple[str, Any]


def _nnf(node: Condition, negate: bool, rule: Rule) -> Nnf:
    if isinstance(node, Not):
        return _nnf(node.item, not negate, rule)
    if isinstance(node, All | AnyOf):
        is_and = isinstance(node, All) != negate  # De Morgan
        return ("and" if is_and else "or", [_nnf(c, negate, rule) for c in node.items])
    if isinstance(node, FactTest):
        return ("leaf", _fact_leaf(node, negate))
    if isinstance(node, ItemTest):
        if negate:
            raise _error(rule, "a negated any_item test is not supported; state the positive condition")
        return ("leaf", {"$iany": {_path(node.path): _compare(node.op, f"$i.{node.field}", node.value)}})
    if isinstance(node, DerivedRef | FindingRef):
        if negate:
            raise _error(
                rule,
                f"negated reference to {node.describe()!r}: durable_rules has no truth "
                "maintenance; test the input facts instead",
            )
        return ("ref", node.key)
    raise _error(rule, f"unsupported condition {type(node).__name__}")


def _compare(op: str, field_name: str, value: Any) -> dict[str, Any]:
    if op == "eq":
        return {field_name: value}
    if op == "in":
        return {"$or": [{field_name: v} for v in value]}
    return {{"ne": "$neq", "lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}[op]: {field_name: value}}


def _fact_leaf(node: FactTest, negate: bool) -> dict[str, Any]:
    path = _path(node.path)
    if node.op == "known":
        return {"$ex" if node.value != negate else "$nex": {path: 1}}
    if node.op == "is_not":
        if negate:  # not "not known to be V" == known to be V
            return {path: node.value}
        return {"$or": [{"$nex": {path: 1}}, {"$neq": {path: node.value}}]}
    if node.op == "in":
        if negate:
            return {"$and": [{"$neq": {path: v}} for v in node.value]}
        return _compare("in", path, node.value)
    return _compare(NEGATED_OP[node.op] if negate else node.op, path, node.value)


def _ref_pattern(key: tuple[str, str, Any]) -> dict[str, Any]:
    kind, name, value = key
    if kind == "derived":
        return {"$and": [{"t": TYPE_DERIVED}, {"n": name}, {"v": value}]}
    return {"$and": [{"t": TYPE_FINDING}, {"n": name}]}


Split = tuple[list[dict[str, Any]], frozenset[Any]]


def _has_ref(node: Nnf) -> bool:
    kind, body = node
    if kind == "ref":
        return True
    return kind in ("and", "or") and any(_has_ref(c) for c in body)


def _to_durable(node: Nnf) -> dict[str, Any]:
    kind, body = node
    if kind == "leaf":
        leaf: dict[str, Any] = body
        return leaf
    return {"$and" if kind == "and" else "$or": [_to_durable(c) for c in body]}


def _split(node: Nnf) -> list[Split]:
    """Disjunctive form over fact *sources* only: pure input sub-trees stay whole."""
    kind, body = node
    if kind == "leaf":
        return [([body], frozenset())]
    if kind == "ref":
        return [([], frozenset([body]))]
    if not _has_ref(node):
        return [([_to_durable(node)], frozenset())]
    parts = [_split(child) for child in body]
    if kind == "or":
        return [s for part in parts for s in part]
    out: list[Split] = []
    for combo in itertools.product(*parts):
        out.append(([c for inputs, _ in combo for c in inputs], frozenset().union(*(r for _, r in combo))))
    return out


def _check_caps(definition: dict[str, Any], rules: Sequence[Rule], rule_of: dict[str, int]) -> None:
    if len(definition) > MAX_RULES:
        raise CompileError(f"{len(definition)} durable rules exceed the cap of {MAX_RULES}")
    identical: dict[str, list[str]] = {}
    for name, body in definition.items():
        identical.setdefault(encode(body["all"]), []).append(name)
    for names in identical.values():
        if len(names) > MAX_IDENTICAL:
            rule = rules[rule_of[names[0]]]
            raise _error(rule, f"{len(names)} rules share one identical condition (cap {MAX_IDENTICAL})")
    overflow = first_overflow(definition)
    if overflow is not None:
        effect = "hangs" if overflow.limit == MAX_SIBLINGS else "crashes"
        rule = rules[rule_of[overflow.rule]]
        raise _error(
            rule,
            f"{overflow.children} distinct conditions follow one condition path {overflow.path[:80]!r}... "
            f"({overflow.kind}; cap {overflow.limit}: durable_rules {effect} beyond it)",
        )
