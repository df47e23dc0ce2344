"""The core knows no clinical word: every clinical term lives in rulesets/, plugins/ and schemas/."""

from __future__ import annotations

import re
from pathlib import Path

import shared_data

CORE = Path(__file__).resolve().parents[1] / "core" / "neurocds"


def clinical_words() -> set[str]:
    words: set[str] = set()
    facts = (shared_data.SPEC / "facts-v1.md").read_text(encoding="utf-8")
    for path in re.findall(r"^\| `([a-z_.]+)`", facts, flags=re.M):
        words.add(path.split(".")[-1])
    packs = (shared_data.SPEC / "packs-v1.md").read_text(encoding="utf-8")
    words |= {finding.split(".")[-1] for finding in re.findall(r"`([a-z]+\.[a-z_]+)`", packs)}
    # Generic names that happen to be facts-v1 fields too.
    envelope = {"facts_version", "recorded_at", "age_years"}
    return {w for w in words if "_" in w and len(w) > 6} - envelope | {"potassium", "stroke", "cauda", "paraparesis"}


def test_core_code_names_no_fact_field_or_finding():
    words = clinical_words()
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        code = path.read_text(encoding="utf-8")
        for word in words:
            if re.search(rf"\b{re.escape(word)}\b", code, flags=re.I):
                offenders.append(f"{path.relative_to(CORE)}: {word}")
    assert offenders == [], offenders
