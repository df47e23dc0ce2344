"""Coverage is read from the reference evaluator's node states: each outcome counted where it happened."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

from neurocds import Engine
from neurocds.authoring.coverage import CoverageCollector
from neurocds.authoring.coverage_reports import line_class, line_outcomes, to_cobertura, to_html_pages, to_lcov
from neurocds.testing import inline_pack, rule

LEG = {"fact": "strength.left_leg", "lte": 4}
CANCER = {"fact": "history.cancer", "eq": True}
NOT_ASKED = {"fact": "history.diabetes", "known": False}


def collector(tmp_path: Path) -> CoverageCollector:
    rules = [rule("cv.r", {"all": [LEG, {"any": [CANCER, NOT_ASKED]}]}, finding="cv.f")]
    plugin = inline_pack(tmp_path, "cv", "cv", rules)
    # One leaf per line, so that line-level reports tell the leaves apart.
    path = tmp_path / "cv" / "rules.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=2), encoding="utf-8")
    return CoverageCollector(Engine(packs=["cv"], plugins=[("cv", plugin)]), ["cv"])


def facts(**sections: dict[str, object]) -> dict[str, object]:
    return {"facts_version": "1", "patient": {"id": "p"}, **sections}


def test_outcomes_are_counted_per_rule_leaf_and_decisive_child(tmp_path: Path) -> None:
    cov = collector(tmp_path)
    cov.record_facts(facts(strength={"left_leg": 3}, history={"cancer": True}))  # fires via CANCER
    cov.record_facts(facts(strength={"left_leg": 5}))  # all made false by LEG; the any is never reached
    cov.record_facts(facts(history={"cancer": False}))  # LEG unknown, any true by NOT_ASKED: undecided
    report = cov.to_dict()
    (entry,) = report["rules"]
    assert entry["outcomes"] == {"fired": 1, "false": 1, "undecided": 1}
    leg, cancer, not_asked = entry["conditions"]
    assert leg["outcomes"] == {"true": 1, "false": 1, "unknown": 1}
    assert cancer["outcomes"] == {"true": 1, "false": 1, "unknown": 0}
    # A known-test is never unknown: two outcomes to cover; the one case that reached it saw true.
    assert not_asked["possible"] == ["true", "false"] and not_asked["outcomes"] == {"true": 1, "false": 0}
    all_node, any_node = entry["groups"]
    assert all_node["made_false_by"] == [1, 0] and any_node["made_true_by"] == [1, 1]
    totals = report["totals"]
    assert totals["conditions"] == {"covered": 6, "total": 8, "percent": 75.0}
    assert totals["rule_outcomes"]["percent"] == 100.0 and totals["decisions"]["covered"] == 3


def test_reports_mark_uncovered_and_only_ever_unknown_lines(tmp_path: Path) -> None:
    cov = collector(tmp_path)
    cov.record_facts(facts(history={"cancer": True}))  # LEG only ever unknown, NOT_ASKED never reached
    report = cov.to_dict()
    leg, cancer, not_asked = (c["line"] for c in report["rules"][0]["conditions"])
    lines = line_outcomes(report["rules"])
    classes = {number: line_class(entry) for number, entry in lines.items()}
    assert classes == {leg: "unknown-only", cancer: "partial", not_asked: "uncovered"}
    lcov = to_lcov(report)
    assert "FNDA:0,cv.r" in lcov and f"BRDA:{leg},0,2,1" in lcov  # LEG's unknown branch taken once
    assert f"BRDA:{not_asked},2,0,-" in lcov  # NOT_ASKED never evaluated: its branches are '-'
    assert f"DA:{not_asked},0" in lcov and f"DA:{leg},1" in lcov
    xml = ET.fromstring(to_cobertura(report).split("\n", 1)[1])
    coverage = {line.get("number"): line.get("condition-coverage") for line in xml.iter("line")}
    assert coverage == {str(leg): "33% (1/3)", str(cancer): "33% (1/3)", str(not_asked): "0% (0/2)"}
    pages = to_html_pages(report)
    page = next(text for name, text in pages.items() if name != "index.html")
    assert all(f'class="{css}"' in page for css in ("unknown-only", "partial", "uncovered"))
    assert "condition coverage 25.0% (2/8 outcomes)" in pages["index.html"]
