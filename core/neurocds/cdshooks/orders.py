"""Draft orders (``order-select``/``order-sign``) and what a card says about the FHIR data behind a fact.

Draft MedicationRequests in ``context.draftOrders`` are medications being
ordered: they are converted with the prefetch, as orders placed now, so the rules
read them as they read the medication list. The facts contract has no field for
an order's status, so which medication items are drafts is recorded in the
trace (``input_provenance.draft_orders``: item pointer -> draft resources, and
``status: draft`` on those provenance entries), and cards say "draft order".

:class:`FactSources` answers, for a fact pointer, the date of the result used
and the draft orders behind it, from the resources the converter cited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# The key the drafts travel under through the converter (never a key the service asks for).
DRAFT_KEY = "draftOrders"
# Where FHIR resources keep the clinically relevant date, most specific first.
_DATE_FIELDS = (
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "performedDateTime",
    "onsetDateTime",
    "recordedDate",
    "authoredOn",
)
_PERIOD_FIELDS = ("effectivePeriod", "performedPeriod", "onsetPeriod")


def draft_medication_requests(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The MedicationRequests of ``context.draftOrders`` (other resource types are not read)."""
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    drafts = []
    for entry in entries if isinstance(entries, list) else ():
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, Mapping) and resource.get("resourceType") == "MedicationRequest":
            drafts.append(dict(resource))
    return drafts


def as_orders_being_placed(drafts: Iterable[Mapping[str, Any]], patient_id: str) -> dict[str, Any]:
    """The drafts as a Bundle the converter reads as current orders for this patient.

    A draft's status (``draft``) and missing ``authoredOn`` would make the converter skip
    it as not current: it is being ordered now, which is exactly what the rules must see.
    """
    entries = []
    for draft in drafts:
        order = {k: v for k, v in draft.items() if k != "authoredOn"}
        order["status"] = "active"
        order["intent"] = "order"
        order.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        entries.append({"resource": order})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def mark_drafts(
    provenance: dict[str, list[dict[str, Any]]], drafts: Iterable[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """Flag the provenance entries that come from drafts; returns pointer -> draft resources."""
    labels = {f"MedicationRequest/{d['id']}" for d in drafts if isinstance(d.get("id"), str)}
    marked: dict[str, list[str]] = {}
    for pointer, sources in provenance.items():
        for source in sources:
            if source.get("resource") in labels:
                source["status"] = "draft"
                marked.setdefault(pointer, []).append(str(source["resource"]))
    return marked


def _field_at(facts: Mapping[str, Any], pointer: str, key: str) -> str | None:
    """Field ``key`` of the list item a JSON pointer (``/list/2``) designates in the facts."""
    node: Any = facts
    for part in pointer.strip("/").split("/"):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return None
    value = node.get(key) if isinstance(node, Mapping) else None
    return value if isinstance(value, str) else None


def _date_of(resource: Mapping[str, Any]) -> str | None:
    for name in _DATE_FIELDS:
        value = resource.get(name)
        if isinstance(value, str) and len(value) >= 4:
            return value[:10]
    for name in _PERIOD_FIELDS:
        period = resource.get(name)
        if isinstance(period, Mapping):
            value = period.get("end") or period.get("start")
            if isinstance(value, str) and len(value) >= 4:
                return value[:10]
    return None


def _resources(prefetch: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for value in prefetch.values():
        if not isinstance(value, Mapping):
            continue
        if value.get("resourceType") == "Bundle" and isinstance(value.get("entry"), list):
            for entry in value["entry"]:
                if isinstance(entry, Mapping) and isinstance(entry.get("resource"), Mapping):
                    yield entry["resource"]
        else:
            yield value


@dataclass(frozen=True)
class FactSources:
    """Per fact pointer: the date of the result used, and the draft orders it came from."""

    dates: Mapping[str, str] = field(default_factory=dict)
    drafts: Mapping[str, list[str]] = field(default_factory=dict)
    # Names of the medication items that are drafts, by pointer, for cards that do not cite them.
    draft_names: Mapping[str, str] = field(default_factory=dict)
    # Their classes, by pointer: a fired rule's ``worsened_by`` classes are matched against them.
    draft_classes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        prefetch: Mapping[str, Any],
        provenance: Mapping[str, Any],
        drafts: Mapping[str, list[str]],
        facts: Mapping[str, Any],
        name_key: str = "name",
        class_key: str = "",
    ) -> FactSources:
        """``name_key``/``class_key``: the fields of a medication item (the FHIR tables' layout)."""
        by_label = {
            f"{r['resourceType']}/{r['id']}": r
            for r in _resources(prefetch)
            if isinstance(r.get("resourceType"), str) and isinstance(r.get("id"), str)
        }
        dates: dict[str, str] = {}
        for pointer, sources in provenance.items():
            if pointer.startswith("/patient/") or not isinstance(sources, list):
                continue  # demographics have no result date
            found = [_date_of(by_label[s["resource"]]) for s in sources if s.get("resource") in by_label]
            known = [d for d in found if d]
            if known:
                dates[pointer] = max(known)  # the latest of the results that gave the fact
        names = {pointer: _field_at(facts, pointer, name_key) for pointer in drafts}
        classes = {pointer: _field_at(facts, pointer, class_key) for pointer in drafts} if class_key else {}
        return cls(
            dates, dict(drafts), {p: n for p, n in names.items() if n}, {p: c for p, c in classes.items() if c}
        )

    def is_draft(self, pointer: str) -> bool:
        return pointer in self.drafts

    def drafts_of_classes(self, classes: Iterable[str]) -> list[str]:
        """Pointers of the draft items whose class is one of ``classes``, in list order."""
        wanted = set(classes)
        return [pointer for pointer, klass in self.draft_classes.items() if klass in wanted]
