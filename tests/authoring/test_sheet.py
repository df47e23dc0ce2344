"""The DSI source-attribute sheet: 'use of' answers computed from what rules read, pinned by a golden file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from neurocds import Engine
from neurocds.authoring.cases import Case, check_case
from neurocds.authoring.lint import lint
from neurocds.authoring.metadata import installed_packs, select
from neurocds.authoring.sheet import ATTRIBUTES, build_sheet, to_html, to_markdown
from neurocds.cli import main
from neurocds.hookspecs import ComputedFacts
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

GOLDEN = Path(__file__).parent / "golden" / "dsi-attributes.json"
LEG = {"fact": "strength.left_leg", "lte": 4}


def attribute_use(sheet: dict[str, Any]) -> dict[str, Any]:
    """Only what the golden pins: which fields carry attributes, and every pack or finding that uses one."""
    used: dict[str, Any] = {}
    for pack in sheet["packs"]:
        for owner, attributes in [(pack["pack"], pack["attributes"])] + [
            (f"{pack['pack']}/{f['id']}", f["attributes"]) for f in pack["findings"]
        ]:
            fields = {k: [f["path"] for f in v["fields"]] for k, v in attributes.items() if v["used"]}
            if fields:
                used[owner] = fields
    return {"attribute_fields": sheet["attribute_fields"], "used": used}


def test_built_in_sheet_matches_the_golden_file() -> None:
    # Fails when a built-in rule starts reading a demographic field (directly or through a derived fact):
    # the sheet a deployer shows users would change, so the change must be seen and the golden regenerated
    # (NEUROCDS_UPDATE_GOLDEN=1 pytest tests/authoring/test_sheet.py).
    installed = installed_packs()
    actual = attribute_use(build_sheet(installed, list(BUILTIN_PACKS)))
    if os.environ.get("NEUROCDS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(actual, indent=2) + "\n", encoding="utf-8")
    assert actual == json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert actual["attribute_fields"] == {"patient.age_years": ["date_of_birth"], "patient.sex": ["sex"]}


def _meta(name: str, **extra: Any) -> str:
    doc = {
        "format": "neurocds-pack/1",
        "name": name,
        "version": "0.0.1",
        "release_date": "2026-01-01",
        "revision_date": "2026-02-01",
        "developer": {"name": "Example Clinic", "contact": "dev@example.invalid"},
        "funding": ["Example Foundation grant 42"],
        "bibliography": [{"citation": "test citation, Example Journal 2025"}],
        **extra,
    }
    return yaml.safe_dump(doc)


def test_use_of_an_attribute_is_followed_through_derived_facts_and_compute_hooks(tmp_path: Path) -> None:
    # Pack "base" derives base.female from patient.sex; pack "user" reads only that derived fact and a
    # computed fact whose compute hook declares it reads patient.age_years.
    base = inline_pack(
        tmp_path, "base", "base", [rule("base.female", {"fact": "patient.sex", "eq": "female"}, derive="base.female")]
    )
    (tmp_path / "base" / "pack.yaml").write_text(_meta("base"), encoding="utf-8")

    def compute(facts: Any) -> ComputedFacts | None:
        age = facts.get("patient", {}).get("age_years")
        return (
            None
            if age is None
            else ComputedFacts("user", {"user.older": age >= 65}, {"user.older": ["/patient/age_years"]})
        )

    user_rules = [
        rule("user.a", {"all": [LEG, {"derived": "base.female"}]}, finding="user.female_weak"),
        rule("user.b", {"all": [LEG, {"derived": "user.older"}]}, finding="user.older_weak"),
        rule("user.c", LEG, finding="user.plain"),
    ]
    user = inline_pack(tmp_path, "user", "user", user_rules, depends_on=["base"], compute=compute)
    (tmp_path / "user" / "pack.yaml").write_text(
        _meta("user", computed_facts={"user.older": {"reads": ["patient.age_years"]}}), encoding="utf-8"
    )
    installed = installed_packs(plugins=[("base", base), ("user", user)])
    sheet = build_sheet(installed, ["user"])
    (pack,) = sheet["packs"]
    by_id = {f["id"]: f["attributes"] for f in pack["findings"]}
    assert by_id["user.female_weak"]["sex"]["used"] is True
    assert by_id["user.female_weak"]["sex"]["fields"][0]["how"] == [
        "rule user.a: derived base.female → rule base.female"
    ]
    assert by_id["user.older_weak"]["date_of_birth"]["used"] is True
    assert "compute hook of user" in by_id["user.older_weak"]["date_of_birth"]["fields"][0]["how"][0]
    assert not any(v["used"] for v in by_id["user.plain"].values())
    assert [k for k, v in pack["attributes"].items() if v["used"]] == ["sex", "date_of_birth"]
    assert pack["funding"] == ["Example Foundation grant 42"] and pack["revision_date"] == "2026-02-01"
    text = to_markdown(sheet)
    assert "| Use of sex | Yes: patient.sex" in text and "| Funding source | Example Foundation grant 42 |" in text
    assert [label for _, label in ATTRIBUTES][:3] == ["Race", "Ethnicity", "Language"]
    assert "id='user.older_weak'" in to_html(sheet, only_finding="user.older_weak")
    # The declaration is enforced where it can be: lint wants one, and a case fails when the hook reads more.
    (tmp_path / "user" / "pack.yaml").write_text(_meta("user"), encoding="utf-8")
    assert "NCDS012" in {p.code for p in lint(select(installed, ["user"]), installed).problems}
    engine = Engine(packs=["base", "user"], plugins=[("base", base), ("user", user)])
    facts = {"facts_version": "1", "patient": {"id": "p", "age_years": 70}, "strength": {"left_leg": 3}}
    case = Case("older", "inline", "", facts, {"expect_present": ["user.older_weak"]})
    known = {"user.female_weak", "user.older_weak", "user.plain"}
    assert check_case(case, engine, known, {"user.older": ["patient.age_years"]}).passed
    outcome = check_case(case, engine, known, {"user.older": ["patient.sex"]})
    assert not outcome.passed and "/patient/age_years" in outcome.report()


def test_cli_sheet_formats() -> None:
    runner = CliRunner()
    md = runner.invoke(main, ["dsi", "sheet", "--pack", "spinal-compression"])
    assert md.exit_code == 0 and "## Pack spinal-compression" in md.output and "| Use of sex | No |" in md.output
    doc = json.loads(runner.invoke(main, ["dsi", "sheet", "--pack", "weakness-pattern", "--format", "json"]).output)
    assert doc["format"] == "neurocds-dsi-sheet/1" and doc["packs"][0]["developer"]["name"]
    html = runner.invoke(main, ["dsi", "sheet", "--format", "html", "--pack", "cerebrovascular"])
    assert html.output.startswith("<!doctype html>")
    assert runner.invoke(main, ["dsi", "sheet", "--pack", "nope"]).exit_code == 2


def test_the_sheet_and_the_evidence_page_show_which_medicines_worsen_a_finding() -> None:
    """``worsened_by`` is pack content a reviewer must see: the sheet (JSON, Markdown, HTML) and the
    CDS Hooks evidence page list the classes and the rationale behind the draft-order suggestion."""
    from neurocds.cdshooks.evidence import evidence_page

    installed = installed_packs()
    sheet = build_sheet(select(installed, list(BUILTIN_PACKS)), ["neuromuscular"])
    [pack] = sheet["packs"]
    findings = {f["id"]: f for f in pack["findings"]}
    electrolytes = findings["neuromuscular.electrolyte_imbalance"]
    worsening = {w["rule"]: w["medication_classes"] for w in electrolytes["worsened_by"]}
    assert worsening["neuromuscular.electrolyte.potassium_low"] == ["loop_or_thiazide_diuretic"]
    assert "ace_inhibitor_or_arb" in worsening["neuromuscular.electrolyte.potassium_high_severe"]
    assert findings["neuromuscular.drug_induced_consider"]["worsened_by"] == []
    assert "Worsened by loop_or_thiazide_diuretic (rule neuromuscular.electrolyte.potassium_low" in to_markdown(sheet)
    assert "Worsened by loop_or_thiazide_diuretic" in to_html(sheet, "neuromuscular.electrolyte_imbalance")
    engine = Engine(packs=BUILTIN_PACKS)
    page = evidence_page(engine.rules, {}, "neuromuscular.electrolyte_imbalance", "decision support")
    assert page is not None and "Worsened by" in page and "lose potassium" in page
