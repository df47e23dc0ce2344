"""Incomplete decisions (a pack failed) are recorded like any other, and found again.

Every error a result can carry has one shape, which the result schema and the audit
record schema agree on; these tests build real incomplete results with failing packs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from audit_helpers import read_lines
from click.testing import CliRunner
from referencing import Registry, Resource

from neurocds import Engine
from neurocds.audit import AuditLog, verify_log
from neurocds.cli import main
from neurocds.errors import ERROR_KINDS, PackFailure, RuleEvaluationError
from neurocds.resources import load_schema
from neurocds.testing import inline_pack, rule

WEAK = {"fact": "strength.left_leg", "lt": 5}
WEAK_FACTS = {"facts_version": "1", "patient": {"id": "incomplete-1"}, "strength": {"left_leg": 3}}
QUIET_FACTS = {"facts_version": "1", "patient": {"id": "incomplete-2"}, "strength": {"left_leg": 5}}


def _error_validator(schema_file: str) -> jsonschema.Draft202012Validator:
    schema = load_schema(schema_file)
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/error", "$defs": schema["$defs"]})


def _result_validator() -> jsonschema.Draft202012Validator:
    trace = load_schema("trace.schema.json")
    registry = Registry().with_resource(trace["$id"], Resource.from_contents(trace))
    return jsonschema.Draft202012Validator(load_schema("result.schema.json"), registry=registry)


def _failing_engine(tmp: Path, **kw: Any) -> Engine:
    """good loads; broken fails at load; dep is skipped (needs broken); hooky's compute
    hook raises; detail's finding-detail hook (a rule action) raises."""

    def compute(facts: Any) -> Any:
        raise RuntimeError("compute hook failed")

    def detail(finding_id: str, rule_id: str, facts: Any, derived: Any) -> str:
        raise RuntimeError("detail hook failed")

    plugins = [
        ("good", inline_pack(tmp, "good", "good", [rule("good.weak", WEAK)])),
        ("broken", inline_pack(tmp, "broken", "broken", [rule("broken.r", {"fact": "labs.no_such_lab", "gt": 1})])),
        ("dep", inline_pack(tmp, "dep", "dep", [rule("dep.r", WEAK)], depends_on=["broken"])),
        ("hooky", inline_pack(tmp, "hooky", "hooky", [rule("hooky.r", WEAK)], compute=compute)),
        ("detail", inline_pack(tmp, "detail", "detail", [rule("detail.r", WEAK)], finding_detail=detail)),
    ]
    return Engine(plugins=plugins, entry_points=False, on_pack_error="skip", **kw)


def test_both_schemas_define_the_same_error_shape_with_every_kind() -> None:
    result_error = load_schema("result.schema.json")["$defs"]["error"]
    audit_error = load_schema("audit-record.schema.json")["$defs"]["error"]
    assert result_error["additionalProperties"] is False and audit_error["additionalProperties"] is False
    assert "kind" in result_error["required"] and "kind" in audit_error["required"]
    # The audit copy adds only the message hash a redacted record keeps instead of the message.
    assert set(audit_error["properties"]) - {"message_sha256"} == set(result_error["properties"])
    for name, definition in result_error["properties"].items():
        assert audit_error["properties"][name] == definition, name
    assert result_error["properties"]["kind"]["enum"] == list(ERROR_KINDS)


def test_every_kind_of_error_object_fits_both_schemas() -> None:
    errors = [RuleEvaluationError("m", rule="p.r", pack="p", kind=k).to_dict() for k in ("action", "budget")]
    errors += [RuleEvaluationError("m", kind=k).to_dict() for k in ("backend", "disagreement")]
    errors += [PackFailure("p", "load", "m").to_dict(), PackFailure("p", "load", "m", kind="pack_skipped").to_dict()]
    errors += [PackFailure("p", "compute_facts", "m").to_dict()]
    assert {e["kind"] for e in errors} == set(ERROR_KINDS)
    for validator in (_error_validator("result.schema.json"), _error_validator("audit-record.schema.json")):
        for error in errors:
            validator.validate(error)
    with pytest.raises(ValueError, match="known kind"):
        PackFailure("p", "evaluate", "m")  # no stage but load and compute_facts implies a kind
    with pytest.raises(ValueError, match="unknown rule error kind"):
        RuleEvaluationError("m", kind="hook")


