"""Group commit: concurrent appends share a lock and an fsync, and each caller gets its own outcome."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result, read_lines, written_not_durable

from neurocds.audit import AuditError, AuditLog, verify_log
from neurocds.audit import store as store_module
from neurocds.audit.group_commit import GroupCommit


def _start(target, count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    return threads


def test_items_arriving_during_a_commit_are_committed_together_each_with_its_own_outcome():
    batches: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def commit(items: list[int]):
        batches.append(list(items))
        if len(batches) == 1:
            first_started.set()
            release.wait(10)
        return [ValueError(f"item {i}") if i == 3 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = exc

    leader = _start(lambda _: submit(0), 1)
    assert first_started.wait(10)
    waiting = [threading.Thread(target=submit, args=(i,)) for i in range(1, 6)]
    for t in waiting:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._queue) < 5 and time.monotonic() < deadline:  # all five queued behind the leader
        time.sleep(0.005)
    release.set()
    for t in [*leader, *waiting]:
        t.join(10)
    assert batches == [[0], [1, 2, 3, 4, 5]]  # one batch for everything that queued meanwhile
    assert {i: r for i, r in results.items() if i != 3} == {0: 0, 1: 10, 2: 20, 4: 40, 5: 50}
    assert isinstance(results[3], ValueError) and str(results[3]) == "item 3"  # only its own caller


def test_a_failing_commit_fails_every_caller_of_its_batch_and_the_next_batch_still_runs():
    calls = []

    def commit(items: list[int]):
        calls.append(items)
        if len(calls) == 1:
            raise OSError("disk full")
        return items

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(OSError, match="disk full"):
        group.submit(1)
    assert group.submit(2) == 2


def test_concurrent_appends_share_fsyncs_and_keep_a_whole_verified_chain(tmp_path: Path, monkeypatch):
    log = AuditLog(tmp_path / "log")
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        time.sleep(0.002)  # a disk's flush: long enough for other threads to queue
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", counting_fsync)
    appended: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def run(_: int) -> None:
        for _ in range(8):
            pair = log.append_together(
                [log.prepare_decision(make_result(), make_facts()), log.prepare_cards("d", ["c"])]
            )
            with lock:
                appended.append(tuple(a.sequence for a in pair))

    for t in _start(run, 12):
        t.join(60)
    assert len(appended) == 96
    # Each decision and its cards stay adjacent, and the sequences are exactly 1..192.
    assert all(b == a + 1 for a, b in appended)
    assert sorted(s for pair in appended for s in pair) == list(range(1, 193))
    # Two fsyncs per commit (log and head file); without group commit that would be 2 per append.
    assert len(synced) < 2 * 96
    assert verify_log(tmp_path / "log").ok
    records = [r for r in read_lines(tmp_path / "log") if r["type"] in ("decision", "cards")]
    assert [r["type"] for r in records] == ["decision", "cards"] * 96


def test_a_group_that_fails_the_schema_writes_nothing_and_the_others_of_its_batch_are_kept(tmp_path: Path):
    log = AuditLog(tmp_path / "log")
    good = [("cards", log.prepare_cards("d1", ["c1"]).body)]
    bad = [("cards", log.prepare_cards("d2", ["c2"]).body), ("cards", {"not": "a cards body"})]
    also_good = [("cards", log.prepare_cards("d3", ["c3"]).body)]
    written = log._commit([good, bad, also_good])
    assert written.then is not None
    written.then()  # made durable, as the group commit does once the append lock is released
    first, failed, last = written.outcomes
    assert isinstance(failed, AuditError)
    assert [a.sequence for a in first] == [1] and [a.sequence for a in last] == [2]
    assert [r["cards"]["decision_id"] for r in read_lines(tmp_path / "log")] == ["d1", "d3"]
    assert verify_log(tmp_path / "log").ok


def _keys(tmp_path: Path) -> Path:
    from neurocds.audit.signing import generate_keypair

    key = tmp_path / "keys" / "signing.pem"
    key.parent.mkdir()
    generate_keypair(key, tmp_path / "keys" / "signing.pub")
    return key


def test_a_failed_fsync_leaves_no_record_behind_and_no_checkpoint_on_top(tmp_path: Path, monkeypatch):
    """The caller is told the append failed, so its record must not stay to be read as valid later;
    and a checkpoint that was due must not be written on top of a write whose outcome is unknown."""
    directory = tmp_path / "log"
    log = AuditLog(directory, checkpoint_every=3, signing_key_path=_keys(tmp_path))
    for _ in range(2):
        log.record_decision(make_result(), make_facts())
    real_fsync, failures = os.fsync, [1]

    def failing_fsync(fd: int) -> None:
        if failures and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "audit.jsonl":
            failures.pop()
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", failing_fsync)
    with pytest.raises(AuditError, match="could not write decision"):
        log.record_decision(make_result(), make_facts())
    assert [r["sequence"] for r in read_lines(directory)] == [1, 2]  # cut back: no refused record
    assert verify_log(directory).ok
    appended = log.record_decision(make_result(), make_facts())  # the log goes on
    assert appended.sequence == 3
    types = [r["type"] for r in read_lines(directory)]
    assert types == ["decision", "decision", "decision", "checkpoint"]  # the due checkpoint, now
    assert verify_log(directory).ok


def test_a_head_file_that_cannot_be_written_does_not_fail_records_already_on_disk(tmp_path: Path, monkeypatch):
    directory = tmp_path / "log"
    log = AuditLog(directory)
    log.record_decision(make_result(), make_facts())

    def no_space(self, *args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(store_module.ChainStore, "publish_head", no_space)
        appended = log.record_decision(make_result(), make_facts())  # fsynced: it stands
    assert appended.sequence == 2
    log.record_decision(make_result(), make_facts())
    records = read_lines(directory)
    assert [r["type"] for r in records] == ["decision", "decision", "recovery", "decision"]
    assert verify_log(directory).ok


def test_a_checkpoint_that_fails_does_not_fail_the_appends_before_it(tmp_path: Path, monkeypatch):
    directory = tmp_path / "log"
    log = AuditLog(directory, checkpoint_every=1, signing_key_path=_keys(tmp_path))

    def broken(self, state, key):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(store_module.ChainStore, "write_checkpoint", broken)
        assert log.record_decision(make_result(), make_facts()).sequence == 1
    log.record_decision(make_result(), make_facts())
    assert [r["type"] for r in read_lines(directory)] == ["decision", "decision", "checkpoint"]
    assert verify_log(directory).ok


def test_decision_nodes_are_encoded_before_the_lock_and_give_the_same_records(tmp_path: Path, monkeypatch):
    """The writer encodes a decision's nodes (the memo keys) in the caller's thread, outside the lock
    that serialises a batch's write and fsync; the records are those compact writes without them."""
    import json

    from neurocds import Engine
    from neurocds.audit import compact as compact_module
    from neurocds.audit import writer as writer_module
    from neurocds.audit.catalog import Catalog
    from neurocds_packs import BUILTIN_PACKS

    log = AuditLog(tmp_path / "log")
    calls: list[bool] = []
    real = compact_module.node_keys

    def spy(body):  # type: ignore[no-untyped-def]
        calls.append(log._thread_lock.locked())
        return real(body)

    monkeypatch.setattr(writer_module, "node_keys", spy)
    engine = Engine(packs=BUILTIN_PACKS)
    examples = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))[:3]
    bodies = []
    for path in examples * 2:
        facts = json.loads(path.read_text(encoding="utf-8"))
        pending = log.prepare_decision(engine.evaluate(facts), facts)
        bodies.append(dict(pending.body))
        log.append_together([pending])
    assert calls == [False] * len(bodies)  # once per decision, never under the lock
    assert verify_log(tmp_path / "log").ok
    # The same bodies compacted without keys, and with keys that do not fit, make the same explanation.
    fresh, keyed = Catalog(tmp_path / "a"), Catalog(tmp_path / "b")
    for body in bodies:
        plain = compact_module.compact(body, fresh.intern, fresh.position, {})
        bad = {name: keys[:-1] for name, keys in (real(body) or {}).items()}  # wrong lengths: ignored
        for keys in (real(body), bad):
            with_keys = compact_module.compact(body, keyed.intern, keyed.position, {}, keys)
            assert with_keys["explanation"] == plain["explanation"]


