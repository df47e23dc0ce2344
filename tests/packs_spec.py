"""The finding and derived-fact ids of the packs contract (packs-v1.md), parsed from its markdown tables.

Tests follow the spec itself rather than a copy of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import shared_data

URGENCIES = ("emergency", "urgent", "routine", "info")


def spec_path() -> Path:
    return shared_data.SPEC / "packs-v1.md"


def parse_spec(text: str) -> dict[str, dict[str, set[str] | None]]:
    """pack name -> {finding or derived-fact id -> set of urgencies (None for derived facts)}."""
    packs: dict[str, dict[str, set[str] | None]] = {}
    pack = None
    for line in text.splitlines():
        heading = re.match(r"^## ([a-z][a-z0-9-]*)", line)
        if heading:
            pack = heading.group(1)
            packs[pack] = {}
            continue
        row = re.match(r"^\|\s*`([a-z_]+\.[a-z0-9_.]+)`(?:\s*\([^)]*\))?\s*\|(.*)$", line)
        if pack is None or row is None:
            continue
        cells = [c.strip() for c in row.group(2).split("|")]
        if pack == "weakness-pattern":
            packs[pack][row.group(1)] = None
            continue
        # The urgency cell: one word, or "emergency if ..., else urgent" (both are required).
        packs[pack][row.group(1)] = {u for u in URGENCIES if re.search(rf"\b{u}\b", cells[0])}
    return packs


def spec_finding_ids() -> set[str]:
    """Every finding id of packs-v1 (derived facts of the foundation pack excluded)."""
    spec = parse_spec(spec_path().read_text(encoding="utf-8"))
    return {item for items in spec.values() for item, urgencies in items.items() if urgencies is not None}
