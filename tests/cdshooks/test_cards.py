"""Card rendering from result documents (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from neurocds.cdshooks.cards import build_cards, md, truncate
from neurocds_packs import BUILTIN_PACKS

from .spec import assert_card


def _finding(fid: str, urgency: str, title: str = "A finding title", **extra: Any) -> dict[str, Any]:
    return {
        "id": fid,
        "pack": "p",
        "rule": fid,
        "rules": [fid],
        "urgency": urgency,
        "title": title,
        "detail": "Detail.",
        "recommendations": ["Do this."],
        "because": [
            {"pointer": "/a/b", "recorded": True, "value": 3, "test": "a.b ≥ 2"},
            {"pointer": "/a/c", "recorded": False, "test": "a.c is not recorded"},
        ],
        "unknown": [],
        "evidence": [{"source": "src", "citation": "cit"}],
        **extra,
    }


def _result(findings: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "findings": findings,
        "missing_data": [],
        "packs": [{"name": "p", "version": "1.2.3", "status": "ok"}],
        "errors": [],
        "complete": True,
        "disclaimer": "Decision support only.",
        **extra,
    }


LABELS = {"/a/b": "Thing B. Tri-state: more words", "/a/c": "Thing C (unit); absent = unknown", "/x": "X fact"}


def label_of(pointer: str) -> str | None:
    return LABELS.get(pointer)


def test_indicator_order_and_source() -> None:
    urgencies = [("p.i", "info"), ("p.r", "routine"), ("p.e", "emergency"), ("p.u", "urgent")]
    cards = build_cards(_result([_finding(fid, u) for fid, u in urgencies]), label_of=label_of)
    assert [c["source"]["topic"]["code"] for c in cards] == ["p.e", "p.u", "p.r", "p.i"]
    assert [c["indicator"] for c in cards] == ["critical", "warning", "info", "info"]
    for card in cards:
        assert_card(card)
        assert card["source"]["label"] == "neurocds p 1.2.3"


def test_detail_says_value_or_not_recorded_in_words_without_rule_syntax() -> None:
    [card] = build_cards(_result([_finding("p.u", "urgent")]), label_of=label_of)
    assert "- Thing B: 3\n" in card["detail"]
    assert "rule test" not in card["detail"] and "a.b" not in card["detail"]
    assert "- Thing C \\(unit\\): **not recorded**" in card["detail"]
    assert "Do this\\." in card["detail"] and "src: cit" in card["detail"]
    assert card["detail"].rstrip().endswith("_Decision support only\\._")


@pytest.mark.parametrize("length", [139, 140, 141, 500])
def test_long_titles_are_cut_below_140(length: int) -> None:
    title = ("word " * 200)[:length]
    [card] = build_cards(_result([_finding("p.u", "urgent", title=title)]), label_of=label_of)
    assert len(card["summary"]) < 140
    if len(title.strip()) >= 140:
        assert card["summary"].endswith("…")


def test_truncate_keeps_short_text_and_cuts_unbroken_text() -> None:
    assert truncate("short") == "short"
    cut = truncate("x" * 300)
    assert len(cut) == 139 and cut.endswith("…")


def test_markdown_is_neutralised() -> None:
    text = md("# <script>alert(1)</script> [x](http://evil.invalid) *b* www.evil.invalid\n- item")
    assert "<script>" not in text and "](" not in text and "\n" not in text
    assert "www.evil" not in text  # no bare autolink
    assert not text.startswith("#")


def test_incomplete_result_always_has_a_warning_card() -> None:
    result = _result(
        [],
        complete=False,
        packs=[{"name": "p", "version": "1", "status": "failed"}],
        errors=[{"pack": "p", "stage": "compute_facts", "message": "secret detail"}],
    )
    cards = build_cards(result, label_of=label_of)
    assert [c["source"]["topic"]["code"] for c in cards] == ["incomplete"]
    assert cards[0]["indicator"] == "warning"
    assert "secret detail" not in cards[0]["detail"]


def test_complete_result_with_nothing_to_say_has_no_cards() -> None:
    assert build_cards(_result([]), label_of=label_of) == []


def _waiting(rule: str, urgency: str, unknown: list[str], met: int, state: str = "unknown") -> dict[str, Any]:
    return {"rule": rule, "title": f"Title of {rule}", "urgency": urgency, "state": state,
            "unknown_facts": unknown, "conditions_met": met, "conditions_total": met + 1,
            "concludes": {"finding": rule}}  # fmt: skip


MISSING = [
    {"pointer": "/a/c", "label": None, "urgency": "urgent", "rules": ["r1"], "findings": ["f1"]},
    {"pointer": "/x", "label": "X fact", "urgency": "emergency", "rules": ["r2"], "findings": ["f2", "f3"]},
]


def test_missing_data_card_names_the_facts_that_would_decide_partly_met_urgent_rules() -> None:
    trace = {"not_fired": [_waiting("r1", "urgent", ["/a/c"], 1), _waiting("r2", "emergency", ["/x"], 2)]}
    [card] = build_cards(_result([], missing_data=MISSING, trace=trace), label_of=label_of)
    assert card["indicator"] == "info"
    assert card["summary"] == "Not recorded: X fact; Thing C"
    assert card["detail"].index("X fact") < card["detail"].index("Thing C")
    assert "would decide emergency advice (Title of r2)" in card["detail"]


@pytest.mark.parametrize(
    "rule",
    [
        _waiting("r1", "urgent", ["/a/c"], 0),  # nothing met: every chart would list it
        _waiting("r1", "routine", ["/a/c"], 1),  # partly met, but not emergency or urgent
        _waiting("r1", "emergency", ["/a/c"], 1, state="false"),  # already decided
    ],
)
def test_no_missing_data_card_when_no_urgent_rule_waits_on_the_facts(rule: dict[str, Any]) -> None:
    result = _result([], missing_data=MISSING, trace={"not_fired": [rule]})
    assert build_cards(result, label_of=label_of, data_notes=["a stale lab was not used"]) == []


def test_notes_alone_give_a_notice_card() -> None:
    [card] = build_cards(_result([]), label_of=label_of, notes=["prefetch 'conditions' was not sent"])
    assert "conditions" in card["detail"]
    assert_card(card)


def test_a_derived_reason_is_named_and_shows_the_recorded_facts_behind_it():
    """A card says 'Leg weakness (Left leg strength (MRC grade): 4; ...)', not a rule-pack identifier."""
    import json
    from pathlib import Path

    from neurocds import Engine

    engine = Engine(packs=BUILTIN_PACKS)
    example = Path(__file__).parents[2] / "examples" / "cauda-equina.json"
    result = engine.evaluate(json.loads(example.read_text(encoding="utf-8"))).to_dict()
    card = next(c for c in build_cards(result, label_of=engine.label_of) if c["indicator"] == "critical")
    assert_card(card)
    why = card["detail"].split("**Why this was raised**")[1].split("**")[0]
    assert "- Leg weakness \\(Left leg strength \\(MRC grade\\): 4; Right leg strength \\(MRC grade\\): 3\\)" in why
    assert "pattern" not in why and "Urinary retention: yes" in why


def test_with_the_built_in_packs_an_ordinary_chart_gets_no_missing_data_card() -> None:
    """Only a partly met urgent rule with recorded support asks for facts (issue 15, item 5)."""
    from neurocds import Engine
    from neurocds.cdshooks.evaluation import _recorded_facts_by_rule, facts_read_by_rules

    engine = Engine(packs=BUILTIN_PACKS)
    read = facts_read_by_rules(engine.rules)

    def cards_for(facts: dict[str, Any]) -> list[dict[str, Any]]:
        result = engine.evaluate(facts).to_dict()
        return build_cards(result, label_of=engine.label_of, rule_facts=_recorded_facts_by_rule(read, facts))

    ordinary = {"facts_version": "1", "patient": {"id": "p", "age_years": 58, "sex": "female"},
                "labs": {"glucose_mmol_l": 4.6, "sodium_mmol_l": 140}}  # fmt: skip
    assert [c for c in cards_for(ordinary) if c["source"]["topic"]["code"] == "missing-data"] == []
    # A weak left leg makes stroke rules partly met: now the facts that would decide them are asked for.
    weak = {**ordinary, "strength": {"left_leg": 2}}
    [card] = [c for c in cards_for(weak) if c["source"]["topic"]["code"] == "missing-data"]
    assert "would decide emergency advice" in card["detail"]
    assert "Left leg strength" not in card["detail"]  # recorded, so never asked for


def test_a_draft_is_offered_for_removal_on_the_most_urgent_card_that_names_it() -> None:
    """Three fired rules whose ``worsened_by`` match one draft: the urgent card offers its removal
    although the engine listed a routine one first; of two equally urgent cards, the engine's first."""
    from neurocds.cdshooks.orders import FactSources
    from neurocds.rules.ruleset import WorsenedBy

    sources = FactSources(
        drafts={"/medications/0": ["MedicationRequest/d1"]},
        draft_names={"/medications/0": "Drug one"},
        draft_classes={"/medications/0": "some_class"},
    )
    worse = WorsenedBy(classes=("some_class",), rationale="it makes this worse")
    findings = [
        _finding("p.routine", "routine", title="Routine one"),
        _finding("p.urgent_a", "urgent", title="Urgent A"),
        _finding("p.urgent_b", "urgent", title="Urgent B"),
    ]
    worsened_by = {f["id"]: worse for f in findings}
    for order in (findings, [findings[0], findings[2], findings[1]]):
        cards = build_cards(_result(order), label_of=label_of, sources=sources, worsened_by=worsened_by)
        by_id = {c["source"]["topic"]["code"]: c for c in cards}
        offering = order[1]["id"]  # the first urgent finding in the engine's order
        assert [code for code, c in by_id.items() if c.get("suggestions")] == [offering]
        for code, card in by_id.items():
            assert "it makes this worse" in card["detail"]
            if code != offering:
                assert "suggestions" not in card
                assert f"offered on the card “{by_id[offering]['summary']}”" in card["detail"].replace("\\", "")
