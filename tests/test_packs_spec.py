"""The loaded rule packs implement the contract (packs-v2 over packs-v1): every finding id, in its pack, at its urgency.

The markdown tables of the spec are parsed (packs_spec.py), so the test follows the spec
rather than a copy of it. For the findings whose urgency is "emergency if ...,
else urgent" both urgencies must exist among the finding's rules; otherwise every
rule concluding the finding must carry the spec's urgency (the finding is shown
at the highest urgency that fired, so one stray rule would change it).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from packs_spec import current_spec, parse_spec, parse_v2, parse_v2_added

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS


@pytest.fixture(scope="module")
def spec() -> dict[str, dict[str, set[str] | None]]:
    return current_spec()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS)


def test_parser_reads_both_urgency_forms() -> None:
    sample = (
        "## neuromuscular\n\n| finding | urgency | minimum trigger |\n|---|---|---|\n"
        "| `neuromuscular.a` | emergency if K < 2.5, else urgent | x |\n| `neuromuscular.b` | routine | y |\n"
        "## weakness-pattern\n| `pattern.hemiparesis` (side) | z |\n"
    )
    assert parse_spec(sample) == {
        "neuromuscular": {"neuromuscular.a": {"emergency", "urgent"}, "neuromuscular.b": {"routine"}},
        "weakness-pattern": {"pattern.hemiparesis": None},
    }


def test_v2_parser_lays_the_added_table_over_v1() -> None:
    v1 = "## weakness-pattern\n| `pattern.a` | x |\n## neuromuscular\n| `neuromuscular.b` | routine | y |\n"
    v2 = (
        "# Clinical rule packs, version 2\n\n## Added\n\n"
        "| finding | pack | urgency | minimum trigger |\n|---|---|---|---|\n"
        "| `neuromuscular.c` | neuromuscular | emergency; urgent when slow | z |\n"
        "| `pattern.d` | weakness-pattern | info | w |\n\n## Evidence\n| `pattern.e` | weakness-pattern | info | no |\n"
    )
    assert parse_v2_added(v2) == {
        "neuromuscular": {"neuromuscular.c": {"emergency", "urgent"}},
        "weakness-pattern": {"pattern.d": {"info"}},
    }
    assert parse_v2(v1, v2) == {
        "weakness-pattern": {"pattern.a": None, "pattern.d": {"info"}},
        "neuromuscular": {"neuromuscular.b": {"routine"}, "neuromuscular.c": {"emergency", "urgent"}},
    }


def test_spec_was_parsed(spec: dict[str, dict[str, set[str] | None]]) -> None:
    # Guards the parser against a reformatted spec: packs-v1's counts plus packs-v2's five added findings.
    counts = {pack: len(items) for pack, items in spec.items()}
    assert counts == {
        "weakness-pattern": 9 + 1,
        "spinal-compression": 8 + 2,
        "neuromuscular": 18 + 2,
        "cerebrovascular": 7,
        "treatment-expectation": 5,
    }
    assert spec["neuromuscular"]["neuromuscular.electrolyte_imbalance"] == {"emergency", "urgent"}
    assert spec["neuromuscular"]["neuromuscular.myasthenia_suspected"] == {"emergency", "urgent"}
    assert spec["neuromuscular"]["neuromuscular.bulbar_or_respiratory_compromise"] == {"emergency", "urgent"}
    assert spec["weakness-pattern"]["pattern.outside_validated_age"] == {"info"}
    assert spec["weakness-pattern"]["pattern.paraparesis"] is None


def test_every_pack_is_version_2(engine: Engine) -> None:
    # packs-v2: "Each pack's version goes to 2.0.0." neuromuscular 2.1.0 added `worsened_by` (which
    # medicines worsen its potassium findings, for draft-order suggestions); its answers are packs-v2's.
    expected = {**dict.fromkeys(current_spec(), "2.0.0"), "neuromuscular": "2.1.0"}
    assert {p["name"]: p["version"] for p in engine.pack_infos()} == expected


def test_every_spec_finding_exists_in_its_pack_with_its_urgency(
    spec: dict[str, dict[str, set[str] | None]], engine: Engine
) -> None:
    problems = []
    for pack, items in spec.items():
        for item_id, urgencies in items.items():
            if urgencies is None:
                continue
            rules = [r for r in engine.rules if r.kind == "finding" and r.key == item_id]
            if not rules:
                problems.append(f"{item_id}: no rule concludes it")
                continue
            packs = {r.pack for r in rules}
            if packs != {pack}:
                problems.append(f"{item_id}: concluded by pack(s) {sorted(packs)}, spec says {pack}")
            found = {r.urgency for r in rules}
            if found != urgencies:
                problems.append(f"{item_id}: rule urgencies {sorted(found)}, spec says {sorted(urgencies)}")
    assert not problems, "\n".join(problems)


def test_every_spec_derived_fact_exists(spec: dict[str, dict[str, set[str] | None]], engine: Engine) -> None:
    derived = {r.key for r in engine.rules if r.kind == "derive" and r.pack == "weakness-pattern"}
    missing = sorted({item for item, urgencies in spec["weakness-pattern"].items() if urgencies is None} - derived)
    assert not missing, f"derived facts of the spec not concluded by weakness-pattern: {missing}"


def test_every_finding_carries_evidence_and_next_steps(engine: Engine) -> None:
    # packs-v1: every finding carries a plain-language detail, next steps and evidence.
    problems = [
        rule.id
        for rule in engine.rules
        if rule.kind == "finding" and (not rule.recommendations or not rule.evidence or not rule.detail.strip())
    ]
    assert not problems, f"finding rules without detail, recommendations or evidence: {problems}"


WINDOW = "cerebrovascular.time_critical_window"
HAEMORRHAGE = {"imaging": {"brain": "haemorrhage"}}
ANTICOAGULATED = {"history": {"anticoagulated": True}}
THROMBOLYSIS_OFFERED = "thrombolysis may be considered"


@pytest.mark.parametrize(
    ("finding_id", "hours", "more_facts", "expected", "never"),
    [
        (WINDOW, 0, {}, "within 4.5 h", "usually not given"),
        (WINDOW, 4.5, {}, "within 4.5 h", "usually not given"),
        (WINDOW, 4.51, {}, "between 4.5 and 24 h", THROMBOLYSIS_OFFERED),
        (WINDOW, 24, {}, "between 4.5 and 24 h", THROMBOLYSIS_OFFERED),
        (WINDOW, 24.5, {}, None, None),
        ("cerebrovascular.stroke_suspected", 2, {}, None, None),
        # Haemorrhage on imaging: the window still fires (packs-v1) but reperfusion is never offered.
        (WINDOW, 1, HAEMORRHAGE, "Recorded time since onset", "thrombolysis"),
        (WINDOW, 6, HAEMORRHAGE, "Recorded time since onset", "thrombectomy"),
        (WINDOW, 1, {**HAEMORRHAGE, **ANTICOAGULATED}, "Recorded time since onset", "thrombolysis"),
        # An anticoagulant qualifies the thrombolysis window, not the thrombectomy one.
        (WINDOW, 2, ANTICOAGULATED, "thrombolysis is usually not given unless", None),
        (WINDOW, 6, ANTICOAGULATED, "between 4.5 and 24 h", "usually not given"),
        (WINDOW, 2, {"history": {"anticoagulated": False}}, THROMBOLYSIS_OFFERED, "usually not given"),
    ],
)
def test_time_window_detail_hook(
    finding_id: str, hours: float, more_facts: dict[str, Any], expected: str | None, never: str | None
) -> None:
    from neurocds_packs.cerebrovascular import neurocds_finding_detail

    facts = {"onset": {"hours_since_onset": hours}, **more_facts}
    text = neurocds_finding_detail(finding_id=finding_id, rule_id=finding_id, facts=facts, derived={})
    if expected is None:
        assert text is None
        return
    assert text is not None and expected in text and f"{hours:g} h" in text
    assert never is None or never not in text, text


# The seed article's four treatment statements, each owned by one finding of packs-v1. A
# statement shown under another finding would appear when its own finding does not fire.
PROGNOSIS_STATEMENTS = {
    "treatment.decompression_may_restore_strength": r"may restore (full )?strength",
    "treatment.surgical_risk_disclosure": r"complete paralysis",
    "treatment.nerve_damage_guarded_prognosis": r"\bheal(s|ing)?\b|full strength may not return",
    "treatment.prevent_disuse_complications": r"pressure ulcer|contracture|thromboembolism",
}


def statement_misplacements(rules: list[Any]) -> list[str]:
    """Rules whose shown text (title, detail, next steps) lacks their own statement or carries another's."""
    problems = []
    for rule in rules:
        if rule.kind != "finding":
            continue
        shown = " ".join([rule.title, rule.detail, *rule.recommendations])
        for owner, pattern in PROGNOSIS_STATEMENTS.items():
            says = re.search(pattern, shown, flags=re.IGNORECASE) is not None
            if rule.key == owner and not says:
                problems.append(f"{rule.id}: lacks its own statement /{pattern}/")
            elif rule.key != owner and says:
                problems.append(f"{rule.id}: says /{pattern}/, which belongs to {owner}")
    return problems


