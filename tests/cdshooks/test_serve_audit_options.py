"""``neurocds serve`` keeps its audit log as configured: redaction and signed checkpoints
from NEUROCDS_AUDIT_* variables or flags; unreadable or unsafe settings stop the start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from neurocds.audit.query import read_records
from neurocds.audit.signing import generate_keypair
from neurocds.audit.verify import verify_log

from .support import SERVE_CLI, hook_request, http_call, serve_process, synthea_prefetch

PATIENT_VIEW = "/cds-services/neurocds-patient-view"


def _pseudonym_key(path: Path) -> Path:
    path.write_text("c3" * 32)
    path.chmod(0o600)
    return path


def test_serve_redacts_and_signs_as_the_environment_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "audit"
    generate_keypair(tmp_path / "audit.key", tmp_path / "audit.pub")
    monkeypatch.setenv("NEUROCDS_AUDIT_REDACT", "1")
    monkeypatch.setenv("NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE", str(_pseudonym_key(tmp_path / "pseudonym.key")))
    monkeypatch.setenv("NEUROCDS_AUDIT_SIGNING_KEY", str(tmp_path / "audit.key"))
    patient_id, prefetch = synthea_prefetch()
    del prefetch["procedures"]  # a key not sent is always said on a card: the decision has cards to record
    with serve_process(["--insecure-dev", "--audit-dir", str(d), "--audit-checkpoint-every", "2"]) as served:
        resp = http_call(served.port, "POST", PATIENT_VIEW, hook_request("patient-view", patient_id, prefetch))
    assert resp.status == 200, resp.body
    records = read_records(d)
    assert [r["type"] for r in records] == ["decision", "cards", "checkpoint"]
    assert records[0].get("atomic_with_next") is True  # the decision and its cards: one append
    assert records[0]["decision"]["redacted"] is True and "facts" not in records[0]["decision"]
    assert patient_id.encode() not in (d / "audit.jsonl").read_bytes()
    report = verify_log(d, public_key=tmp_path / "audit.pub")
    assert report.ok and [c.signature for c in report.checkpoints] == ["valid"]


@pytest.mark.parametrize(
    ("env", "args", "code", "message"),
    [
        ({"NEUROCDS_AUDIT_REDACT": "sometimes"}, [], 2, "not a valid boolean"),
        ({"NEUROCDS_AUDIT_CHECKPOINTS": "5"}, [], 2, "unknown audit variable"),
        ({}, ["--audit-redact"], 4, "redaction needs a pseudonym key"),
    ],
)
def test_serve_refuses_unreadable_or_unsafe_audit_settings(
    tmp_path: Path, env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    command = [*SERVE_CLI, "--insecure-dev", "--port", "1", "--audit-dir", str(tmp_path / "audit"), *args]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
