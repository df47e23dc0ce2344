"""The services this CDS service offers and the FHIR data it asks the EHR to prefetch.

Prefetch templates use only the ``{{context.patientId}}`` token, which every
hook we serve provides, and only what the CDS Hooks specification's prefetch
query restrictions allow: type-level searches by patient, token equality
(``code=system|code,...``) and ``_sort``. The resource families requested are
the ones the FHIR converter reads; each key is fetched by the EHR as a search,
so a ``searchset`` Bundle arrives.

Observation and Procedure searches are narrowed to the codes the loaded mapping
tables know, generated from those tables (a code added to a table is asked for
at once): a patient's whole Observation history is most of a record's size, and
only the mapped codes can ever become facts. A family whose table uses prefix
matching (ICD-10 Conditions) cannot be narrowed by token equality and is asked
for whole, as are MedicationRequests, which are matched by ingredient words too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from neurocds.fhir import MappingTables
from neurocds.fhir.rules import FAMILY_OBSERVATION, FAMILY_PROCEDURE

PATIENT_TOKEN = "{{context.patientId}}"

USAGE = (
    "Prefetch keys not sent (or sent as an OperationOutcome) are fetched from fhirServer when it is on "
    "this service's allowlist for the calling client; a null key means no such data. Without prefetch "
    "or an allowlisted fhirServer the call is answered 412. Decision support for a clinician, never a diagnosis."
)


def _token_values(codes: Iterable[tuple[str, str]]) -> str:
    """``system|code`` values joined by ',' (FHIR: any of them), percent-encoded for a URL."""
    return ",".join(quote(f"{system}|{code}", safe=":/.-_") for system, code in sorted(codes))


def _search(rtype: str, codes: set[tuple[str, str]] | None, extra: str = "") -> str:
    """A patient-scoped search; narrowed to ``codes`` when the family can be (``None``: cannot)."""
    query = f"{rtype}?patient={PATIENT_TOKEN}"
    if codes is not None:
        query += f"&code={_token_values(codes)}"
    return query + extra


def prefetch_templates(tables: MappingTables) -> dict[str, str]:
    """The prefetch templates for the loaded mapping tables (the same for every service)."""
    observation_codes = tables.index(FAMILY_OBSERVATION).searchable_codes()
    procedure_codes = tables.index(FAMILY_PROCEDURE).searchable_codes()
    return {
        "patient": f"Patient/{PATIENT_TOKEN}",
        "conditions": _search("Condition", None),
        # Most recent first: the converter uses the latest result within its window.
        "observations": _search("Observation", observation_codes, "&_sort=-date"),
        "procedures": _search("Procedure", procedure_codes),
        "medications": _search("MedicationRequest", None),
    }


@dataclass(frozen=True)
class ServiceDefinition:
    """One entry of the discovery document, and the hook its calls must name."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    # Context members (besides patientId) the hook definition makes required.
    required_context: tuple[str, ...] = ()
    usage_requirements: str = USAGE

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
            "usageRequirements": self.usage_requirements,
        }


def build_services(tables: MappingTables) -> tuple[ServiceDefinition, ...]:
    prefetch = prefetch_templates(tables)
    return (
        ServiceDefinition(
            id="neurocds-patient-view",
            hook="patient-view",
            title="neurocds decision support",
            description=(
                "When a patient's chart is opened, evaluates the recorded facts with the installed rule packs, "
                "shows findings that need attention and lists the facts that are not recorded."
            ),
            prefetch=prefetch,
            required_context=("userId",),
        ),
        ServiceDefinition(
            id="neurocds-order-select",
            hook="order-select",
            title="neurocds decision support at ordering",
            description=(
                "When orders are selected, evaluates the patient's recorded facts with the installed rule packs, "
                "reading draft MedicationRequests as medications being ordered; a finding that cites a draft, "
                "or whose rule names the draft's class as worsening it, offers to remove it."
            ),
            prefetch=prefetch,
            required_context=("userId", "selections", "draftOrders"),
        ),
        ServiceDefinition(
            id="neurocds-order-sign",
            hook="order-sign",
            title="neurocds decision support before signing",
            description=(
                "Before orders are signed (the last chance), evaluates the patient's recorded facts with the "
                "installed rule packs, reading draft MedicationRequests as medications being ordered; a finding "
                "that cites a draft, or whose rule names the draft's class as worsening it, offers to remove it."
            ),
            prefetch=prefetch,
            required_context=("userId", "draftOrders"),
        ),
    )


def service_by_id(services: Iterable[ServiceDefinition], service_id: str) -> ServiceDefinition | None:
    return next((s for s in services if s.id == service_id), None)


def discovery_document(services: Iterable[ServiceDefinition]) -> dict[str, Any]:
    return {"services": [s.to_dict() for s in services]}
