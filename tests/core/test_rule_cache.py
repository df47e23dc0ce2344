"""The per-user cache of checked rule files: hits only on proven bytes, never trusts a bad entry."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine, PackLoadError
from neurocds.rules.cache import KINDS, LoadCache, default_cache_dir
from neurocds.rules.compiler import CompileError, compile_rules
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crossed-stroke.json"
LEG = {"fact": "strength.left_leg", "lte": 4}


# Answers are compared across engines: a budget no busy machine overruns keeps them comparable.
SLACK = {"hook_budget": 10.0}


def answer(engine: Engine) -> dict:
    out = engine.evaluate(EXAMPLE.read_bytes()).to_dict()
    for volatile in ("evaluation_id", "evaluated_at"):
        out.pop(volatile)
    return out


def entries(folder: Path, kind: str = "rule-files") -> list[Path]:
    return sorted((folder / kind).glob("*.json"))


def test_second_engine_reads_every_rule_file_from_the_cache_and_answers_the_same(tmp_path):
    cold = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    files = sum(len(p.rule_files) for p in cold.packs)
    # Every rule file, the composed facts schema's meta-schema check, each pack's compile check
    # and the compiled ruleset of them all.
    checks = files + 1 + len(BUILTIN_PACKS) + 1
    assert (cold.load_cache.hits, cold.load_cache.misses) == (0, checks)
    assert len(entries(tmp_path)) == files and len(entries(tmp_path, "schemas")) == 1
    assert len(entries(tmp_path, "compile-checks")) == len(BUILTIN_PACKS)
    assert len(entries(tmp_path, "compiled")) == 1
    warm = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert (warm.load_cache.hits, warm.load_cache.misses) == (checks, 0)
    uncached = Engine(packs=BUILTIN_PACKS, cache=False, **SLACK)
    assert answer(warm) == answer(cold) == answer(uncached)
    assert warm.pack_infos() == uncached.pack_infos()


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "not json at all",
        lambda text: "",
        lambda text: json.dumps({**json.loads(text), "format": "neurocds-cache/0"}),  # another format
        lambda text: json.dumps({**json.loads(text), "document": ["a", "list"]}),
        lambda text: json.dumps([1, 2, 3]),
    ],
    ids=["truncated", "garbage", "empty", "other-format", "not-an-object", "not-an-entry"],
)
def test_a_damaged_entry_is_ignored_and_rebuilt(tmp_path, damage):
    Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    for kind in KINDS:
        for entry in entries(tmp_path, kind):
            entry.write_text(damage(entry.read_text()))
    rebuilt = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert rebuilt.load_cache.hits == 0
    assert answer(rebuilt) == answer(Engine(packs=BUILTIN_PACKS, cache=False, **SLACK))
    again = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)  # the rebuilt entries are whole again
    assert again.load_cache.misses == 0


def test_a_foreign_entry_under_another_key_is_not_trusted(tmp_path):
    rules_a = [rule("alpha.weak", LEG)]
    rules_b = [rule("alpha.weak", {"fact": "strength.left_leg", "lte": 2})]
    Engine(
        plugins=[("alpha", inline_pack(tmp_path / "a", "alpha", "alpha", rules_a))],
        entry_points=False,
        cache=tmp_path / "c",
    )
    (entry_a,) = entries(tmp_path / "c")
    pack_b = inline_pack(tmp_path / "b", "alpha", "alpha", rules_b)
    (file_b,) = pack_b.neurocds_register_packs()[0].rule_files
    key_b = LoadCache.key(
        (Path(__file__).resolve().parents[2] / "schemas" / "ruleset.schema.json").read_bytes(),
        Path(file_b).suffix.encode(),
        Path(file_b).read_bytes(),
    )
    # Pack a's document planted under pack b's key: the key inside names a, so it is refused.
    (entry_a.parent / f"{key_b}.json").write_bytes(entry_a.read_bytes())
    engine = Engine(plugins=[("alpha", pack_b)], entry_points=False, cache=tmp_path / "c")
    assert engine.load_cache.hits == 1  # the composed facts schema's mark only, not the rule file nor its compile
    doc = {"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 3}}
    assert engine.evaluate(doc).finding_ids == []  # b's threshold (lte 2), not a's (lte 4)


def test_a_changed_rule_file_misses_and_is_validated_again(tmp_path):
    pack = inline_pack(tmp_path / "p", "alpha", "alpha", [rule("alpha.weak", LEG)])
    Engine(plugins=[("alpha", pack)], entry_points=False, cache=tmp_path / "c")
    (path,) = pack.neurocds_register_packs()[0].rule_files
    doc = json.loads(Path(path).read_text())
    doc["rules"][0]["urgency"] = "someday"  # not an urgency the ruleset schema allows
    Path(path).write_text(json.dumps(doc))
    with pytest.raises(PackLoadError, match=r"does not match ruleset\.schema\.json") as info:
        Engine(plugins=[("alpha", pack)], entry_points=False, cache=tmp_path / "c")
    assert info.value.pointer == "/rules/0/urgency"


def test_the_cache_can_be_turned_off_and_placed(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROCDS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "neurocds"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per XDG: ignored
    assert default_cache_dir() == Path.home() / ".cache" / "neurocds"
    monkeypatch.setenv("NEUROCDS_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    Engine(packs=BUILTIN_PACKS)
    assert entries(tmp_path / "mine")
    for word in ("0", "off", "No", "false"):
        monkeypatch.setenv("NEUROCDS_CACHE", word)
        assert default_cache_dir() is None
    monkeypatch.setenv("NEUROCDS_CACHE_DIR", str(tmp_path / "unused"))
    engine = Engine(packs=BUILTIN_PACKS)
    assert engine.load_cache.hits == 0 and not (tmp_path / "unused").exists()
    monkeypatch.delenv("NEUROCDS_CACHE")
    Engine(packs=BUILTIN_PACKS, cache=False, **SLACK)
    assert not (tmp_path / "unused").exists()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_folder_others_may_write_to_is_not_used(tmp_path):
    Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    for kind in KINDS:
        (tmp_path / kind).chmod(0o777)
    engine = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert engine.load_cache.hits == 0
    assert answer(engine) == answer(Engine(packs=BUILTIN_PACKS, cache=False, **SLACK))


def test_the_folder_is_private_and_entries_are_plain_json(tmp_path):
    Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    kinds = ("rule-files", "schemas", "compile-checks")
    for kind in kinds:
        assert (tmp_path / kind).stat().st_mode & 0o777 == 0o700
    for entry in [e for kind in kinds for e in entries(tmp_path, kind)]:
        stored = json.loads(entry.read_text())
        assert set(stored) == {"format", "key", "document"} and entry.stem == stored["key"]
    assert not list((tmp_path / "rule-files").glob(".tmp-*"))  # no half-written file left behind


def test_the_schema_mark_is_per_composed_schema(tmp_path):
    """The meta-schema check is skipped only for the exact composed schema that passed it."""
    when = {"fact": "strength.left_leg", "lte": 4}

    def engine(schema):
        plugin = inline_pack(tmp_path / "p", "ext", "ext", [rule("ext.weak", when)], facts_schema=schema)
        return Engine(plugins=[("ext", plugin)], entry_points=False, cache=tmp_path / "c")

    engine({"type": "object", "properties": {"score": {"type": "integer"}}})
    again = engine({"type": "object", "properties": {"score": {"type": "integer"}}})
    # Its rule file, schema, compile check and compiled ruleset.
    assert (again.load_cache.hits, again.load_cache.misses) == (4, 0)
    other = engine({"type": "object", "properties": {"score": {"type": "number"}}})
    assert (other.load_cache.hits, other.load_cache.misses) == (1, 3)  # the rule file only
    assert len(entries(tmp_path / "c", "schemas")) == 2


def test_a_pack_that_does_not_compile_is_never_marked_and_still_blamed(tmp_path):
    rules = [rule("nr.d", LEG, derive="nr.weak"), rule("nr.f", {"not": {"derived": "nr.weak"}})]
    for _ in range(2):
        with pytest.raises(CompileError, match="negated reference") as info:
            Engine(plugins=[("nr", inline_pack(tmp_path / "p", "nr", "nr", rules))], entry_points=False, cache=tmp_path)
        assert info.value.pack == "nr"
    assert not entries(tmp_path, "compile-checks")


def test_a_changed_checker_misses_every_entry(tmp_path, monkeypatch):
    """The key covers the checking code, so an edited checkout never reuses another code's verdict."""
    from neurocds.rules import cache

    Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    monkeypatch.setattr(cache, "_code_fingerprint", lambda: b"other code")
    engine = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert engine.load_cache.hits == 0


