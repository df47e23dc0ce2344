"""Compiled mapping-table entries and the code index that finds them.

These records are what a validated table file becomes. They carry no meaning of
their own: which code means which fact is entirely in the table files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Scalar = str | float | int | bool

# Resource families: a code key is unique within a family, so the same code may
# name a Condition in one table and an Observation in another without clashing.
FAMILY_CONDITION = "Condition"
FAMILY_PROCEDURE = "Procedure"
FAMILY_OBSERVATION = "Observation"
FAMILY_MEDICATION = "Medication"


@dataclass(frozen=True)
class Origin:
    """Where a rule was declared, for error messages and provenance."""

    file: Path
    pointer: str


@dataclass(frozen=True)
class Rule:
    """Base of every compiled entry. ``rule`` is ``<table>/<entry id>``."""

    rule: str
    origin: Origin


@dataclass(frozen=True)
class ConditionRule(Rule):
    facts: tuple[str, ...]
    scope: str  # "lifetime" | "current"
    within_days: float | None = None


@dataclass(frozen=True)
class ProcedureRule(Rule):
    facts: tuple[str, ...]
    within_days: float


@dataclass(frozen=True)
class UnitConversion:
    """canonical = (value - subtract) * multiply / divide."""

    code: str
    subtract: float = 0.0
    multiply: float = 1.0
    divide: float = 1.0

    @property
    def is_identity(self) -> bool:
        return self.subtract == 0.0 and self.multiply == 1.0 and self.divide == 1.0

    def apply(self, value: float) -> float:
        return (value - self.subtract) * self.multiply / self.divide


@dataclass(frozen=True)
class QuantityRule(Rule):
    fact: str
    canonical_unit: str
    units: Mapping[str, UnitConversion]
    decimals: int | None = None
    # (min, max) physiologically possible in the canonical unit; outside is a data error.
    possible: tuple[float, float] | None = None


@dataclass(frozen=True)
class FindingRule(Rule):
    fact: str
    when_true: Scalar | None = None
    when_false: Scalar | None = None
    has_boolean: bool = False
    # (system URI, code) of valueCodeableConcept -> fact value
    value_codes: Mapping[tuple[str, str], Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class MedicationRule(Rule):
    klass: str
    ingredients: tuple[tuple[str, ...], ...] = ()
    except_words: frozenset[str] = frozenset()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotMappedRule(Rule):
    family: str
    reason: str


@dataclass(frozen=True)
class CodeHit:
    """A matched coding: the rule and the coding that matched it."""

    rule: Rule
    system: str
    code: str
    display: str | None


class CodeIndex:
    """Exact and prefix lookup of (system, code) for one resource family.

    Prefix matching is declared per code in the table (``match: prefix``); the
    input is only ever compared, never interpreted as a pattern. When several
    table codes match, an exact match beats any prefix and a longer prefix beats
    a shorter one, so the most specific mapping wins deterministically.
    """

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Rule] = {}
        self._prefix: dict[str, list[tuple[str, Rule]]] = {}

    def add(self, system: str, code: str, match: str, rule: Rule) -> None:
        if match == "prefix":
            bucket = self._prefix.setdefault(system, [])
            bucket.append((code, rule))
            bucket.sort(key=lambda item: (-len(item[0]), item[0]))
        else:
            self._exact[(system, code)] = rule

    def searchable_codes(self) -> set[tuple[str, str]] | None:
        """Every (system, code) of this family, or ``None`` when a prefix rule makes the set open-ended.

        Used to narrow a FHIR search to the codes the tables can read; a prefix
        ("E11" for "E11.9") cannot be expressed as token equality.
        """
        if any(self._prefix.values()):
            return None
        return set(self._exact)

    def lookup(self, system: str, code: str) -> Rule | None:
        hit = self._exact.get((system, code))
        if hit is not None:
            return hit
        for prefix, rule in self._prefix.get(system, ()):
            if code.startswith(prefix):
                return rule
        return None

    def match_concept(self, concept: Any) -> list[CodeHit]:
        """All codings of a CodeableConcept that hit a rule (one hit per coding)."""
        hits: list[CodeHit] = []
        if not isinstance(concept, Mapping):
            return hits
        codings = concept.get("coding")
        if not isinstance(codings, list):
            return hits
        for coding in codings:
            if not isinstance(coding, Mapping):
                continue
            system, code = coding.get("system"), coding.get("code")
            if not isinstance(system, str) or not isinstance(code, str):
                continue
            rule = self.lookup(system.strip(), code.strip())
            if rule is not None:
                display = coding.get("display")
                hits.append(CodeHit(rule, system.strip(), code.strip(), display if isinstance(display, str) else None))
        return hits


@dataclass(frozen=True)
class DocumentLayout:
    """Where the converter writes the parts that do not come from code tables."""

    constants: Mapping[str, Scalar]
    patient_id: str
    recorded_at: str | None = None
    age_years: str | None = None
    max_age_years: float | None = None
    sex: str | None = None
    sex_values: Mapping[str, str] = field(default_factory=dict)
    medication_list: str = ""
    medication_name_key: str = ""
    medication_class_key: str = ""
    unmatched_medication_class: str = ""
    origin: Origin | None = None


def words(text: str) -> tuple[str, ...]:
    """Lower-case alphanumeric words of ``text`` (used for ingredient matching)."""
    out: list[str] = []
    current: list[str] = []
    for ch in text.lower():
        if ch.isalnum():
            current.append(ch)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    return tuple(out)


def contains_phrase(haystack: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    """True when ``phrase`` occurs as consecutive whole words in ``haystack``."""
    n = len(phrase)
    if n == 0 or n > len(haystack):
        return False
    # Searched at C speed from each place the first word occurs: a slice compared at
    # every position cost a third of a Synthea call's FHIR mapping (56,930 calls for 31
    # bodies, most for phrases whose first word the text does not hold).
    first = phrase[0]
    if first not in haystack:
        return False
    start = 0
    with contextlib.suppress(ValueError):  # no further place holds the first word
        while True:
            found = haystack.index(first, start)
            if haystack[found : found + n] == phrase:
                return True
            start = found + 1
    return False
