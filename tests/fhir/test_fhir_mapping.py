"""Mapping tables: discovery through the hook, schema validation, cross-file checks."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

import neurocds_packs.fhir_maps as builtin
from neurocds.fhir import MappingTableError, default_mapping_paths, load_mapping_tables
from neurocds.fhir.rules import CodeIndex, Origin, Rule, contains_phrase, words
from neurocds.resources import load_schema

from .helpers import assert_valid_facts

CORE = Path(__file__).resolve().parents[2] / "core" / "neurocds"

DOCUMENT = """
format: neurocds-fhir-mapping/1
table: doc
document:
  constants: {facts_version: "1"}
  patient: {id: patient.id}
  medication_list: {path: medications, name_key: name, class_key: class, unmatched_class: other}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_default_paths_come_from_the_hook_and_are_the_yaml_files_sorted() -> None:
    paths = default_mapping_paths()
    expected = sorted(Path(builtin.__file__).resolve().parent.glob("*.yaml"))
    assert paths == expected
    assert len(paths) >= 4
    assert default_mapping_paths() == paths  # a fresh plugin manager each call, same answer


def test_builtin_tables_load() -> None:
    tables = load_mapping_tables(default_mapping_paths())
    assert tables.document.patient_id == "patient.id"
    assert "loinc-labs/potassium" in tables.rules


def _schema_type_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["properties"][part]
    return node


def test_every_table_fact_path_exists_in_the_facts_schema_with_a_fitting_type() -> None:
    facts_schema = load_schema("facts.schema.json")
    for path in default_mapping_paths():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section in ("conditions", "procedures"):
            for entry in data.get(section, []):
                facts = [entry["facts"]] if isinstance(entry["facts"], str) else entry["facts"]
                for fact in facts:
                    assert _schema_type_at(facts_schema, fact)["type"] == "boolean", (path.name, fact)
        for entry in data.get("observations", []):
            assert _schema_type_at(facts_schema, entry["fact"])["type"] == "number", (path.name, entry["fact"])
        for entry in data.get("medication_classes", []):
            klass = _schema_type_at(facts_schema, "medications")["items"]["properties"]["class"]
            assert entry["class"] in klass["enum"], (path.name, entry["id"])
            for flag in [entry["flags"]] if isinstance(entry.get("flags"), str) else entry.get("flags", []):
                assert _schema_type_at(facts_schema, flag)["type"] == "boolean", (path.name, flag)
        for entry in data.get("findings", []):
            values = [v["value"] for v in entry.get("value_codes", [])]
            values += list(entry.get("value_boolean", {}).values())
            for value in values:
                doc = {"facts_version": "1", "patient": {"id": "x"}}
                section, field = entry["fact"].split(".")
                doc[section] = {field: value}
                assert_valid_facts(doc)


def test_core_holds_no_codes_or_fact_names() -> None:
    """The converter is generic: no code literals, no facts-v1 section names in core/fhir."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (CORE / "fhir").glob("*.py"))
    for token in ('"history', '"labs', '"symptoms', '"patient.', "facts_version", '"medications"'):
        assert token not in sources, token
    assert not re.search(r"\b\d{6,18}\b", sources), "a SNOMED/RxNorm-like code literal in core/fhir"
    assert not re.search(r"\b\d{3,5}-\d\b", sources), "a LOINC-like code literal in core/fhir"


def test_schema_error_names_file_and_pointer(tmp_path: Path) -> None:
    bad = write(
        tmp_path,
        "bad.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: bad
        conditions:
          - id: x
            facts: history.diabetes
            scope: sometimes
            codes: [{system: "http://snomed.info/sct", code: "1"}]
        """,
    )
    with pytest.raises(MappingTableError) as info:
        load_mapping_tables([bad])
    assert info.value.file == str(bad)
    assert info.value.pointer == "/conditions/0/scope"
    assert "bad.yaml" in str(info.value)


def test_invalid_yaml_is_a_table_error(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError, match="not valid YAML"):
        load_mapping_tables([write(tmp_path, "broken.yaml", "format: [unclosed\n")])