def test_each_rule_file_is_read_once_and_the_pack_hash_is_of_the_bytes_that_loaded(tmp_path, monkeypatch):
    """A file changed between two reads must not pair one content's rules with another's hash
    (the hash keys the compile check: a verdict for other content would be reused)."""
    from neurocds.rules.packs import content_hash
    from neurocds.rules.ruleset import RuleFile

    plugin = inline_pack(tmp_path / "p", "rr", "rr", [rule("rr.first", LEG)])
    (path,) = plugin.neurocds_register_packs()[0].rule_files
    first = path.read_bytes()
    second = first.replace(b"rr.first", b"rr.other")
    reads: list[Path] = []
    real_read = Path.read_bytes

    def changing_read(self: Path) -> bytes:
        if self != path:
            return real_read(self)
        reads.append(self)
        return first if len(reads) == 1 else second  # edited right after the first read

    monkeypatch.setattr(Path, "read_bytes", changing_read)
    for cache in (tmp_path / "cache", tmp_path / "cache", False):  # cold, warm and without a cache
        reads.clear()
        engine = Engine(packs=[*BUILTIN_PACKS, "rr"], plugins=[("rr", plugin)], cache=cache, **SLACK)
        assert len(reads) == 1
        (pack,) = [p for p in engine.packs if p.name == "rr"]
        assert [r.id for r in engine.rules if r.pack == "rr"] == ["rr.first"]
        assert pack.sha256 == content_hash(pack, [RuleFile(path, {}, first)])


