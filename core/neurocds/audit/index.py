"""The query index: an SQLite file rebuilt from the log, never trusted over it.

``index.sqlite`` in the audit directory holds one row per record (sequence, type, time,
id, pseudonym, urgency, completeness, and where its line lies in the log), the finding
ids and pack versions of each decision, and how far into the log it has read (the
sequence, hash and end offset of the last record it took). SQLite comes with Python,
keeps its B-tree indexes on disk and answers a selective query over a million rows in
milliseconds, which a JSON scan cannot.

Before each query the index catches up: it checks that the record it read last is still
where it was, with the same hash, and reads only what follows (it starts over when the
log does not bear it out). A query then finds candidate sequences in SQLite and reads
each record from the log at its offset, checks that it is intact on its own (canonical,
matching its hash) and matches the filter: the index can make a query fast, never make
it answer what the log does not say. Whether the chain as a whole is intact is
``verify``'s job. The index can be deleted at any time; the next query rebuilds it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from neurocds.audit.catalog import Catalog, expand_record, load_catalog
from neurocds.audit.chain import LOG_NAME, ChainProblem, ScanResult, check_alone, scan
from neurocds.audit.errors import AuditError
from neurocds.audit.query import RecordFilter, body_of, parse_time
from neurocds.audit.records import GENESIS_HASH, record_id
from neurocds.audit.segments import chain_start, list_segments, locate

INDEX_NAME = "index.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    sequence INTEGER PRIMARY KEY, type TEXT NOT NULL, recorded_at REAL, id TEXT, pseudonym TEXT,
    urgency TEXT, complete INTEGER, offset INTEGER NOT NULL, length INTEGER NOT NULL, refers_to TEXT);
CREATE INDEX IF NOT EXISTS records_refers_to ON records (refers_to);
CREATE INDEX IF NOT EXISTS records_time ON records (recorded_at);
CREATE INDEX IF NOT EXISTS records_id ON records (id);
CREATE INDEX IF NOT EXISTS records_pseudonym ON records (pseudonym);
CREATE INDEX IF NOT EXISTS records_urgency ON records (urgency, recorded_at);
CREATE TABLE IF NOT EXISTS findings (finding TEXT NOT NULL, sequence INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS findings_finding ON findings (finding, sequence);
CREATE TABLE IF NOT EXISTS packs (name TEXT NOT NULL, version TEXT, sequence INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS packs_name ON packs (name, version, sequence);
"""
_VERSION = 2  # of the tables below; another version is rebuilt
_BATCH = 5000  # rows per transaction while catching up


def connect(directory: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(directory / INDEX_NAME, check_same_thread=False)
    # Losing the index's last transactions in a power cut costs a re-read, never a wrong answer.
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
        with conn:  # an index from another version: rebuilt
            for table in ("meta", "records", "findings", "packs"):
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"PRAGMA user_version={_VERSION}")
    conn.executescript(_SCHEMA)
    return conn


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def _still_there(directory: Path, meta: dict[str, str]) -> bool:
    """Whether the record the index read last is where it was, as it was (in the segment
    file that holds its sequence: the active file may have been sealed since)."""
    try:
        end, length, digest = int(meta["end"]), int(meta["last_length"]), meta["last_hash"]
        log_path = locate(list_segments(directory), int(meta["last_sequence"]))
    except (KeyError, ValueError):
        return False
    if end == 0:
        return True
    if log_path is None:
        return False
    with open(log_path, "rb") as fh:
        fh.seek(end - length)
        line = fh.read(length)
    record = check_alone(line[:-1]) if line.endswith(b"\n") else None
    return record is not None and record["hash"] == digest


def catch_up(directory: Path) -> ChainProblem | None:
    """Bring the index up to date with the log.

    :returns: the first problem in the records it read (it indexes nothing past it).
    """
    directory = Path(directory)
    log_path = directory / LOG_NAME
    if not log_path.exists():
        raise AuditError(f"no audit log in {directory}")
    conn = connect(directory)
    try:
        meta = _meta(conn)
        if not meta or not _still_there(directory, meta):
            with conn:
                for table in ("meta", "records", "findings", "packs"):
                    conn.execute(f"DELETE FROM {table}")
            meta = {"end": "0", "last_length": "0", "last_hash": GENESIS_HASH, "last_sequence": "0"}
        return _read_on(conn, directory, meta)
    finally:
        conn.close()


