"""MedicationRequest / MedicationStatement -> the medication list and medication flags.

Where the list goes, its item keys and the class of an unclassified medication
are table data (``document.medication_list``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from neurocds.fhir.bundle import Item
from neurocds.fhir.collect import fact_pointer
from neurocds.fhir.context import Context
from neurocds.fhir.dates import choice_time, parse_fhir_datetime, period_time
from neurocds.fhir.policy import MEDICATION_CURRENT_STATUS, MEDICATION_ENDED_STATUS, MEDICATION_IGNORED_INTENT
from neurocds.fhir.rules import FAMILY_MEDICATION, MedicationRule, NotMappedRule, contains_phrase, words

# (system, code, display) of the coding that identified a medication, if any.
Coding = tuple[str | None, str | None, str | None]


@dataclass
class _Listed:
    name: str
    klass: str
    sources: list[dict[str, Any]] = field(default_factory=list)


def extract_medication(ctx: Context) -> None:
    layout = ctx.tables.document
    listed: dict[tuple[str, str], _Listed] = {}
    for item in ctx.of_type("MedicationRequest", "MedicationStatement"):
        state = _state(ctx, item)
        if state is None:
            continue
        concept = _concept(ctx, item)
        if concept is None:
            if state == "current":
                ctx.out.warn(item.label, None, "medication not identifiable (no code, text or Medication)")
            continue
        name = _name(concept)
        matches = _match(ctx, item, concept)
        if not matches:
            if state == "current":
                src = _source(item, _first_coding(concept), None)
                _add(listed, name, layout.unmatched_medication_class, src)
            continue
        for rule, coding in matches:
            src = _source(item, coding, rule.rule)
            if state == "current" or rule.klass != layout.unmatched_medication_class:
                _add(listed, name, rule.klass, src)
            if state == "current":
                for flag in rule.flags:
                    ctx.out.add_boolean(flag, True, src)
    if not listed:
        return  # an empty list would read as "recorded: none"; absent means unknown
    ordered = sorted(listed.values(), key=lambda m: (m.klass, m.name.lower(), m.name))
    value = [{layout.medication_name_key: m.name, layout.medication_class_key: m.klass} for m in ordered]
    ctx.out.set_value(layout.medication_list, value)
    base = fact_pointer(layout.medication_list)
    for i, med in enumerate(ordered):
        ctx.out.provenance[f"{base}/{i}"] = med.sources


def _source(item: Item, coding: Coding, rule: str | None) -> dict[str, Any]:
    system, code, display = coding
    return {"resource": item.label, "system": system, "code": code, "display": display, "rule": rule}


def _add(listed: dict[tuple[str, str], _Listed], name: str, klass: str, src: dict[str, Any]) -> None:
    entry = listed.setdefault((name.lower(), klass), _Listed(name, klass))
    if src not in entry.sources:
        entry.sources.append(src)


def _state(ctx: Context, item: Item) -> str | None:
    """'current', 'ended' (recently) or None (not to be used)."""
    res = item.resource
    status = res.get("status")
    if item.rtype == "MedicationRequest":
        if res.get("intent") in MEDICATION_IGNORED_INTENT:
            return None
        start = parse_fhir_datetime(res.get("authoredOn"))
        validity = (
            res.get("dispenseRequest", {}).get("validityPeriod")
            if isinstance(res.get("dispenseRequest"), Mapping)
            else None
        )
        end = period_time(validity, prefer_end=True) if validity else None
    else:
        start = choice_time(res, "effective", prefer_end=False) or parse_fhir_datetime(res.get("dateAsserted"))
        end = choice_time(res, "effective", prefer_end=True)
    if status not in MEDICATION_CURRENT_STATUS and status not in MEDICATION_ENDED_STATUS:
        return None
    if ctx.after_now(item, start):
        return None
    if status in MEDICATION_CURRENT_STATUS:
        return "current"
    ended: datetime | None = end or start
    if ended is None or ended > ctx.now or ctx.now - ended > ctx.medication_window:
        return None
    return "ended"


def _concept(ctx: Context, item: Item) -> Mapping[str, Any] | None:
    concept = item.resource.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return concept
    ref = item.resource.get("medicationReference")
    if ref is not None:
        target = ctx.index.resolve(ref, item)
        code = target.resource.get("code") if target is not None and target.rtype == "Medication" else None
        if isinstance(code, Mapping):
            return code
        if isinstance(ref, Mapping) and isinstance(ref.get("display"), str):
            return {"text": ref["display"]}
    return None


def _name(concept: Mapping[str, Any]) -> str:
    text = concept.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    system, code, display = _first_coding(concept)
    if display:
        return display
    return f"{system}|{code}" if code else "unnamed medication"


def _first_coding(concept: Mapping[str, Any]) -> Coding:
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            system, display = coding.get("system"), coding.get("display")
            return (
                system if isinstance(system, str) else None,
                coding["code"],
                display.strip() if isinstance(display, str) and display.strip() else None,
            )
    return (None, None, None)


def _texts(concept: Mapping[str, Any]) -> list[tuple[str, ...]]:
    texts = [concept.get("text")]
    texts += [c.get("display") for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    return [words(t) for t in texts if isinstance(t, str) and t.strip()]


def _match(ctx: Context, item: Item, concept: Mapping[str, Any]) -> list[tuple[MedicationRule, Coding]]:
    """Rules for this medication: a code match wins; otherwise whole-word ingredient names."""
    out: list[tuple[MedicationRule, Coding]] = []
    for hit in ctx.tables.index(FAMILY_MEDICATION).match_concept(concept):
        if isinstance(hit.rule, NotMappedRule):
            ctx.out.not_mapped(hit.rule, item)
            return []
        if isinstance(hit.rule, MedicationRule) and all(r is not hit.rule for r, _ in out):
            out.append((hit.rule, (hit.system, hit.code, hit.display)))
    if out:
        return out
    texts = _texts(concept)
    coding = _first_coding(concept)
    for rule in ctx.tables.medication_rules:
        for text in texts:
            if rule.except_words.intersection(text):
                continue
            if any(contains_phrase(text, phrase) for phrase in rule.ingredients):
                out.append((rule, coding))
                break
    return out
