"""The quarantine directory: bytes of interrupted writes, moved out of the log and never dropped.

The writer moves a torn tail here before it appends (each file named by the recovery
record it then writes); ``verify`` checks that every recorded file is there unchanged
and that every file there is recorded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neurocds.audit._canon import sha256_hex
from neurocds.audit.chain import LOG_NAME, QUARANTINE_DIR, QUARANTINE_NAME_RE, awaits_recovery
from neurocds.audit.files import replace_durably, truncate_synced

log = logging.getLogger("neurocds.audit")

# (first sequence that cannot be trusted or None, problem code, reason)
Found = tuple[int | None, str, str]


def move_to_quarantine(directory: Path, last_sequence: int, offset: int, torn: bytes) -> None:
    """Move ``torn`` (the bytes after record ``last_sequence``, from file offset ``offset`` to
    the end) out of the log into the quarantine directory: written and fsynced there first."""
    digest = sha256_hex(torn)
    qdir = directory / QUARANTINE_DIR
    qdir.mkdir(mode=0o700, exist_ok=True)
    name = f"torn-after-{last_sequence}-at-{offset}-{digest[:16]}.bin"
    path = qdir / name
    if not path.exists() or path.read_bytes() != torn:
        replace_durably(path, torn)
    # Only now, with the bytes safe elsewhere, cut them off the log.
    truncate_synced(directory / LOG_NAME, offset)
    log.warning(
        "audit: %d bytes of an interrupted write after record %d moved to %s",
        len(torn),
        last_sequence,
        f"{QUARANTINE_DIR}/{name}",
    )


def check_quarantine(
    d: Path, recoveries: list[tuple[int, dict[str, Any]]], last_sequence: int, intact_end: int, notes: list[str]
) -> Iterator[Found]:
    """Every recorded quarantine file is there unchanged, and every file there is recorded.

    Files a writer cut off just now and has not recorded yet are not problems: a note
    for each is added to ``notes``.
    """
    recorded: set[str] = set()
    for seq, body in recoveries:
        name = body.get("quarantine_file")
        if not isinstance(name, str):
            continue
        recorded.add(name)
        path = d / name
        if not path.is_file():
            yield seq, "quarantine", f"quarantined bytes {name} are gone"
        elif sha256_hex(path.read_bytes()) != body.get("sha256"):
            yield seq, "quarantine", f"quarantined bytes {name} were changed"
    qdir = d / QUARANTINE_DIR
    names = sorted(os.listdir(qdir)) if qdir.is_dir() else []
    for name in (n for n in names if f"{QUARANTINE_DIR}/{n}" not in recorded):
        path = qdir / name
        data = path.read_bytes() if path.is_file() else b""
        if awaits_recovery(name, data, last_sequence, intact_end):
            notes.append(
                f"{QUARANTINE_DIR}/{name}: bytes cut off the log's end by a writer that stopped before "
                "recording them; the next append records them"
            )
        else:
            yield (
                None,
                "quarantine",
                f"{QUARANTINE_DIR}/{name} is not accounted for: no recovery record names it, so the "
                "writer did not put it there (or its record was removed)",
            )


def recovery_bodies(directory: Path, recorded: set[str], last_sequence: int, end: int) -> list[dict[str, Any]]:
    """Bodies of the recovery records owed for bytes quarantined just before a crash.

    Only a file cut from where the log now ends counts (after ``last_sequence``, at
    offset ``end``): a recovery record must never vouch for a file the writer did not put
    there. Other files not in ``recorded`` are left alone (``verify`` reports them); their
    names are not logged, as a name chosen by someone else could hold anything.
    """
    qdir = directory / QUARANTINE_DIR
    if not qdir.is_dir():
        return []
    out: list[dict[str, Any]] = []
    unexplained = 0
    for name in sorted(os.listdir(qdir)):
        if name in recorded:
            continue
        data = (qdir / name).read_bytes() if (qdir / name).is_file() else b""
        if not awaits_recovery(name, data, last_sequence, end):
            unexplained += 1
            continue
        match = QUARANTINE_NAME_RE.match(name)
        assert match is not None
        out.append({
            "kind": "torn_tail",
            "after_sequence": int(match.group(1)),
            "offset": int(match.group(2)),
            "length": len(data),
            "sha256": sha256_hex(data),
            "quarantine_file": f"{QUARANTINE_DIR}/{name}",
        })  # fmt: skip
    if unexplained:
        log.warning("audit: %d file(s) in %s/ have no recovery record; `neurocds audit verify` lists them",
                    unexplained, QUARANTINE_DIR)  # fmt: skip
    return out
