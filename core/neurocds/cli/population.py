"""``neurocds population run``: evaluate a whole patient population on local cores or a Dask cluster.

Exit codes: 0 every patient evaluated or rejected (rejections are in
``errors.ndjson``: a bad patient never stops a run), 1 the run did not finish
(rerun with ``--resume``), 2 unusable input or output folder, 3 some results are
incomplete (a pack failed), 4 the audit log could not be opened or refused the
run record, 130 interrupted (rerun with ``--resume``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from neurocds.audit.errors import AuditError
from neurocds.cli.auditing import audit_config_options, audit_failed, audit_options
from neurocds.population import PopulationError, RunSettings, run_population
from neurocds.population.settings import DEFAULT_SWEEP_HOOK_BUDGET, DEFAULT_WINDOW_DAYS
from neurocds.population.sources import INPUT_FORMATS
from neurocds.result import DISCLAIMER

EXIT_FAILED, EXIT_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 1, 2, 3, 130


def register(group: click.Group) -> None:
    group.add_command(population)


@click.group("population")
def population() -> None:
    """Evaluate whole patient populations (local cores by default, or a Dask cluster)."""


@population.command("run")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--input-format",
    type=click.Choice(INPUT_FORMATS),
    default="auto",
    show_default=True,
    help="facts (NDJSON or .json files), fhir (a Bundle per file), bulk ($export NDJSON + manifest).",
)
@click.option("--packs", envvar="NEUROCDS_PACKS", help="Comma-separated allowlist of packs to load.")
@click.option(
    "--backend",
    type=click.Choice(["durable", "reference"]),
    help="durable (default, verified by the reference evaluator) or reference (faster, for sweeps).",
)
@click.option("--verify/--no-verify", default=True, show_default=True, help="Check durable against reference.")
@click.option("--now", metavar="RFC3339|latest", help="Clock for FHIR recency (default: the run's start, recorded).")
@click.option("--window-days", type=float, default=DEFAULT_WINDOW_DAYS, show_default=True, help="Observation window.")
@click.option("--trace/--no-trace", default=True, show_default=True, help="Include each result's explanation trace.")
@click.option("--slim", is_flag=True, help="Write patient, urgency and findings per result, not the whole document.")
@click.option("--workers", type=click.IntRange(0, None), help="Local processes (default: all cores; 0: this one).")
@click.option("--scheduler", metavar="tcp://HOST:PORT", help="Run on this Dask cluster instead of local processes.")
@click.option("--partition-size", type=click.IntRange(1, None), help="Patients per partition (default per input).")
@click.option(
    "--hook-budget",
    type=float,
    default=DEFAULT_SWEEP_HOOK_BUDGET,
    show_default=True,
    help="CPU seconds each pack's hooks may spend per patient (one that blocks: stopped at 5x that of wall time).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished partitions are kept.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on standard error.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--audit-dir", type=click.Path(file_okay=False), help="Record the run (one record) in this audit log.")
@audit_config_options
def run_cmd(inputs: tuple[str, ...], out_dir: str, **kw: Any) -> None:
    """Evaluate every patient in INPUT... and write results/ (NDJSON parts in input
    order, listed by results/_manifest.json), findings.parquet, errors.ndjson and
    summary.json to --out.

    INPUT is a facts NDJSON file, a folder or glob of facts files, a folder of FHIR
    Bundles, or a FHIR Bulk Data export (folder or manifest.json); .gz accepted.
    """
    try:
        settings = RunSettings(
            packs=tuple(p.strip() for p in kw["packs"].split(",") if p.strip()) if kw["packs"] else None,
            backend=kw["backend"],
            verify=kw["verify"],
            now=kw["now"],
            window_days=kw["window_days"],
            trace=kw["trace"],
            slim=kw["slim"],
            partition_size=kw["partition_size"],
            hook_budget=kw["hook_budget"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    audit_log = _open_audit(kw["audit_dir"])
    with _Progress(kw["progress"]) as progress:
        try:
            summary = run_population(
                inputs,
                out_dir,
                settings,
                input_format=kw["input_format"],
                workers=kw["workers"],
                scheduler=kw["scheduler"],
                resume=kw["resume"],
                on_progress=progress.update,
                audit_log=audit_log,
            )
        except AuditError as exc:
            audit_failed(exc)
        except PopulationError as exc:
            click.echo(f"neurocds population run: {exc}", err=True)
            sys.exit(EXIT_FAILED if exc.kind == "failed" else EXIT_INPUT)
        except KeyboardInterrupt:
            click.echo("neurocds population run: interrupted; rerun with --resume to continue", err=True)
            sys.exit(EXIT_INTERRUPTED)
    if kw["fmt"] == "json":
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, Path(out_dir))
    if summary["counts"]["incomplete_results"]:
        sys.exit(EXIT_INCOMPLETE)


def _open_audit(audit_dir: str | None) -> Any:
    options = audit_options(audit_dir)
    if audit_dir is None:
        return None
    from neurocds.audit import AuditLog

    try:
        return AuditLog.from_options(Path(audit_dir), options)
    except AuditError as exc:
        audit_failed(exc, opening=True)


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    counts = summary["counts"]
    click.echo(
        f"{counts['records_in']} patients: {counts['results']} evaluated "
        f"({counts['incomplete_results']} incomplete), {counts['errors']} rejected "
        f"(see {out / 'errors.ndjson'}); backend {summary['engine'].get('backend')}, "
        f"{summary['seconds']:.1f} s"
    )
    for urgency in ("emergency", "urgent", "routine", "info", "none"):
        if summary["by_urgency"].get(urgency):
            click.echo(f"  highest urgency {urgency}: {summary['by_urgency'][urgency]}")
    click.echo(f"outputs in {out}; summary sha256 {summary['summary_sha256']}")
    click.echo(DISCLAIMER)


class _Progress:
    """A click progress bar over partitions, on standard error, started at the first report."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.shown = 0
        self.patients = 0

    def update(self, done: int, total: int, patients: int) -> None:
        if not self.enabled:
            return
        self.patients = patients
        if self.bar is None:
            self.bar = click.progressbar(
                length=total,
                label="partitions",
                file=sys.stderr,
                item_show_func=lambda _: f"{self.patients} patients",
            )
            self.bar.__enter__()
        self.bar.update(done - self.shown, done)
        self.shown = done

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
