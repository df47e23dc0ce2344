"""One Engine shared by 16 threads gives every thread the answer a single thread gets.

The durable_rules adapter serialises sessions on a lock and never uses the stock Host
(whose dispatcher thread has a use-after-free beyond ~8 concurrent sessions); the reference
evaluator and the explainer keep per-evaluation state. This test checks the whole result
document of every evaluation against a single-threaded baseline, with hooks that write the
patient's own id into the finding detail so that any cross-talk between threads shows.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections.abc import Mapping
from typing import Any

import pytest

pytest.importorskip("durable_rules_engine")

from neurocds import Engine
from neurocds.hookspecs import ComputedFacts
from neurocds.testing import inline_pack, rule

THREADS = 16
PER_THREAD = 260  # 16 x 260 = 4,160 evaluations
DOCUMENTS = 48

RULES = [
    rule("cc.paraparesis", {"derived": "pattern.paraparesis"}, urgency="urgent"),
    rule("cc.leg_weak", {"all": [{"derived": "pattern.leg_weakness"}, {"fact": "symptoms.back_pain", "eq": True}]}),
    rule("cc.low_k", {"fact": "labs.potassium_mmol_l", "lt": 3.0}, urgency="emergency"),
    rule("cc.band", {"derived": "cc.k_band", "eq": "high"}, urgency="routine"),
    rule("cc.chain", {"all": [{"finding": "cc.low_k"}, {"derived": "pattern.leg_weakness"}]}, urgency="emergency"),
    rule("cc.statin", {"any_item": "medications", "where": {"field": "class", "eq": "statin"}}, urgency="info"),
    rule("cc.fails", {"fact": "symptoms.fever", "eq": True}, urgency="routine"),
]


def compute(facts: Mapping[str, Any]) -> ComputedFacts | None:
    k = facts.get("labs", {}).get("potassium_mmol_l")
    if k is None:
        return None
    return ComputedFacts(pack="cc", values={"cc.k_band": "high" if k > 5.5 else "normal"})


def detail(finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]) -> str | None:
    if rule_id == "cc.fails" and facts["patient"]["id"].endswith("7"):
        raise RuntimeError(f"detail failed for {facts['patient']['id']}")
    return f"Recorded for patient {facts['patient']['id']} with {sorted(derived)}."


def document(rng: random.Random, index: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"facts_version": "1", "patient": {"id": f"pt-{index}"}}
    if rng.random() < 0.8:
        doc["strength"] = {
            limb: rng.randint(2, 5) for limb in ("left_leg", "right_leg", "left_arm") if rng.random() < 0.8
        }
    if rng.random() < 0.6:
        doc["symptoms"] = {"back_pain": rng.random() < 0.5, "fever": rng.random() < 0.5}
    if rng.random() < 0.6:
        doc["labs"] = {"potassium_mmol_l": rng.choice([2.1, 2.99, 3.0, 4.2, 5.6, 6.9, 0.5])}
    if rng.random() < 0.4:
        doc["medications"] = [{"name": "Atorvastatin", "class": rng.choice(["statin", "other"])}]
    if rng.random() < 0.3:
        doc["exam"] = {"reflexes_legs": rng.choice(["brisk", "absent"]), "plantar_response": "extensor"}
    return doc


def comparable(result: Any) -> str:
    data = dict(result.to_dict())
    data.pop("evaluation_id")
    data.pop("evaluated_at")
    return json.dumps(data, sort_keys=True)


def test_sixteen_threads_share_one_engine_and_get_the_single_threaded_answers(tmp_path):
    plugin = inline_pack(
        tmp_path, "cc", "cc", RULES, depends_on=["weakness-pattern"], compute=compute, finding_detail=detail
    )
    from hostile_packs.hostile import slow_and_failing_plugins

    # A pack that never returns and one whose hooks raise are installed too: their failures must
    # be the same in every thread, and must not disturb anyone else's answer.
    hostile = slow_and_failing_plugins(tmp_path / "hostile")
    engine = Engine(
        plugins=[("cc", plugin), *hostile],
        packs=["weakness-pattern", "cc", "slow-pack", "failing-pack"],
        hook_budget=2.0,  # generous for cc's own hooks with 16 threads on a loaded machine
    )
    assert engine.durable is not None and engine.verify and len(engine.rules) > len(RULES)
    rng = random.Random(1234)
    docs = [document(rng, i) for i in range(DOCUMENTS)]
    inputs: list[Any] = [json.dumps(d) if i % 3 == 0 else d for i, d in enumerate(docs)]  # text and mappings
    baseline = [comparable(engine.evaluate(d)) for d in inputs]
    # The baseline itself must be varied, or agreement would prove little.
    parsed = [json.loads(b) for b in baseline]
    assert len({tuple(f["id"] for f in p["findings"]) for p in parsed}) >= 8
    assert all(not p["complete"] for p in parsed)
    assert all("slow-pack" in {e.get("pack") for e in p["errors"]} for p in parsed)
    assert any("failing-pack" in {e.get("pack") for e in p["errors"]} for p in parsed)

    barrier = threading.Barrier(THREADS)
    failures: list[str] = []
    counts = [0] * THREADS

    def worker(number: int) -> None:
        order = random.Random(number)
        try:
            barrier.wait()
            for _ in range(PER_THREAD):
                i = order.randrange(DOCUMENTS)
                got = comparable(engine.evaluate(inputs[i]))
                if got != baseline[i]:
                    failures.append(f"thread {number}, document {i}: result differs from the baseline")
                counts[number] += 1
        except BaseException as exc:  # any exception at all is a failure of the test
            failures.append(f"thread {number}: {type(exc).__name__}: {exc}")

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that any race has its chance
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert failures == []
    assert sum(counts) == THREADS * PER_THREAD >= 4000
    assert len(engine.durable._live) <= 1  # the one reused session, however many threads
    engine.durable.close()
    assert engine.durable._live == set()
