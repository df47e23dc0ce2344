"""The neuromuscular pack: generalized and systemic causes of weakness (metabolic, toxic, immune)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.hookspecs import RulePack, hookimpl
from neurocds_packs._files import builtin_pack

PACK = "neuromuscular"
VERSION = "2.1.0"

DRUG_INDUCED_FINDING = "neuromuscular.drug_induced_consider"
HYPERKALAEMIA_DRUG_FINDING = "neuromuscular.hyperkalaemia_drug_contributor"
# The medication classes (facts-v1 plus packs-v2) in the words a prescriber reads.
CLASS_WORDS = {
    "statin": "statin",
    "corticosteroid": "corticosteroid",
    "loop_or_thiazide_diuretic": "loop or thiazide diuretic",
    "fluoroquinolone": "fluoroquinolone",
    "chemotherapy_neurotoxic": "neurotoxic chemotherapy",
    "aminoglycoside": "aminoglycoside",
    "immune_checkpoint_inhibitor": "immune checkpoint inhibitor",
    "potassium_sparing_diuretic": "potassium-sparing diuretic",
    "ace_inhibitor_or_arb": "ACE inhibitor or angiotensin receptor blocker",
    "potassium_supplement": "potassium supplement",
}
# Which recorded medicines each finding's rules match on (by class, never by name): the
# detail names exactly those, so the clinician sees which drug to review.
POTASSIUM_RAISING = ("potassium_sparing_diuretic", "ace_inhibitor_or_arb", "potassium_supplement")
NAMED_CLASSES = {
    DRUG_INDUCED_FINDING: tuple(CLASS_WORDS),
    HYPERKALAEMIA_DRUG_FINDING: POTASSIUM_RAISING,
}


@hookimpl
def neurocds_register_packs() -> list[RulePack]:
    return [
        builtin_pack(
            PACK,
            VERSION,
            "Generalized and systemic causes: metabolic, nerve, junction and muscle disease, toxins.",
            depends_on=("weakness-pattern",),
            # The findings neurocds_finding_detail below details: it is called for these only.
            detailed_findings=tuple(NAMED_CLASSES),
        )
    ]


@hookimpl
def neurocds_finding_detail(
    finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]
) -> str | None:
    """Name each recorded medicine (name and class) behind a medication finding.

    A rule matches on the class; the name is what the prescriber has to find on the
    chart, so the detail lists both, in the recorded order, each medicine once.
    """
    classes = NAMED_CLASSES.get(finding_id)
    if classes is None:
        return None
    named = medicines_of(facts, classes)
    if not named:
        return None  # the rule needs such a medicine, so this only guards against misuse
    return "Recorded medicines to review: " + "; ".join(named) + "."


def medicines_of(facts: Mapping[str, Any], classes: tuple[str, ...]) -> list[str]:
    """'name (class in words)' for each recorded medicine whose class is one of ``classes``."""
    out: list[str] = []
    for item in facts.get("medications") or ():
        if not isinstance(item, Mapping) or item.get("class") not in classes:
            continue
        shown = f"{item.get('name')} ({CLASS_WORDS[item['class']]})"
        if shown not in out:
            out.append(shown)
    return out
