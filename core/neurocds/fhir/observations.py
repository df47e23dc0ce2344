"""Observation resources -> lab numbers (with unit conversion) and coded findings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from neurocds.fhir.bundle import Item, inherited_times
from neurocds.fhir.collect import fact_pointer, source
from neurocds.fhir.context import Context
from neurocds.fhir.dates import choice_time, parse_fhir_datetime
from neurocds.fhir.policy import OBSERVATION_USABLE_STATUS, OBSERVATION_WARN_STATUS, UCUM_SYSTEM
from neurocds.fhir.rules import FAMILY_OBSERVATION, CodeHit, FindingRule, NotMappedRule, QuantityRule


@dataclass
class _Candidate:
    item: Item
    hit: CodeHit
    when: datetime | None

    def sort_key(self) -> tuple[datetime, datetime, str]:
        """Latest first after reverse sort: effective time, then issued, then label (ties)."""
        assert self.when is not None  # only dated candidates are sorted
        issued = parse_fhir_datetime(self.item.resource.get("issued")) or self.when
        return (self.when, issued, self.item.label)


class Unusable(Exception):
    """A mapped Observation whose value cannot be used; the message says why."""


def extract_observations(ctx: Context) -> None:
    index = ctx.tables.index(FAMILY_OBSERVATION)
    inherited = inherited_times(ctx.items, ctx.index)
    by_rule: dict[str, list[_Candidate]] = {}
    for item in ctx.of_type("Observation"):
        res = item.resource
        hits = index.match_concept(res.get("code"))
        if not hits:
            continue
        status = res.get("status")
        if status not in OBSERVATION_USABLE_STATUS:
            if status in OBSERVATION_WARN_STATUS or not isinstance(status, str):
                ctx.out.warn(item.label, None, f"Observation status {status!r}: not used")
            continue
        when = (
            choice_time(res, "effective", prefer_end=True)
            or parse_fhir_datetime(res.get("issued"))
            or inherited.get(id(res))
        )
        seen: set[str] = set()
        for hit in hits:
            if hit.rule.rule not in seen:
                seen.add(hit.rule.rule)
                by_rule.setdefault(hit.rule.rule, []).append(_Candidate(item, hit, when))
    for name in sorted(by_rule):
        _decide(ctx, by_rule[name])


def _decide(ctx: Context, candidates: list[_Candidate]) -> None:
    rule = candidates[0].hit.rule
    if isinstance(rule, NotMappedRule):
        ctx.out.not_mapped(rule, candidates[0].item)
        return
    assert isinstance(rule, QuantityRule | FindingRule)
    pointer = fact_pointer(rule.fact)
    undated = [c for c in candidates if c.when is None]
    if undated:
        ctx.out.warn(undated[0].item.label, pointer, f"{len(undated)} undated result(s) not used")
    dated = [c for c in candidates if c.when is not None and not ctx.after_now(c.item, c.when)]
    dated.sort(key=_Candidate.sort_key, reverse=True)
    oldest_allowed = ctx.now - ctx.observation_window
    fresh = [c for c in dated if c.when is not None and c.when >= oldest_allowed]
    if not fresh:
        if dated and dated[0].when is not None:
            days = (ctx.now - dated[0].when).total_seconds() / 86400
            ctx.out.warn(
                dated[0].item.label,
                pointer,
                f"latest result is {days:.0f} days old (window {ctx.observation_window.days} days): stale, not used",
            )
        return
    dropped: list[str] = []
    for cand in fresh:
        try:
            if isinstance(rule, QuantityRule):
                ctx.out.set_value(rule.fact, _quantity(rule, cand.item.resource), [source(cand.item, cand.hit)])
            else:
                value = _finding(rule, cand.item.resource)
                if isinstance(value, bool):
                    ctx.out.add_boolean(rule.fact, value, source(cand.item, cand.hit))
                else:
                    ctx.out.set_value(rule.fact, value, [source(cand.item, cand.hit)])
        except Unusable as exc:
            ctx.out.warn(cand.item.label, pointer, f"{exc}: value dropped")
            dropped.append(cand.item.label)
            continue
        if dropped:
            ctx.out.warn(
                cand.item.label,
                pointer,
                f"used an older result because newer one(s) were dropped: {', '.join(dropped)}",
            )
        return


def _quantity(rule: QuantityRule, res: Mapping[str, Any]) -> float | int:
    if "dataAbsentReason" in res and "valueQuantity" not in res:
        raise Unusable("no value (dataAbsentReason)")
    quantity = res.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        raise Unusable("no valueQuantity")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unusable("valueQuantity has no numeric value")
    if quantity.get("comparator") is not None:
        raise Unusable(f"value is a bound ({quantity.get('comparator')}{value}), not a measurement")
    conversion = None
    code, unit, system = quantity.get("code"), quantity.get("unit"), quantity.get("system")
    if isinstance(code, str) and (system is None or system == UCUM_SYSTEM):
        conversion = rule.units.get(code.strip())
    if conversion is None and isinstance(unit, str):
        # Fallback only for a display unit spelled exactly like an accepted UCUM code.
        conversion = rule.units.get(unit.strip())
    if conversion is None:
        shown = code if isinstance(code, str) else unit
        raise Unusable(f"unknown unit {shown!r} for {rule.rule} (canonical {rule.canonical_unit!r})")
    try:
        result = conversion.apply(float(value)) if not conversion.is_identity else value
        finite = math.isfinite(result)
    except OverflowError:  # an integer beyond float range (a Python dict, not JSON text)
        finite = False
    if not finite or result < 0:
        raise Unusable("result is not a finite non-negative number")
    if rule.decimals is not None and not conversion.is_identity:
        result = round(result, rule.decimals)
    if rule.possible is not None and not rule.possible[0] <= result <= rule.possible[1]:
        # A value no living patient can have is a data error: using it would raise an
        # emergency card from garbage. The warning names the range, never the value.
        low, high = rule.possible
        raise Unusable(f"outside the physiologically possible range {low:g}..{high:g} {rule.canonical_unit}")
    return result


def _finding(rule: FindingRule, res: Mapping[str, Any]) -> Any:
    if "valueBoolean" in res and rule.has_boolean:
        flag = res["valueBoolean"]
        if isinstance(flag, bool):
            return rule.when_true if flag else rule.when_false
    concept = res.get("valueCodeableConcept")
    if isinstance(concept, Mapping) and rule.value_codes:
        for coding in concept.get("coding") or []:
            if isinstance(coding, Mapping):
                key = (str(coding.get("system", "")).strip(), str(coding.get("code", "")).strip())
                if key in rule.value_codes:
                    return rule.value_codes[key]
        raise Unusable("coded value not in the table")
    raise Unusable("no boolean or coded value the table can read")
