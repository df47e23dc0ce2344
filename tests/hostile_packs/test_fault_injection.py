"""One hostile pack per failure class: the built-in emergency finding still shows, the faulty
pack is named in ``errors``, the result says ``complete: false``, nothing else changes, and
the call returns within its budget. Kinds that could hang or exit run in a subprocess."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

from .hostile import BUDGET_S, DANGEROUS, EMERGENCY, KINDS, PACK, comparable, evaluate

REPO = Path(__file__).resolve().parents[2]
BACKENDS = ["reference", *(["durable"] if Engine(packs=BUILTIN_PACKS).durable is not None else [])]
# Generous: a shared CI machine; a hostile hook sleeps 10 s, so a missed budget still shows.
SLACK_S = 3.0


@functools.cache
def baseline(backend: str) -> dict[str, Any]:
    return evaluate(None, backend, Path("unused"))


def run(kind: str, backend: str, tmp_path: Path) -> dict[str, Any]:
    if kind not in DANGEROUS:
        return {"hostile": evaluate(kind, backend, tmp_path), "baseline": baseline(backend)}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hostile_packs.hostile", kind, backend],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


# In-process kinds on every backend; the subprocess ones (slow to start) on the default backend.
CASES = [(k, b) for k in KINDS for b in BACKENDS if k not in DANGEROUS or b == BACKENDS[-1]]


@pytest.mark.parametrize(("kind", "backend"), CASES)
def test_a_hostile_pack_is_contained(kind: str, backend: str, tmp_path: Path) -> None:
    out = run(kind, backend, tmp_path)
    hostile, baseline = out["hostile"], out["baseline"]
    result = hostile["result"]
    assert EMERGENCY in [f["id"] for f in result["findings"]]
    assert result["highest_urgency"] == "emergency"
    assert PACK in {e.get("pack") for e in result["errors"]}, result["errors"]
    assert result["complete"] is False
    assert baseline["result"]["complete"] is True
    assert comparable(result) == comparable(baseline["result"])
    assert hostile["caller_dict_unchanged"]
    # Every hook call of the pack shares one budget per evaluation.
    assert hostile["seconds"] < baseline["seconds"] + BUDGET_S + SLACK_S


def test_a_spoofed_derived_fact_does_not_conclude_the_emergency(tmp_path: Path) -> None:
    result = evaluate("spoof-namespace", "reference", tmp_path)["result"]
    assert "spinal.cord_compression_suspected" not in [f["id"] for f in result["findings"]]
    (error,) = [e for e in result["errors"] if e["pack"] == PACK]
    assert "outside the namespaces of pack 'hostile'" in error["message"]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("huge-detail", "10000000 characters long"),
        ("number-detail", "must be a string, got int"),
        ("surrogate-detail", "not valid Unicode"),
        ("mutate-in-detail", "TypeError"),
        ("nan-computed", "finite JSON scalar"),
        ("list-computed", "finite JSON scalar"),
    ],
)
def test_each_refused_answer_says_why(kind: str, words: str, tmp_path: Path) -> None:
    result = evaluate(kind, "reference", tmp_path)["result"]
    messages = [e["message"] for e in result["errors"] if e["pack"] == PACK]
    assert any(words in m for m in messages), messages


def test_one_packs_change_is_never_seen_by_another(tmp_path: Path) -> None:
    from neurocds.hookspecs import ComputedFacts
    from neurocds.testing import inline_pack, rule

    seen: list[float] = []

    def aaa(facts: Any) -> None:
        with contextlib.suppress(TypeError):
            facts["labs"]["potassium_mmol_l"] = 9.9

    def zzz(facts: Any) -> ComputedFacts:
        seen.append(facts["labs"]["potassium_mmol_l"])
        return ComputedFacts(pack="zzz", values={"zzz.high_k": facts["labs"]["potassium_mmol_l"] > 6})

    engine = Engine(  # unpinned: a run vs the same run without it
        plugins=[
            (
                "aaa",
                inline_pack(
                    tmp_path, "aaa", "aaa", [rule("aaa.x", {"fact": "strength.left_leg", "lte": 5})], compute=aaa
                ),
            ),
            ("zzz", inline_pack(tmp_path, "zzz", "zzz", [rule("zzz.k", {"derived": "zzz.high_k"})], compute=zzz)),
        ],
        hook_budget=BUDGET_S,
    )
    from .hostile import emergency_doc

    result = engine.evaluate(emergency_doc())
    assert seen == [2.0] and "zzz.k" not in result.finding_ids and result.complete
