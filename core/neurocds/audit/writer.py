"""The public face of the audit log: :class:`AuditLog` builds records and appends them.

See :mod:`neurocds.audit.store` for the file layout, locking and crash recovery,
and :mod:`neurocds.audit.verify` for what tampering is and is not detectable.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocds.audit import privacy, settings
from neurocds.audit.compact import node_keys
from neurocds.audit.durable import Flush
from neurocds.audit.errors import AuditError
from neurocds.audit.group_commit import GroupCommit, Written
from neurocds.audit.records import cards_body, decision_body, feedback_body, rejection_body, violation_dict
from neurocds.audit.segments import roll_due
from neurocds.audit.settings import AUDIT_DIR_ENV
from neurocds.audit.signing import is_inside, load_private_key
from neurocds.audit.store import ChainStore, Item
from neurocds.audit.store_state import Appended, StoreState
from neurocds.facts.patient import patient_id_of

log = logging.getLogger("neurocds.audit")

__all__ = ["AUDIT_DIR_ENV", "Appended", "AuditLog", "PendingRecord"]


@dataclass(frozen=True)
class PendingRecord:
    """A record built but not yet appended: give several to :meth:`AuditLog.append_together`."""

    type: str
    body: Mapping[str, Any]


class AuditLog:
    """An audit directory opened for appending.

    :param directory: the audit directory (created, mode 0700, when missing).
    :param redact: store no facts, only their hash and the patient pseudonym.
    :param pseudonym_key: HMAC key for patient pseudonyms; required with ``redact``.
    :param checkpoint_every: write a signed checkpoint once this many records follow the
        last one (after the append that reaches the count: appends committed together,
        see :mod:`neurocds.audit.group_commit`, can take it past N).
    :param signing_key_path: Ed25519 private key (PEM, outside ``directory``).
    :param segment: when the log rolls to a new segment file (see :mod:`neurocds.audit.segments`):
        ``"daily"``, a size such as ``"64MB"``, or both (``"daily,1GB"``); ``None``: never
        (one file, as logs were before segments).
    :param facts_schema: the engine's facts schema (base plus pack extensions); with
        ``redact``, member names of rejected documents that it does not define are
        replaced (default: the base facts schema).
    :raises AuditError: bad configuration; :class:`AuditIntegrityError` damaged log.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        redact: bool = False,
        pseudonym_key: bytes | None = None,
        checkpoint_every: int | None = None,
        signing_key_path: Path | str | None = None,
        facts_schema: Mapping[str, Any] | None = None,
        segment: str | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.segment_bytes, self.segment_daily = settings.parse_segment(segment) if segment else (None, False)
        self.redact = bool(redact)
        self.facts_schema = facts_schema
        if checkpoint_every is not None and (
            not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1
        ):
            raise AuditError("checkpoint_every must be a positive number of records")
        if checkpoint_every and signing_key_path is None:
            raise AuditError("checkpoint_every needs a signing key (signing_key_path)")
        self.checkpoint_every = checkpoint_every
        self._signing_key = (
            load_private_key(Path(signing_key_path), audit_dir=self.directory) if signing_key_path is not None else None
        )
        if pseudonym_key is None and self.redact:
            raise AuditError(
                "redaction needs a pseudonym key kept outside the audit directory: a key file "
                "(--audit-pseudonym-key-file or NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE; make one with "
                "`neurocds audit pseudonym-keygen FILE`) or NEUROCDS_AUDIT_PSEUDONYM_KEY (hex)"
            )
        self._thread_lock = threading.Lock()
        self._group: GroupCommit[list[Item], list[Appended]] = GroupCommit(self._commit)
        self._store = ChainStore(self.directory)
        try:
            self._store.create_layout()
        except OSError as exc:  # a directory that cannot be made or written is the audit log's failure
            raise AuditError(f"cannot open the audit directory {self.directory}: {exc.strerror or exc}") from exc
        if pseudonym_key is None:
            pseudonym_key = privacy.auto_key(self.directory, create=True)
            if pseudonym_key is None:  # create=True makes one; None would be a bug in auto_key
                raise AuditError(f"cannot create a pseudonym key in {self.directory}")
        elif len(pseudonym_key) < 16:
            raise AuditError("pseudonym key must be at least 16 bytes")
        self._pseudonym_key: bytes = pseudonym_key
        self.pseudonym_key_id = privacy.key_id(self._pseudonym_key)

    # ------------------------------------------------------------ construction

    @classmethod
    def from_options(
        cls,
        directory: str | os.PathLike[str],
        options: Mapping[str, Any] | None = None,
        *,
        facts_schema: Mapping[str, Any] | None = None,
    ) -> AuditLog:
        """Build from an options mapping (the engine's ``audit_options``).

        Keys: ``redact``, ``pseudonym_key`` (bytes or hex), ``pseudonym_key_file``,
        ``checkpoint_every``, ``signing_key_path``. Unknown keys are an error.
        """
        opts = dict(options or {})
        known = {"redact", "pseudonym_key", "pseudonym_key_file", "checkpoint_every", "signing_key_path", "segment"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise AuditError(f"unknown audit option(s): {', '.join(unknown)}")
        key = opts.get("pseudonym_key")
        if key is not None and opts.get("pseudonym_key_file"):
            raise AuditError("give the pseudonym key once: as a key or as a key file, not both")
        if isinstance(key, str):
            key = privacy.parse_hex_key(key, origin="the pseudonym key option or NEUROCDS_AUDIT_PSEUDONYM_KEY")
        redact = bool(opts.get("redact", False))
        if key is None and opts.get("pseudonym_key_file"):
            key_file = Path(opts["pseudonym_key_file"])
            if redact and is_inside(key_file, Path(directory)):
                raise AuditError("with redaction the pseudonym key file must live outside the audit directory")
            # With redaction the key is all that keeps a pseudonym from naming the patient:
            # like a signing key, it must not be readable by other users.
            key = privacy.read_key_file(key_file, private=redact)
        return cls(
            directory,
            redact=redact,
            pseudonym_key=key,
            checkpoint_every=opts.get("checkpoint_every"),
            signing_key_path=opts.get("signing_key_path"),
            facts_schema=facts_schema,
            segment=opts.get("segment"),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuditLog | None:
        """Open the log named by ``NEUROCDS_AUDIT_DIR`` (``None`` when it is unset).

        Also reads ``NEUROCDS_AUDIT_REDACT``, ``NEUROCDS_AUDIT_PSEUDONYM_KEY`` (hex) or
        ``NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE``, ``NEUROCDS_AUDIT_CHECKPOINT_EVERY`` and
        ``NEUROCDS_AUDIT_SIGNING_KEY`` (see :mod:`neurocds.audit.settings`).

        :raises AuditError: a value cannot be read, or an unknown ``NEUROCDS_AUDIT_*``
            variable is set (a typo must not silently turn redaction off).
        """
        env = os.environ if environ is None else environ
        directory = env.get(AUDIT_DIR_ENV)
        if not directory:
            return None
        return cls.from_options(directory, settings.options_from_env(env))

    # ------------------------------------------------------------ public API

    def pseudonym(self, patient_id: str) -> str:
        """The pseudonym this log stores for ``patient_id``."""
        return privacy.pseudonymise(self._pseudonym_key, patient_id)

    def record_decision(self, result: Any, facts: Mapping[str, Any] | None = None) -> Appended:
        """Append the decision record for one evaluation (``Result`` or its dict)."""
        return self.append_together([self.prepare_decision(result, facts)])[0]

    def prepare_decision(
        self, result: Any, facts: Mapping[str, Any] | None = None, request: Mapping[str, Any] | None = None
    ) -> PendingRecord:
        """The decision record :meth:`record_decision` appends, for :meth:`append_together`.

        :param request: who asked (see :func:`neurocds.audit.records.decision_body`).
        """
        data = result.to_dict() if hasattr(result, "to_dict") else result
        pid = patient_id_of(facts)
        body = decision_body(
            data,
            facts,
            redact=self.redact,
            pseudonym=self.pseudonym(pid) if pid is not None else None,
            pseudonym_key_id=self.pseudonym_key_id if pid is not None else None,
            request=request,
        )
        return PendingRecord("decision", body)

    def record_rejection(self, error_or_violations: Any, **details: Any) -> Appended:
        """Append a rejection: violation pointers, codes and messages, never values.

        Takes the arguments of :meth:`prepare_rejection`.
        """
        return self.append_together([self.prepare_rejection(error_or_violations, **details)])[0]

    def prepare_rejection(
        self,
        error_or_violations: Any,
        *,
        facts_sha256: str | None = None,
        facts: Any = None,
        engine: Mapping[str, Any] | None = None,
        packs: Sequence[Mapping[str, Any]] | None = None,
        rejection_id: str | None = None,
    ) -> PendingRecord:
        """The rejection record :meth:`record_rejection` appends.

        :param error_or_violations: a ``FactsValidationError`` or a list of
            ``Violation`` objects / dicts. Their ``found`` member is dropped; with
            redaction, so are member names the facts schema does not define.
        :param facts: the rejected document when it parsed; used only for the
            patient pseudonym, never stored.
        """
        violations = getattr(error_or_violations, "violations", error_or_violations)
        if facts_sha256 is None:
            facts_sha256 = getattr(error_or_violations, "facts_sha256", None)
        pid = patient_id_of(facts)
        listed = [violation_dict(v) for v in violations]
        if self.redact:
            schema = self.facts_schema if self.facts_schema is not None else _base_facts_schema()
            listed = [privacy.scrub_member_names(v, schema) for v in listed]
        body = rejection_body(
            listed,
            facts_sha256=facts_sha256,
            pseudonym=self.pseudonym(pid) if pid is not None else None,
            pseudonym_key_id=self.pseudonym_key_id if pid is not None else None,
            engine=engine,
            packs=packs,
            rejection_id=rejection_id,
        )
        return PendingRecord("rejection", body)

    def record_feedback(
        self,
        card_uuid: str,
        outcome: str,
        *,
        override_reason: Mapping[str, Any] | None = None,
        decision_id: str | None = None,
        accepted_suggestions: Sequence[str] | None = None,
        outcome_timestamp: str | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> Appended:
        """Append CDS Hooks card feedback (``accepted`` or ``overridden``); ``request``: who sent it
        (see :func:`neurocds.audit.records.feedback_body`)."""
        body = feedback_body(
            card_uuid,
            outcome,
            override_reason=override_reason,
            decision_id=decision_id,
            accepted_suggestions=accepted_suggestions,
            outcome_timestamp=outcome_timestamp,
            redact=self.redact,
            request=request,
        )
        return self.append_together([PendingRecord("feedback", body)])[0]

    def record_cards(self, decision_id: str, card_uuids: Sequence[str]) -> Appended:
        """Append which CDS Hooks cards were issued for a decision."""
        return self.append_together([self.prepare_cards(decision_id, card_uuids)])[0]

    def prepare_cards(self, decision_id: str, card_uuids: Sequence[str]) -> PendingRecord:
        """The record :meth:`record_cards` appends, for :meth:`append_together`."""
        return PendingRecord("cards", cards_body(decision_id, card_uuids))

    def record_population_run(self, body: Mapping[str, Any]) -> Appended:
        """Append the one record of a population run (``neurocds.population``): its inputs'
        hashes, packs, counts and the hash over every per-patient result, not one record
        per patient. The body is checked against the audit schema like every record."""
        return self.append_together([PendingRecord("population_run", dict(body))])[0]

    def append_together(self, records: Sequence[PendingRecord]) -> list[Appended]:
        """Append ``records`` in order under one lock with one ``fsync``; durable on return.

        Each is chained like a record appended alone. After a crash either all of them
        are in the log or none is: a part-written set is moved to quarantine, like a
        torn line, by the next append. A signed checkpoint due every N records is
        written after the set, never inside it.
        """
        if not records:
            return []
        internal = sorted({r.type for r in records} & {"checkpoint", "recovery"})
        if internal:
            raise AuditError(f"{', '.join(internal)} records are written by the log itself")
        # Appends from other threads that arrive meanwhile share one lock and one fsync with it.
        # A decision's nodes are encoded here, in the caller's thread, before the lock: what
        # needs no catalog overlaps the fsync of the batch being written instead of lengthening
        # the next one.
        return self._group.submit(
            [(r.type, r.body, node_keys(r.body) if r.type == "decision" else None) for r in records]
        )

    def _commit(self, groups: list[list[Item]]) -> Written[list[Appended]]:
        """Write a batch of appends (group commit): one append lock, one check of the chain, one
        write; the fsync that makes them durable runs after the lock is released, and may be
        shared with other threads' and processes' appends (see :mod:`neurocds.audit.durable`)."""
        with self._thread_lock, self._store.locked():
            state = self._store.sync()
            outcomes, flush = self._store.write_groups_staged(state, groups)
            if flush is None:
                return Written(outcomes)  # nothing written, or a write failed: what is on disk is unknown
            try:
                every = self.checkpoint_every
                checkpoint = bool(every and self._signing_key is not None
                                  and state.scan.last_sequence - state.last_checkpoint_seq >= every)  # fmt: skip
                reason = roll_due(self.directory, state, self.segment_bytes, self.segment_daily)
                if not checkpoint and reason is None:
                    return Written(outcomes, lambda: self._finish(flush))
                # Durable now, under the lock: a checkpoint never signs records whose fsync failed.
                try:
                    self._store.make_durable(flush)
                except AuditError as exc:
                    self._store.cut_back(flush)
                    return Written([o if isinstance(o, AuditError) else exc for o in outcomes])
            except BaseException:
                flush.release()
                raise
            if checkpoint and self._signing_key is not None:
                try:
                    self._store.write_checkpoint(state, self._signing_key)
                except (AuditError, OSError) as exc:
                    # The batch's records are on disk: its callers must hear success. The checkpoint
                    # is still due, so the next append tries it again.
                    log.warning("audit: checkpoint not written, will retry: %s", type(exc).__name__)
            if reason is not None and self._store.state is not None:
                self._roll(self._store.state, reason)
            return Written(outcomes)

    def _finish(self, flush: Flush) -> None:
        """Make a written batch durable (outside the append lock); if that fails, take its
        records back off the log's end when nobody has chained on them yet."""
        try:
            self._store.make_durable(flush)
        except AuditError:
            with self._thread_lock, self._store.locked():
                self._store.cut_back(flush)
            raise

    def _roll(self, state: StoreState, reason: str) -> None:
        try:
            self._store.roll(state, reason, self._signing_key)
        except (AuditError, OSError) as exc:
            # The records are on disk and stand; the roll is still due, so the next append tries again.
            log.warning("audit: segment not sealed, will retry: %s", type(exc).__name__)
            self._store.state = None

    def checkpoint(self, signing_key_path: Path | str | None = None) -> Appended:
        """Sign the current chain head now and append the checkpoint record."""
        key = (
            load_private_key(Path(signing_key_path), audit_dir=self.directory)
            if signing_key_path is not None
            else self._signing_key
        )
        if key is None:
            raise AuditError("no signing key: pass one to checkpoint() or to AuditLog()")
        with self._thread_lock, self._store.locked():
            return self._store.write_checkpoint(self._store.sync(), key)

    def recover(self) -> list[Appended]:
        """Run crash recovery now (it also runs before every append)."""
        with self._thread_lock, self._store.locked():
            self._store.sync()
            return list(self._store.recovered)

    def head(self) -> tuple[int, str]:
        """Sequence and hash of the last record (after checks and recovery)."""
        with self._thread_lock, self._store.locked():
            state = self._store.sync()
            return state.scan.last_sequence, state.scan.last_hash



def _base_facts_schema() -> Mapping[str, Any]:
    from neurocds.resources import load_schema

    return load_schema("facts.schema.json")


def _existing_store(directory: str | os.PathLike[str]) -> ChainStore:
    path = Path(directory).absolute()
    if not (path / "audit.jsonl").exists():
        raise AuditError(f"no audit log in {path}")
    return ChainStore(path)


def checkpoint_log(directory: str | os.PathLike[str], signing_key_path: Path | str) -> tuple[Appended, dict[str, Any]]:
    """Sign the head of an existing log now; returns the record and the signed body.

    Unlike :class:`AuditLog` this needs no pseudonym key: auditors run it.
    """
    store = _existing_store(directory)
    key = load_private_key(Path(signing_key_path), audit_dir=store.directory)
    with store.locked():
        state = store.sync()
        appended = store.write_checkpoint(state, key)
        assert state.last_checkpoint_body is not None
        return appended, {"checkpoint_sequence": appended.sequence, **state.last_checkpoint_body}


def recover_log(directory: str | os.PathLike[str]) -> list[Appended]:
    """Run crash recovery on an existing log; returns the recovery records appended."""
    store = _existing_store(directory)
    with store.locked():
        store.sync()
        return list(store.recovered)


def roll_log(directory: str | os.PathLike[str], signing_key_path: Path | str | None = None) -> str | None:
    """Seal the active segment of an existing log now (behind a checkpoint signed with the key,
    when given); returns the sealed file's name (``None``: nothing to seal). Auditors run it."""
    store = _existing_store(directory)
    key = load_private_key(Path(signing_key_path), audit_dir=store.directory) if signing_key_path else None
    with store.locked():
        return store.roll(store.sync(), "requested", key)
