"""FhirConverter: a FHIR R4 Bundle or CDS Hooks prefetch -> one facts document.

The converter walks resources, matches codes against the mapping tables,
converts units and applies the status / recency policy described in
:mod:`neurocds.fhir.policy`. It records, for every fact, which resource and
which coding produced it (``provenance``) and every value it refused to use
(``warnings``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from neurocds.fhir.bundle import (
    FhirInputError,
    Item,
    ResourceIndex,
    belongs_to,
    choose_patient,
    names_patient,
    require_bundle,
    walk_bundle,
    walk_prefetch,
)
from neurocds.fhir.collect import Collector
from neurocds.fhir.context import Context
from neurocds.fhir.dates import format_rfc3339
from neurocds.fhir.mapping import MappingTables, load_mapping_tables
from neurocds.fhir.medication import extract_medication
from neurocds.fhir.observations import extract_observations
from neurocds.fhir.patient import extract_patient
from neurocds.fhir.policy import DEFAULT_CONDITION_POLICY, DEFAULT_OBSERVATION_WINDOW_DAYS, ConditionPolicy
from neurocds.fhir.problems import extract_conditions, extract_procedures
from neurocds.fhir.sources import default_mapping_paths

DEFAULT_MEDICATION_WINDOW_DAYS = 30.0


@dataclass
class FhirConversion:
    """The result of one conversion.

    :param facts: a facts document (contract version, patient id, whatever was derived).
    :param provenance: JSON pointer of each fact -> the resources and codings behind it.
    :param warnings: values not used and why: ``{"resource", "pointer", "message"}``.
    :param now: the instant every recency decision was measured against.
    :param only_other_patients: every resource that names a patient names someone other
        than the chosen one: the input holds nothing about this patient.
    """

    facts: dict[str, Any]
    provenance: dict[str, list[dict[str, Any]]]
    warnings: list[dict[str, Any]]
    now: datetime | None = field(default=None)
    only_other_patients: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "provenance": self.provenance, "warnings": self.warnings}


def _window(days: float, name: str) -> timedelta:
    if isinstance(days, bool) or not isinstance(days, int | float) or not math.isfinite(days) or days <= 0:
        raise ValueError(f"{name} must be a positive number of days, got {days!r}")
    return timedelta(days=days)


class FhirConverter:
    """Convert FHIR R4 input into facts using mapping tables.

    :param tables: compiled tables; ``None`` loads the built-in ones.
    :param now: the instant "now" for recency; ``None`` reads the wall clock once per
        conversion (pass it explicitly for reproducible output).
    :param observation_window_days: how old an Observation may be and still count.
    :param medication_window_days: how long ago a completed/stopped medication may have
        ended and still be listed (only when its class is mapped).
    :param condition_policy: how Condition statuses count (see :mod:`neurocds.fhir.policy`).
    """

    def __init__(
        self,
        tables: MappingTables | None = None,
        *,
        now: datetime | None = None,
        observation_window_days: float = DEFAULT_OBSERVATION_WINDOW_DAYS,
        medication_window_days: float = DEFAULT_MEDICATION_WINDOW_DAYS,
        condition_policy: ConditionPolicy = DEFAULT_CONDITION_POLICY,
    ) -> None:
        if now is not None and (not isinstance(now, datetime) or now.tzinfo is None):
            raise ValueError("now must be a timezone-aware datetime")
        self.tables = tables if tables is not None else load_mapping_tables(default_mapping_paths())
        self.now = now.astimezone(UTC) if now is not None else None
        self.observation_window = _window(observation_window_days, "observation_window_days")
        self.medication_window = _window(medication_window_days, "medication_window_days")
        self.condition_policy = condition_policy

    def convert_bundle(self, bundle: Mapping[str, Any], patient_id: str | None = None) -> FhirConversion:
        """Convert a Bundle of any type (transaction, collection, searchset, nested)."""
        items = list(walk_bundle(require_bundle(bundle)))
        return self._convert(items, patient_id, [])

    def convert_prefetch(self, prefetch: Mapping[str, Any], patient_id: str | None = None) -> FhirConversion:
        """Convert a CDS Hooks prefetch object (values: resources, Bundles or null).

        ``patient_id`` is normally the hook's ``context.patientId``.
        """
        items, notes = walk_prefetch(prefetch)
        return self._convert(items, patient_id, notes)

    def _convert(self, items: list[Item], patient_id: str | None, notes: list[tuple[str, str]]) -> FhirConversion:
        now = self.now or datetime.now(UTC)
        patient = choose_patient(items, patient_id)
        if len(patient.id) > 128:
            raise FhirInputError("patient id is longer than 128 characters")
        out = Collector()
        for where, message in notes:
            out.warn(None, None, f"{message} ({where})")
        index = ResourceIndex(items)
        mine: list[Item] = []
        others = 0
        for item in items:
            if belongs_to(item, patient):
                mine.append(item)
            else:
                others += 1
        if others:
            out.warn(None, None, f"{others} resource(s) about other patients were ignored")
        ctx = Context(
            tables=self.tables,
            now=now,
            observation_window=self.observation_window,
            medication_window=self.medication_window,
            condition_policy=self.condition_policy,
            index=index,
            patient=patient,
            items=mine,
            out=out,
        )
        extract_patient(ctx)
        extract_conditions(ctx)
        extract_procedures(ctx)
        extract_observations(ctx)
        extract_medication(ctx)
        layout = self.tables.document
        constants: dict[str, Any] = dict(layout.constants)
        if layout.recorded_at:
            constants[layout.recorded_at] = format_rfc3339(now)
        facts, provenance = out.finish(constants)
        return FhirConversion(
            facts=facts,
            provenance=provenance,
            warnings=out.warnings,
            now=now,
            only_other_patients=others > 0 and not names_patient(mine, patient),
        )
