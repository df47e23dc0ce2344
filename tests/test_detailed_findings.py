"""``RulePack.detailed_findings``: a pack's detail hook is called only for the findings it declares.

An evaluation in which none of them fired hands nothing to a worker thread and freezes
no facts (most evaluations: the built-in packs detail 5 of their findings); the plugin
boundary is unchanged for the calls that are made (budget, read-only facts, failure
isolation, a failed pack named in the result). A declaration must not lose a detail: the
built-in packs' hooks answer ``None`` for every finding they do not declare, on every
document of the answer corpus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from answer_corpus import documents

from neurocds import Engine
from neurocds.errors import FactsValidationError, PackLoadError
from neurocds.facts.readonly import freeze
from neurocds.hookspecs import RulePack, hookimpl
from neurocds.rules import hooks, packhooks
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hypokalaemia.json"
ALWAYS = {"fact": "strength.left_leg", "lte": 5}  # true for the example
NEVER = {"fact": "strength.left_leg", "gte": 4}  # false for the example (grade 3)
PACKS = [*BUILTIN_PACKS, "dd"]


def example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return doc


def detail_pack(tmp_path: Path, calls: list[str], declared: Any, *, fail: bool = False, **rules: Any) -> Engine:
    """An engine with the built-in packs and pack ``dd``, one finding ``dd.<name>`` per ``rules`` entry."""

    def detail(finding_id: str, rule_id: str, facts: Any, derived: Any) -> str:
        calls.append(finding_id)
        if fail:
            raise RuntimeError("detail hook broke")
        return f"detail of {finding_id}"

    made = [rule(f"dd.{name}", when, finding=f"dd.{name}") for name, when in rules.items()]
    plugin = inline_pack(tmp_path, "dd", "dd", made, finding_detail=detail, detailed_findings=declared)
    return Engine(packs=PACKS, plugins=[("dd", plugin)], backend="reference")


def test_the_hook_is_called_only_for_the_declared_findings(tmp_path: Path) -> None:
    calls: list[str] = []
    engine = detail_pack(tmp_path, calls, ["dd.a"], a=ALWAYS, b=ALWAYS)
    result = engine.evaluate(example())
    assert calls == ["dd.a"]
    details = {f["id"]: f["detail"] for f in result.findings if f["id"].startswith("dd.")}
    assert "detail of dd.a" in details["dd.a"] and "detail of" not in details["dd.b"]
    assert result.complete


def test_an_undeclared_pack_is_asked_about_every_finding_it_fires(tmp_path: Path) -> None:
    calls: list[str] = []
    result = detail_pack(tmp_path, calls, None, a=ALWAYS, b=ALWAYS, c=NEVER).evaluate(example())
    assert sorted(calls) == ["dd.a", "dd.b"] and result.complete


def test_no_worker_and_no_frozen_facts_when_no_declared_finding_fired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: list[str] = []
    frozen: list[int] = []
    real_run, real_freeze = hooks.HookRunner.run, packhooks.freeze

    def counted_run(self: Any, pack: str, hook: str, *args: Any) -> Any:
        handed.append(f"{pack}:{hook}")
        return real_run(self, pack, hook, *args)

    def counted_freeze(value: Any) -> Any:
        frozen.append(1)
        return real_freeze(value)

    calls: list[str] = []
    engine = detail_pack(tmp_path, calls, ["dd.c"], a=ALWAYS, c={"fact": "labs.potassium_mmol_l", "lt": 2.5})
    monkeypatch.setattr(hooks.HookRunner, "run", counted_run)
    monkeypatch.setattr(packhooks, "freeze", counted_freeze)
    doc = example()
    doc["labs"]["potassium_mmol_l"] = 4.0
    del doc["medications"]  # no built-in pack's detailed finding fires either (the diuretic's would)
    result = engine.evaluate(doc)
    assert "dd.a" in result.finding_ids and calls == [] and handed == [] and frozen == []
    doc["labs"]["potassium_mmol_l"] = 2.0  # now dd.c fires: one hand-over, facts frozen once
    result = engine.evaluate(doc)
    assert calls == ["dd.c"] and handed.count("dd:neurocds_finding_detail") == 1 and frozen


def test_an_empty_declaration_means_never_called(tmp_path: Path) -> None:
    calls: list[str] = []
    result = detail_pack(tmp_path, calls, (), a=ALWAYS).evaluate(example())
    assert calls == [] and "dd.a" in result.finding_ids and result.complete


def test_a_declared_finding_whose_hook_fails_still_fails_its_pack_alone(tmp_path: Path) -> None:
    calls: list[str] = []
    result = detail_pack(tmp_path, calls, ["dd.a"], fail=True, a=ALWAYS, b=ALWAYS).evaluate(example())
    assert calls == ["dd.a"]
    errors = [e for e in result.errors if e.get("pack") == "dd"]
    assert len(errors) == 1 and errors[0]["rule"] == "dd.a" and errors[0]["kind"] == "action"
    assert "detail hook broke" in errors[0]["message"]
    assert {"dd.a", "dd.b"} <= set(result.finding_ids) and not result.complete
    statuses = {p["name"]: p["status"] for p in result.to_dict()["packs"]}
    assert statuses["dd"] == "failed" and statuses["neuromuscular"] == "ok"


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        (
            ["dd.aa"],
            "RulePack.detailed_findings names 'dd.aa', which none of the pack's rules concludes; did you mean 'dd.a'?",
        ),
        # Another pack's finding: the hook is only ever called for its own pack's rules.
        (["neuromuscular.drug_induced_consider"], "names 'neuromuscular.drug_induced_consider'"),
    ],
)
def test_a_declared_id_no_rule_of_the_pack_concludes_is_a_load_error(
    tmp_path: Path, declared: list[str], words: str
) -> None:
    with pytest.raises(PackLoadError, match="detailed_findings") as caught:
        detail_pack(tmp_path, [], declared, a=ALWAYS)
    assert words in str(caught.value) and caught.value.pack == "dd"


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        ("dd.a", "RulePack.detailed_findings of 'dd' must be a list of finding ids or None"),
        ({"dd.a": 1}, "must be a list of finding ids or None"),
        ([7], "RulePack.detailed_findings entry must be a string"),
    ],
)
def test_a_declaration_that_is_not_a_list_of_ids_fails_the_registration(
    tmp_path: Path, declared: Any, words: str
) -> None:
    record = RulePack(name="dd", version="1.0.0", rule_files=[], detailed_findings=declared)
    plugin = type("Plugin", (), {"neurocds_register_packs": staticmethod(hookimpl(lambda: [record]))})
    engine = Engine(packs=BUILTIN_PACKS, plugins=[("dd", plugin)], on_pack_error="skip", backend="reference")
    failed = [p for p in engine.failed_packs if p.name == "dd"]
    assert len(failed) == 1 and words in (failed[0].error or "")


def test_the_built_in_packs_declare_every_finding_their_hooks_detail() -> None:
    """Calling each built-in hook for every fired finding it did not declare answers None, on every
    corpus document: the declaration drops no detail (the answer corpus pins the rest)."""
    import neurocds_packs.cerebrovascular as cerebrovascular
    import neurocds_packs.neuromuscular as neuromuscular
    import neurocds_packs.spinal_compression as spinal_compression

    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    hooks_of = {m.PACK: m.neurocds_finding_detail for m in (cerebrovascular, neuromuscular, spinal_compression)}
    declared = {p.name: p.record.detailed_findings for p in engine.packs if p.name in hooks_of}
    assert all(declared[name] for name in hooks_of), "each built-in detail hook declares what it details"
    asked = 0
    for _, facts in documents():
        try:
            doc = engine.validate(facts)
        except FactsValidationError:
            continue
        run, _ = engine.reference.run(doc, {}, None, frozenset())
        view, derived = freeze(doc), freeze(dict(run.derived))
        for index in run.fired:
            rule_ = engine.rules[index]
            detail = hooks_of.get(rule_.pack)
            if detail is None or rule_.kind != "finding" or rule_.key in (declared[rule_.pack] or ()):
                continue
            asked += 1
            assert detail(rule_.key, rule_.id, view, derived) is None, (rule_.id, facts)
    assert asked > 500  # the corpus fires plenty of undeclared findings of these packs
