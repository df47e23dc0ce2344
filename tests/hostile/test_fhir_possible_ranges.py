"""Implausible FHIR lab values: dropped with a warning (API, CLI), never turned into a fact or a finding."""

from __future__ import annotations

import json
import re
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
from neurocds.rules.conditions import FactTest
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


# The most extreme value each source in labs-loinc.yaml cites, as a laboratory would report it: a living
# patient had it, so it must survive the FHIR table and the facts schema alike (a bound narrowed past a
# published value refuses a real patient's result).
PUBLISHED_EXTREMES = [
    ("2823-3", 14, "mmol/L", "potassium_mmol_l", 14),  # Tran 2005
    ("2823-3", 0.9, "mmol/L", "potassium_mmol_l", 0.9),  # ten Bos 2016
    ("2951-2", 94, "mmol/L", "sodium_mmol_l", 94),
    ("2951-2", 228, "mmol/L", "sodium_mmol_l", 228),  # salt overdose, survived (Baselt)
    ("46099-8", 24, "mg/dL", "calcium_adjusted_mmol_l", 5.99),  # Improda 2021: 24 / 4.008
    ("29265-6", 0.56, "mmol/L", "calcium_adjusted_mmol_l", 0.56),  # Biebl 2009
    ("19123-9", 16.6, "mg/dL", "magnesium_mmol_l", 6.83),  # Intern Med 2005: 16.6 / 2.431
    ("14879-1", 17.75, "mmol/L", "phosphate_mmol_l", 17.75),  # Biebl 2009
    ("2777-1", 0.3, "mg/dL", "phosphate_mmol_l", 0.1),  # Bakir: 0.3 / 3.097 = 0.097, two decimals
    ("2345-7", 2656, "mg/dL", "glucose_mmol_l", 147.42),  # Guinness 2008: 2656 / 18.016
    ("3016-3", 1099, "m[IU]/L", "tsh_mu_l", 1099),  # J Med Case Rep 2021
    ("14920-3", 160.0, "pmol/L", "free_t4_pmol_l", 160.0),  # Ito 2020, LC-MS/MS
    ("2157-6", 1_000_000, "U/L", "ck_u_l", 1_000_000),  # Cases Journal 2008
    ("2132-9", 114_480, "pg/mL", "vitamin_b12_pmol_l", 84_463),  # Clin Biochem 2009: 114480 * 0.7378
    ("1988-5", 772, "mg/L", "crp_mg_l", 772),  # Hajek 2011
    ("6690-2", 1360, "10*3/uL", "wbc_10e9_l", 1360),  # Atwal 2017
]


def one_lab_bundle(code: str, value: float, unit: str) -> dict[str, Any]:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "valueQuantity": {"value": value, "code": unit, "system": "http://unitsofmeasure.org"},
    }
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-06-02"}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}, {"resource": observation}]}


@pytest.mark.parametrize(("code", "value", "unit", "fact", "expected"), PUBLISHED_EXTREMES)
def test_every_published_extreme_is_kept_through_fhir_and_the_schema(
    code: str, value: float, unit: str, fact: str, expected: float
) -> None:
    conversion = FhirConverter(now=NOW).convert_bundle(one_lab_bundle(code, value, unit))
    assert not [w for w in conversion.warnings if "possible range" in w.get("message", "")], conversion.warnings
    kept = conversion.facts["labs"][fact]
    assert kept == pytest.approx(expected, abs=0.01)
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    assert engine.validate(conversion.facts)["labs"][fact] == kept


def test_every_rule_threshold_lies_well_inside_its_labs_possible_range() -> None:
    # A reading just past a threshold must always be a value a living patient can have, with room to
    # spare: a third more than the threshold stays below the maximum, a third less stays above the minimum.
    labs = _facts_schema_labs()
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    checked = []
    for rule in engine.rules:
        for node in rule.when.walk():
            if not isinstance(node, FactTest) or node.path[0] != "labs":
                continue
            path, value = node.path, node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            low, high = labs[path[1]]["minimum"], labs[path[1]]["maximum"]
            assert value * 1.5 <= high, (rule.id, path[1], value, high)
            assert low * 1.5 <= value and low < value, (rule.id, path[1], value, low)
            checked.append(path[1])
    assert len(set(checked)) >= 10  # the packs' lab thresholds were found at all


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
    ("calcium_adjusted_mmol_l", 6.5, 6.51),
    ("phosphate_mmol_l", 20, 20.01),
    ("free_t4_pmol_l", 1000, 1000.1),
    ("vitamin_b12_pmol_l", 100_000, 100_001),
    ("crp_mg_l", 1000, 1000.1),
    ("wbc_10e9_l", 2000, 2000.01),
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


def test_the_readme_table_states_the_schemas_bounds() -> None:
    # README "The facts schema keeps its own ranges": one row per lab, `labs.name` | low .. high unit |.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `labs\.(\w+)` \| ([\d.,]+) \.\. ([\d.,]+) ", readme, flags=re.MULTILINE)
    labs = _facts_schema_labs()
    stated = {name: (float(low.replace(",", "")), float(high.replace(",", ""))) for name, low, high in rows}
    assert set(stated) == set(labs), set(stated) ^ set(labs)
    for name, bounds in stated.items():
        assert bounds == (labs[name]["minimum"], labs[name]["maximum"]), name
