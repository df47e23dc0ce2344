"""What the service's worker processes share: used JWTs and which card belongs to which decision.

``neurocds serve --workers N`` runs N processes behind one port, and a call may reach
any of them. Two things must then hold across processes, not just threads:

* a token (``iss`` + ``jti``) is accepted once, whichever worker sees it first: the
  claim is one SQLite statement (insert, or take over an expired entry), so two
  workers racing on the same token cannot both win;
* feedback about a card names its decision, whichever worker issued the card.

Both live in ``cdshooks-state.sqlite`` beside the audit log, in WAL mode (readers
never wait for the writer; SQLite's file locks order the writers). Token keys are
SHA-256 hashes of ``iss`` and ``jti``, never the token. The file holds nothing the
audit log needs: deleting it while the service is stopped forgets tokens that are
at most five minutes old and the card index, which is refilled from the log's
``cards`` records at start.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from neurocds.audit.errors import AuditError

STATE_NAME = "cdshooks-state.sqlite"
BUSY_TIMEOUT_SECONDS = 10.0
# Old rows are pruned every this many writes, not on each: a DELETE per call would cost more than the call's insert.
PRUNE_EVERY = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_tokens (token TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cards (card TEXT PRIMARY KEY, decision TEXT NOT NULL);
"""
# First use, or the reuse of a hash whose token has expired (a new token cannot share a live jti).
_CLAIM = """
INSERT INTO used_tokens (token, expires_at) VALUES (?, ?)
ON CONFLICT (token) DO UPDATE SET expires_at = excluded.expires_at WHERE used_tokens.expires_at < ?
"""


class SharedState:
    """The replay store and card index of every worker serving one audit directory.

    :param directory: the audit directory; the state file is created there.
    :param card_limit: how many of the newest cards are remembered.
    """

    def __init__(self, directory: Path, *, card_limit: int) -> None:
        self.path = Path(directory) / STATE_NAME
        self._card_limit = card_limit
        self._lock = threading.Lock()  # one connection per process, shared by its threads
        self._writes = 0
        self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
        # NORMAL under WAL: a commit is not fsynced until the next checkpoint. A power cut may forget
        # the last used tokens (each lives five minutes at most); a process crash forgets nothing.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._conn:
            self._conn.executescript(_SCHEMA)

    # ------------------------------------------------------------ used tokens
    @staticmethod
    def key_of(key: tuple[str, str]) -> str:
        return hashlib.sha256("\x00".join(key).encode("utf-8", "surrogatepass")).hexdigest()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction under this process's lock; a file that cannot be written is the log's failure
        (:class:`AuditError`, answered 503): a token that cannot be marked used must not be accepted."""
        try:
            with self._lock, self._conn:
                yield self._conn
        except sqlite3.Error as exc:
            raise AuditError(f"the service's shared state ({self.path.name}) cannot be used: {exc}") from None

    def unexpired(self, now: float) -> list[tuple[str, float]]:
        """(token hash, expiry) of every token used that has not expired at ``now``."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM used_tokens WHERE expires_at < ?", (now,))
            return list(conn.execute("SELECT token, expires_at FROM used_tokens"))

    def claim(self, key: tuple[str, str], expires_at: float, now: float) -> bool:
        """Record the token as used; ``False`` when a worker (this one or another) already has."""
        with self._transaction() as conn:
            won = conn.execute(_CLAIM, (self.key_of(key), expires_at, now)).rowcount == 1
            self._maybe_prune(now)
        return won

    # ------------------------------------------------------------ card index
    def add_cards(self, decision_id: str, card_uuids: Sequence[str]) -> None:
        if not card_uuids:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO cards (card, decision) VALUES (?, ?)", [(c, decision_id) for c in card_uuids]
            )
            self._maybe_prune(None)

    def decision_of(self, card_uuid: str) -> str | None:
        with self._transaction() as conn:
            row = conn.execute("SELECT decision FROM cards WHERE card = ?", (card_uuid,)).fetchone()
        return str(row[0]) if row else None

    def _maybe_prune(self, now: float | None) -> None:
        """Drop expired tokens and all but the newest cards, now and then (caller holds the lock)."""
        self._writes += 1
        if self._writes % PRUNE_EVERY:
            return
        if now is not None:
            self._conn.execute("DELETE FROM used_tokens WHERE expires_at < ?", (now,))
        self._conn.execute("DELETE FROM cards WHERE rowid <= (SELECT max(rowid) FROM cards) - ?", (self._card_limit,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
