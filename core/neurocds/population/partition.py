"""The pure, public per-partition function, and the one engine each process keeps.

:func:`evaluate_partition` turns input records (facts documents or FHIR Bundles)
into result lines, Parquet rows and error entries, in input order, without any
I/O: Spark's ``mapInPandas``, Ray tasks and the local and Dask runners all call
it. A bad patient becomes an error entry, never an exception.

Engine start costs 0.25-0.5 s, about as much as evaluating hundreds of patients,
so each process builds one engine per settings and keeps it (:func:`process_engine`);
:func:`engine_starts` lets a runner prove that no worker started two.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError, NeurocdsError
from neurocds.facts.canonical import compact_json
from neurocds.facts.patient import patient_id_of
from neurocds.facts.strictjson import fhir_limits, parse_strict, sha256_canonical
from neurocds.fhir import FhirConverter, FhirInputError, MappingTables
from neurocds.fhir.bundle import walk_bundle
from neurocds.fhir.dates import just_after_latest, parse_instant
from neurocds.population.settings import RunSettings

# The Parquet columns: one row per patient x finding (a patient without findings has
# one row whose finding is null, so every evaluated patient is counted).
ROW_COLUMNS = ("patient_id", "finding", "urgency", "pack", "rule", "complete")
FHIR_LIMITS = fhir_limits(64 * 1_048_576)  # as `evaluate --fhir`
VOLATILE_KEYS = ("evaluation_id", "evaluated_at")  # differ on every evaluation of the same facts


@dataclass(frozen=True)
class InputRecord:
    """One patient to evaluate.

    :param source: where it came from, ``path:line`` or ``path`` (error entries cite it).
    :param kind: ``"facts"`` (a facts document), ``"bundle"`` (a FHIR Bundle) or
        ``"unreadable"`` (the payload says why it could not be read).
    :param payload: the document, as JSON bytes/text or already parsed.
    :param patient_id: for a Bundle, which patient (Bulk Data joins know it).
    """

    source: str
    kind: str
    payload: bytes | str | Mapping[str, Any]
    patient_id: str | None = None


@dataclass
class EvaluatedPartition:
    """What one partition produced, in input order, plus its tallies."""

    lines: list[bytes] = field(default_factory=list)  # results NDJSON lines (with newline), unless a sink took them
    results: int = 0  # result lines, kept or sent to the sink
    result_bytes: int = 0
    rows: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in ROW_COLUMNS})
    errors: list[dict[str, Any]] = field(default_factory=list)  # errors NDJSON, one per rejected patient
    result_hashes: list[str] = field(default_factory=list)  # per patient, without ids and times
    by_finding: Counter[str] = field(default_factory=Counter)
    by_urgency: Counter[str] = field(default_factory=Counter)
    incomplete: Counter[str] = field(default_factory=Counter)  # error kind -> patients
    records_in: int = 0
    incomplete_results: int = 0
    engine: dict[str, Any] = field(default_factory=dict)
    packs: list[dict[str, Any]] = field(default_factory=list)

    def to_tallies(self) -> dict[str, Any]:
        """The counts, JSON-ready, for a partition's done marker and the run summary."""
        return {
            "records_in": self.records_in,
            "results": self.results,
            "errors": len(self.errors),
            "incomplete_results": self.incomplete_results,
            "by_finding": dict(sorted(self.by_finding.items())),
            "by_urgency": dict(sorted(self.by_urgency.items())),
            "incomplete": dict(sorted(self.incomplete.items())),
            "results_sha256": sha256_canonical(self.result_hashes),
            "errors_sha256": sha256_canonical(self.errors),
        }


class _ProcessState:
    """This process's engines and FHIR tables, built once, reused by every partition.

    Process-wide on purpose: the unit of reuse is the worker process (local pool
    worker, Dask worker, Spark executor), which outlives any one task.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # a Dask worker may run several tasks in threads
        self.engines: dict[str, Engine] = {}
        self.tables: dict[str, MappingTables] = {}
        self.starts: Counter[str] = Counter()  # engine key -> engines built


_STATE = _ProcessState()


def process_engine(settings: RunSettings) -> Engine:
    """This process's engine for ``settings``, built on first use."""
    key = settings.engine_key()
    with _STATE.lock:
        engine = _STATE.engines.get(key)
        if engine is None:
            engine = Engine(**settings.engine_kwargs())
            _STATE.engines[key] = engine
            _STATE.starts[key] += 1
        return engine


def engine_starts(settings: RunSettings) -> int:
    """How many engines this process has built for ``settings`` (a runner checks it stays at one).

    A long-lived worker (a Dask cluster shared by runs) builds one more for each other
    pack list or backend it is asked for; never more than one for the same.
    """
    return _STATE.starts[settings.engine_key()]


