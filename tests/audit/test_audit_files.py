"""The audit log's durable writes (audit/files.py): whole-file replacement for the head file and
quarantine, and the one open-write-fsync every key, catalog, mirror and segment file goes through."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result

from neurocds.audit import AuditLog, verify_log
from neurocds.audit.chain import HEAD_NAME, LOG_NAME, QUARANTINE_DIR, read_head
from neurocds.audit.files import replace_durably, write_synced
from neurocds.audit.privacy import read_key_file, write_key_file
from neurocds.audit.signing import generate_keypair, load_private_key, load_public_key
from neurocds.audit.tail import HEAD_BLOCK, write_head


def _fsyncs_seen(monkeypatch: pytest.MonkeyPatch, fail_on_temp: bool = False) -> list[str]:
    """Record what each fsync was for ("dir" or the file's name); optionally fail a temp file's."""
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        seen.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else Path(target).name)
        if fail_on_temp and target.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_replacement_is_fsynced_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    seen = _fsyncs_seen(monkeypatch)
    replace_durably(target, b"new" * 10_000)
    assert target.read_bytes() == b"new" * 10_000
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert seen == [".state.json.tmp", "dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_replacement_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    _fsyncs_seen(monkeypatch, fail_on_temp=True)
    with pytest.raises(OSError, match="No space"):
        replace_durably(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_head_too_long_for_one_block_is_replaced_whole_without_a_folder_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"{QUARANTINE_DIR}/torn-after-{i}-at-{i}-{'0' * 16}.bin" for i in range(20)]
    write_head(tmp_path, 0, "0" * 64)  # one block, rewritten in place later
    seen = _fsyncs_seen(monkeypatch)
    write_head(tmp_path, 7, "a" * 64, {"quarantined": names})
    head, _ = read_head(tmp_path)
    assert head is not None and head["sequence"] == 7 and head["quarantined"] == names
    assert (tmp_path / HEAD_NAME).stat().st_size > HEAD_BLOCK
    assert seen == [f".{HEAD_NAME}.tmp"]  # a lagging head is tolerated: no folder fsync
    assert sorted(p.name for p in tmp_path.iterdir()) == [HEAD_NAME]


def test_a_quarantine_write_that_fails_leaves_nothing_unaccounted_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    for _ in range(2):
        log.record_decision(make_result(), make_facts())
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(b'{"torn')
    with monkeypatch.context() as patch:
        _fsyncs_seen(patch, fail_on_temp=True)
        with pytest.raises(OSError, match="No space"):
            AuditLog(d).recover()
    assert list((d / QUARANTINE_DIR).iterdir()) == []  # no stray temporary for verify to flag
    assert (d / LOG_NAME).read_bytes().endswith(b'{"torn')  # not cut off the log: not yet safe elsewhere
    [recovered] = AuditLog(d).recover()
    assert recovered.sequence == 3
    assert verify_log(d).ok


def test_keys_are_written_whole_when_the_kernel_takes_a_few_bytes_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.write may write less than it is given; the key files were written with one call each.
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    key = bytes(range(32))
    write_key_file(tmp_path / "pseudonym.key", key)
    generate_keypair(tmp_path / "audit.key", tmp_path / "audit.pub")
    monkeypatch.undo()
    assert read_key_file(tmp_path / "pseudonym.key") == key
    load_private_key(tmp_path / "audit.key")
    load_public_key(tmp_path / "audit.pub")


def test_an_exact_mode_is_not_narrowed_by_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_synced(tmp_path / "public", b"x", os.O_CREAT | os.O_EXCL, 0o644, exact_mode=True)
        write_synced(tmp_path / "narrowed", b"x", os.O_CREAT | os.O_EXCL, 0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "narrowed").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # O_EXCL: a key is never overwritten
        write_synced(tmp_path / "public", b"y", os.O_CREAT | os.O_EXCL)
