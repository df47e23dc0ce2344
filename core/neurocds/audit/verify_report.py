"""What ``verify`` found: the report, its problems and checkpoints, and its text for a terminal.

Kept apart from :mod:`neurocds.audit.verify` (which does the checking) for length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong. ``sequence`` is the first record that cannot be trusted."""

    sequence: int | None
    code: str
    reason: str


@dataclass
class CheckpointStatus:
    """A checkpoint record in the chain and what its check found."""

    checkpoint_sequence: int
    covers: int
    key_id: str
    signature: str = "unchecked"  # "valid", "invalid" or "unchecked" (no public key)
    consistent: bool = True  # signs the record right before it, as written


@dataclass
class VerifyReport:
    directory: str
    records: int = 0  # records of the intact chain
    records_after_damage: int = 0  # lines past the first break (not checked, only counted)
    checkpoints_after_damage: int = 0
    last_sequence: int = 0
    last_hash: str = ""  # of the last intact record
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointStatus] = field(default_factory=list)
    public_key_id: str | None = None
    first_sequence: int = 1  # first sequence checked: later than 1 when old segments were archived away
    archived: dict[str, Any] | None = None  # the sealed segment before the oldest file present, as named
    segments: list[str] = field(default_factory=list)  # the files read, oldest first
    segment: str | None = None  # the one segment file checked on its own (``verify --segment``)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_sequence(self) -> int | None:
        seqs = [p.sequence for p in self.problems if p.sequence is not None]
        return min(seqs) if seqs else None

    @property
    def verified_through(self) -> int:
        """Last sequence of the prefix with no known problem (0: none).

        Problems that name no sequence (a stray file, an unreadable checkpoint copy)
        leave every record verified, though the log as a whole fails.
        """
        first = self.first_bad_sequence
        return self.last_sequence if first is None else min(first - 1, self.last_sequence)

    def covering_checkpoint(self, sequence: int) -> CheckpointStatus | None:
        """The earliest sound checkpoint signing a head at or after ``sequence``."""
        for cp in self.checkpoints:
            if (
                cp.consistent
                and cp.signature != "invalid"
                and cp.covers >= sequence
                and cp.checkpoint_sequence <= self.verified_through
            ):
                return cp
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            ok=self.ok,
            first_bad_sequence=self.first_bad_sequence,
            verified_through=self.verified_through,
        )
        return out


def lower_bound(report: VerifyReport, sequence: int) -> int:
    """First record after the last sound checkpoint before ``sequence``.

    A consistent rewrite cannot be pinned to one record: it lies somewhere
    after the newest checkpoint that still verifies.
    """
    good = [
        cp.covers for cp in report.checkpoints if cp.consistent and cp.signature != "invalid" and cp.covers < sequence
    ]
    return max(good, default=0) + 1


def format_report(report: VerifyReport) -> str:
    """Plain-text summary for a terminal."""
    lines = [f"audit log {report.directory}: {report.records} records, last sequence {report.last_sequence}"]
    if report.first_sequence > 1:
        span = f"sequences {report.first_sequence}..{report.last_sequence}"
        lines[0] = f"audit log {report.directory}: {report.records} records, {span}"
    if report.segment is not None:
        start = report.archived["last_hash"] if report.archived else "0" * 64
        lines[0] = (
            f"segment {report.segment}: {report.records} records, sequences {report.first_sequence}.."
            f"{report.last_sequence}; goes on from hash {start} and ends with hash {report.last_hash} "
            "(the segment after it must name that hash)"
        )
    if report.records_after_damage:
        lines[0] = (
            f"audit log {report.directory}: {report.records + report.records_after_damage} records in the file; "
            f"the chain holds for the first {report.records} (through sequence {report.last_sequence}), "
            f"{report.records_after_damage} follow the damage"
        )
    if report.ok:
        lines.append("PASS: chain intact")
    else:  # with no first bad sequence, every record checks out and something beside them does not
        first = report.first_bad_sequence
        lines.append(f"FAIL: first bad sequence {first}" if first is not None else f"FAIL: {report.problems[0].reason}")
        for p in sorted(report.problems, key=lambda p: (p.sequence is None, p.sequence or 0)):
            where = f"sequence {p.sequence}" if p.sequence is not None else "log"
            lines.append(f"  {where} [{p.code}]: {p.reason}")
    if report.segment is None and (len(report.segments) > 1 or report.archived):
        lines.insert(1, f"segments read: {len(report.segments)} ({report.segments[0]} .. {report.segments[-1]})")
    if report.archived and report.segment is None:
        lines.append(_archived_statement(report))
    signed = [cp for cp in report.checkpoints if cp.signature == "valid"]
    lines.append(f"checkpoints: {len(report.checkpoints)} in chain, {len(signed)} signature-verified")
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)


def _archived_statement(report: VerifyReport) -> str:
    """What was not verified because its segments are not in the directory, and how to check them."""
    a = report.archived or {}
    return (
        f"NOT VERIFIED HERE: sequences 1..{report.first_sequence - 1} are in segments archived away "
        f"(the latest of them, {a.get('file')}, holds {a.get('first_sequence')}..{a.get('last_sequence')}). "
        f"Sequences {report.first_sequence}.. verify against them only as far as the oldest file present "
        f"commits to that segment: last hash {a.get('last_hash')}, SHA-256 {a.get('sha256')}, "
        f"{a.get('bytes')} bytes. Check an archived copy with `neurocds audit verify --segment FILE`."
    )
