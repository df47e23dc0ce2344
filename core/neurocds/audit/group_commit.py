"""Group commit: appends that arrive while one is being written share the next lock and fsync.

An fsync costs milliseconds, and the log takes them one at a time under its lock.
A service with many concurrent callers (the CDS Hooks server runs evaluations in
worker threads) would queue behind that lock, one fsync each. Here the first
caller becomes the *leader*: it takes every append queued so far and commits
them together. Callers that arrive meanwhile wait, and the next of them leads
the next batch. Each caller still returns only after its own records are on disk,
with its own outcome (appended records, or the error that stopped them).

A commit may come in two steps (:class:`Written`): write the batch, then make it
durable. The next batch is led as soon as the first step is done, so it is written
while the fsync of the one before runs (and that fsync, shared with other processes,
may cover it too: see :mod:`neurocds.audit.durable`).
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
    __slots__ = ("done", "error", "item", "outcome", "taken")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = False
        self.taken = False  # in a batch being committed
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """Runs ``commit`` on batches of concurrently submitted items.

    :param commit: writes a batch and returns one outcome per item, in order, or a
        :class:`Written` with them; an outcome that is an exception is raised in that
        item's caller. If ``commit`` (or the ``then`` of its :class:`Written`) raises,
        every caller in the batch whose outcome was not an exception gets the exception.
    """

    def __init__(self, commit: Callable[[list[Item]], Sequence[Outcome | BaseException] | Written[Outcome]]) -> None:
        self._commit = commit
        self._cv = threading.Condition()
        self._queue: list[_Ticket[Item, Outcome]] = []
        self._leading = False

    def submit(self, item: Item) -> Outcome:
        """Commit ``item`` (with whatever else is queued); returns once it is committed."""
        ticket: _Ticket[Item, Outcome] = _Ticket(item)
        with self._cv:
            self._queue.append(ticket)
            while not ticket.done and (self._leading or ticket.taken):
                self._cv.wait()
            batch: list[_Ticket[Item, Outcome]] = []
            if not ticket.done:  # no batch is being written and ours is not done: lead the next one
                self._leading = True
                batch, self._queue = self._queue, []
                for queued in batch:
                    queued.taken = True
        if batch:
            self._lead(batch)
        if ticket.error is not None:
            raise ticket.error
        # The leader sets an outcome on every ticket it finishes without an error.
        return cast(Outcome, ticket.outcome)

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
                with self._cv:  # written: the next batch may be written while this one is made durable
                    self._leading = False
                    self._cv.notify_all()
                try:
                    then()
                except BaseException as exc:
                    outcomes = [o if isinstance(o, BaseException) else exc for o in outcomes]
        finally:
            with self._cv:
                try:
                    for ticket, outcome in zip(batch, outcomes, strict=True):
                        if isinstance(outcome, BaseException):
                            ticket.error = outcome
                        else:
                            ticket.outcome = outcome
                        ticket.done = True
                finally:  # whatever happens here, the next caller must be able to lead
                    if then is None:
                        self._leading = False
                    self._cv.notify_all()