def test_a_batch_made_durable_after_its_write_fails_only_the_callers_it_had_not_failed():
    """A commit in two steps (Written): callers hear of a batch only once its second step (the
    fsync, outside the log's lock) is done; if that fails, so does every caller not already failed."""
    from neurocds.audit.group_commit import Written

    steps: list[str] = []

    def make_durable() -> None:
        steps.append("durable")
        raise OSError("fsync failed")

    def commit(items: list[int]) -> Written[int]:
        steps.append("written")
        return Written([ValueError("own") if i == 9 else i for i in items], make_durable)

    group: GroupCommit[int, int] = GroupCommit(commit)
    with pytest.raises(OSError, match="fsync failed"):
        group.submit(2)
    with pytest.raises(ValueError, match="own"):
        group.submit(9)
    assert steps == ["written", "durable"] * 2
    assert not group._leading and not group._queue  # the next caller can lead


def test_a_head_that_lags_while_another_writer_awaits_its_fsync_is_not_a_crash(tmp_path: Path):
    """Records written and not yet durable leave the head behind: another writer appending
    meanwhile must not record that as a crash (head_behind); a writer that died would."""
    directory = tmp_path / "log"
    first = AuditLog(directory)
    first.record_decision(make_result(), make_facts())
    store = first._store
    flush = written_not_durable(first, "d")
    AuditLog(directory).record_decision(make_result(), make_facts())  # while the first awaits its fsync
    store.make_durable(flush)
    assert [r["type"] for r in read_lines(directory)] == ["decision", "cards", "decision"]

    flush = written_not_durable(first, "e")
    flush.release()  # as a writer killed before its fsync: nobody in flight any more
    AuditLog(directory).record_decision(make_result(), make_facts())
    assert [r["type"] for r in read_lines(directory)][3:] == ["cards", "recovery", "decision"]
    assert read_lines(directory)[4]["recovery"]["kind"] == "head_behind"
    assert verify_log(directory).ok


def test_the_log_is_fsynced_through_the_descriptor_its_batch_was_written_through(tmp_path: Path, monkeypatch):
    # Linux reports a failed write-back once to each descriptor open when it failed: a log
    # opened afresh for the fsync could hear "success" after another writer heard the error.
    from neurocds.audit import durable as durable_module

    log = AuditLog(tmp_path / "log")
    written: list[int] = []
    synced: list[int] = []
    real_write_all, real_fsync = store_module.write_all, os.fsync

    def note_write(fd: int, data: bytes) -> None:
        written.append(fd)
        real_write_all(fd, data)

    def note_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(store_module, "write_all", note_write)
    monkeypatch.setattr(durable_module.os, "fsync", note_fsync)

    def reopened(path: str) -> None:
        raise AssertionError(f"the log was reopened to be fsynced: {path}")

    monkeypatch.setattr(durable_module, "sync_file", reopened)
    log.append_together([log.prepare_decision(make_result(), make_facts()), log.prepare_cards("d", ["c"])])
    assert written and written[-1] in synced
    assert verify_log(tmp_path / "log").ok
