"""What the log's tail and its head file say before an append: an interrupted write to cut
off, damage to refuse, or a head that lags behind the records (see :mod:`neurocds.audit.store`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.audit.chain import ScanResult
from neurocds.audit.errors import AuditIntegrityError
from neurocds.audit.records import GENESIS_HASH
from neurocds.audit.store_state import StoreState


def torn_from(
    state: StoreState, result: ScanResult, head: Mapping[str, Any], data: bytes, data_offset: int
) -> int | None:
    """File offset from which the log's end is an interrupted write (``None``: there is none).

    That is a torn last line, and before it any records of an append that did
    not finish (rolled back off ``result``). Damage of any other kind is refused.
    ``data`` is what the scan read, from file offset ``data_offset``.
    """
    cut = None
    if result.problem is not None:
        rest = data[(result.problem_offset or 0) - data_offset :]
        torn = result.problem.code in ("torn_tail", "unparseable") and b"\n" not in rest[:-1]
        if not torn or head["sequence"] > result.last_sequence:
            problem = result.problem
            raise AuditIntegrityError(f"refusing to append: {problem.reason}", sequence=problem.sequence)
        cut = result.problem_offset
    start = result.open_append
    if start is not None:
        if head["sequence"] > start.last_sequence:  # the head is only written once an append is whole
            raise AuditIntegrityError(
                f"refusing to append: the head file records sequence {head['sequence']}, inside an "
                "append that did not finish",
                sequence=start.last_sequence + 1,
            )
        for sequence in range(start.last_sequence + 1, result.last_sequence + 1):
            state.recent.pop(sequence, None)
        result.roll_back(start)
        cut = start.end
    return cut


def head_lag(state: StoreState, head: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body of the ``head_behind`` recovery record when the head file names an earlier
    record than the log's last (``None``: it names the last). Raises when the head names a
    record the log does not have (removed from the end) or one with another hash (rewritten)."""
    last, digest = state.scan.last_sequence, state.scan.last_hash
    if head["sequence"] > last:
        raise AuditIntegrityError(
            f"log ends at sequence {last} but the head file records {head['sequence']}: "
            "records were removed from the end",
            sequence=last + 1,
        )
    if head["sequence"] == last:
        if head["hash"] != digest:
            raise AuditIntegrityError("last record does not match the head file (rewritten)", sequence=last)
        return None
    known = state.recent.get(head["sequence"])
    if head["sequence"] == 0:
        known = GENESIS_HASH
    if known is not None and known != head["hash"]:
        raise AuditIntegrityError(
            f"record {head['sequence']} does not match the head file (rewritten)",
            sequence=head["sequence"],
        )
    body: dict[str, Any] = {"kind": "head_behind", "head_sequence": head["sequence"], "head_hash": head["hash"]}
    if known is not None:
        body["head_matched"] = True
    return body
