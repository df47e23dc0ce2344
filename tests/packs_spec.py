"""The finding and derived-fact ids of the packs contract, parsed from its markdown tables.

Version 2 (packs-v2.md) is written as changes to version 1 (packs-v1.md): the current
contract is packs-v1's tables with packs-v2's "Added" table laid over them. Both are
parsed, so tests follow the spec itself rather than a copy of it, and a test that needs
version 1 (the replay of 1.0.0 decisions) can still read it.
"""

from __future__ import annotations

import re
from pathlib import Path

import shared_data

URGENCIES = ("emergency", "urgent", "routine", "info")


def spec_path() -> Path:
    """packs-v1.md: the base every later version changes."""
    return shared_data.SPEC / "packs-v1.md"


def v2_spec_path() -> Path:
    return shared_data.SPEC / "packs-v2.md"


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


def parse_v2_added(text: str) -> dict[str, dict[str, set[str]]]:
    """pack name -> {finding id -> urgencies} from the "## Added" table of packs-v2.md.

    Its rows are | `finding` | pack | urgency | minimum trigger |; an urgency cell such as
    "emergency; urgent when ..." names both urgencies, each of which must exist.
    """
    table = text.split("\n## Added", 1)[1].split("\n## ", 1)[0]
    added: dict[str, dict[str, set[str]]] = {}
    for line in table.splitlines():
        row = re.match(r"^\|\s*`([a-z_]+\.[a-z0-9_.]+)`\s*\|(.*)$", line)
        if row is None:
            continue
        pack, urgency = (c.strip() for c in row.group(2).split("|")[:2])
        added.setdefault(pack, {})[row.group(1)] = {u for u in URGENCIES if re.search(rf"\b{u}\b", urgency)}
    return added


def parse_v2(v1_text: str, v2_text: str) -> dict[str, dict[str, set[str] | None]]:
    """The version 2 contract: packs-v1's ids and urgencies with packs-v2's added findings.

    packs-v2 keeps every v1 id and urgency set (its changes alter triggers, and the
    electrolyte finding keeps "emergency ..., else urgent"), so only the Added table
    changes what ids exist and at which urgencies.
    """
    packs = parse_spec(v1_text)
    for pack, findings in parse_v2_added(v2_text).items():
        assert pack in packs, f"packs-v2 adds {sorted(findings)} to unknown pack {pack}"
        packs[pack].update(findings)
    return packs


def current_spec() -> dict[str, dict[str, set[str] | None]]:
    """The contract the installed packs implement (packs-v2 over packs-v1)."""
    return parse_v2(spec_path().read_text(encoding="utf-8"), v2_spec_path().read_text(encoding="utf-8"))


def spec_finding_ids() -> set[str]:
    """Every finding id of the current contract (derived facts of the foundation pack excluded)."""
    return {item for items in current_spec().values() for item, urgencies in items.items() if urgencies is not None}


def v2_changed_ids() -> set[str]:
    """Finding and derived-fact ids that packs-v2 changes or adds (first column of its Changed and Added tables)."""
    text = v2_spec_path().read_text(encoding="utf-8")
    out: set[str] = set()
    for heading in ("## Changed", "## Added"):
        table = text.split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
        for line in table.splitlines():
            first = line.split("|")[1] if line.startswith("|") else ""
            out |= set(re.findall(r"`([a-z_]+\.[a-z0-9_.]+)`", first))
    return out
