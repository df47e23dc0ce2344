"""The stored corpus of expected answers: what the built-in packs answer, document by document.

Speed work, refactoring and merges must never change an answer. Every benchmark
document, example and case is evaluated and its answer (findings, derived facts,
missing data, the explanation trace, errors and pack identities: the whole result
apart from ids, times, the engine block and the packs, stored once) is reduced to a SHA-256, stored in
``tests/corpus/answers.json`` with the findings listed for a readable diff.

An answer may change only when a pack's version does. ``python
tests/corpus/regenerate.py`` adds new documents and drops gone ones; it refuses
to change a stored answer unless the installed packs' versions differ from the
stored ones (then it rewrites them all and says which packs changed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from case_library import load_cases
from example_docs import EXAMPLES, examples_with_unknowns

CORPUS = Path(__file__).parent / "corpus" / "answers.json"
BENCHMARK_DOCUMENTS = 600  # as tests/perf/bench_engine.py's default corpus, seed 7, drop 0.3
# Not part of an answer: new on every call, or the engine's own name and version. The packs'
# identities are stored once for the corpus (``packs``), so a change there reads as one message.
NOT_ANSWER = ("evaluation_id", "evaluated_at", "engine", "packs")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def documents() -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, facts) for the benchmark documents, the examples and every case, in a fixed order."""
    for i, doc in enumerate(examples_with_unknowns(BENCHMARK_DOCUMENTS, seed=7, drop=0.3)):
        yield f"benchmark/{i}", doc
    for path in sorted(EXAMPLES.glob("*.json")):
        yield f"examples/{path.name}", json.loads(path.read_text(encoding="utf-8"))
    for case_id, case in load_cases().items():
        if isinstance(case, Mapping) and isinstance(case.get("facts"), Mapping):
            yield f"cases/{case_id}", dict(case["facts"])


def answer_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of one result: its hash, and the findings for a readable diff."""
    answer = {k: v for k, v in result.items() if k not in NOT_ANSWER}
    return {
        "answer_sha256": hashlib.sha256(canonical(answer)).hexdigest(),
        "highest_urgency": result["highest_urgency"],
        "findings": [f["id"] for f in result["findings"]],
    }


def document_key(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()


def compute(engine: Any) -> dict[str, Any]:
    """Every document's answer from ``engine``, keyed by the SHA-256 of the document."""
    answers: dict[str, Any] = {}
    for label, doc in documents():
        result = engine.evaluate(doc).to_dict()
        answers.setdefault(document_key(doc), {"label": label, **answer_of(result)})
    return answers


def pack_identities(engine: Any) -> dict[str, dict[str, str]]:
    """Pack name -> its version and the SHA-256 of its rule files, as the result reports them."""
    packs = engine.evaluate({"facts_version": "1", "patient": {"id": "x"}}).to_dict()["packs"]
    return {p["name"]: {"version": p["version"], "sha256": p["sha256"]} for p in packs}


def load() -> dict[str, Any]:
    stored: dict[str, Any] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return stored
