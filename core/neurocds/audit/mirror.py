"""The checkpoint mirror ``checkpoints.jsonl``: a copy of every signed checkpoint.

It only copies chain records, so it holds nothing the chain does not; a copy kept
off the host (``verify --checkpoints``) reveals a rollback of the whole directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neurocds.audit._canon import canonical_json
from neurocds.audit.chain import CHECKPOINTS_NAME, read_checkpoint_file
from neurocds.audit.files import truncate_synced, write_synced

log = logging.getLogger("neurocds.audit")


def mirror_checkpoint(directory: Path, checkpoint_sequence: int, body: Mapping[str, Any]) -> None:
    """Append one checkpoint (fsynced), after cutting any line a crash left unfinished."""
    entry = canonical_json({"checkpoint_sequence": checkpoint_sequence, **body}) + b"\n"
    drop_partial_line(directory)
    write_synced(directory / CHECKPOINTS_NAME, entry, os.O_APPEND | os.O_CREAT)


def drop_partial_line(directory: Path) -> None:
    """Cut a mirror line left unfinished by a crash; the full entry is written again from the chain."""
    path = directory / CHECKPOINTS_NAME
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        truncate_synced(path, data.rfind(b"\n") + 1)
        log.warning("audit: dropped an unfinished line from %s", CHECKPOINTS_NAME)


def repair(directory: Path, checkpoint_sequence: int, body: Mapping[str, Any]) -> None:
    """Copy the chain's latest checkpoint to the mirror when a crash came in between."""
    entries, _, partial = read_checkpoint_file(directory / CHECKPOINTS_NAME)
    if partial:
        drop_partial_line(directory)
    if checkpoint_sequence not in {e.get("checkpoint_sequence") for e in entries}:
        mirror_checkpoint(directory, checkpoint_sequence, body)
