"""Errors of the audit log, rooted in :class:`neurocds.errors.NeurocdsError`."""

from __future__ import annotations

from neurocds.errors import NeurocdsError


class AuditError(NeurocdsError):
    """The audit log cannot do what was asked (bad configuration, bad key, bad input).

    :param reason: plain-language statement of what is wrong.
    :param sequence: the record sequence number concerned, when there is one.
    """

    def __init__(self, reason: str, *, sequence: int | None = None) -> None:
        self.reason = reason
        self.sequence = sequence
        where = f" (sequence {sequence})" if sequence is not None else ""
        super().__init__(f"audit log: {reason}{where}")


class AuditIntegrityError(AuditError):
    """The log on disk is damaged or was tampered with; the writer refuses to append.

    Failing closed keeps a damaged chain from being extended, which would make the
    damage look like history. ``sequence`` names the first bad record.
    """


class ReplayRefused(AuditError):
    """A recorded decision cannot be replayed (redacted, packs differ, no engine)."""
