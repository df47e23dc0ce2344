"""Walk FHIR Bundles (nested too) and CDS Hooks prefetch, resolve references, pick the patient.

Generic FHIR machinery only: nothing here knows what any code means.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from neurocds.errors import NeurocdsError
from neurocds.fhir.dates import choice_time, parse_fhir_datetime

MAX_BUNDLE_DEPTH = 8  # nested Bundles deeper than this are refused, not walked forever


class FhirInputError(NeurocdsError):
    """The FHIR input cannot be converted (not a Bundle, no patient, several patients ...).

    :param pointer: JSON pointer into the input where the problem is, when known.
    """

    def __init__(self, message: str, *, pointer: str | None = None) -> None:
        self.pointer = pointer
        super().__init__(f"{message} (at {pointer or '/'})" if pointer is not None else message)


@dataclass
class Item:
    """One resource found in the input, with where it came from."""

    resource: Mapping[str, Any]
    full_url: str | None
    scope: int  # which (nested) bundle held it: references resolve there first
    where: str  # JSON pointer in the input

    @property
    def rtype(self) -> str:
        value = self.resource.get("resourceType")
        return value if isinstance(value, str) else ""

    @property
    def rid(self) -> str | None:
        value = self.resource.get("id")
        return value if isinstance(value, str) and value else None

    @property
    def label(self) -> str:
        """``Type/id`` for provenance; the fullUrl or input pointer when there is no id."""
        if self.rid:
            return f"{self.rtype}/{self.rid}"
        return self.full_url or f"{self.rtype} at {self.where}"


@dataclass
class PatientChoice:
    """The patient the facts describe and every way the input may refer to it."""

    id: str
    item: Item | None
    aliases: set[str] = field(default_factory=set)


def require_bundle(bundle: Any) -> Mapping[str, Any]:
    if not isinstance(bundle, Mapping):
        raise FhirInputError("input is not a JSON object")
    if bundle.get("resourceType") != "Bundle":
        raise FhirInputError(f"expected resourceType 'Bundle', found {bundle.get('resourceType')!r}", pointer="")
    if "entry" in bundle and not isinstance(bundle["entry"], list):
        raise FhirInputError("Bundle.entry must be an array", pointer="/entry")
    return bundle


def walk_bundle(bundle: Mapping[str, Any], where: str = "", counter: list[int] | None = None) -> Iterator[Item]:
    """Yield every resource of ``bundle``; nested Bundles are opened, not returned.

    ``counter`` numbers the (nested) bundles so each keeps its own reference scope;
    pass the same list when walking several bundles that form one input.
    """
    yield from _walk(bundle, where, 0, counter if counter is not None else [0])


def _walk(bundle: Mapping[str, Any], where: str, depth: int, counter: list[int]) -> Iterator[Item]:
    if depth > MAX_BUNDLE_DEPTH:
        raise FhirInputError("Bundles nested too deeply", pointer=where)
    scope = counter[0]
    counter[0] += 1
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirInputError("Bundle.entry must be an array", pointer=f"{where}/entry")
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise FhirInputError("Bundle entry must be an object", pointer=f"{where}/entry/{i}")
        resource = entry.get("resource")
        if resource is None:
            continue  # e.g. a DELETE in a transaction: nothing to read
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise FhirInputError("entry.resource must be a FHIR resource", pointer=f"{where}/entry/{i}/resource")
        here = f"{where}/entry/{i}/resource"
        if resource["resourceType"] == "Bundle":
            yield from _walk(resource, here, depth + 1, counter)
            continue
        full_url = entry.get("fullUrl")
        yield Item(resource, full_url if isinstance(full_url, str) else None, scope, here)


def walk_prefetch(prefetch: Any) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items of a CDS Hooks prefetch object and notes about values that were skipped.

    Each prefetch value is a resource, a Bundle (usually a searchset) or ``null``
    when the EHR could not fetch it; anything else is skipped with a note.
    """
    if not isinstance(prefetch, Mapping):
        raise FhirInputError("prefetch is not a JSON object")
    items: list[Item] = []
    notes: list[tuple[str, str]] = []
    counter = [0]
    for key in sorted(prefetch):  # sorted: the same prefetch always gives the same order
        value = prefetch[key]
        where = "/" + str(key).replace("~", "~0").replace("/", "~1")
        if value is None:
            notes.append((where, f"prefetch {key!r} is null (not fetched): treated as not recorded"))
            continue
        if not isinstance(value, Mapping) or not isinstance(value.get("resourceType"), str):
            notes.append((where, f"prefetch {key!r} is not a FHIR resource: skipped"))
            continue
        if value["resourceType"] == "Bundle":
            link_value = value.get("link")
            links: list[Any] = link_value if isinstance(link_value, list) else []
            if any(isinstance(link, Mapping) and link.get("relation") == "next" for link in links):
                notes.append((where, f"prefetch {key!r} has more pages; only the first page was read"))
            items.extend(walk_bundle(value, where, counter))
        elif value["resourceType"] == "OperationOutcome":
            notes.append((where, f"prefetch {key!r} is an OperationOutcome: skipped"))
        else:
            items.append(Item(value, None, -1, where))
    return items, notes


