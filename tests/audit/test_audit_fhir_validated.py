"""Every FHIR export of the test corpus validates against a third-party FHIR model (fhir.resources).

fhir.resources 8.x models FHIR R5 by default and R4B (4.3) in ``fhir.resources.R4B``; there
is no plain R4 (4.0.1) package in it any more. AuditEvent, Provenance, GuidanceResponse and
Bundle are the same in R4 and R4B in every element the export writes, so R4B is the check.

The models are used in a child process: fhir.resources installs a top-level ``fhir``
package, and this suite has its own ``fhir`` test package, which must keep the name here.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result

from neurocds import Engine
from neurocds.audit import AuditLog, export_fhir, read_records
from neurocds_packs import BUILTIN_PACKS

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))


_VALIDATE = """
import json, sys
from fhir.resources.R4B.bundle import Bundle
bad = []
for n, bundle in enumerate(json.load(open(sys.argv[1]))):
    try:
        Bundle.model_validate(bundle)
    except Exception as exc:
        bad.append(f"bundle {n}: {exc}")
print(json.dumps(bad))
"""


def validate(bundles: list[dict[str, Any]], tmp_path: Path) -> None:
    """Every bundle validates as an R4B Bundle (with its resources), in a child process."""
    try:
        importlib.metadata.version("fhir.resources")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fhir.resources is not installed (it is in the test extra)")
    path = tmp_path / "bundles.json"
    path.write_text(json.dumps(bundles), encoding="utf-8")
    out = subprocess.run([sys.executable, "-c", _VALIDATE, str(path)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fhircorpus")
    plain, redacted = AuditLog(root / "plain"), AuditLog(root / "redacted", redact=True, pseudonym_key=b"k" * 32)
    engine = Engine(packs=BUILTIN_PACKS)
    for path in EXAMPLES:
        facts = json.loads(path.read_text(encoding="utf-8"))
        result = engine.evaluate(facts)
        plain.record_decision(result, facts)
        redacted.record_decision(result, facts)
    for log in (plain, redacted):  # no findings, and incomplete
        log.record_decision(make_result(findings=[], complete=False), make_facts())
    return [r for d in ("plain", "redacted") for r in read_records(root / d)]


def test_every_export_validates(corpus: list[dict[str, Any]], tmp_path: Path) -> None:
    assert len(corpus) == 2 * (len(EXAMPLES) + 1)
    server = "https://ehr.example/fhir"
    validate([export_fhir(r) for r in corpus] + [export_fhir(r, fhir_server=server) for r in corpus], tmp_path)


def test_the_check_is_real(tmp_path: Path, corpus: list[dict[str, Any]]) -> None:
    bundle = export_fhir(corpus[0])
    bundle["entry"][0]["resource"]["entity"][0]["detail"][0]["valueString"] = ""  # what main exported
    with pytest.raises(AssertionError, match="valueString"):
        validate([bundle], tmp_path)


def test_a_decision_without_findings_has_no_empty_detail(corpus: list[dict[str, Any]]) -> None:
    record = next(r for r in corpus if not r["decision"]["findings"])
    event = export_fhir(record)["entry"][0]["resource"]
    details = [d for e in event["entity"] for d in e.get("detail", [])]
    assert details and all(d["valueString"] for d in details)
    assert "findings" not in {d["type"] for d in details}


def test_sources_named_by_urn_uuid_are_kept_and_relative_ones_made_absolute(tmp_path: Path) -> None:
    body = {
        "decision_id": "d1", "facts_sha256": "ab" * 32, "findings": [], "packs": [], "complete": True,
        "evaluated_at": "2026-01-01T00:00:00Z", "redacted": False, "facts": {"patient": {"id": "p1"}},
        "trace": {"input_provenance": {"provenance": {
            "/labs/potassium_mmol_l": [{"resource": "urn:uuid:5d1f3c2a-0000-4000-8000-000000000001"}],
            "/history/cancer": [{"resource": "Condition/c9"}],
        }}},
    }  # fmt: skip
    record = {"type": "decision", "sequence": 1, "hash": "0" * 64, "recorded_at": "2026-01-01T00:00:01Z",
              "decision": body}  # fmt: skip
    bundle = export_fhir(record, fhir_server="https://ehr.example/fhir/")
    validate([bundle], tmp_path)
    prov = bundle["entry"][1]["resource"]
    refs = {e["what"].get("reference") for e in prov["entity"]}
    assert "urn:uuid:5d1f3c2a-0000-4000-8000-000000000001" in refs
    assert "https://ehr.example/fhir/Condition/c9" in refs
    guidance = bundle["entry"][2]["resource"]
    assert guidance["subject"]["reference"] == "https://ehr.example/fhir/Patient/p1"


def test_who_asked_is_the_requesting_agent(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    asked = {"user": "Practitioner/example", "fhir_server": "https://ehr.example/fhir", "hook": "patient-view",
             "hook_instance": "h-1"}  # fmt: skip
    log.append_together([log.prepare_decision(make_result(), make_facts(), asked)])
    record = read_records(d)[0]
    assert record["decision"]["request"] == asked
    bundle = export_fhir(record)
    agents = bundle["entry"][0]["resource"]["agent"]
    [requestor] = [a for a in agents if a["requestor"]]
    assert requestor["who"]["reference"] == "https://ehr.example/fhir/Practitioner/example"
    guidance = bundle["entry"][2]["resource"]
    assert guidance["subject"]["reference"].startswith("https://ehr.example/fhir/Patient/")  # base as recorded
    validate([bundle], tmp_path)
