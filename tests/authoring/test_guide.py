"""docs/pack-authoring.md is generated from the code it documents, and stays so."""

from __future__ import annotations

from pathlib import Path

from neurocds import hookspecs
from neurocds.authoring.cases import EXPECTATIONS
from neurocds.authoring.guide import guide_markdown
from neurocds.authoring.lint import facts_index
from neurocds.authoring.lint_report import CHECKS
from neurocds.authoring.metadata import installed_packs, select
from neurocds.rules.conditions import FACT_OPS
from neurocds_packs import BUILTIN_PACKS

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "pack-authoring.md"


def test_the_guide_is_what_the_code_generates() -> None:
    expected = guide_markdown(BUILTIN_PACKS)
    assert GUIDE.read_text(encoding="utf-8") == expected, (
        "docs/pack-authoring.md is stale: regenerate it with "
        "`neurocds pack guide " + " ".join(f"--pack {p}" for p in BUILTIN_PACKS) + " > docs/pack-authoring.md`"
    )


def test_the_guide_names_every_field_derived_fact_operator_case_key_check_and_hook() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    packs = select(installed_packs(), BUILTIN_PACKS)
    leaves = facts_index(packs).leaves
    missing = [p for p, s in leaves.items() if "properties" not in s and f"`{p}`" not in text]
    assert not missing, f"facts fields the guide does not list: {missing}"
    derived = {"pattern.leg_weakness", "pattern.hemiparesis", "pattern.umn_signs"}
    assert all(f"`{d}`" in text for d in derived)
    assert all(f"| `{op}`" in text for op in FACT_OPS)
    assert all(f"`{key}`" in text for key in EXPECTATIONS)
    assert all(f"| {code} |" in text for code in CHECKS)
    assert all(f"### `{hook}(" in text for hook in hookspecs.HOOK_NAMES)
    assert "`derive` " in text or "| `derive` |" in text
