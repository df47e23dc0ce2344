"""The command line: exit codes, JSON errors, help everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from neurocds.cli import main

FACTS = {"facts_version": "1", "patient": {"id": "cli-1"}, "strength": {"left_leg": 3, "right_leg": 3}}


@pytest.fixture()
def facts_file(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(FACTS))
    return path


def run(*args, stdin=None):
    return CliRunner().invoke(main, list(args), input=stdin)


def test_evaluate_text_and_json(facts_file):
    text = run("evaluate", str(facts_file))
    assert text.exit_code == 0, text.output
    assert "not a diagnosis" in text.output and "cli-1" in text.output
    out = run("evaluate", str(facts_file), "--format", "json")
    assert out.exit_code == 0
    doc = json.loads(out.output)
    assert doc["complete"] is True and doc["engine"]["verified"] is True
    assert any(d["name"] == "pattern.paraparesis" for d in doc["derived"])


def test_evaluate_stdin_and_reference_backend():
    out = run("evaluate", "-", "--format", "json", "--backend", "reference", stdin=json.dumps(FACTS))
    assert out.exit_code == 0
    assert json.loads(out.output)["engine"]["backend"] == "reference"


def test_invalid_input_exit_2_with_pointers():
    bad = '{"facts_version": "1", "patient": {"id": "x"}, "labs": {"potassium_mmol_l": NaN}}'
    out = run("evaluate", "-", "--format", "json", stdin=bad)
    assert out.exit_code == 2
    errors = json.loads(out.output)["errors"]
    assert errors[0]["pointer"] == "/labs/potassium_mmol_l" and errors[0]["message"]
    out = run("validate", "-", stdin='{"facts_version": "1", "patient": {"id": "x"}, "strength": {"left_leg": 9}}')
    assert out.exit_code == 2 and "/strength/left_leg" in out.output


def test_validate_ok(facts_file):
    out = run("validate", str(facts_file))
    assert out.exit_code == 0 and "valid" in out.output


def test_pack_failure_exit_3(facts_file, monkeypatch):
    monkeypatch.setenv("NEUROCDS_PACKS", "weakness-pattern,missing-pack")
    out = run("evaluate", str(facts_file))
    assert out.exit_code == 3 and "missing-pack" in out.output


def test_packs_list_and_explain(facts_file):
    out = run("packs", "list", "--format", "json")
    assert out.exit_code == 0
    names = [p["name"] for p in json.loads(out.output)["packs"]]
    assert "weakness-pattern" in names
    why = run("explain", str(facts_file), "--rule", "pattern.paraparesis")
    assert why.exit_code == 0 and "FIRED" in why.output and "Left leg strength (MRC grade): 3" in why.output
    whynot = run("explain", str(facts_file), "--rule", "pattern.hemiparesis.left")
    assert "not recorded" in whynot.output
    assert run("explain", str(facts_file)).exit_code == 2


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_help_everywhere():
    paths = list(_commands(main))
    assert ("evaluate",) in paths and ("packs", "list") in paths
    for path in [(), *paths]:
        out = run(*path, "--help")
        assert out.exit_code == 0 and "Usage:" in out.output, path


def test_console_script_installed(facts_file):
    proc = subprocess.run(
        [sys.executable, "-m", "neurocds", "evaluate", str(facts_file)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Highest urgency" in proc.stdout


def test_undecided_emergency_names_exactly_the_facts_that_would_decide_it():
    unknown = {
        "facts_version": "1",
        "patient": {"id": "q"},
        "strength": {"left_leg": 3, "right_leg": 3},
        "symptoms": {"back_pain": True},
    }
    out = run("evaluate", "-", stdin=json.dumps(unknown)).output
    section = out.split("== Not decided")[1].split("==")[1]
    line = next(i for i, text in enumerate(section.splitlines()) if "spinal.cauda_equina_syndrome_suspected" in text)
    asked = section.splitlines()[line + 1]
    for fact in ("Urinary retention", "Saddle anaesthesia", "New faecal incontinence", "Reduced anal tone"):
        assert fact in asked
    answered = dict(
        unknown,
        symptoms={
            "back_pain": True,
            "urinary_retention": False,
            "saddle_anaesthesia": False,
            "urinary_incontinence": False,
            "faecal_incontinence": False,
        },
        exam={"reduced_anal_tone": False},
    )
    out = run("evaluate", "-", stdin=json.dumps(answered)).output
    undecided = out.split("== Not decided")[1].split("== Not recorded")[0]
    # The clinical rule is now decided (false); only the spine MRI could still raise it.
    assert "spinal.cauda_equina_syndrome_suspected" not in undecided


def test_text_output_expands_derived_facts_to_recorded_facts_and_orders_by_urgency():
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "cauda-equina.json"
    out = run("evaluate", str(example)).output
    # A derived fact is named by its rule's title and followed by every recorded fact behind it:
    # leg weakness is "either leg", and both legs are weak here, so both are named.
    assert "Because: Leg weakness (Left leg strength (MRC grade): 4; Right leg strength (MRC grade): 3)" in out
    assert out.index("== EMERGENCY") < out.index("== URGENT") < out.index("== FOR INFORMATION")
    assert out.rstrip().endswith("Clinical judgement decides.")


def test_evaluate_fhir_bundle_carries_provenance_into_the_trace():
    import shared_data

    bundle = shared_data.DATA / "synthea" / "Bryan_Breitenberg_8ce561ed-8bf7-4b0b-b1cd-e26775a8a8f8.json"
    out = run("evaluate", "--fhir", str(bundle), "--format", "json")
    assert out.exit_code == 0, out.output
    provenance = json.loads(out.stdout)["trace"]["input_provenance"]["provenance"]
    assert provenance["/history/prior_stroke"][0]["resource"].startswith("Condition/")


def test_reasons_read_flat_and_name_each_recorded_fact_once():
    from pathlib import Path

    example = Path(__file__).parents[1] / "examples" / "crossed-stroke.json"
    out = run("evaluate", str(example)).output
    # The crossed pattern rests on a derived hemiparesis: its limb grades are listed in one
    # parenthesis, not nested inside the hemiparesis's own.
    assert (
        "Because: Right hemiparesis with left facial weakness (Right arm strength (MRC grade): 2; "
        "Right leg strength (MRC grade): 3; Left arm strength (MRC grade): 5; Left leg strength (MRC grade): 5; "
        "Facial weakness (side): left)"
    ) in out
    # Two rules fire the stroke finding, one on the hemiparesis and one on imaging with any weak limb:
    # the weak limbs are named under the hemiparesis and not again after it.
    facts = json.loads(example.read_text(encoding="utf-8"))
    facts["imaging"] = {"brain": "ischaemic_stroke"}
    out = run("evaluate", "-", stdin=json.dumps(facts)).output
    stroke = next(line for line in out.splitlines() if line.startswith("  Because: Right arm and leg weak"))
    assert stroke.count("Right arm strength (MRC grade): 2") == 1
    assert stroke.endswith("Brain imaging (CT or MRI): ischaemic stroke")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_evaluate_parses_its_input_once(facts_file, monkeypatch, fmt):
    """The text report names the patient: read from the document the engine evaluated, not by
    parsing the input again. Every parser a facts text can go through is counted."""
    import neurocds.facts.patient as patient_module
    import neurocds.facts.validation as validation_module

    parses = []
    strict, lenient = validation_module.parse_strict, patient_module.orjson

    class CountingOrjson:
        def __getattr__(self, name):
            return getattr(lenient, name)

        @staticmethod
        def loads(data):
            parses.append("patient_id_of")
            return lenient.loads(data)

    def counting_strict(data, *args):
        parses.append("parse_strict")
        return strict(data, *args)

    monkeypatch.setattr(validation_module, "parse_strict", counting_strict)
    monkeypatch.setattr(patient_module, "orjson", CountingOrjson())
    out = run("evaluate", str(facts_file), "--format", fmt)
    assert out.exit_code == 0, out.output
    assert parses == ["parse_strict"]
    assert fmt == "json" or "cli-1" in out.output


def test_refused_input_is_still_recorded_when_parsed_once(tmp_path):
    """Refused before the engine evaluates it, the input still reaches the engine, which puts the
    refusal on the audit record: exit 2, the pointer named, one rejection recorded."""
    from neurocds.audit.query import read_records

    bad = '{"facts_version": "1", "patient": {"id": "x"}, "strength": {"left_leg": 9}}'
    out = run("evaluate", "-", "--audit-dir", str(tmp_path / "audit"), stdin=bad)
    assert out.exit_code == 2 and "/strength/left_leg" in out.output
    assert [r["type"] for r in read_records(tmp_path / "audit")] == ["rejection"]
