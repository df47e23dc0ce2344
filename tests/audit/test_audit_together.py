"""Several records in one append (the CDS Hooks decision and its cards): one lock, one
fsync, the same chain, and after a crash both records or neither."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import shutil
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result, read_lines

from neurocds.audit import AuditError, AuditLog, verify_log
from neurocds.audit.chain import HEAD_NAME, LOCK_NAME, LOG_NAME, QUARANTINE_DIR
from neurocds.audit.records import record_hash


def _decision_and_cards(log: AuditLog, decision_id: str = "d-1") -> list[int]:
    pending = [log.prepare_decision(make_result(evaluation_id=decision_id), make_facts()),
               log.prepare_cards(decision_id, ["card-1", "card-2"])]  # fmt: skip
    return [a.sequence for a in log.append_together(pending)]


def test_records_appended_together_chain_like_records_appended_alone(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    log.record_decision(make_result(), make_facts())
    assert _decision_and_cards(log) == [2, 3]
    log.record_cards("d-1", ["card-3"])
    records = read_lines(d)
    assert [r["type"] for r in records] == ["decision", "decision", "cards", "cards"]
    # Only the first of the pair says the next record belongs with it.
    assert [r.get("atomic_with_next") for r in records] == [None, True, None, None]
    for before, record in itertools.pairwise(records):
        assert record["prev_hash"] == before["hash"] and record["hash"] == record_hash(record)
    assert verify_log(d).ok
    assert log.append_together([]) == []


def test_one_lock_and_one_log_fsync_for_the_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(tmp_path / "log")
    log.record_decision(make_result(), make_facts())  # first scan done
    calls: dict[str, int] = {"flock": 0, "fsync": 0}
    real_flock, real_fsync = fcntl.flock, os.fsync

    def flock(fd: int, op: int) -> None:
        # The append lock; the sync lock, the in-flight lock and the head files' read and write
        # locks of the fsync that follows it (see neurocds.audit.durable) are taken once each too.
        calls["flock"] += os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == LOCK_NAME
        real_flock(fd, op)

    def fsync(fd: int) -> None:
        calls["fsync"] += os.readlink(f"/proc/self/fd/{fd}").endswith(LOG_NAME)
        real_fsync(fd)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(os, "fsync", fsync)
    _decision_and_cards(log)
    assert calls == {"flock": 1, "fsync": 1}
    log.record_decision(make_result(), make_facts())
    log.record_cards("d-2", ["c"])
    assert calls == {"flock": 3, "fsync": 3}  # apart: two of each


def test_a_bad_record_in_the_set_writes_none_of_them(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    bad = make_result()
    del bad["evaluated_at"]
    with pytest.raises(AuditError):
        log.append_together([log.prepare_cards("d", ["c"]), log.prepare_decision(bad, make_facts())])
    broken = log.prepare_decision(make_result(), make_facts())
    broken.body["highest_urgency"] = "whenever"  # type: ignore[index]
    with pytest.raises(AuditError, match="does not match the audit schema"):
        log.append_together([log.prepare_cards("d", ["c"]), broken])
    assert (d / LOG_NAME).read_bytes() == b""
    with pytest.raises(AuditError, match="written by the log itself"):
        log.append_together([log.prepare_cards("d", ["c"]), type(broken)("checkpoint", {})])


@pytest.mark.parametrize("cut", ["inside the second record", "between the two records"])
def test_a_crash_part_way_leaves_neither_record(tmp_path: Path, cut: str) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    log.record_decision(make_result(), make_facts())
    head_before = (d / HEAD_NAME).read_bytes()
    size_before = (d / LOG_NAME).stat().st_size
    _decision_and_cards(log, "lost-decision")
    data = (d / LOG_NAME).read_bytes()
    first_end = data.index(b"\n", size_before) + 1
    end = first_end + 40 if cut == "inside the second record" else first_end
    # What a crash during the append can leave: part of its bytes, the head not yet moved.
    (d / LOG_NAME).write_bytes(data[:end])
    (d / HEAD_NAME).write_bytes(head_before)
    report = verify_log(d)
    assert not report.ok and report.first_bad_sequence == 2
    assert report.problems[0].code == "torn_tail"
    if cut == "between the two records":  # every line is whole, yet the append is not
        assert "append of several records that did not finish" in report.problems[0].reason

    appended = AuditLog(d).record_decision(make_result(evaluation_id="next"), make_facts())

    records = read_lines(d)
    assert [r["type"] for r in records] == ["decision", "recovery", "decision"] and appended.sequence == 3
    recovery = records[1]["recovery"]
    assert recovery["kind"] == "torn_tail" and recovery["after_sequence"] == 1 and recovery["offset"] == size_before
    moved = (d / recovery["quarantine_file"]).read_bytes()
    assert moved == data[size_before:end] and recovery["sha256"] == hashlib.sha256(moved).hexdigest()
    assert b"lost-decision" in moved  # kept aside, never dropped, but not in the chain
    assert all(r.get("decision", {}).get("decision_id") != "lost-decision" for r in records)
    assert verify_log(d).ok


def test_a_head_file_inside_an_unfinished_append_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    _decision_and_cards(log)
    data = (d / LOG_NAME).read_bytes()
    (d / LOG_NAME).write_bytes(data[: data.index(b"\n") + 1])  # the head still names the second record
    before = (d / LOG_NAME).read_bytes()
    with pytest.raises(AuditError, match="inside an append that did not finish"):
        AuditLog(d).record_decision(make_result(), make_facts())
    assert (d / LOG_NAME).read_bytes() == before and not (d / QUARANTINE_DIR).exists()


def test_an_unfinished_append_left_by_another_writer_is_seen_by_a_warm_writer(tmp_path: Path) -> None:
    """A writer that has read the log before checks only what was appended since."""
    d = tmp_path / "log"
    warm = AuditLog(d)
    warm.record_decision(make_result(), make_facts())
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    _decision_and_cards(AuditLog(d))
    data = (d / LOG_NAME).read_bytes()
    (d / LOG_NAME).write_bytes(data[: data.index(b"\n", (copy / LOG_NAME).stat().st_size) + 1])
    shutil.copy(copy / HEAD_NAME, d / HEAD_NAME)
    warm.record_cards("x", ["y"])
    assert [r["type"] for r in read_lines(d)] == ["decision", "recovery", "cards"]
    assert verify_log(d).ok
