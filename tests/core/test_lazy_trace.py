"""The why/why-not trace is built from the recorded node states only when a consumer asks."""

from __future__ import annotations

import json
from pathlib import Path

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "examples" / "crossed-stroke.json").read_text())


def test_the_trace_is_built_once_on_first_to_dict_and_equals_the_eager_one():
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    calls = []
    real = engine.explainer.trace
    engine.explainer.trace = lambda run, ev: calls.append(1) or real(run, ev)  # type: ignore[method-assign]
    result = engine.evaluate(EXAMPLE, provenance={"/labs/ck_u_l": "Observation/1"})
    assert calls == [] and result.finding_ids  # findings, missing data: no trace needed
    document = result.to_dict()
    assert calls == [1]
    assert result.to_dict() is document and calls == [1]
    assert list(document)[-2:] == ["trace", "disclaimer"]  # member order unchanged
    assert document["trace"]["input_provenance"] == {"/labs/ck_u_l": "Observation/1"}
    eager = Engine(packs=BUILTIN_PACKS, backend="reference").evaluate(EXAMPLE).to_dict()["trace"]
    assert {k: v for k, v in document["trace"].items() if k != "input_provenance"} == eager
    assert json.loads(result.to_json())["trace"] == document["trace"]


def test_provenance_is_copied_at_evaluation_time():
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    provenance = {"/labs/ck_u_l": "Observation/1"}
    result = engine.evaluate(EXAMPLE, provenance=provenance)
    provenance["/labs/ck_u_l"] = "changed later"
    assert result.to_dict()["trace"]["input_provenance"] == {"/labs/ck_u_l": "Observation/1"}


def test_missing_data_is_built_on_first_use_and_equals_the_document_member():
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    calls = []
    real = engine.explainer.missing_data
    engine.explainer.missing_data = lambda *a: calls.append(1) or real(*a)  # type: ignore[method-assign]
    result = engine.evaluate(EXAMPLE)
    assert calls == []
    missing = result.missing_data
    assert calls == [1] and missing
    assert result.to_dict()["missing_data"] is missing and calls == [1]
    assert list(result.to_dict()).index("missing_data") == list(result.to_dict()).index("derived") + 1


def test_because_is_built_only_when_findings_or_derived_facts_are_read():
    engine = Engine(packs=BUILTIN_PACKS)
    calls: list[int] = []
    real = engine.explainer.because
    engine.explainer.because = lambda index, ev: calls.append(index) or real(index, ev)  # type: ignore[method-assign]
    result = engine.evaluate(EXAMPLE)
    # What the evaluation itself answers needs no explanation: urgency, completeness.
    assert calls == [] and result.highest_urgency == "emergency" and result.complete
    findings = result.findings
    assert calls and findings and all(f["because"] for f in findings)
    assert result.findings is findings and result.to_dict()["findings"] is findings
    derived = result.derived
    assert derived and all(d["because"] for d in result.to_dict()["derived"])
    eager = Engine(packs=BUILTIN_PACKS).evaluate(EXAMPLE).to_dict()
    document = result.to_dict()
    for key in ("findings", "derived", "missing_data", "trace", "highest_urgency"):
        assert document[key] == eager[key], key
    assert list(document) == list(eager)  # member order unchanged


def test_highest_urgency_without_findings_is_the_most_urgent_finding_on_every_example():
    engine = Engine(packs=BUILTIN_PACKS)
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
    seen = set()
    for path in examples:
        result = engine.evaluate(path.read_bytes())
        urgency = result.highest_urgency
        ranks = {"emergency": 4, "urgent": 3, "routine": 2, "info": 1}
        expected = max((f["urgency"] for f in result.findings), key=ranks.__getitem__, default="none")
        assert urgency == expected, path.name
        seen.add(urgency)
    assert len(seen) >= 2  # the examples span urgencies: the check can tell them apart
