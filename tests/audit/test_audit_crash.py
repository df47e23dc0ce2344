"""Crash safety: torn tails are quarantined and recorded, acknowledged records survive SIGKILL."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_helpers import assert_acknowledged_survive, make_facts, make_result, read_lines

from neurocds.audit import AuditIntegrityError, AuditLog, verify_log
from neurocds.audit.chain import CHECKPOINTS_NAME, HEAD_NAME, LOG_NAME, QUARANTINE_DIR
from neurocds.facts.strictjson import canonical_json


def _log_with(d: Path, n: int, **kw: object) -> AuditLog:
    log = AuditLog(d, **kw)  # type: ignore[arg-type]
    for _ in range(n):
        log.record_decision(make_result(), make_facts())
    return log


def test_torn_tail_is_quarantined_recorded_and_the_chain_goes_on(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 3)
    torn = (d / LOG_NAME).read_bytes().splitlines()[0][:57]  # the start of a record, no line end
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(torn)
    before = verify_log(d)
    assert not before.ok and before.first_bad_sequence == 4
    assert before.problems[0].code == "torn_tail"

    appended = AuditLog(d).record_decision(make_result(), make_facts())

    assert appended.sequence == 5
    records = read_lines(d)
    recovery = records[3]
    assert recovery["type"] == "recovery"
    body = recovery["recovery"]
    assert body["kind"] == "torn_tail" and body["after_sequence"] == 3
    assert body["length"] == len(torn) and body["sha256"] == hashlib.sha256(torn).hexdigest()
    assert (d / body["quarantine_file"]).read_bytes() == torn  # moved aside, not dropped
    assert records[4]["type"] == "decision"
    assert verify_log(d).ok


def test_newline_terminated_garbage_beyond_the_head_is_torn_too(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 2)
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(b"\x00\x00\x00{garbage\n")  # e.g. a power loss persisted the line end first
    log = AuditLog(d)
    recovered = log.recover()
    assert [r.type for r in recovered] == ["recovery"]
    assert read_lines(d)[2]["recovery"]["length"] == 12
    assert verify_log(d).ok


def test_lagging_head_is_resynced_and_recorded(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 3)
    second = read_lines(d)[1]
    (d / HEAD_NAME).write_bytes(canonical_json({"sequence": 2, "hash": second["hash"]}))
    report = verify_log(d)
    assert report.ok and any("lags" in n for n in report.notes)
    AuditLog(d).record_decision(make_result(), make_facts())
    rec = read_lines(d)[3]
    assert rec["recovery"] == {
        "kind": "head_behind",
        "head_sequence": 2,
        "head_hash": second["hash"],
        "head_matched": True,
    }
    assert verify_log(d).ok


def test_head_naming_a_different_hash_refuses(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 3)
    (d / HEAD_NAME).write_bytes(canonical_json({"sequence": 2, "hash": "cd" * 32}))
    with pytest.raises(AuditIntegrityError) as info:
        AuditLog(d).record_decision(make_result(), make_facts())
    assert info.value.sequence == 2
    assert verify_log(d).first_bad_sequence == 1  # no checkpoint: the whole prefix is suspect


def test_crash_after_quarantine_before_its_record_is_completed(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 2)
    end = (d / LOG_NAME).stat().st_size
    q = d / QUARANTINE_DIR
    q.mkdir()
    data = b'{"partial":'
    name = f"torn-after-2-at-{end}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    (q / name).write_bytes(data)
    waiting = verify_log(d)
    assert waiting.ok and any("the next append records them" in n for n in waiting.notes)
    AuditLog(d).record_decision(make_result(), make_facts())
    rec = read_lines(d)[2]
    assert rec["recovery"]["quarantine_file"] == f"{QUARANTINE_DIR}/{name}"
    assert rec["recovery"]["offset"] == end
    assert verify_log(d).ok


@pytest.mark.parametrize("kind", ["any name", "writer's name, not at the log's end", "writer's name, wrong hash"])
def test_a_file_nobody_recorded_in_quarantine_is_reported_never_recorded(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    from neurocds.audit.verify import format_report

    d = tmp_path / "log"
    _log_with(d, 2)
    end = (d / LOG_NAME).stat().st_size
    data = b'{"planted":1}'
    digest = hashlib.sha256(data).hexdigest()[:16]
    name = {
        "any name": "PATIENT-Zx81-secret.txt",
        "writer's name, not at the log's end": f"torn-after-1-at-0-{digest}.bin",
        "writer's name, wrong hash": f"torn-after-2-at-{end}-{'0' * 16}.bin",
    }[kind]
    (d / QUARANTINE_DIR).mkdir()
    (d / QUARANTINE_DIR / name).write_bytes(data)
    report = verify_log(d)
    assert not report.ok and report.first_bad_sequence is None and report.verified_through == 2
    [problem] = report.problems
    assert problem.code == "quarantine" and f"{QUARANTINE_DIR}/{name} is not accounted for" in problem.reason
    assert format_report(report).splitlines()[1] == f"FAIL: {problem.reason}"
    with caplog.at_level("WARNING", logger="neurocds.audit"):
        AuditLog(d).record_decision(make_result(), make_facts())
    assert [r["type"] for r in read_lines(d)] == ["decision"] * 3  # no recovery record vouches for it
    assert "1 file(s) in quarantine/ have no recovery record" in caplog.text and name not in caplog.text
    assert [p.reason for p in verify_log(d).problems] == [problem.reason]


def test_quarantined_bytes_are_themselves_protected(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 2)
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(b'{"torn')
    AuditLog(d).recover()
    [qfile] = (d / QUARANTINE_DIR).iterdir()
    qfile.write_bytes(b'{"tampered')
    report = verify_log(d)
    assert not report.ok and report.first_bad_sequence == 3
    qfile.unlink()
    assert verify_log(d).first_bad_sequence == 3


def test_checkpoint_mirror_is_repaired_after_a_crash(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d = tmp_path / "log"
    log = _log_with(d, 2, signing_key_path=keypair[0])
    log.checkpoint()
    mirror = d / CHECKPOINTS_NAME
    full = mirror.read_bytes()
    mirror.write_bytes(full[:30])  # the mirror write was cut short
    report = verify_log(d, public_key=keypair[1])
    assert report.ok, report.problems  # the checkpoint is the last record: a crash window
    AuditLog(d).record_decision(make_result(), make_facts())  # the next process repairs it
    assert mirror.read_bytes() == full
    assert verify_log(d, public_key=keypair[1]).ok


_CHILD = r"""
import sys, uuid
sys.path.insert(0, sys.argv[3])
from audit_helpers import make_facts, make_result
from neurocds.audit import AuditLog, AuditError
log = AuditLog(sys.argv[1], checkpoint_every=5, signing_key_path=sys.argv[2])
try:
    for n in range(10**9):
        did = str(uuid.uuid4())
        decision = log.prepare_decision(make_result(evaluation_id=did), make_facts())
        if n % 2:  # every other one with its cards, in one append (as the CDS Hooks service does)
            appended = log.append_together([decision, log.prepare_cards(did, [did + "-card"])])[0]
        else:
            appended = log.append_together([decision])[0]
        print(appended.sequence, did, flush=True)
        if n == 0:  # warm (imports, schema, first scan) before the parent picks a moment
            print("ready", flush=True)