def test_statement_check_can_fail() -> None:
    from types import SimpleNamespace

    leak = SimpleNamespace(
        id="r1", kind="finding", key="treatment.decompression_may_restore_strength", title="t",
        detail="Surgery may restore full strength.", recommendations=("Nerves heal poorly.",),
    )  # fmt: skip
    assert statement_misplacements([leak]) == [
        "r1: says /\\bheal(s|ing)?\\b|full strength may not return/, which belongs to "
        "treatment.nerve_damage_guarded_prognosis"
    ]


def test_each_prognosis_statement_is_shown_only_by_its_finding(engine: Engine) -> None:
    problems = statement_misplacements(list(engine.rules))
    assert not problems, "\n".join(problems)


def _unexamined(node: Any) -> bool:
    """Whether a condition node counts a limb that was not examined (``known: false`` on a strength)."""
    from neurocds.rules.conditions import FactTest

    return isinstance(node, FactTest) and node.op == "known" and node.value is False and node.path[0] == "strength"


def unexamined_limb_rules(rules: list[Any]) -> list[Any]:
    """Rules that count a limb that was not examined as not weak."""
    return [rule for rule in rules if any(_unexamined(n) for n in rule.when.walk())]


def test_rules_that_count_an_unexamined_limb_as_not_weak_say_so(engine: Engine) -> None:
    # packs-v1 allows "grade 5 or not examined" for paraparesis and hemiparesis; packs-v2 gives the
    # arms in monoparesis of a leg the same allowance (the other leg must still be recorded as
    # grade 5). A reader of a rule that counts an unexamined limb as not weak must not have to infer it.
    rules = unexamined_limb_rules(list(engine.rules))
    assert {
        "pattern.paraparesis",
        "pattern.hemiparesis.right",
        "pattern.monoparesis_leg.left",
        "pattern.monoparesis_leg.right",
    } <= {r.id for r in rules}
    monoparesis = [r for r in rules if r.id.startswith("pattern.monoparesis_leg")]
    limbs = {n.path for r in monoparesis for n in r.when.walk() if _unexamined(n)}
    assert limbs == {("strength", "left_arm"), ("strength", "right_arm")}, "monoparesis: only arms may go unexamined"
    silent = [r.id for r in rules if "not examined" not in r.detail or "not examined" not in r.title + r.rationale]
    assert not silent, f"rules that treat an unexamined limb as not weak without saying so: {silent}"


def test_medicine_names_in_the_drug_findings() -> None:
    # packs-v2: the drug findings name each medicine (name and class) behind them, once, and no other.
    from neurocds_packs.neuromuscular import neurocds_finding_detail

    facts = {
        "medications": [
            {"name": "spironolactone", "class": "potassium_sparing_diuretic"},
            {"name": "amlodipine", "class": "other"},
            {"name": "simvastatin", "class": "statin"},
            {"name": "spironolactone", "class": "potassium_sparing_diuretic"},
        ]
    }

    def detail(finding_id: str) -> str | None:
        return neurocds_finding_detail(finding_id=finding_id, rule_id=finding_id, facts=facts, derived={})

    assert detail("neuromuscular.hyperkalaemia_drug_contributor") == (
        "Recorded medicines to review: spironolactone (potassium-sparing diuretic)."
    )
    assert detail("neuromuscular.drug_induced_consider") == (
        "Recorded medicines to review: spironolactone (potassium-sparing diuretic); simvastatin (statin)."
    )
    assert detail("neuromuscular.electrolyte_imbalance") is None