def _process_tables(settings: RunSettings, engine: Engine) -> MappingTables:
    from neurocds.fhir import engine_mapping_paths, load_mapping_tables

    key = settings.engine_key()
    with _STATE.lock:
        if key not in _STATE.tables:
            _STATE.tables[key] = load_mapping_tables(engine_mapping_paths(engine))  # the packs' tables too
        return _STATE.tables[key]


def worker_identity(settings: RunSettings) -> dict[str, Any]:
    """Which process did the work and how many engines it has built for these settings so far."""
    return {"pid": os.getpid(), "engine_starts": engine_starts(settings)}


def evaluate_partition(
    records: Iterable[InputRecord],
    settings: RunSettings,
    *,
    engine: Engine | None = None,
    sink: Callable[[bytes], object] | None = None,
) -> EvaluatedPartition:
    """Evaluate ``records`` in order: every record becomes one result line or one error entry.

    :param settings: must have ``now`` set (see :meth:`RunSettings.resolved`) for
        reproducible FHIR conversion; ``None`` uses the wall clock per patient.
    :param engine: the engine to use (default: this process's, see :func:`process_engine`).
    :param sink: called with each result line, in order, instead of keeping it in
        ``lines`` (a run writes them to its part file as they come: a partition's
        results are tens of megabytes, and memory held between partitions is given
        back and faulted in again).
    """
    engine = engine or process_engine(settings)
    out = EvaluatedPartition(engine=engine.engine_info(), packs=engine.pack_infos())
    keep = sink or out.lines.append
    tables: MappingTables | None = None
    for record in records:
        out.records_in += 1
        patient_id = record.patient_id
        facts: Any = None
        try:
            if record.kind == "bundle":
                tables = tables or _process_tables(settings, engine)
                facts, provenance = _convert(record, settings, tables)
            elif record.kind == "facts":
                facts, provenance = _parse_valid(record.payload, engine), None
            elif record.kind == "unreadable":
                _reject(
                    out, record, patient_id, "read", [{"pointer": "", "message": str(record.payload), "code": "read"}]
                )
                continue
            else:
                raise ValueError(f"unknown record kind {record.kind!r}")
            patient_id = patient_id_of(facts) or patient_id
            result = engine.evaluate(facts, trace=settings.trace and not settings.slim, provenance=provenance).to_dict()
        except FactsValidationError as exc:
            stage = "parse" if any(v.code in _PARSE_CODES for v in exc.violations) else "validate"
            # Refused as it was parsed: a schema refusal may still say who. Not past a parse
            # limit, which exists so that such a document is never built.
            if facts is None and record.kind == "facts" and stage == "validate":
                patient_id = patient_id_of(record.payload) or patient_id
            _reject(out, record, patient_id, stage, [v.to_dict() for v in exc.violations])
        except FhirInputError as exc:
            _reject(
                out, record, patient_id, "fhir", [{"pointer": exc.pointer or "", "message": str(exc), "code": "fhir"}]
            )
        except NeurocdsError as exc:
            _reject(out, record, patient_id, "evaluate", [{"pointer": "", "message": str(exc), "code": "evaluate"}])
        except Exception as exc:  # one patient's unexpected failure must not stop a sweep of thousands
            problem = {"pointer": "", "message": f"{type(exc).__name__}: {exc}", "code": "internal"}
            _reject(out, record, patient_id, "internal", [problem])
        else:
            _accept(out, record, patient_id, result, settings.slim, keep)
    return out


_PARSE_CODES = frozenset(
    {"size", "utf8", "syntax", "depth", "containers", "members", "values", "non_finite", "duplicate_key"}
)


def _parse_valid(payload: bytes | str | Mapping[str, Any], engine: Engine) -> Mapping[str, Any]:
    """A facts line parsed and validated once: the engine takes the result as is, and the
    patient id is read from it (reading it from the text cost a second parse per patient)."""
    if isinstance(payload, bytes | str):
        return engine.validator.parse_valid(payload)
    return payload  # already a document (a Spark or Ray caller's): the engine judges it


def _convert(
    record: InputRecord, settings: RunSettings, tables: MappingTables
) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = record.payload
    if isinstance(payload, bytes | str):
        try:
            bundle = parse_strict(payload, FHIR_LIMITS)
        except FactsValidationError as exc:
            first = exc.violations[0]
            raise FhirInputError(f"input is not valid JSON: {first.message}", pointer=first.pointer) from None
    else:
        bundle = payload
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirInputError("input must be a FHIR Bundle", pointer="")
    now = None
    if settings.now == "latest":
        now = just_after_latest([item.resource for item in walk_bundle(bundle)])
        if now is None:
            raise FhirInputError("now 'latest': the input holds no dated resource")
    elif settings.now is not None:
        now = parse_instant(settings.now)
    converter = FhirConverter(tables, now=now, observation_window_days=settings.window_days)
    conversion = converter.convert_bundle(bundle, patient_id=record.patient_id)
    return conversion.facts, {"provenance": conversion.provenance}


