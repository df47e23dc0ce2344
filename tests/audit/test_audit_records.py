"""Record bodies, the schema and configuration of AuditLog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result, read_lines

from neurocds.audit import AuditError, AuditLog, read_records
from neurocds.audit.records import GENESIS_HASH, record_hash, schema_errors, seal
from neurocds.errors import FactsValidationError, Violation
from neurocds.resources import load_schema


def test_schema_is_valid_2020_12() -> None:
    from jsonschema import Draft202012Validator

    schema = load_schema("audit-record.schema.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_record_type_is_written_valid_and_chained(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    d = tmp_path / "log"
    log = AuditLog(d, signing_key_path=keypair[0])
    result = make_result()
    log.record_decision(result, make_facts())
    log.record_rejection(FactsValidationError([Violation("/x", "bad", found="secret")], facts_sha256="ef" * 32))
    log.record_cards(result["evaluation_id"], ["c-1", "c-2"])
    log.record_feedback("c-1", "accepted", decision_id=result["evaluation_id"], accepted_suggestions=["s-1"])
    log.checkpoint()
    records = read_records(d)
    assert [r["type"] for r in records] == ["decision", "rejection", "cards", "feedback", "checkpoint"]
    prev = GENESIS_HASH
    for n, rec in enumerate(read_lines(d), start=1):  # as stored: the decision in compact form
        assert schema_errors(rec) == []
        assert rec["sequence"] == n and rec["prev_hash"] == prev and rec["hash"] == record_hash(rec)
        prev = rec["hash"]
    decision = records[0]["decision"]
    assert decision["decision_id"] == result["evaluation_id"]
    assert [(f["id"], f["urgency"]) for f in decision["findings"]] == [("spinal.cauda_equina", "emergency")]
    assert decision["packs"][1] == {
        "name": "spinal-compression",
        "version": "2.1.0",
        "sha256": "22" * 32,
        "status": "ok",
    }
    assert decision["engine"]["version"] == "0.1.0" and decision["complete"] is True
    assert decision["trace"] == result["trace"] and decision["facts"] == make_facts()
    assert records[1]["rejection"]["facts_sha256"] == "ef" * 32
    assert "found" not in records[1]["rejection"]["violations"][0]
    assert records[2]["cards"] == {"decision_id": result["evaluation_id"], "card_uuids": ["c-1", "c-2"]}


def test_hash_covers_everything_but_itself() -> None:
    rec = seal("cards", {"decision_id": "d", "card_uuids": []}, sequence=1, prev_hash=GENESIS_HASH)
    for key in ("sequence", "type", "recorded_at", "prev_hash", "cards", "record_version"):
        changed = json.loads(json.dumps(rec))
        changed[key] = "x" if key != "cards" else {"decision_id": "e", "card_uuids": []}
        assert record_hash(changed) != rec["hash"], key


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("prev_hash"),
        lambda r: r.update(type="other"),
        lambda r: r.update(extra=1),
        lambda r: r.update(decision={}),  # a second body
        lambda r: r["cards"].pop("card_uuids"),
        lambda r: r.update(sequence=0),
        lambda r: r.update(hash="XYZ"),
    ],
)
def test_schema_rejects_malformed_records(mutate) -> None:  # type: ignore[no-untyped-def]
    rec = seal("cards", {"decision_id": "d", "card_uuids": ["a"]}, sequence=1, prev_hash=GENESIS_HASH)
    assert schema_errors(rec) == []
    mutate(rec)
    assert schema_errors(rec)


def test_invalid_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    bad = make_result()
    del bad["evaluation_id"]
    with pytest.raises(AuditError, match="evaluation_id"):
        log.record_decision(bad, make_facts())
    nan = make_result()
    nan["findings"][0]["detail"] = float("nan")  # type: ignore[index]
    with pytest.raises(AuditError, match="canonical JSON"):
        log.record_decision(nan, make_facts())
    with pytest.raises(AuditError, match="schema"):
        log.record_decision(make_result(urgency="catastrophic"), make_facts())
    with pytest.raises(AuditError, match="accepted or overridden"):
        log.record_feedback("c", "ignored")
    with pytest.raises(AuditError, match="facts are required"):
        log.record_decision(make_result(), None)
    assert read_records(d) == []


def test_result_objects_with_to_dict_are_accepted(tmp_path: Path) -> None:
    class FakeResult:
        def to_dict(self) -> dict:  # type: ignore[type-arg]
            return make_result(evaluation_id="from-object")

    log = AuditLog(tmp_path / "log")
    log.record_decision(FakeResult(), make_facts())
    assert read_records(tmp_path / "log")[0]["decision"]["decision_id"] == "from-object"


def test_from_env_and_from_options(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    assert AuditLog.from_env({}) is None
    env = {
        "NEUROCDS_AUDIT_DIR": str(tmp_path / "env"),
        "NEUROCDS_AUDIT_REDACT": "1",
        "NEUROCDS_AUDIT_PSEUDONYM_KEY": "ab" * 16,
        "NEUROCDS_AUDIT_CHECKPOINT_EVERY": "2",
        "NEUROCDS_AUDIT_SIGNING_KEY": str(keypair[0]),
    }
    log = AuditLog.from_env(env)
    assert log is not None and log.redact and log.checkpoint_every == 2
    assert log.pseudonym("p") == AuditLog(tmp_path / "other", pseudonym_key=bytes.fromhex("ab" * 16)).pseudonym("p")
    key_file = tmp_path / "pkey"
    key_file.write_text("cd" * 16)
    with pytest.raises(AuditError, match="accessible to other users"):  # with redaction it must be private
        AuditLog.from_options(tmp_path / "opt", {"redact": True, "pseudonym_key_file": str(key_file)})
    key_file.chmod(0o600)
    opt = AuditLog.from_options(tmp_path / "opt", {"redact": True, "pseudonym_key_file": str(key_file)})
    assert opt.redact and opt.pseudonym_key_id == AuditLog(tmp_path / "o2", pseudonym_key=b"\xcd" * 16).pseudonym_key_id
    with pytest.raises(AuditError, match="unknown audit option"):
        AuditLog.from_options(tmp_path / "x", {"redcat": True})
    with pytest.raises(AuditError, match="not hex"):
        AuditLog.from_env({"NEUROCDS_AUDIT_DIR": str(tmp_path / "y"), "NEUROCDS_AUDIT_PSEUDONYM_KEY": "zz"})
    with pytest.raises(AuditError, match="shorter"):
        AuditLog.from_options(tmp_path / "z", {"pseudonym_key": "abcd"})
    with pytest.raises(AuditError, match="not both"):
        AuditLog.from_options(tmp_path / "z", {"pseudonym_key": "ab" * 16, "pseudonym_key_file": str(key_file)})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NEUROCDS_AUDIT_REDACT", "maybe", "not a yes/no value"),
        ("NEUROCDS_AUDIT_CHECKPOINT_EVERY", "0", "not a positive whole number"),
        ("NEUROCDS_AUDIT_CHECKPOINT_EVERY", "2.5", "not a positive whole number"),
        ("NEUROCDS_AUDIT_REDACTED", "1", "unknown audit variable"),  # a typo must not mean "no redaction"
    ],
)
def test_from_env_refuses_what_it_cannot_read(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        AuditLog.from_env({"NEUROCDS_AUDIT_DIR": str(tmp_path / "log"), name: value})
    assert not (tmp_path / "log").exists()


def test_from_env_reads_redaction_off_and_ignores_empty_values(tmp_path: Path) -> None:
    env = {"NEUROCDS_AUDIT_DIR": str(tmp_path / "log"), "NEUROCDS_AUDIT_REDACT": "off",
           "NEUROCDS_AUDIT_CHECKPOINT_EVERY": " "}  # fmt: skip
    log = AuditLog.from_env(env)
    assert log is not None and not log.redact and log.checkpoint_every is None


def test_directory_is_created_private(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b" / "log"
    AuditLog(d)
    assert d.is_dir() and oct(d.stat().st_mode & 0o777) == "0o700"
    assert (d / "audit.jsonl").read_bytes() == b""
    assert json.loads((d / "head.json").read_text())["sequence"] == 0


def test_the_spliced_envelope_is_the_definitions_canonical_form() -> None:
    """seal_line writes the envelope's members without the general encoder: its line must still be
    exactly json.dumps' canonical form of the record, and its hash over that form."""
    import hashlib
    import json

    from neurocds.audit.records import seal_line

    for atomic in (False, True):
        for sequence in (1, 2**40):
            record, line = seal_line("cards", {"decision_id": "é", "card_uuids": ["a"], "x": 1e-05},
                                     sequence=sequence, prev_hash="ab" * 32, atomic_with_next=atomic)  # fmt: skip
            text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            assert line == text.encode("utf-8") + b"\n"
            unhashed = {k: v for k, v in record.items() if k != "hash"}
            definition = json.dumps(unhashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            assert record["hash"] == hashlib.sha256(definition.encode("utf-8")).hexdigest()
