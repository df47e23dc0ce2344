"""Synthetic rule sets of any size over the real facts contract (for the rule-scale benchmark).

Rule ``i`` tests two numeric facts against thresholds, and every third rule adds an
``any`` of two more tests, so the rule set has shared prefixes, disjunctions and
many distinct conditions, like a grown pack. The first test of a rule is one of
14 facts x 20 thresholds (280 distinct tests under one node, below durable_rules'
511), so every size up to 4,096 durable rules loads on both backends. Thresholds cycle
independently of the size, so the share of rules that fire is the same at every size
and time per rule compares like with like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurocds.resources import load_schema
from neurocds.testing import inline_pack, rule

# Lab values only, each threshold placed strictly inside the lab's physiologically possible range
# in the facts schema (the engine refuses a test outside it at load: it could never, or would
# always, hold).
NUMERIC_FACTS = [
    "labs.potassium_mmol_l", "labs.sodium_mmol_l", "labs.calcium_adjusted_mmol_l",
    "labs.magnesium_mmol_l", "labs.phosphate_mmol_l", "labs.glucose_mmol_l", "labs.hba1c_mmol_mol",
    "labs.tsh_mu_l", "labs.free_t4_pmol_l", "labs.ck_u_l", "labs.vitamin_b12_pmol_l", "labs.crp_mg_l",
    "labs.wbc_10e9_l",
]  # fmt: skip


_LABS = load_schema("facts.schema.json")["properties"]["labs"]["properties"]


def inside(fact: str, step: int, steps: int) -> float:
    """Threshold number ``step`` of ``steps`` distinct ones, strictly inside the lab's range."""
    spec = _LABS[fact.removeprefix("labs.")]
    low, high = spec["minimum"], spec["maximum"]
    return float(round(low + (high - low) * (step + 1) / (steps + 2), 6))


def synthetic_rules(count: int) -> list[dict[str, Any]]:
    k = len(NUMERIC_FACTS)
    rules = []
    for i in range(count):
        first_fact, second_fact = NUMERIC_FACTS[i % k], NUMERIC_FACTS[(i // k + 5) % k]
        first = {"fact": first_fact, "gte": inside(first_fact, (i // k) % 20, 20)}
        second = {"fact": second_fact, "lt": inside(second_fact, (i * 7) % 40, 40)}
        tests: list[dict[str, Any]] = [first, second]
        if i % 3 == 0:
            third = NUMERIC_FACTS[(i + 7) % k]
            tests.append(
                {"any": [{"fact": third, "gt": inside(third, i % 50, 50)}, {"fact": "labs.ck_u_l", "lte": i % 90}]}
            )
        rules.append(rule(f"syn.r{i}", {"all": tests}))
    return rules


def synthetic_pack(directory: Path, count: int) -> tuple[str, Any]:
    return ("syn", inline_pack(directory, "syn", "syn", synthetic_rules(count)))