def test_read_rule_file_returns_the_bytes_it_parsed(tmp_path):
    from neurocds.rules.ruleset import read_rule_file

    plugin = inline_pack(tmp_path, "rd", "rd", [rule("rd.x", LEG)])
    (path,) = plugin.neurocds_register_packs()[0].rule_files
    for cache in (LoadCache(tmp_path / "cache"), LoadCache(tmp_path / "cache"), None):  # cold, warm, none
        read = read_rule_file(path, "rd", cache)
        assert read.data == path.read_bytes() and read.doc["rules"][0]["id"] == "rd.x"


def test_the_key_covers_the_versions_of_the_parsing_and_checking_libraries(tmp_path):
    """An upgraded PyYAML or jsonschema may give another verdict: it must miss, not reuse."""
    import subprocess
    import sys
    from importlib import metadata

    from neurocds.rules.cache import CHECKING_LIBRARIES, library_versions

    found = dict(line.split(" ", 1) for line in library_versions().decode().splitlines())
    assert found == {dist: metadata.version(dist) for _, dist in CHECKING_LIBRARIES}

    def key_with(version: str) -> str:
        """``LoadCache.key`` in a process where another jsonschema, of ``version``, comes first."""
        site = tmp_path / version
        (site / "jsonschema").mkdir(parents=True, exist_ok=True)
        (site / "jsonschema" / "__init__.py").write_text("raise ImportError('never imported for a key')\n")
        (site / f"jsonschema-{version}.dist-info").mkdir(exist_ok=True)
        code = "from neurocds.rules.cache import LoadCache; print(LoadCache.key(b'part'))"
        env = {**os.environ, "PYTHONPATH": str(site)}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout

    assert key_with("4.0.0") != key_with("5.0.0")
    assert key_with("4.0.0") == key_with("4.0.0")


