"""Several processes (and threads) appending to one log: nothing lost, nothing interleaved."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from pathlib import Path

from audit_helpers import make_facts, make_result, read_lines

from neurocds.audit import AuditLog, verify_log
from neurocds.audit.chain import LOG_NAME

WORKERS = 4
PER_WORKER = 50


def _worker(directory: str, worker: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    log = AuditLog(directory)
    done = []
    for _ in range(PER_WORKER):
        did = str(uuid.uuid4())
        appended = log.record_decision(make_result(evaluation_id=did), make_facts(f"W{worker}"))
        done.append((appended.sequence, did))
    queue.put((worker, done))


def test_processes_append_without_loss_or_interleaving(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(d), w, queue)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    records = read_lines(d)  # every line parses: no two writes interleaved
    assert len((d / LOG_NAME).read_bytes().splitlines()) == WORKERS * PER_WORKER
    assert [r["sequence"] for r in records] == list(range(1, WORKERS * PER_WORKER + 1))
    by_seq = {r["sequence"]: r["decision"]["decision_id"] for r in records}
    for done in results.values():
        for seq, did in done:
            assert by_seq[seq] == did
        seqs = [s for s, _ in done]
        assert seqs == sorted(seqs)  # each writer's own appends stay in its order
    assert len(set(by_seq.values())) == WORKERS * PER_WORKER
    report = verify_log(d)
    assert report.ok, report.problems


def test_threads_sharing_one_log_object(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log")
    seqs: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(10):
            appended = log.record_decision(make_result(), make_facts())
            with lock:
                seqs.append(appended.sequence)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 41))
    assert verify_log(tmp_path / "log").ok
