"""schemas/facts.schema.json encodes facts-v1.md, with the additive facts rows of packs-v2.md, exactly.

The field table of the contract (facts-v1.md) and the "Facts additions" table of
packs-v2.md (new fields, and values added to an enum) are parsed here, so a field added,
renamed or retyped on either side fails a test. Every field is then accepted with
valid values and rejected with invalid ones, generated from the parsed table
(not from the schema), through the real validator.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import shared_data
from jsonschema import Draft202012Validator

from neurocds.facts.validation import FactsValidator
from neurocds.resources import load_schema, schemas_dir

SPEC = shared_data.SPEC / "facts-v1.md"
PACKS_V2 = shared_data.SPEC / "packs-v2.md"
EXTENSION_ROW = "extensions.<pack>"


@dataclass(frozen=True)
class FieldSpec:
    """One path of the facts-v1 table, with its type column parsed."""

    path: str
    kind: str  # const | string | number | integer | bool | date-time | enum | medications | object
    required: bool = False
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()
    const: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _parse_type(path: str, kind: str, meaning: str) -> FieldSpec:
    required = "(required)" in kind
    kind = kind.replace("(required)", "").strip()
    if m := re.fullmatch(r'`"(\w+)"`', kind):
        return FieldSpec(path, "const", required, const=m.group(1))
    if m := re.fullmatch(r"(string|number|integer) (\d+)\.\.(\d+)", kind):
        return FieldSpec(path, m.group(1), required, float(m.group(2)), float(m.group(3)))
    if m := re.fullmatch(r"number ≥ (\d+)", kind):
        return FieldSpec(path, "number", required, low=float(m.group(1)))
    if kind == "number":
        return FieldSpec(path, "number", required)
    if kind == "bool":
        return FieldSpec(path, "bool", required)
    if kind == "RFC 3339 date-time":
        return FieldSpec(path, "date-time", required)
    if kind == "object":
        return FieldSpec(path, "object", required)
    if kind.startswith("array of"):
        classes = meaning.split("from:", 1)[1]  # "`class` from: `statin`, ..."
        return FieldSpec(path, "medications", required, values=tuple(_backticked(classes)))
    if r"\|" in kind:
        return FieldSpec(path, "enum", required, values=tuple(_backticked(kind)))
    raise AssertionError(f"facts-v1.md: type {kind!r} of {path} is not understood by this test")


def parse_spec() -> dict[str, FieldSpec]:
    text = SPEC.read_text(encoding="utf-8")
    table = text.split("## Fields", 1)[1].split("\n## ", 1)[0]
    fields: dict[str, FieldSpec] = {}
    for line in table.splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells[0] == "path":
            continue
        paths, kind, meaning = cells
        for path in _backticked(paths):
            assert path not in fields, f"{path} listed twice in facts-v1.md"
            fields[path] = _parse_type(path, kind, meaning)
    assert len(fields) > 50, "facts-v1.md field table not found"
    return apply_v2_additions(fields, PACKS_V2.read_text(encoding="utf-8"))


def apply_v2_additions(fields: dict[str, FieldSpec], text: str) -> dict[str, FieldSpec]:
    """Add packs-v2's facts rows: a new field with its type, or "adds `x`, `y`" to an enum or class list.

    packs-v2 keeps facts_version "1": its additions are optional fields and values, so the
    schema must carry them while every facts-v1 document stays valid.
    """
    table = text.split("## Facts additions", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows, "packs-v2.md facts additions table not found"
    out = dict(fields)
    for line in rows:
        path_cell, kind, meaning = (c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1])
        path = _backticked(path_cell)[0]
        base = path.removesuffix("[].class")
        if kind.startswith("adds "):
            old = out[base]
            values = old.values + tuple(_backticked(kind))
            out[base] = FieldSpec(base, old.kind, old.required, old.low, old.high, values)
        else:
            assert path not in out, f"packs-v2.md adds {path}, which facts-v1.md already has"
            out[path] = _parse_type(path, kind, meaning)
    return out


def schema_fields(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted path -> property schema, naming fields the way facts-v1.md does."""
    out: dict[str, dict[str, Any]] = {}
    for name, prop in schema["properties"].items():
        if name == "extensions":
            out[EXTENSION_ROW] = prop
        elif prop.get("type") == "object":
            for sub, sub_prop in prop["properties"].items():
                out[f"{name}.{sub}"] = sub_prop
        else:
            out[name] = prop
    return out


SCHEMA = load_schema("facts.schema.json")
FIELDS = schema_fields(SCHEMA)


@pytest.fixture(scope="module")
def spec() -> dict[str, FieldSpec]:
    return parse_spec()


