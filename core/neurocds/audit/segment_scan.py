"""Checking the chain through every segment file present, one file, or a log whose old segments
were archived away; the verifier's reading of :mod:`neurocds.audit.segments`.

The chain runs through the files as through one: each file's first record (a ``segment``
record) links to the last record of the file before it. On top of the chain, each
``segment`` record's account of the sealed file before it (name, sequences, last hash,
size and SHA-256 of its bytes) is checked against that file as read, and each sealed
file's name against the sequences it holds. When the oldest files present start with a
``segment`` record, the files before them are not here (archived): their records are not
verified, and the report says which sequences those are and the hash and SHA-256 the
files present commit them to, so the archived copy can be verified on its own against it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocds.audit.chain import ScanResult, count_lines, scan_file
from neurocds.audit.segments import Segment, chain_start, list_segments


@dataclass
class SegmentScan:
    """What a scan across segment files found."""

    result: ScanResult  # the chain through every file read; ``end`` is an offset in ``stopped_in``
    segments: list[Segment] = field(default_factory=list)  # the files read, in order
    stopped_in: Segment | None = None  # the file the chain breaks in (``None``: it does not)
    problems: list[tuple[int | None, str, str]] = field(default_factory=list)  # (sequence, code, reason)
    notes: list[str] = field(default_factory=list)
    archived: dict[str, Any] | None = None  # the segment before the oldest file present, when not here
    first_sequence: int = 1  # first sequence this scan checks

    def lines_after_damage(self) -> tuple[int, int]:
        """Lines (and checkpoint lines) from the break to the end of the log, counted unchecked."""
        if self.stopped_in is None or self.result.problem_offset is None:
            return 0, 0
        lines, checkpoints = count_lines(self.stopped_in.path, self.result.problem_offset)
        later = self.segments[self.segments.index(self.stopped_in) + 1 :]
        for seg in later:
            more = count_lines(seg.path, 0)
            lines, checkpoints = lines + more[0], checkpoints + more[1]
        return lines, checkpoints


def scan_segments(directory: Path, on_record: Any = None, *, only: Path | None = None) -> SegmentScan:
    """Check the chain through the segment files of ``directory`` (or the one file ``only``)."""
    files = [Segment(Path(only))] if only is not None else list_segments(Path(directory))
    start = chain_start(files[0].path) if files else None
    out = SegmentScan(ScanResult(0, "0" * 64, 0))
    if start is not None and start.segment is not None:
        out.result = ScanResult(start.prev_sequence, start.prev_hash, 0)
        out.archived = dict(start.segment["segment"]["previous"])
        out.first_sequence = start.prev_sequence + 1
    else:
        from neurocds.audit.records import GENESIS_HASH

        out.result = ScanResult(0, GENESIS_HASH, 0)
    read: list[tuple[Segment, str, int, int]] = []  # file, sha256, size, first sequence
    for seg in files:
        if read:
            _check_link(out, read[-1], seg)
            if out.problems and out.problems[-1][1] == "segment_missing":
                break
        first = out.result.last_sequence + 1
        digest = hashlib.sha256()
        out.segments.append(seg)
        scan_file(seg.path, on_record=on_record, into=out.result, digest=digest)
        if out.result.problem is not None:
            out.stopped_in = seg
            break
        size = os.path.getsize(seg.path)
        if seg.sealed and (seg.first, seg.last) != (first, out.result.last_sequence):
            held = f"{first}..{out.result.last_sequence}"
            why = f"{seg.label} holds sequences {held} but is named for {seg.first}..{seg.last} (renamed)"
            out.problems.append((first, "segment_name", why))
        read.append((seg, digest.hexdigest(), size, first))
    return out


def _check_link(out: SegmentScan, before: tuple[Segment, str, int, int], seg: Segment) -> None:
    """The ``segment`` record opening ``seg`` describes the file read before it, as read."""
    prev, sha, size, first = before
    start = chain_start(seg.path)
    claim = start.segment["segment"]["previous"] if start.segment is not None else None
    expected = out.result.last_sequence + 1
    if claim is None:
        return  # the scan names what is wrong with its first record (it must link on)
    if claim["file"] != prev.path.name and claim["first_sequence"] > expected - 1:
        out.problems.append((expected, "segment_missing",
                             f"segment {claim['file']} (sequences {claim['first_sequence']}.."
                             f"{claim['last_sequence']}) is missing between {prev.label} and {seg.label} "
                             "(removed; only the oldest segments may be archived away)"))  # fmt: skip
        return
    actual = {"file": prev.path.name, "first_sequence": first, "last_sequence": out.result.last_sequence,
              "last_hash": out.result.last_hash, "sha256": sha, "bytes": size}  # fmt: skip
    wrong = sorted(k for k in actual if claim.get(k) != actual[k])
    if wrong:
        why = f"{prev.label} is not the segment {seg.label} commits to ({', '.join(wrong)} differ)"
        out.problems.append((first, "segment", f"{why}: it was altered or replaced after it was sealed"))
