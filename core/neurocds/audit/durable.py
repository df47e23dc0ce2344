"""Group commit across processes: one fsync makes durable every record written before it.

``neurocds serve --workers N`` runs N processes appending to one log. Each append
holds the log's lock (``audit.lock``) only to check the tail, write its lines and
note the head they make (``head.pending.json``); it then releases that lock and
waits, under a second lock (``audit.sync.lock``), for an fsync that covers its
records:

* if the head file already names a record at or after its own, another writer's
  fsync (begun after its write) covered it: done, no fsync of its own;
* else it reads the pending head (the newest record written by anyone), fsyncs the
  log (which makes every byte written before it durable, whoever wrote it), and
  publishes that pending head as the head file.

So while one process waits for the disk, the others write, and the next fsync takes
all of them at once. A caller hears success only after a head at or past its last
record was published behind an fsync: an acknowledged record is on disk.

The chain stays one chain: a record's previous hash is read from the log's tail under
the append lock, never from a head file that may lag. The head file lags the log
normally now (records written, their fsync under way), not only after a crash: a
writer holds ``audit.inflight.lock`` shared from its write until its records are
durable, and the next append records a lag as a crash (``head_behind``) only when it
can take that lock exclusively, i.e. when nobody is still on the way to an fsync. A
process killed in between releases its locks with its death; the records it wrote
stay in the chain, unacknowledged, as a write cut off before its fsync always did.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from neurocds.audit._canon import loads
from neurocds.audit.chain import read_head_at, read_whole
from neurocds.audit.errors import AuditError
from neurocds.audit.files import sync_file

if TYPE_CHECKING:
    from neurocds.audit.store import ChainStore

log = logging.getLogger("neurocds.audit")


@dataclass
class Flush:
    """Records written by one batch and not yet durable (see :meth:`ChainStore.write_groups_staged`)."""

    first_sequence: int
    last_sequence: int
    kinds: str  # record types, for the error message
    head: bytes  # the head file naming the batch's last record
    inode: int
    start: int  # file offsets of the batch's lines
    end: int
    in_flight: int = field(default=-1)  # fd holding the shared in-flight lock, -1 once released
    # The descriptor the batch was written through, fsynced by whoever makes it durable: Linux
    # reports a failed write-back once to each descriptor open when it failed, so a log
    # opened afresh for the fsync could report success after another writer was told of it.
    log_fd: int = field(default=-1)

    def release(self) -> None:
        """Stop counting as in flight (closing the fd releases its flock) and close the
        batch's log descriptor; idempotent."""
        fd, self.in_flight = self.in_flight, -1
        log_fd, self.log_fd = self.log_fd, -1
        for held in (fd, log_fd):
            if held >= 0:
                os.close(held)


class SyncLock:
    """``audit.sync.lock``: one fsync-and-publish at a time across processes and threads.

    Re-entrant within a thread: a writer holding the append lock that must be durable
    now (a checkpoint, a recovery record, a roll) takes it around steps that take it too.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._held = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held.depth = 1
            yield
        finally:
            self._held.depth = 0
            os.close(fd)  # closing releases the flock


def hold_in_flight(path: str) -> int:
    """Take the in-flight lock shared; returns the fd that holds it (see :meth:`Flush.release`)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def nobody_in_flight(path: str) -> bool:
    """Whether no writer (in any process, this one included) is between its write and its fsync."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def durable_through(head_path: str) -> int:
    """The sequence the head file names: every record up to it is on disk (-1: no head)."""
    head, _ = read_head_at(head_path)
    return head["sequence"] if head is not None else -1


def pending_head(pending_path: str, flush: Flush) -> bytes:
    """The head to publish after the next fsync: the newest record written by anyone, or
    the batch's own when the pending head is older (its write failed) or unreadable."""
    try:
        data = read_whole(pending_path)
        pending = loads(data)
    except (OSError, ValueError):
        return flush.head
    sequence = pending.get("sequence") if isinstance(pending, dict) else None
    if not isinstance(sequence, int) or sequence < flush.last_sequence:
        return flush.head
    return data.rstrip()


def fsync_log(log_path: str, flush: Flush) -> None:
    """fsync the log through the batch's own descriptor (the file at ``log_path`` when it has
    none); :class:`AuditError` naming the batch's records when it fails."""
    try:
        if flush.log_fd >= 0:
            os.fsync(flush.log_fd)
        else:
            sync_file(log_path)
    except OSError as exc:
        raise AuditError(f"could not write {flush.kinds} record(s): {exc}") from exc


def make_durable(store: ChainStore, flush: Flush) -> None:
    """Return once ``flush``'s records are on disk and a head file at or past them is
    published; :class:`AuditError` if the fsync fails. Needs no append lock: other
    writers go on appending meanwhile, and the next fsync takes their records too."""
    try:
        with store.sync_lock.held():
            if durable_through(store.head_path) >= flush.last_sequence:
                return  # an fsync begun after our write, by any writer, covered it
            head = pending_head(store.pending_path, flush)  # read before the fsync: it covers that record
            fsync_log(store.log_path, flush)
            try:
                store.publish_head(head)
            except OSError as exc:
                # The records are on disk (fsynced): they stand. A head file that lags is what a
                # crash between the two writes leaves too; the next append records it as a recovery.
                log.warning("audit: head file not updated after sequence %d: %s", flush.last_sequence, exc.strerror)
    finally:
        flush.release()


def cut_back(store: ChainStore, flush: Flush) -> None:
    """After :func:`make_durable` failed, remove ``flush``'s records if they are still the
    log's end: its callers are told the append failed, so they must not be read as valid
    later. The caller holds the append lock. Records that others have chained on since
    stay, unacknowledged, like those of a writer killed before its fsync."""
    with store.sync_lock.held():
        if durable_through(store.head_path) >= flush.first_sequence:
            return  # published by another writer's fsync: part of the chain now
        try:
            st = os.stat(store.log_path)
        except OSError:
            return
        if st.st_ino != flush.inode or st.st_size != flush.end:
            return
        fd = os.open(store.log_path, os.O_WRONLY)
        try:
            truncate_after_failure(fd, flush.start)
        finally:
            os.close(fd)
        try:  # the pending head named the records cut off: name the last durable one instead
            store.note_pending(read_whole(store.head_path).rstrip())
        except OSError as exc:
            log.warning("audit: pending head not reset after a failed append: %s", exc.strerror)


def truncate_after_failure(fd: int, end: int) -> None:
    """After a failed write or fsync, remove what it may have left past ``end``.

    Its callers are told the append failed, so none of its records may stay in the
    log to be taken as valid later. If the cut fails too, the next sync of the store
    finds the tail and moves it to quarantine (a torn line, or an unfinished append).
    """
    try:
        os.ftruncate(fd, end)
        os.fsync(fd)
    except OSError as exc:
        log.warning("audit: could not cut back a failed append to offset %d: %s", end, exc.strerror)