def _all_objects(node: Any, pointer: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((pointer, node))
        for key, child in node.items():
            found.extend(_all_objects(child, f"{pointer}/{key}"))
    return found


# --- the schema document itself -----------------------------------------------------


def test_schema_file_is_valid_2020_12_with_placeholder_id() -> None:
    assert (schemas_dir() / "facts.schema.json").is_file()
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"].startswith("https://neurocds.invalid/")


def test_every_object_is_closed() -> None:
    objects = _all_objects(SCHEMA)
    assert len(objects) >= 13  # root, 11 sections, medication items, extensions
    for pointer, node in objects:
        assert node.get("additionalProperties") is False, pointer or "(root)"


def test_required_members() -> None:
    assert sorted(SCHEMA["required"]) == ["facts_version", "patient"]
    assert SCHEMA["properties"]["patient"]["required"] == ["id"]
    assert sorted(SCHEMA["properties"]["medications"]["items"]["required"]) == ["class", "name"]


def test_extensions_has_no_members_in_the_base_schema() -> None:
    ext = SCHEMA["properties"]["extensions"]
    assert ext["type"] == "object" and ext["properties"] == {} and ext["additionalProperties"] is False


def test_every_property_has_a_description() -> None:
    missing = [path for path, prop in FIELDS.items() if not prop.get("description")]
    assert missing == []
    sections = [n for n, p in SCHEMA["properties"].items() if p.get("type") == "object"]
    assert all(SCHEMA["properties"][n].get("description") for n in sections)


# --- the schema against the contract -----------------------------------------------


def test_schema_paths_equal_contract_paths(spec: dict[str, FieldSpec]) -> None:
    assert set(FIELDS) - set(spec) == set(), "in the schema, not in facts-v1.md"
    assert set(spec) - set(FIELDS) == set(), "in facts-v1.md, not in the schema"


def test_schema_required_matches_contract(spec: dict[str, FieldSpec]) -> None:
    required = {p for p, f in spec.items() if f.required}
    in_schema = set(SCHEMA["required"]) - {"patient"}
    in_schema |= {f"patient.{n}" for n in SCHEMA["properties"]["patient"]["required"]}
    assert in_schema == required


def test_schema_types_match_contract(spec: dict[str, FieldSpec]) -> None:
    for path, f in spec.items():
        prop = FIELDS[path]
        if f.kind == "const":
            assert prop["const"] == f.const, path
        elif f.kind == "bool":
            assert prop["type"] == "boolean", path
            assert "absent" in prop["description"] and "not" in prop["description"], path
        elif f.kind == "enum":
            assert prop["type"] == "string" and prop["enum"] == list(f.values), path
        elif f.kind == "string":
            assert (prop["type"], prop["minLength"], prop["maxLength"]) == ("string", f.low, f.high), path
        elif f.kind in ("number", "integer"):
            assert prop["type"] == f.kind, path
            if f.low is None:
                # facts-v1 gives labs no range: the schema bounds them by what is physiologically
                # possible (tests/hostile/test_fhir_possible_ranges.py checks bounds and sources).
                assert path.startswith("labs.") and "Physiologically possible" in prop["description"], path
                assert 0 <= prop["minimum"] < prop["maximum"], path
            else:
                assert (prop.get("minimum"), prop.get("maximum")) == (f.low, f.high), path
        elif f.kind == "date-time":
            assert (prop["type"], prop["format"]) == ("string", "date-time"), path
        elif f.kind == "medications":
            item = prop["items"]
            assert prop["type"] == "array" and item["type"] == "object", path
            assert item["properties"]["name"] == {**item["properties"]["name"], "type": "string", "minLength": 1}
            assert item["properties"]["class"]["enum"] == list(f.values), path
            assert len(f.values) == 11  # 8 of facts-v1, 3 added by packs-v2
        else:
            assert f.kind == "object" and prop["type"] == "object", path


# --- every field accepted and rejected, generated from the contract table ----------


def _cases(f: FieldSpec) -> tuple[list[Any], list[tuple[Any, str, str]]]:
    """(valid values, [(invalid value, code, pointer suffix)]) for one contract field."""
    if f.kind == "const":
        return [f.const], [(1, "const", ""), ("2", "const", ""), (None, "const", "")]
    if f.kind == "string":
        assert f.low is not None and f.high is not None
        lo, hi = int(f.low), int(f.high)
        valid = ["x" * lo, "é" * hi]
        return valid, [("x" * (lo - 1), "range", ""), ("x" * (hi + 1), "range", ""), (5, "type", "")]
    if f.kind in ("number", "integer"):
        low, high = f.low, f.high
        if low is None:  # a lab: the schema's physiologically possible range
            prop = SCHEMA["properties"]["labs"]["properties"][f.path.split(".", 1)[1]]
            low, high = prop["minimum"], prop["maximum"]
        valid = [low, math.ceil(low) + 1, 10**6 if high is None else high]
        invalid = [(low - 1, "range", ""), (str(int(low)), "type", ""), (True, "type", ""), (None, "type", "")]
        if f.kind == "number":
            valid.append(low + 0.5)
            invalid.append((low - 0.001, "range", ""))
        else:
            invalid.append((low + 0.5, "type", ""))
        if high is not None:
            invalid.append((high + 1, "range", ""))
        return valid, invalid
    if f.kind == "bool":
        return [True, False], [("true", "type", ""), (1, "type", ""), (0, "type", ""), (None, "type", "")]
    if f.kind == "enum":
        invalid = [("not_a_value", "enum", ""), (f.values[0].upper(), "enum", ""), (1, "type", "")]
        return list(f.values), invalid
    if f.kind == "date-time":
        valid = ["2026-11-24T10:00:00+01:00", "2026-11-24T09:00:00Z", "2024-02-29T23:59:59.125-05:30"]
        invalid = [
            ("2026-02-30T10:00:00Z", "format", ""),
            ("yesterday", "format", ""),
            ("2026-11-24T10:00:00", "format", ""),
            ("2026-11-24", "format", ""),
            (20261124, "type", ""),
        ]
        return valid, invalid
    if f.kind == "medications":
        valid = [[]] + [[{"name": "x", "class": c}] for c in f.values]
        ok = {"name": "x", "class": f.values[0]}
        invalid = [
            ([ok, {"name": "x", "class": "vitamin"}], "enum", "/1/class"),
            ([{"name": "", "class": f.values[0]}], "range", "/0/name"),
            ([{"class": f.values[0]}], "required", "/0/name"),
            ([{"name": "x"}], "required", "/0/class"),
            ([{**ok, "dose": "5 mg"}], "additional_property", "/0/dose"),
            ([ok, "x"], "type", "/1"),
            (ok, "type", ""),
        ]
        return valid, invalid
    assert f.kind == "object"
    return [{}], [({"any-pack": {}}, "additional_property", "/any-pack"), ([], "type", "")]


def _doc_with(path: str, value: Any) -> tuple[dict[str, Any], str]:
    doc: dict[str, Any] = {"facts_version": "1", "patient": {"id": "p-1"}}
    if path == EXTENSION_ROW:
        path = "extensions"
    head, _, tail = path.partition(".")
    if tail:
        doc.setdefault(head, {})[tail] = value
    else:
        doc[head] = value
    return doc, "/" + path.replace(".", "/")


def _table() -> list[Any]:
    if not SPEC.is_file():
        return [pytest.param(None, None, None, None, marks=pytest.mark.skip(reason=f"{SPEC} missing"))]
    params = []
    for path, f in parse_spec().items():
        valid, invalid = _cases(f)
        params += [pytest.param(path, v, None, None, id=f"{path}-ok-{i}") for i, v in enumerate(valid)]
        params += [pytest.param(path, v, c, s, id=f"{path}-bad-{i}-{c}") for i, (v, c, s) in enumerate(invalid)]
    return params


VALIDATOR = FactsValidator(SCHEMA)


@pytest.mark.parametrize(("path", "value", "code", "suffix"), _table())
def test_field_accepts_valid_and_rejects_invalid(path: str, value: Any, code: str | None, suffix: str | None) -> None:
    doc, pointer = _doc_with(path, copy.deepcopy(value))
    found = VALIDATOR.violations(doc)
    if code is None:
        assert found == [], f"{path}={value!r} should be valid: {found}"
        return
    assert found, f"{path}={value!r} should be rejected"
    assert {v.pointer for v in found} == {pointer + (suffix or "")}, found
    assert code in {v.code for v in found}, found
    assert all(v.expected and v.found and v.message for v in found)


def test_table_covers_every_contract_field(spec: dict[str, FieldSpec]) -> None:
    covered = {p.values[0] for p in _table()}
    assert covered == set(spec)


def test_an_undetectable_glucose_reported_as_zero_is_evaluated_as_the_lowest_glucose() -> None:
    # A lab reports an unmeasurably low glucose as 0: refusing it as implausible would drop
    # the whole evaluation, hypoglycaemia emergency included.
    from neurocds import Engine
    from neurocds_packs import BUILTIN_PACKS

    engine = Engine(packs=BUILTIN_PACKS)

    def findings(glucose: float) -> list[str]:
        doc = {"facts_version": "1", "patient": {"id": "p1"}, "labs": {"glucose_mmol_l": glucose}}
        return sorted(f["id"] for f in engine.evaluate(doc).findings)

    assert findings(0) == findings(1.0)
    assert findings(1.0) != findings(6.0)  # the low value decides something
