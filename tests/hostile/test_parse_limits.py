"""The container limit (ParseLimits.max_containers): where it lies, what it counts, and who is held to it.

A facts document may hold at most 10,000 objects and arrays by default (about 15 plus one
per medication in a real one). A document over it is refused before it is parsed, with
one violation at the root pointer that names the limit, the same through bytes, text, a
dict, the CLI (exit 2) and the population and service paths. FHIR input, which is denser
and parsed before it becomes facts, is not held to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from shared_data import DATA

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError
from neurocds.facts.fastparse import value_count
from neurocds.facts.strictjson import ParseLimits, parse_strict
from neurocds_packs import BUILTIN_PACKS

from .corpus import CONTAINER_LIMIT, MEMBER_LIMIT, VALUE_LIMIT

BASE: dict[str, Any] = {"facts_version": "1", "patient": {"id": "p1"}}
MEDICATION = {"name": "aspirin", "class": "other"}
CLI = [sys.executable, "-c", "from neurocds.cli import main; main()"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS, backend="reference")


def with_medications(count: int) -> dict[str, Any]:
    """A valid document of ``count`` + 3 containers (root, patient, the list, the medications)."""
    return {**BASE, "medications": [dict(MEDICATION) for _ in range(count)]}


def refusal(engine: Engine, facts: Any) -> list[tuple[str, str]]:
    with pytest.raises(FactsValidationError) as info:
        engine.validate(facts)
    return [(v.pointer, v.code) for v in info.value.violations]


def test_the_default_limit_is_the_one_the_corpus_is_built_around() -> None:
    assert ParseLimits().max_containers == CONTAINER_LIMIT


def test_a_valid_document_at_the_limit_is_accepted_and_one_more_container_is_refused(engine: Engine) -> None:
    at_limit = with_medications(CONTAINER_LIMIT - 3)
    text = json.dumps(at_limit)
    assert text.count("{") + text.count("[") == CONTAINER_LIMIT
    for facts in (at_limit, text, text.encode()):
        assert engine.validate(facts)["medications"][-1] == MEDICATION
    over = with_medications(CONTAINER_LIMIT - 2)
    for facts in (over, json.dumps(over), json.dumps(over).encode()):
        assert refusal(engine, facts) == [("", "containers")]


def test_the_refusal_is_one_line_naming_the_limit_and_nothing_else(engine: Engine) -> None:
    over = with_medications(CONTAINER_LIMIT) | {"labs": {"potassium_mmol_l": float("nan")}, "unknown": 1}
    for facts in (over, json.dumps(over).encode()):
        with pytest.raises(FactsValidationError) as info:
            engine.validate(facts)
        (violation,) = info.value.violations  # reported alone, like size and depth
        assert violation.code == "containers" and violation.pointer == ""
        assert "10,000 objects and arrays" in violation.message and "max_containers" in violation.message
        assert "\n" not in violation.message
        assert info.value.facts_sha256 is None  # as for any document refused before it is parsed


def test_brackets_inside_strings_are_not_counted(engine: Engine) -> None:
    doc = {**BASE, "medications": [{"name": "[{" * 20_000 + '\\"[', "class": "other"}]}
    assert engine.validate(json.dumps(doc).encode())["medications"][0]["name"].startswith("[{[{")


def test_a_caller_sets_or_lifts_the_limit(engine: Engine) -> None:
    doc = with_medications(60)
    small = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_containers=50))
    for facts in (doc, json.dumps(doc).encode()):
        assert refusal(small, facts) == [("", "containers")]
    big = with_medications(CONTAINER_LIMIT)
    lifted = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_containers=None))
    for facts in (big, json.dumps(big).encode()):
        assert len(lifted.validate(facts)["medications"]) == CONTAINER_LIMIT
    assert engine.validator.is_valid(big) is False and lifted.validator.is_valid(big) is True


def test_of_depth_and_containers_the_limit_crossed_first_is_reported() -> None:
    # 100,000 "[": the depth limit is crossed at the 65th, long before the 10,001st container.
    assert [v.code for v in _violations("[" * 100_000 + "]" * 100_000)] == ["depth"]
    # 10,001 flat containers, then deep nesting: the container limit comes first.
    flat = "[" + "[]," * CONTAINER_LIMIT + "[" * 100 + "]" * 100 + "]"
    assert [v.code for v in _violations(flat)] == ["containers"]


def _violations(text: str) -> list[Any]:
    with pytest.raises(FactsValidationError) as info:
        parse_strict(text.encode())
    return list(info.value.violations)


def test_a_deep_python_document_is_still_a_depth_problem(engine: Engine) -> None:
    deep: list[Any] = []
    for _ in range(20_000):  # 20,000 lists, but only 64 levels of them are within the depth limit
        deep = [deep]
    assert [code for _, code in refusal(engine, {**BASE, "extensions": {"x": deep}})] == ["depth"]


def test_a_member_name_of_5000_digits_is_named_not_a_crash(engine: Engine) -> None:
    name = "9" * 5000  # over Python's 4,300-digit int conversion limit: sorting pointers raised ValueError
    unknown = json.dumps({**BASE, name: 1}).encode()
    assert refusal(engine, unknown) == [(f"/{name}", "additional_property")]
    repeated = b'{"facts_version":"1","patient":{"id":"p1"},"labs":{"%s":1,"%s":2,"1":1,"1":2}}' % (
        name.encode(),
        name.encode(),
    )
    assert [p for p, code in refusal(engine, repeated) if code == "duplicate_key"] == ["/labs/1", f"/labs/{name}"]


def test_the_cli_refuses_over_the_limit_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(with_medications(CONTAINER_LIMIT)))
    done = subprocess.run(
        [*CLI, "validate", "--format", "json", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [(e["pointer"], e["code"]) for e in json.loads(done.stdout)["errors"]] == [("", "containers")]
    text = subprocess.run([*CLI, "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert text.returncode == 2 and "max_containers" in text.stderr and "Traceback" not in text.stderr


def test_fhir_input_is_not_held_to_the_facts_limit() -> None:
    from neurocds.population.partition import FHIR_LIMITS

    bundle = max((DATA / "synthea").glob("*.json"), key=lambda p: p.read_bytes().count(b"{"))
    raw = bundle.read_bytes()
    assert raw.count(b"{") + raw.count(b"[") > CONTAINER_LIMIT  # a real bundle holds more
    assert value_count(raw) > VALUE_LIMIT and FHIR_LIMITS.max_values is None
    assert parse_strict(raw, FHIR_LIMITS)["resourceType"] == "Bundle"
    with pytest.raises(FactsValidationError):
        parse_strict(raw, ParseLimits(max_bytes=FHIR_LIMITS.max_bytes))


def members_text(count: int) -> str:
    return '{"labs":{' + ",".join(f'"k{i}":1' for i in range(count - 1)) + "}}"


def test_at_most_25000_members_and_colons_in_strings_are_not_counted(engine: Engine) -> None:
    assert ParseLimits().max_members == MEMBER_LIMIT
    at_limit = members_text(MEMBER_LIMIT)
    assert len(parse_strict(at_limit)["labs"]) == MEMBER_LIMIT - 1
    over = members_text(MEMBER_LIMIT + 1)
    assert [(v.pointer, v.code) for v in _violations(over)] == [("", "members")]
    assert "25,000 members" in _violations(over)[0].message
    colons = {**BASE, "medications": [{"name": ":" * 100_000 + '\\":', "class": "other"}]}
    assert engine.validate(json.dumps(colons).encode())["medications"][0]["name"].startswith(":::")


def test_the_member_limit_holds_for_a_dict_and_can_be_lifted(engine: Engine) -> None:
    doc = {**BASE, "labs": {f"k{i}": 1 for i in range(MEMBER_LIMIT)}}
    assert refusal(engine, doc) == [("", "members")]
    assert refusal(engine, json.dumps(doc).encode()) == [("", "members")]
    lifted = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_members=None))
    assert ("/labs/k0", "additional_property") in refusal(lifted, doc)
    # Over both limits: containers are reported, as the text's check does first.
    both = {**with_medications(CONTAINER_LIMIT), "labs": doc["labs"]}
    assert refusal(engine, both) == refusal(engine, json.dumps(both).encode()) == [("", "containers")]


def ints(count: int) -> dict[str, Any]:
    """A document of ``count`` + 4 values (facts_version, patient, its id, medications, the items)."""
    return {**BASE, "medications": [1] * count}


def test_at_most_50000_values_text_and_dict_alike(engine: Engine) -> None:
    assert ParseLimits().max_values == VALUE_LIMIT
    at_limit, over = ints(VALUE_LIMIT - 4), ints(VALUE_LIMIT - 3)
    # At the limit the schema judges it (integers are not medications); one more value is the limit's.
    for facts in (at_limit, json.dumps(at_limit), json.dumps(at_limit).encode()):
        assert ("/medications/0", "type") in refusal(engine, facts)
    for facts in (over, json.dumps(over), json.dumps(over, indent=1).encode()):
        assert refusal(engine, facts) == [("", "values")]
    with pytest.raises(FactsValidationError) as info:
        engine.evaluate(json.dumps(over).encode())
    (violation,) = info.value.violations
    assert "50,000 values" in violation.message and "max_values" in violation.message and "\n" not in violation.message
    assert info.value.facts_sha256 is None


def test_a_valid_document_at_a_value_limit_is_accepted_and_refused_one_below() -> None:
    doc = {**with_medications(100), "labs": {}, "extensions": {}}  # 4 + 3 * 100 + 2 values, 2 of them empty
    text = json.dumps(doc, indent=2)
    assert value_count(text.encode()) == 306
    exact = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_values=306))
    below = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_values=305))
    for facts in (doc, text, text.encode()):
        assert len(exact.validate(facts)["medications"]) == 100
        assert refusal(below, facts) == [("", "values")]
    assert exact.validator.is_valid(doc) and not below.validator.is_valid(doc)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("[]", 0),
        ("[ \n\t]", 0),
        ("{ }", 0),
        ('[[ ], { }, ""]', 3),
        ('["a,b,[c]", "{,}"]', 2),
        ('{"k,": [1, "\\"", "\\\\", ","], "": {}}', 6),
        ('[0 , 1.5e3 ,true,null,"x"]', 5),
    ],
)
def test_values_are_items_and_members_outside_strings(text: str, values: int) -> None:
    assert value_count(text.encode()) == values
    parse_strict(text, ParseLimits(max_values=values))
    if values:
        with pytest.raises(FactsValidationError) as info:
            parse_strict(text, ParseLimits(max_values=values - 1))
        assert [(v.pointer, v.code) for v in info.value.violations] == [("", "values")]


def test_commas_inside_strings_are_not_counted(engine: Engine) -> None:
    commas = {**BASE, "medications": [{"name": ",[1]," * 60_000 + '\\",', "class": "other"}]}
    assert engine.validate(json.dumps(commas).encode())["medications"][0]["name"].startswith(",[1],")


def test_the_value_limit_can_be_lifted_and_comes_after_the_others(engine: Engine) -> None:
    big = ints(VALUE_LIMIT * 2)
    lifted = Engine(packs=BUILTIN_PACKS, backend="reference", parse_limits=ParseLimits(max_values=None))
    for facts in (big, json.dumps(big).encode()):
        assert ("/medications/0", "type") in refusal(lifted, facts)
    assert engine.validator.is_valid(big) is False
    # Over the member limit too: members are reported, as the text's check does first.
    both = {**big, "labs": {f"k{i}": 1 for i in range(MEMBER_LIMIT)}}
    assert refusal(engine, both) == refusal(engine, json.dumps(both).encode()) == [("", "members")]


def test_the_cli_refuses_too_many_values_with_exit_2_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(ints(VALUE_LIMIT)))
    done = subprocess.run([*CLI, "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    header, problem = done.stderr.strip().splitlines()  # the count, then one line for the one problem
    assert "1 problem" in header and problem.lstrip().startswith("/: ") and "max_values" in problem
    as_json = subprocess.run(
        [*CLI, "validate", "--format", "json", str(path)], capture_output=True, text=True, timeout=120
    )
    assert as_json.returncode == 2
    assert [(e["pointer"], e["code"]) for e in json.loads(as_json.stdout)["errors"]] == [("", "values")]


def test_a_population_line_with_too_many_values_is_an_error_entry() -> None:
    from neurocds.population import InputRecord, RunSettings, evaluate_partition

    lines = [json.dumps(BASE).encode(), json.dumps(ints(VALUE_LIMIT)).encode(), json.dumps(BASE).encode()]
    settings = RunSettings(now="2026-01-01T00:00:00Z", packs=tuple(BUILTIN_PACKS))
    evaluated = evaluate_partition((InputRecord(f"p:{i}", "facts", line) for i, line in enumerate(lines)), settings)
    assert len(evaluated.lines) == 2
    (entry,) = evaluated.errors
    assert entry["source"] == "p:1" and [(e["pointer"], e["code"]) for e in entry["errors"]] == [("", "values")]
    # Refused by a parse limit, so a parse error, and its text is never read for an id
    # (that would build the document the limit refuses to build).
    assert entry["stage"] == "parse"