class ResourceIndex:
    """Reference resolution over the collected items."""

    def __init__(self, items: list[Item]) -> None:
        self._by_url: dict[str, Item] = {}
        self._by_scoped: dict[tuple[int, str], Item] = {}
        self._by_key: dict[str, list[Item]] = {}
        for item in items:
            if item.full_url:
                self._by_url.setdefault(item.full_url, item)
            if item.rid:
                key = f"{item.rtype}/{item.rid}"
                self._by_scoped.setdefault((item.scope, key), item)
                self._by_key.setdefault(key, []).append(item)

    def resolve(self, reference: Any, origin: Item) -> Item | None:
        """Resolve a Reference (object or string) seen in ``origin``."""
        ref = reference.get("reference") if isinstance(reference, Mapping) else reference
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith("#"):
            return _contained(origin, ref[1:])
        if ref in self._by_url:
            return self._by_url[ref]
        key = reference_key(ref)
        if key is None:
            return None
        scoped = self._by_scoped.get((origin.scope, key))
        if scoped is not None:
            return scoped
        candidates = self._by_key.get(key, [])
        return candidates[0] if len(candidates) == 1 else None


def reference_key(ref: str) -> str | None:
    """``Type/id`` at the end of a relative or absolute reference (history suffix dropped)."""
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2:
        return None
    return f"{parts[-2]}/{parts[-1]}"


def _contained(origin: Item, local_id: str) -> Item | None:
    contained = origin.resource.get("contained")
    if not isinstance(contained, list):
        return None
    for i, res in enumerate(contained):
        if isinstance(res, Mapping) and res.get("id") == local_id and isinstance(res.get("resourceType"), str):
            return Item(res, None, origin.scope, f"{origin.where}/contained/{i}")
    return None


def choose_patient(items: list[Item], patient_id: str | None) -> PatientChoice:
    """Pick the one patient these resources describe, or explain why not."""
    patients = {pid: p for p in items if p.rtype == "Patient" and (pid := patient_key(p))}
    if patient_id is not None:
        if not isinstance(patient_id, str) or not patient_id:
            raise FhirInputError("patient_id must be a non-empty string")
        return _choice(patient_id, patients.get(patient_id))
    if len(patients) > 1:
        ids = sorted(patients)
        raise FhirInputError(
            f"input holds {len(ids)} patients ({', '.join(ids[:5])}); pass patient_id (CLI: --patient-id)"
        )
    if patients:
        pid, item = next(iter(patients.items()))
        return _choice(pid, item)
    # No Patient resource: fall back to the one patient every subject points at.
    subjects = {
        key.split("/", 1)[1] for item in items if (key := _subject_key(item)) is not None and key.startswith("Patient/")
    }
    if len(subjects) == 1:
        return _choice(subjects.pop(), None)
    if not subjects:
        raise FhirInputError(
            "input holds no Patient resource and no subject reference; pass patient_id (CLI: --patient-id)"
        )
    raise FhirInputError(f"resources refer to {len(subjects)} different patients; pass patient_id (CLI: --patient-id)")


