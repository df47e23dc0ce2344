"""Low-level storage of the chain: locking, scanning, durable writes, crash recovery.

Layout of an audit directory::

    audit.jsonl        one canonical-JSON record a line, each chained to the last
                       (the active segment: see :mod:`neurocds.audit.segments`)
    segments/          sealed segments, when the log rolls by size or by day
    head.json          sequence and hash of the last record (truncation evidence)
    checkpoints.jsonl  every signed checkpoint, mirrored (copy it off-host too)
    audit.lock         fcntl.flock target serialising writers across processes
    audit.sync.lock    one fsync at a time, shared by every writer (group commit
    audit.inflight.lock  across processes: see :mod:`neurocds.audit.durable`)
    head.pending.json  the head of the newest record written, published by the next fsync
    quarantine/        bytes of interrupted writes, moved aside, never dropped;
                       each named by a recovery record
    pseudonym.key      only when no pseudonym key was given and redaction is off

Every append happens under the lock: the store re-reads what other processes
appended, checks it links to what it knew, recovers a torn tail (with any
records of an append that did not finish), refuses (fails closed) when the chain
is damaged anywhere else, then writes the line, or the lines of one
``write_together`` (or of several callers' appends gathered by the writer's group
commit), with a single ``write``. The ``fsync`` follows outside the lock, shared with
every other writer's records written before it (:mod:`neurocds.audit.durable`); an
append returns only once it is done.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neurocds.audit import mirror
from neurocds.audit.catalog import Catalog, CatalogProblem
from neurocds.audit.chain import (
    HEAD_NAME,
    IN_FLIGHT_NAME,
    LOCK_NAME,
    LOG_NAME,
    PENDING_HEAD_NAME,
    SYNC_LOCK_NAME,
    ScanResult,
    read_head_at,
    scan,
)
from neurocds.audit.compact import NodeKeys, compact
from neurocds.audit.durable import (
    Flush,
    SyncLock,
    cut_back,
    hold_in_flight,
    make_durable,
    nobody_in_flight,
    truncate_after_failure,
)
from neurocds.audit.errors import AuditError, AuditIntegrityError
from neurocds.audit.files import fsync_dir, sync_file, write_all, write_synced
from neurocds.audit.head_checks import head_lag, torn_from
from neurocds.audit.quarantine import move_to_quarantine, recovery_bodies
from neurocds.audit.records import GENESIS_HASH, schema_errors, seal_line, utc_now
from neurocds.audit.segments import NEXT_NAME, chain_start, finish_interrupted_roll, roll
from neurocds.audit.signing import sign_checkpoint
from neurocds.audit.store_state import Appended, StoreState
from neurocds.audit.tail import head_bytes, state_from_head, write_head, write_head_file

# Only sequence numbers, types, sizes and hashes are ever logged: never facts,
# never patient ids, never pseudonyms.
log = logging.getLogger("neurocds.audit")

# A record to append: its type and body, and optionally its body's nodes encoded in advance
# (:func:`neurocds.audit.compact.node_keys`, done by the writer before it takes the lock).
Item = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], NodeKeys | None]

class ChainStore:
    """One audit directory's files; callers hold :meth:`locked` around :meth:`sync` + writes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Joined once: every append opens these, and a pathlib join costs more than the open's call.
        self.log_path = str(directory / LOG_NAME)
        self._lock_path = str(directory / LOCK_NAME)
        self._next_path = str(directory / NEXT_NAME)
        self._in_flight_path = str(directory / IN_FLIGHT_NAME)
        self.head_path = str(directory / HEAD_NAME)
        self.pending_path = str(directory / PENDING_HEAD_NAME)
        self.sync_lock = SyncLock(str(directory / SYNC_LOCK_NAME))
        self.state: StoreState | None = None
        self.recovered: list[Appended] = []
        self.catalog = Catalog(directory)

    def create_layout(self) -> None:
        created = not self.directory.exists()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            fsync_dir(self.directory.parent)
        with self.locked():
            log_path = self.directory / LOG_NAME
            if log_path.exists():
                return
            head, _ = read_head_at(self.head_path)
            if head is not None and head["sequence"] > 0:
                raise AuditIntegrityError(
                    f"log file is missing but the head file records {head['sequence']} records",
                    sequence=1,
                )
            write_synced(log_path, b"", os.O_CREAT | os.O_EXCL)
            with self.sync_lock.held():
                self.write_head(0, GENESIS_HASH)
            self.note_pending(head_bytes(0, GENESIS_HASH))
            fsync_dir(self.directory)

    @contextmanager
    def locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def write_head(self, sequence: int, digest: str, index: Mapping[str, Any] | None = None) -> None:
        """Replace the head file: the last record's sequence and hash, and ``index``
        (:meth:`StoreState.head_index`: where that record ends, and the last checkpoint)."""
        write_head(self.directory, sequence, digest, index)

    def publish_head(self, data: bytes) -> None:
        """Replace the head file with ``data`` (:func:`neurocds.audit.tail.head_bytes`); under the sync lock."""
        write_head_file(self.head_path, data)

    def note_pending(self, data: bytes) -> None:
        """Name the newest record written as the head the next fsync publishes (under the append lock);
        if that fails, a writer it does not cover publishes its own (:func:`~neurocds.audit.durable.pending_head`)."""
        try:
            write_head_file(self.pending_path, data)
        except OSError as exc:
            log.warning("audit: pending head not updated: %s", exc.strerror)

    def write(self, state: StoreState, rtype: str, body: Mapping[str, Any]) -> Appended:
        return self.write_together(state, [(rtype, body)])[0]

    def write_together(self, state: StoreState, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Appended]:
        """Append ``items`` as consecutive records with one ``write`` and one ``fsync``.

        Every record but the last carries ``atomic_with_next``, so a crash part-way
        leaves an unfinished append that the next :meth:`sync` moves aside whole:
        after a crash either all of them are in the chain or none is.
        """
        (outcome,) = self.write_groups(state, [items])
        if isinstance(outcome, AuditError):
            raise outcome
        return outcome

    def write_groups(self, state: StoreState, groups: Sequence[Sequence[Item]]) -> list[list[Appended] | AuditError]:
        """Append several groups of records with one ``write`` and one ``fsync`` (group commit):
        :meth:`write_groups_staged`, then :meth:`make_durable` at once, under the append lock."""
        outcomes, flush = self.write_groups_staged(state, groups)
        if flush is not None:
            try:
                self.make_durable(flush)
            except AuditError as exc:
                self.cut_back(flush)
                return [o if isinstance(o, AuditError) else exc for o in outcomes]
        return outcomes

    def write_groups_staged(
        self, state: StoreState, groups: Sequence[Sequence[Item]]
    ) -> tuple[list[list[Appended] | AuditError], Flush | None]:
        """Append several groups of records with one ``write``, not yet durable; the caller holds
        the append lock, and after releasing it passes the :class:`Flush` to :meth:`make_durable`
        (``None``: nothing was written). The outcomes hold only once that returns.

        Each group is chained and marked as :meth:`write_together` would do on its own,
        so each stays all-or-nothing after a crash. A group whose record does not match
        the audit schema gets an :class:`AuditError` and writes nothing; the others go
        on. A failed write fails every group.
        """
        outcomes: list[list[Appended] | AuditError] = []
        records: list[dict[str, Any]] = []
        lines: list[bytes] = []
        groups = self._compacted(groups)
        sequence, prev_hash = state.scan.last_sequence, state.scan.last_hash
        for items in groups:
            sealed = []
            for index, (rtype, body) in enumerate(items):
                record, line = seal_line(rtype, body, sequence=sequence + 1 + index, prev_hash=prev_hash,
                                         atomic_with_next=index < len(items) - 1)  # fmt: skip
                problems = schema_errors(record)
                if problems:  # checked for the whole group before any of it is written
                    outcomes.append(AuditError(f"{rtype} record does not match the audit schema: {problems[0]}"))
                    break
                sealed.append((record, line))
                prev_hash = record["hash"]
            else:
                records += [r for r, _ in sealed]
                lines += [line for _, line in sealed]
                sequence += len(sealed)
                outcomes.append([Appended(r["sequence"], r["hash"], r["type"]) for r, _ in sealed])
                continue
            prev_hash = records[-1]["hash"] if records else state.scan.last_hash  # the group is left out
        if not records:
            return outcomes, None
        try:
            self.catalog.flush()  # the entries the records name are on disk before the records
        except OSError as exc:
            self.catalog.discard_pending()
            failed = AuditError(f"could not write the explanation catalog: {exc}")
            return [o if isinstance(o, AuditError) else failed for o in outcomes], None
        start = state.scan.end
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND)  # kept open for the fsync (Flush.log_fd)
        try:
            write_all(fd, b"".join(lines))
        except OSError as exc:
            truncate_after_failure(fd, state.scan.end)
            os.close(fd)
            self.state = None  # rescan next time, whatever the cut left
            kinds = ", ".join(sorted({r["type"] for r in records}))
            failed = AuditError(f"could not write {kinds} record(s): {exc}")
            return [o if isinstance(o, AuditError) else failed for o in outcomes], None
        for record, line in zip(records, lines, strict=True):
            state.scan.last_sequence = record["sequence"]
            state.scan.last_hash = record["hash"]
            state.note(record, state.scan.end, state.scan.end + len(line))
            state.scan.end += len(line)
            state.scan.last_line = line
            log.debug("audit: appended %s record %d", record["type"], record["sequence"])
        head = head_bytes(state.scan.last_sequence, state.scan.last_hash, state.head_index())
        kinds = ", ".join(sorted({r["type"] for r in records}))
        try:
            self.note_pending(head)
            flush = Flush(records[0]["sequence"], state.scan.last_sequence, kinds, head, state.inode, start,
                          state.scan.end, hold_in_flight(self._in_flight_path), log_fd=fd)  # fmt: skip
        except BaseException:
            os.close(fd)
            raise
        return outcomes, flush

    def make_durable(self, flush: Flush) -> None:
        """Return once ``flush``'s records are on disk behind a published head; no append lock needed."""
        make_durable(self, flush)

    def cut_back(self, flush: Flush) -> None:
        """After :meth:`make_durable` failed, take ``flush``'s records back off the log's end if
        nobody has chained on them; under the append lock."""
        self.state = None  # rescan next time, whatever is left
        cut_back(self, flush)

    def _compacted(self, groups: Sequence[Sequence[Item]]) -> list[list[tuple[str, Mapping[str, Any]]]]:
        """Decision bodies with their explanation in compact form (see :mod:`neurocds.audit.compact`).

        A catalog that cannot be read is no reason to stop recording: the bodies are then
        stored whole (``verify`` reports the catalog).
        """
        try:
            self.catalog.refresh()
        except CatalogProblem as problem:
            log.warning("audit: explanation catalog damaged at entry %d; storing explanations whole", problem.entry)
            return [[(item[0], item[1]) for item in items] for items in groups]
        cat = self.catalog
        return [
            [
                (item[0], compact(item[1], cat.intern, cat.position, cat.memo, _keys(item)))
                if item[0] == "decision"
                else (item[0], item[1])
                for item in items
            ]
            for items in groups
        ]

    def roll(self, state: StoreState, reason: str, key: Any = None) -> str | None:
        """Seal the active file as a segment, behind a signed checkpoint when given a ``key``, and
        start the next (see :mod:`neurocds.audit.segments`); returns the sealed file's name."""
        with self.sync_lock.held():  # no fsync of another writer runs on either file meanwhile
            if key is not None and state.last_checkpoint_seq != state.scan.last_sequence:
                self.write_checkpoint(state, key)
            sync_file(self.log_path)  # others' records awaiting an fsync: the roll's head says they are durable
            rolled = roll(self.directory, state, reason)
            if rolled is None:
                return None
            self.state = new = rolled[0]
            log.info("audit: sealed segment %s (%s)", rolled[1], reason)
            head = head_bytes(new.scan.last_sequence, new.scan.last_hash, new.head_index())
            self.note_pending(head)
            self.publish_head(head)
            return rolled[1]

    def write_checkpoint(self, state: StoreState, key: Any) -> Appended:
        body = sign_checkpoint(
            key,
            sequence=state.scan.last_sequence,
            head_hash=state.scan.last_hash,
            signed_at=utc_now(),
        )
        appended = self.write(state, "checkpoint", body)
        mirror.mirror_checkpoint(self.directory, appended.sequence, body)
        state.mirrored_through = appended.sequence
        log.info("audit: checkpoint %d signs sequence %d", appended.sequence, body["sequence"])
        return appended

    def _read_from(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read()

    def sync(self, *, from_start: bool = False) -> StoreState:
        """Bring the in-memory head up to date with the file; recover or refuse.

        Recovery records appended on the way are listed in :attr:`recovered`.
        :param from_start: scan from the first record, not from the tail the head file names.
        """
        self.recovered = []
        log_path = self.log_path
        if os.path.exists(self._next_path) and finish_interrupted_roll(self.directory):
            self.state = None  # a roll a crash interrupted is finished: the active file is new
        try:
            st = os.stat(log_path)
        except FileNotFoundError as exc:
            raise AuditIntegrityError("log file has disappeared", sequence=1) from exc
        state = self.state
        if state is not None and state.inode == st.st_ino and st.st_size >= state.scan.end:
            start = state.scan.end - len(state.scan.last_line)
            with open(log_path, "rb") as fh:
                fh.seek(start)
                if fh.read(len(state.scan.last_line)) != state.scan.last_line:
                    state = None  # what we knew changed under us: check everything again
        if state is None or state.inode != st.st_ino or st.st_size < state.scan.end:
            # Opening: start from the tail the head file points at, or else from the first record
            # (of the active segment: its chain goes on from the hash its segment record names).
            opened = None if from_start else state_from_head(self.directory, st.st_ino, st.st_size)
            if opened is None:
                begins = chain_start(Path(log_path))
                opened = StoreState(inode=st.st_ino, scan=ScanResult(begins.prev_sequence, begins.prev_hash, 0))
                opened.recent[begins.prev_sequence] = begins.prev_hash
            state = opened
        self.state = None  # stays unset unless the checks below all pass
        data = self._read_from(state.scan.end)
        prev = state.scan
        result = scan(
            data,
            base_offset=prev.end,
            prev_sequence=prev.last_sequence,
            prev_hash=prev.last_hash,
            on_record=lambda rec, start, end, _l: state.note(rec, start, end),
        )
        head = self._read_head(state, result)
        cut = torn_from(state, result, head, data, prev.end)
        if cut is not None and cut < prev.end:  # what we knew ends inside it: read everything again
            self.state = None
            return self.sync(from_start=True)
        if not result.last_line and prev.last_line:
            result.last_line = prev.last_line
        state.scan = result
        if cut is not None:
            self._quarantine_tail(state, data[cut - prev.end :])
            result.problem, result.problem_offset, result.tail = None, None, b""
        cut_at = (state.scan.last_sequence, state.scan.end)  # where a torn tail would have been cut
        lag = head_lag(state, head)
        if lag is not None and nobody_in_flight(self._in_flight_path):
            # Read again: the writer whose fsync it awaited may have published and left since. Nobody
            # is in flight now and nobody can start (this holds the append lock), so the head stays.
            lag = head_lag(state, self._read_head(state))
            if lag is not None:  # a crash between the log write and the head update: recorded
                log.warning("audit: head file lagged at %d behind record %d; resynced", lag["head_sequence"],
                            state.scan.last_sequence)  # fmt: skip
                self.recovered.append(self.write(state, "recovery", lag))
        self._record_quarantined(state, *cut_at)
        self._repair_mirror(state)
        self.state = state
        return state

    def _read_head(self, state: StoreState, result: ScanResult | None = None) -> dict[str, Any]:
        last = (result or state.scan).last_sequence
        head, why = read_head_at(self.head_path)
        if head is None:
            raise AuditIntegrityError(
                f"{why}; refusing to append: without it, removal of records after sequence "
                f"{last} could not be detected",
                sequence=last + 1,
            )
        return head

    def _quarantine_tail(self, state: StoreState, torn: bytes) -> None:
        move_to_quarantine(self.directory, state.scan.last_sequence, state.scan.end, torn)

    def _record_quarantined(self, state: StoreState, last_sequence: int, end: int) -> None:
        """Write the recovery record of bytes quarantined just before a crash (see
        :func:`neurocds.audit.quarantine.recovery_bodies`)."""
        for body in recovery_bodies(self.directory, state.quarantined, last_sequence, end):
            self.recovered.append(self.write(state, "recovery", body))

    def _repair_mirror(self, state: StoreState) -> None:
        if state.last_checkpoint_body is None or state.mirrored_through == state.last_checkpoint_seq:
            return
        mirror.repair(self.directory, state.last_checkpoint_seq, state.last_checkpoint_body)
        state.mirrored_through = state.last_checkpoint_seq


def _keys(item: Item) -> NodeKeys | None:
    return item[2] if len(item) == 3 else None
