"""Reading the log file and checking the hash chain line by line.

Shared by the writer (which scans before it appends and refuses a damaged
chain) and the verifier (which adds schema, head-file and checkpoint checks).
The scan stops at the first broken link: past it nothing can be trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocds.audit._canon import canonical_json, loads, sha256_hex
from neurocds.audit.errors import AuditError
from neurocds.audit.records import GENESIS_HASH, record_hash

LOG_NAME = "audit.jsonl"
HEAD_NAME = "head.json"
CHECKPOINTS_NAME = "checkpoints.jsonl"
LOCK_NAME = "audit.lock"
# Group commit across processes (see :mod:`neurocds.audit.durable`): the lock one fsync at a
# time is taken under, the lock writers hold shared while their records await it, and the
# head of the newest record written (durable or not), which the next fsync publishes.
SYNC_LOCK_NAME = "audit.sync.lock"
IN_FLIGHT_NAME = "audit.inflight.lock"
PENDING_HEAD_NAME = "head.pending.json"
QUARANTINE_DIR = "quarantine"
# The name the writer gives the bytes of an interrupted write it moves aside:
# the last intact sequence, the file offset they were cut from, and their hash.
QUARANTINE_NAME_RE = re.compile(r"^torn-after-(\d+)-at-(\d+)-([0-9a-f]{16})\.bin$")


@dataclass(frozen=True)
class ChainProblem:
    """The first place the chain breaks.

    :param sequence: the first sequence number that cannot be trusted.
    :param code: ``unparseable``, ``envelope``, ``sequence``, ``noncanonical``, ``hash``,
        ``link`` or ``torn_tail``.
    """

    sequence: int
    code: str
    reason: str


@dataclass(frozen=True)
class Position:
    """Where the chain stood before a record: what a scan can be rolled back to."""

    last_sequence: int
    last_hash: str
    end: int
    last_line: bytes
    records: int


@dataclass
class ScanResult:
    """What a scan found: the intact prefix and the first problem after it."""

    last_sequence: int
    last_hash: str
    end: int  # file offset just past the last intact record
    last_line: bytes = b""  # raw bytes of the last intact record (with its newline)
    problem: ChainProblem | None = None
    problem_offset: int | None = None
    tail: bytes = b""  # bytes after the last newline (an unfinished write)
    records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # Set while the records read last belong to an append that is not finished
    # (each carries ``atomic_with_next``): where the chain stood before that append.
    open_append: Position | None = None

    def position(self) -> Position:
        return Position(self.last_sequence, self.last_hash, self.end, self.last_line, self.records)

    def roll_back(self, to: Position) -> None:
        self.last_sequence, self.last_hash, self.end = to.last_sequence, to.last_hash, to.end
        self.last_line, self.records, self.open_append = to.last_line, to.records, None

    def first_problem(self) -> ChainProblem | None:
        """The first thing wrong: an unfinished append starts before the torn line ending it."""
        unfinished = self.unfinished_append()
        if unfinished is not None and (self.problem is None or self.problem.code in ("torn_tail", "unparseable")):
            return unfinished
        return self.problem

    def unfinished_append(self) -> ChainProblem | None:
        """The problem an unfinished several-record append at the end of the log is."""
        start = self.open_append
        if start is None:
            return None
        return ChainProblem(
            start.last_sequence + 1,
            "torn_tail",
            f"records {start.last_sequence + 1}..{self.last_sequence} are the start of an append of "
            "several records that did not finish (an interrupted write)",
        )


OnRecord = Callable[[dict[str, Any], int, int, bytes], None]


def _check_line(line: bytes, expected: int, prev_hash: str) -> tuple[dict[str, Any] | None, ChainProblem | None]:
    """Parse one newline-stripped line and check it against the chain so far."""
    try:
        record = loads(line)
    except ValueError:  # UnicodeDecodeError is one
        return None, ChainProblem(expected, "unparseable", "record is not valid JSON (damaged bytes)")
    if not isinstance(record, dict):
        return None, ChainProblem(expected, "unparseable", "record is not a JSON object")
    seq = record.get("sequence")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None, ChainProblem(expected, "envelope", "record has no integer sequence number")
    if not isinstance(record.get("hash"), str) or not isinstance(record.get("prev_hash"), str):
        return None, ChainProblem(expected, "envelope", "record lacks hash or prev_hash")
    if seq > expected:
        return None, ChainProblem(
            expected,
            "sequence",
            f"expected sequence {expected} here but found {seq}: record {expected} was deleted or moved",
        )
    if seq < expected:
        if seq == expected - 1:
            # Two records 'seq' in a row, both claiming the same place: either may be the
            # intruder, so the earlier is the first that can no longer be trusted.
            return None, ChainProblem(
                seq,
                "sequence",
                f"expected sequence {expected} here but found {seq} again: record {seq} was duplicated, "
                "or a record was inserted before it",
            )
        # An earlier number again, further on: record 'seq' checked out where it stands,
        # so the one out of place is this line, at the position of sequence 'expected'.
        return None, ChainProblem(
            expected,
            "sequence",
            f"expected sequence {expected} here but found {seq} again: a copy of record {seq}, or a record "
            "moved here (duplicated, inserted or reordered)",
        )
    if not _is_canonical(record, line):
        return None, ChainProblem(expected, "noncanonical", _why_noncanonical(line))
    if _hash_of_canonical(record, line) != record["hash"]:
        return None, ChainProblem(expected, "hash", "record content does not match its own hash (edited)")
    if record["prev_hash"] != prev_hash:
        if expected == 1:
            return None, ChainProblem(1, "link", "first record does not start the chain")
        # Either the previous record was altered and re-hashed, or this record's
        # link was; the earlier of the two is the first one we cannot trust.
        return None, ChainProblem(
            expected - 1,
            "link",
            f"record {expected - 1} does not match the hash that record {expected} "
            f"commits to (record {expected - 1} altered and re-hashed, or a record inserted)",
        )
    return record, None


def parse_record(line: bytes) -> dict[str, Any] | None:
    """What ``line`` holds if it reads as a record: a JSON object with an integer ``sequence``
    (``true`` is not one, though Python counts it as 1).

    Nothing more is checked: lenient readers list such lines even past damage, and
    :func:`check_alone` checks them further."""
    try:
        record = loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    sequence = record.get("sequence")
    return record if isinstance(sequence, int) and not isinstance(sequence, bool) else None


def check_alone(line: bytes) -> dict[str, Any] | None:
    """The record on ``line`` (no newline) if it is intact on its own: parses, is
    canonical and matches its own hash. Its links to its neighbours are not checked."""
    record = parse_record(line)
    if record is None or not isinstance(record.get("prev_hash"), str):
        return None
    checked, problem = _check_line(line, record["sequence"], record["prev_hash"])
    return checked if problem is None else None


def _hash_of_canonical(record: dict[str, Any], line: bytes) -> str:
    """:func:`record_hash` of a record whose ``line`` is canonical, without encoding it again.

    The canonical form of the record without ``hash`` is its line with the top-level
    ``hash`` member cut out (members stay sorted). Only the top-level member sits
    right before ``prev_hash`` with the record's own hash as value; a nested copy would
    have to hold the hash of bytes that contain it.
    """
    member = b'"hash":' + canonical_json(record["hash"])
    at = line.find(b"," + member + b',"prev_hash":')
    if at >= 0:
        return sha256_hex(line[:at] + line[at + 1 + len(member) :])
    if line.startswith(b"{" + member + b","):
        return sha256_hex(b"{" + line[2 + len(member) :])
    return record_hash(record)


def _is_canonical(record: dict[str, Any], line: bytes) -> bool:
    """Whether ``line`` is exactly the one byte form the writer gives ``record``.

    The hash covers the parsed record, so bytes that parse to the same record must
    be refused on their own: a duplicate member name (most parsers keep the last
    value, some the first, so readers could disagree on what the record says),
    added spaces, a CR line end, escaped characters or a NaN are all edits.
    """
    try:
        return canonical_json(record, parsed=True) == line
    except AuditError:  # NaN, a lone surrogate: nothing the writer ever wrote
        return False


def _why_noncanonical(line: bytes) -> str:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        duplicates.extend(sorted({k for k in keys if keys.count(k) > 1}))
        return dict(items)

    json.loads(line.decode("utf-8"), object_pairs_hook=pairs)
    if duplicates:
        detail = f"member name {duplicates[0]!r} appears twice (parsers disagree on which value counts)"
    elif line.endswith(b"\r"):
        detail = "the line ends in CR LF"
    else:
        detail = "it was re-serialised (spacing, member order, escapes or number form changed)"
    return f"record bytes are not the canonical encoding the writer produces: {detail}"


def scan(
    data: bytes,
    *,
    base_offset: int = 0,
    prev_sequence: int = 0,
    prev_hash: str = GENESIS_HASH,
    on_record: OnRecord | None = None,
    into: ScanResult | None = None,
) -> ScanResult:
    """Check the chain in ``data`` (bytes read from ``base_offset`` of the file).

    ``prev_sequence``/``prev_hash`` describe the intact record just before
    ``base_offset`` (zero and the genesis hash at the file's start). With ``into``,
    the scan goes on from where that earlier result ended (``base_offset`` is its end).
    """
    result = into or ScanResult(last_sequence=prev_sequence, last_hash=prev_hash, end=base_offset)
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            result.tail = data[pos:]
            result.problem = ChainProblem(
                result.last_sequence + 1,
                "torn_tail",
                f"{len(result.tail)} bytes after sequence {result.last_sequence} have no line "
                "end (an interrupted write, or a record cut short)",
            )
            result.problem_offset = base_offset + pos
            return result
        line = data[pos:nl]
        record, problem = _check_line(line, result.last_sequence + 1, result.last_hash)
        if problem is not None:
            result.problem = problem
            result.problem_offset = base_offset + pos
            return result
        assert record is not None
        if record.get("atomic_with_next") is not True:
            result.open_append = None
        elif result.open_append is None:
            result.open_append = result.position()
        if on_record is not None:
            on_record(record, base_offset + pos, base_offset + nl + 1, line)
        result.last_sequence = record["sequence"]
        result.last_hash = record["hash"]
        result.last_line = data[pos : nl + 1]
        result.end = base_offset + nl + 1
        result.records += 1
        pos = nl + 1
    return result


def scan_file(
    path: Path,
    *,
    on_record: OnRecord | None = None,
    chunk: int = 4 << 20,
    into: ScanResult | None = None,
    digest: Any = None,
) -> ScanResult:
    """:func:`scan` of a whole log file, read in chunks: memory stays flat in the log's length.

    :param into: go on from the chain this earlier result ends with (the segment before
        this file); offsets are this file's own.
    :param digest: a ``hashlib`` object fed every byte of the file as it is read.
    """
    result = into or ScanResult(last_sequence=0, last_hash=GENESIS_HASH, end=0)
    result.end = 0
    offset, carry = 0, b""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if digest is not None:
                digest.update(block)
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if cut:
                scan(data[:cut] if cut < len(data) else data,
                     base_offset=offset, on_record=on_record, into=result)  # fmt: skip
                if result.problem is not None:
                    return result
                offset += cut
            carry = data[cut:]
    if carry:
        scan(carry, base_offset=offset, on_record=on_record, into=result)
    return result


def count_lines(path: Path, offset: int) -> tuple[int, int]:
    """Lines from ``offset`` to the end of the file, and how many of them look like checkpoint
    records: a count of what is there past damage, with nothing checked."""
    lines = checkpoints = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            if not line.strip():
                continue
            lines += 1
            checkpoints += b'"type":"checkpoint"' in line
    return lines, checkpoints


def read_head(directory: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The head file's content, or ``(None, why)`` when missing or unreadable."""
    return read_head_at(directory / HEAD_NAME)


def read_head_at(path: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`read_head` of the head file at ``path`` (a path joined once: this runs at every append)."""
    try:
        head = loads(read_whole(path))  # read before every append: orjson, not json
    except FileNotFoundError:
        return None, "head file is missing"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"head file is unreadable: {exc}"
    if not isinstance(head, dict) or not isinstance(head.get("sequence"), int) or not isinstance(head.get("hash"), str):
        return None, "head file does not hold a sequence and a hash"
    return head, None


def read_whole(path: Path | str) -> bytes:
    """A head file's bytes, read under a shared ``flock``: it is rewritten in place (one
    block, under an exclusive one) by whichever process publishes a group commit, while
    others read it, and a read racing a write could otherwise see half of each."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        parts = []
        while chunk := os.read(fd, 1 << 16):  # a head is one 512-byte block, rarely a little more
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)  # closing releases the flock


def read_checkpoint_file(path: Path) -> tuple[list[dict[str, Any]], list[str], bytes]:
    """Entries of a checkpoint file (one JSON object a line), unreadable lines, and
    any unfinished last line (an interrupted write: no line end)."""
    entries: list[dict[str, Any]] = []
    bad: list[str] = []
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return entries, bad, b""
    lines = raw.split(b"\n")
    partial = lines.pop()  # b"" when the file ends with a line end
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            bad.append(f"{path.name} line {n} is not valid JSON")
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad.append(f"{path.name} line {n} is not a JSON object")
    return entries, bad, partial


def awaits_recovery(name: str, data: bytes, last_sequence: int, end: int) -> bool:
    """Whether quarantine file ``name`` holds the bytes the writer cut off the log's
    end just now (after ``last_sequence``, at offset ``end``) and whose recovery
    record it has not written yet, because it stopped in between.

    Any other file in the quarantine directory that no recovery record names is
    unexplained: the writer does not record it, and verification reports it.
    """
    match = QUARANTINE_NAME_RE.match(name)
    return (
        match is not None
        and int(match.group(1)) == last_sequence
        and int(match.group(2)) == end
        and sha256_hex(data)[:16] == match.group(3)
    )
