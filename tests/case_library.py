"""The clinical case library (tests/cases/<pack>/*.yaml), read the same way by every test that checks it.

Also reads what the engine's own result says about a finding in one case (fired,
undecided because facts were not recorded, or decided false), so that tests
classify cases from the engine rather than from a hand-kept label.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from neurocds_packs import BUILTIN_PACKS  # noqa: F401  (re-exported: the packs the library is about)

CASES_DIR = Path(__file__).parent / "cases"

# The pointer every case sets to its own name: it never counts as a clinical difference between cases.
OWN_ID_POINTER = "/patient/id"


def load_cases() -> dict[str, dict[str, Any]]:
    """Case id ('<pack>/<file stem>') -> case, in file order."""
    cases = {}
    for path in sorted(CASES_DIR.glob("*/*.yaml")):
        with path.open(encoding="utf-8") as fh:
            cases[f"{path.parent.name}/{path.stem}"] = yaml.safe_load(fh)
    return cases


def leaf_facts(facts: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """JSON pointer -> value for every recorded leaf (a list, such as medications, is one leaf)."""
    out: dict[str, Any] = {}
    for key, value in facts.items():
        pointer = f"{prefix}/{key}"
        if isinstance(value, Mapping):
            out.update(leaf_facts(value, pointer))
        else:
            out[pointer] = value
    return out


def finding_state(trace: Mapping[str, Any], finding_id: str) -> str:
    """'fired', 'undecided' (some rule for it waits on unrecorded facts) or 'false' (every rule decided false).

    Read from the result's trace (schemas/trace.schema.json): each rule that did not
    fire carries ``state`` "false" or "unknown".
    """
    if any(entry["concludes"].get("finding") == finding_id for entry in trace["fired"]):
        return "fired"
    states = {entry["state"] for entry in trace["not_fired"] if entry["concludes"].get("finding") == finding_id}
    if not states:
        raise KeyError(f"no rule concludes {finding_id}")
    return "undecided" if "unknown" in states else "false"
