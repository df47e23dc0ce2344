"""Offering to remove draft orders (``order-select``/``order-sign``) on finding cards.

A draft whose medicine class a fired rule's ``worsened_by`` names, or that a finding's
reasons cite, is offered for removal (a CDS Hooks ``delete`` action), once per draft: on
the most urgent card naming it. Any other card naming it says which card offers it, so
the clinician never sees two buttons for one order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from neurocds.cdshooks.markdown import md, truncate
from neurocds.cdshooks.orders import FactSources
from neurocds.rules.ruleset import WorsenedBy

__all__ = ["DraftOffers", "draft_offers", "is_medication_list"]


def is_medication_list(value: Any) -> bool:
    """A list of named items (or one): the facts contract's shape for medicines."""
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(v, Mapping) and "name" in v for v in items)


def _cited_drafts(finding: Mapping[str, Any], sources: FactSources) -> list[tuple[str, str]]:
    """(draft pointer, medicine name) of each draft medication this finding's reasons cite."""
    cited: list[tuple[str, str]] = []
    for item in finding.get("because") or ():
        pointer = item.get("pointer")
        value = item.get("value")
        if not isinstance(pointer, str) or not pointer or not is_medication_list(value):
            continue
        items = value if isinstance(value, list) else [value]
        for index, med in enumerate(items):
            where = f"{pointer}/{index}" if isinstance(value, list) else pointer
            if sources.is_draft(where):
                cited.append((where, str(med["name"])))
    return cited


def _worsening_drafts(
    finding: Mapping[str, Any], sources: FactSources, worsened_by: Mapping[str, WorsenedBy]
) -> list[tuple[str, str, str]]:
    """(draft pointer, name, rationale) of each draft whose class a fired rule of this finding says worsens it."""
    found: list[tuple[str, str, str]] = []
    fired = finding.get("rules") or [finding.get("rule")]
    for rule_id in fired:
        worsening = worsened_by.get(str(rule_id))
        if worsening is None:
            continue
        for pointer in sources.drafts_of_classes(worsening.classes):
            if pointer not in {p for p, _, _ in found}:
                found.append((pointer, sources.draft_names.get(pointer, "the draft order"), worsening.rationale))
    return found


class DraftOffers(NamedTuple):
    """What one finding's card says and offers about the draft orders it names."""

    suggestions: list[dict[str, Any]]  # a removal per draft resource not offered on a more urgent card
    worsening: list[str]  # detail lines: each draft that worsens the finding, with the pack's rationale
    elsewhere: list[str]  # detail lines: each draft whose removal a more urgent card offers, and which card
    named: set[str]  # every draft resource the finding names (worsened_by or its reasons)


def draft_offers(
    finding: Mapping[str, Any],
    sources: FactSources,
    worsened_by: Mapping[str, WorsenedBy],
    offered_on: Mapping[str, str],
) -> DraftOffers:
    """'Remove the draft order' for each draft that a fired rule's ``worsened_by`` names or its reasons
    cite, unless a more urgent card offers it already (``offered_on``: draft resource -> that card's
    summary): then this card says where. Only drafts are offered: a medicine already being taken is
    the clinician's to stop (the finding's recommendations say so), not an order to withdraw.
    """
    worsening = _worsening_drafts(finding, sources, worsened_by)
    why = {pointer: rationale for pointer, _, rationale in worsening}
    candidates = [(p, n) for p, n, _ in worsening] + _cited_drafts(finding, sources)
    suggestions: list[dict[str, Any]] = []
    elsewhere: list[str] = []
    seen: set[str] = set()
    for pointer, name in candidates:
        for resource in sources.drafts.get(pointer, ()):
            if resource in seen:
                continue
            seen.add(resource)
            label = truncate(f"Remove the draft order for {name}", 80)
            if resource in offered_on:
                # One removal button per draft: several cards offering it read as several orders.
                elsewhere.append(f"- {md(label)}: offered on the card {md(f'“{offered_on[resource]}”')}")
                continue
            description = f"{label}: {why[pointer]}" if pointer in why else label
            # CDS Hooks 2.0 Action.resourceId: one relative reference (a string), e.g. MedicationRequest/1.
            action = {"type": "delete", "description": description, "resourceId": resource}
            suggestions.append({"label": label, "uuid": str(uuid.uuid4()), "actions": [action]})
    lines = [f"- {md(f'{name} [draft order, not yet signed]')}: {md(rationale)}" for _, name, rationale in worsening]
    return DraftOffers(suggestions, lines, elsewhere, seen)
