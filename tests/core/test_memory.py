"""Memory stays flat over 20,000 evaluations: every durable_rules session is deleted.

A session left behind (on any path: nothing fired, many fired, an action hook raising, the
firing budget running out, an assert the extension refuses) would grow the process and, at
1,024 live sessions, make durable_rules raise MemoryError. This is a resource bound on the
resident set size read from /proc/self/statm, not a timing assertion.
"""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("durable_rules_engine")

from neurocds import Engine
from neurocds.testing import inline_pack, rule

STATM = Path("/proc/self/statm")
WARM_UP = 2000
MEASURED = 20000
LIMIT_BYTES = 25 * 1024 * 1024


def rss_bytes() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def detail(finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]) -> str | None:
    if rule_id == "mm.fails":
        raise RuntimeError("hook failure")
    return f"Patient {facts['patient']['id']}."


@pytest.mark.skipif(not STATM.exists(), reason="needs /proc/self/statm")
def test_rss_is_flat_over_20000_evaluations(tmp_path):
    rules = [
        rule("mm.weak", {"derived": "pattern.leg_weakness"}),
        rule("mm.low_k", {"fact": "labs.potassium_mmol_l", "lt": 3.0}),
        rule("mm.chain", {"all": [{"finding": "mm.low_k"}, {"derived": "pattern.paraparesis"}]}),
        rule("mm.fails", {"fact": "symptoms.fever", "eq": True}),
        rule("mm.thresholds", {"any": [{"fact": "labs.ck_u_l", "gt": i} for i in range(0, 2000, 100)]}),
    ]
    plugin = inline_pack(tmp_path / "mm", "mm", "mm", rules, depends_on=["weakness-pattern"], finding_detail=detail)
    main = Engine(plugins=[("mm", plugin)], packs=["weakness-pattern", "mm"])
    # Two more engines for the failure paths: a tiny firing budget (the action is abandoned), and an
    # input fact matching more than 64 alpha nodes (the extension refuses the assert, error 303).
    budget = Engine(plugins=[("mm", plugin)], packs=["weakness-pattern", "mm"], firing_budget=2)
    wide_schema = {"type": "object", "properties": {f"f{i}": {"type": "boolean"} for i in range(70)}}
    wide_rules = [rule(f"wide.r{i}", {"fact": f"extensions.wide.f{i}", "eq": True}) for i in range(70)]
    wide = Engine(
        plugins=[("wide", inline_pack(tmp_path / "wide", "wide", "wide", wide_rules, facts_schema=wide_schema))],
        entry_points=False,
    )
    rng = random.Random(99)
    base = {"facts_version": "1"}
    docs = [
        {**base, "patient": {"id": "quiet"}},
        {
            **base,
            "patient": {"id": "weak"},
            "strength": {"left_leg": 3, "right_leg": 2},
            "labs": {"potassium_mmol_l": 2.5},
        },
        {**base, "patient": {"id": "fever"}, "symptoms": {"fever": True}, "labs": {"ck_u_l": 1500.5}},
        {**base, "patient": {"id": "Zoë"}, "strength": {"left_leg": 5}, "labs": {"tsh_mu_l": 1e-05}},
    ]
    wide_doc = {**base, "patient": {"id": "w"}, "extensions": {"wide": {f"f{i}": True for i in range(70)}}}
    outcomes: set[tuple[str, bool]] = set()

    def evaluate_once() -> None:
        pick = rng.random()
        if pick < 0.1:
            result = budget.evaluate(docs[2], trace=False)
            outcomes.add(("budget", result.complete))
        elif pick < 0.2:
            result = wide.evaluate(wide_doc, trace=False)
            outcomes.add(("wide", result.complete))
        else:
            result = main.evaluate(rng.choice(docs))
            outcomes.add(("main", result.complete))

    for _ in range(WARM_UP):
        evaluate_once()
    gc.collect()
    before = rss_bytes()
    for _ in range(MEASURED):
        evaluate_once()
    gc.collect()
    growth = rss_bytes() - before
    # Every path was taken, including the failing ones (incomplete results).
    assert outcomes == {("main", True), ("main", False), ("budget", False), ("wide", False)}
    # At most the one reused session per engine is live; closing it leaves none.
    for engine in (main, budget, wide):
        assert len(engine.durable._live) <= 1
        engine.durable.close()
        assert engine.durable._live == set()
    assert growth < LIMIT_BYTES, f"RSS grew by {growth / 1e6:.1f} MB over {MEASURED} evaluations"
