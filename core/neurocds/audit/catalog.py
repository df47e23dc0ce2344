"""The explanation catalog: each static part of an explanation, stored once in the log directory.

``catalog.jsonl`` holds one entry a line, ``{"n": number, "entry": {...}, "chain": hash}``,
where ``chain`` is SHA-256 over the previous line's ``chain`` (64 zeros before the
first) and the canonical JSON of ``entry``. A decision record stored compactly (see
:mod:`neurocds.audit.compact`) names the catalog's length and chain hash when it was
written: that binds every entry it can refer to, so an edited, removed or reordered
entry is found by ``verify`` (the catalog's own chain breaks, or no longer reaches
the hash a record names), and a record stays verifiable and renderable from the log
directory alone, whatever packs are installed later.

Entries are written under the log's lock and fsynced before the record that uses
them, so a record never refers to an entry that is not on disk; entries written by
an append that then failed are simply unused. The catalog holds static text only
(a rule's name, a finding's title, a condition's test), so it grows with the rule
packs, not with the number of decisions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from neurocds.audit._canon import canonical_json, loads
from neurocds.audit.compact import expand
from neurocds.audit.errors import AuditError
from neurocds.audit.files import write_synced

CATALOG_NAME = "catalog.jsonl"
_START = "0" * 64


class CatalogProblem(Exception):
    """The catalog file is damaged at ``entry`` (its number)."""

    def __init__(self, entry: int, reason: str) -> None:
        super().__init__(reason)
        self.entry = entry
        self.reason = reason


class Catalog:
    """A catalog file read into memory (it is small), and entries waiting to be written."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CATALOG_NAME
        self._reset()

    def _reset(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.chains: list[str] = []
        self._numbers: dict[bytes, int] = {}
        self._read_to = 0  # file offset read so far
        self._pending: list[bytes] = []
        self.memo: dict[str, dict[bytes, tuple[Any, bytes]]] = {}  # see compact.compact: valid for these numbers only

    def refresh(self) -> None:
        """Read what other writers appended since the last read.

        :raises CatalogProblem: a line is not an intact entry chained to the one before.
        """
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._read_to)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a torn last line (a crash mid-write) is unused: ignore it
        for line in data[:end].split(b"\n")[:-1]:
            self._take(line)
        self._read_to += end

    def _take(self, line: bytes) -> None:
        n = len(self.entries)
        try:
            item = loads(line)
        except ValueError:
            raise CatalogProblem(n, f"catalog entry {n} is not valid JSON") from None
        if not isinstance(item, dict) or item.get("n") != n or not isinstance(item.get("entry"), dict):
            raise CatalogProblem(n, f"catalog line {n + 1} is not entry {n}")
        entry_bytes = canonical_json(item["entry"], parsed=True)
        chain = _chain(self.chains[-1] if self.chains else _START, entry_bytes)
        if item.get("chain") != chain or canonical_json(item, parsed=True) != line:
            raise CatalogProblem(n, f"catalog entry {n} was changed (its chain hash does not match)")
        self.entries.append(item["entry"])
        self.chains.append(chain)
        self._numbers[entry_bytes] = n

    def intern(self, entry: dict[str, Any]) -> int:
        """The number of ``entry``, adding it (to be written by :meth:`flush`) if new."""
        key = canonical_json(entry)
        number = self._numbers.get(key)
        if number is None:
            number = len(self.entries)
            chain = _chain(self.chains[-1] if self.chains else _START, key)
            parsed = loads(key)
            self._pending.append(canonical_json({"n": number, "entry": parsed, "chain": chain}) + b"\n")
            self.entries.append(parsed)
            self.chains.append(chain)
            self._numbers[key] = number
        return number

    def position(self) -> list[Any]:
        """``[entries, chain hash of the last]``: what a record written now binds."""
        return [len(self.chains), self.chains[-1] if self.chains else _START]

    def flush(self) -> None:
        """Write and fsync the entries added since the last flush (before any record uses them)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        write_synced(self.path, data, os.O_CREAT | os.O_APPEND)
        self._pending = []
        self._read_to += len(data)

    def discard_pending(self) -> None:
        """Forget entries not written (a failed flush): read them again from the file."""
        if self._pending:
            self._reset()

    def lookup(self, number: int) -> dict[str, Any]:
        if not 0 <= number < len(self.entries):
            raise IndexError(f"catalog has no entry {number}")
        return self.entries[number]

    def binds(self, position: Any) -> bool:
        """Whether a record's ``[entries, chain]`` is a prefix of this catalog."""
        if not isinstance(position, list) or len(position) != 2 or not isinstance(position[0], int):
            return False
        count, chain = position
        if count == 0:
            return bool(chain == _START)
        return bool(0 < count <= len(self.chains) and self.chains[count - 1] == str(chain))


def _chain(previous: str, entry_bytes: bytes) -> str:
    return hashlib.sha256(previous.encode("ascii") + entry_bytes).hexdigest()


def load_catalog(directory: Path) -> tuple[Catalog, CatalogProblem | None]:
    """The catalog of a log directory as far as it is intact, and the problem that ended it."""
    catalog = Catalog(directory)
    try:
        catalog.refresh()
    except CatalogProblem as problem:
        return catalog, problem
    return catalog, None


def expand_record(record: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """``record`` with a compact decision body rebuilt in full (others returned as they are).

    :raises AuditError: the explanation cannot be rebuilt (see :func:`compact.expand`).
    """
    body = record.get("decision")
    if record.get("type") != "decision" or not isinstance(body, dict) or "explanation" not in body:
        return record
    explanation = body["explanation"]
    if isinstance(explanation, dict) and not catalog.binds(explanation.get("catalog")):
        raise AuditError("the catalog no longer holds the entries this record was written with")
    return {**record, "decision": expand(body, catalog.lookup)}
