"""Every lint check has a fixture that triggers it and one that does not; the built-in packs lint clean."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from neurocds.authoring.lint import lint, lint_named
from neurocds.authoring.lint_report import CHECKS, LintReport, to_sarif, to_text
from neurocds.authoring.metadata import installed_packs, select
from neurocds.cli import main
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

LEG = {"fact": "strength.left_leg", "lte": 4}


def metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "format": "neurocds-pack/1",
        "name": name,
        "version": "0.0.1",
        "release_date": "2026-01-01",
        "developer": {"name": "test developer"},
        "funding": ["none"],
        "bibliography": [{"citation": "test citation of the source called test"}],
        **extra,
    }


def lint_pack(tmp_path: Path, rules: list[dict[str, Any]], meta: dict[str, Any] | None = None, **kw: Any) -> LintReport:
    plugin = inline_pack(tmp_path, "lp", "lp", rules, **kw)
    if meta is not False:
        (tmp_path / "lp" / "pack.yaml").write_text(yaml.safe_dump(meta or metadata("lp")), encoding="utf-8")
    installed = installed_packs(plugins=[("lp", plugin)])
    return lint(select(installed, ["lp"]), installed)


def codes(report: LintReport) -> set[str]:
    return {p.code for p in report.active}


def urgent(rule_id: str, when: dict[str, Any], **kw: Any) -> dict[str, Any]:
    body = rule(rule_id, when, **kw)
    body["rationale"] = "a rationale long enough to explain the rule"
    return body


CLEAN = [urgent("lp.ok", {"all": [LEG, {"fact": "labs.vitamin_b12_pmol_l", "lt": 150}]})]
# code -> rules that trigger it (CLEAN triggers none of them).
TRIGGERS: dict[str, list[dict[str, Any]]] = {
    "NCDS000": [{**urgent("lp.bad", LEG), "urgency": "soon"}],
    "NCDS001": [urgent("lp.unknown", {"fact": "strength.left_toe", "lte": 4})],
    "NCDS002": [urgent("lp.dangling", {"all": [LEG, {"derived": "lp.nobody_concludes"}]})],
    "NCDS003": [urgent("lp.range", {"fact": "strength.left_leg", "lte": 7})],
    "NCDS004": [
        urgent("lp.never", {"all": [{"fact": "strength.left_leg", "lt": 2}, {"fact": "strength.left_leg", "gt": 3}]})
    ],
    "NCDS005": [urgent("lp.always", {"fact": "strength.left_leg", "gte": 0})],
    "NCDS006": [*CLEAN, rule("lp.unread", LEG, derive="lp.unread_fact")],
    "NCDS007": [
        urgent("lp.one", LEG, finding="lp.same"),
        urgent("lp.two", {"all": [LEG, {"fact": "history.cancer", "eq": True}]}, finding="lp.same"),
    ],
    "NCDS008": [
        urgent("lp.a", LEG, finding="lp.f"),
        urgent("lp.b", {"fact": "history.cancer", "eq": True}, finding="lp.f", urgency="emergency"),
    ],
    "NCDS009": [{**urgent("lp.thin", LEG), "recommendations": []}],
}


@pytest.mark.parametrize("code", sorted(TRIGGERS))
def test_each_check_triggers_on_its_fixture_and_not_on_the_clean_pack(tmp_path: Path, code: str) -> None:
    assert code in codes(lint_pack(tmp_path / "bad", TRIGGERS[code])), code
    assert code not in codes(lint_pack(tmp_path / "good", CLEAN))


def test_the_clean_fixture_is_clean(tmp_path: Path) -> None:
    report = lint_pack(tmp_path, CLEAN)
    assert report.problems == [] and report.exit_code == 0


def test_contradiction_needs_the_tests_to_exclude_each_other(tmp_path: Path) -> None:
    band = {"all": [{"fact": "strength.left_leg", "gte": 2}, {"fact": "strength.left_leg", "lte": 3}]}
    assert "NCDS004" not in codes(lint_pack(tmp_path / "a", [urgent("lp.band", band)]))
    unrecorded = {"all": [{"fact": "history.cancer", "known": False}, {"fact": "history.cancer", "eq": True}]}
    assert "NCDS004" in codes(lint_pack(tmp_path / "b", [urgent("lp.k", unrecorded)]))


def test_a_stricter_rule_at_a_higher_urgency_is_an_escalation_not_a_duplicate(tmp_path: Path) -> None:
    rules = [
        urgent("lp.one", LEG, finding="lp.same"),
        urgent(
            "lp.two", {"all": [LEG, {"fact": "history.cancer", "eq": True}]}, finding="lp.same", urgency="emergency"
        ),
    ]
    assert "NCDS007" not in codes(lint_pack(tmp_path, rules))


def test_pack_metadata_missing_incomplete_or_disagreeing(tmp_path: Path) -> None:
    assert "NCDS010" in codes(lint_pack(tmp_path / "a", CLEAN, meta=False))
    incomplete = metadata("lp")
    del incomplete["funding"]
    report = lint_pack(tmp_path / "b", CLEAN, meta=incomplete)
    assert any(p.code == "NCDS010" and "funding" in p.message for p in report.problems)
    assert "NCDS010" in codes(lint_pack(tmp_path / "c", CLEAN, meta=metadata("lp", version="9.9.9")))
    uncited = metadata("lp", bibliography=[{"citation": "some other book"}])
    assert "NCDS010" in codes(lint_pack(tmp_path / "d", CLEAN, meta=uncited))


def test_a_reasoned_ignore_silences_one_hit_and_an_unused_one_is_a_note(tmp_path: Path) -> None:
    reason = "the emergency rule names a stronger sign on purpose"
    meta = metadata("lp", lint={"ignore": [{"rule": "NCDS008", "target": "lp.f", "reason": reason}]})
    report = lint_pack(tmp_path / "a", TRIGGERS["NCDS008"], meta=meta)
    assert "NCDS008" not in codes(report) and report.exit_code == 0
    assert [p.ignored_because for p in report.problems if p.code == "NCDS008"] == [reason]
    stale = lint_pack(tmp_path / "b", CLEAN, meta=meta)
    assert codes(stale) == {"NCDS011"} and stale.exit_code == 0


def test_lint_works_on_a_pack_the_engine_refuses_to_load(tmp_path: Path) -> None:
    # An unknown fact path is a load error; lint still reports it with its line, with every other problem.
    report = lint_pack(tmp_path, [*TRIGGERS["NCDS001"], *TRIGGERS["NCDS003"]])
    assert {"NCDS001", "NCDS003"} <= codes(report) and report.exit_code == 2


def test_the_built_in_packs_lint_clean_quickly() -> None:
    # CPU time of this process, not wall time: the bound must hold on a loaded machine too.
    start = time.process_time()
    report = lint_named(list(BUILTIN_PACKS))
    elapsed = time.process_time() - start
    assert report.exit_code == 0, to_text(report)
    assert all(p.ignored_because for p in report.problems)  # every remaining hit has a written reason
    assert elapsed < 1.0, f"linting the built-in packs took {elapsed:.2f} s"


def test_cli_text_json_and_sarif_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = runner.invoke(main, ["pack", "lint", *BUILTIN_PACKS])
    assert clean.exit_code == 0 and "0 errors, 0 warnings" in clean.output
    unknown = runner.invoke(main, ["pack", "lint", "no-such-pack"])
    assert unknown.exit_code == 2 and "not installed: no-such-pack" in unknown.output
    as_json = json.loads(runner.invoke(main, ["pack", "lint", "weakness-pattern", "--format", "json"]).output)
    assert as_json["format"] == "neurocds-lint/1" and as_json["summary"]["error"] == 0
    sarif_run = runner.invoke(main, ["pack", "lint", "neuromuscular", "--format", "sarif"])
    sarif = json.loads(sarif_run.output)
    assert sarif["version"] == "2.1.0"
    driver = sarif["runs"][0]["tool"]["driver"]
    assert [r["id"] for r in driver["rules"]] == list(CHECKS)
    suppressed = [r for r in sarif["runs"][0]["results"] if r.get("suppressions")]
    assert suppressed and suppressed[0]["ruleId"] == "NCDS008"


def test_sarif_of_errors_names_file_line_and_level(tmp_path: Path) -> None:
    report = lint_pack(tmp_path, TRIGGERS["NCDS001"])
    result = json.loads(to_sarif(report))["runs"][0]["results"][0]
    assert result["level"] == "error" and result["ruleId"] == "NCDS001"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("rules.json") and location["region"]["startLine"] >= 1


def _worsened(classes: list[str], **kw: Any) -> dict[str, Any]:
    body = urgent("lp.k", {"fact": "labs.potassium_mmol_l", "lt": 3.0}, **kw)
    body["worsened_by"] = {"medication_classes": classes, "rationale": "this class lowers it further"}
    return body


def test_worsened_by_is_accepted_checked_against_the_facts_schema_and_refused_on_derive_rules(
    tmp_path: Path,
) -> None:
    """``worsened_by`` (the medicine classes that worsen a finding, for draft-order suggestions) lints
    clean with a class the facts schema allows; a misspelt class is an error lint names, and the
    loader refuses it with its pointer; a derive rule cannot carry one (it finds nothing)."""
    from neurocds import Engine
    from neurocds.errors import PackLoadError

    assert lint_pack(tmp_path / "good", [_worsened(["loop_or_thiazide_diuretic"])]).problems == []
    misspelt = lint_pack(tmp_path / "typo", [_worsened(["loop_or_thiazide_diuretik"])])
    assert [(p.code, p.pointer) for p in misspelt.active] == [("NCDS003", "/rules/0/worsened_by/medication_classes")]
    assert misspelt.exit_code == 2
    derive = rule("lp.d", LEG, derive="lp.weak")
    derive["worsened_by"] = {"medication_classes": ["statin"], "rationale": "not a finding rule"}
    assert "NCDS000" in codes(lint_pack(tmp_path / "derive", [derive]))
    plugin = inline_pack(tmp_path / "load", "lp", "lp", [_worsened(["loop_or_thiazide_diuretik"])])
    with pytest.raises(PackLoadError) as refused:
        Engine(plugins=[("lp", plugin)], packs=["lp"], on_pack_error="raise")
    assert refused.value.pointer == "/rules/0/worsened_by/medication_classes/0"
    assert "loop_or_thiazide_diuretik" in str(refused.value)
    loaded = Engine(plugins=[("lp", inline_pack(tmp_path / "ok", "lp", "lp", [_worsened(["statin"])]))], packs=["lp"])
    [worsening] = [r.worsened_by for r in loaded.rules if r.worsened_by is not None]
    assert worsening.classes == ("statin",) and worsening.rationale == "this class lowers it further"
