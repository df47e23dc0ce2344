"""Group commit: appends that arrive while one is being written share the next lock and fsync.

An fsync costs milliseconds, and the log takes them one at a time under its lock.
A service with many concurrent callers (the CDS Hooks server runs evaluations in
worker threads) would queue behind that lock, one fsync each. Here the first
caller becomes the *leader*: it takes every append queued so far and commits
them together. Callers that arrive meanwhile wait, and the next of them leads
the next batch. Each caller still returns only after its own records are on disk,
with its own outcome (appended records, or the error that stopped them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class _Ticket(Generic[Item, Outcome]):
    __slots__ = ("done", "error", "item", "outcome")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """Runs ``commit`` on batches of concurrently submitted items.

    :param commit: writes a batch and returns one outcome per item, in order; an
        outcome that is an exception is raised in that item's caller. If ``commit``
        itself raises, every caller in the batch gets the exception.
    """

    def __init__(self, commit: Callable[[list[Item]], Sequence[Outcome | BaseException]]) -> None:
        self._commit = commit
        self._cv = threading.Condition()
        self._queue: list[_Ticket[Item, Outcome]] = []
        self._leading = False

    def submit(self, item: Item) -> Outcome:
        """Commit ``item`` (with whatever else is queued); returns once it is committed."""
        ticket: _Ticket[Item, Outcome] = _Ticket(item)
        with self._cv:
            self._queue.append(ticket)
            while self._leading and not ticket.done:
                self._cv.wait()
            batch: list[_Ticket[Item, Outcome]] = []
            if not ticket.done:  # no batch is being written and ours is not done: lead the next one
                self._leading = True
                batch, self._queue = self._queue, []
        if batch:
            self._lead(batch)
        if ticket.error is not None:
            raise ticket.error
        # The leader sets an outcome on every ticket it finishes without an error.
        return cast(Outcome, ticket.outcome)

    def _lead(self, batch: list[_Ticket[Item, Outcome]]) -> None:
        try:
            outcomes: Sequence[Outcome | BaseException] = self._commit([t.item for t in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"group commit returned {len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:  # every caller of the batch hears of it, the leader included
            outcomes = [exc] * len(batch)
        with self._cv:
            try:
                for ticket, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        ticket.error = outcome
                    else:
                        ticket.outcome = outcome
                    ticket.done = True
            finally:  # whatever happens here, the next caller must be able to lead
                self._leading = False
                self._cv.notify_all()
