"""Helpers for the audit tests: synthetic engine results and raw log editing (as an attacker would)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from neurocds.audit.chain import HEAD_NAME, LOG_NAME
from neurocds.audit.records import record_hash
from neurocds.facts.strictjson import canonical_json

PATIENT_ID = "PATIENT-Zx81-secret"
SECRET_VALUE = 2.345678  # a fact value that must never leak into logs


def make_facts(patient_id: str = PATIENT_ID, **extra: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "facts_version": "1",
        "patient": {"id": patient_id, "age_years": 61},
        "symptoms": {"back_pain": True},
        "labs": {"potassium_mmol_l": SECRET_VALUE},
    }
    facts.update(extra)
    return facts


def make_result(
    *,
    findings: list[dict[str, Any]] | None = None,
    urgency: str = "emergency",
    complete: bool = True,
    packs: list[dict[str, Any]] | None = None,
    evaluation_id: str | None = None,
) -> dict[str, Any]:
    """A result dict of the engine's documented shape."""
    if findings is None:
        findings = [
            {
                "id": "spinal.cauda_equina",
                "pack": "spinal-compression",
                "rule": "spinal.ces_red_flags",
                "urgency": urgency,
                "title": "Possible cauda equina syndrome",
                "detail": f"potassium {SECRET_VALUE} mmol/L",
                "recommendations": ["Emergency MRI of the lumbosacral spine"],
                "because": [
                    {"pointer": "/symptoms/back_pain", "value": True},
                    {"derived": "pattern.leg_weakness", "value": True},
                ],
                "unknown": ["/symptoms/urinary_retention"],
                "evidence": [{"source": "NICE CKS", "citation": "Cauda equina syndrome, 2023"}],
            }
        ]
    return {
        "result_version": "1",
        "evaluation_id": evaluation_id or str(uuid.uuid4()),
        "evaluated_at": "2025-03-04T05:06:07.123Z",
        "facts_sha256": "ab" * 32,
        "highest_urgency": urgency if findings else "none",
        "complete": complete,
        "findings": findings,
        "derived": [
            {
                "name": "pattern.leg_weakness",
                "value": True,
                "pack": "weakness-pattern",
                "rule": "pattern.leg_weakness",
                "because": [{"pointer": "/labs/potassium_mmol_l", "value": SECRET_VALUE}],
            }
        ],
        "missing_data": [
            {"pointer": "/symptoms/urinary_retention", "urgency": "emergency", "rules": ["spinal.ces"], "findings": []}
        ],
        "packs": packs
        or [
            {"name": "weakness-pattern", "version": "1.0.0", "sha256": "11" * 32, "status": "ok"},
            {"name": "spinal-compression", "version": "2.1.0", "sha256": "22" * 32, "status": "ok"},
        ],
        "errors": [],
        "engine": {"name": "neurocds", "version": "0.1.0", "backend": "reference", "verified": False},
        "trace": {
            "fired": [
                {
                    "rule": "spinal.ces_red_flags",
                    "pack": "spinal-compression",
                    "concludes": {"finding": "spinal.cauda_equina"},
                    "because": [{"pointer": "/labs/potassium_mmol_l", "value": SECRET_VALUE}],
                    "tree": {"all": [{"fact": "/labs/potassium_mmol_l", "actual": SECRET_VALUE}]},
                }
            ],
            "not_fired": [
                {
                    "rule": "spinal.other",
                    "pack": "spinal-compression",
                    "state": "unknown",
                    "false_conditions": [f"potassium {SECRET_VALUE}"],
                    "unknown_facts": ["/symptoms/urinary_retention"],
                }
            ],
        },
        "disclaimer": "Decision support for a clinician, not a diagnosis.",
    }


# ------------------------------------------------------------------ raw editing


def read_lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (directory / LOG_NAME).read_bytes().splitlines()]


def write_lines(directory: Path, records: list[dict[str, Any]]) -> None:
    (directory / LOG_NAME).write_bytes(b"".join(canonical_json(r) + b"\n" for r in records))


def rehash_from(records: list[dict[str, Any]], start_index: int, *, renumber: bool = False) -> None:
    """Re-chain records from ``start_index`` on, as an attacker without the key would."""
    for i in range(start_index, len(records)):
        rec = records[i]
        if renumber:
            rec["sequence"] = i + 1
        rec["prev_hash"] = records[i - 1]["hash"] if i else "0" * 64
        rec["hash"] = record_hash(rec)


def set_head(directory: Path, records: list[dict[str, Any]]) -> None:
    last = records[-1]
    (directory / HEAD_NAME).write_bytes(
        canonical_json({"sequence": last["sequence"], "hash": last["hash"], "updated_at": "2025-01-01T00:00:00Z"})
    )


def assert_acknowledged_survive(directory: Path, acked: dict[int, str], public_key: Path) -> dict[int, dict[str, Any]]:
    """After SIGKILLs: recover, verify, and check that every acknowledged decision (sequence ->
    decision id) is in the log, each decision's cards right after it; returns the records."""
    from neurocds.audit import AuditLog, verify_log

    AuditLog(directory).recover()
    report = verify_log(directory, public_key=public_key)
    assert report.ok, report.problems
    records = {r["sequence"]: r for r in read_lines(directory)}
    assert sorted(records) == list(range(1, len(records) + 1))
    for seq, did in acked.items():
        assert records[seq]["type"] == "decision"
        assert records[seq]["decision"]["decision_id"] == did
    ids = [r["decision"]["decision_id"] for r in records.values() if r["type"] == "decision"]
    assert len(ids) == len(set(ids))
    # Appended together, kept together: each cards record right after its decision, never alone.
    for seq, record in records.items():
        if record.get("atomic_with_next"):
            assert records[seq + 1]["cards"]["decision_id"] == record["decision"]["decision_id"]
        if record["type"] == "cards":
            assert records[seq - 1]["decision"]["decision_id"] == record["cards"]["decision_id"]
    return records


def written_not_durable(log: Any, decision_id: str) -> Any:
    """Append a cards record to ``log`` as a writer does before its fsync (under the append lock,
    then released): returns the :class:`neurocds.audit.durable.Flush` that makes it durable."""
    store = log._store
    with store.locked():
        _, flush = store.write_groups_staged(store.sync(), [[("cards", log.prepare_cards(decision_id, ["c"]).body)]])
    assert flush is not None
    return flush