def patient_key(item: Item) -> str | None:
    """Patient.id; for an id-less Patient in a transaction, the uuid of its fullUrl."""
    if item.rid:
        return item.rid
    url = item.full_url
    if url and url.startswith("urn:uuid:") and len(url) > len("urn:uuid:"):
        return url[len("urn:uuid:") :]
    return url or None


def _choice(pid: str, item: Item | None) -> PatientChoice:
    # A transaction refers to its Patient by fullUrl; prefetch data split out of such a
    # record keeps those "urn:uuid:<id>" references, so the id's urn counts too.
    aliases = {f"Patient/{pid}", f"urn:uuid:{pid}"}
    if item is not None and item.full_url:
        aliases.add(item.full_url)
    return PatientChoice(pid, item, aliases)


def _subject_ref(item: Item) -> str | None:
    for key in ("subject", "patient"):
        ref = item.resource.get(key)
        reference = ref.get("reference") if isinstance(ref, Mapping) else None
        if isinstance(reference, str):
            return reference
    return None


def _subject_key(item: Item) -> str | None:
    ref = _subject_ref(item)
    return reference_key(ref) if ref else None


def belongs_to(item: Item, patient: PatientChoice) -> bool:
    """False only when the resource's subject clearly names another patient."""
    ref = _subject_ref(item)
    if ref is None or ref in patient.aliases:
        return True
    if ref.startswith("urn:") or ref.startswith("#"):
        return False  # a urn that is not our Patient's fullUrl is someone else
    key = reference_key(ref)
    return key is None or not key.startswith("Patient/") or key == f"Patient/{patient.id}"


def names_patient(mine: list[Item], patient: PatientChoice) -> bool:
    """Whether the patient's own resources include its Patient resource or one whose subject is it.

    ``mine`` are the resources :func:`belongs_to` kept: a resource with no subject (a
    Medication, say) is kept too, but says nothing about whose record this is.
    """
    return patient.item is not None or any(_subject_ref(item) is not None for item in mine)


def inherited_times(items: list[Item], index: ResourceIndex) -> dict[int, datetime]:
    """Times for Observations that carry none, taken from the report or panel listing them.

    A report often dates the DiagnosticReport (or the panel Observation) and
    leaves its members undated; the member was measured at the report's time.
    Keys are ``id(resource)``.
    """
    times: dict[int, datetime] = {}
    pending: list[tuple[Item, datetime]] = []
    for item in items:
        if item.rtype in ("DiagnosticReport", "Observation"):
            moment = choice_time(item.resource, "effective", prefer_end=True) or parse_fhir_datetime(
                item.resource.get("issued")
            )
            if moment is not None:
                pending.append((item, moment))
    seen: set[int] = set()
    while pending:  # breadth-first through panels of panels; each resource once
        item, moment = pending.pop(0)
        if id(item.resource) in seen:
            continue
        seen.add(id(item.resource))
        key = "result" if item.rtype == "DiagnosticReport" else "hasMember"
        members = item.resource.get(key)
        for ref in members if isinstance(members, list) else []:
            target = index.resolve(ref, item)
            if target is None or target.rtype != "Observation":
                continue
            own = choice_time(target.resource, "effective", prefer_end=True) or parse_fhir_datetime(
                target.resource.get("issued")
            )
            if own is None and id(target.resource) not in times:
                times[id(target.resource)] = moment
            pending.append((target, own or moment))
    return times