def _read_on(conn: sqlite3.Connection, directory: Path, meta: dict[str, str]) -> ChainProblem | None:
    catalog, _ = load_catalog(directory)
    result = ScanResult(int(meta["last_sequence"]), meta["last_hash"], int(meta["end"]))
    rows: list[tuple[Any, ...]] = []
    findings: list[tuple[str, int]] = []
    packs: list[tuple[str, Any, int]] = []

    def take(record: dict[str, Any], start: int, end: int, _line: bytes) -> None:
        seq, body = record["sequence"], body_of(record)
        try:
            when: float | None = parse_time(str(record.get("recorded_at"))).timestamp()
        except AuditError:
            when = None
        complete = body.get("complete")
        rows.append((seq, record["type"], when, record_id(record), body.get("patient_pseudonym"),
                     body.get("highest_urgency"), None if complete is None else int(bool(complete)),
                     start, end - start,
                     body.get("decision_id") if record["type"] in ("cards", "feedback") else None))  # fmt: skip
        if record["type"] == "decision":
            ids, used = _findings_and_packs(body, catalog)
            findings.extend((f, seq) for f in ids)
            packs.extend((name, version, seq) for name, version in used)
        if len(rows) >= _BATCH:
            _flush(conn, rows, findings, packs, result, record, end)

    segments = list_segments(directory)
    if result.last_sequence == 0 and segments:  # from the oldest file present, where its chain starts
        start = chain_start(segments[0].path)
        result = ScanResult(start.prev_sequence, start.prev_hash, 0)
        at: Path | None = segments[0].path
    else:
        at = locate(segments, result.last_sequence)
    files = [seg.path for seg in segments]
    for path in files[files.index(at) :] if at in files else []:
        if path != at:
            result.end = 0  # offsets are each file's own
        if _scan_file_on(path, result, take):
            break  # past damage nothing is indexed; verify names it
    if rows:
        _flush(conn, rows, findings, packs, result, None, result.end)
    return result.first_problem()


def _scan_file_on(path: Path, result: ScanResult, take: Any) -> bool:
    """Scan ``path`` from ``result.end`` on, into ``result``; ``True``: the chain broke in it."""
    with open(path, "rb") as fh:
        fh.seek(result.end)
        carry = b""
        while block := fh.read(4 << 20):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            if cut:
                scan(data[:cut], base_offset=result.end, on_record=take, into=result)
                if result.problem is not None:
                    return True
            carry = data[cut:]
        if carry and result.problem is None:
            scan(carry, base_offset=result.end, into=result)  # a torn last line: a problem, no row
    return result.problem is not None


def _findings_and_packs(body: dict[str, Any], catalog: Catalog) -> tuple[list[str], list[tuple[str, Any]]]:
    """Finding ids and (pack, version) pairs of a decision, read from its catalog entries
    when it is compact (without rebuilding the whole explanation: indexing must be fast)."""
    findings: Any = body.get("findings")
    packs: Any = body.get("packs")
    explanation = body.get("explanation")
    with contextlib.suppress(IndexError, KeyError, TypeError):
        if isinstance(explanation, dict):
            findings = [catalog.lookup(node[0])["static"] for node in explanation.get("findings") or ()]
            packs = catalog.lookup(explanation["packs"])["packs"] if "packs" in explanation else []
    ids = [f["id"] for f in findings or () if isinstance(f, dict) and isinstance(f.get("id"), str)]
    named = [p for p in packs or () if isinstance(p, dict) and isinstance(p.get("name"), str)]
    used = [(p["name"], p.get("version")) for p in named]
    return ids, used


def _flush(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    findings: list[tuple[str, int]],
    packs: list[tuple[str, Any, int]],
    result: ScanResult,
    last: dict[str, Any] | None,
    end: int,
) -> None:
    """Write the rows gathered so far and how far they reach, in one transaction."""
    if last is not None:  # called from inside the scan: ``result`` is not yet updated for ``last``
        sequence, digest = last["sequence"], last["hash"]
        length = end - rows[-1][7]
    else:
        sequence, digest, length = result.last_sequence, result.last_hash, len(result.last_line)
    with conn:
        conn.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany("INSERT INTO findings VALUES (?,?)", findings)
        conn.executemany("INSERT INTO packs VALUES (?,?,?)", packs)
        if rows:
            meta = {"end": end, "last_length": length, "last_hash": digest, "last_sequence": sequence}
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", [(k, str(v)) for k, v in meta.items()])
    rows.clear()
    findings.clear()
    packs.clear()


