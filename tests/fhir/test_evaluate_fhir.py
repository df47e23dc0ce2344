"""``neurocds evaluate --fhir`` reads FHIR input exactly as ``fhir-to-facts`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurocds.cli import main
from neurocds.cli.fhir import DEFAULT_MAX_INPUT_BYTES

from .helpers import DATA, PATIENT, SCT, bundle, condition, lab, needs_data

EMERY = DATA / "synthea" / "Emery_Purdy_298c62e6-b204-4a14-8e21-73d5be0ce22e.json"
FACTS_LIMIT = 1_048_576  # the facts document's own limit, which FHIR input is not held to


def large_bundles() -> list[Path]:
    """Every shared patient bundle over the facts-document limit (7 Synthea, 8 synthea-py)."""
    return sorted(p for folder in ("synthea", "synthea-py") for p in (DATA / folder).glob("*.json"))


def evaluate(*args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["evaluate", "--fhir", "--format", "json", *args], input=stdin)


@needs_data
def test_bundles_over_one_mib_are_evaluated() -> None:
    big = [p for p in large_bundles() if p.stat().st_size > FACTS_LIMIT]
    assert len(big) >= 15, [p.name for p in big]
    for path in big:
        out = evaluate(str(path), "--now", "latest", "--no-trace")
        assert out.exit_code == 0, (path.name, out.output[-500:])
        result = json.loads(out.stdout)
        assert result["complete"] is True
        assert result["trace"]["input_provenance"]["provenance"], path.name


@needs_data
def test_max_input_bytes_is_the_limit_and_can_be_lowered() -> None:
    assert DEFAULT_MAX_INPUT_BYTES > 5_500_000  # the largest shared bundle fits
    size = EMERY.stat().st_size
    refused = evaluate(str(EMERY), "--max-input-bytes", str(size - 1))
    assert refused.exit_code == 2
    assert "--max-input-bytes" in refused.stdout + refused.stderr
    assert evaluate(str(EMERY), "--now", "latest", "--max-input-bytes", str(size)).exit_code == 0


@needs_data
def test_now_and_window_days_decide_which_labs_count() -> None:
    def labs(*args: str) -> dict:
        out = evaluate(str(EMERY), *args)
        assert out.exit_code == 0, out.output[-500:]
        return json.loads(out.stdout)["trace"]["input_provenance"]["provenance"]

    narrow = labs("--now", "2021-03-01T00:00:00Z")
    assert "/labs/glucose_mmol_l" not in narrow
    wide = labs("--now", "2021-03-01T00:00:00Z", "--window-days", "60")
    assert wide["/labs/glucose_mmol_l"][0]["resource"].startswith("Observation/")


def test_single_resource_and_patient_id_like_fhir_to_facts() -> None:
    single = evaluate("-", stdin=json.dumps(PATIENT))
    assert single.exit_code == 0, single.output
    data = bundle(condition("c1", SCT, "44054006"), {"resourceType": "Patient", "id": "p2"})
    refused = evaluate("-", stdin=json.dumps(data))
    assert refused.exit_code == 2
    assert "--patient-id" in refused.output
    chosen = evaluate("-", "--patient-id", "p1", "--now", "2024-06-01T00:00:00Z", stdin=json.dumps(data))
    assert chosen.exit_code == 0, chosen.output
    provenance = json.loads(chosen.stdout)["trace"]["input_provenance"]["provenance"]
    assert provenance["/history/diabetes"][0]["resource"] == "Condition/c1"


@pytest.mark.parametrize(
    ("stdin", "args", "needle"),
    [
        ('{"a": NaN}', [], "not valid JSON"),
        (json.dumps(bundle()), ["--now", "yesterday"], "not an RFC 3339"),
        (json.dumps(bundle()), ["--window-days", "0"], "positive"),
        (  # a mistyped --patient-id must not give an empty, all-unknown facts document
            json.dumps(bundle(condition("c1", SCT, "44054006"), PATIENT)),
            ["--patient-id", "p9"],
            "no resource in the input is about patient 'p9'",
        ),
    ],
)
def test_the_same_input_errors_as_fhir_to_facts(stdin: str, args: list[str], needle: str) -> None:
    out = CliRunner().invoke(main, ["evaluate", "--fhir", "-", *args], input=stdin)
    assert out.exit_code == 2
    assert needle in out.stderr
    converted = CliRunner().invoke(main, ["fhir-to-facts", "-", *args], input=stdin)
    assert converted.exit_code == 2
    assert needle in converted.stderr


def test_fhir_options_without_fhir_are_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"facts_version": "1", "patient": {"id": "x"}}))
    out = CliRunner().invoke(main, ["evaluate", str(path), "--window-days", "60"])
    assert out.exit_code == 2
    assert "need --fhir" in out.output


def test_needs_data_fails_rather_than_skips_without_the_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from . import helpers

    monkeypatch.setattr(helpers, "DATA", tmp_path / "no-such-folder")
    ran: list[bool] = []
    with pytest.raises(pytest.fail.Exception, match="test data not found"):
        helpers.needs_data(lambda: ran.append(True))()
    assert not ran


def test_what_the_conversion_dropped_is_shown_on_stderr_in_every_format() -> None:
    """A potassium in an unknown unit is unknown to the rules: the reader must be told why."""
    doc = json.dumps(bundle(lab("k1", "2823-3", 2.1, "mg")))
    for fmt in ("text", "json"):
        out = CliRunner().invoke(main, ["evaluate", "--fhir", "--now", "latest", "--format", fmt, "-"], input=doc)
        assert out.exit_code == 0, out.output
        assert "warning: FHIR input Observation/k1: unknown unit 'mg'" in out.stderr
        assert "2.1" not in out.stderr  # the value itself is not repeated
