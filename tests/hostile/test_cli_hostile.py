"""Hostile input through the command line (real subprocesses): one clear refusal, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from neurocds.cli.evaluate import FACTS_MAX_BYTES, read_input

from .corpus import corpus

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from neurocds.cli import main; main()"]
SECONDS = 30.0  # per command, start-up included; today's main took up to 45 s per refusal
ESC = "\x1b"


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, **(env or {})}
    )


def assert_one_clean_refusal(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and ESC not in done.stderr and ESC not in done.stdout


@pytest.mark.parametrize(("name", "body", "pointer"), corpus(), ids=[c[0] for c in corpus()])
def test_validate_refuses_each_hostile_document(tmp_path: Path, name: str, body: bytes, pointer: str) -> None:
    path = tmp_path / "facts.json"
    path.write_bytes(body)
    start = time.monotonic()
    done = run("validate", "--format", "json", str(path))
    assert time.monotonic() - start < SECONDS
    assert_one_clean_refusal(done)
    errors = json.loads(done.stdout)["errors"]
    assert pointer in [e["pointer"] for e in errors], (name, errors[:3])
    text = run("validate", str(path))
    assert_one_clean_refusal(text)
    assert text.stderr.startswith("Invalid facts document:")


def test_a_lone_surrogate_member_is_refused_and_recorded_in_the_audit_log(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_bytes(b'{"facts_version":"1","patient":{"id":"p1"},"\\ud800":1}')
    log = tmp_path / "audit"
    for fmt in ("text", "json"):
        done = run("evaluate", "--format", fmt, "--audit-dir", str(log), str(path))
        assert_one_clean_refusal(done)  # was exit 1 (UnicodeEncodeError), or 4 with an audit log
        assert "\\ud800" in done.stdout + done.stderr and "found None" not in done.stderr
    listed = run("audit", "list", "--audit-dir", str(log))
    assert listed.returncode == 0 and listed.stdout.count("rejection") == 2


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_bytes(b'{"facts_version":"1","patient":{"id":"p1"},"\\u001b[31mred\\u202e":1}')
    done = run("validate", str(path))
    assert_one_clean_refusal(done)
    assert "/\\x1b[31mred\\u202e" in done.stderr


def test_explain_and_evaluate_escape_names_and_values(tmp_path: Path) -> None:
    facts = json.loads((ROOT / "examples" / "hypokalaemia.json").read_text())
    facts["patient"]["id"] = "p\x1b]0;owned\x07"
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts))
    done = run("evaluate", str(path))
    assert done.returncode == 0, done.stderr
    assert ESC not in done.stdout and "\x07" not in done.stdout and "p\\x1b]0;owned\\x07" in done.stdout


@pytest.mark.parametrize("command", [["evaluate"], ["validate"], ["explain", "--rule", "x"]])
@pytest.mark.parametrize("target", ["missing.json", "."], ids=["missing-file", "directory"])
def test_a_missing_file_or_a_directory_is_one_line_exit_2(tmp_path: Path, command: list[str], target: str) -> None:
    done = run(*command, target, cwd=tmp_path)
    assert_one_clean_refusal(done)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: cannot read {target}:")


def test_an_oversized_file_is_refused_from_its_size_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as fh:  # sparse: 64 MiB that take no disk
        fh.truncate(64 * 1_048_576)
    tracemalloc.start()
    try:
        with pytest.raises(SystemExit) as info:
            read_input(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == 2 and peak < 1_048_576  # today: the whole file was read first
    done = run("evaluate", "--format", "json", str(path))
    assert_one_clean_refusal(done)
    assert json.loads(done.stdout)["errors"][0]["code"] == "size"


def test_stdin_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    body = b'{"facts_version":"1","patient":{"id":"' + b"x" * (2 * FACTS_MAX_BYTES) + b'"}}'
    done = subprocess.run([*CLI, "validate", "-"], input=body, capture_output=True, timeout=120)
    assert done.returncode == 2 and b"larger than 1048576 bytes" in done.stderr


def synthea_bundle(largest: bool) -> Path:
    import shared_data

    bundles = sorted((shared_data.DATA / "synthea").glob("*.json"), key=lambda p: p.stat().st_size)
    return bundles[-1] if largest else bundles[0]


@pytest.mark.parametrize("largest", [False, True], ids=["small-bundle", "bundle-over-1-MiB"])
def test_fhir_passed_without_fhir_flag_gets_the_hint(largest: bool) -> None:
    bundle = synthea_bundle(largest)
    assert (bundle.stat().st_size > FACTS_MAX_BYTES) == largest
    done = run("evaluate", str(bundle))
    assert_one_clean_refusal(done)
    assert "this looks like FHIR: use --fhir" in done.stderr
    as_json = run("evaluate", "--format", "json", str(bundle))
    assert "this looks like FHIR: use --fhir" in json.loads(as_json.stdout)["hint"]


def test_a_cds_hooks_request_without_fhir_flag_gets_the_hint() -> None:
    done = run("validate", str(ROOT / "examples" / "cdshooks" / "patient-view-request.json"))
    assert_one_clean_refusal(done)
    assert "this looks like FHIR: use --fhir" in done.stderr


def test_facts_documents_get_no_fhir_hint(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text('{"facts_version": "1", "patient": {"id": "resourceType"}, "labs": {"ck_u_l": -1}}')
    done = run("validate", str(path))
    assert_one_clean_refusal(done)
    assert "FHIR" not in done.stderr


def test_unknown_member_says_did_you_mean_and_expected_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text('{"facts_version": "1", "pateint": {"id": "x"}, "onset": {"tempo": 3}}')
    done = run("validate", str(path))
    assert_one_clean_refusal(done)
    assert "member 'pateint' is not allowed here; did you mean 'patient'?" in done.stderr
    assert "more)" not in done.stderr  # the member list is not cut
    for line in done.stderr.splitlines():
        assert line.count("expected") <= 1, line


def test_backend_durable_without_durable_rules_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "durable_rules_engine.py"
    blocker.write_text('raise ImportError("durable_rules blocked for this test")\n')
    path = ROOT / "examples" / "cauda-equina.json"
    done = run("evaluate", "--backend", "durable", str(path), env={"PYTHONPATH": str(tmp_path)})
    assert_one_clean_refusal(done)
    assert done.stderr.count("\n") == 1
    assert "pip install 'durable-rules==2.0.28'" in done.stderr and "--backend reference" in done.stderr


def test_audit_keygen_creates_a_missing_key_folder_owner_only(tmp_path: Path) -> None:
    done = run(
        "audit",
        "keygen",
        "--private",
        str(tmp_path / "keys" / "a" / "audit.key"),
        "--public",
        "audit.pub",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for folder in (tmp_path / "keys", tmp_path / "keys" / "a"):
        assert folder.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keys" / "a" / "audit.key").stat().st_mode & 0o777 == 0o600
    done = run("audit", "pseudonym-keygen", str(tmp_path / "other" / "p.key"))
    assert done.returncode == 0 and (tmp_path / "other").stat().st_mode & 0o777 == 0o700


def test_audit_keygen_into_an_impossible_folder_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = run(
        "audit", "keygen", "--private", str(tmp_path / "file" / "k" / "audit.key"), "--public", "p.pub", cwd=tmp_path
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "cannot create the folder" in done.stderr


def readme_audit_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Audit log") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_audit_example_runs_verbatim(tmp_path: Path) -> None:
    block = readme_audit_block()
    assert "neurocds audit keygen --private ~/keys/audit.key" in block  # the first command users copy
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "neurocds"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from neurocds.cli import main; main()" "$@"\n')
    launcher.chmod(0o755)
    env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("NEUROCDS_AUDIT_DIR", None)
    done = subprocess.run(
        ["bash", "-e", "-c", block], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (home / "keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "report.html").exists() and '"resourceType": "AuditEvent"' in done.stdout
