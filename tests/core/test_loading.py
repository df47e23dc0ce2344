"""Pack discovery, registration, ordering and load errors."""

from __future__ import annotations

import json

import pytest

from neurocds import Engine, PackLoadError
from neurocds.rules.compiler import CompileError
from neurocds.testing import inline_pack, rule

LEG = {"fact": "strength.left_leg", "lte": 4}


def make(tmp_path, name, ns, rules, **kw):
    return (name, inline_pack(tmp_path, name, ns, rules, **kw))


def test_builtin_foundation_pack_loads_through_entry_points():
    engine = Engine(packs=["weakness-pattern"])
    (info,) = engine.pack_infos()
    assert info["name"] == "weakness-pattern" and info["status"] == "ok"
    assert len(info["sha256"]) == 64
    assert engine.packs[0].source.startswith("entry point weakness-pattern")


def test_allowlist_env_selects_packs(monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROCDS_PACKS", "weakness-pattern")
    engine = Engine()  # unpinned: the allowlist under test comes from NEUROCDS_PACKS
    assert [p["name"] for p in engine.pack_infos()] == ["weakness-pattern"]


def test_allowlisted_pack_that_is_not_installed_is_an_error():
    with pytest.raises(PackLoadError, match="not installed: no-such-pack"):
        Engine(packs=["weakness-pattern", "no-such-pack"])


def test_duplicate_pack_names_name_both_sources(tmp_path):
    a = make(tmp_path / "a", "alpha", "alpha", [rule("alpha.x", LEG)])
    b = ("alpha-again", inline_pack(tmp_path / "b", "alpha", "alpha", [rule("alpha.y", LEG)]))
    with pytest.raises(PackLoadError) as info:
        Engine(plugins=[a, b], entry_points=False)
    assert "plugin object alpha" in str(info.value) and "plugin object alpha-again" in str(info.value)


def test_duplicate_rule_ids_name_both_files(tmp_path):
    a = make(tmp_path, "alpha", "shared", [rule("shared.x", LEG)])
    b = make(tmp_path, "beta", "shared", [rule("shared.x", LEG)])
    with pytest.raises(PackLoadError, match="already owned by pack 'alpha'"):
        Engine(plugins=[a, b], entry_points=False)
    c = make(tmp_path, "gamma", "gamma", [rule("gamma.x", LEG), rule("gamma.x", LEG, finding="gamma.y")])
    with pytest.raises(PackLoadError) as info:
        Engine(plugins=[c], entry_points=False)
    assert "duplicate rule id 'gamma.x'" in str(info.value)
    assert str(info.value).count("rules.json") >= 2


def test_dependencies_decide_order_and_missing_dependency_is_clear(tmp_path):
    base = make(tmp_path, "zeta-base", "zb", [rule("zb.d", LEG, derive="zb.weak")])
    user = make(tmp_path, "alpha-user", "au", [rule("au.f", {"derived": "zb.weak"})], depends_on=["zeta-base"])
    engine = Engine(plugins=[user, base], entry_points=False)
    assert [p.name for p in engine.packs] == ["zeta-base", "alpha-user"]
    result = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 3}})
    assert result.finding_ids == ["au.f"]
    with pytest.raises(PackLoadError, match="depends on 'zeta-base', which is not loaded"):
        Engine(plugins=[user], entry_points=False)


def test_dependency_cycle_is_an_error(tmp_path):
    a = make(tmp_path, "aa", "aa", [rule("aa.x", LEG)], depends_on=["bb"])
    b = make(tmp_path, "bb", "bb", [rule("bb.x", LEG)], depends_on=["aa"])
    with pytest.raises(PackLoadError, match="cycle"):
        Engine(plugins=[a, b], entry_points=False)


def test_bad_rule_file_error_names_file_and_pointer(tmp_path):
    bad = rule("bad.x", {"fact": "labs.potassium_mmol_l", "lt": "three"})
    with pytest.raises(PackLoadError) as info:
        Engine(plugins=[make(tmp_path, "bad", "bad", [bad])], entry_points=False)
    assert info.value.pointer is not None and info.value.pointer.startswith("/rules/0")
    assert info.value.file.endswith("rules.json")
    typed = rule("bad.y", {"fact": "labs.potassium_mmol_l", "eq": "3"})
    with pytest.raises(PackLoadError, match="cannot be compared"):
        Engine(plugins=[make(tmp_path, "bad2", "bad", [typed])], entry_points=False)
    unknown = rule("bad.z", {"fact": "labs.unobtainium", "gt": 1})
    with pytest.raises(PackLoadError, match=r"unknown fact 'labs\.unobtainium'"):
        Engine(plugins=[make(tmp_path, "bad3", "bad", [unknown])], entry_points=False)


def test_namespace_is_enforced(tmp_path):
    with pytest.raises(PackLoadError, match="outside the pack namespace"):
        Engine(plugins=[make(tmp_path, "ns", "ns", [rule("other.x", LEG)])], entry_points=False)


