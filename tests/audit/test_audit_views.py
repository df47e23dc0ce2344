"""What an auditor sees in `show` and `report`: the input facts with readable names and where each
came from, and why each rule that did not fire did not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds.audit import AuditLog, read_records, render_html, render_text
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = Path(__file__).parents[2] / "examples" / "cauda-equina.json"


def _recorded(tmp_path: Path, *, redact: bool = False) -> dict:
    facts = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    d = tmp_path / ("redacted" if redact else "plain")
    log = AuditLog(d, redact=redact, pseudonym_key=b"k" * 32 if redact else None)
    log.record_decision(Engine(packs=BUILTIN_PACKS).evaluate(facts), facts)
    return read_records(d)[0]


def test_show_lists_each_input_fact_once_by_its_name(tmp_path: Path) -> None:
    text = render_text(_recorded(tmp_path))
    facts = text[text.index("Input facts (") : text.index("Rules that did not fire")]
    assert "  Plantar response: flexor" in facts  # the schema's title, the value in words
    assert "  History of cancer: no (recorded as absent)" in facts
    assert "/exam/" not in facts  # names, not JSON pointers
    lines = facts.splitlines()[1:]
    assert len(lines) == len(set(lines))  # one line per fact, however many rules read it
    assert sum("Leg reflexes" in line for line in lines) == 1


def test_show_says_why_each_rule_did_not_fire(tmp_path: Path) -> None:
    text = render_text(_recorded(tmp_path))
    assert "pattern.umn_signs (false): exam.reflexes_legs = brisk does not hold (it was reduced)" in text
    assert "(unknown): not recorded: Brain imaging (CT or MRI)" in text


def test_a_redacted_record_shows_no_facts(tmp_path: Path) -> None:
    record = _recorded(tmp_path, redact=True)
    assert "Input facts" not in render_text(record) and "Input facts" not in render_html(record)


def test_each_fact_names_the_fhir_resource_it_came_from(tmp_path: Path) -> None:
    from neurocds.fhir import FhirConverter

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}},
        {"resource": {"resourceType": "Observation", "id": "k1", "status": "final",
                      "subject": {"reference": "Patient/p1"},
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
                      "effectiveDateTime": "2026-11-20T08:00:00Z",
                      "valueQuantity": {"value": 2.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                        "code": "mmol/L"}}},
    ]}  # fmt: skip
    conversion = FhirConverter(now=datetime(2026, 11, 21, tzinfo=UTC)).convert_bundle(bundle)
    result = Engine(packs=BUILTIN_PACKS).evaluate(
        conversion.facts, provenance={"provenance": conversion.provenance, "warnings": conversion.warnings}
    )
    AuditLog(tmp_path / "log").record_decision(result, conversion.facts)
    record = read_records(tmp_path / "log")[0]
    text = render_text(record)
    line = next(x for x in text[text.index("Input facts") :].splitlines() if "2.4" in x)
    assert "from Observation/k1" in line and "/labs/" not in line
    assert "/labs/potassium_mmol_l" not in text  # the why-tree names facts too
    html = render_html(record)
    assert "<h2>Input facts" in html and "Observation/k1" in html


def test_show_and_report_give_the_cards_and_the_feedback_on_them(tmp_path: Path) -> None:
    from audit_helpers import make_facts, make_result
    from click.testing import CliRunner

    from neurocds.cli import main

    d = tmp_path / "log"
    log = AuditLog(d)
    result = make_result()
    log.record_decision(result, make_facts())
    log.record_decision(make_result(), make_facts())  # another decision: its cards are not ours
    log.record_cards(result["evaluation_id"], ["card-a", "card-b"])
    log.record_feedback("card-a", "overridden", decision_id=result["evaluation_id"],
                        override_reason={"code": "x", "display": "Patient already on treatment",
                                         "userComment": "seen today"})  # fmt: skip
    out = CliRunner().invoke(main, ["audit", "show", "--audit-dir", str(d), result["evaluation_id"]])
    assert out.exit_code == 0, out.output
    assert "cards issued: card-a, card-b" in out.output
    assert "card card-a: overridden (Patient already on treatment; seen today)" in out.output
    page = tmp_path / "r.html"
    CliRunner().invoke(main, ["audit", "report", "--audit-dir", str(d), "1", "--html", str(page)])
    assert "Patient already on treatment" in page.read_text(encoding="utf-8")
    other = CliRunner().invoke(main, ["audit", "show", "--audit-dir", str(d), "#2"])
    assert "Cards and feedback" not in other.output


def test_a_record_that_is_not_a_decision_is_shown_as_json_without_the_slow_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = _recorded(tmp_path)
    AuditLog(tmp_path / "plain").record_cards(decision["decision"]["decision_id"], ["card-é"])
    cards = read_records(tmp_path / "plain")[1]
    assert cards["type"] == "cards"
    expected = json.dumps(cards, indent=2, ensure_ascii=False)
    huge = {**cards, "note": 2**70}  # beyond orjson's integers: json.dumps still writes it
    huge_expected = json.dumps(huge, indent=2, ensure_ascii=False)
    assert render_text(huge) == huge_expected

    def refuse(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("json.dumps was used")

    monkeypatch.setattr(json, "dumps", refuse)
    assert render_text(cards) == expected