except AuditError as exc:
    print("error", exc, flush=True)
    sys.exit(3)
"""


def test_sigkill_at_random_points_loses_no_acknowledged_record(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d = tmp_path / "log"
    AuditLog(d)  # create the layout once
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    helpers = str(Path(__file__).parent)
    rng = random.Random(20250304)
    acked: dict[int, str] = {}
    kills = 0
    deadline = time.monotonic() + 5.0  # bounds the run time (at least 5 kills); never asserted on
    while kills < 25 and (kills < 5 or time.monotonic() < deadline):
        child = subprocess.Popen(
            [sys.executable, str(script), str(d), str(keypair[0]), helpers],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        ready = child.stdout.readline()
        if ready.strip() != b"ready":
            child.kill()
            pytest.fail(f"child did not start: {first!r} {ready!r} {child.communicate()[1]!r}")
        seq, did = first.decode().split()
        acked[int(seq)] = did
        time.sleep(rng.uniform(0.0, 0.04))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, (out, err)  # it never refused to append
        for line in out.split(b"\n")[:-1]:  # an unfinished last line was not acknowledged
            seq, did = line.decode().split()
            acked[int(seq)] = did
        kills += 1
    assert len(acked) >= kills  # every child acknowledged at least its first append

    assert_acknowledged_survive(d, acked, keypair[1])


def test_a_copy_of_a_crashed_log_verifies_after_recovery_only(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _log_with(d, 2)
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(json.dumps({"sequence": 3})[:8].encode())
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    assert not verify_log(copy).ok  # verification never repairs
    assert (copy / LOG_NAME).read_bytes() == (d / LOG_NAME).read_bytes()