def test_negated_reference_is_refused(tmp_path):
    rules = [rule("nr.d", LEG, derive="nr.weak"), rule("nr.f", {"not": {"derived": "nr.weak"}})]
    with pytest.raises(CompileError, match="negated reference"):
        Engine(plugins=[make(tmp_path, "nr", "nr", rules)], entry_points=False)


def test_rule_cycle_is_refused(tmp_path):
    rules = [rule("cy.a", {"derived": "cy.b"}, derive="cy.a"), rule("cy.b", {"derived": "cy.a"}, derive="cy.b")]
    with pytest.raises(PackLoadError, match="cycle"):
        Engine(plugins=[make(tmp_path, "cy", "cy", rules)], entry_points=False)


def test_skip_mode_reports_failed_pack_and_dependents_in_every_result(tmp_path):
    good = make(tmp_path, "good", "good", [rule("good.f", LEG)])
    bad = make(tmp_path, "bad", "bad", [rule("bad.f", {"fact": "labs.nope", "gt": 1})])
    dependent = make(tmp_path, "dep", "dep", [rule("dep.f", LEG)], depends_on=["bad"])
    engine = Engine(plugins=[good, bad, dependent], entry_points=False, on_pack_error="skip")
    result = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 2}})
    assert result.finding_ids == ["good.f"]
    assert not result.complete
    status = {p["name"]: p["status"] for p in result.to_dict()["packs"]}
    assert status == {"good": "ok", "bad": "failed", "dep": "failed"}


def test_extension_schema_is_validated_and_usable_by_rules(tmp_path):
    schema = {"type": "object", "additionalProperties": False, "properties": {"score": {"type": "integer"}}}
    plugin = make(
        tmp_path, "ext", "ext", [rule("ext.f", {"fact": "extensions.ext.score", "gte": 3})], facts_schema=schema
    )
    engine = Engine(plugins=[plugin], entry_points=False)
    ok = engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "extensions": {"ext": {"score": 4}}})
    assert ok.finding_ids == ["ext.f"]
    from neurocds import FactsValidationError

    with pytest.raises(FactsValidationError) as info:
        engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "extensions": {"ext": {"score": "x"}}})
    assert info.value.violations[0].pointer == "/extensions/ext/score"


def test_one_plugin_manager_per_engine(tmp_path):
    a = Engine(plugins=[make(tmp_path, "one", "one", [rule("one.f", LEG)])], entry_points=False)
    b = Engine(packs=["weakness-pattern"])
    assert a.pm is not b.pm
    assert a.pm.get_plugin("weakness-pattern") is None and b.pm.get_plugin("one") is None


def test_pack_content_hash_changes_with_rule_content(tmp_path):
    first = Engine(plugins=[make(tmp_path / "1", "h", "h", [rule("h.f", LEG)])], entry_points=False)
    second = Engine(
        plugins=[make(tmp_path / "2", "h", "h", [rule("h.f", {"fact": "strength.left_leg", "lte": 3})])],
        entry_points=False,
    )
    assert first.pack_infos()[0]["sha256"] != second.pack_infos()[0]["sha256"]
    json.dumps(first.pack_infos())


def test_duplicate_keys_in_a_yaml_rule_file_are_an_error(tmp_path):
    from neurocds.rules.ruleset import read_rule_file

    path = tmp_path / "dup.yaml"
    path.write_text("format: neurocds-ruleset/1\npack: dup\nnamespace: dup\nnamespace: other\nrules: []\n")
    with pytest.raises(PackLoadError, match="duplicate key 'namespace'"):
        read_rule_file(path, "dup")


def test_loading_pauses_the_cyclic_collector_and_resumes_it_as_it_was(tmp_path):
    import gc

    from neurocds.hookspecs import hookimpl

    seen = []
    plugin = inline_pack(tmp_path, "gcwatch", "gcwatch", [rule("gcwatch.x", LEG)])
    registered = plugin.neurocds_register_packs
    plugin.neurocds_register_packs = hookimpl(lambda: seen.append(gc.isenabled()) or registered())
    assert gc.isenabled()
    Engine(plugins=[("gcwatch", plugin)], entry_points=False)
    assert seen == [False] and gc.isenabled()  # paused while loading (it is process-wide), then resumed
    with pytest.raises(PackLoadError):
        Engine(plugins=[make(tmp_path / "bad", "bad", "bad", [rule("other.x", LEG)])], entry_points=False)
    assert gc.isenabled()  # resumed after a failed load too
    gc.disable()
    try:
        Engine(plugins=[make(tmp_path / "b", "gcw", "gcw", [rule("gcw.x", LEG)])], entry_points=False)
        assert not gc.isenabled()  # a caller that paused it keeps it paused
    finally:
        gc.enable()
