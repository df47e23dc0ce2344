"""Ed25519 keys and signed checkpoints: cadence, key placement, wrong keys, edits."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result, read_lines

from neurocds.audit import AuditError, AuditLog, generate_keypair, verify_log
from neurocds.audit.chain import CHECKPOINTS_NAME
from neurocds.audit.signing import check_signature, load_public_key, sign_checkpoint
from neurocds.audit.writer import checkpoint_log


def test_keygen_modes_and_refusals(tmp_path: Path) -> None:
    key_id = generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    assert len(key_id) == 16
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in (tmp_path / "k").read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    with pytest.raises(AuditError, match="already exists"):
        generate_keypair(tmp_path / "k", tmp_path / "k2.pub")
    audit_dir = tmp_path / "log"
    audit_dir.mkdir()
    with pytest.raises(AuditError, match="inside the audit directory"):
        generate_keypair(audit_dir / "sub" / "k", tmp_path / "x.pub", audit_dir=audit_dir)


def test_signing_key_inside_the_log_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "log"
    d.mkdir()
    generate_keypair(d / "k", tmp_path / "k.pub")
    with pytest.raises(AuditError, match="inside the audit directory"):
        AuditLog(d, signing_key_path=d / "k")
    AuditLog(d)
    with pytest.raises(AuditError, match="inside the audit directory"):
        checkpoint_log(d, d / "k")
    # A symlink from outside pointing in is still inside.
    (tmp_path / "link").symlink_to(d / "k")
    with pytest.raises(AuditError, match="inside the audit directory"):
        AuditLog(d, signing_key_path=tmp_path / "link")


def test_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        AuditLog(tmp_path / "log", signing_key_path=tmp_path / "k")


def test_checkpoint_every_n_and_on_demand(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, checkpoint_every=3, signing_key_path=keypair[0])
    for _ in range(7):
        log.record_decision(make_result(), make_facts())
    appended, entry = checkpoint_log(d, keypair[0])
    types = [r["type"] for r in read_lines(d)]
    assert types == ["decision"] * 3 + ["checkpoint"] + ["decision"] * 3 + ["checkpoint"] + ["decision", "checkpoint"]
    assert appended.sequence == 10 and entry["sequence"] == 9
    mirror = [json.loads(x) for x in (d / CHECKPOINTS_NAME).read_text().splitlines()]
    assert [m["checkpoint_sequence"] for m in mirror] == [4, 8, 10]
    records = read_lines(d)
    assert all(records[m["checkpoint_sequence"] - 1]["checkpoint"]["head_hash"] == m["head_hash"] for m in mirror)
    report = verify_log(d, public_key=keypair[1])
    assert report.ok and [c.signature for c in report.checkpoints] == ["valid"] * 3
    assert report.covering_checkpoint(5).checkpoint_sequence == 8  # type: ignore[union-attr]
    assert report.covering_checkpoint(10) is None  # nothing signs past sequence 9 yet


def test_checkpoint_every_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="signing key"):
        AuditLog(tmp_path / "log", checkpoint_every=5)
    with pytest.raises(AuditError, match="no signing key"):
        AuditLog(tmp_path / "log").checkpoint()


def test_signature_checks(keypair: tuple[Path, Path], other_keypair: tuple[Path, Path]) -> None:
    from neurocds.audit.signing import load_private_key

    key = load_private_key(keypair[0])
    body = sign_checkpoint(key, sequence=4, head_hash="ab" * 32, signed_at="2025-01-01T00:00:00Z")
    public, other = load_public_key(keypair[1]), load_public_key(other_keypair[1])
    assert check_signature(body, public) is None
    assert "given public key" in str(check_signature(body, other))
    for field, value in (("sequence", 5), ("head_hash", "cd" * 32), ("signed_at", "2025-01-01T00:00:01Z")):
        edited = dict(body, **{field: value})
        assert "not valid" in str(check_signature(edited, public)), field
    assert "malformed" in str(check_signature(dict(body, signature="!!"), public))
    assert "lacks" in str(check_signature({"sequence": 1}, public))


def test_external_checkpoint_copy_must_exist(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d)
    report = verify_log(d, external_checkpoints=[tmp_path / "nope.jsonl"])
    assert not report.ok and "does not exist" in report.problems[0].reason
