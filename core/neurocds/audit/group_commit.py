"""Group commit: appends that arrive while one is being written share the next lock and fsync.

An fsync costs milliseconds, and the log takes them one at a time under its lock.
A service with many concurrent callers (the CDS Hooks server runs evaluations in
worker threads) would queue behind that lock, one fsync each. Here the first
caller becomes the *leader*: it takes every append queued so far and commits
them together. Callers that arrive meanwhile wait, and the next of them leads
the next batch. Each caller still returns only after its own records are on disk,
with its own outcome (appended records, or the error that stopped them).

A commit may come in two steps (:class:`Written`): write the batch under the log's
lock, then make it durable after releasing it, so that other processes write while
this one waits for the disk (see :mod:`neurocds.audit.durable`). The next batch of
this process is led only once both are done: it gathers every caller that arrived
meanwhile, and a few large batches cost less CPU than many small ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


@dataclass
class Written(Generic[Outcome]):
    """A batch written but not yet durable: ``then`` makes it so (raises if it cannot)."""

    outcomes: Sequence[Outcome | BaseException]
    then: Callable[[], None] | None = None


class _Ticket(Generic[Item, Outcome]):
    __slots__ = ("done", "error", "item", "outcome", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        # Held from the start; released once to wake its caller (its batch is done, or it is
        # handed the lead). One lock per caller, not a condition all wait on: waking every
        # waiting thread at each batch's end cost more than the batch's own writes.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit(Generic[Item, Outcome]):
    """Runs ``commit`` on batches of concurrently submitted items.

    :param commit: writes a batch and returns one outcome per item, in order, or a
        :class:`Written` with them; an outcome that is an exception is raised in that
        item's caller. If ``commit`` (or the ``then`` of its :class:`Written`) raises,
        every caller in the batch whose outcome was not an exception gets the exception.
    """

    def __init__(self, commit: Callable[[list[Item]], Sequence[Outcome | BaseException] | Written[Outcome]]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._queue: list[_Ticket[Item, Outcome]] = []  # submitted, not yet in a batch
        self._leading = False  # a caller is writing a batch, or has been handed the lead

    def submit(self, item: Item) -> Outcome:
        """Commit ``item`` (with whatever else is queued); returns once it is committed."""
        ticket: _Ticket[Item, Outcome] = _Ticket(item)
        with self._lock:
            self._queue.append(ticket)
            lead, self._leading = not self._leading, True
        if not lead:
            ticket.wake.acquire()  # until its batch is done, or it is the first queued when one is done
        if not ticket.done:  # lead the next batch: everything queued by now, this caller's item first
            with self._lock:
                batch, self._queue = self._queue, []
            self._lead(batch)
        if ticket.error is not None:
            raise ticket.error
        # The leader sets an outcome on every ticket it finishes without an error.
        return cast(Outcome, ticket.outcome)

    def _pass_lead(self) -> None:
        """The batch is done: the first caller queued meanwhile leads the next one."""
        with self._lock:
            following = self._queue[0] if self._queue else None
            self._leading = following is not None
        if following is not None:
            following.wake.release()

    def _lead(self, batch: list[_Ticket[Item, Outcome]]) -> None:
        then: Callable[[], None] | None = None
        try:
            try:
                result = self._commit([t.item for t in batch])
                if isinstance(result, Written):
                    outcomes, then = result.outcomes, result.then
                else:
                    outcomes = result
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"group commit returned {len(outcomes)} outcomes for {len(batch)} items")
            except BaseException as exc:  # every caller of the batch hears of it, the leader included
                outcomes, then = [exc] * len(batch), None
            if then is not None:
                try:
                    then()
                except BaseException as exc:
                    outcomes = [o if isinstance(o, BaseException) else exc for o in outcomes]
        finally:
            try:
                for ticket, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        ticket.error = outcome
                    else:
                        ticket.outcome = outcome
                    ticket.done = True
            finally:  # whatever happens here, every caller wakes and the next one can lead
                self._pass_lead()
                for ticket in batch:
                    ticket.wake.release()