@pytest.mark.parametrize("redact", [False, True], ids=["plain", "redacted"])
def test_real_incomplete_results_are_recorded_and_found(tmp_path: Path, redact: bool) -> None:
    d = tmp_path / "log"
    options = {"redact": True, "pseudonym_key": "ab" * 16} if redact else None
    engine = _failing_engine(tmp_path / "packs", audit_dir=d, audit_options=options)
    fired, quiet = engine.evaluate(WEAK_FACTS), engine.evaluate(QUIET_FACTS)
    for result in (fired, quiet):
        assert not result.complete
        _result_validator().validate(result.to_dict())
    assert {(e["kind"], e["pack"]) for e in fired.errors} == {
        ("pack_load", "broken"),
        ("pack_skipped", "dep"),
        ("compute_hook", "hooky"),
        ("action", "detail"),
    }
    records = read_lines(d)
    assert [r["decision"]["decision_id"] for r in records] == [fired.evaluation_id, quiet.evaluation_id]
    assert verify_log(d).ok
    stored = records[0]["decision"]["errors"]
    assert [e["kind"] for e in stored] == [e["kind"] for e in fired.errors]
    assert all(("message_sha256" in e) == redact and ("message" in e) != redact for e in stored)
    out = CliRunner().invoke(main, ["audit", "query", "--audit-dir", str(d), "--incomplete", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert [r["sequence"] for r in json.loads(out.stdout)] == [1, 2]


def test_backend_errors_and_disagreements_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocds.backends.reference import Run
    from neurocds.engine import durable_available

    if not durable_available()[0]:
        pytest.skip("durable_rules does not import here")
    d = tmp_path / "log"
    # onset hours have no upper bound (labs do: physiologically possible ranges), so 10**16 + 1 is a fact.
    rules = [rule("hz.big", {"fact": "onset.hours_since_onset", "gt": 1e16}), rule("hz.weak", WEAK)]
    plugin = inline_pack(tmp_path, "hz", "hz", rules)
    engine = Engine(plugins=[("hz", plugin)], entry_points=False, backend="durable", audit_dir=d)
    backend = engine.evaluate({**WEAK_FACTS, "onset": {"hours_since_onset": 10**16 + 1}})  # inexact for durable
    assert [e["kind"] for e in backend.errors] == ["backend"]
    # A durable answer that fires nothing: the verifying reference evaluator disagrees.
    monkeypatch.setattr(engine.durable, "run", lambda *a, **k: Run(backend="durable", fired=[], derived={}))
    disagreement = engine.evaluate(WEAK_FACTS)
    assert [e["kind"] for e in disagreement.errors] == ["disagreement"]
    stored = [r["decision"] for r in read_lines(d)]
    assert [[e["kind"] for e in s["errors"]] for s in stored] == [["backend"], ["disagreement"]]
    assert all(s["complete"] is False for s in stored) and verify_log(d).ok


def test_an_incomplete_result_dict_is_refused_only_for_a_real_shape_error(tmp_path: Path) -> None:
    """The writer still checks: an error without a kind is not silently stored."""
    engine = _failing_engine(tmp_path / "packs")
    data = json.loads(json.dumps(engine.evaluate(WEAK_FACTS).to_dict()))
    log = AuditLog(tmp_path / "log")
    log.record_decision(data, WEAK_FACTS)
    del data["errors"][0]["kind"]
    with pytest.raises(Exception, match="'kind' is a required property"):
        log.record_decision(data, WEAK_FACTS)
