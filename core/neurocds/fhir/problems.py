"""Condition and Procedure resources -> boolean facts (policy: :mod:`neurocds.fhir.policy`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from neurocds.fhir.bundle import Item
from neurocds.fhir.collect import fact_pointer, source
from neurocds.fhir.context import Context
from neurocds.fhir.dates import choice_time, parse_fhir_datetime
from neurocds.fhir.policy import PROCEDURE_DONE_STATUS, status_code
from neurocds.fhir.rules import (
    FAMILY_CONDITION,
    FAMILY_PROCEDURE,
    CodeHit,
    ConditionRule,
    NotMappedRule,
    ProcedureRule,
)


def _unique_hits(hits: list[CodeHit]) -> list[CodeHit]:
    """One hit per rule (a resource coded in two code systems is still one piece of evidence)."""
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.rule.rule not in seen:
            seen.add(hit.rule.rule)
            out.append(hit)
    return out


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def extract_conditions(ctx: Context) -> None:
    policy = ctx.condition_policy
    index = ctx.tables.index(FAMILY_CONDITION)
    for item in ctx.of_type("Condition"):
        res = item.resource
        hits = _unique_hits(index.match_concept(res.get("code")))
        if not hits:
            continue
        verification = status_code(res.get("verificationStatus"))
        if verification in policy.silent_ignore_verification:
            continue
        if verification in policy.warn_ignore_verification:
            ctx.out.warn(item.label, None, f"verificationStatus {verification!r}: a suspicion is not used")
            continue
        if verification is None:
            positive = policy.missing_verification_is_confirmed
            if not positive:
                ctx.out.warn(item.label, None, "no verificationStatus: not used")
                continue
        elif verification in policy.negative_verification:
            positive = False
        elif verification in policy.positive_verification:
            positive = True
        else:
            ctx.out.warn(item.label, None, f"unknown verificationStatus {verification!r}: not used")
            continue
        onset = choice_time(res, "onset", prefer_end=False)
        recorded = parse_fhir_datetime(res.get("recordedDate"))
        when = (onset or recorded) if positive else (recorded or onset)
        if ctx.after_now(item, when):
            continue
        clinical = status_code(res.get("clinicalStatus"))
        for hit in hits:
            rule = hit.rule
            if isinstance(rule, NotMappedRule):
                ctx.out.not_mapped(rule, item)
            elif isinstance(rule, ConditionRule) and _condition_counts(ctx, item, rule, positive, clinical, when):
                for fact in rule.facts:
                    ctx.out.add_boolean(fact, positive, source(item, hit))


def _condition_counts(
    ctx: Context, item: Item, rule: ConditionRule, positive: bool, clinical: str | None, when: datetime | None
) -> bool:
    policy = ctx.condition_policy
    pointer = fact_pointer(rule.facts[0])
    if positive:
        if rule.scope == "current":
            if clinical is None:
                ctx.out.warn(item.label, pointer, "no clinicalStatus: not used for a current finding")
                return False
            if clinical not in policy.current_clinical:
                return False  # resolved/inactive: not current, nothing to say
        elif clinical is not None and clinical not in policy.current_clinical | policy.past_clinical:
            ctx.out.warn(item.label, pointer, f"unknown clinicalStatus {clinical!r}: not used")
            return False
    elif rule.scope == "current" and rule.within_days is None:
        return False  # an undated "refuted" says nothing about today
    if rule.within_days is None:
        return True
    if when is None:
        ctx.out.warn(item.label, pointer, f"no onset date; {rule.rule} needs one within {rule.within_days:g} days")
        return False
    if ctx.now - when > timedelta(days=rule.within_days):
        ctx.out.warn(
            item.label,
            pointer,
            f"dated {_day(when)}, outside the {rule.within_days:g}-day window of {rule.rule}: not used",
        )
        return False
    return True


def extract_procedures(ctx: Context) -> None:
    index = ctx.tables.index(FAMILY_PROCEDURE)
    for item in ctx.of_type("Procedure"):
        res = item.resource
        hits = _unique_hits(index.match_concept(res.get("code")))
        if not hits or res.get("status") not in PROCEDURE_DONE_STATUS:
            continue
        when = choice_time(res, "performed", prefer_end=True)
        if ctx.after_now(item, when):
            continue
        for hit in hits:
            rule = hit.rule
            if isinstance(rule, NotMappedRule):
                ctx.out.not_mapped(rule, item)
                continue
            if not isinstance(rule, ProcedureRule):
                continue
            pointer = fact_pointer(rule.facts[0])
            if when is None:
                ctx.out.warn(item.label, pointer, f"no performed date; {rule.rule} needs one")
            elif ctx.now - when > timedelta(days=rule.within_days):
                ctx.out.warn(
                    item.label,
                    pointer,
                    f"performed {_day(when)}, outside the {rule.within_days:g}-day window of {rule.rule}: not used",
                )
            else:
                for fact in rule.facts:
                    ctx.out.add_boolean(fact, True, source(item, hit))
