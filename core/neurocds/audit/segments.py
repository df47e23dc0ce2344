"""Segment files: the log rolls (by size or by day) so old parts can be archived and verified alone.

Layout::

    audit.jsonl                          the active segment: appends go here
    segments/000000000001-000000052311.jsonl   sealed segments, named by their first and
    segments/000000052312-000000104870.jsonl   last sequence, never written again

Every segment but the first starts with a ``segment`` record. It is chained like any
record (its ``prev_hash`` is the sealed segment's last hash, its sequence the next one)
and names the segment before it: file name, first and last sequence, last hash, size and
SHA-256 of the whole file. So the chain runs unbroken through every file, a sealed file
can be verified on its own (its records link from the hash its first record names), and
once it is archived elsewhere the segments left still commit to it by hash: verification
says exactly which sequences it checked and which it could not. When the writer holds a
signing key it signs a checkpoint as the last record of a segment before sealing it, so
each sealed segment ends in a signature covering the whole prefix.

Rolling is crash-safe. Under the log's lock the writer

1. writes the new active file (its ``segment`` record) as ``.audit.jsonl.next``, fsynced;
2. links ``audit.jsonl`` into ``segments/`` under its sealed name (same bytes, no copy);
3. renames ``.audit.jsonl.next`` over ``audit.jsonl``: there is an active file throughout;
4. rewrites the head file.

A crash after 1 leaves ``.audit.jsonl.next``, which the next writer finds (one ``stat`` per
append) and either finishes the roll from (step 2 done: the link is the active file) or
drops (it was not). A crash after 3 leaves a head file naming the sealed segment's last
record: the next append checks it against the hash the ``segment`` record carries and
records the lag, as after any crash between an append and its head update.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocds.audit.chain import LOG_NAME, ScanResult, check_alone
from neurocds.audit.errors import AuditError
from neurocds.audit.files import fsync_dir, write_synced
from neurocds.audit.records import GENESIS_HASH, schema_errors, seal_line, utc_now
from neurocds.audit.store_state import StoreState

SEGMENTS_DIR = "segments"
NEXT_NAME = ".audit.jsonl.next"  # the next active file, written before a roll links the old one away
SEGMENT_NAME_RE = re.compile(r"^(\d{12})-(\d{12})\.jsonl$")
_FIRST_LINE_MAX = 64 << 20  # a first line longer than this is no record the writer wrote


def sealed_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}.jsonl"


@dataclass(frozen=True)
class Segment:
    """One file of the log: a sealed segment (``first``..``last`` from its name) or the active one."""

    path: Path
    first: int | None = None
    last: int | None = None

    @property
    def sealed(self) -> bool:
        return self.first is not None

    @property
    def label(self) -> str:
        return f"{SEGMENTS_DIR}/{self.path.name}" if self.sealed else self.path.name


def list_segments(directory: Path) -> list[Segment]:
    """Sealed segments present, in sequence order, then the active file (when it exists and
    is not the last sealed file itself, which a crash part-way through a roll leaves).

    Files in ``segments/`` not named like a sealed segment are not part of the log.
    """
    out = []
    sdir = Path(directory) / SEGMENTS_DIR
    if sdir.is_dir():
        for name in os.listdir(sdir):
            match = SEGMENT_NAME_RE.match(name)
            if match:
                out.append(Segment(sdir / name, int(match.group(1)), int(match.group(2))))
    out.sort(key=lambda s: (s.first or 0, s.last or 0))
    active = Path(directory) / LOG_NAME
    if active.exists() and not (out and os.path.samefile(out[-1].path, active)):
        out.append(Segment(active))  # (the same file: a roll was interrupted after its link)
    return out


def locate(segments: list[Segment], sequence: int) -> Path | None:
    """The file that holds ``sequence`` (by the sealed files' names; else the active file)."""
    sealed_up_to = 0
    for seg in segments:
        if seg.sealed:
            assert seg.first is not None and seg.last is not None
            if seg.first <= sequence <= seg.last:
                return seg.path
            sealed_up_to = seg.last
        elif sequence > sealed_up_to and (sealed_up_to or len(segments) == 1):
            return seg.path
    return None  # in a segment archived away (or removed)


def first_line(path: Path) -> bytes | None:
    """The file's first line without its line end (``None``: empty, or no line end)."""
    with open(path, "rb") as fh:
        line = fh.readline(_FIRST_LINE_MAX)
    return line[:-1] if line.endswith(b"\n") else None


@dataclass(frozen=True)
class Start:
    """Where a file's chain starts: after ``prev_sequence`` with hash ``prev_hash``.

    ``segment`` is the file's opening ``segment`` record (``None``: the file starts the log,
    or its first record is not an intact segment record and it is read from the genesis).
    """

    prev_sequence: int
    prev_hash: str
    segment: dict[str, Any] | None = None


def chain_start(path: Path) -> Start:
    """Where the chain in ``path`` starts, from its first record (read and checked alone)."""
    line = first_line(path) if path.exists() else None
    record = check_alone(line) if line else None
    if record is None or record.get("type") != "segment" or not isinstance(record.get("segment"), dict):
        return Start(0, GENESIS_HASH)
    return Start(record["sequence"] - 1, record["prev_hash"], record)


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def first_day(path: Path) -> str | None:
    """The UTC date (``YYYY-MM-DD``) of the file's first record, for rolling by day."""
    line = first_line(path) if path.exists() else None
    record = check_alone(line) if line else None
    when = record.get("recorded_at") if record is not None else None
    return when[:10] if isinstance(when, str) else None


def write_next(directory: Path, line: bytes) -> None:
    """Step 1 of a roll: the next active file, durable before anything is renamed."""
    write_synced(Path(directory) / NEXT_NAME, line, os.O_CREAT | os.O_TRUNC)


def seal_and_switch(directory: Path, name: str) -> None:
    """Steps 2 and 3 of a roll: link the active file in as sealed segment ``name``, then put
    the next active file in its place. Safe to call again after a crash part-way."""
    directory = Path(directory)
    sdir = directory / SEGMENTS_DIR
    if not sdir.is_dir():
        sdir.mkdir(mode=0o700, exist_ok=True)
        fsync_dir(directory)
    target = sdir / name
    try:
        os.link(directory / LOG_NAME, target)
    except FileExistsError:
        if os.stat(target).st_ino != os.stat(directory / LOG_NAME).st_ino:
            raise
    fsync_dir(sdir)
    os.replace(directory / NEXT_NAME, directory / LOG_NAME)
    fsync_dir(directory)


def finish_interrupted_roll(directory: Path) -> bool:
    """Finish or drop a roll a crash interrupted (``.audit.jsonl.next`` is still there).

    :returns: whether the active file changed (a roll was finished).
    """
    directory = Path(directory)
    nxt = directory / NEXT_NAME
    line = first_line(nxt) if nxt.exists() else None
    record = check_alone(line) if line else None
    body = record.get("segment") if record is not None else None
    if record is None or not isinstance(body, dict) or not isinstance(body.get("previous"), dict):
        nxt.unlink(missing_ok=True)  # cut short before its fsync: the roll never started
        return False
    name = body["previous"].get("file")
    if not isinstance(name, str) or not SEGMENT_NAME_RE.match(name):
        nxt.unlink(missing_ok=True)
        return False
    target = directory / SEGMENTS_DIR / name
    if target.exists() or file_digest(directory / LOG_NAME)[0] == body["previous"].get("sha256"):
        # The link was made, or the active file is still exactly the segment to seal: finish.
        seal_and_switch(directory, name)
        return True
    nxt.unlink(missing_ok=True)  # the log moved on since: this roll is stale
    return False


def roll_due(directory: Path, state: StoreState, max_bytes: int | None, daily: bool) -> str | None:
    """Why the active segment should be sealed now: ``"size"``, ``"day"`` (``None``: it should not)."""
    if max_bytes is not None and state.scan.end >= max_bytes:
        return "size"
    if daily:
        if state.segment_day is None:
            state.segment_day = first_day(Path(directory) / LOG_NAME)
        if state.segment_day is not None and state.segment_day != utc_now()[:10]:
            return "day"
    return None


def roll(directory: Path, state: StoreState, reason: str) -> tuple[StoreState, str] | None:
    """Seal the active file as a segment and start the next one with its ``segment`` record.

    The caller holds the lock and has just synced ``state`` (no torn tail).
    :returns: the state of the new active file and the sealed file's name (``None``: the
        active file holds no record of its own to seal).
    """
    directory = Path(directory)
    active = directory / LOG_NAME
    first = chain_start(active).prev_sequence + 1
    last = state.scan.last_sequence
    if last < first or (last == first and b'"type":"segment"' in state.scan.last_line):
        return None  # nothing but its own segment record: no segment to seal
    digest, size = file_digest(active)
    name = sealed_name(first, last)
    previous = {"file": name, "first_sequence": first, "last_sequence": last, "last_hash": state.scan.last_hash,
                "sha256": digest, "bytes": size}  # fmt: skip
    record, line = seal_line("segment", {"reason": reason, "previous": previous},
                             sequence=last + 1, prev_hash=state.scan.last_hash)  # fmt: skip
    problems = schema_errors(record)
    if problems:
        raise AuditError(f"segment record does not match the audit schema: {problems[0]}")
    write_next(directory, line)
    seal_and_switch(directory, name)
    scan = ScanResult(last + 1, record["hash"], len(line), line, records=1)
    new = StoreState(inode=os.stat(active).st_ino, scan=scan)
    new.recent[last] = state.scan.last_hash
    new.note(record, 0, len(line))
    new.last_checkpoint_seq, new.last_checkpoint_body = state.last_checkpoint_seq, state.last_checkpoint_body
    new.mirrored_through, new.quarantined = state.mirrored_through, set(state.quarantined)
    return new, name
