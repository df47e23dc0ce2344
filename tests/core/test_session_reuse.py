"""The durable backend reuses one session: as safe as a fresh session per evaluation.

A fresh session zeroes two index tables per beta node (about 1.6 M instructions with the
2.0.0 packs); the adapter instead retracts every fact an evaluation asserted. These tests
hold that to the promise a fresh session kept: the same firings on every corpus document,
in any order; nothing left behind but the sentinel fact; a fresh session after any error;
no crash A (``../shared/spec/durable-rules-facts.md``) under a perturbing allocator.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

durable_rules_engine = pytest.importorskip("durable_rules_engine")

from answer_corpus import documents  # noqa: E402

from neurocds import Engine, RuleEvaluationError  # noqa: E402
from neurocds.backends import durable as backend_module  # noqa: E402
from neurocds.testing import inline_pack, rule  # noqa: E402
from neurocds_packs import BUILTIN_PACKS  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]


def stored_facts(backend: Any) -> list[dict[str, Any]]:
    """The facts the reused session holds now."""
    assert backend._session is not None
    facts: list[dict[str, Any]] = json.loads(backend._dre.get_facts(backend._handle, backend._session[0]))
    return facts


def test_reused_session_fires_as_fresh_sessions_on_every_corpus_document_in_any_order() -> None:
    engine = Engine(packs=BUILTIN_PACKS)
    backend = engine.durable
    assert backend is not None
    docs = [engine.validate(doc) for _, doc in documents()]
    fresh = []
    for doc in docs:
        fresh.append(sorted(backend.run(doc, {}, None).fired))
        backend.close()  # the next run opens a new session: the old behaviour
    order = list(range(len(docs)))
    random.Random(13).shuffle(order)
    backend.run(docs[0], {}, None)
    session = backend._session
    for i in order:
        assert sorted(backend.run(docs[i], {}, None).fired) == fresh[i], f"document {i}"
        # What a fresh session holds once its sentinel ran: the sentinel fact and nothing else.
        assert [f["t"] for f in stored_facts(backend)] == ["s"], f"document {i} left facts behind"
    assert backend._session == session  # one session served every document
    assert sum(1 for f in fresh if f) > len(docs) // 2  # most documents fire rules: a real check


def test_an_error_deletes_the_session_and_the_next_evaluation_starts_fresh(tmp_path: Path) -> None:
    rules = [
        rule("ru.weak", {"fact": "strength.left_leg", "lte": 4}, derive="ru.weak"),
        rule("ru.step", {"derived": "ru.weak"}, finding="ru.step"),
    ]
    plugin = inline_pack(tmp_path / "ru", "ru", "ru", rules)
    engine = Engine(plugins=[("ru", plugin)], entry_points=False, firing_budget=1)
    backend = engine.durable
    assert backend is not None
    doc = engine.validate({"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 3}})
    with pytest.raises(RuleEvaluationError, match="firing budget"):
        backend.run(doc, {}, None)  # the sentinel's firing is not counted; two rules are
    assert backend._session is None and backend._live == set()
    backend.firing_budget = 10
    first = backend.run(doc, {}, None)
    assert [engine.rules[i].id for i in first.fired] == ["ru.weak", "ru.step"]
    assert [f["t"] for f in stored_facts(backend)] == ["s"]
    inexact = engine.validate({"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 3}})
    with pytest.raises(RuleEvaluationError, match="exactly"):
        backend.run(inexact, {"ru.big": 2**60}, None)
    assert backend._session is None
    assert [engine.rules[i].id for i in backend.run(doc, {}, None).fired] == ["ru.weak", "ru.step"]


def test_a_session_is_replaced_after_its_share_of_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_module, "SESSION_REUSES", 3)
    engine = Engine(packs=BUILTIN_PACKS)
    backend = engine.durable
    assert backend is not None
    doc = engine.validate(next(iter(documents()))[1])
    sessions = []
    for _ in range(7):
        backend.run(doc, {}, None)
        sessions.append(backend._session)
    assert sessions[:2] == [sessions[0]] * 2 and sessions[2] is None  # the third run closed it
    assert sessions[3] is not None and sessions[3] != sessions[0] and len(backend._live) == 1


def test_no_crash_under_a_perturbing_allocator_with_reuse_errors_and_close() -> None:
    # Crash A depends on heap contents: MALLOC_PERTURB_ fills freed and new memory with junk.
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from answer_corpus import documents
        from neurocds import Engine
        from neurocds_packs import BUILTIN_PACKS
        engine = Engine(packs=BUILTIN_PACKS)
        docs = [doc for _, doc in documents()][:200]
        done = 0
        for i, doc in enumerate(docs):
            done += bool(engine.evaluate(doc).finding_ids) or 1
            if i % 50 == 0:
                engine.durable.close()
            if i % 70 == 0:
                engine.durable.firing_budget, budget = 1, engine.durable.firing_budget
                engine.evaluate(doc)
                engine.durable.firing_budget = budget
        engine.durable.close()
        print(done)
        """
    )
    env = {**os.environ, "MALLOC_PERTURB_": "165"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) == 200
