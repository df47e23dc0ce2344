"""How pack code is called: once per evaluation, outside any backend lock, on read-only facts,
within a budget; and the hash and the audit record are of the document as it was sent."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds.facts.readonly import freeze
from neurocds.hookspecs import ComputedFacts
from neurocds.rules.hooks import HookFailure, HookRunner
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

from .hostile import emergency_doc, hostile_plugins

ALWAYS = {"fact": "strength.left_leg", "lte": 5}


def test_frozen_facts_refuse_every_change() -> None:
    view = freeze({"labs": {"k": 2.0}, "medications": [{"class": "statin"}]})
    with pytest.raises(TypeError):
        view["labs"]["k"] = 4.5  # type: ignore[index]  # the point: it is read-only
    with pytest.raises(AttributeError):
        view["medications"].append({})  # tuples have no append
    with pytest.raises(TypeError):
        view["medications"][0]["class"] = "other"  # type: ignore[index]
    assert view["labs"].get("k") == 2.0 and dict(view["labs"]) == {"k": 2.0}


def test_frozen_facts_copy_mapping_and_sequence_subclasses_too() -> None:
    from collections import OrderedDict, defaultdict

    inner: OrderedDict[str, float] = OrderedDict(k=2.0)
    meds: defaultdict[str, list[str]] = defaultdict(list, names=["statin"])
    view = freeze({"labs": inner, "medications": meds})
    with pytest.raises(TypeError):
        view["labs"]["k"] = 4.5  # type: ignore[index]  # the caller's OrderedDict must not be reachable
    with pytest.raises(AttributeError):
        view["medications"]["names"].append("other")  # the caller's list must not be reachable
    assert inner == {"k": 2.0} and meds["names"] == ["statin"]


def test_a_str_subclass_cannot_pass_a_text_check() -> None:
    from neurocds.rules.hook_answers import check_text

    class Sly(str):
        def startswith(self, *args: Any) -> bool:  # type: ignore[override]  # the attack
            return True

    with pytest.raises(HookFailure, match="plain string"):
        check_text(Sly("other.flag"), "computed fact name", 100)
    assert check_text("mine.flag", "computed fact name", 100) == "mine.flag"


def test_the_detail_hook_runs_once_per_finding_outside_the_backend_lock(tmp_path: Path) -> None:
    calls: list[tuple[str, bool, type, type]] = []
    engine: Engine | None = None

    def detail(finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
        assert engine is not None
        locked = engine.durable is not None and engine.durable._lock.locked()
        calls.append((rule_id, locked, type(facts), type(derived)))
        return "extra"

    plugin = inline_pack(tmp_path, "once", "once", [rule("once.f", ALWAYS)], finding_detail=detail)
    engine = Engine(plugins=[("once", plugin)])  # unpinned: a run vs the same run without it
    result = engine.evaluate(emergency_doc())
    assert result.finding("once.f")["detail"].endswith("extra")  # type: ignore[index]
    assert [c[0] for c in calls] == ["once.f"]  # not once per backend
    assert calls[0][1] is False
    assert calls[0][2].__name__ == "mappingproxy" and calls[0][3].__name__ == "mappingproxy"


def test_a_slow_detail_hook_does_not_block_other_evaluations(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def detail(*_: Any) -> str:
        entered.set()
        release.wait(10)
        return "late"

    plugin = inline_pack(
        tmp_path, "slow", "slow", [rule("slow.f", {"fact": "labs.potassium_mmol_l", "lt": 2.1})], finding_detail=detail
    )
    engine = Engine(plugins=[("slow", plugin)], hook_budget=5.0)  # unpinned: a run vs the same run without it
    slow = threading.Thread(target=engine.evaluate, args=(emergency_doc(),))
    slow.start()
    try:
        assert entered.wait(30)
        other = emergency_doc()
        other["labs"]["potassium_mmol_l"] = 4.0  # slow.f does not fire: no hook call
        done = threading.Event()
        threading.Thread(target=lambda: (engine.evaluate(other), done.set()), daemon=True).start()
        # The slow hook holds nothing the other evaluation needs, so it finishes meanwhile.
        assert done.wait(30)
    finally:
        release.set()
        slow.join()


def test_hash_and_audit_record_are_of_the_document_as_sent(tmp_path: Path) -> None:
    engine = Engine(plugins=hostile_plugins("mutate-in-detail", tmp_path / "p"), audit_dir=tmp_path / "audit")  # unpinned: a run vs the same run without it
    baseline = Engine(packs=BUILTIN_PACKS).evaluate(emergency_doc())
    result = engine.evaluate(emergency_doc())
    assert result.to_dict()["facts_sha256"] == baseline.to_dict()["facts_sha256"]
    lines = [json.loads(x) for x in (tmp_path / "audit").glob("*.jsonl").__next__().read_bytes().splitlines()]
    assert lines[-1]["decision"]["facts"]["labs"]["potassium_mmol_l"] == 2.0


def test_an_overrunning_hook_is_not_called_again_while_it_still_runs() -> None:
    runner = HookRunner(0.05)
    gate = threading.Event()
    with pytest.raises(HookFailure, match="did not return within the pack's wall-clock limit of 250 ms"):
        runner.call("p", "h", gate.wait, (10,), 0.05)
    called: list[int] = []
    with pytest.raises(HookFailure, match="did not return within"):
        runner.call("p", "h", lambda: called.append(1), (), 0.05)
    assert called == []  # one hanging thread per hook at most, not one per evaluation
    gate.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            assert runner.call("p", "h", lambda: 7, (), 1.0) == 7
            break
        except HookFailure:
            time.sleep(0.01)  # the late call is finishing
    else:
        pytest.fail("the hook never became callable again")


def _spin(cpu_s: float) -> None:
    started = time.thread_time()
    while time.thread_time() - started < cpu_s:
        pass


@pytest.mark.parametrize(
    ("work", "made", "words"),
    [
        # 0.15 s of CPU each against 0.2 s: the second call runs past it. On a crowded
        # machine 0.3 s of CPU can take longer than the 1 s wall limit, which then trips
        # first; either way the budget is shared (a per-call budget would make all 5 calls).
        (lambda: _spin(0.15), 2, "ran past the pack's budget of 200 ms of CPU time|wall-clock limit of 1000 ms"),
        # Sleeping spends no CPU: the wall-clock limit (5 x 0.2 s) is shared as well.
        (lambda: time.sleep(0.3), 4, "did not return within the pack's wall-clock limit of 1000 ms"),
    ],
)
def test_each_pack_shares_one_budget_across_its_calls_in_an_evaluation(
    tmp_path: Path, work: Any, made: int, words: str
) -> None:
    calls: list[str] = []

    def detail(finding_id: str, *_: Any) -> str:
        calls.append(finding_id)
        work()
        return "slow"

    rules = [rule(f"bud.f{i}", ALWAYS) for i in range(5)]
    engine = Engine(  # unpinned: a run vs the same run without it
        plugins=[("bud", inline_pack(tmp_path, "bud", "bud", rules, finding_detail=detail))], hook_budget=0.2
    )
    started = time.monotonic()
    result = engine.evaluate(emergency_doc())
    assert len(calls) == made  # the budget is spent: the later calls were never made
    errors = [e["message"] for e in result.errors if e["pack"] == "bud"]
    assert len(errors) == 5 - made + 1 and all(re.search(words, m) for m in errors) and not result.complete
    assert time.monotonic() - started < 10  # generous; five sleeping calls alone would take 1.5 s


def test_computed_values_are_all_or_nothing(tmp_path: Path) -> None:
    def compute(facts: Any) -> ComputedFacts:
        return ComputedFacts(pack="aon", values={"aon.ok": True, "aon.bad": float("inf")})

    rules = [rule("aon.f", {"derived": "aon.ok"})]
    engine = Engine(plugins=[("aon", inline_pack(tmp_path, "aon", "aon", rules, compute=compute))])  # unpinned: a run vs the same run without it
    result = engine.evaluate(emergency_doc())
    assert "aon.f" not in result.finding_ids and "aon.ok" not in result.derived and not result.complete


def test_hook_budget_must_be_positive() -> None:
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="hook budget"):
            Engine(packs=BUILTIN_PACKS, hook_budget=bad)


def test_pack_code_reached_while_checking_an_answer_runs_within_the_budget(tmp_path: Path) -> None:
    # The check of a computed answer reads its attributes; a subclass can make that reading
    # pack code (a property that sleeps). It must run on the budgeted worker, not the caller.
    class Slow(ComputedFacts):
        @property  # type: ignore[override]  # the attack: a field turned into pack code
        def values(self) -> dict[str, Any]:
            time.sleep(30)
            return {}

    def compute(facts: Any) -> ComputedFacts:
        slow = Slow.__new__(Slow)
        object.__setattr__(slow, "pack", "slow")  # a real pack name: the check must read values
        object.__setattr__(slow, "because", {})
        return slow

    rules = [rule("slow.f", {"derived": "slow.ok"})]
    plugin = inline_pack(tmp_path, "slow", "slow", rules, compute=compute)
    engine = Engine(plugins=[("slow", plugin)], entry_points=False, hook_budget=0.2)
    started = time.monotonic()
    result = engine.evaluate(emergency_doc())
    assert time.monotonic() - started < 10  # generous: the property alone sleeps 30 s
    assert not result.complete and any(f["pack"] == "slow" for f in result.errors)
