"""What the chain store knows between appends: the log's head and what later checks need.

Kept apart from :mod:`neurocds.audit.store` (which reads, writes and recovers the files)
because it is plain data, updated from each intact record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocds.audit.chain import ScanResult

_RECENT = 256  # how many recent sequence->hash pairs to keep for head checks


@dataclass(frozen=True)
class Appended:
    """What an append returned: the record is on disk (fsynced) when you hold this."""

    sequence: int
    hash: str
    type: str


@dataclass
class StoreState:
    inode: int
    scan: ScanResult
    last_checkpoint_seq: int = 0
    last_checkpoint_body: dict[str, Any] | None = None
    quarantined: set[str] = field(default_factory=set)
    recent: dict[int, str] = field(default_factory=dict)
    mirrored_through: int = 0  # checkpoint sequence known to be in the mirror file
    last_checkpoint_at: tuple[int, int] | None = None  # file offset and length of its line
    segment_day: str | None = None  # UTC date of the active segment's first record, once read

    def note(self, record: Mapping[str, Any], start: int | None = None, end: int | None = None) -> None:
        """Track what later checks need from each intact record (at ``start``..``end`` of the file)."""
        seq = record["sequence"]
        self.recent[seq] = record["hash"]
        self.recent.pop(seq - _RECENT, None)  # sequences only grow: drop the oldest
        if record.get("type") == "checkpoint":
            self.last_checkpoint_seq = seq
            self.last_checkpoint_body = dict(record["checkpoint"])
            self.last_checkpoint_at = (start, end - start) if start is not None and end is not None else None
        elif record.get("type") == "recovery":
            name = record["recovery"].get("quarantine_file")
            if isinstance(name, str):
                self.quarantined.add(Path(name).name)

    def head_index(self) -> dict[str, Any]:
        """What the head file keeps beside the sequence and hash, so that opening the log
        reads its tail only (see :meth:`neurocds.audit.store.ChainStore.sync`)."""
        out: dict[str, Any] = {
            "offset": self.scan.end,
            "last_length": len(self.scan.last_line),
            "mirrored_through": self.mirrored_through,
            "quarantined": sorted(self.quarantined),
        }
        if self.last_checkpoint_at is not None:
            offset, length = self.last_checkpoint_at
            out["checkpoint"] = {"sequence": self.last_checkpoint_seq, "offset": offset, "length": length}
        return out
