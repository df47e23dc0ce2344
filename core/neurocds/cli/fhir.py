"""``neurocds fhir-to-facts``, and the FHIR input it shares with ``evaluate --fhir``.

Both commands read their FHIR input through :func:`fhir_input_options` and
:func:`convert_fhir_input`, so they accept the same inputs (a Bundle, a single
resource, a CDS Hooks request with ``prefetch``) and the same options.

FHIR input has its own size limit, :data:`DEFAULT_MAX_INPUT_BYTES`, larger than
the 1 MiB limit of a facts document: a patient's whole record as a Bundle is
often several megabytes (the largest shared Synthea bundle is 5.3 MB), while
the facts document made from it is a few kilobytes and keeps its own limit.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from neurocds.errors import FactsValidationError, NeurocdsError
from neurocds.facts.strictjson import fhir_limits, parse_strict
from neurocds.fhir.policy import DEFAULT_OBSERVATION_WINDOW_DAYS

# The converter and its tables are imported by the functions that convert: declaring the
# options (which ``evaluate`` does for its --fhir mode) must not load them.
if TYPE_CHECKING:
    from neurocds.fhir import FhirConversion, FhirConverter, MappingTables

EXIT_INPUT = 2  # unreadable or invalid input, like click's own usage errors
DEFAULT_MAX_INPUT_BYTES = 64 * 1_048_576
MAX_INPUT_DEPTH = 64  # real bundles nest about 12 levels deep


@dataclass(frozen=True)
class FhirInputOptions:
    """How to read and convert FHIR input (the command-line options, gathered)."""

    now: str | None = None
    window_days: float = DEFAULT_OBSERVATION_WINDOW_DAYS
    patient_id: str | None = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    @property
    def is_default(self) -> bool:
        return self == FhirInputOptions()


def fhir_input_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the FHIR input options to a command; it receives them as ``fhir_input``."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, now_text: str | None, window_days: float, patient_id: str | None, max_input_bytes: int, **kw: Any
    ) -> Any:
        options = FhirInputOptions(now_text, window_days, patient_id, max_input_bytes)
        return func(*args, fhir_input=options, **kw)

    options = [
        click.option(
            "--now",
            "now_text",
            metavar="RFC3339|latest",
            help="Instant for recency decisions (default: the wall clock). 'latest' = the input's latest record.",
        ),
        click.option(
            "--window-days",
            type=float,
            default=DEFAULT_OBSERVATION_WINDOW_DAYS,
            show_default=True,
            help="How old an Observation may be and still count.",
        ),
        click.option(
            "--patient-id",
            help="Which patient, when the input holds several (default for prefetch: context.patientId).",
        ),
        click.option(
            "--max-input-bytes",
            type=click.IntRange(1024, None),
            default=DEFAULT_MAX_INPUT_BYTES,
            show_default=True,
            help="Largest FHIR input accepted (a facts document keeps its own 1 MiB limit).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def read_limited(path: str, limit: int) -> bytes:
    """The bytes of ``path`` (``-``: standard input), refusing more than ``limit``."""
    from neurocds.fhir import FhirInputError

    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                raw = fh.read(limit + 1)
    except OSError as exc:
        raise FhirInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise FhirInputError(f"input is larger than {limit} bytes; raise --max-input-bytes to read it")
    return raw


def parse_fhir_document(raw: bytes, limit: int) -> dict[str, Any]:
    """Strict JSON (no NaN, no duplicate keys) -> a Bundle or a CDS Hooks request.

    A single resource is read as a one-entry collection Bundle.
    """
    from neurocds.fhir import FhirInputError

    try:
        document = parse_strict(raw, fhir_limits(limit, MAX_INPUT_DEPTH))
    except FactsValidationError as exc:
        first = exc.violations[0]
        what = "UTF-8 text" if first.code == "utf8" else "valid JSON"
        where = f"{first.pointer}: " if first.pointer else ""
        raise FhirInputError(f"input is not {what}: {where}{first.message}") from None
    if not isinstance(document, dict) or not (
        isinstance(document.get("resourceType"), str) or isinstance(document.get("prefetch"), dict)
    ):
        raise FhirInputError("input must be a FHIR Bundle, a FHIR resource or a CDS Hooks request with 'prefetch'")
    if "prefetch" not in document and document["resourceType"] != "Bundle":
        document = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": document}]}
    return document


def parse_now(text: str | None, document: dict[str, Any]) -> datetime | None:
    """``--now``: ``None`` (wall clock), ``latest`` (just after the input's latest record) or RFC 3339."""
    from neurocds.fhir import FhirInputError
    from neurocds.fhir.bundle import walk_bundle, walk_prefetch
    from neurocds.fhir.dates import just_after_latest, parse_instant

    if text is None:
        return None
    if text == "latest":
        items = walk_prefetch(document["prefetch"])[0] if "prefetch" in document else list(walk_bundle(document))
        moment = just_after_latest([i.resource for i in items])
        if moment is None:
            raise FhirInputError("--now latest: the input holds no dated resource")
        return moment
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise FhirInputError(f"--now {exc}") from None


def convert_document(converter: FhirConverter, document: dict[str, Any], patient_id: str | None) -> FhirConversion:
    """A Bundle or a CDS Hooks request (its prefetch) -> facts."""
    if "prefetch" in document:
        context = document.get("context")
        pid = patient_id or (context.get("patientId") if isinstance(context, dict) else None)
        return converter.convert_prefetch(document["prefetch"], patient_id=pid)
    return converter.convert_bundle(document, patient_id=patient_id)


def convert_fhir_input(path: str, options: FhirInputOptions, tables: MappingTables | None = None) -> FhirConversion:
    """Read ``path`` (``-``: stdin) and convert it; :class:`FhirInputError` names what is wrong."""
    from neurocds.fhir import FhirConverter, FhirInputError

    if not math.isfinite(options.window_days) or options.window_days <= 0:
        raise FhirInputError("--window-days must be a positive number")
    document = parse_fhir_document(read_limited(path, options.max_input_bytes), options.max_input_bytes)
    converter = FhirConverter(tables, now=parse_now(options.now, document), observation_window_days=options.window_days)
    conversion = convert_document(converter, document, options.patient_id)
    if options.patient_id is not None and conversion.only_other_patients:
        # A mistyped --patient-id would otherwise give an empty facts document: all unknown, no advice.
        raise FhirInputError(
            f"no resource in the input is about patient {options.patient_id!r} (all are about other "
            "patients); check --patient-id"
        )
    return conversion


def register(group: click.Group) -> None:
    group.add_command(fhir_to_facts)


@click.command("fhir-to-facts")
@click.argument("bundle", metavar="BUNDLE.json")
@fhir_input_options
@click.option("--provenance", is_flag=True, help="Print {facts, provenance, warnings} instead of the facts alone.")
def fhir_to_facts(bundle: str, fhir_input: FhirInputOptions, provenance: bool) -> None:
    """Convert a FHIR R4 Bundle (or CDS Hooks request / single resource) to facts-v1 JSON.

    BUNDLE.json may be '-' to read standard input. Exit status 2 means the input
    could not be read or converted.
    """
    from neurocds.fhir import FhirInputError

    try:
        result = convert_fhir_input(bundle, fhir_input)
    except FhirInputError as exc:
        click.echo(f"neurocds fhir-to-facts: {exc}", err=True)
        raise SystemExit(EXIT_INPUT) from None
    except NeurocdsError as exc:  # mapping tables broken: not the input's fault
        raise click.ClickException(str(exc)) from exc
    payload = result.to_dict() if provenance else result.facts
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
    if result.warnings and not provenance:
        click.echo(f"neurocds fhir-to-facts: {len(result.warnings)} warning(s); --provenance shows them", err=True)