def test_duplicate_code_across_files_names_both_files(tmp_path: Path) -> None:
    entry = """
    format: neurocds-fhir-mapping/1
    table: {table}
    conditions:
      - id: dm
        facts: history.diabetes
        scope: lifetime
        codes: [{{system: "http://snomed.info/sct", code: "44054006"}}]
    """
    first = write(tmp_path, "first.yaml", entry.format(table="one"))
    second = write(tmp_path, "second.yaml", entry.format(table="two"))
    doc = write(tmp_path, "doc.yaml", DOCUMENT)
    with pytest.raises(MappingTableError) as info:
        load_mapping_tables([doc, first, second])
    message = str(info.value)
    assert "first.yaml" in message and "second.yaml" in message
    assert info.value.pointer == "/conditions/0/codes/0"


def test_same_code_in_different_resource_families_is_allowed(tmp_path: Path) -> None:
    table = write(
        tmp_path,
        "t.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: t
        systems: {sct: "http://snomed.info/sct"}
        conditions:
          - id: fever
            facts: symptoms.fever
            scope: current
            within_days: 3
            codes: [{system: sct, code: "386661006"}]
        findings:
          - id: fever-obs
            fact: symptoms.fever
            codes: [{system: sct, code: "386661006"}]
            value_boolean: {when_true: true, when_false: false}
        """,
    )
    tables = load_mapping_tables([write(tmp_path, "doc.yaml", DOCUMENT), table])
    assert {"t/fever", "t/fever-obs"} <= set(tables.rules)


def test_duplicate_ingredient_and_missing_alias_and_canonical_unit(tmp_path: Path) -> None:
    doc = write(tmp_path, "doc.yaml", DOCUMENT)
    meds = """
    format: neurocds-fhir-mapping/1
    table: {table}
    medication_classes:
      - {{id: s, class: statin, ingredients: [simvastatin]}}
    """
    with pytest.raises(MappingTableError, match="ingredient 'simvastatin'"):
        load_mapping_tables(
            [doc, write(tmp_path, "a.yaml", meds.format(table="a")), write(tmp_path, "b.yaml", meds.format(table="b"))]
        )
    alias = write(
        tmp_path,
        "alias.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: alias
        conditions:
          - {id: x, facts: history.diabetes, scope: lifetime, codes: [{system: snomed, code: "1"}]}
        """,
    )
    with pytest.raises(MappingTableError, match="unknown code-system alias 'snomed'") as info:
        load_mapping_tables([doc, alias])
    assert info.value.pointer == "/conditions/0/codes/0/system"
    unit = write(
        tmp_path,
        "unit.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: unit
        observations:
          - id: k
            fact: labs.potassium_mmol_l
            unit: mmol/L
            units: [{code: mmol/L, multiply: 2}]
            codes: [{system: "http://loinc.org", code: "2823-3"}]
        """,
    )
    with pytest.raises(MappingTableError, match="canonical unit") as info:
        load_mapping_tables([doc, unit])
    assert info.value.pointer == "/observations/0/unit"


def test_two_numeric_sources_for_one_fact_are_refused(tmp_path: Path) -> None:
    table = write(
        tmp_path,
        "t.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: t
        systems: {loinc: "http://loinc.org"}
        observations:
          - {id: a, fact: labs.ck_u_l, unit: U/L, units: [{code: U/L}], codes: [{system: loinc, code: "1-1"}]}
          - {id: b, fact: labs.ck_u_l, unit: U/L, units: [{code: U/L}], codes: [{system: loinc, code: "2-2"}]}
        """,
    )
    with pytest.raises(MappingTableError, match="already produced"):
        load_mapping_tables([write(tmp_path, "doc.yaml", DOCUMENT), table])


def test_document_must_be_defined_exactly_once(tmp_path: Path) -> None:
    with pytest.raises(MappingTableError, match="no mapping table defines 'document'"):
        load_mapping_tables([])
    with pytest.raises(MappingTableError, match="'document' is also defined"):
        load_mapping_tables(
            [
                write(tmp_path, "d1.yaml", DOCUMENT),
                write(tmp_path, "d2.yaml", DOCUMENT.replace("table: doc", "table: doc2")),
            ]
        )


def test_code_index_exact_beats_prefix_and_longest_prefix_wins() -> None:
    def rule(name: str) -> Rule:
        return Rule(name, Origin(Path("x"), ""))

    index = CodeIndex()
    index.add("s", "E1", "prefix", rule("short"))
    index.add("s", "E11", "prefix", rule("long"))
    index.add("s", "E11.9", "exact", rule("exact"))
    assert index.lookup("s", "E11.9").rule == "exact"  # type: ignore[union-attr]
    assert index.lookup("s", "E11.65").rule == "long"  # type: ignore[union-attr]
    assert index.lookup("s", "E10").rule == "short"  # type: ignore[union-attr]
    assert index.lookup("s", "E") is None
    assert index.lookup("other", "E11.9") is None


