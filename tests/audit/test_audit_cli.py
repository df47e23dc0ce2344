"""The `neurocds audit` commands, driven through click's test runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from audit_helpers import PATIENT_ID, make_facts, make_result, read_lines, write_lines
from click.testing import CliRunner

from neurocds.audit import AuditLog
from neurocds.audit.records import utc_now
from neurocds.cli.audit import register

COMMANDS = ("verify", "list", "query", "show", "replay", "report", "export", "checkpoint", "keygen", "recover",
            "pseudonym-keygen")  # fmt: skip


@pytest.fixture(scope="module")
def cli() -> click.Group:
    group = click.Group("neurocds")
    register(group)
    return group


def run(cli: click.Group, *args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["audit", *map(str, args)], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]) -> dict[str, object]:
    d = tmp_path_factory.mktemp("cli") / "log"
    log = AuditLog(d, signing_key_path=keypair[0])
    emergency = make_result(urgency="emergency")
    log.record_decision(emergency, make_facts())
    log.checkpoint()
    between = utc_now()
    other = make_result(
        findings=[{"id": "nm.myasthenic_crisis", "urgency": "urgent", "pack": "neuromuscular", "rule": "nm.r1",
                   "title": "<script>alert(1)</script>", "because": [], "unknown": [], "evidence": []}],
        urgency="urgent",
        complete=False,
        packs=[{"name": "neuromuscular", "version": "1.0.0", "sha256": "33" * 32, "status": "ok"}],
    )  # fmt: skip
    log.record_decision(other, make_facts("other-patient"))
    log.record_rejection([{"pointer": "/labs", "message": "wrong type", "code": "type"}])
    return {"dir": d, "emergency": emergency["evaluation_id"], "other": other["evaluation_id"], "between": between}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: click.Group, command: str) -> None:
    code, out, _ = run(cli, command, "--help")
    assert code == 0 and "Usage:" in out
    if command != "keygen":
        assert "--audit-dir" in out and "NEUROCDS_AUDIT_DIR" in out


def test_main_cli_carries_the_audit_group() -> None:
    from neurocds.cli import main

    result = CliRunner().invoke(main, ["audit", "--help"])
    assert result.exit_code == 0 and "verify" in result.stdout


def test_verify_passes_then_names_the_first_bad_sequence(
    cli: click.Group, populated: dict[str, object], tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    d = tmp_path / "log"
    shutil.copytree(populated["dir"], d)  # type: ignore[arg-type]
    code, out, _ = run(cli, "verify", "--audit-dir", d, "--public-key", keypair[1])
    assert code == 0 and "PASS" in out and "1 signature-verified" in out
    code, out, _ = run(cli, "verify", env={"NEUROCDS_AUDIT_DIR": str(d)})  # the env var works too
    assert code == 0
    recs = read_lines(d)
    recs[2]["decision"]["complete"] = True
    write_lines(d, recs)
    code, out, _ = run(cli, "verify", "--audit-dir", d, "--public-key", keypair[1])
    assert code == 1 and "FAIL: first bad sequence 3" in out and "edited" in out
    code, out, _ = run(cli, "verify", "--audit-dir", d, "--format", "json")
    assert code == 1 and json.loads(out)["first_bad_sequence"] == 3


def test_show_and_export_warn_when_the_record_is_not_vouched_for_by_the_chain(
    cli: click.Group, populated: dict[str, object], tmp_path: Path
) -> None:
    d = tmp_path / "log"
    shutil.copytree(populated["dir"], d)  # type: ignore[arg-type]
    recs = read_lines(d)
    recs[2]["decision"]["complete"] = True  # sequence 3 edited, not re-hashed
    write_lines(d, recs)
    for command in (["show"], ["export", "--fhir"]):
        code, out, err = run(cli, *command, "--audit-dir", d, "#3")
        assert code == 0 and out and "WARNING: the log fails verification from sequence 3" in err, command
        _, _, before = run(cli, *command, "--audit-dir", d, "#2")
        assert "WARNING" not in before, command  # records before the damage are still vouched for


def test_verify_without_a_directory_is_a_usage_error(cli: click.Group) -> None:
    code, _, err = run(cli, "verify", env={"NEUROCDS_AUDIT_DIR": ""})
    assert code == 2 and "--audit-dir" in err


def _seqs(out: str) -> list[int]:
    return [r["sequence"] for r in json.loads(out)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), [1, 3, 4]),
        (("--type", "all"), [1, 2, 3, 4]),
        (("--type", "checkpoint"), [2]),
        (("--finding", "spinal.cauda_equina"), [1]),
        (("--urgency", "urgent"), [3]),
        (("--urgency", "urgent", "--urgency", "emergency"), [1, 3]),
        (("--pack", "neuromuscular"), [3]),
        (("--pack", "spinal-compression@2.1.0"), [1]),
        (("--pack", "spinal-compression@9.9.9"), []),
        (("--incomplete",), [3]),
        (("--patient", PATIENT_ID), [1]),
        (("--since", "2999-01-01T00:00:00Z"), []),
        (("--until", "2000-01-01T00:00:00Z"), []),
        (("--since", "2000-01-01"), [1, 3, 4]),
    ],
)
def test_query_filters(
    cli: click.Group, populated: dict[str, object], args: tuple[str, ...], expected: list[int]
) -> None:
    code, out, err = run(cli, "query", "--audit-dir", populated["dir"], "--format", "json", *args)  # type: ignore[arg-type]
    assert code == 0, err
    assert _seqs(out) == expected


def test_query_by_time_window_and_pseudonym(cli: click.Group, populated: dict[str, object]) -> None:
    d = populated["dir"]
    code, out, _ = run(cli, "list", "--audit-dir", d, "--format", "json", "--since", populated["between"])  # type: ignore[arg-type]
    assert _seqs(out) == [3, 4]
    code, out, _ = run(cli, "list", "--audit-dir", d, "--format", "json", "--until", populated["between"])  # type: ignore[arg-type]
    assert _seqs(out) == [1]
    pseudonym = AuditLog(d).pseudonym("other-patient")  # type: ignore[arg-type]
    code, out, _ = run(cli, "query", "--audit-dir", d, "--format", "json", "--pseudonym", pseudonym)  # type: ignore[arg-type]
    assert _seqs(out) == [3]
    code, _, err = run(cli, "query", "--audit-dir", d, "--patient", "x", "--pseudonym", pseudonym)  # type: ignore[arg-type]
    assert code == 2 and "not both" in err
    code, _, err = run(cli, "query", "--audit-dir", d, "--since", "yesterday")  # type: ignore[arg-type]
    assert code == 2 and "--since" in err and "RFC 3339" in err  # the caller's usage error


def test_patient_query_with_another_key_matches_nothing(cli: click.Group, populated: dict[str, object]) -> None:
    env = {"NEUROCDS_AUDIT_PSEUDONYM_KEY": "99" * 16}
    code, out, err = run(
        cli, "query", "--audit-dir", populated["dir"], "--format", "json", "--patient", PATIENT_ID, env=env
    )  # type: ignore[arg-type]
    assert _seqs(out) == []
    assert code == 0 and "another key" in err


def test_list_table(cli: click.Group, populated: dict[str, object]) -> None:
    code, out, _ = run(cli, "list", "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("SEQ") and len(lines) == 4
    assert "spinal.cauda_equina:emergency" in lines[1] and "NO" in lines[2] and "rejection" in lines[3]
    assert PATIENT_ID not in out


def test_show_finds_an_id_whose_prefix_is_all_digits(cli: click.Group, tmp_path: Path) -> None:
    # About one uuid in 43 starts with 8 decimal digits; its prefix once read as a sequence number.
    d = tmp_path / "log"
    log = AuditLog(d)
    digits = "12345678-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
    log.record_decision(make_result(evaluation_id="aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"), make_facts())
    log.record_decision(make_result(evaluation_id=digits), make_facts())
    for ident, sequence in ((digits[:8], 2), (digits, 2), ("1", 1), ("#1", 1), ("#2", 2)):
        code, out, err = run(cli, "show", ident, "--audit-dir", str(d), "--format", "json")
        assert code == 0, (ident, err)
        assert json.loads(out)["sequence"] == sequence, ident
    code, _, err = run(cli, "show", "#12345678", "--audit-dir", str(d))
    assert code == 1 and "no record" in err  # "#N" is only ever a sequence number


def test_show_reports_a_number_that_is_both_a_sequence_and_an_id_prefix(cli: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    for _ in range(2):
        log.record_decision(make_result(), make_facts())
    log.record_decision(make_result(evaluation_id="00000002-aaaa-4aaa-8aaa-aaaaaaaaaaaa"), make_facts())
    code, _, err = run(cli, "show", "00000002", "--audit-dir", str(d))
    assert code == 1 and "more than one record" in err and "#N" in err
    code, out, _ = run(cli, "show", "#2", "--audit-dir", str(d), "--format", "json")
    assert code == 0 and json.loads(out)["sequence"] == 2


def test_show_why_tree(cli: click.Group, populated: dict[str, object]) -> None:
    for ident in (populated["emergency"], str(populated["emergency"])[:8], "1", "#1"):
        code, out, _ = run(cli, "show", ident, "--audit-dir", populated["dir"])  # type: ignore[arg-type]
        assert code == 0
        assert "■ [EMERGENCY] spinal.cauda_equina: Possible cauda equina syndrome" in out
        assert "rule spinal.ces_red_flags (pack spinal-compression)" in out
        assert "├─ fact Back pain = true" in out  # facts by name, as the terminal names them
        assert "└─ derived pattern.leg_weakness = true (rule pattern.leg_weakness)" in out
        assert "└─ fact Potassium (mmol/L) = 2.345678" in out  # derived fact expanded to its input
        assert "not recorded (unknown): Urinary retention" in out
        assert "evidence: NICE CKS Cauda equina syndrome, 2023" in out
        assert "spinal.other (unknown): potassium 2.345678; not recorded: Urinary retention" in out
    code, out, _ = run(cli, "show", "4", "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    assert "Rejected input" in out and "/labs [type]: wrong type" in out
    code, _, err = run(cli, "show", "no-such-id", "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    assert code == 1 and "no record" in err


def test_report_html_is_self_contained_and_escaped(
    cli: click.Group, populated: dict[str, object], tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    out_file = tmp_path / "r.html"
    code, _, err = run(
        cli, "report", "1", "--audit-dir", populated["dir"], "--html", out_file, "--public-key", keypair[1]
    )  # type: ignore[arg-type]
    assert code == 0, err
    page = out_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    for forbidden in ("<script", "<link", "src=", "href=", "@import", "url("):
        assert forbidden not in page.lower()
    assert "verified</span> from sequence 1 through 4" in page
    assert "checkpoint 2 (signs sequence 1" in page and "signature verified" in page
    assert "Possible cauda equina syndrome" in page
    run(cli, "report", "3", "--audit-dir", populated["dir"], "--html", out_file)  # type: ignore[arg-type]
    page = out_file.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "no signed checkpoint covers this record yet" in page
    code, _, err = run(cli, "report", "4", "--audit-dir", populated["dir"], "--html", out_file)  # type: ignore[arg-type]
    assert code == 1 and "not a decision" in err


def test_export_fhir(cli: click.Group, populated: dict[str, object], tmp_path: Path) -> None:
    code, out, _ = run(cli, "export", "1", "--fhir", "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    assert code == 0
    bundle = json.loads(out)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    code, _, err = run(cli, "export", "1", "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    assert code == 2 and "--fhir" in err
    target = tmp_path / "b.json"
    run(cli, "export", "1", "--fhir", "-o", target, "--audit-dir", populated["dir"])  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == bundle  # deterministic ids


def test_keygen_checkpoint_recover(cli: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d).record_decision(make_result(), make_facts())
    code, _, err = run(cli, "keygen", "--private", d / "k", "--public", tmp_path / "k.pub", "--audit-dir", d)
    assert code == 1 and "inside the audit directory" in err
    code, out, _ = run(cli, "keygen", "--private", tmp_path / "k", "--public", tmp_path / "k.pub")
    assert code == 0 and "key " in out
    code, out, _ = run(cli, "checkpoint", "--audit-dir", d, "--key", tmp_path / "k")
    assert code == 0
    entry = json.loads(out)
    assert entry["checkpoint_sequence"] == 2 and entry["sequence"] == 1
    external = tmp_path / "offsite.jsonl"
    external.write_text(out)
    code, out, _ = run(cli, "verify", "--audit-dir", d, "--public-key", tmp_path / "k.pub", "--checkpoints", external)
    assert code == 0
    code, out, _ = run(cli, "recover", "--audit-dir", d)
    assert code == 0 and "nothing to recover" in out
    with open(d / "audit.jsonl", "ab") as fh:
        fh.write(b'{"torn')
    code, out, err = run(cli, "list", "--audit-dir", d)
    assert code == 0 and "warning: the log fails verification at sequence 3" in err
    code, out, _ = run(cli, "recover", "--audit-dir", d)
    assert code == 0 and "recovery record 3 appended" in out
    code, _, err = run(cli, "recover", "--audit-dir", tmp_path / "nothing")
    assert code == 1 and "no audit log" in err


def test_replay_refusals_are_clear(cli: click.Group, populated: dict[str, object], tmp_path: Path) -> None:
    d = tmp_path / "plain"
    builtin = [{"name": "weakness-pattern", "version": "0.0.1", "sha256": "00" * 32, "status": "ok"}]
    AuditLog(d).record_decision(make_result(packs=builtin), make_facts())
    code, _, err = run(cli, "replay", "1", "--audit-dir", d)
    assert code == 1 and "installed packs differ" in err and "weakness-pattern: recorded 0.0.1" in err
    code, out, _ = run(cli, "replay", "1", "--compare", "--audit-dir", d)
    assert code == 1 and "pack weakness-pattern: recorded 0.0.1" in out
    assert "- removed finding spinal.cauda_equina [emergency]" in out and "DIFFERENT" in out
    d = tmp_path / "red"
    AuditLog(d, redact=True, pseudonym_key=b"k" * 16).record_decision(make_result(), make_facts())
    code, _, err = run(cli, "replay", "1", "--audit-dir", d)
    assert code == 1 and "redacted" in err


def test_replay_of_a_real_engine_decision(cli: click.Group, tmp_path: Path) -> None:
    engine = pytest.importorskip("neurocds.engine")  # skip only when the engine is absent
    d = tmp_path / "log"
    engine.Engine(packs=["weakness-pattern"], audit_dir=d).evaluate(
        {"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": 2}}
    )
    code, out, err = run(cli, "replay", "1", "--audit-dir", d)
    assert code == 0, err
    assert "IDENTICAL" in out



def test_show_with_a_short_prefix_says_how_much_is_needed(cli: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "log"
    result = make_result()
    AuditLog(d).record_decision(result, make_facts())
    code, _, err = run(cli, "show", "--audit-dir", d, result["evaluation_id"][:4])
    assert code == 1 and "8 or more characters" in err
    code, out, _ = run(cli, "show", "--audit-dir", d, result["evaluation_id"][:8])
    assert code == 0 and result["evaluation_id"] in out


def test_report_on_a_damaged_log_says_so_and_exits_1(cli: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    result = make_result()
    log.record_decision(result, make_facts())
    log.record_decision(make_result(), make_facts())
    with open(d / "audit.jsonl", "ab") as fh:
        fh.write(b'{"torn')
    code, _, err = run(cli, "report", "--audit-dir", d, result["evaluation_id"], "--html", tmp_path / "r.html")
    assert code == 1 and "fails verification" in err and (tmp_path / "r.html").exists()


def test_show_and_export_warn_only_of_damage_at_or_before_their_record(cli: click.Group, tmp_path: Path) -> None:
    d = tmp_path / "log"
    log = AuditLog(d)
    for _ in range(3):
        log.record_decision(make_result(), make_facts())
    lines = (d / "audit.jsonl").read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"decision"', b'"decisioN"', 1)  # record 2 edited, not re-hashed
    (d / "audit.jsonl").write_bytes(b"".join(lines))
    code, _, err = run(cli, "show", "1", "--audit-dir", d)
    assert code == 0 and err == ""
    for command in (["show", "3"], ["export", "3", "--fhir"]):
        code, _, err = run(cli, *command, "--audit-dir", d)
        assert code == 0 and "WARNING: the log fails verification from sequence 2" in err
        assert "record 3 cannot be trusted" in err
