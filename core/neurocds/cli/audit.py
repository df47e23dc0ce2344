"""``neurocds audit ...``: verify, query, explain, replay, report and export recorded decisions.

Every subcommand takes ``--audit-dir`` (or ``NEUROCDS_AUDIT_DIR``). Exit codes:
0 success, 1 a check failed or the request was refused (with a message on
stderr), 2 a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from neurocds.cli.audit_query import (
    audit_dir_option,
    call,
    echo_json,
    query_options,
    run_query,
    time_option,
    warn_if_damaged,
)
from neurocds.cli.auditing import make_key_folder


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def register(group: click.Group) -> None:
    """Add the ``audit`` command group to ``group``."""
    group.add_command(audit)


@click.group()
def audit() -> None:
    """Inspect and verify the tamper-evident audit log."""


@audit.command()
@audit_dir_option()
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="NEUROCDS_AUDIT_PUBLIC_KEY",
    show_envvar=True,
    help="Ed25519 public key (PEM) to check checkpoint signatures.",
)
@click.option(
    "--checkpoints",
    "external",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint file kept outside the log directory (repeatable).",
)
@click.option(
    "--segment",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Check this one segment file on its own (sealed, maybe archived elsewhere), and against "
    "what the log in --audit-dir commits to for it.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(
    audit_dir: Path, public_key: Path | None, external: tuple[Path, ...], segment: Path | None, fmt: str
) -> None:
    """Check the whole chain through every segment present, the head file and every checkpoint.

    Segments archived away are named, with the hash the log commits them to, not verified.
    Exit 0 when everything verifies; exit 1 naming the first bad sequence otherwise.
    """
    from neurocds.audit.verify import format_report, verify_log

    report = call(
        lambda: verify_log(audit_dir, public_key=public_key, external_checkpoints=external, segment=segment)
    )
    if fmt == "json":
        echo_json(report.to_dict())
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.ok else 1)


@audit.command()
@query_options
def query(audit_dir: Path, **kw: Any) -> None:
    """Find records by time, patient, finding, urgency, pack or completeness (`list` is the same).

    Fast on large logs: candidates come from the index (index.sqlite, rebuilt from the log
    whenever it does not match it), and each is read back from the log and checked.
    """
    run_query(audit_dir, **kw)


audit.add_command(query, "list")


@audit.command()
@audit_dir_option()
@click.argument("record_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show(audit_dir: Path, record_id: str, fmt: str) -> None:
    """Show one decision as a why-tree: findings, rules, because-facts, evidence, unknowns.

    RECORD_ID is a decision id, an id prefix (8+ characters), or a sequence number: N or #N
    (#N is only ever a sequence number; use it when a number could also be an id prefix).
    """
    from neurocds.audit.index import related
    from neurocds.audit.query import find_record
    from neurocds.audit.render import render_text

    record = call(lambda: find_record(audit_dir, record_id))
    warn_if_damaged(audit_dir, record)
    if fmt == "json":
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    decision_id = (record.get("decision") or {}).get("decision_id")
    others = call(lambda: related(audit_dir, decision_id)) if isinstance(decision_id, str) else []
    click.echo(render_text(record, others))


@audit.command()
@audit_dir_option()
@click.argument("record_id")
@click.option("--compare", is_flag=True, help="Evaluate with the installed packs even if they differ; show changes.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def replay(audit_dir: Path, record_id: str, compare: bool, fmt: str) -> None:
    """Re-evaluate a recorded decision's facts and compare with what was recorded.

    Refuses when installed packs differ from the recorded ones (unless --compare)
    and for redacted records. Exit 0 when the replay reproduces the decision.
    """
    from neurocds.audit.query import find_record
    from neurocds.replay import format_replay, replay_decision

    record = call(lambda: find_record(audit_dir, record_id))
    outcome = call(lambda: replay_decision(record, compare=compare))
    if fmt == "json":
        echo_json(outcome.to_dict())
    else:
        click.echo(format_replay(outcome))
    sys.exit(0 if outcome.identical or (compare and not outcome.differing_fields) else 1)


@audit.command()
@audit_dir_option()
@click.argument("record_id", required=False)
@click.option(
    "--html",
    "html_out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the self-contained HTML page here.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="NEUROCDS_AUDIT_PUBLIC_KEY",
    help="Public key to check checkpoint signatures.",
)
@click.option("--since", callback=time_option, help="Without RECORD_ID: the period starts at this RFC 3339 time.")
@click.option("--until", callback=time_option, help="Without RECORD_ID: the period ends at this RFC 3339 time.")
def report(
    audit_dir: Path, record_id: str | None, html_out: Path, public_key: Path | None, since: Any, until: Any
) -> None:
    """Write an HTML report: of one decision (RECORD_ID), or of every decision in a period.

    The period report counts decisions by finding and urgency, lists overrides and their
    reasons, incomplete decisions and why, and the pack versions in force, with the chain's
    verification status and a row for each decision. Exit 1 when the log fails verification.
    """
    from neurocds.cli.audit_report import write_report

    if record_id is not None and (since or until):
        raise click.UsageError("give RECORD_ID or --since/--until, not both")
    call(lambda: write_report(audit_dir, record_id, html_out, public_key, since, until))


@audit.command()
@audit_dir_option()
@click.argument("record_id")
@click.option("--fhir", is_flag=True, required=True, help="FHIR R4 Bundle with AuditEvent and Provenance.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@click.option("--fhir-server", help="The EHR's FHIR base URL: relative references to its resources become absolute.")
def export(audit_dir: Path, record_id: str, fhir: bool, output: Path | None, fhir_server: str | None) -> None:
    """Export one decision (FHIR R4 AuditEvent, Provenance and GuidanceResponse in a collection Bundle)."""
    from neurocds.audit.fhir import export_fhir
    from neurocds.audit.query import find_record

    if not fhir:
        raise click.UsageError("choose an export format: --fhir")
    record = call(lambda: find_record(audit_dir, record_id))
    warn_if_damaged(audit_dir, record)
    bundle = call(lambda: export_fhir(record, fhir_server=fhir_server))
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


@audit.command()
@audit_dir_option()
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="NEUROCDS_AUDIT_SIGNING_KEY",
    help="Ed25519 private key (PEM), outside the log directory.",
)
def checkpoint(audit_dir: Path, key_path: Path) -> None:
    """Sign the current chain head now. Prints the signed checkpoint: keep a copy elsewhere."""
    from neurocds.audit.writer import checkpoint_log

    appended, entry = call(lambda: checkpoint_log(audit_dir, key_path))
    click.echo(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    click.echo(f"checkpoint {appended.sequence} signs sequence {entry['sequence']}", err=True)


@audit.command()
@audit_dir_option()
@click.option(
    "--key",
    "key_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="NEUROCDS_AUDIT_SIGNING_KEY",
    help="Ed25519 private key: sign a checkpoint as the segment's last record first.",
)
def roll(audit_dir: Path, key_path: Path | None) -> None:
    """Seal the active segment now (to archive it) and start the next one.

    Writers roll on their own with NEUROCDS_AUDIT_SEGMENT (daily, a size such as 64MB, or both).
    """
    from neurocds.audit.writer import roll_log

    sealed = call(lambda: roll_log(audit_dir, key_path))
    click.echo(f"sealed segments/{sealed}" if sealed else "nothing to seal: the active segment holds no records")


@audit.command()
@audit_dir_option()
def recover(audit_dir: Path) -> None:
    """Recover from an interrupted write now (appending does this automatically)."""
    from neurocds.audit.writer import recover_log

    records = call(lambda: recover_log(audit_dir))
    for r in records:
        click.echo(f"recovery record {r.sequence} appended")
    if not records:
        click.echo("nothing to recover")


@audit.command()
@click.option("--private", "private_out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public", "public_out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@audit_dir_option(required=False)
def keygen(private_out: Path, public_out: Path, audit_dir: Path | None) -> None:
    """Create an Ed25519 key pair for checkpoints (private file mode 0600).

    The private key may not be written inside the audit directory.
    """
    from neurocds.audit.signing import generate_keypair

    for path in (private_out, public_out):
        if path.exists():
            raise _fail(f"{path} already exists; not overwriting a key")
    for path in (private_out, public_out):
        make_key_folder(path.expanduser())
    key_id = call(lambda: generate_keypair(private_out, public_out, audit_dir=audit_dir))
    click.echo(f"key {key_id}: private {private_out}, public {public_out}")


@audit.command("pseudonym-keygen")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@audit_dir_option(required=False)
def pseudonym_keygen(key_file: Path, audit_dir: Path | None) -> None:
    """Create a random 32-byte pseudonym key (hex, mode 0600) for redaction.

    Keep it outside the audit directory (refused inside --audit-dir): whoever holds
    it can test a patient id against the pseudonyms in the log.
    """
    import secrets

    from neurocds.audit import privacy
    from neurocds.audit.signing import is_inside

    if audit_dir is not None and is_inside(key_file, audit_dir):
        raise _fail(f"{key_file} lies inside the audit directory {audit_dir}; keep the pseudonym key elsewhere")
    if key_file.exists():
        raise _fail(f"{key_file} already exists; not overwriting a key")
    make_key_folder(key_file)
    key = secrets.token_bytes(32)
    call(lambda: privacy.write_key_file(key_file, key))
    click.echo(f"pseudonym key {privacy.key_id(key)} written to {key_file}")
