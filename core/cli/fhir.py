"""``neurocds fhir-to-facts``: print the facts document for a FHIR Bundle."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import click

from neurocds.errors import NeurocdsError
from neurocds.fhir import FhirConversion, FhirConverter, FhirInputError, latest_time
from neurocds.fhir.bundle import walk_bundle, walk_prefetch

EXIT_INPUT = 2  # unreadable or invalid input, like click's own usage errors


def register(group: click.Group) -> None:
    group.add_command(fhir_to_facts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _fail(message: str) -> None:
    click.echo(f"neurocds fhir-to-facts: {message}", err=True)
    raise SystemExit(EXIT_INPUT)


def _parse_now(text: str | None, document: dict[str, Any]) -> datetime | None:
    if text is None:
        return None
    if text == "latest":
        items = walk_prefetch(document["prefetch"])[0] if "prefetch" in document else list(walk_bundle(document))
        moment = latest_time([i.resource for i in items])
        if moment is None:
            _fail("--now latest: the input holds no dated resource")
            return None
        # One second past the latest record, so that record itself counts as "before now".
        return moment + timedelta(seconds=1)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"--now {text!r} is not an RFC 3339 date-time")
    if moment.tzinfo is None:
        _fail(f"--now {text!r} needs a time-zone offset (e.g. 'Z')")
    return moment.astimezone(UTC)


def _read(stream: IO[str]) -> dict[str, Any]:
    try:
        document = json.loads(stream.read(), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        _fail("input is not UTF-8 text")
    except ValueError as exc:
        _fail(f"input is not valid JSON: {exc}")
    if not isinstance(document, dict) or not (
        isinstance(document.get("resourceType"), str) or isinstance(document.get("prefetch"), dict)
    ):
        _fail("input must be a FHIR Bundle, a FHIR resource or a CDS Hooks request with 'prefetch'")
    if "prefetch" not in document and document["resourceType"] != "Bundle":
        # A single resource is read as a one-entry collection Bundle.
        document = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": document}]}
    return document


def convert_document(converter: FhirConverter, document: dict[str, Any], patient_id: str | None) -> FhirConversion:
    """A Bundle, a single resource or a CDS Hooks request (its prefetch) -> facts."""
    if "prefetch" in document:
        context = document.get("context")
        pid = patient_id or (context.get("patientId") if isinstance(context, dict) else None)
        return converter.convert_prefetch(document["prefetch"], patient_id=pid)
    return converter.convert_bundle(document, patient_id=patient_id)


@click.command("fhir-to-facts")
@click.argument("bundle", type=click.File("r", encoding="utf-8"), metavar="BUNDLE.json")
@click.option(
    "--now",
    "now_text",
    metavar="RFC3339|latest",
    help="Instant for recency decisions (default: the wall clock). 'latest' = the input's latest record.",
)
@click.option(
    "--window-days",
    type=float,
    default=30.0,
    show_default=True,
    help="How old an Observation may be and still count.",
)
@click.option(
    "--patient-id", help="Which patient, when the input holds several (default for prefetch: context.patientId)."
)
@click.option("--provenance", is_flag=True, help="Print {facts, provenance, warnings} instead of the facts alone.")
def fhir_to_facts(
    bundle: IO[str], now_text: str | None, window_days: float, patient_id: str | None, provenance: bool
) -> None:
    """Convert a FHIR R4 Bundle (or CDS Hooks request / single resource) to facts-v1 JSON.

    BUNDLE.json may be '-' to read standard input. Exit status 2 means the input
    could not be read or converted.
    """
    document = _read(bundle)
    if not math.isfinite(window_days) or window_days <= 0:
        _fail("--window-days must be a positive number")
    try:
        now = _parse_now(now_text, document)
        converter = FhirConverter(now=now, observation_window_days=window_days)
        result = convert_document(converter, document, patient_id)
    except FhirInputError as exc:
        _fail(str(exc))
    except NeurocdsError as exc:  # mapping tables broken: not the input's fault
        raise click.ClickException(str(exc)) from exc
    payload = result.to_dict() if provenance else result.facts
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    if result.warnings and not provenance:
        click.echo(f"neurocds fhir-to-facts: {len(result.warnings)} warning(s); --provenance shows them", err=True)
