"""Helpers of ``neurocds audit``: query options, damage warnings, the pseudonym key.

Kept apart from :mod:`neurocds.cli.audit` (which declares the commands) for length.
May import: everything (the CLI is the top stage).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

URGENCIES = ("emergency", "urgent", "routine", "info", "none")
TYPES = ("decision", "rejection", "recovery", "checkpoint", "feedback", "cards", "population_run", "segment", "all")


def audit_dir_option(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--audit-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="NEUROCDS_AUDIT_DIR",
        show_envvar=True,
        required=required,
        help="Audit log directory.",
    )


def call(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; neurocds errors become a clean message and exit code 1."""
    from neurocds.errors import NeurocdsError

    try:
        return fn()
    except NeurocdsError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


def warn_if_damaged(audit_dir: Path, record: dict[str, Any]) -> None:
    """Say on stderr when the chain does not check out at or before ``record`` (``show``, ``export``).

    Only damage at or before that record counts, and the warning says the record cannot be
    trusted: an auditor must not take a record from a damaged chain as sound because the
    command that printed it did not check. (``query`` warns of damage the index met instead.)
    """
    from neurocds.audit.chain import ChainProblem
    from neurocds.audit.segment_scan import scan_segments

    scanned = scan_segments(audit_dir)  # streams through every segment file: memory stays flat
    found = [ChainProblem(seq, code, why) for seq, code, why in scanned.problems if seq is not None]
    chain_problem = scanned.result.first_problem()
    found += [chain_problem] if chain_problem is not None else []
    problem = min(found, key=lambda p: p.sequence, default=None)
    sequence = record.get("sequence")
    if problem is not None and isinstance(sequence, int) and problem.sequence <= sequence:
        click.echo(
            f"WARNING: the log fails verification from sequence {problem.sequence} ({problem.reason}); "
            f"record {sequence} cannot be trusted. `neurocds audit verify` says more.",
            err=True,
        )


def pseudonym_key(audit_dir: Path, key_file: Path | None) -> bytes:
    from neurocds.audit import privacy

    if key_file is not None:
        return privacy.read_key_file(key_file)
    key = privacy.key_from_env(os.environ) or privacy.auto_key(audit_dir, create=False)
    if key is None:
        raise click.ClickException(
            "--patient needs the pseudonym key: --pseudonym-key-file, NEUROCDS_AUDIT_PSEUDONYM_KEY "
            "or NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE"
        )
    return key


def time_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """An RFC 3339 time, parsed once; a malformed one is the caller's usage error (exit 2)."""
    from neurocds.audit.errors import AuditError
    from neurocds.audit.query import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except AuditError as exc:
        raise click.BadParameter(str(exc)) from None


def query_options(fn: F) -> F:
    options = [
        audit_dir_option(),
        click.option("--since", callback=time_option, help="Recorded at or after this RFC 3339 time."),
        click.option("--until", callback=time_option, help="Recorded at or before this RFC 3339 time."),
        click.option("--patient", help="Raw patient id (turned into its pseudonym with the key)."),
        click.option("--pseudonym", help="Patient pseudonym (hex) as stored."),
        click.option(
            "--pseudonym-key-file",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="Pseudonym key file (hex); else the environment or the log's own key.",
        ),
        click.option("--finding", help="Decisions with this finding id."),
        click.option("--urgency", multiple=True, type=click.Choice(URGENCIES), help="Highest urgency (repeatable)."),
        click.option("--pack", help="Decisions that used pack NAME or NAME@VERSION."),
        click.option("--incomplete", is_flag=True, help="Only decisions that are not complete."),
        click.option(
            "--type",
            "types",
            multiple=True,
            type=click.Choice(TYPES),
            help="Record types (default: decision and rejection).",
        ),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many records (the first ones)."),
        click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def run_query(audit_dir: Path, **kw: Any) -> None:
    from neurocds.audit import index, privacy
    from neurocds.audit.query import RecordFilter, format_table, summary

    if kw["patient"] and kw["pseudonym"]:
        raise click.UsageError("give --patient or --pseudonym, not both")
    pseudonym = kw["pseudonym"]
    key_id = None
    if kw["patient"]:
        key = call(lambda: pseudonym_key(audit_dir, kw["pseudonym_key_file"]))
        pseudonym, key_id = privacy.pseudonymise(key, kw["patient"]), privacy.key_id(key)
    types = tuple(kw["types"]) or ("decision", "rejection")
    if "all" in types:
        types = TYPES[:-1]
    flt = call(
        lambda: RecordFilter(
            since=kw["since"],
            until=kw["until"],
            pseudonym=pseudonym,
            finding=kw["finding"],
            urgency=tuple(kw["urgency"]),
            pack=kw["pack"],
            incomplete=kw["incomplete"],
            types=types,
        )
    )
    problems: list[Any] = []
    records = call(lambda: list(index.query(audit_dir, flt, limit=kw["limit"], problems=problems)))
    if problems:
        problem = problems[0]
        click.echo(
            f"warning: the log fails verification at sequence {problem.sequence} "
            f"({problem.reason}); run `neurocds audit verify`",
            err=True,
        )
    if kw["fmt"] == "json":
        echo_json(records)
    else:
        click.echo(format_table([summary(r) for r in records]))
    if key_id and not records:
        click.echo(f"note: matched with pseudonym key {key_id}; records made with another key do not match", err=True)
