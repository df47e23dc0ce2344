"""Verifying an audit directory: chain, schema, head file, checkpoints, quarantine.

What is detectable, and what is not
-----------------------------------
Each record carries SHA-256 of its own canonical content and of the record
before it. Without any key the verifier detects: any changed byte in a record
(bit flip, edited field) unless the record was re-hashed; bytes that are not
exactly the record's canonical encoding even where they parse to a record whose
hash matches (a duplicate member name, added spaces, CR LF line ends); a re-hashed edit
whose successors were left alone (the next link breaks); a deleted,
duplicated, inserted or reordered record (sequence numbers or links break); a
record cut short (torn line) or an append of several records cut short;
changed, deleted or unexplained quarantined bytes. The head
file (``head.json``, rewritten after every append) reveals removal of whole
trailing records and a rewrite of the last record, but it is unsigned: whoever
can write the directory can rewrite it too. A consistent rewrite (edit, insert
or delete, then re-hash every later record and the head file) needs no secret;
it is caught by any signed checkpoint after the change: a checkpoint signs
``(sequence, head hash, time)`` with an Ed25519 key kept outside the log
directory, so it cannot be re-made. Such a rewrite is located only to the span
after the last checkpoint that still verifies. Checkpoints are also copied to
``checkpoints.jsonl``, which reveals removal of trailing records up to the
newest checkpoint; a checkpoint file kept elsewhere (``verify --checkpoints``)
reveals it even when the whole directory was rolled back. Not detectable:
a consistent rewrite, or removal of trailing records together with the head
file, after the newest signed checkpoint; removal of trailing checkpoints and
records together with ``checkpoints.jsonl`` and the head file when no copy of
a checkpoint is kept elsewhere; new well-formed records appended at the end
(appending is what a writer does); deletion of the whole directory; anything
done by someone holding the private signing key; and without the public key,
checkpoint signatures are not checked. The log proves what was written was not
changed afterwards, not that it was true when written. Pseudonyms hide patient
ids only from those without the pseudonym key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from neurocds.audit.catalog import CATALOG_NAME, CatalogProblem, load_catalog
from neurocds.audit.chain import (
    CHECKPOINTS_NAME,
    LOG_NAME,
    count_lines,
    read_checkpoint_file,
    read_head,
    scan_file,
)
from neurocds.audit.errors import AuditError
from neurocds.audit.quarantine import check_quarantine
from neurocds.audit.records import schema_errors
from neurocds.audit.signing import check_signature, load_public_key, public_key_id

_BODY_KEYS = ("sequence", "head_hash", "signed_at", "key_id", "signature")


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
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointStatus] = field(default_factory=list)
    public_key_id: str | None = None

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


def _lower_bound(report: VerifyReport, sequence: int) -> int:
    """First record after the last sound checkpoint before ``sequence``.

    A consistent rewrite cannot be pinned to one record: it lies somewhere
    after the newest checkpoint that still verifies.
    """
    good = [
        cp.covers for cp in report.checkpoints if cp.consistent and cp.signature != "invalid" and cp.covers < sequence
    ]
    return max(good, default=0) + 1


def verify_log(
    directory: str | Path,
    *,
    public_key: Ed25519PublicKey | str | Path | None = None,
    external_checkpoints: Sequence[str | Path] = (),
) -> VerifyReport:
    """Check everything in an audit directory; never modifies it.

    :param public_key: the checkpoint public key (object or PEM path). Without it
        signatures are not checked (a note says so) but everything else is.
    :param external_checkpoints: checkpoint files kept outside the directory.
    :raises AuditError: ``directory`` is not a directory or a key cannot be read.
    """
    d = Path(directory)
    if not d.is_dir():
        raise AuditError(f"{d} is not an audit directory")
    if isinstance(public_key, (str, Path)):
        public_key = load_public_key(Path(public_key))
    report = VerifyReport(directory=str(d))
    if public_key is not None:
        report.public_key_id = public_key_id(public_key)
    log_path = d / LOG_NAME
    if not log_path.exists():
        report.problems.append(Problem(1, "missing", f"{LOG_NAME} is missing"))
        return report
    head, head_why = read_head(d)
    head_seq = head["sequence"] if head is not None else None
    hashes: dict[int, str] = {}  # only the one record the head file names: memory stays flat
    chain_cps: dict[int, dict[str, Any]] = {}
    quarantine: list[tuple[int, dict[str, Any]]] = []

    catalog, catalog_problem = load_catalog(d)
    unbound: list[int] = []

    def on_record(record: dict[str, Any], _start: int, _end: int, _line: bytes) -> None:
        seq = record["sequence"]
        errors = schema_errors(record)
        if errors:
            report.problems.append(Problem(seq, "schema", f"record breaks the schema: {errors[0]}"))
        elif (
            record["type"] == "decision"
            and "explanation" in record["decision"]
            and not catalog.binds(record["decision"]["explanation"]["catalog"])
        ):
            unbound.append(seq)
        if seq == head_seq:
            hashes[seq] = record["hash"]
        body = record.get(str(record.get("type")))
        if record.get("type") == "checkpoint" and isinstance(body, dict):
            chain_cps[seq] = body
            _check_chain_checkpoint(report, seq, body, record["prev_hash"], public_key)
        elif record.get("type") == "recovery" and isinstance(body, dict):
            quarantine.append((seq, body))

    result = scan_file(log_path, on_record=on_record)
    _check_catalog(report, catalog_problem, unbound)
    report.records = result.records
    if result.problem_offset is not None:
        report.records_after_damage, report.checkpoints_after_damage = count_lines(log_path, result.problem_offset)
    report.last_sequence = last = result.last_sequence
    p = result.first_problem()
    if p is not None:
        report.problems.append(Problem(p.sequence, p.code, p.reason))
    _check_head(report, head, head_why, hashes, chain_intact=result.problem is None)
    files = [(d / CHECKPOINTS_NAME, CHECKPOINTS_NAME, True)]
    files += [(Path(p), f"checkpoint file {p}", False) for p in external_checkpoints]
    for path, label, is_mirror in files:
        _check_checkpoint_file(report, path, label, chain_cps, last, public_key, result.problem is None, is_mirror)
    found = check_quarantine(d, quarantine, report.last_sequence, result.end, report.notes)
    report.problems.extend(Problem(*item) for item in found)
    if chain_cps and public_key is None:
        report.notes.append("checkpoint signatures not checked: no public key given")
    if report.checkpoints_after_damage:
        report.notes.append(
            f"{report.checkpoints_after_damage} checkpoint record(s) after the damage were not checked: "
            "past a break in the chain nothing can be trusted"
        )
    elif not chain_cps:
        report.notes.append("no signed checkpoints: a consistent rewrite would go unnoticed")
    return report


def _check_catalog(report: VerifyReport, problem: CatalogProblem | None, unbound: list[int]) -> None:
    """The explanation catalog is intact as far as any record reaches into it."""
    if unbound:
        why = problem.reason if problem is not None else "entries were removed or replaced"
        report.problems.append(
            Problem(
                unbound[0],
                "catalog",
                f"{len(unbound)} decision record(s) from sequence {unbound[0]} on name explanation catalog "
                f"entries the catalog no longer holds as written ({why}): their why/why-not cannot be shown",
            )
        )
    elif problem is not None:
        report.problems.append(Problem(None, "catalog", f"{CATALOG_NAME}: {problem.reason} (no record uses it)"))


def _check_chain_checkpoint(
    report: VerifyReport,
    seq: int,
    body: dict[str, Any],
    prev_hash: str,
    public_key: Ed25519PublicKey | None,
) -> None:
    covers = body.get("sequence")
    status = CheckpointStatus(seq, covers if isinstance(covers, int) else -1, str(body.get("key_id", "")))
    if public_key is not None:
        why = check_signature(body, public_key)
        status.signature = "valid" if why is None else "invalid"
        if why is not None:
            report.problems.append(Problem(seq, "signature", f"checkpoint {seq}: {why}"))
    if covers != seq - 1 or body.get("head_hash") != prev_hash:
        status.consistent = False
        if status.signature == "invalid":
            where, why_text = seq, "the checkpoint itself was edited"
        else:
            # An authentic (or unchecked) checkpoint that no longer matches the chain:
            # records before it were altered, inserted or removed after it was signed.
            where = _lower_bound(report, seq)
            why_text = f"records in {where}..{seq - 1} were altered, inserted or removed after it was signed"
        report.problems.append(
            Problem(
                where,
                "checkpoint",
                f"checkpoint {seq} signs sequence {covers} with a head hash the chain no longer has: {why_text}",
            )
        )
    report.checkpoints.append(status)


def _check_head(
    report: VerifyReport, head: dict[str, Any] | None, why: str | None, hashes: dict[int, str], *, chain_intact: bool
) -> None:
    last = report.last_sequence
    if head is None:
        why = f"{why}: records 1..{last} check out, but whether records after {last} were removed cannot be told"
        report.problems.append(Problem(last + 1, "head", why))
        return
    hseq, hhash = head["sequence"], head["hash"]
    if hseq > last:
        if chain_intact:
            report.problems.append(
                Problem(
                    last + 1,
                    "truncated",
                    f"log ends at sequence {last} but the head file records {hseq}: trailing records were removed",
                )
            )
        return
    known = hashes.get(hseq) if hseq >= 1 else "0" * 64
    if known != hhash:
        lb = _lower_bound(report, hseq)
        report.problems.append(
            Problem(
                lb,
                "head",
                f"record {hseq} does not match the head file: the chain was rewritten "
                f"somewhere in sequences {lb}..{hseq}",
            )
        )
    elif hseq < last:
        report.notes.append(
            f"head file lags at sequence {hseq} (log ends at {last}): a writer stopped "
            "between its append and the head update; the next append records it"
        )


def _check_checkpoint_file(
    report: VerifyReport,
    path: Path,
    label: str,
    chain_cps: dict[int, dict[str, Any]],
    last: int,
    public_key: Ed25519PublicKey | None,
    chain_intact: bool,
    is_mirror: bool,
) -> None:
    if not is_mirror and not path.exists():
        report.problems.append(Problem(None, "checkpoint_file", f"{label} does not exist"))
        return
    entries, bad, partial = read_checkpoint_file(path)
    report.problems.extend(Problem(None, "checkpoint_file", b) for b in bad)
    if partial:
        # A copy of a chain record cut short by a crash; the chain still holds the original.
        report.notes.append(f"{label} ends in an unfinished line ({len(partial)} bytes); the next append repairs it")
    seen: set[int] = set()
    for entry in entries:
        c = entry.get("checkpoint_sequence")
        if not isinstance(c, int) or isinstance(c, bool):
            report.problems.append(Problem(None, "checkpoint_file", f"{label}: entry without sequence"))
            continue
        seen.add(c)
        body = {k: entry.get(k) for k in _BODY_KEYS}
        if public_key is not None:
            why = check_signature(body, public_key)
            if why is not None:
                report.problems.append(Problem(c, "signature", f"{label}, checkpoint {c}: {why}"))
                continue
        if c > last:
            if chain_intact:
                report.problems.append(
                    Problem(
                        last + 1,
                        "truncated",
                        f"{label} holds a checkpoint at sequence {c} but the log ends at "
                        f"{last}: trailing records were removed",
                    )
                )
            continue
        in_chain = chain_cps.get(c)
        if in_chain is not None and {k: in_chain.get(k) for k in _BODY_KEYS} == body:
            continue
        if in_chain is not None and all(in_chain.get(k) == body[k] for k in ("sequence", "head_hash")):
            # Same signed position, other details differ: one of the two copies was edited.
            report.problems.append(
                Problem(c, "checkpoint_file", f"{label}: entry for checkpoint {c} differs from the log's copy (edited)")
            )
            continue
        lb = _lower_bound(report, c)
        report.problems.append(
            Problem(
                lb,
                "checkpoint",
                f"{label}: the log no longer holds the checkpoint signed at sequence {c}: "
                f"records in {lb}..{c} were altered, inserted or removed",
            )
        )
    if is_mirror:
        for c in sorted(set(chain_cps) - seen):
            if c == last:
                report.notes.append(f"checkpoint {c} not yet copied to {label} (the next append does it)")
            else:
                report.problems.append(
                    Problem(c, "checkpoint_file", f"checkpoint {c} is missing from {label} (removed)")
                )


def format_report(report: VerifyReport) -> str:
    """Plain-text summary for a terminal."""
    lines = [f"audit log {report.directory}: {report.records} records, last sequence {report.last_sequence}"]
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
    signed = [cp for cp in report.checkpoints if cp.signature == "valid"]
    lines.append(f"checkpoints: {len(report.checkpoints)} in chain, {len(signed)} signature-verified")
    lines.extend(f"note: {n}" for n in report.notes)
    return "\n".join(lines)
