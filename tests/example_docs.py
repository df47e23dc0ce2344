"""The repository's example facts documents, and variants of them with facts left unrecorded."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def examples_with_unknowns(count: int, *, seed: int, drop: float = 0.4) -> Iterator[dict[str, Any]]:
    """``count`` example documents (cycling), each clinical field removed with probability ``drop``.

    Removing fields makes rules undecided as well as true and false, in proportions like real
    records, so explanations of every kind get exercised.
    """
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    examples = [d for d in examples if d.get("facts_version") == "1"]
    rng = random.Random(seed)
    for i in range(count):
        doc = json.loads(json.dumps(examples[i % len(examples)]))
        for section in [k for k, v in doc.items() if isinstance(v, dict) and k != "patient"]:
            for key in list(doc[section]):
                if rng.random() < drop:
                    del doc[section][key]
        yield doc
