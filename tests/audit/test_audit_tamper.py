"""Tamper matrix: every kind of damage is detected and the first bad sequence is named.

The template log has 14 decisions and signed checkpoints every 4 records:
decisions 1-4, checkpoint 5 (signs 4), decisions 6-9, checkpoint 10 (signs 9),
decisions 11-14, checkpoint 15 (signs 14), decisions 16-17.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result, read_lines, rehash_from, set_head, write_lines

from neurocds.audit import AuditIntegrityError, AuditLog, verify_log
from neurocds.audit.chain import CHECKPOINTS_NAME, HEAD_NAME, LOG_NAME
from neurocds.audit.records import record_hash

LAST = 17
CHECKPOINTS = (5, 10, 15)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> Path:
    d = tmp_path_factory.mktemp("template") / "log"
    log = AuditLog(d, checkpoint_every=4, signing_key_path=keypair[0])
    for i in range(14):
        log.record_decision(make_result(urgency="urgent" if i % 2 else "emergency"), make_facts(f"P{i}"))
    records = read_lines(d)
    assert [r["sequence"] for r in records] == list(range(1, LAST + 1))
    assert [r["sequence"] for r in records if r["type"] == "checkpoint"] == list(CHECKPOINTS)
    return d


@pytest.fixture
def log_dir(template: Path, tmp_path: Path) -> Path:
    d = tmp_path / "log"
    shutil.copytree(template, d)
    return d


def _idx(seq: int) -> int:
    return seq - 1


# ---------------------------------------------------------------- mutations
# Each takes the directory and returns nothing; records are 1-based sequences.


def bit_flip(offset: int) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        data = bytearray((d / LOG_NAME).read_bytes())
        lines = bytes(data).split(b"\n")
        start = sum(len(x) + 1 for x in lines[: _idx(7)])
        pos = start + (offset % len(lines[_idx(7)]))
        flipped = data[pos] ^ 0x01
        if flipped == 0x0A:  # never turn a byte into a line end: that is a different case
            flipped = data[pos] ^ 0x02
        data[pos] = flipped
        (d / LOG_NAME).write_bytes(bytes(data))

    return mutate


def edit_no_rehash(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(7)]["decision"]["highest_urgency"] = "routine"
    write_lines(d, recs)


def edit_rehash_one(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(7)]["decision"]["highest_urgency"] = "routine"
    recs[_idx(7)]["hash"] = record_hash(recs[_idx(7)])
    write_lines(d, recs)


def edit_rehash_all(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(7)]["decision"]["highest_urgency"] = "routine"
    rehash_from(recs, _idx(7))
    write_lines(d, recs)
    set_head(d, recs)


def delete(d: Path) -> None:
    recs = read_lines(d)
    del recs[_idx(7)]
    write_lines(d, recs)


def delete_renumber_rehash(d: Path) -> None:
    recs = read_lines(d)
    del recs[_idx(7)]
    rehash_from(recs, _idx(7), renumber=True)
    write_lines(d, recs)
    set_head(d, recs)


def duplicate(d: Path) -> None:
    recs = read_lines(d)
    recs.insert(_idx(8), json.loads(json.dumps(recs[_idx(7)])))
    write_lines(d, recs)


def insert_forged(d: Path) -> None:
    recs = read_lines(d)
    forged = json.loads(json.dumps(recs[_idx(7)]))
    forged["sequence"] = 8
    forged["decision"]["highest_urgency"] = "info"
    forged["prev_hash"] = recs[_idx(7)]["hash"]
    forged["hash"] = record_hash(forged)
    recs.insert(_idx(8), forged)
    write_lines(d, recs)


def swap(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(7)], recs[_idx(8)] = recs[_idx(8)], recs[_idx(7)]
    write_lines(d, recs)


def truncate_tail(d: Path) -> None:
    write_lines(d, read_lines(d)[:15])


def truncate_tail_fix_head(d: Path) -> None:
    recs = read_lines(d)[:11]
    write_lines(d, recs)
    set_head(d, recs)


def cut_mid_record(d: Path) -> None:
    data = (d / LOG_NAME).read_bytes()
    (d / LOG_NAME).write_bytes(data[: len(data) - 40])


def remove_checkpoint_record(d: Path) -> None:
    recs = read_lines(d)
    del recs[_idx(10)]
    write_lines(d, recs)


def edit_checkpoint_rehash(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(10)]["checkpoint"]["signed_at"] = "2020-01-01T00:00:00Z"
    rehash_from(recs, _idx(10))
    write_lines(d, recs)
    set_head(d, recs)


def edit_checkpoint_no_rehash(d: Path) -> None:
    recs = read_lines(d)
    recs[_idx(10)]["checkpoint"]["signed_at"] = "2020-01-01T00:00:00Z"
    write_lines(d, recs)


def _mirror(d: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (d / CHECKPOINTS_NAME).read_bytes().splitlines()]


def _write_mirror(d: Path, entries: list[dict[str, Any]]) -> None:
    (d / CHECKPOINTS_NAME).write_text("".join(json.dumps(e) + "\n" for e in entries))


def edit_mirror_entry(d: Path) -> None:
    entries = _mirror(d)
    sig = entries[1]["signature"]
    entries[1]["signature"] = ("B" if sig[0] != "B" else "C") + sig[1:]
    _write_mirror(d, entries)


def remove_mirror_entry(d: Path) -> None:
    entries = _mirror(d)
    del entries[1]
    _write_mirror(d, entries)


def head_claims_more(d: Path) -> None:
    head = json.loads((d / HEAD_NAME).read_text())
    head["sequence"] = 20
    (d / HEAD_NAME).write_text(json.dumps(head))


def _edit_line(d: Path, seq: int, edit: Callable[[bytes], bytes]) -> None:
    lines = (d / LOG_NAME).read_bytes().split(b"\n")
    lines[_idx(seq)] = edit(lines[_idx(seq)])
    (d / LOG_NAME).write_bytes(b"\n".join(lines))


def duplicate_member_name(d: Path) -> None:
    """A second "highest_urgency" before the real one: json.loads keeps the last, so the hash
    still matches, but a reader that keeps the first sees "none"."""
    key = b'"highest_urgency":'
    _edit_line(d, 7, lambda line: line.replace(key, key + b'"none",' + key, 1))


def reserialise_with_spaces(d: Path) -> None:
    _edit_line(d, 7, lambda line: json.dumps(json.loads(line), ensure_ascii=False).encode())


def crlf_line_ends(d: Path) -> None:
    (d / LOG_NAME).write_bytes((d / LOG_NAME).read_bytes().replace(b"\n", b"\r\n"))


# name -> (mutation, first bad sequence, writer refuses). ``None``: a consistent
# rewrite, which can only be pinned to the span after the last checkpoint that
# still verifies (checkpoint 5 signs sequence 4, so the span starts at 5).
CASES: dict[str, tuple[Callable[[Path], None], int | None, bool]] = {
    "bit_flip_start": (bit_flip(2), 7, True),
    "bit_flip_middle": (bit_flip(400), 7, True),
    "bit_flip_end": (bit_flip(-30), 7, True),
    "edit_without_rehash": (edit_no_rehash, 7, True),
    "edit_rehash_one_record": (edit_rehash_one, 7, True),
    "edit_rehash_chain_and_head": (edit_rehash_all, None, False),
    "delete_record": (delete, 7, True),
    "delete_renumber_rehash": (delete_renumber_rehash, None, False),
    "duplicate_record": (duplicate, 7, True),
    "insert_forged_record": (insert_forged, 8, True),
    "swap_records": (swap, 7, True),
    "truncate_trailing_records": (truncate_tail, 16, True),
    "truncate_trailing_and_fix_head": (truncate_tail_fix_head, 12, False),
    "cut_last_record_short": (cut_mid_record, 17, True),
    "remove_checkpoint_record": (remove_checkpoint_record, 10, True),
    "edit_checkpoint_and_rehash": (edit_checkpoint_rehash, None, False),
    "edit_checkpoint_without_rehash": (edit_checkpoint_no_rehash, 10, True),
    "edit_checkpoint_file_entry": (edit_mirror_entry, 10, False),
    "remove_checkpoint_file_entry": (remove_mirror_entry, 10, False),
    "head_file_claims_more": (head_claims_more, 18, True),
    # Same parsed record, other bytes: only the canonical-bytes check sees these.
    "duplicate_member_name": (duplicate_member_name, 7, True),
    "reserialised_with_spaces": (reserialise_with_spaces, 7, True),
    "crlf_line_ends": (crlf_line_ends, 1, True),
}


def test_clean_log_verifies_with_and_without_key(template: Path, keypair: tuple[Path, Path]) -> None:
    with_key = verify_log(template, public_key=keypair[1])
    assert with_key.ok, with_key.problems
    assert with_key.last_sequence == LAST and with_key.verified_through == LAST
    assert [c.signature for c in with_key.checkpoints] == ["valid"] * 3
    without = verify_log(template)
    assert without.ok, without.problems
    assert any("not checked" in n for n in without.notes)


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampering_is_detected_and_first_bad_named(case: str, log_dir: Path, keypair: tuple[Path, Path]) -> None:
    mutate, first_bad, _ = CASES[case]
    mutate(log_dir)
    report = verify_log(log_dir, public_key=keypair[1])
    assert not report.ok
    if first_bad is None:
        assert report.first_bad_sequence == 5, report.problems
    else:
        assert report.first_bad_sequence == first_bad, report.problems
    assert report.verified_through == report.first_bad_sequence - 1


@pytest.mark.parametrize("case", sorted(c for c, v in CASES.items() if v[2]))
def test_writer_refuses_to_extend_a_damaged_chain(case: str, log_dir: Path) -> None:
    mutate, first_bad, _ = CASES[case]
    mutate(log_dir)
    before = (log_dir / LOG_NAME).read_bytes()
    with pytest.raises(AuditIntegrityError) as info:
        AuditLog(log_dir).record_decision(make_result(), make_facts())
    assert info.value.sequence == first_bad
    assert f"sequence {first_bad}" in str(info.value)
    assert (log_dir / LOG_NAME).read_bytes() == before  # fail closed: nothing appended or cut


def test_a_copy_of_an_early_record_is_named_where_it_stands(log_dir: Path) -> None:
    recs = read_lines(log_dir)
    recs.insert(_idx(14), json.loads(json.dumps(recs[_idx(1)])))  # a copy of record 1 at position 14
    write_lines(log_dir, recs)
    report = verify_log(log_dir)
    assert report.first_bad_sequence == 14 and report.verified_through == 13
    assert "a copy of record 1" in report.problems[0].reason


def test_edited_checkpoint_is_named_by_its_signature(log_dir: Path, keypair: tuple[Path, Path]) -> None:
    edit_checkpoint_rehash(log_dir)
    report = verify_log(log_dir, public_key=keypair[1])
    assert [p.sequence for p in report.problems if p.code == "signature"] == [10]
    # Checkpoint 15 is authentic but no longer matches: everything after checkpoint 5 is suspect.
    assert any(p.code == "checkpoint" and "5..14" in p.reason for p in report.problems)


def test_wrong_public_key_fails_every_checkpoint(template: Path, other_keypair: tuple[Path, Path]) -> None:
    report = verify_log(template, public_key=other_keypair[1])
    assert not report.ok
    assert report.first_bad_sequence == 5
    assert {p.sequence for p in report.problems if p.code == "signature"} >= set(CHECKPOINTS)
    assert "given public key" in report.problems[0].reason


def test_missing_head_file_is_reported(log_dir: Path) -> None:
    from neurocds.audit.verify import format_report

    (log_dir / HEAD_NAME).unlink()
    report = verify_log(log_dir)
    assert not report.ok
    # Every record checks out; what cannot be told is whether records after the last were removed.
    assert report.first_bad_sequence == LAST + 1 and report.verified_through == LAST
    [problem] = report.problems
    assert problem.code == "head" and "head file is missing" in problem.reason
    assert f"whether records after {LAST} were removed cannot be told" in problem.reason
    assert f"FAIL: first bad sequence {LAST + 1}" in format_report(report)
    with pytest.raises(AuditIntegrityError, match="head file is missing; refusing to append") as info:
        AuditLog(log_dir).record_decision(make_result(), make_facts())
    assert info.value.sequence == LAST + 1


def test_deleted_log_file_is_not_silently_recreated(log_dir: Path) -> None:
    (log_dir / LOG_NAME).unlink()
    with pytest.raises(AuditIntegrityError):
        AuditLog(log_dir)
    assert not (log_dir / LOG_NAME).exists()


def test_rewrite_after_newest_checkpoint_is_a_documented_blind_spot(log_dir: Path, keypair: tuple[Path, Path]) -> None:
    """Documented limit: a consistent rewrite past the newest checkpoint goes unseen."""
    recs = read_lines(log_dir)
    recs[_idx(16)]["decision"]["highest_urgency"] = "info"
    rehash_from(recs, _idx(16))
    write_lines(log_dir, recs)
    set_head(log_dir, recs)
    assert verify_log(log_dir, public_key=keypair[1]).ok
    # ...until the next checkpoint, which then covers the rewritten record as-is.


def test_rollback_with_trimmed_checkpoint_file_needs_an_external_copy(
    log_dir: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    external = tmp_path / "offsite-checkpoints.jsonl"
    shutil.copy(log_dir / CHECKPOINTS_NAME, external)
    truncate_tail_fix_head(log_dir)
    _write_mirror(log_dir, _mirror(log_dir)[:2])  # keep checkpoints 5 and 10, which still match
    assert verify_log(log_dir, public_key=keypair[1]).ok  # nothing in the directory betrays it
    report = verify_log(log_dir, public_key=keypair[1], external_checkpoints=[external])
    assert not report.ok
    assert report.first_bad_sequence == 12


@pytest.mark.parametrize("case", ["duplicate_member_name", "reserialised_with_spaces", "crlf_line_ends"])
def test_non_canonical_bytes_are_named_as_such(case: str, log_dir: Path, keypair: tuple[Path, Path]) -> None:
    mutate, first_bad, _ = CASES[case]
    mutate(log_dir)
    assert json.loads((log_dir / LOG_NAME).read_bytes().split(b"\n")[_idx(first_bad)])  # still parses
    report = verify_log(log_dir, public_key=keypair[1])
    [problem] = [p for p in report.problems if p.sequence == first_bad]
    assert problem.code == "noncanonical"
    expected = {"duplicate_member_name": "'highest_urgency' appears twice", "crlf_line_ends": "CR LF"}
    assert expected.get(case, "re-serialised") in problem.reason


def test_a_damaged_log_is_counted_whole_and_its_later_checkpoints_named(log_dir: Path) -> None:
    from neurocds.audit.verify import format_report

    bit_flip(400)(log_dir)  # record 7 damaged: 10 records and checkpoints 10 and 15 follow it
    report = verify_log(log_dir)
    text = format_report(report)
    assert f"{LAST} records in the file" in text and "the chain holds for the first 6" in text
    assert any("2 checkpoint record(s) after the damage" in n for n in report.notes)
    assert not any("no signed checkpoints" in n for n in report.notes)