def query(
    directory: Path, flt: RecordFilter, *, limit: int | None = None, problems: list[ChainProblem] | None = None
) -> Iterator[dict[str, Any]]:
    """Records matching ``flt`` in sequence order, found through the index and read from the log.

    :param problems: gets the damage the index met while catching up, if any.
    """
    directory = Path(directory)
    problem = catch_up(directory)
    if problem is not None and problems is not None:
        problems.append(problem)
    where, params = _where(flt)
    sql = f"SELECT sequence, offset, length FROM records r WHERE {where} ORDER BY sequence"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    catalog, _ = load_catalog(directory)
    for record in _read_hits(directory, sql, params):
        with contextlib.suppress(AuditError):
            record = expand_record(record, catalog)
        if flt.matches(record):
            yield record


def _read_hits(directory: Path, sql: str, params: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """The records at the ``(sequence, offset, length)`` rows ``sql`` selects, read from the log.

    Each line is checked on its own (canonical, matching its hash); one that is not a whole
    record means the log changed under the index, which is then not believed: it is skipped.
    The caller still checks that a record is what it asked for: the index only finds candidates.
    """
    conn = connect(directory)
    try:
        hits = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    with _Lines(directory) as lines:
        for seq, offset, length in hits:
            line = lines.read(seq, offset, length)
            record = check_alone(line[:-1]) if line.endswith(b"\n") else None
            if record is not None:
                yield record


def _where(flt: RecordFilter) -> tuple[str, list[Any]]:
    clauses = [f"r.type IN ({','.join('?' * len(flt.types))})"]
    params: list[Any] = list(flt.types)
    if flt.since is not None:
        clauses.append("r.recorded_at >= ?")
        params.append(flt.since.timestamp())
    if flt.until is not None:
        clauses.append("r.recorded_at <= ?")
        params.append(flt.until.timestamp())
    if flt.pseudonym:
        clauses.append("r.pseudonym = ?")
        params.append(flt.pseudonym)
    if flt.urgency:
        clauses.append(f"r.urgency IN ({','.join('?' * len(flt.urgency))})")
        params += list(flt.urgency)
    if flt.incomplete:
        clauses.append("r.complete = 0")
    if flt.finding:
        clauses.append("r.sequence IN (SELECT sequence FROM findings WHERE finding = ?)")
        params.append(flt.finding)
    if flt.pack:
        name, _, version = flt.pack.partition("@")
        sub = "SELECT sequence FROM packs WHERE name = ?" + (" AND version = ?" if version else "")
        clauses.append(f"r.sequence IN ({sub})")
        params += [name] + ([version] if version else [])
    if flt.finding or flt.urgency or flt.pack or flt.incomplete:
        clauses.append("r.type = 'decision'")
    return " AND ".join(clauses), params


class _Lines:
    """Reads a record's line by sequence, offset and length from the segment file holding it
    (``b""`` when that file is not here: archived away, or the index is stale)."""

    def __init__(self, directory: Path) -> None:
        self.segments = list_segments(directory)
        self.files: dict[Path, Any] = {}

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *_exc: object) -> None:
        for fh in self.files.values():
            fh.close()

    def read(self, sequence: int, offset: int, length: int) -> bytes:
        path = locate(self.segments, sequence)
        if path is None:
            return b""
        fh = self.files.get(path)
        if fh is None:
            fh = self.files[path] = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        fh.seek(offset)
        data: bytes = fh.read(length)
        return data

def related(directory: Path, decision_id: str) -> list[dict[str, Any]]:
    """The ``cards`` and ``feedback`` records that name ``decision_id``, read from the log and
    checked on their own (found through the index)."""
    directory = Path(directory)
    catch_up(directory)
    sql = "SELECT sequence, offset, length FROM records WHERE refers_to = ? ORDER BY sequence"
    return [
        r
        for r in _read_hits(directory, sql, (decision_id,))
        if r.get("type") in _RELATED_TYPES and body_of(r).get("decision_id") == decision_id
    ]


_RELATED_TYPES = ("cards", "feedback")
