"""Implausible FHIR lab values: dropped with a warning (API, CLI), never turned into a fact or a finding."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError
from neurocds.fhir import FhirConverter, default_mapping_paths, load_mapping_tables
from neurocds.fhir.mapping import MappingTableError
from neurocds_packs import BUILTIN_PACKS

ROOT = Path(__file__).resolve().parents[2]
REQUEST = ROOT / "examples" / "cdshooks" / "patient-view-request.json"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
IMPOSSIBLE = [2**64, 1e300, 0, 15.01, 10**400]


def prefetch_with_potassium(value: Any) -> dict[str, Any]:
    request = json.loads(REQUEST.read_text())
    for entry in request["prefetch"]["observations"]["entry"]:
        if entry["resource"]["id"] == "obs-k":
            entry["resource"]["valueQuantity"]["value"] = value
    return dict(request["prefetch"])


def convert(value: Any) -> Any:
    return FhirConverter(now=NOW).convert_prefetch(prefetch_with_potassium(value), patient_id="example-patient-1")


@pytest.mark.parametrize("value", IMPOSSIBLE, ids=["2**64", "1e300", "zero", "above-15", "10**400"])
def test_an_impossible_potassium_is_dropped_with_a_warning(value: Any) -> None:
    conversion = convert(value)
    assert "potassium_mmol_l" not in conversion.facts.get("labs", {})
    warnings = [w["message"] for w in conversion.warnings if "possible range" in w.get("message", "")]
    finite = "finite" in json.dumps(conversion.warnings)
    assert warnings or finite, conversion.warnings
    if warnings:
        assert warnings[0].endswith("outside the physiologically possible range 0.5..15 mmol/L: value dropped")
        assert str(value) not in warnings[0].replace("0.5..15", "")  # names the range, never the value
    result = Engine(packs=BUILTIN_PACKS, backend="reference").evaluate(conversion.facts)
    assert not [f for f in result.to_dict()["findings"] if "potassium" in f["id"]]


def test_a_possible_extreme_is_kept() -> None:
    assert convert(14.0).facts["labs"]["potassium_mmol_l"] == 14.0
    assert convert(2.4).facts["labs"]["potassium_mmol_l"] == 2.4


def test_every_mapped_lab_has_a_possible_range_with_its_source() -> None:
    for path in default_mapping_paths():
        table = yaml.safe_load(Path(path).read_text())
        for entry in table.get("observations", []):
            possible = entry.get("possible")
            assert possible is not None, (path.name, entry["id"])
            assert possible["min"] < possible["max"] and len(possible["source"]) > 20, entry["id"]
            assert possible["source"].startswith(PREAMBLE), entry["id"]  # says what the bounds mean


def test_a_table_whose_range_is_upside_down_is_refused(tmp_path: Path) -> None:
    table = {
        "format": "neurocds-fhir-mapping/1",
        "table": "t",
        "observations": [
            {
                "id": "k",
                "fact": "labs.potassium_mmol_l",
                "unit": "mmol/L",
                "units": [{"code": "mmol/L"}],
                "possible": {"min": 15, "max": 0.5, "source": "upside down"},
                "codes": [{"system": "http://loinc.org", "code": "x-1"}],
            }
        ],
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(table))
    with pytest.raises(MappingTableError, match="min must be below max"):
        load_mapping_tables([path])


def test_evaluate_fhir_on_the_command_line_drops_it_and_says_so(tmp_path: Path) -> None:
    request = json.loads(REQUEST.read_text())
    request["prefetch"] = prefetch_with_potassium(0)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    cli = [sys.executable, "-c", "from neurocds.cli import main; main()"]
    done = subprocess.run(
        [*cli, "evaluate", "--fhir", "--now", "2026-11-21T09:00:00Z", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "outside the physiologically possible range" in done.stderr
    assert not [f for f in json.loads(done.stdout)["findings"] if "potassium" in f["id"]]


PREAMBLE = "Physiologically possible, not normal: a value outside is a data error. "


def _facts_schema_labs() -> dict[str, Any]:
    schema = json.loads((ROOT / "schemas" / "facts.schema.json").read_text())
    labs: dict[str, Any] = schema["properties"]["labs"]["properties"]
    return labs


def test_the_facts_schema_keeps_the_same_possible_ranges_documented() -> None:
    labs = _facts_schema_labs()
    mapped = {}
    for path in default_mapping_paths():
        for entry in yaml.safe_load(Path(path).read_text()).get("observations", []):
            section, name = entry["fact"].split(".", 1)
            if section == "labs":
                mapped[name] = entry["possible"]
    assert set(mapped) == set(labs)  # every lab of the contract is mapped, and bounded
    for name, possible in mapped.items():
        assert (labs[name]["minimum"], labs[name]["maximum"]) == (possible["min"], possible["max"]), name
        description = labs[name]["description"]
        assert "Physiologically possible" in description and "not a normal range" in description, name
        source = possible["source"].removeprefix(PREAMBLE)
        assert source in description, name  # the schema cites the table's source, word for word


BOUNDARIES = [
    ("potassium_mmol_l", 15, 15.01),
    ("potassium_mmol_l", 0.5, 0.49),
    ("sodium_mmol_l", 260, 261),
    ("glucose_mmol_l", 200, 1e300),
    ("ck_u_l", 5_000_000, 2**64),
]


@pytest.mark.parametrize(("name", "inside", "outside"), BOUNDARIES)
def test_a_facts_document_outside_a_possible_range_is_refused_with_its_pointer(
    name: str, inside: float, outside: float
) -> None:
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    base = {"facts_version": "1", "patient": {"id": "p1"}}
    assert engine.validate({**base, "labs": {name: inside}})["labs"][name] == inside
    with pytest.raises(FactsValidationError) as info:
        engine.validate({**base, "labs": {name: outside}})
    assert [(v.pointer, v.code) for v in info.value.violations] == [(f"/labs/{name}", "range")]
    assert engine.validate({**base, "labs": {}})["labs"] == {}  # absent stays unknown, never a default
