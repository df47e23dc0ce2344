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


def test_detail_says_value_or_not_recorded() -> None:
    [card] = build_cards(_result([_finding("p.u", "urgent")]), label_of=label_of)
    assert "- Thing B: 3 (rule test:" in card["detail"]
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


def test_missing_data_card_lists_most_urgent_first() -> None:
    missing = [
        {"pointer": "/a/c", "label": None, "urgency": "routine", "rules": ["r1"], "findings": ["f1"]},
        {"pointer": "/x", "label": "X fact", "urgency": "emergency", "rules": ["r2"], "findings": ["f2", "f3"]},
    ]
    [card] = build_cards(_result([], missing_data=missing), label_of=label_of)
    assert card["indicator"] == "info"
    assert card["summary"] == "Not recorded: X fact; Thing C"
    assert card["detail"].index("X fact") < card["detail"].index("Thing C")


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