def dumps_line(obj: Any) -> bytes:
    """One NDJSON line: compact, UTF-8, key order kept; the encoder writes the newline (no copy to add it)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError included: compact_json's fallback then writes it
        return compact_json(obj) + b"\n"


_RESULT_OPENS = b',"result":{'


def _result_line(patient_id: str | None, source: str, result: Mapping[str, Any]) -> tuple[bytes, str]:
    """``{"patient_id", "source", "result"}`` encoded once, and the hash of that line's stable part.

    The stable part is ``{"patient_id":..,"result":{..}}`` without the source and the
    result's ``evaluation_id`` and ``evaluated_at``: the same inputs give the same hash
    wherever they lie and whenever they run. It is hashed in place, as the spans of the
    line around the source and those two members (a result is ~20 KB: it is neither
    encoded twice nor copied). A result whose members are not in the engine's order
    (those two second and third) has its stable part encoded on its own.
    """
    line = dumps_line({"patient_id": patient_id, "source": source, "result": result})
    spans = _stable_spans(line, patient_id, source, result)
    digest = hashlib.sha256()
    if spans is None:
        stable = {k: v for k, v in result.items() if k not in VOLATILE_KEYS}
        digest.update(compact_json({"patient_id": patient_id, "result": stable}))
    else:
        view = memoryview(line)
        for start, end in spans:
            digest.update(view[start:end])
    return line, digest.hexdigest()


def _stable_spans(
    line: bytes, patient_id: str | None, source: str, result: Mapping[str, Any]
) -> tuple[tuple[int, int], ...] | None:
    """Where ``line`` holds its stable part: up to the source, the result's first member, after the volatile two.

    Every piece is encoded on its own (a few bytes each) and found at its place in the
    line, so a span is never a guess; ``None`` when the result is not laid out so.
    """
    keys = iter(result)
    first = next(keys, None)
    if first is None or first in VOLATILE_KEYS or (next(keys, None), next(keys, None)) != VOLATILE_KEYS:
        return None
    head = compact_json({"patient_id": patient_id})[:-1]  # {"patient_id":P
    where = b"," + compact_json({"source": source})[1:-1]  # ,"source":S
    member = compact_json({first: result[first]})[1:-1]  # "result_version":"1"
    volatile = b"," + compact_json({k: result[k] for k in VOLATILE_KEYS})[1:-1]  # ,"evaluation_id":..,"evaluated_at":..
    at_result = len(head) + len(where)
    at_volatile = at_result + len(_RESULT_OPENS) + len(member)
    if not (
        line.startswith(head)
        and line.startswith(where, len(head))
        and line.startswith(_RESULT_OPENS + member + volatile, at_result)
        and line.endswith(b"}\n")
    ):
        return None
    return (0, len(head)), (at_result, at_volatile), (at_volatile + len(volatile), len(line) - 1)


def _reject(
    out: EvaluatedPartition, record: InputRecord, patient_id: str | None, stage: str, problems: list[dict[str, Any]]
) -> None:
    out.errors.append({"source": record.source, "patient_id": patient_id, "stage": stage, "errors": problems})


def _accept(
    out: EvaluatedPartition,
    record: InputRecord,
    patient_id: str | None,
    result: dict[str, Any],
    slim: bool,
    keep: Callable[[bytes], object],
) -> None:
    findings: Sequence[Mapping[str, Any]] = result["findings"]
    if slim:
        body = {
            "facts_sha256": result["facts_sha256"],
            "highest_urgency": result["highest_urgency"],
            "complete": result["complete"],
            "findings": [{k: f[k] for k in ("id", "urgency", "pack", "rule")} for f in findings],
            "missing_data": len(result["missing_data"]),
            "errors": [e.get("kind") for e in result["errors"]],
        }
        line = dumps_line({"patient_id": patient_id, "source": record.source, **body})
        digest = hashlib.sha256(compact_json({"patient_id": patient_id, **body})).hexdigest()
    else:
        line, digest = _result_line(patient_id, record.source, result)
    keep(line)
    out.results += 1
    out.result_bytes += len(line)
    out.result_hashes.append(digest)
    out.by_urgency[result["highest_urgency"]] += 1
    if not result["complete"]:
        out.incomplete_results += 1
        for kind in sorted({str(e.get("kind", "unknown")) for e in result["errors"]}):
            out.incomplete[kind] += 1
    rows = out.rows
    listed: Sequence[Mapping[str, Any] | None] = list(findings) or [None]
    for finding in listed:
        rows["patient_id"].append(patient_id)
        rows["complete"].append(result["complete"])
        rows["finding"].append(finding["id"] if finding else None)
        rows["urgency"].append(finding["urgency"] if finding else None)
        rows["pack"].append(finding["pack"] if finding else None)
        rows["rule"].append(finding["rule"] if finding else None)
        if finding:
            out.by_finding[finding["id"]] += 1
