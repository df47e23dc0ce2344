"""`neurocds evaluate` with an audit log: decisions and rejections are recorded, and
every audit setting (flags and NEUROCDS_AUDIT_* variables) takes effect or is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from audit_helpers import read_lines, write_lines
from click.testing import CliRunner, Result

from neurocds.audit import verify_log
from neurocds.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cauda-equina.json"
PATIENT = json.loads(EXAMPLE.read_text())["patient"]["id"]
INVALID = b'{"facts_version": "1", "patient": {"id": "bad-input-7"}, "strength": {"left_leg": 97}}'
EXIT_AUDIT = 4


def evaluate(*args: str | Path, env: dict[str, str] | None = None, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["evaluate", *map(str, args)], env=env, input=stdin)


def _key_file(path: Path, mode: int = 0o600) -> Path:
    path.write_text("5a" * 32)
    path.chmod(mode)
    return path


def test_evaluate_with_audit_dir_records_the_decision(tmp_path: Path) -> None:
    d = tmp_path / "log"
    out = evaluate(EXAMPLE, "--format", "json", "--audit-dir", d)
    assert out.exit_code == 0, out.output
    [record] = read_lines(d)
    assert record["type"] == "decision"
    assert record["decision"]["decision_id"] == json.loads(out.stdout)["evaluation_id"]
    assert record["decision"]["facts"]["patient"]["id"] == PATIENT
    assert verify_log(d).ok


def test_the_environment_variable_names_the_log_and_rejections_are_recorded(tmp_path: Path) -> None:
    d = tmp_path / "env-log"
    env = {"NEUROCDS_AUDIT_DIR": str(d)}
    assert evaluate(EXAMPLE, env=env).exit_code == 0
    out = evaluate("-", "--format", "json", env=env, stdin=INVALID)
    assert out.exit_code == 2
    decision, rejection = read_lines(d)
    assert decision["type"] == "decision" and rejection["type"] == "rejection"
    assert [v["pointer"] for v in rejection["rejection"]["violations"]] == ["/strength/left_leg"]
    violations = json.dumps(rejection["rejection"]["violations"])
    assert "found" not in violations and "97" not in violations  # the value is not kept


@pytest.mark.parametrize("how", ["env", "flags"])
def test_redaction_and_signed_checkpoints_take_effect(
    tmp_path: Path, keypair: tuple[Path, Path], how: str
) -> None:
    d = tmp_path / "log"
    key = _key_file(tmp_path / "pseudonym.key")
    if how == "env":
        env = {
            "NEUROCDS_AUDIT_DIR": str(d),
            "NEUROCDS_AUDIT_REDACT": "yes",
            "NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE": str(key),
            "NEUROCDS_AUDIT_CHECKPOINT_EVERY": "2",
            "NEUROCDS_AUDIT_SIGNING_KEY": str(keypair[0]),
        }
        args: list[str | Path] = []
    else:
        env = {}
        args = ["--audit-dir", d, "--audit-redact", "--audit-pseudonym-key-file", key]
        args += ["--audit-checkpoint-every", "2", "--audit-signing-key", keypair[0]]
    for _ in range(2):
        out = evaluate(EXAMPLE, *args, env=env)
        assert out.exit_code == 0, out.output
    records = read_lines(d)
    assert [r["type"] for r in records] == ["decision", "decision", "checkpoint"]
    raw = (d / "audit.jsonl").read_bytes()
    assert b'"facts"' not in raw and PATIENT.encode() not in raw
    assert all(r["decision"]["redacted"] and r["decision"]["patient_pseudonym"] for r in records[:2])
    report = verify_log(d, public_key=keypair[1])
    assert report.ok and [c.signature for c in report.checkpoints] == ["valid"]


def test_a_hex_key_in_the_environment_pseudonymises(tmp_path: Path) -> None:
    d = tmp_path / "log"
    env = {"NEUROCDS_AUDIT_REDACT": "1", "NEUROCDS_AUDIT_PSEUDONYM_KEY": "5a" * 32}
    assert evaluate(EXAMPLE, "--audit-dir", d, env=env).exit_code == 0
    from neurocds.audit.privacy import pseudonymise

    [record] = read_lines(d)
    assert record["decision"]["patient_pseudonym"] == pseudonymise(bytes.fromhex("5a" * 32), PATIENT)


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"NEUROCDS_AUDIT_REDACT": "maybe"}, [], "not a valid boolean"),
        ({"NEUROCDS_AUDIT_CHECKPOINT_EVERY": "0"}, [], "not in the range"),
        ({"NEUROCDS_AUDIT_CHECKPOINT_EVERY": "ten"}, [], "not a valid integer"),
        ({"NEUROCDS_AUDIT_REDACTED": "1"}, [], "unknown audit variable(s) NEUROCDS_AUDIT_REDACTED"),
        ({}, ["--audit-checkpoint-every", "-1"], "not in the range"),
    ],
)
def test_unreadable_settings_are_usage_errors(
    tmp_path: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    out = evaluate(EXAMPLE, "--audit-dir", tmp_path / "log", *args, env=env)
    assert out.exit_code == 2 and message in out.stderr, out.output
    assert not (tmp_path / "log").exists()


def test_audit_flags_without_a_log_are_refused_but_exported_variables_are_not(tmp_path: Path) -> None:
    out = evaluate(EXAMPLE, "--audit-redact")
    assert out.exit_code == 2 and "--audit-redact given without --audit-dir" in out.stderr
    assert evaluate(EXAMPLE, env={"NEUROCDS_AUDIT_REDACT": "1"}).exit_code == 0


@pytest.mark.parametrize("problem", ["no key", "key inside the log", "key readable by others", "no signing key"])
def test_unsafe_audit_configuration_stops_before_anything_is_evaluated(tmp_path: Path, problem: str) -> None:
    d = tmp_path / "log"
    args: list[str | Path] = ["--audit-dir", d, "--audit-redact"]
    if problem == "key inside the log":
        d.mkdir()
        args += ["--audit-pseudonym-key-file", _key_file(d / "pseudonym.key")]
    elif problem == "key readable by others":
        args += ["--audit-pseudonym-key-file", _key_file(tmp_path / "k", 0o644)]
    elif problem == "no signing key":
        args = ["--audit-dir", d, "--audit-checkpoint-every", "3"]
    out = evaluate(EXAMPLE, "--format", "json", *args)
    assert out.exit_code == EXIT_AUDIT, out.output
    assert out.stdout == "" and "no result is given" in out.stderr
    reason = {
        "no key": "redaction needs a pseudonym key",
        "key inside the log": "outside the audit directory",
        "key readable by others": "accessible to other users",
        "no signing key": "needs a signing key",
    }[problem]
    assert reason in out.stderr


def test_a_damaged_log_refuses_with_its_own_exit_code_and_no_result(tmp_path: Path) -> None:
    d = tmp_path / "log"
    for _ in range(3):
        assert evaluate(EXAMPLE, "--audit-dir", d).exit_code == 0
    records = read_lines(d)
    records[1]["decision"]["highest_urgency"] = "none"
    write_lines(d, records)
    for stdin, args in ((None, [EXAMPLE]), (INVALID, ["-"])):  # a decision, then a rejection
        out = evaluate(*args, "--audit-dir", d, stdin=stdin)
        assert out.exit_code == EXIT_AUDIT, out.output
        assert out.stdout == "", "nothing that looks like a result"
        assert "refusing to append" in out.stderr and "(sequence 2)" in out.stderr
    assert len(read_lines(d)) == 3


def test_explain_with_a_damaged_log_exits_4_too(tmp_path: Path) -> None:
    d = tmp_path / "log"
    assert evaluate(EXAMPLE, "--audit-dir", d).exit_code == 0
    (d / "audit.jsonl").write_bytes(b"damaged\n" + (d / "audit.jsonl").read_bytes())
    out = CliRunner().invoke(main, ["explain", str(EXAMPLE), "--rule", "x.y", "--audit-dir", str(d)])
    assert out.exit_code == EXIT_AUDIT and "refusing to append" in out.stderr and out.stdout == ""


def test_pseudonym_keygen_makes_a_private_key_outside_the_log(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "pseudonym.key"
    key.parent.mkdir()
    run = CliRunner().invoke(main, ["audit", "pseudonym-keygen", str(key)])
    assert run.exit_code == 0, run.output
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len(bytes.fromhex(key.read_text())) == 32
    assert CliRunner().invoke(main, ["audit", "pseudonym-keygen", str(key)]).exit_code == 1  # never overwrites
    inside = CliRunner().invoke(main, ["audit", "pseudonym-keygen", str(tmp_path / "log" / "k"), "--audit-dir",
                                       str(tmp_path / "log")])  # fmt: skip
    assert inside.exit_code == 1 and "inside the audit directory" in inside.stderr
    out = evaluate(EXAMPLE, "--audit-dir", tmp_path / "log", "--audit-redact", "--audit-pseudonym-key-file", key)
    assert out.exit_code == 0 and read_lines(tmp_path / "log")[0]["decision"]["redacted"] is True


PACK_MODULE = '''
import json
from pathlib import Path
from neurocds.hookspecs import RulePack, hookimpl
from neurocds.testing import rule

HERE = Path(__file__).parent

@hookimpl
def neurocds_register_packs():
    path = HERE / "rules.json"
    rules = [rule("hooky.weak", {"fact": "strength.left_leg", "lt": 5})]
    path.write_text(json.dumps({"format": "neurocds-ruleset/1", "pack": "hooky", "namespace": "hooky",
                                "rules": rules}))
    return [RulePack(name="hooky", version="0.0.1", rule_files=[path], description="compute hook raises")]

@hookimpl
def neurocds_compute_facts(facts):
    raise RuntimeError("compute hook failed")
'''


def test_a_pack_installed_by_entry_point_that_fails_gives_a_recorded_incomplete_decision(tmp_path: Path) -> None:
    """The reviewer's reproduction: before, exit 3 with a schema error and an empty log."""
    site = tmp_path / "site"
    (site / "hooky_pack").mkdir(parents=True)
    (site / "hooky_pack" / "__init__.py").write_text(PACK_MODULE)
    meta = site / "hooky_pack-0.0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: hooky-pack\nVersion: 0.0.1\n")
    (meta / "entry_points.txt").write_text("[neurocds.packs]\nhooky = hooky_pack\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NEUROCDS_PACKS", None)
    d = tmp_path / "log"
    cli = [sys.executable, "-m", "neurocds"]
    done = subprocess.run([*cli, "evaluate", "--audit-dir", str(d), "--format", "json", str(EXAMPLE)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert [(e["kind"], e["pack"]) for e in result["errors"]] == [("compute_hook", "hooky")]
    [record] = read_lines(d)
    assert record["decision"]["decision_id"] == result["evaluation_id"] and record["decision"]["complete"] is False
    found = subprocess.run([*cli, "audit", "query", "--audit-dir", str(d), "--incomplete", "--format", "json"],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert found.returncode == 0 and [r["sequence"] for r in json.loads(found.stdout)] == [1]


def test_an_audit_directory_that_cannot_be_made_is_exit_4_with_no_result(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    out = evaluate(EXAMPLE, "--audit-dir", blocker / "log")
    assert out.exit_code == 4, out.output
    assert out.stdout == "" and "cannot open the audit directory" in out.stderr
