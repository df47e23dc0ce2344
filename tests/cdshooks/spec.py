"""Checks of response documents against the CDS Hooks 2.0 specification."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

INDICATORS = ("info", "warning", "critical")
INDICATOR_RANK = {"critical": 2, "warning": 1, "info": 0}


def assert_coding(coding: Any, where: str) -> None:
    assert isinstance(coding, Mapping), where
    assert isinstance(coding.get("code"), str) and coding["code"], f"{where}: Coding needs a code"
    assert isinstance(coding.get("system"), str) and coding["system"], f"{where}: Coding needs a system"
    if "display" in coding:
        assert isinstance(coding["display"], str), where


def assert_card(card: Any) -> None:
    assert isinstance(card, Mapping)
    uuid.UUID(card["uuid"])  # raises when not a UUID
    summary = card["summary"]
    assert isinstance(summary, str) and summary.strip(), "summary is required"
    assert len(summary) < 140, f"summary has {len(summary)} characters"
    assert card["indicator"] in INDICATORS
    source = card["source"]
    assert isinstance(source, Mapping) and isinstance(source.get("label"), str) and source["label"]
    if "topic" in source:
        assert_coding(source["topic"], "source.topic")
    if "detail" in card:
        assert isinstance(card["detail"], str)
    if card.get("suggestions"):
        assert card.get("selectionBehavior") in ("at-most-one", "any"), "suggestions need selectionBehavior"
    for suggestion in card.get("suggestions") or ():
        assert isinstance(suggestion["label"], str) and suggestion["label"], "a suggestion needs a label"
        for action in suggestion.get("actions") or ():
            assert_action(action)
    for i, reason in enumerate(card.get("overrideReasons") or ()):
        assert_coding(reason, f"overrideReasons/{i}")
    for link in card.get("links") or ():
        assert link["type"] in ("absolute", "smart") and link["label"] and link["url"]


def assert_action(action: Any) -> None:
    """CDS Hooks 2.0 Action: ``type`` and ``description`` required; a FHIR resource to create or
    update; for a delete, ``resourceId``: a relative reference (a string, ``Type/id``)."""
    assert action["type"] in ("create", "update", "delete")
    assert isinstance(action["description"], str) and action["description"]
    if action["type"] == "delete":
        reference = action.get("resourceId")
        assert isinstance(reference, str) and reference.count("/") == 1, f"resourceId {reference!r}"
        assert "resource" not in action, "a FHIR id in 'resource' for a delete is deprecated"
    else:
        assert isinstance(action["resource"], Mapping) and action["resource"].get("resourceType")


def assert_no_empty_values(doc: Any, where: str = "") -> None:
    """The spec: optional fields without a value are omitted, never null, "", [] or {}."""
    assert doc is not None, f"{where or '/'} is null"
    if isinstance(doc, str):
        assert doc.strip(), f"{where} is an empty string"
    elif isinstance(doc, list):
        assert doc, f"{where} is an empty array"
        for index, item in enumerate(doc):
            assert_no_empty_values(item, f"{where}/{index}")
    elif isinstance(doc, Mapping):
        assert doc or not where, f"{where} is an empty object"
        for key, value in doc.items():
            assert_no_empty_values(value, f"{where}/{key}")


def assert_response(doc: Any) -> list[dict[str, Any]]:
    """The cards of a spec-valid service response, most urgent first."""
    assert isinstance(doc, Mapping)
    assert isinstance(doc.get("cards"), list)
    assert isinstance(doc.get("systemActions", []), list)
    # Walks every response any test checks: "cards": [] is required, everything else must hold a value.
    for key, value in doc.items():
        if key != "cards":
            assert_no_empty_values(value, f"/{key}")
    for index, card in enumerate(doc["cards"]):
        assert_no_empty_values(card, f"/cards/{index}")
    for card in doc["cards"]:
        assert_card(card)
    ranks = [INDICATOR_RANK[c["indicator"]] for c in doc["cards"]]
    assert ranks == sorted(ranks, reverse=True), "cards must be ordered most urgent first"
    assert len({c["uuid"] for c in doc["cards"]}) == len(doc["cards"])
    return list(doc["cards"])


def assert_operation_outcome(doc: Any, pointer: str | None = None) -> None:
    assert doc["resourceType"] == "OperationOutcome"
    assert doc["issue"], "an OperationOutcome needs at least one issue"
    for issue in doc["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert isinstance(issue["code"], str)
        # FHIR's 'expression' is FHIRPath into a resource; a JSON pointer does not belong there.
        assert "expression" not in issue
    if pointer is not None:
        named = issue_pointers(doc)
        assert (pointer or "/") in named, f"{pointer} not named in {named}"


def issue_pointers(doc: Any) -> list[str]:
    """The JSON pointer that starts each issue's diagnostics ('/' for the whole body)."""
    return [issue["diagnostics"].split(": ", 1)[0] for issue in doc["issue"]]
