"""Same facts and pack versions, same answer: every document against the stored corpus, on both backends."""

from __future__ import annotations

import pytest
from answer_corpus import compute, load, pack_identities

from neurocds import Engine
from neurocds.engine import durable_available

BACKENDS = ["reference", pytest.param("durable", marks=pytest.mark.skipif(
    not durable_available()[0], reason="durable_rules cannot be imported on this Python"))]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_answer_is_the_stored_one(backend: str) -> None:
    stored = load()
    engine = Engine(packs=sorted(stored["packs"]), backend=backend)
    packs = pack_identities(engine)
    versions = {n: p["version"] for n, p in packs.items()}
    assert versions == {n: p["version"] for n, p in stored["packs"].items()}, (
        "the built-in packs' versions changed: run `python tests/corpus/regenerate.py` and commit the new answers"
    )
    edited = sorted(n for n, p in packs.items() if p["sha256"] != stored["packs"][n]["sha256"])
    assert not edited, f"the rule files of {edited} changed but their versions did not: bump the pack version"
    answers = compute(engine)
    missing = sorted(v["label"] for k, v in answers.items() if k not in stored["answers"])
    assert not missing, f"documents with no stored answer (run tests/corpus/regenerate.py): {missing[:10]}"
    differ = [
        f"{v['label']}: stored {stored['answers'][k]['findings']} ({stored['answers'][k]['highest_urgency']}), "
        f"now {v['findings']} ({v['highest_urgency']})"
        for k, v in answers.items()
        if v["answer_sha256"] != stored["answers"][k]["answer_sha256"]
    ]
    assert not differ, f"{len(differ)} answers changed with the same pack versions:\n" + "\n".join(differ[:20])
