"""Load-time boundary: what a pack brings is checked before any facts are seen, and a pack
that cannot load is reported while the others run (``on_pack_error``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine, PackLoadError
from neurocds.hookspecs import RulePack, hookimpl
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

from .hostile import EMERGENCY, emergency_doc, hostile_plugins

ALWAYS = {"fact": "strength.left_leg", "lte": 5}


def load_error(tmp_path: Path, rules: list[dict[str, Any]], **kw: Any) -> PackLoadError:
    plugin = inline_pack(tmp_path, "typo", "typo", rules, **kw)
    with pytest.raises(PackLoadError) as info:
        Engine(plugins=[("typo", plugin)])  # unpinned: a run vs the same run without it
    return info.value


def test_a_typod_derived_reference_is_a_load_error_with_a_suggestion(tmp_path: Path) -> None:
    err = load_error(tmp_path, [rule("typo.t", {"all": [ALWAYS, {"derived": "pattern.umn_sign"}]})])
    assert err.pack == "typo" and err.file is not None and err.file.endswith("rules.json")
    assert err.pointer == "/rules/0/when/all/1"
    assert "did you mean 'pattern.umn_signs'?" in str(err)


def test_a_finding_reference_no_loaded_pack_concludes_is_a_load_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, [rule("typo.t", {"finding": "spinal.cord_compresion_suspected"})])
    assert err.pointer == "/rules/0/when" and "did you mean 'spinal.cord_compression_suspected'?" in str(err)
    own = load_error(tmp_path / "own", [rule("typo.a", ALWAYS), rule("typo.b", {"finding": "typo.c"})])
    assert "finding 'typo.c'" in str(own) and own.pointer == "/rules/1/when"


def test_a_derived_value_no_rule_concludes_is_a_load_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, [rule("typo.t", {"derived": "pattern.hemiparesis", "eq": "middle"})])
    assert "with value 'middle' (only 'left', 'right')" in str(err)


def test_references_to_rules_later_in_the_same_pack_and_to_computed_facts_load(tmp_path: Path) -> None:
    later = [rule("typo.f", {"derived": "typo.d"}), rule("typo.d", ALWAYS, derive="typo.d")]
    Engine(plugins=[("typo", inline_pack(tmp_path, "typo", "typo", later))])  # unpinned: a run vs the same run without it
    computed = [rule("typo.f", {"derived": "typo.from_python"})]
    Engine(plugins=[("typo", inline_pack(tmp_path / "c", "typo", "typo", computed, compute=lambda facts: None))])  # unpinned: a run vs the same run without it


@pytest.mark.parametrize(
    ("test", "words"),
    [
        ({"fact": "strength.left_leg", "lte": 9}, "is above the range (the facts schema allows >= 0 and <= 5)"),
        ({"fact": "strength.left_leg", "gte": -1}, "is below the range"),
        ({"fact": "strength.left_leg", "lt": 0}, "never true"),
        ({"fact": "strength.left_leg", "in": [1, 6]}, "threshold in 6"),
    ],
)
def test_a_threshold_outside_the_schema_range_is_a_load_error(tmp_path: Path, test: Any, words: str) -> None:
    err = load_error(tmp_path, [rule("typo.t", test)])
    assert words in str(err) and err.pointer == "/rules/0/when"


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "string", "pattern": "^(a+)+$", "maxLength": 20}, "a quantifier inside a quantified group"),
        ({"type": "string", "pattern": "^(a|aa)*$", "maxLength": 20}, "an alternation inside a quantifier"),
        ({"type": "string", "pattern": "^(a)\\1$", "maxLength": 20}, "backreferences"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "needs maxLength of at most 10000"),
        ({"type": "string", "pattern": "a*a*b", "maxLength": 5000}, "needs maxLength of at most 464"),
    ],
)
def test_a_pack_regex_that_could_run_away_is_refused_at_load(tmp_path: Path, schema: Any, words: str) -> None:
    facts_schema = {"type": "object", "properties": {"code": schema}}
    err = load_error(tmp_path, [rule("typo.t", ALWAYS)], facts_schema=facts_schema)
    assert words in str(err) and err.pack == "typo" and err.pointer == "/properties/code/pattern"


def test_a_bounded_pack_regex_validates_a_worst_case_string_quickly(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "a*a*b", "maxLength": 464}}}
    engine = Engine(  # unpinned: a run vs the same run without it
        plugins=[("typo", inline_pack(tmp_path, "typo", "typo", [rule("typo.t", ALWAYS)], facts_schema=schema))]
    )
    doc = {"facts_version": "1", "patient": {"id": "p"}, "extensions": {"typo": {"code": "a" * 464}}}
    started = time.monotonic()
    assert engine.validator.violations(doc)  # no match: refused, and quickly
    assert time.monotonic() - started < 5  # generous: the unbounded pattern took minutes


def test_a_rule_cycle_is_blamed_on_the_pack_that_brings_it(tmp_path: Path) -> None:
    with pytest.raises(PackLoadError) as info:
        Engine(plugins=hostile_plugins("rule-cycle", tmp_path))  # unpinned: a run vs the same run without it
    assert info.value.pack == "hostile" and "cycle" in str(info.value)


def test_a_dependency_cycle_is_blamed_on_the_pack_that_closes_it(tmp_path: Path) -> None:
    engine = Engine(plugins=hostile_plugins("dependency-cycle", tmp_path), on_pack_error="skip")  # unpinned: a run vs the same run without it
    failed = {p.name: p for p in engine.failed_packs}
    assert "pack dependency cycle: hostile -> hostile-b -> hostile" in (failed["hostile-b"].error or "")
    assert failed["hostile"].failure_kind == "pack_skipped"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("dict-from-register", "must return a list of RulePack records, got dict"),
        ("five-from-register", "got int"),
        ("raise-in-register", "raised RuntimeError: cannot register"),
        ("exit-in-register", "raised SystemExit"),
    ],
)
def test_skip_mode_reports_a_register_hook_that_fails(tmp_path: Path, kind: str, words: str) -> None:
    engine = Engine(plugins=hostile_plugins(kind, tmp_path), on_pack_error="skip")  # unpinned: a run vs the same run without it
    (failed,) = engine.failed_packs
    assert failed.name == "hostile" and words in (failed.error or "")
    assert engine.pm.get_plugin("hostile") is None  # none of its other hooks will ever run
    result = engine.evaluate(emergency_doc())
    assert not result.complete and EMERGENCY in result.finding_ids
    assert {"pack": "hostile", "kind": "pack_load"}.items() <= result.errors[0].items()
    with pytest.raises(PackLoadError, match=words.split(":")[0]):
        Engine(plugins=hostile_plugins(kind, tmp_path))  # asked for by name: an error  # unpinned: a run vs the same run without it


def test_a_register_hook_may_return_a_tuple(tmp_path: Path) -> None:
    record = RulePack("tup", "1.0.0", [])
    plugin = type("P", (), {"neurocds_register_packs": staticmethod(hookimpl(lambda: (record,)))})
    assert [p.name for p in Engine(plugins=[("tup", plugin)], entry_points=False).packs] == ["tup"]


def test_unknown_pack_error_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="on_pack_error"):
        Engine(packs=BUILTIN_PACKS, on_pack_error="ignore")


def test_a_compute_hook_registered_under_another_name_still_licenses_its_computed_facts(tmp_path: Path) -> None:
    # pluggy lets a plugin implement a hook under any name (specname=); the loader asks
    # pluggy, as the evaluation does, rather than looking for the attribute by name.
    from neurocds.hookspecs import hookimpl

    computed = [rule("typo.f", {"derived": "typo.from_python"})]
    plugin = inline_pack(tmp_path, "typo", "typo", computed)
    plugin.compute_under_another_name = hookimpl(specname="neurocds_compute_facts")(lambda facts: None)
    engine = Engine(plugins=[("typo", plugin)], entry_points=False, on_pack_error="raise")
    assert [p.name for p in engine.packs] == ["typo"]


def test_a_rulepack_subclass_that_answers_differently_later_is_refused(tmp_path: Path) -> None:
    # Its name passes the check as "shifty" and reads "weakness-pattern" afterwards, on the
    # caller's thread: it could take another pack's name. Only exact RulePack records count.
    class Shifty(RulePack):
        reads = 0

        @property  # type: ignore[misc]  # overriding a dataclass field with a property is the attack
        def name(self) -> str:
            Shifty.reads += 1
            return "shifty" if Shifty.reads == 1 else "weakness-pattern"

    record = Shifty.__new__(Shifty)
    object.__setattr__(record, "version", "1.0.0")
    for field, value in (("rule_files", []), ("depends_on", ()), ("facts_schema", None), ("description", "")):
        object.__setattr__(record, field, value)
    plugin = type("P", (), {"neurocds_register_packs": staticmethod(hookimpl(lambda: [record]))})
    engine = Engine(packs=[*BUILTIN_PACKS], plugins=[("shifty", plugin)], on_pack_error="skip")
    (failed,) = engine.failed_packs
    assert failed.name == "shifty" and "got Shifty" in (failed.error or "")
    assert "weakness-pattern" in {p.name for p in engine.packs}
    assert EMERGENCY in engine.evaluate(emergency_doc()).finding_ids


def test_a_register_hook_answer_is_copied_to_plain_data(tmp_path: Path) -> None:
    from types import MappingProxyType

    schema = MappingProxyType({"type": "object", "properties": MappingProxyType({"x": {"type": "integer"}})})
    record = RulePack("plain", "1.0.0", [], depends_on=["weakness-pattern"], facts_schema=schema)
    plugin = type("P", (), {"neurocds_register_packs": staticmethod(hookimpl(lambda: [record]))})
    engine = Engine(packs=[*BUILTIN_PACKS, "plain"], plugins=[("plain", plugin)])
    (loaded,) = [p for p in engine.packs if p.name == "plain"]
    assert type(loaded.record.depends_on) is tuple and type(loaded.record.facts_schema) is dict
    assert loaded.record.facts_schema == {"type": "object", "properties": {"x": {"type": "integer"}}}
