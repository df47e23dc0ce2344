"""What the command line imports: only what the command asked for needs.

``neurocds --help`` lists commands from a table without importing them, and
``neurocds evaluate FILE`` loads neither the audit log, the FHIR converter, the
CDS Hooks service, the population runner nor the pack kit. The table and the
duplicated audit variable names are kept equal to what they stand for.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from neurocds.cli import COMMANDS, auditing, main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "crossed-stroke.json"
# Run the CLI, then write the names of every module the process imported to argv[1].
PROBE = (
    "import atexit, json, sys\n"
    "out = sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from neurocds.cli import main\n"
    "main(prog_name='neurocds')\n"
)
HEAVY = (
    "neurocds.audit",
    "neurocds.fhir.convert",
    "neurocds.fhir.mapping",
    "neurocds.cdshooks",
    "neurocds.population",
    "neurocds.authoring",
    "neurocds.replay",
    "pyarrow",
    "dask",
    "starlette",
    "cryptography",
)


def imported_by(tmp_path: Path, *args: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args], capture_output=True, text=True, timeout=120, check=False
    )
    return json.loads(out.read_text()), done


def loaded(modules: list[str], prefix: str) -> list[str]:
    return [m for m in modules if m == prefix or m.startswith(prefix + ".")]


def test_help_imports_no_command_and_lists_them_all(tmp_path):
    modules, done = imported_by(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        assert f"  {name} " in done.stdout
    assert not [m for m in modules if m.startswith("neurocds.cli.")]
    assert not loaded(modules, "neurocds.engine") and not loaded(modules, "jsonschema")
    assert not loaded(modules, "neurocds.version")  # no distribution metadata read for --help


def test_evaluate_imports_only_what_evaluating_a_facts_file_needs(tmp_path):
    modules, done = imported_by(tmp_path, "evaluate", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "Findings" in done.stdout or "finding" in done.stdout.lower()
    for heavy in HEAVY:
        assert not loaded(modules, heavy), f"evaluate FILE imported {heavy}"


def test_evaluate_with_an_audit_dir_still_records_and_audit_failures_still_exit_4(tmp_path):
    audit_dir = tmp_path / "audit"
    modules, done = imported_by(tmp_path, "evaluate", str(EXAMPLE), "--audit-dir", str(audit_dir))
    assert done.returncode == 0, done.stderr
    assert loaded(modules, "neurocds.audit") and (audit_dir / "audit.jsonl").stat().st_size > 0
    # In a fresh process the audit log is first imported while the engine opens it: the
    # failure must still be caught as the audit log's own (exit 4), not as a crash.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    _, done = imported_by(tmp_path, "evaluate", str(EXAMPLE), "--audit-dir", str(blocker / "log"))
    assert done.returncode == 4, done.stderr
    assert "cannot open the audit directory" in done.stderr and "Traceback" not in done.stderr


def test_the_table_names_every_command_with_its_own_summary():
    by_module: dict[str, set[str]] = {}
    for name, (module, _) in COMMANDS.items():
        by_module.setdefault(module, set()).add(name)
    for module, names in by_module.items():
        group = click.Group()
        importlib.import_module(f"neurocds.cli.{module}").register(group)
        assert set(group.commands) == names, f"neurocds.cli.{module} registers {sorted(group.commands)}"
        for name in names:
            assert group.commands[name].get_short_help_str(10**6) == COMMANDS[name][1]


def test_every_command_still_runs_from_the_lazy_group():
    ctx = click.Context(main)
    for name in COMMANDS:
        assert main.get_command(ctx, name) is not None
    assert main.get_command(ctx, "no-such-command") is None


def test_the_audit_flag_variables_are_the_audit_logs_own():
    from neurocds.audit import settings

    for name in (
        "REDACT_ENV",
        "PSEUDONYM_KEY_ENV",
        "PSEUDONYM_KEY_FILE_ENV",
        "CHECKPOINT_EVERY_ENV",
        "SIGNING_KEY_ENV",
        "SEGMENT_ENV",
    ):
        assert getattr(auditing, name) == getattr(settings, name)


def test_audit_error_is_the_real_class_once_the_audit_log_is_loaded():
    from neurocds.audit.errors import AuditError

    assert auditing.audit_error() is AuditError
    with pytest.raises(AuditError):
        try:
            raise AuditError("damaged")
        except auditing.audit_error():
            raise


def test_a_command_whose_module_is_missing_is_unknown_not_a_crash(monkeypatch):
    monkeypatch.setitem(COMMANDS, "ghost", ("ghost_module_not_installed", "A command of a partial install."))
    ctx = click.Context(main)
    assert main.get_command(ctx, "ghost") is None
