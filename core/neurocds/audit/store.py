"""Low-level storage of the chain: locking, scanning, durable writes, crash recovery.

Layout of an audit directory::

    audit.jsonl        one canonical-JSON record a line, each chained to the last
                       (the active segment: see :mod:`neurocds.audit.segments`)
    segments/          sealed segments, when the log rolls by size or by day
    head.json          sequence and hash of the last record (truncation evidence)
    checkpoints.jsonl  every signed checkpoint, mirrored (copy it off-host too)
    audit.lock         fcntl.flock target serialising writers across processes
    quarantine/        bytes of interrupted writes, moved aside, never dropped;
                       each named by a recovery record
    pseudonym.key      only when no pseudonym key was given and redaction is off

Every append happens under the lock: the store re-reads what other processes
appended, checks it links to what it knew, recovers a torn tail (with any
records of an append that did not finish), refuses (fails closed) when the chain
is damaged anywhere else, then writes the line, or the lines of one
``write_together`` (or of several callers' appends gathered by the writer's group
commit), with a single ``write`` and ``fsync`` before returning.
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
    LOCK_NAME,
    LOG_NAME,
    ScanResult,
    read_head,
    scan,
)
from neurocds.audit.compact import NodeKeys, compact
from neurocds.audit.errors import AuditError, AuditIntegrityError
from neurocds.audit.files import fsync_dir, write_all, write_synced
from neurocds.audit.quarantine import move_to_quarantine, recovery_bodies
from neurocds.audit.records import GENESIS_HASH, schema_errors, seal_line, utc_now
from neurocds.audit.segments import NEXT_NAME, chain_start, finish_interrupted_roll, roll
from neurocds.audit.signing import sign_checkpoint
from neurocds.audit.store_state import Appended, StoreState
from neurocds.audit.tail import state_from_head, write_head

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
        self._log_path = str(directory / LOG_NAME)
        self._lock_path = str(directory / LOCK_NAME)
        self._next_path = str(directory / NEXT_NAME)
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
            head, _ = read_head(self.directory)
            if head is not None and head["sequence"] > 0:
                raise AuditIntegrityError(
                    f"log file is missing but the head file records {head['sequence']} records",
                    sequence=1,
                )
            write_synced(log_path, b"", os.O_CREAT | os.O_EXCL)
            self.write_head(0, GENESIS_HASH)
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
        """Append several groups of records with one ``write`` and one ``fsync`` (group commit).

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
            return outcomes
        try:
            self.catalog.flush()  # the entries the records name are on disk before the records
        except OSError as exc:
            self.catalog.discard_pending()
            failed = AuditError(f"could not write the explanation catalog: {exc}")
            return [o if isinstance(o, AuditError) else failed for o in outcomes]
        fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND)
        try:
            write_all(fd, b"".join(lines))
            os.fsync(fd)
        except OSError as exc:
            self._cut_back(fd, state.scan.end)
            self.state = None  # rescan next time, whatever the cut left
            kinds = ", ".join(sorted({r["type"] for r in records}))
            failed = AuditError(f"could not write {kinds} record(s): {exc}")
            return [o if isinstance(o, AuditError) else failed for o in outcomes]
        finally:
            os.close(fd)
        for record, line in zip(records, lines, strict=True):
            state.scan.last_sequence = record["sequence"]
            state.scan.last_hash = record["hash"]
            state.note(record, state.scan.end, state.scan.end + len(line))
            state.scan.end += len(line)
            state.scan.last_line = line
            log.debug("audit: appended %s record %d", record["type"], record["sequence"])
        try:
            self.write_head(state.scan.last_sequence, state.scan.last_hash, state.head_index())
        except OSError as exc:
            # The records are on disk (fsynced): they stand. A head file that lags is what a crash
            # between the two writes leaves too; the next append records it as a recovery.
            log.warning("audit: head file not updated after sequence %d: %s", state.scan.last_sequence, exc.strerror)
        return outcomes

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

    def _cut_back(self, fd: int, end: int) -> None:
        """After a failed write or fsync, remove what it may have left past ``end``.

        Its callers are told the append failed, so none of its records may stay in the
        log to be taken as valid later. If the cut fails too, the next :meth:`sync`
        finds the tail and moves it to quarantine (a torn line, or an unfinished append).
        """
        try:
            os.ftruncate(fd, end)
            os.fsync(fd)
        except OSError as exc:
            log.warning("audit: could not cut back a failed append to offset %d: %s", end, exc.strerror)

    def roll(self, state: StoreState, reason: str, key: Any = None) -> str | None:
        """Seal the active file as a segment, behind a signed checkpoint when given a ``key``, and
        start the next (see :mod:`neurocds.audit.segments`); returns the sealed file's name."""
        if key is not None and state.last_checkpoint_seq != state.scan.last_sequence:
            self.write_checkpoint(state, key)
        rolled = roll(self.directory, state, reason)
        if rolled is None:
            return None
        self.state = rolled[0]
        log.info("audit: sealed segment %s (%s)", rolled[1], reason)
        self.write_head(self.state.scan.last_sequence, self.state.scan.last_hash, self.state.head_index())
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
        with open(self._log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read()

    def sync(self, *, from_start: bool = False) -> StoreState:
        """Bring the in-memory head up to date with the file; recover or refuse.

        Recovery records appended on the way are listed in :attr:`recovered`.
        :param from_start: scan from the first record, not from the tail the head file names.
        """
        self.recovered = []
        log_path = self._log_path
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
        head, why = read_head(self.directory)
        if head is None:
            raise AuditIntegrityError(
                f"{why}; refusing to append: without it, removal of records after sequence "
                f"{result.last_sequence} could not be detected",
                sequence=result.last_sequence + 1,
            )
        cut = self._torn_from(state, result, head, data, prev.end)
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
        self._check_head(state, head)
        self._record_quarantined(state, *cut_at)
        self._repair_mirror(state)
        self.state = state
        return state

    def _torn_from(
        self, state: StoreState, result: ScanResult, head: Mapping[str, Any], data: bytes, data_offset: int
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

    def _check_head(self, state: StoreState, head: Mapping[str, Any]) -> None:
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
            return
        known = state.recent.get(head["sequence"])
        if head["sequence"] == 0:
            known = GENESIS_HASH
        if known is not None and known != head["hash"]:
            raise AuditIntegrityError(
                f"record {head['sequence']} does not match the head file (rewritten)",
                sequence=head["sequence"],
            )
        # A crash between the log fsync and the head update: normal, but recorded.
        body: dict[str, Any] = {
            "kind": "head_behind",
            "head_sequence": head["sequence"],
            "head_hash": head["hash"],
        }
        if known is not None:
            body["head_matched"] = True
        log.warning("audit: head file lagged at %d behind record %d; resynced", head["sequence"], last)
        self.recovered.append(self.write(state, "recovery", body))

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
