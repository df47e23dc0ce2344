"""``neurocds fhir-to-facts`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurocds.cli import main

from .helpers import DATA, PATIENT, SCT, assert_valid_facts, bundle, condition, needs_data

EMERY = DATA / "synthea" / "Emery_Purdy_298c62e6-b204-4a14-8e21-73d5be0ce22e.json"


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["fhir-to-facts", *args], input=stdin)


@needs_data
def test_synthea_file_prints_valid_facts() -> None:
    result = run(str(EMERY), "--now", "2021-01-23T00:00:00Z")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert_valid_facts(facts)
    assert facts["history"]["diabetes"] is True
    assert facts["labs"]["glucose_mmol_l"] == 6.71
    assert facts["recorded_at"] == "2021-01-23T00:00:00Z"


@needs_data
def test_provenance_flag_prints_facts_provenance_and_warnings() -> None:
    result = run(str(EMERY), "--now", "2021-01-23T00:00:00Z", "--provenance")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"facts", "provenance", "warnings"}
    assert payload["provenance"]["/history/diabetes"][0]["resource"].startswith("Condition/")
    assert isinstance(payload["warnings"], list) and payload["warnings"]


@needs_data
def test_window_days_and_now_latest() -> None:
    narrow = json.loads(run(str(EMERY), "--now", "2021-03-01T00:00:00Z").stdout)
    assert "labs" not in narrow
    wide = json.loads(run(str(EMERY), "--now", "2021-03-01T00:00:00Z", "--window-days", "60").stdout)
    assert wide["labs"]["glucose_mmol_l"] == 6.71
    latest = run(str(EMERY), "--now", "latest")
    assert latest.exit_code == 0
    assert json.loads(latest.stdout)["recorded_at"] == "2021-01-22T00:26:58Z"


def test_stdin_dash_and_single_resource() -> None:
    data = json.dumps(bundle(condition("c1", SCT, "24700007")))
    result = run("-", "--now", "2024-06-01T00:00:00Z", stdin=data)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["history"] == {"multiple_sclerosis": True}
    single = run("-", "--now", "2024-06-01T00:00:00Z", stdin=json.dumps(PATIENT))
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["patient"]["id"] == "p1"


def test_cds_hooks_request_uses_context_patient_id() -> None:
    request = {
        "hook": "patient-view",
        "context": {"patientId": "p1"},
        "prefetch": {"conditions": bundle(condition("c1", SCT, "49436004"), patient=None)},
    }
    result = run("-", "--now", "2024-06-01T00:00:00Z", stdin=json.dumps(request))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "facts_version": "1",
        "recorded_at": "2024-06-01T00:00:00Z",
        "history": {"atrial_fibrillation": True},
        "patient": {"id": "p1"},
    }


def test_multi_patient_bundle_needs_patient_id() -> None:
    data = bundle(condition("c1", SCT, "44054006"), {"resourceType": "Patient", "id": "p2"})
    refused = run("-", stdin=json.dumps(data))
    assert refused.exit_code == 2
    assert "--patient-id" in refused.stderr
    chosen = run("-", "--patient-id", "p1", "--now", "2024-06-01T00:00:00Z", stdin=json.dumps(data))
    assert chosen.exit_code == 0
    assert json.loads(chosen.stdout)["history"] == {"diabetes": True}


@pytest.mark.parametrize(
    ("stdin", "args", "needle"),
    [
        ("{not json", [], "not valid JSON"),
        ('{"a": NaN}', [], "not valid JSON"),
        ("[1, 2]", [], "must be a FHIR Bundle"),
        ('{"resourceType": "Bundle", "entry": {}}', [], "Bundle.entry"),
        (json.dumps(bundle()), ["--now", "yesterday"], "not an RFC 3339"),
        (json.dumps(bundle()), ["--now", "2024-01-01T00:00:00"], "time-zone"),
        (json.dumps(bundle()), ["--now", "latest"], "no dated resource"),
        (json.dumps(bundle()), ["--window-days", "0"], "positive"),
    ],
)
def test_invalid_input_exits_2_with_a_message(stdin: str, args: list[str], needle: str) -> None:
    result = run("-", *args, stdin=stdin)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert result.stdout == ""


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.json"))
    assert result.exit_code == 2


def test_non_utf8_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"resourceType": "Bundle", "id": "\xe9"}')
    result = run(str(path))
    assert result.exit_code == 2
    assert "UTF-8" in result.stderr
