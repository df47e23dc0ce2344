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
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from neurocds.audit.catalog import CATALOG_NAME, CatalogProblem, load_catalog
from neurocds.audit.chain import CHECKPOINTS_NAME, LOG_NAME, read_head
from neurocds.audit.errors import AuditError
from neurocds.audit.quarantine import check_quarantine
from neurocds.audit.records import schema_errors
from neurocds.audit.segment_scan import scan_segments
from neurocds.audit.segments import chain_start, file_digest, list_segments
from neurocds.audit.signing import load_public_key, public_key_id
from neurocds.audit.verify_checkpoints import check_chain_checkpoint, check_checkpoint_file
from neurocds.audit.verify_report import CheckpointStatus, Problem, VerifyReport, format_report, lower_bound

__all__ = ["CheckpointStatus", "Problem", "VerifyReport", "format_report", "verify_log"]


def verify_log(
    directory: str | Path,
    *,
    public_key: Ed25519PublicKey | str | Path | None = None,
    external_checkpoints: Sequence[str | Path] = (),
    segment: str | Path | None = None,
) -> VerifyReport:
    """Check everything in an audit directory, through every segment file present; never modifies it.

    :param public_key: the checkpoint public key (object or PEM path). Without it
        signatures are not checked (a note says so) but everything else is.
    :param external_checkpoints: checkpoint files kept outside the directory.
    :param segment: check this one segment file on its own (a sealed segment, maybe
        archived elsewhere): its chain, records and checkpoints, and where it links on
        from and to; the head file, mirror and quarantine belong to the whole log.
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
    log_path = Path(segment) if segment is not None else d / LOG_NAME
    if not log_path.exists():
        report.problems.append(Problem(1, "missing", f"{log_path.name if segment else LOG_NAME} is missing"))
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
            check_chain_checkpoint(report, seq, body, record["prev_hash"], public_key)
        elif record.get("type") == "recovery" and isinstance(body, dict):
            quarantine.append((seq, body))

    scanned = scan_segments(d, on_record, only=log_path if segment is not None else None)
    result = scanned.result
    _check_catalog(report, catalog_problem, unbound)
    report.records = result.records
    report.records_after_damage, report.checkpoints_after_damage = scanned.lines_after_damage()
    report.last_sequence = last = result.last_sequence
    report.last_hash = result.last_hash
    report.first_sequence, report.archived = scanned.first_sequence, scanned.archived
    report.segments = [seg.label for seg in scanned.segments]
    report.problems.extend(Problem(*item) for item in scanned.problems)
    p = result.first_problem()
    if p is not None:
        report.problems.append(Problem(p.sequence, p.code, p.reason))
    if segment is not None:
        report.segment = str(log_path)
        _check_against_commitment(report, d, log_path)
        report.notes.append(
            f"one segment checked on its own ({log_path.name}): the head file, checkpoint copies and "
            "quarantine belong to the whole log; `neurocds audit verify` without --segment checks them"
        )
        _note_signatures(report, chain_cps, public_key)
        return report
    _check_head(report, head, head_why, hashes, chain_intact=result.problem is None)
    files = [(d / CHECKPOINTS_NAME, CHECKPOINTS_NAME, True)]
    files += [(Path(p), f"checkpoint file {p}", False) for p in external_checkpoints]
    for path, label, is_mirror in files:
        check_checkpoint_file(report, path, label, chain_cps, last, public_key, result.problem is None, is_mirror,
                              first=scanned.first_sequence)  # fmt: skip
    found = check_quarantine(d, quarantine, report.last_sequence, result.end, report.notes)
    report.problems.extend(Problem(*item) for item in found)
    _note_signatures(report, chain_cps, public_key)
    return report


def _check_against_commitment(report: VerifyReport, directory: Path, path: Path) -> None:
    """A segment checked on its own is also checked against what the log commits to for it: the
    ``segment`` record opening the file after it, when that file is in ``directory``."""
    digest, size = file_digest(path)
    named = None
    for seg in list_segments(directory):
        claim = chain_start(seg.path).segment
        previous = claim["segment"]["previous"] if claim is not None else None
        if previous is None or seg.path.samefile(path):
            continue
        if (previous["sha256"], previous["bytes"]) == (digest, size):
            report.notes.append(f"{path.name} is byte for byte the segment {seg.label} commits to (SHA-256 {digest})")
            return
        if previous["file"] == path.name:
            named = (seg, previous)
    if named is None:
        report.notes.append(f"no file in {directory} commits to {path.name}: checked on its own only")
        return
    seg, previous = named
    expected = f"SHA-256 {previous['sha256']}, {previous['bytes']} bytes"
    why = f"{path.name} is not the segment {seg.label} commits to ({expected})"
    report.problems.append(Problem(previous["first_sequence"], "segment", f"{why}: altered or replaced"))


def _note_signatures(report: VerifyReport, chain_cps: dict[int, Any], public_key: Ed25519PublicKey | None) -> None:
    if chain_cps and public_key is None:
        report.notes.append("checkpoint signatures not checked: no public key given")
    if report.checkpoints_after_damage:
        report.notes.append(
            f"{report.checkpoints_after_damage} checkpoint record(s) after the damage were not checked: "
            "past a break in the chain nothing can be trusted"
        )
    elif not chain_cps:
        report.notes.append("no signed checkpoints: a consistent rewrite would go unnoticed")

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
        lb = lower_bound(report, hseq)
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
