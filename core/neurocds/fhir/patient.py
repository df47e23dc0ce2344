"""The Patient resource -> identity, age and sex (where they go is table data)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from neurocds.fhir.collect import fact_pointer
from neurocds.fhir.context import Context
from neurocds.fhir.dates import parse_fhir_date, parse_fhir_datetime, whole_years_between


def extract_patient(ctx: Context) -> None:
    layout = ctx.tables.document
    chosen = ctx.patient
    label = chosen.item.label if chosen.item else f"Patient/{chosen.id}"
    ctx.out.set_value(layout.patient_id, chosen.id, [_src(label, "Patient.id")])
    if chosen.item is None:
        ctx.out.warn(label, fact_pointer(layout.patient_id), "no Patient resource: age and sex are not recorded")
        return
    res = chosen.item.resource
    if layout.age_years:
        _age(ctx, res, label, layout.age_years, layout.max_age_years)
    if layout.sex and "gender" in res:
        gender = res.get("gender")
        value = layout.sex_values.get(gender) if isinstance(gender, str) else None
        if value is None:
            ctx.out.warn(label, fact_pointer(layout.sex), f"gender {gender!r} has no mapping: left out")
        else:
            ctx.out.set_value(layout.sex, value, [_src(label, "Patient.gender")])


def _age(ctx: Context, res: Mapping[str, Any], label: str, path: str, max_age: float | None) -> None:
    pointer = fact_pointer(path)
    at: date = ctx.now.date()
    deceased_at = parse_fhir_datetime(res.get("deceasedDateTime"))
    if deceased_at is not None and deceased_at <= ctx.now:
        # Nobody ages after death: the age is the age at death.
        at = deceased_at.date()
        ctx.out.warn(label, pointer, f"patient is recorded as deceased on {at.isoformat()}; age is at death")
    elif res.get("deceasedBoolean") is True:
        ctx.out.warn(label, pointer, "patient is recorded as deceased (no date); age is computed at 'now'")
    if "birthDate" not in res:
        return
    parsed = parse_fhir_date(res.get("birthDate"))
    if parsed is None:
        ctx.out.warn(label, pointer, "birthDate is not a FHIR date: age left out")
        return
    born, partial = parsed
    if born > at:
        ctx.out.warn(label, pointer, "birthDate is after 'now': age left out")
        return
    years = whole_years_between(born, at)
    if max_age is not None and years > max_age:
        ctx.out.warn(label, pointer, f"age {years} exceeds {max_age:g}: left out")
        return
    if partial:
        ctx.out.warn(label, pointer, "birthDate is partial; its earliest day was used")
    ctx.out.set_value(path, years, [_src(label, "Patient.birthDate")])


def _src(label: str, element: str) -> dict[str, Any]:
    return {"resource": label, "system": None, "code": None, "display": None, "rule": element}
