"""Load, validate and index FHIR mapping tables (``schemas/fhir-mapping.schema.json``).

Every clinical decision of the FHIR adapter lives in these table files; this
module only checks them and builds lookup structures. Errors name the file and
the JSON pointer of the offending value, and duplicate code keys across files
name both files, because a silent "last one wins" would make the meaning of a
code depend on plugin load order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
import yaml

from neurocds.errors import PackLoadError, Violation
from neurocds.fhir.rules import (
    FAMILY_CONDITION,
    FAMILY_MEDICATION,
    FAMILY_OBSERVATION,
    FAMILY_PROCEDURE,
    CodeIndex,
    ConditionRule,
    DocumentLayout,
    FindingRule,
    MedicationRule,
    NotMappedRule,
    Origin,
    ProcedureRule,
    QuantityRule,
    Rule,
    UnitConversion,
    words,
)
from neurocds.resources import load_schema

SCHEMA_FILE = "fhir-mapping.schema.json"

# Which table section feeds which resource family (code keys are unique per family).
_SECTION_FAMILY = {
    "conditions": FAMILY_CONDITION,
    "procedures": FAMILY_PROCEDURE,
    "observations": FAMILY_OBSERVATION,
    "findings": FAMILY_OBSERVATION,
    "medication_classes": FAMILY_MEDICATION,
}


class MappingTableError(PackLoadError):
    """A mapping table is unreadable, invalid, or clashes with another table."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        pointer: str | None = None,
        violations: Sequence[Violation] = (),
    ) -> None:
        self.violations = list(violations)
        super().__init__(message, file=str(file) if file is not None else None, pointer=pointer)


@dataclass
class MappingTables:
    """All loaded tables, compiled into per-family code indexes."""

    files: tuple[Path, ...]
    document: DocumentLayout
    indexes: dict[str, CodeIndex]
    medication_rules: tuple[MedicationRule, ...]
    rules: dict[str, Rule] = field(default_factory=dict)

    def index(self, family: str) -> CodeIndex:
        return self.indexes[family]


def load_mapping_tables(paths: Sequence[Path | str]) -> MappingTables:
    """Read, validate and compile ``paths``; raise :class:`MappingTableError` on any problem."""
    builder = _Builder()
    for raw_path in paths:
        path = Path(raw_path)
        builder.add_file(path, read_table(path))
    return builder.finish()


def read_table(path: Path) -> dict[str, Any]:
    """One table file, parsed and checked against the mapping schema (alone: no cross-file checks)."""
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise MappingTableError(f"cannot read mapping table: {exc.strerror}", file=path) from exc
    except yaml.YAMLError as exc:
        raise MappingTableError(f"mapping table is not valid YAML/JSON: {exc}", file=path, pointer="") from exc
    if not isinstance(data, dict):
        raise MappingTableError("mapping table must be an object", file=path, pointer="")
    validator = jsonschema.Draft202012Validator(load_schema(SCHEMA_FILE))
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        violations = [
            Violation(pointer=_pointer(e.absolute_path), message=e.message, code=str(e.validator)) for e in errors
        ]
        first = violations[0]
        more = f" (+{len(violations) - 1} more)" if len(violations) > 1 else ""
        raise MappingTableError(
            f"invalid mapping table: {first.message}{more}",
            file=path,
            pointer=first.pointer,
            violations=violations,
        )
    return data


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


K = TypeVar("K")  # what one place maps: a table id, a code key, an ingredient phrase, a fact


def _claim(owners: dict[K, Origin], key: K, claim: Origin, what: str) -> None:
    """Record that ``claim`` maps ``key``; a second place that maps it is refused, naming the first
    (a silent "last one wins" would make a meaning depend on the order plugins load in)."""
    first = owners.get(key)
    if first is not None:
        raise MappingTableError(f"{what} at {first.file} {first.pointer}", file=claim.file, pointer=claim.pointer)
    owners[key] = claim


