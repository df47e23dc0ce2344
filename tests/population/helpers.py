"""Inputs for the population tests: generated facts NDJSON and a Bulk Data export made from Synthea."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import shared_data
from example_docs import examples_with_unknowns

SYNTHEA = shared_data.DATA / "synthea"
NOW = "2020-06-01T00:00:00Z"


def facts_ndjson(path: Path, count: int, *, seed: int = 7, bad: bool = True) -> int:
    """``count`` generated patients (unique ids) plus, with ``bad``, three rejects; returns the record count."""
    lines = []
    for i, doc in enumerate(examples_with_unknowns(count, seed=seed)):
        doc["patient"]["id"] = f"gen-{i:06d}"
        lines.append(json.dumps(doc))
    if bad:
        lines.insert(3, "{not json")
        lines.insert(
            10, json.dumps({"facts_version": "1", "patient": {"id": "bad-type"}, "strength": {"left_leg": "x"}})
        )
        lines.insert(20, json.dumps({"facts_version": "1"}))
        lines.insert(5, "")  # a blank line is skipped and counted, never a patient
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return count + (3 if bad else 0)


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_results(out: Path) -> list[dict[str, Any]]:
    """A run's result lines, in input order, from its results folder (as its manifest lists the parts)."""
    from neurocds.population import iter_result_lines

    return [json.loads(line) for line in iter_result_lines(out)]


def bulk_export_from_synthea(folder: Path, *, manifest: bool = True, gz: bool = False) -> dict[str, int]:
    """Turn the shared Synthea bundles into what a server's ``$export`` writes.

    One NDJSON file per resource type, references rewritten the way a Bulk Data
    server writes them (``Patient/<id>``, not the transaction's ``urn:uuid:``),
    shared resources (organisations, practitioners) once each. Returns the number of
    lines per resource type.
    """
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(SYNTHEA.glob("*.json")):
        bundle = json.loads(path.read_text())
        urls = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
            if "fullUrl" in e and "id" in e["resource"]
        }
        for entry in bundle["entry"]:
            resource = _rewrite(entry["resource"], urls)
            text = json.dumps(resource, separators=(",", ":"))
            by_type[resource["resourceType"]].setdefault(resource["id"], text)
    outputs = []
    for rtype, resources in sorted(by_type.items()):
        name = f"{rtype}.000.ndjson" + (".gz" if gz else "")
        data = ("\n".join(resources.values()) + "\n").encode()
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
        outputs.append({"type": rtype, "url": f"https://fhir.example.org/bulk/job-1/{name}", "count": len(resources)})
    if manifest:
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "transactionTime": "2024-08-01T00:00:00Z",
                    "request": "https://fhir.example.org/Patient/$export",
                    "requiresAccessToken": False,
                    "output": outputs,
                    "error": [],
                }
            )
        )
    return {rtype: len(resources) for rtype, resources in by_type.items()}


def _rewrite(value: Any, urls: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, urls) for k, v in value.items()}
        if isinstance(out.get("reference"), str):
            out["reference"] = urls.get(out["reference"], out["reference"])
        return out
    if isinstance(value, list):
        return [_rewrite(v, urls) for v in value]
    return value
