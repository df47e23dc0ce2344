"""The query index: rebuilt from the log, never trusted over it; `list` is `query`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from audit_helpers import make_facts, make_result
from click.testing import CliRunner

from neurocds.audit import AuditLog, RecordFilter, index, query_records, read_records
from neurocds.audit.chain import LOG_NAME
from neurocds.audit.index import INDEX_NAME
from neurocds.cli import main


def _log(tmp_path: Path) -> Path:
    d = tmp_path / "log"
    log = AuditLog(d)
    for k in range(6):
        urgency = ("emergency", "urgent", "routine")[k % 3]
        log.record_decision(make_result(urgency=urgency, complete=k != 4), make_facts(patient_id=f"p{k % 2}"))
    return d


FILTERS = [
    RecordFilter(),
    RecordFilter(urgency=("urgent",)),
    RecordFilter(finding="spinal.cauda_equina"),
    RecordFilter(pack="spinal-compression@2.1.0"),
    RecordFilter(pack="spinal-compression@9"),
    RecordFilter(incomplete=True),
    RecordFilter(types=("decision", "rejection", "cards")),
]


def test_the_index_answers_what_a_full_scan_answers(tmp_path: Path) -> None:
    d = _log(tmp_path)
    for flt in FILTERS:
        assert [r["sequence"] for r in index.query(d, flt)] == [r["sequence"] for r in query_records(d, flt)], flt
    # and it catches up with what is appended later
    AuditLog(d).record_decision(make_result(urgency="urgent"), make_facts())
    assert [r["sequence"] for r in index.query(d, RecordFilter(urgency=("urgent",)))] == [2, 5, 7]


def test_an_edited_index_cannot_make_a_query_say_what_the_log_does_not(tmp_path: Path) -> None:
    d = _log(tmp_path)
    list(index.query(d, RecordFilter()))  # build it
    with sqlite3.connect(d / INDEX_NAME) as conn:
        conn.execute("UPDATE records SET urgency = 'urgent'")
        conn.execute("INSERT INTO findings VALUES ('made.up', 1)")
    assert [r["sequence"] for r in index.query(d, RecordFilter(urgency=("urgent",)))] == [2, 5]
    assert list(index.query(d, RecordFilter(finding="made.up"))) == []


def test_a_log_that_no_longer_matches_the_index_is_read_again(tmp_path: Path) -> None:
    d = _log(tmp_path)
    list(index.query(d, RecordFilter()))
    lines = (d / LOG_NAME).read_bytes().splitlines(keepends=True)
    (d / LOG_NAME).write_bytes(b"".join(lines[:3]))  # records 4..6 removed (verify says so)
    assert [r["sequence"] for r in index.query(d, RecordFilter())] == [1, 2, 3]
    (d / INDEX_NAME).unlink()
    assert [r["sequence"] for r in index.query(d, RecordFilter(), limit=2)] == [1, 2]


def test_list_and_query_are_one_command(tmp_path: Path) -> None:
    d = _log(tmp_path)
    runner = CliRunner()
    outs = [runner.invoke(main, ["audit", name, "--audit-dir", str(d), "--urgency", "routine", "--format", "json"])
            for name in ("list", "query")]  # fmt: skip
    assert outs[0].exit_code == 0 and outs[0].output == outs[1].output
    helps = [runner.invoke(main, ["audit", name, "--help"]).output for name in ("list", "query")]
    assert helps[0].replace("audit list", "audit query") == helps[1]


def test_an_edited_index_cannot_tie_other_records_to_a_decision(tmp_path: Path) -> None:
    # `audit show` lists a decision's cards and feedback through index.related, which reads
    # the log the way index.query does: an index row is only a place to look.
    d = _log(tmp_path)
    decision_id = next(index.query(d, RecordFilter()))["decision"]["decision_id"]
    log = AuditLog(d)
    log.record_cards(decision_id, ["card-1"])
    log.record_feedback("card-1", "accepted", decision_id=decision_id)
    assert [r["sequence"] for r in index.related(d, decision_id)] == [7, 8]
    with sqlite3.connect(d / INDEX_NAME) as conn:
        conn.execute("UPDATE records SET refers_to = ?", (decision_id,))  # every record "refers" to it
        conn.execute("UPDATE records SET offset = offset + 1 WHERE sequence = 8")  # mid-line
    assert [r["sequence"] for r in index.related(d, decision_id)] == [7]


def test_lenient_readers_list_the_same_lines_as_records(tmp_path: Path) -> None:
    # read_records (forwards) and records_backwards (from the end) list every line that reads
    # as a record, even in a damaged log, and skip the rest alike (chain.parse_record).
    from neurocds.audit.query import records_backwards

    d = _log(tmp_path)
    planted = [b"not json", b"[1, 2]", b'{"sequence": "7"}', b'{"sequence": true}', b'{"sequence": 99}']
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(b"".join(line + b"\n" for line in planted))
    forwards = [r["sequence"] for r in read_records(d)]
    assert forwards == [1, 2, 3, 4, 5, 6, 99]
    assert [r["sequence"] for r in records_backwards(d, max_bytes=1 << 20)] == forwards[::-1]
