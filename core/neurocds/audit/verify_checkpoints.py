"""Verifying checkpoints: those in the chain, the mirror ``checkpoints.jsonl`` and copies kept elsewhere.

Kept apart from :mod:`neurocds.audit.verify` (which walks the chain) for length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from neurocds.audit.chain import read_checkpoint_file
from neurocds.audit.signing import check_signature
from neurocds.audit.verify_report import CheckpointStatus, Problem, VerifyReport, lower_bound

_BODY_KEYS = ("sequence", "head_hash", "signed_at", "key_id", "signature")


def check_chain_checkpoint(
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
            where = lower_bound(report, seq)
            why_text = f"records in {where}..{seq - 1} were altered, inserted or removed after it was signed"
        report.problems.append(
            Problem(
                where,
                "checkpoint",
                f"checkpoint {seq} signs sequence {covers} with a head hash the chain no longer has: {why_text}",
            )
        )
    report.checkpoints.append(status)


def check_checkpoint_file(
    report: VerifyReport,
    path: Path,
    label: str,
    chain_cps: dict[int, dict[str, Any]],
    last: int,
    public_key: Ed25519PublicKey | None,
    chain_intact: bool,
    is_mirror: bool,
    *,
    first: int = 1,
) -> None:
    """Check a checkpoint file against the chain; ``first``: the first sequence the chain holds
    here (checkpoints before it are in segments archived away, and not checked)."""
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
        if c < first:
            continue  # in a segment archived away: verify it there (`audit verify --segment`)
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
        lb = lower_bound(report, c)
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
