"""Finding records: lenient reading, filters, lookup by id, table output.

Reading here is lenient on purpose (every parseable line is listed, even past
damage): an auditor must be able to see what a damaged log holds. Whether the
chain is intact is :mod:`neurocds.audit.verify`'s job, and the CLI says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurocds.audit.catalog import expand_record, load_catalog
from neurocds.audit.chain import LOG_NAME, parse_record
from neurocds.audit.errors import AuditError
from neurocds.audit.records import RECORD_TYPES
from neurocds.audit.segments import list_segments

_DECISION_ONLY = ("finding", "urgency", "pack", "incomplete")


def read_records(directory: str | Path) -> list[dict[str, Any]]:
    """Every complete line of the log that parses as a record, in file order.

    Decisions stored compactly come back whole (their explanation rebuilt from the
    catalog); one whose explanation cannot be rebuilt comes back as stored.
    """
    return list(iter_records(directory))


def iter_records(directory: str | Path, *, expand: bool = True) -> Iterator[dict[str, Any]]:
    """:func:`read_records`, one record at a time (memory flat in the log's length).

    :param expand: rebuild compact decisions (``False``: as stored, much faster).
    """
    if not (Path(directory) / LOG_NAME).exists():
        raise AuditError(f"no audit log in {directory}")
    catalog, _ = load_catalog(Path(directory)) if expand else (None, None)
    for segment in list_segments(Path(directory)):  # oldest first; the active file last
        with open(segment.path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # the last piece has no line end
                record = parse_record(line)
                if record is None:
                    continue
                if catalog is not None:
                    with contextlib.suppress(AuditError):  # shown as stored; verify names the damage
                        record = expand_record(record, catalog)
                yield record


def records_backwards(directory: str | Path, *, max_bytes: int, block: int = 1 << 20) -> Iterator[dict[str, Any]]:
    """Records from the log's end backwards, reading at most ``max_bytes`` (stored form: a
    compact decision is not rebuilt), through the segment files newest first. For what only
    the newest records matter to, such as the service's card index at start: the cost does
    not grow with the log."""
    budget = max_bytes
    for segment in reversed(list_segments(Path(directory))):
        if budget <= 0:
            return
        size = segment.path.stat().st_size
        yield from _file_backwards(segment.path, max_bytes=budget, block=block)
        budget -= size


def _file_backwards(path: Path, *, max_bytes: int, block: int) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        position = fh.seek(0, 2)
        floor = max(0, position - max_bytes)
        carry = b""
        while position > floor:
            start = max(floor, position - block)
            fh.seek(start)
            data = fh.read(position - start) + carry
            position = start
            lines = data.split(b"\n")
            carry = lines[0] if position > 0 else b""  # maybe the end of a line that began earlier
            for line in reversed(lines[1:] if position > 0 else lines):
                record = parse_record(line)  # None: a torn last line, or the cut-off start of one at the floor
                if record is not None:
                    yield record


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset; a bare date means midnight UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise AuditError(f"not an RFC 3339 timestamp: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def body_of(record: Mapping[str, Any]) -> dict[str, Any]:
    body = record.get(str(record.get("type")))
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class RecordFilter:
    """Conditions a record must all meet. Decision-only conditions exclude other types."""

    since: datetime | None = None
    until: datetime | None = None
    pseudonym: str | None = None
    finding: str | None = None
    urgency: tuple[str, ...] = ()
    pack: str | None = None  # NAME or NAME@VERSION
    incomplete: bool = False
    types: tuple[str, ...] = ("decision", "rejection")

    def __post_init__(self) -> None:
        unknown = set(self.types) - set(RECORD_TYPES)
        if unknown:
            raise AuditError(f"unknown record type(s): {', '.join(sorted(unknown))}")

    def _decision_only(self) -> bool:
        return bool(self.finding or self.urgency or self.pack or self.incomplete)

    def matches(self, record: Mapping[str, Any]) -> bool:
        rtype = record.get("type")
        if rtype not in self.types:
            return False
        if self._decision_only() and rtype != "decision":
            return False
        if self.since or self.until:
            try:
                when = parse_time(str(record.get("recorded_at")))
            except AuditError:
                return False
            if (self.since and when < self.since) or (self.until and when > self.until):
                return False
        body = body_of(record)
        if self.pseudonym and body.get("patient_pseudonym") != self.pseudonym:
            return False
        if self.finding and not any(f.get("id") == self.finding for f in _dicts(body.get("findings"))):
            return False
        if self.urgency and body.get("highest_urgency") not in self.urgency:
            return False
        if self.pack and not _has_pack(body, self.pack):
            return False
        return not (self.incomplete and body.get("complete") is not False)


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items or () if isinstance(i, dict)] if isinstance(items, list) else []


def _has_pack(body: Mapping[str, Any], spec: str) -> bool:
    name, _, version = spec.partition("@")
    return any(
        p.get("name") == name and (not version or p.get("version") == version) for p in _dicts(body.get("packs"))
    )


def query_records(directory: str | Path, flt: RecordFilter) -> list[dict[str, Any]]:
    return [r for r in iter_records(directory) if flt.matches(r)]


def find_record(directory: str | Path, ident: str) -> dict[str, Any]:
    """A decision or rejection by id, unique id prefix (8+ characters) or sequence number.

    ``#N`` is always sequence number N. A bare number is a sequence number and, from
    8 digits on, also an id prefix: about one id in 43 starts with 8 decimal digits, and a
    prefix copied from one must still find it.
    :raises AuditError: nothing, or more than one record, matches.
    """
    text = ident.strip()
    number = text.removeprefix("#") if text.startswith("#") or text.isdigit() else None
    prefix_ok = not text.startswith("#") and len(text) >= 8
    by_number: list[dict[str, Any]] = []
    exact: list[dict[str, Any]] = []
    by_prefix: list[dict[str, Any]] = []
    for record in iter_records(directory, expand=False):  # only the one found is rebuilt
        if number is not None and number.isdigit() and record.get("sequence") == int(number):
            by_number.append(record)
        if not text.startswith("#"):
            rid = _id_of(record)
            if rid == text:
                exact.append(record)
            elif prefix_ok and rid is not None and rid.startswith(text):
                by_prefix.append(record)
    hits = by_number + (exact or by_prefix)
    if not hits:
        if not text.startswith("#") and len(text) < 8:
            raise AuditError(
                f"no record {ident!r}: an id prefix needs 8 or more characters (#N is sequence number N)"
            )
        raise AuditError(f"no record {ident!r} in the audit log")
    if len({r.get("sequence") for r in hits}) > 1:
        raise AuditError(f"{ident!r} matches more than one record; give more of the id, or #N for sequence number N")
    catalog, _ = load_catalog(Path(directory))
    with contextlib.suppress(AuditError):
        return expand_record(hits[0], catalog)
    return hits[0]


def _id_of(record: Mapping[str, Any]) -> str | None:
    body = body_of(record)
    value = body.get("decision_id") if record.get("type") == "decision" else body.get("rejection_id")
    return value if isinstance(value, str) else None


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """One row per record, without facts."""
    body = body_of(record)
    row: dict[str, Any] = {
        "sequence": record.get("sequence"),
        "recorded_at": record.get("recorded_at"),
        "type": record.get("type"),
        "id": _id_of(record) or body.get("card_uuid") or body.get("decision_id") or "",
    }
    if record.get("type") == "decision":
        row.update(
            highest_urgency=body.get("highest_urgency"),
            complete=body.get("complete"),
            findings=[f"{f.get('id')}:{f.get('urgency')}" for f in _dicts(body.get("findings"))],
            packs=[f"{p.get('name')}@{p.get('version')}" for p in _dicts(body.get("packs"))],
            patient_pseudonym=body.get("patient_pseudonym"),
            redacted=body.get("redacted"),
        )
    elif record.get("type") == "rejection":
        row.update(
            violations=len(_dicts(body.get("violations"))),
            patient_pseudonym=body.get("patient_pseudonym"),
        )
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed columns for a terminal; long cells are cut, never wrapped."""
    header = ("SEQ", "RECORDED_AT", "TYPE", "ID", "URGENCY", "COMPLETE", "FINDINGS", "PSEUDONYM")
    table = [header]
    for r in rows:
        complete = r.get("complete")
        table.append(
            (
                str(r.get("sequence", "")),
                str(r.get("recorded_at", ""))[:19],
                str(r.get("type", "")),
                str(r.get("id", ""))[:36],
                str(r.get("highest_urgency") or ""),
                "" if complete is None else ("yes" if complete else "NO"),
                ",".join(r.get("findings") or ())[:60],
                str(r.get("patient_pseudonym") or "")[:12],
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