def test_a_library_upgrade_misses_every_entry(tmp_path, monkeypatch):
    from neurocds.rules import cache

    Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    monkeypatch.setattr(cache, "library_versions", lambda: b"PyYAML 99.0\njsonschema 99.0")
    engine = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert engine.load_cache.hits == 0


CYCLE = [
    rule("cy.a", {"all": [LEG, {"derived": "cy.b"}]}, derive="cy.a"),
    rule("cy.b", {"all": [LEG, {"derived": "cy.a"}]}, derive="cy.b"),
]


def test_a_rule_cycle_is_never_marked_and_still_blamed(tmp_path):
    """The compile-check mark also stands for the rule-order check: a cycle must never earn it."""
    for _ in range(2):
        with pytest.raises(PackLoadError, match="cycle") as info:
            Engine(plugins=[("cy", inline_pack(tmp_path / "p", "cy", "cy", CYCLE))], entry_points=False, cache=tmp_path)
        assert info.value.pack == "cy"
    assert not entries(tmp_path, "compile-checks")


def test_a_rule_file_edited_into_a_cycle_is_checked_again_despite_the_warm_cache(tmp_path):
    fine = [rule("cy.a", LEG, derive="cy.a"), CYCLE[1]]
    plugin = inline_pack(tmp_path / "p", "cy", "cy", fine)
    for _ in range(2):
        engine = Engine(plugins=[("cy", plugin)], entry_points=False, cache=tmp_path / "c")
    assert engine.load_cache.misses == 0 and len(entries(tmp_path / "c", "compile-checks")) == 1
    edited = inline_pack(tmp_path / "p", "cy", "cy", CYCLE)  # the same file, now with a cycle
    with pytest.raises(PackLoadError, match="cycle"):
        Engine(plugins=[("cy", edited)], entry_points=False, cache=tmp_path / "c")


def compiled_parts(compiled: Any) -> dict[str, Any]:
    names = ("definition", "rule_of", "referenced", "input_paths", "derived_kinds", "json")
    return {name: getattr(compiled, name) for name in names}


def test_the_compiled_ruleset_from_the_cache_is_the_one_a_compile_gives(tmp_path):
    cold = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    warm = Engine(packs=BUILTIN_PACKS, cache=tmp_path, **SLACK)
    assert len(entries(tmp_path, "compiled")) == 1 and warm.load_cache.misses == 0
    fresh = compile_rules(warm.rules, durable_caps=False)
    assert compiled_parts(warm.compiled) == compiled_parts(fresh) == compiled_parts(cold.compiled)
    assert warm.compiled.rules is warm.rules
    assert answer(warm) == answer(Engine(packs=BUILTIN_PACKS, cache=False, **SLACK))


def test_an_edited_rule_file_is_compiled_again_despite_the_warm_cache(tmp_path):
    def engine(threshold: int) -> Engine:
        when = {"fact": "strength.left_leg", "lte": threshold}
        plugin = inline_pack(tmp_path / "p", "ed", "ed", [rule("ed.weak", when)])
        return Engine(plugins=[("ed", plugin)], entry_points=False, cache=tmp_path / "c")

    first = engine(4)
    edited = engine(3)  # the same file, another threshold
    assert edited.compiled.definition != first.compiled.definition
    assert compiled_parts(edited.compiled) == compiled_parts(compile_rules(edited.rules, durable_caps=False))
    assert len(entries(tmp_path / "c", "compiled")) == 2