def test_word_matching_helpers() -> None:
    assert words("predniSONE 20 MG/ML, Oral") == ("prednisone", "20", "mg", "ml", "oral")
    assert contains_phrase(words("Dimethyl Fumarate 240 MG"), ("dimethyl", "fumarate"))
    assert not contains_phrase(words("methylprednisolone"), ("prednisolone",))
    assert not contains_phrase(words("fumarate dimethyl"), ("dimethyl", "fumarate"))


def test_a_plugin_adds_a_table_through_the_neurocds_fhir_mappings_hook(tmp_path: Path) -> None:
    """Third-party tables arrive through the same hook as the built-in ones and are used."""
    import pluggy

    from neurocds import hookspecs
    from neurocds.fhir import FhirConverter

    from .helpers import NOW, bundle, condition

    extra = write(
        tmp_path,
        "organophosphate.yaml",
        """
        format: neurocds-fhir-mapping/1
        table: site-extras
        conditions:
          - id: organophosphate
            facts: exposures.organophosphate
            scope: current
            within_days: 7
            codes: [{system: "http://example.org/local", code: "OP-EXPOSURE"}]
        """,
    )

    class SitePlugin:
        @hookspecs.hookimpl
        def neurocds_fhir_mappings(self) -> list[Path]:
            return [extra]

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin)
    pm.register(SitePlugin())
    paths = [Path(p) for result in pm.hook.neurocds_fhir_mappings() for p in result]
    assert extra in paths and set(default_mapping_paths()) <= set(paths)
    tables = load_mapping_tables(paths)
    local = condition("c1", "http://example.org/local", "OP-EXPOSURE", onset="2024-05-30")
    result = FhirConverter(tables, now=NOW).convert_bundle(bundle(local))
    assert result.facts["exposures"] == {"organophosphate": True}
    assert result.provenance["/exposures/organophosphate"][0]["rule"] == "site-extras/organophosphate"
    assert_valid_facts(result.facts)


CLAIMS = {
    "table id": ("table: t\n", "table: t\n"),
    "code": (
        "table: a\nconditions:\n  - {id: x, facts: history.diabetes, scope: lifetime,"
        ' codes: [{system: "http://snomed.info/sct", code: "1"}]}\n',
        "table: b\nconditions:\n  - {id: y, facts: history.cancer, scope: lifetime,"
        ' codes: [{system: "http://snomed.info/sct", code: "1"}]}\n',
    ),
    "ingredient": (
        "table: a\nmedication_classes:\n  - {id: s, class: statin, ingredients: [simvastatin]}\n",
        "table: b\nmedication_classes:\n  - {id: s, class: statin, ingredients: [atorvastatin, simvastatin]}\n",
    ),
    "fact": (
        "table: a\nobservations:\n  - {id: k, fact: labs.ck_u_l, unit: U/L, units: [{code: U/L}],"
        ' codes: [{system: "http://loinc.org", code: "1-1"}]}\n',
        "table: b\nobservations:\n  - {id: k, fact: labs.ck_u_l, unit: U/L, units: [{code: U/L}],"
        ' codes: [{system: "http://loinc.org", code: "2-2"}]}\n',
    ),
}


@pytest.mark.parametrize("what", CLAIMS)
def test_a_second_place_mapping_the_same_thing_is_refused_naming_both(tmp_path: Path, what: str) -> None:
    # One check (mapping._claim) for table ids, codes, ingredients and single-valued facts.
    first, second = (
        write(tmp_path, f"{n}.yaml", "format: neurocds-fhir-mapping/1\n" + text)
        for n, text in zip("ab", CLAIMS[what], strict=True)
    )
    with pytest.raises(MappingTableError) as info:
        load_mapping_tables([write(tmp_path, "doc.yaml", DOCUMENT), first, second])
    where = {
        "table id": "/table",
        "code": "/conditions/0",
        "ingredient": "/medication_classes/0/ingredients/",
        "fact": "/observations/0/fact",
    }[what]
    assert info.value.file == str(second) and info.value.pointer.startswith(where)
    assert f" at {first} {where}" in str(info.value)  # the first place, file and pointer
