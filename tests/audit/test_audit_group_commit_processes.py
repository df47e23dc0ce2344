"""Group commit across processes: one fsync covers what every process wrote before it.

``neurocds serve --workers N`` appends to one log from N processes. A writer checks the
tail and writes under the append lock, then waits for an fsync outside it (see
:mod:`neurocds.audit.durable`); these tests run real processes on a real file system.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from audit_helpers import assert_acknowledged_survive, make_facts, make_result, read_lines, written_not_durable

from neurocds.audit import AuditLog, verify_log

# Each child appends one decision at a time (one thread: group commit inside a process
# cannot share its fsyncs) and counts the fsyncs of the log it makes itself. The fsync is
# slowed to a disk's pace, so that the other processes write while it runs.
_COUNTING_CHILD = r"""
import os, sys, time, uuid
sys.path.insert(0, sys.argv[3])
from audit_helpers import make_facts, make_result
from neurocds.audit import AuditLog
real_fsync = os.fsync
log_fsyncs = 0
def slow_fsync(fd):
    global log_fsyncs
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "audit.jsonl":
        log_fsyncs += 1
        time.sleep(0.02)
    real_fsync(fd)
os.fsync = slow_fsync
log = AuditLog(sys.argv[1])
log.head()  # opened and scanned before the start
while not os.path.exists(sys.argv[4]):
    time.sleep(0.005)
acked = []
for _ in range(int(sys.argv[2])):
    did = str(uuid.uuid4())
    acked.append(f"{log.record_decision(make_result(evaluation_id=did), make_facts()).sequence}:{did}")
print(log_fsyncs, " ".join(acked), flush=True)
"""


def test_one_fsync_covers_the_records_other_processes_wrote_before_it(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d)
    script = tmp_path / "child.py"
    script.write_text(_COUNTING_CHILD)
    start = tmp_path / "start"
    processes, per_process = 4, 12
    children = [
        subprocess.Popen(
            [sys.executable, str(script), str(d), str(per_process), str(Path(__file__).parent), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    time.sleep(1.0)  # let them import and open the log
    start.touch()
    fsyncs = 0
    acked: dict[int, str] = {}
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        count, *pairs = out.decode().split()
        fsyncs += int(count)
        for pair in pairs:
            seq, did = pair.split(":")
            acked[int(seq)] = did
    appends = processes * per_process
    assert len(acked) == appends
    # One lock held across write and fsync gives one fsync per append here (48). Shared, a
    # writer whose records an fsync begun after its write covered needs none: about half of
    # them (the others wrote while that fsync ran, and wait for the next).
    assert fsyncs <= appends * 3 // 4, f"{fsyncs} fsyncs for {appends} appends"
    records = {r["sequence"]: r for r in read_lines(d)}
    assert sorted(records) == list(range(1, appends + 1))
    assert {seq: r["decision"]["decision_id"] for seq, r in records.items()} == acked
    assert verify_log(d).ok


# Appends from two threads (decision alone, or with its cards), reporting each acknowledged
# record to its own file with one write of a whole line.
_APPENDING_CHILD = r"""
import os, sys, threading, uuid
sys.path.insert(0, sys.argv[3])
from audit_helpers import make_facts, make_result
from neurocds.audit import AuditLog, AuditError
log = AuditLog(sys.argv[1], checkpoint_every=7, signing_key_path=sys.argv[2])
acks = os.open(sys.argv[4], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
def append(n):
    for i in range(10**9):
        did = str(uuid.uuid4())
        decision = log.prepare_decision(make_result(evaluation_id=did), make_facts())
        if (i + n) % 2:
            appended = log.append_together([decision, log.prepare_cards(did, [did + "-card"])])[0]
        else:
            appended = log.append_together([decision])[0]
        os.write(acks, f"{appended.sequence} {did}\n".encode())
try:
    log.head()
    os.write(acks, b"ready\n")
    threads = [threading.Thread(target=append, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
except AuditError as exc:
    os.write(acks, f"error {exc}\n".encode())
    sys.exit(3)
"""


def _start(script: Path, d: Path, key: Path, acks: Path) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, str(script), str(d), str(key), str(Path(__file__).parent), str(acks)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while b"ready\n" not in (acks.read_bytes() if acks.exists() else b""):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"child did not start: {child.communicate()[1]!r}")
        time.sleep(0.01)
    return child


def test_sigkill_of_processes_committing_together_loses_no_acknowledged_record(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    d = tmp_path / "log"
    AuditLog(d)
    script = tmp_path / "child.py"
    script.write_text(_APPENDING_CHILD)
    rng = random.Random(20261203)
    generation = 0

    def acks_file() -> Path:
        nonlocal generation
        generation += 1
        return tmp_path / f"acks-{generation}.txt"

    running = [_start(script, d, keypair[0], acks_file()) for _ in range(3)]
    kills = 0
    deadline = time.monotonic() + 6.0  # bounds the run time (at least 8 kills); never asserted on
    while kills < 30 and (kills < 8 or time.monotonic() < deadline):
        time.sleep(rng.uniform(0.0, 0.05))
        victim = running.pop(rng.randrange(len(running)))
        victim.send_signal(signal.SIGKILL)
        _, err = victim.communicate()
        assert victim.returncode == -signal.SIGKILL, err  # it never refused to append
        kills += 1
        running.append(_start(script, d, keypair[0], acks_file()))
    for child in running:
        child.send_signal(signal.SIGKILL)
        child.communicate()

    acked: dict[int, str] = {}
    for path in tmp_path.glob("acks-*.txt"):
        for line in path.read_bytes().split(b"\n")[:-1]:
            if line != b"ready":
                seq, did = line.decode().split()
                assert int(seq) not in acked, "two processes were told they appended the same sequence"
                acked[int(seq)] = did
    assert len(acked) >= kills

    records = assert_acknowledged_survive(d, acked, keypair[1])
    assert any(r["type"] == "checkpoint" for r in records.values())
    assert os.path.getsize(d / "audit.jsonl") > 0


def test_a_roll_makes_the_records_other_writers_await_an_fsync_for_durable_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head a roll publishes tells writers in flight that their records are durable (they then
    skip their own fsync): the roll must fsync the active file before sealing it."""
    from neurocds.audit import store as store_module
    from neurocds.audit.writer import roll_log

    d = tmp_path / "log"
    log = AuditLog(d)
    log.record_decision(make_result(), make_facts())
    store = log._store
    flush = written_not_durable(log, "d")
    synced: list[str] = []
    real_fsync = os.fsync

    def watching_fsync(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", watching_fsync)
    assert roll_log(d) is not None  # an auditor's roll, no signing key: no checkpoint to fsync it
    assert "audit.jsonl" in synced[: synced.index(".audit.jsonl.next")]  # before the new file is made
    synced.clear()
    store.make_durable(flush)
    assert "audit.jsonl" not in synced  # covered: the writer needs no fsync of its own
    assert verify_log(d).ok
