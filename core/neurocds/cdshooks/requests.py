"""Validate CDS Hooks request bodies (service calls and feedback), reporting every problem.

Problems are :class:`Issue` values located by JSON pointer; the app turns them into
a FHIR ``OperationOutcome``. Messages never quote the offending value: a request
carries patient data and tokens, and OperationOutcomes end up in EHR logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from neurocds.cdshooks.discovery import ServiceDefinition

MAX_ID_CHARS = 128  # the facts contract and the audit log cap ids at 128
FEEDBACK_OUTCOMES = ("accepted", "overridden")
MAX_FEEDBACK_ITEMS = 100


@dataclass(frozen=True)
class Issue:
    """One problem with a request: FHIR issue ``code``, JSON ``pointer`` and a message."""

    pointer: str
    message: str
    code: str = "invalid"


class RequestError(Exception):
    """The request cannot be answered as sent: ``status`` and the issues for the OperationOutcome."""

    def __init__(self, issues: list[Issue], status: int = 400) -> None:
        super().__init__(issues[0].message if issues else "bad request")
        self.issues = issues
        self.status = status


@dataclass(frozen=True)
class HookRequest:
    """The parts of a valid hook call the service uses."""

    hook_instance: str
    patient_id: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any] | None
    fhir_server: str | None
    # The EHR's OAuth token for fhirServer: used for fetching only, never logged or recorded.
    fhir_authorization: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FeedbackItem:
    card: str
    outcome: str
    override_reason: Mapping[str, Any] | None
    accepted_suggestions: tuple[str, ...]
    outcome_timestamp: str


def operation_outcome(issues: list[Issue], *, severity: str = "error") -> dict[str, Any]:
    """A FHIR R4 OperationOutcome; each issue's ``diagnostics`` starts with its JSON pointer.

    The pointer is not put in ``expression``: FHIR defines that element as FHIRPath
    into a FHIR resource, and the pointer locates a place in the CDS Hooks request
    body, which is not a FHIR resource.
    """
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": i.code, "diagnostics": f"{i.pointer or '/'}: {i.message}"} for i in issues
        ],
    }


def _text(doc: Mapping[str, Any], key: str, pointer: str, issues: list[Issue], *, required: bool) -> str | None:
    value = doc.get(key)
    if value is None:
        if required or key in doc:
            issues.append(Issue(pointer, "is required and must be a non-empty string", "required"))
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        issues.append(Issue(pointer, f"must be a non-empty string of at most {MAX_ID_CHARS} characters"))
        return None
    return value


def parse_hook_request(body: Any, service: ServiceDefinition) -> tuple[HookRequest | None, list[Issue]]:
    """The request, or ``None`` and every issue found."""
    issues: list[Issue] = []
    if not isinstance(body, Mapping):
        return None, [Issue("", "the request body must be a JSON object", "structure")]
    hook = _text(body, "hook", "/hook", issues, required=True)
    if hook is not None and hook != service.hook:
        issues.append(Issue("/hook", f"this service answers the {service.hook} hook only", "not-supported"))
    hook_instance = _text(body, "hookInstance", "/hookInstance", issues, required=True)
    fhir_server = _text(body, "fhirServer", "/fhirServer", issues, required=False)
    if fhir_server is not None and not fhir_server.startswith(("https://", "http://")):
        issues.append(Issue("/fhirServer", "must be an absolute http(s) URL"))
    if "fhirAuthorization" in body and not isinstance(body["fhirAuthorization"], Mapping | None):
        issues.append(Issue("/fhirAuthorization", "must be an object"))
    patient_id = None
    context = body.get("context")
    if not isinstance(context, Mapping):
        issues.append(Issue("/context", "is required and must be an object", "required"))
        context = {}
    else:
        patient_id = _text(context, "patientId", "/context/patientId", issues, required=True)
        for key in service.required_context:
            _check_context(context, key, issues)
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        issues.append(Issue("/prefetch", "must be an object"))
    elif isinstance(prefetch, Mapping):
        for key, value in prefetch.items():
            if value is not None and not isinstance(value, Mapping):
                issues.append(Issue(f"/prefetch/{_escape(key)}", "must be a FHIR resource or null"))
    if issues or hook_instance is None or patient_id is None:
        return None, issues
    auth = body.get("fhirAuthorization")
    return HookRequest(hook_instance, patient_id, context, prefetch, fhir_server, auth), []


def _check_context(context: Mapping[str, Any], key: str, issues: list[Issue]) -> None:
    pointer = f"/context/{key}"
    value = context.get(key)
    if value is None:
        issues.append(Issue(pointer, "is required by this hook", "required"))
    elif key == "selections" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        issues.append(Issue(pointer, "must be an array of strings"))
    elif key == "draftOrders" and not (isinstance(value, Mapping) and value.get("resourceType") == "Bundle"):
        issues.append(Issue(pointer, "must be a FHIR Bundle"))
    elif key == "userId" and not (isinstance(value, str) and value):
        issues.append(Issue(pointer, "must be a non-empty string"))


def parse_feedback(body: Any) -> tuple[list[FeedbackItem], list[Issue]]:
    """Feedback items, or every issue found (nothing is recorded unless all items are valid)."""
    if not isinstance(body, Mapping):
        return [], [Issue("", "the request body must be a JSON object", "structure")]
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        return [], [Issue("/feedback", "is required and must be a non-empty array", "required")]
    if len(items) > MAX_FEEDBACK_ITEMS:
        return [], [Issue("/feedback", f"at most {MAX_FEEDBACK_ITEMS} items per call", "too-long")]
    issues: list[Issue] = []
    out: list[FeedbackItem] = []
    for index, item in enumerate(items):
        where = f"/feedback/{index}"
        if not isinstance(item, Mapping):
            issues.append(Issue(where, "must be an object", "structure"))
            continue
        before = len(issues)
        card = _text(item, "card", f"{where}/card", issues, required=True)
        outcome = item.get("outcome")
        if outcome not in FEEDBACK_OUTCOMES:
            issues.append(Issue(f"{where}/outcome", "must be 'accepted' or 'overridden'"))
        stamp = _text(item, "outcomeTimestamp", f"{where}/outcomeTimestamp", issues, required=True)
        if stamp is not None and not _is_datetime(stamp):
            issues.append(Issue(f"{where}/outcomeTimestamp", "must be an ISO 8601 date-time"))
        reason = item.get("overrideReason")
        if reason is not None:
            _check_override_reason(reason, f"{where}/overrideReason", issues)
            if outcome == "accepted":
                issues.append(Issue(f"{where}/overrideReason", "is only allowed when the outcome is 'overridden'"))
        suggestions = item.get("acceptedSuggestions")
        ids: list[str] = []
        if suggestions is not None:
            if not isinstance(suggestions, list):
                issues.append(Issue(f"{where}/acceptedSuggestions", "must be an array"))
            else:
                for j, s in enumerate(suggestions):
                    sid = s.get("id") if isinstance(s, Mapping) else None
                    if not isinstance(sid, str) or not sid:
                        issues.append(Issue(f"{where}/acceptedSuggestions/{j}/id", "is required", "required"))
                    else:
                        ids.append(sid)
        if len(issues) == before and card is not None and stamp is not None:
            out.append(FeedbackItem(card, str(outcome), reason, tuple(ids), stamp))
    return (out, []) if not issues else ([], issues)


def _check_override_reason(reason: Any, where: str, issues: list[Issue]) -> None:
    if not isinstance(reason, Mapping):
        issues.append(Issue(where, "must be an object"))
        return
    coding = reason.get("reason")
    if coding is not None and not (
        isinstance(coding, Mapping) and isinstance(coding.get("code"), str) and isinstance(coding.get("system"), str)
    ):
        issues.append(Issue(f"{where}/reason", "must be a Coding with system and code"))
    comment = reason.get("userComment")
    if comment is not None and not isinstance(comment, str):
        issues.append(Issue(f"{where}/userComment", "must be a string"))
    if coding is None and comment is None:
        issues.append(Issue(where, "needs a reason or a userComment", "required"))


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")
