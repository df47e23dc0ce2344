"""Replay: recorded decisions are reproduced exactly; differing packs are refused or compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result

from neurocds.audit import AuditLog, ReplayRefused, read_records
from neurocds.replay import replay_decision

engine_module = pytest.importorskip("neurocds.engine")  # skip only when the engine is absent
testing = pytest.importorskip("neurocds.testing")
Engine = engine_module.Engine

BASE = {"facts_version": "1", "patient": {"id": "replay-patient"}}
FACTS = [
    {**BASE, "strength": {"left_leg": 3}, "labs": {"potassium_mmol_l": 2.9}},
    {**BASE, "strength": {"left_leg": 3}, "symptoms": {"urinary_retention": True}},
    {**BASE, "strength": {"left_leg": 5, "right_leg": 5}},
    BASE,
]


def _rules(version: int) -> list[dict[str, Any]]:
    rule = testing.rule
    retention = {"fact": "symptoms.urinary_retention", "eq": True}
    rules = [
        rule(
            "t.emergency",
            {"all": [{"derived": "pattern.leg_weakness"}, retention]},
            finding="t.bladder",
            urgency="emergency",
        ),
        rule("t.urgent", {"derived": "pattern.leg_weakness"}, finding="t.bladder", urgency="urgent"),
        rule("t.lowk", {"fact": "labs.potassium_mmol_l", "lt": 3.0}, finding="t.low_k", urgency="urgent"),
    ]
    if version == 2:  # a later pack version: low potassium becomes routine, a new finding appears
        rules[2] = rule("t.lowk", {"fact": "labs.potassium_mmol_l", "lt": 3.0}, finding="t.low_k", urgency="routine")
        rules.append(rule("t.weak", {"derived": "pattern.leg_weakness"}, finding="t.weak", urgency="info"))
    return rules


def _factory(tmp: Path, version: int) -> Any:
    plugin = testing.inline_pack(tmp / f"v{version}", "tpack", "t", _rules(version), version=f"0.0.{version}",
                                 depends_on=["weakness-pattern"])  # fmt: skip

    def build(packs: list[str], info: dict[str, Any], audit_dir: Path | None = None) -> Any:
        return Engine(plugins=[("tpack", plugin)], packs=packs, backend=info.get("backend"),
                      verify=bool(info.get("verified", False)), audit_dir=audit_dir)  # fmt: skip

    return build


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("replay")
    d = tmp / "log"
    engine = _factory(tmp, 1)(["weakness-pattern", "tpack"], {"backend": None, "verified": True}, audit_dir=d)
    for facts in FACTS:
        engine.evaluate(facts)
    return tmp, d


def test_every_recorded_decision_replays_exactly(recorded: tuple[Path, Path]) -> None:
    tmp, d = recorded
    records = [r for r in read_records(d) if r["type"] == "decision"]
    assert len(records) == len(FACTS)
    assert any(r["decision"]["findings"] for r in records)
    for record in records:
        outcome = replay_decision(record, engine_factory=_factory(tmp, 1))
        assert outcome.identical, (record["sequence"], outcome.differing_fields)
        assert outcome.pack_differences == [] and outcome.added == outcome.removed == []


def test_changed_pack_is_refused_unless_compared(recorded: tuple[Path, Path]) -> None:
    tmp, d = recorded
    first = read_records(d)[0]
    with pytest.raises(ReplayRefused, match="installed packs differ") as info:
        replay_decision(first, engine_factory=_factory(tmp, 2))
    assert "tpack: recorded 0.0.1" in str(info.value)
    outcome = replay_decision(first, compare=True, engine_factory=_factory(tmp, 2))
    assert not outcome.identical
    assert [d["name"] for d in outcome.pack_differences] == ["tpack"]
    assert outcome.urgency_changed == [{"id": "t.low_k", "recorded": "urgent", "current": "routine"}]
    assert outcome.added == [{"id": "t.weak", "urgency": "info"}]
    assert outcome.removed == []
    assert "findings" in outcome.differing_fields


def test_removed_findings_are_reported(recorded: tuple[Path, Path]) -> None:
    tmp, d = recorded
    first = read_records(d)[0]
    doctored = {**first, "decision": {**first["decision"]}}
    doctored["decision"]["findings"] = [*first["decision"]["findings"], {"id": "t.gone", "urgency": "urgent"}]
    outcome = replay_decision(doctored, engine_factory=_factory(tmp, 1))
    assert outcome.removed == [{"id": "t.gone", "urgency": "urgent"}]
    assert not outcome.identical


def test_default_engine_replays_a_builtin_pack_decision(tmp_path: Path) -> None:
    d = tmp_path / "log"
    Engine(packs=["weakness-pattern"], audit_dir=d).evaluate({**BASE, "strength": {"left_leg": 2}})
    outcome = replay_decision(read_records(d)[0])  # neurocds.Engine, imported lazily
    assert outcome.identical, outcome.differing_fields


def test_redacted_and_non_decision_records_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, redact=True, pseudonym_key=b"k" * 16)
    log.record_decision(make_result(), make_facts())
    log.record_cards("x", [])
    redacted, cards = read_records(d)
    with pytest.raises(ReplayRefused, match="redacted"):
        replay_decision(redacted)
    with pytest.raises(ReplayRefused, match="only decision"):
        replay_decision(cards)


def test_missing_pack_is_a_clear_refusal(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d).record_decision(make_result(packs=[{"name": "no-such-pack", "version": "1", "sha256": "00" * 32}]),
                                make_facts())  # fmt: skip
    with pytest.raises(ReplayRefused, match="cannot be loaded"):
        replay_decision(read_records(d)[0])


def _without_tpack(extra: list[tuple[str, Any]]) -> Any:
    """tpack uninstalled: only the built-in packs (and ``extra`` plugins) are there."""

    def build(packs: list[str], info: dict[str, Any]) -> Any:
        return Engine(plugins=list(extra), packs=packs, backend=info.get("backend"),
                      verify=bool(info.get("verified", False)))  # fmt: skip

    return build


def test_compare_replays_without_an_uninstalled_pack(tmp_path: Path) -> None:
    rule = testing.rule
    tpack = testing.inline_pack(tmp_path / "t", "tpack", "t", _rules(1), depends_on=["weakness-pattern"])
    tdep = testing.inline_pack(tmp_path / "d", "tdep", "tdep", [rule("tdep.r", {"finding": "t.low_k"},
                               finding="tdep.follow", urgency="info")], depends_on=["tpack"])  # fmt: skip
    d = tmp_path / "log"
    Engine(plugins=[("tpack", tpack), ("tdep", tdep)], packs=["weakness-pattern", "tpack", "tdep"],
           audit_dir=d).evaluate(FACTS[0])  # fmt: skip
    record = read_records(d)[0]
    assert {f["id"] for f in record["decision"]["findings"]} >= {"t.low_k", "tdep.follow"}
    factory = _without_tpack([("tdep", tdep)])
    with pytest.raises(ReplayRefused, match=r"not installed: tpack.*use --compare"):
        replay_decision(record, engine_factory=factory)
    outcome = replay_decision(record, compare=True, engine_factory=factory)
    # tpack is gone, and tdep, which needs it, cannot load either: both are left out, said so.
    assert outcome.not_installed == ["tpack", "tdep"] and not outcome.identical
    assert {p["name"]: p["installed"] for p in outcome.pack_differences} == {"tdep": None, "tpack": None}
    assert {f["id"] for f in outcome.removed} >= {"t.low_k", "tdep.follow"} and outcome.added == []


def test_compare_text_names_both_content_hashes_and_the_left_out_pack(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from neurocds.cli import main

    d = tmp_path / "log"
    _factory(tmp_path, 1)(["weakness-pattern", "tpack"], {"backend": None, "verified": True}, audit_dir=d).evaluate(
        FACTS[0]
    )
    record = read_records(d)[0]
    recorded = next(p["sha256"] for p in record["decision"]["packs"] if p["name"] == "tpack")
    out = CliRunner().invoke(main, ["audit", "replay", "1", "--compare", "--audit-dir", str(d)])
    assert out.exit_code == 1  # the findings differ
    assert f"pack tpack: recorded 0.0.1 (sha256 {recorded[:12]}), not installed now" in out.stdout
    assert "pack tpack was left out of the replay" in out.stdout and "- removed finding t.low_k" in out.stdout
    # A pack installed in another version: both versions and both content hashes are shown.
    from neurocds.replay import format_replay

    now = Engine(packs=["weakness-pattern"]).pack_infos()[0]
    builtin = next(p for p in record["decision"]["packs"] if p["name"] == "weakness-pattern")
    older = {**builtin, "version": "0.0.0", "sha256": "ab" * 32}
    changed = {**record, "decision": {**record["decision"], "packs": [older]}}
    text = format_replay(replay_decision(changed, compare=True))
    assert (f"pack weakness-pattern: recorded 0.0.0 (sha256 abababababab), installed {now['version']} "
            f"(sha256 {now['sha256'][:12]})") in text  # fmt: skip


def test_an_incomplete_decision_replays_as_the_same_incomplete_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default factory keeps a pack that fails to load as failed, as it was recorded."""
    import functools

    import neurocds.engine

    broken = testing.inline_pack(tmp_path, "broken", "broken",
                                 [testing.rule("broken.r", {"fact": "labs.no_such_lab", "gt": 1})])  # fmt: skip
    d = tmp_path / "log"
    Engine(plugins=[("broken", broken)], packs=["weakness-pattern", "broken"], on_pack_error="skip",
           audit_dir=d).evaluate(FACTS[0])  # fmt: skip
    record = read_records(d)[0]
    assert [e["kind"] for e in record["decision"]["errors"]] == ["pack_load"]
    monkeypatch.setattr(neurocds.engine, "Engine", functools.partial(Engine, plugins=[("broken", broken)]))
    outcome = replay_decision(record)
    assert outcome.identical, outcome.differing_fields