class _Builder:
    """Accumulates files; every cross-file check happens here."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.tables: dict[str, Origin] = {}
        self.document: DocumentLayout | None = None
        self.indexes = {f: CodeIndex() for f in set(_SECTION_FAMILY.values())}
        self.code_owner: dict[tuple[str, str, str, str], Origin] = {}
        self.ingredient_owner: dict[tuple[str, ...], Origin] = {}
        self.single_fact_owner: dict[str, Origin] = {}
        self.all_facts: dict[str, Origin] = {}
        self.medication_rules: list[MedicationRule] = []
        self.rules: dict[str, Rule] = {}

    def add_file(self, path: Path, data: dict[str, Any]) -> None:
        self.files.append(path)
        table = data["table"]
        _claim(self.tables, table, Origin(path, "/table"), f"table id {table!r} is also used")
        aliases: dict[str, str] = dict(data.get("systems", {}))
        if "document" in data:
            self._add_document(path, data["document"])
        for section, family in _SECTION_FAMILY.items():
            for i, entry in enumerate(data.get(section, [])):
                origin = Origin(path, f"/{section}/{i}")
                rule = self._compile(section, table, entry, origin, aliases)
                self._register_rule(rule)
                for j, code in enumerate(entry.get("codes", [])):
                    self._add_code(family, code, rule, Origin(path, f"{origin.pointer}/codes/{j}"), aliases)
        for i, entry in enumerate(data.get("not_mapped", [])):
            origin = Origin(path, f"/not_mapped/{i}")
            family = entry["resource"]
            rule = NotMappedRule(f"{table}/{entry['id']}", origin, family, entry["reason"])
            self._register_rule(rule)
            for j, code in enumerate(entry["codes"]):
                self._add_code(family, code, rule, Origin(path, f"{origin.pointer}/codes/{j}"), aliases)

    def _register_rule(self, rule: Rule) -> None:
        if rule.rule in self.rules:
            other = self.rules[rule.rule].origin
            raise MappingTableError(
                f"entry id {rule.rule!r} is declared twice (also at {other.pointer})",
                file=rule.origin.file,
                pointer=rule.origin.pointer,
            )
        self.rules[rule.rule] = rule

    def _compile(
        self, section: str, table: str, entry: Mapping[str, Any], origin: Origin, aliases: dict[str, str]
    ) -> Rule:
        name = f"{table}/{entry['id']}"
        if section == "conditions":
            facts = self._facts(entry["facts"], origin, "/facts")
            return ConditionRule(name, origin, facts, entry["scope"], entry.get("within_days"))
        if section == "procedures":
            facts = self._facts(entry["facts"], origin, "/facts")
            return ProcedureRule(name, origin, facts, float(entry["within_days"]))
        if section == "observations":
            return self._quantity_rule(name, entry, origin)
        if section == "findings":
            self._claim_single_fact(entry["fact"], origin)
            boolean = entry.get("value_boolean")
            value_codes = {}
            for k, item in enumerate(entry.get("value_codes", [])):
                for system in self._systems(item["system"], aliases, origin, f"/value_codes/{k}/system"):
                    value_codes[(system, item["code"])] = item["value"]
            return FindingRule(
                name,
                origin,
                entry["fact"],
                when_true=boolean["when_true"] if boolean else None,
                when_false=boolean["when_false"] if boolean else None,
                has_boolean=boolean is not None,
                value_codes=value_codes,
            )
        return self._medication_rule(name, entry, origin)

    def _quantity_rule(self, name: str, entry: Mapping[str, Any], origin: Origin) -> QuantityRule:
        self._claim_single_fact(entry["fact"], origin)
        units: dict[str, UnitConversion] = {}
        for k, unit in enumerate(entry["units"]):
            if unit["code"] in units:
                raise MappingTableError(
                    f"unit {unit['code']!r} listed twice",
                    file=origin.file,
                    pointer=f"{origin.pointer}/units/{k}/code",
                )
            units[unit["code"]] = UnitConversion(
                unit["code"],
                float(unit.get("subtract", 0.0)),
                float(unit.get("multiply", 1.0)),
                float(unit.get("divide", 1.0)),
            )
        # UCUM (case-sensitive) has two codes for the litre, "L" and "l": a table lists one
        # spelling of "/L", "/dL", "/mL"..., and the other is the same unit.
        for code, conversion in list(units.items()):
            other = _other_litre_spelling(code)
            if other is not None:
                units.setdefault(other, conversion)
        canonical = units.get(entry["unit"])
        if canonical is None or not canonical.is_identity:
            raise MappingTableError(
                f"canonical unit {entry['unit']!r} must be listed in 'units' without a conversion",
                file=origin.file,
                pointer=f"{origin.pointer}/unit",
            )
        possible = entry.get("possible")
        bounds = (float(possible["min"]), float(possible["max"])) if possible else None
        if bounds is not None and bounds[0] >= bounds[1]:
            where = f"{origin.pointer}/possible"
            raise MappingTableError("possible range: min must be below max", file=origin.file, pointer=where)
        return QuantityRule(name, origin, entry["fact"], entry["unit"], units, entry.get("decimals"), bounds)

    def _medication_rule(self, name: str, entry: Mapping[str, Any], origin: Origin) -> MedicationRule:
        phrases: list[tuple[str, ...]] = []
        for k, ingredient in enumerate(entry.get("ingredients", [])):
            phrase = words(ingredient)
            where = Origin(origin.file, f"{origin.pointer}/ingredients/{k}")
            _claim(self.ingredient_owner, phrase, where, f"ingredient {ingredient!r} is also mapped")
            phrases.append(phrase)
        flags = self._facts(entry["flags"], origin, "/flags") if "flags" in entry else ()
        rule = MedicationRule(
            name, origin, entry["class"], tuple(phrases), frozenset(entry.get("except_words", [])), flags
        )
        if phrases:
            self.medication_rules.append(rule)
        return rule

    def _facts(self, value: str | list[str], origin: Origin, where: str) -> tuple[str, ...]:
        facts = (value,) if isinstance(value, str) else tuple(value)
        for fact in facts:
            self._note_fact(fact, Origin(origin.file, origin.pointer + where))
        return facts

    def _claim_single_fact(self, fact: str, origin: Origin) -> None:
        # Two numeric/coded sources for one fact would need a tie-break rule the
        # tables cannot express, so it is refused at load time.
        where = Origin(origin.file, origin.pointer + "/fact")
        _claim(self.single_fact_owner, fact, where, f"fact {fact!r} is already produced")
        self._note_fact(fact, where)

    def _note_fact(self, fact: str, origin: Origin) -> None:
        for other, other_origin in self.all_facts.items():
            if other.startswith(fact + ".") or fact.startswith(other + "."):
                raise MappingTableError(
                    f"fact {fact!r} overlaps {other!r} ({other_origin.file} {other_origin.pointer})",
                    file=origin.file,
                    pointer=origin.pointer,
                )
        self.all_facts.setdefault(fact, origin)

    def _systems(self, value: str | list[str], aliases: dict[str, str], origin: Origin, where: str) -> list[str]:
        out = []
        for item in [value] if isinstance(value, str) else value:
            if item in aliases:
                out.append(aliases[item])
            elif ":" in item:
                out.append(item)
            else:
                raise MappingTableError(
                    f"unknown code-system alias {item!r} (declare it under 'systems')",
                    file=origin.file,
                    pointer=origin.pointer + where,
                )
        return out

    def _add_code(
        self, family: str, code: Mapping[str, Any], rule: Rule, origin: Origin, aliases: dict[str, str]
    ) -> None:
        match = code.get("match", "exact")
        for system in self._systems(code["system"], aliases, origin, "/system"):
            key = (family, system, code["code"], match)
            _claim(self.code_owner, key, origin, f"{family} code {system}|{code['code']} ({match}) is also mapped")
            self.indexes[family].add(system, code["code"], match, rule)

    def _add_document(self, path: Path, doc: Mapping[str, Any]) -> None:
        if self.document is not None and self.document.origin is not None:
            raise MappingTableError(
                f"'document' is also defined in {self.document.origin.file}", file=path, pointer="/document"
            )
        patient, meds = doc["patient"], doc["medication_list"]
        self.document = DocumentLayout(
            constants=dict(doc["constants"]),
            patient_id=patient["id"],
            recorded_at=doc.get("recorded_at"),
            age_years=patient.get("age_years"),
            max_age_years=patient.get("max_age_years"),
            sex=patient.get("sex"),
            sex_values=dict(patient.get("sex_values", {})),
            medication_list=meds["path"],
            medication_name_key=meds["name_key"],
            medication_class_key=meds["class_key"],
            unmatched_medication_class=meds["unmatched_class"],
            origin=Origin(path, "/document"),
        )

    def finish(self) -> MappingTables:
        if self.document is None:
            files = ", ".join(str(f) for f in self.files) or "(none)"
            raise MappingTableError(f"no mapping table defines 'document' (loaded: {files})")
        return MappingTables(
            files=tuple(self.files),
            document=self.document,
            indexes=self.indexes,
            medication_rules=tuple(self.medication_rules),
            rules=self.rules,
        )


_LITRE = re.compile(r"/([a-zA-Zµ]?)([lL])$")


def _other_litre_spelling(code: str) -> str | None:
    """``mmol/L`` -> ``mmol/l`` and back: a litre that ends the unit after "/", with at most a
    one-letter prefix. The "l" of "mol" is another unit and is left alone."""
    match = _LITRE.search(code)
    if match is None:
        return None
    litre = "l" if match.group(2) == "L" else "L"
    return f"{code[: match.start()]}/{match.group(1)}{litre}"

