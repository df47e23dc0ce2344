"""The services this CDS service offers and the FHIR data it asks the EHR to prefetch.

Prefetch templates use only the ``{{context.patientId}}`` token, which every
hook we serve provides. The resource families requested are the ones the FHIR
converter reads (Patient, Condition, Observation, Procedure, MedicationRequest);
each key is fetched by the EHR as a search, so a ``searchset`` Bundle arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PATIENT_TOKEN = "{{context.patientId}}"

PREFETCH: dict[str, str] = {
    "patient": f"Patient/{PATIENT_TOKEN}",
    "conditions": f"Condition?patient={PATIENT_TOKEN}",
    "observations": f"Observation?patient={PATIENT_TOKEN}&category=laboratory",
    "examinations": f"Observation?patient={PATIENT_TOKEN}&category=exam",
    "vitals": f"Observation?patient={PATIENT_TOKEN}&category=vital-signs",
    "procedures": f"Procedure?patient={PATIENT_TOKEN}",
    "medications": f"MedicationRequest?patient={PATIENT_TOKEN}",
}

USAGE = (
    "Needs the prefetch above: this version does not query the FHIR server itself, so a call "
    "without prefetch is answered 412. Decision support for a clinician, never a diagnosis."
)


@dataclass(frozen=True)
class ServiceDefinition:
    """One entry of the discovery document, and the hook its calls must name."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str] = field(default_factory=lambda: dict(PREFETCH))
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


SERVICES: tuple[ServiceDefinition, ...] = (
    ServiceDefinition(
        id="neurocds-patient-view",
        hook="patient-view",
        title="neurocds decision support",
        description=(
            "When a patient's chart is opened, evaluates the recorded facts with the installed rule packs, "
            "shows findings that need attention and lists the facts that are not recorded."
        ),
        required_context=("userId",),
    ),
    ServiceDefinition(
        id="neurocds-order-select",
        hook="order-select",
        title="neurocds decision support at ordering",
        description=(
            "When orders are selected, evaluates the patient's recorded facts with the installed rule packs "
            "before ordering. Draft orders themselves are not evaluated in this version."
        ),
        required_context=("userId", "selections", "draftOrders"),
    ),
)


def service_by_id(service_id: str) -> ServiceDefinition | None:
    return next((s for s in SERVICES if s.id == service_id), None)


def discovery_document() -> dict[str, Any]:
    return {"services": [s.to_dict() for s in SERVICES]}
