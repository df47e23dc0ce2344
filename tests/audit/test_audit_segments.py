"""Segments: the log rolls into sealed files chained to each other; each can be archived and
verified on its own; a roll survives a kill at every step; single-file logs upgrade in place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result
from click.testing import CliRunner

from neurocds.audit import AuditError, AuditLog, index, verify_log
from neurocds.audit import segments as segments_module
from neurocds.audit.chain import LOG_NAME
from neurocds.audit.query import RecordFilter, find_record, iter_records, records_backwards
from neurocds.audit.segments import SEGMENTS_DIR, list_segments
from neurocds.audit.settings import parse_segment
from neurocds.audit.verify import format_report
from neurocds.cli import main as cli

SMALL = "4KB"  # the smallest segment: a few records each


def _append(log: AuditLog, count: int) -> None:
    for _ in range(count):
        log.record_decision(make_result(), make_facts())


def _sealed(d: Path) -> list[str]:
    return sorted(os.listdir(d / SEGMENTS_DIR)) if (d / SEGMENTS_DIR).is_dir() else []


def _decisions(d: Path) -> list[int]:
    return [r["sequence"] for r in iter_records(d, expand=False) if r["type"] == "decision"]


def _audit(*args: Any) -> Any:
    return CliRunner().invoke(cli, ["audit", *map(str, args)], catch_exceptions=False)


def test_the_log_rolls_by_size_into_segments_chained_to_each_other(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d, segment=SMALL), 20)
    names = _sealed(d)
    assert len(names) >= 3
    expected_first = 1
    for name in names:  # contiguous, named by the sequences they hold
        first, last = (int(n) for n in name.removesuffix(".jsonl").split("-"))
        assert first == expected_first and last >= first
        assert os.path.getsize(d / SEGMENTS_DIR / name) >= 4096
        expected_first = last + 1
    opening = json.loads((d / LOG_NAME).read_bytes().split(b"\n")[0])
    assert opening["type"] == "segment" and opening["sequence"] == expected_first
    assert opening["segment"]["previous"]["file"] == names[-1] and opening["segment"]["reason"] == "size"
    report = verify_log(d)
    assert report.ok, format_report(report)
    assert report.records == report.last_sequence and len(report.segments) == len(names) + 1
    assert len(_decisions(d)) == 20  # every decision, read through every file
    assert len(list(index.query(d, RecordFilter(types=("decision",))))) == 20
    assert find_record(d, "1")["sequence"] == 1  # in the oldest sealed segment
    assert [r["sequence"] for r in records_backwards(d, max_bytes=10_000)][:2] == [
        report.last_sequence,
        report.last_sequence - 1,
    ]


def test_the_log_rolls_at_the_first_append_of_a_new_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, segment="daily")
    _append(log, 3)
    assert _sealed(d) == []
    tomorrow = "2999-01-01T00:00:01.000000Z"
    monkeypatch.setattr(segments_module, "utc_now", lambda: tomorrow)
    _append(log, 1)
    assert _sealed(d) == ["000000000001-000000000004.jsonl"]
    assert json.loads((d / LOG_NAME).read_bytes().split(b"\n")[0])["segment"]["reason"] == "day"
    assert verify_log(d).ok


def test_a_signing_key_ends_each_segment_in_a_checkpoint(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d, segment=SMALL, signing_key_path=keypair[0]), 12)
    for name in _sealed(d):
        last = json.loads((d / SEGMENTS_DIR / name).read_bytes().splitlines()[-1])
        assert last["type"] == "checkpoint" and last["checkpoint"]["sequence"] == last["sequence"] - 1
    report = verify_log(d, public_key=keypair[1])
    assert report.ok and all(cp.signature == "valid" for cp in report.checkpoints)


def test_old_segments_archived_away_are_named_not_verified(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d, archive = tmp_path / "log", tmp_path / "archive"
    _append(AuditLog(d, segment=SMALL, signing_key_path=keypair[0], checkpoint_every=3), 20)
    names = _sealed(d)
    archive.mkdir()
    for name in names[:2]:
        shutil.move(d / SEGMENTS_DIR / name, archive / name)
    report = verify_log(d, public_key=keypair[1])
    assert report.ok, format_report(report)  # the mirror's archived checkpoints are not "missing"
    last_archived = int(names[1].split("-")[1].removesuffix(".jsonl"))
    assert report.first_sequence == last_archived + 1 and report.archived["file"] == names[1]
    text = format_report(report)
    assert f"NOT VERIFIED HERE: sequences 1..{last_archived}" in text and report.archived["sha256"] in text
    # Each archived file verifies on its own, and against what the log commits to for it.
    result = _audit("verify", "--audit-dir", d, "--segment", archive / names[1], "--public-key", keypair[1])
    assert result.exit_code == 0, result.output
    assert "byte for byte the segment segments/" in result.output
    # A copy altered after archiving does not match the commitment.
    data = bytearray((archive / names[1]).read_bytes())
    data[-40] ^= 1
    (archive / names[1]).write_bytes(bytes(data))
    result = _audit("verify", "--audit-dir", d, "--segment", archive / names[1])
    assert result.exit_code == 1 and "is not the segment" in result.output
    # Queries answer from what is here; the index rebuilds without the archived files.
    (d / "index.sqlite").unlink(missing_ok=True)
    found = list(index.query(d, RecordFilter(types=("decision",))))
    assert found and min(r["sequence"] for r in found) > last_archived


def test_a_segment_removed_from_the_middle_is_named(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d, segment=SMALL), 20)
    names = _sealed(d)
    (d / SEGMENTS_DIR / names[1]).unlink()
    report = verify_log(d)
    assert not report.ok
    [problem] = [p for p in report.problems if p.code == "segment_missing"]
    first = int(names[1].split("-")[0])
    assert problem.sequence == first and names[1] in problem.reason


def test_an_edited_sealed_segment_is_caught(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d, segment=SMALL), 20)
    path = d / SEGMENTS_DIR / _sealed(d)[1]
    lines = path.read_bytes().split(b"\n")
    at = lines[1].index(b'"recorded_at":"') + 16  # a digit of the year: still a valid timestamp
    lines[1] = lines[1][:at] + (b"1" if lines[1][at : at + 1] != b"1" else b"2") + lines[1][at + 1 :]
    path.write_bytes(b"\n".join(lines))
    report = verify_log(d)
    assert not report.ok and report.first_bad_sequence == int(path.name.split("-")[0]) + 1


def test_verify_and_roll_on_the_command_line(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d), 3)
    result = _audit("roll", "--audit-dir", d)
    assert result.exit_code == 0 and "sealed segments/000000000001-000000000003.jsonl" in result.output
    assert "nothing to seal" in _audit("roll", "--audit-dir", d).output
    result = _audit("verify", "--audit-dir", d)
    assert result.exit_code == 0 and "segments read: 2" in result.output


def test_a_single_file_log_upgrades_in_place(tmp_path: Path) -> None:
    """A log written before segments is the first segment once it rolls: nothing moves or is rewritten."""
    d = tmp_path / "log"
    _append(AuditLog(d), 6)
    before = (d / LOG_NAME).read_bytes()
    assert len(list(index.query(d, RecordFilter()))) == 6  # an index built before the upgrade
    _append(AuditLog(d, segment=SMALL), 6)
    first = _sealed(d)[0]
    assert first.startswith("000000000001-") and (d / SEGMENTS_DIR / first).read_bytes().startswith(before)
    assert verify_log(d).ok
    assert len(list(index.query(d, RecordFilter()))) == 12  # the index catches up across files


@pytest.mark.parametrize("step", ["next_written", "linked", "switched"])
def test_a_kill_at_any_step_of_a_roll_loses_nothing(tmp_path: Path, step: str) -> None:
    d = tmp_path / "log"
    _append(AuditLog(d), 5)
    kill = {
        "next_written": "segments.seal_and_switch = lambda *a: os._exit(9)",
        "linked": "segments.os.replace = lambda *a: os._exit(9)",
        "switched": "store.roll = (lambda real: lambda *a: (real(*a), os._exit(9)))(store.roll)",
    }[step]
    code = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from audit_helpers import make_facts, make_result
from neurocds.audit import AuditLog, segments, store
{kill}
AuditLog({str(d)!r}, segment={SMALL!r}).record_decision(make_result(), make_facts())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    log = AuditLog(d, segment=SMALL)  # the next writer finishes (or drops) the roll, then appends
    _append(log, 1)
    report = verify_log(d)
    assert report.ok, format_report(report)
    assert _decisions(d) == sorted(set(_decisions(d))) and len(_decisions(d)) == 7
    assert not (d / segments_module.NEXT_NAME).exists()
    assert len(list_segments(d)) == len(_sealed(d)) + 1


@pytest.mark.parametrize("bad", ["", "weekly", "10", "1TB", "daily,daily", "64MB,1GB"])
def test_a_segment_setting_that_cannot_be_read_is_refused(bad: str) -> None:
    with pytest.raises(AuditError, match="rolls to a new segment"):
        parse_segment(bad)


def test_the_segment_setting_reads_sizes_and_days(tmp_path: Path) -> None:
    assert parse_segment("64MB") == (64 << 20, False)
    assert parse_segment("daily, 1gb") == (1 << 30, True)
    assert parse_segment("daily") == (None, True)
    log = AuditLog.from_env({"NEUROCDS_AUDIT_DIR": str(tmp_path / "log"), "NEUROCDS_AUDIT_SEGMENT": "daily,4KB"})
    assert log is not None and (log.segment_bytes, log.segment_daily) == (4096, True)


def test_evaluate_rolls_with_the_segment_flag_and_refuses_a_bad_one(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "cauda-equina.json"
    d = tmp_path / "log"
    for _ in range(3):
        result = CliRunner().invoke(cli, ["evaluate", str(example), "--audit-dir", str(d), "--audit-segment", "4KB"])
        assert result.exit_code == 0, result.output
    assert _sealed(d) and verify_log(d).ok
    result = CliRunner().invoke(
        cli, ["evaluate", str(example), "--audit-dir", str(d)], env={"NEUROCDS_AUDIT_SEGMENT": "weekly"}
    )
    assert result.exit_code == 2 and "NEUROCDS_AUDIT_SEGMENT='weekly'" in result.output
