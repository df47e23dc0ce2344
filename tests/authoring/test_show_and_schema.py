"""`neurocds pack show` and `neurocds schema`: a result validates with a plain jsonschema.validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from neurocds import Engine
from neurocds.authoring.show import SCHEMAS, bundled_schema
from neurocds.cli import main
from neurocds.resources import load_schema, schemas_dir
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cauda-equina.json"


def test_a_plain_jsonschema_validate_of_a_result_works_offline() -> None:
    result = Engine(packs=BUILTIN_PACKS).evaluate(json.loads(EXAMPLE.read_text())).to_dict()
    with (schemas_dir() / "result.schema.json").open(encoding="utf-8") as fh:
        jsonschema.validate(result, json.load(fh))  # no registry, no retrieval
    result["trace"]["fired"][0]["because"] = [{"nonsense": 1}]
    try:
        jsonschema.validate(result, load_schema("result.schema.json"))
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the embedded trace schema must still constrain the trace")


def test_the_embedded_trace_schema_is_the_trace_schema() -> None:
    # result.schema.json carries trace.schema.json whole; editing one without the other fails here.
    assert load_schema("result.schema.json")["$defs"]["trace_schema"] == load_schema("trace.schema.json")


def test_schema_command_prints_each_schema_and_bundles() -> None:
    runner = CliRunner()
    for kind, file in SCHEMAS.items():
        out = runner.invoke(main, ["schema", kind])
        assert out.exit_code == 0 and json.loads(out.output) == load_schema(file)
        bundled = json.loads(runner.invoke(main, ["schema", kind, "--bundled"]).output)
        jsonschema.Draft202012Validator.check_schema(bundled)
    assert runner.invoke(main, ["schema", "nope"]).exit_code == 2


def test_bundling_embeds_a_referenced_schema_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # The trace embedding removed, bundling puts it back under $defs so the $ref resolves.
    import neurocds.authoring.show as show

    stripped = json.loads(json.dumps(load_schema("result.schema.json")))
    del stripped["$defs"]["trace_schema"]
    real = show.load_schema
    monkeypatch.setattr(show, "load_schema", lambda name: stripped if name == "result.schema.json" else real(name))
    bundled = bundled_schema("result")
    assert bundled["$defs"]["trace_schema"] == load_schema("trace.schema.json")
    result = Engine(packs=BUILTIN_PACKS).evaluate(json.loads(EXAMPLE.read_text())).to_dict()
    jsonschema.validate(result, bundled)


def test_pack_show_lists_rules_findings_derived_facts_fields_and_dependencies() -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["pack", "show", "spinal-compression"])
    assert text.exit_code == 0
    assert "depends on: weakness-pattern" in text.output
    assert "spinal.cauda_equina_syndrome_suspected  emergency" in text.output
    assert "pattern.leg_weakness (from weakness-pattern)" in text.output
    view = json.loads(runner.invoke(main, ["pack", "show", "weakness-pattern", "--format", "json"]).output)
    # packs-v2 gave the foundation pack its one finding: the rules' validated age range.
    assert "pattern.hemiparesis" in view["derived_concluded"]
    assert view["findings"] == {"pattern.outside_validated_age": ["info"]}
    assert "strength.left_leg" in view["facts_fields"] and view["metadata"]["version"] == "2.0.0"
    missing = runner.invoke(main, ["pack", "show", "no-such-pack"])
    assert missing.exit_code == 2 and "not installed" in missing.output
