"""Privacy: redaction stores no facts, pseudonyms always work, logs never hold facts or ids."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from audit_helpers import PATIENT_ID, SECRET_VALUE, make_facts, make_result

from neurocds.audit import AuditError, AuditLog, query_records, read_records, render_html, render_text, verify_log
from neurocds.audit.chain import LOG_NAME
from neurocds.audit.query import RecordFilter
from neurocds.errors import Violation

KEY = bytes(range(32))


def _pseudonym(key: bytes, pid: str) -> str:
    return hmac.new(key, pid.encode(), hashlib.sha256).hexdigest()


def test_redaction_stores_no_facts_only_hash_and_pseudonym(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, redact=True, pseudonym_key=KEY)
    log.record_decision(make_result(), make_facts())
    raw = (d / LOG_NAME).read_bytes()
    assert PATIENT_ID.encode() not in raw
    assert str(SECRET_VALUE).encode() not in raw  # not in facts, detail, because, trace or errors
    body = read_records(d)[0]["decision"]
    assert body["redacted"] is True and "facts" not in body
    assert body["facts_sha256"] == "ab" * 32
    assert body["patient_pseudonym"] == _pseudonym(KEY, PATIENT_ID)
    finding = body["findings"][0]
    assert finding["because"] == [{"pointer": "/symptoms/back_pain"}, {"derived": "pattern.leg_weakness"}]
    assert "detail" not in finding and finding["unknown"] == ["/symptoms/urinary_retention"]
    assert body["trace"]["fired"][0] == {
        "rule": "spinal.ces_red_flags",
        "pack": "spinal-compression",
        "because": [{"pointer": "/labs/potassium_mmol_l"}],
    }
    assert "false_conditions" not in body["trace"]["not_fired"][0]
    assert verify_log(d).ok
    # The why-tree still works, without values.
    assert "(value not stored)" in render_text(read_records(d)[0])
    assert str(SECRET_VALUE) not in render_html(read_records(d)[0])


def test_redacted_error_messages_keep_only_their_hash(tmp_path: Path) -> None:
    result = make_result()
    result["errors"] = [{"kind": "action", "pack": "p", "rule": "r", "message": f"bad {SECRET_VALUE}"}]
    d = tmp_path / "log"
    AuditLog(d, redact=True, pseudonym_key=KEY).record_decision(result, make_facts())
    [error] = read_records(d)[0]["decision"]["errors"]
    assert "message" not in error and len(error["message_sha256"]) == 64


def test_redaction_without_a_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="pseudonym key"):
        AuditLog(tmp_path / "log", redact=True)
    assert not (tmp_path / "log").exists()  # refused before anything was created
    d = tmp_path / "log2"
    d.mkdir()
    (d / "key").write_text("ab" * 16)
    with pytest.raises(AuditError, match="outside the audit directory"):
        AuditLog.from_options(d, {"redact": True, "pseudonym_key_file": str(d / "key")})


def test_pseudonym_stored_without_redaction_and_queries_work(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)  # no key given: one is created in the log directory
    log.record_decision(make_result(), make_facts())
    log.record_decision(make_result(), make_facts("someone-else"))
    body = read_records(d)[0]["decision"]
    assert body["facts"]["patient"]["id"] == PATIENT_ID
    auto_key = bytes.fromhex((d / "pseudonym.key").read_text())
    assert body["patient_pseudonym"] == _pseudonym(auto_key, PATIENT_ID) == log.pseudonym(PATIENT_ID)
    assert oct((d / "pseudonym.key").stat().st_mode & 0o777) == "0o600"
    hits = query_records(d, RecordFilter(pseudonym=log.pseudonym(PATIENT_ID)))
    assert [h["sequence"] for h in hits] == [1]
    # Reopening uses the same key, so pseudonyms stay comparable.
    assert AuditLog(d).pseudonym(PATIENT_ID) == log.pseudonym(PATIENT_ID)


def test_rejection_records_carry_no_values(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, pseudonym_key=KEY)
    violation = Violation("/labs/potassium_mmol_l", "wrong type", expected="number", found=f"'{SECRET_VALUE}x'")
    log.record_rejection([violation], facts_sha256="cd" * 32, facts=make_facts())
    body = read_records(d)[0]["rejection"]
    assert body["violations"] == [
        {"pointer": "/labs/potassium_mmol_l", "code": "invalid", "message": "wrong type", "expected": "number"}
    ]
    assert body["patient_pseudonym"] == _pseudonym(KEY, PATIENT_ID)
    assert str(SECRET_VALUE).encode() not in (d / LOG_NAME).read_bytes()
    assert PATIENT_ID.encode() not in (d / LOG_NAME).read_bytes()


def test_feedback_comment_is_hashed_when_redacting(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, redact=True, pseudonym_key=KEY)
    reason = {"reason": {"code": "d7ecf885", "system": "https://example.com/r"}, "userComment": f"{PATIENT_ID} ok"}
    log.record_feedback("card-1", "overridden", override_reason=reason, decision_id="dec-1")
    body = read_records(d)[0]["feedback"]
    assert body["override_reason"]["reason"]["code"] == "d7ecf885"
    assert "userComment" not in body["override_reason"]
    assert PATIENT_ID.encode() not in (d / LOG_NAME).read_bytes()


@pytest.mark.parametrize("redact", [False, True])
def test_application_logs_never_hold_facts_or_patient_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keypair: tuple[Path, Path], redact: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    d = tmp_path / "log"
    log = AuditLog(d, redact=redact, pseudonym_key=KEY, checkpoint_every=2, signing_key_path=keypair[0])
    for _ in range(3):
        log.record_decision(make_result(), make_facts())
    log.record_rejection([Violation("/patient/id", f"bad id {PATIENT_ID}"[:6])], facts=make_facts())
    with open(d / LOG_NAME, "ab") as fh:  # provoke recovery logging too
        fh.write(b'{"torn')
    AuditLog(d, redact=redact, pseudonym_key=KEY).record_decision(make_result(), make_facts())
    verify_log(d, public_key=keypair[1])
    assert caplog.records, "the test must see the audit module's log output"
    text = caplog.text
    assert PATIENT_ID not in text
    assert str(SECRET_VALUE) not in text
    assert log.pseudonym(PATIENT_ID) not in text


def test_a_redacted_record_still_says_the_trace_was_left_out(tmp_path: Path) -> None:
    result = make_result()
    result["trace"] = {"fired": [], "not_fired": [], "omitted": True}
    AuditLog(tmp_path / "log", redact=True, pseudonym_key=KEY).record_decision(result, make_facts())
    assert read_records(tmp_path / "log")[0]["decision"]["trace"] == {"fired": [], "not_fired": [], "omitted": True}


def _rejected(tmp_path: Path, redact: bool) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    from neurocds import Engine
    from neurocds.errors import FactsValidationError
    from neurocds.testing import inline_pack, rule

    extension = {"type": "object", "additionalProperties": False, "properties": {"score": {"type": "integer"}}}
    plugin = inline_pack(tmp_path / "packs", "ext", "ext", [rule("ext.r", {"fact": "strength.left_leg", "lt": 5})],
                         facts_schema=extension)  # fmt: skip
    options = {"redact": True, "pseudonym_key": KEY.hex()} if redact else None
    engine = Engine(plugins=[("ext", plugin)], entry_points=False, audit_dir=tmp_path / "log", audit_options=options)
    doc = {
        "facts_version": "1",
        "patient": {"id": PATIENT_ID, "Jane_Doe_1961": True},
        "Mary_Jones": {"ward": [1, 2]},
        "strength": {"left_leg": 9},
        "extensions": {"ext": {"score": "high", "John~Smith/x": 1}},
    }
    with pytest.raises(FactsValidationError):
        engine.evaluate(doc)
    [record] = read_records(tmp_path / "log")
    return record["rejection"], (tmp_path / "log" / LOG_NAME).read_bytes()


def test_redacted_rejections_keep_no_member_names_the_schema_does_not_define(tmp_path: Path) -> None:
    rejection, raw = _rejected(tmp_path, redact=True)
    for name in (b"Jane_Doe", b"Mary_Jones", b"John", b"Smith", PATIENT_ID.encode()):
        assert name not in raw
    pointers = sorted(v["pointer"] for v in rejection["violations"])
    assert pointers == [
        "/<unknown-member>",
        "/extensions/ext/<unknown-member>",
        "/extensions/ext/score",  # the pack's extension schema defines it
        "/patient/<unknown-member>",
        "/strength/left_leg",
    ]
    unknown = [v for v in rejection["violations"] if v["pointer"].endswith("<unknown-member>")]
    assert all(v["message"] == "member '<unknown-member>' is not allowed here" for v in unknown)


def test_rejections_outside_redaction_keep_the_names(tmp_path: Path) -> None:
    rejection, _ = _rejected(tmp_path, redact=False)
    pointers = {v["pointer"] for v in rejection["violations"]}
    assert {"/Mary_Jones", "/patient/Jane_Doe_1961", "/extensions/ext/John~0Smith~1x"} <= pointers


def test_a_message_still_naming_an_unknown_member_is_withheld() -> None:
    from neurocds.audit.privacy import scrub_member_names
    from neurocds.resources import load_schema

    violation = {"pointer": "/Mary/3/x", "code": "invalid", "message": "Mary's value is odd"}
    scrubbed = scrub_member_names(violation, load_schema("facts.schema.json"))
    assert scrubbed["pointer"] == "/<unknown-member>" and "Mary" not in scrubbed["message"]
