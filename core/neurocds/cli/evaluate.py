"""``neurocds evaluate | validate | explain | packs``.

Exit codes: 0 evaluated (or valid), 2 invalid input, 3 a pack failed (at load,
or during the evaluation: the result is then incomplete), 4 the audit log could
not be opened or refused to record the decision or rejection (no result shown).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from neurocds.cli.auditing import audit_config_options, audit_error, audit_failed, audit_options
from neurocds.cli.fhir import FhirInputOptions, fhir_input_options
from neurocds.errors import FactsValidationError, NeurocdsError, PackLoadError, Violation
from neurocds.explain.render import terminal_safe
from neurocds.facts.patient import patient_id_of
from neurocds.facts.strictjson import ParseLimits

EXIT_OK, EXIT_INVALID, EXIT_PACK_FAILED = 0, 2, 3
MAPPING_LEFT_OUT = "fhir_mappings_left_out"  # a FHIR input warning: a plugin's tables were not used
FACTS_MAX_BYTES = ParseLimits().max_bytes
# How much of an input is searched for the marks of FHIR (enough for any Bundle's start).
_SNIFF_BYTES = 65_536
_FHIR_MARKS = (re.compile(rb'"resourceType"\s*:\s*"'), re.compile(rb'"hook"\s*:\s*"[^"]*"\s*[,}]'))


def fail_input(message: str) -> NoReturn:
    """One line on stderr, exit 2: the input cannot be read (no traceback, no usage text)."""
    click.echo(terminal_safe(f"error: {message}"), err=True)
    sys.exit(EXIT_INVALID)


def read_input(path: str, fmt: str = "text", limit: int = FACTS_MAX_BYTES) -> bytes:
    """The bytes of ``path`` (``-``: stdin), never more than ``limit`` + 1 read.

    A regular file larger than ``limit`` is refused from its size before any reading;
    a stream is read only up to ``limit`` + 1 bytes. Either way the refusal is a
    ``size`` violation (exit 2), with the FHIR hint when the start looks like FHIR.
    """
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                raw = fh.read(_SNIFF_BYTES) if size > limit else fh.read(limit + 1)
                if size > limit:
                    _refuse_size(f"document is {size} bytes, more than {limit}", raw, fmt)
    except IsADirectoryError:
        fail_input(f"cannot read {path}: it is a directory, not a file")
    except OSError as exc:
        fail_input(f"cannot read {path}: {exc.strerror or exc}")
    if len(raw) > limit:
        _refuse_size(f"document is larger than {limit} bytes", raw, fmt)
    return raw


def _refuse_size(message: str, head: bytes, fmt: str) -> NoReturn:
    # Refused before the engine sees it, so not in the audit log: there is no document.
    report_invalid(FactsValidationError([Violation("", message, code="size")]), fmt, raw=head)


def looks_like_fhir(raw: bytes | None) -> bool:
    """True when the start of ``raw`` holds a FHIR ``resourceType`` or a CDS Hooks ``hook``."""
    head = (raw or b"")[:_SNIFF_BYTES]
    return any(mark.search(head) for mark in _FHIR_MARKS)


def engine_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--packs", envvar="NEUROCDS_PACKS", help="Comma-separated allowlist of packs to load."),
        click.option(
            "--backend",
            type=click.Choice(["durable", "reference"]),
            default=None,
            help="Evaluation backend (default: durable where it imports, else reference).",
        ),
        click.option(
            "--verify/--no-verify",
            default=True,
            show_default=True,
            help="Check durable_rules' answer with the reference evaluator.",
        ),
        click.option(
            "--audit-dir",
            envvar="NEUROCDS_AUDIT_DIR",
            type=click.Path(file_okay=False),
            help="Record every decision in this tamper-evident audit log.",
        ),
    ]
    func = audit_config_options(func)  # listed in --help right after --audit-dir
    for option in reversed(options):
        func = option(func)
    return func


def make_engine(packs: str | None, backend: str | None, verify: bool, audit_dir: str | None) -> Any:
    """The engine for this command; its audit log takes the command's ``--audit-*`` flags."""
    from neurocds.engine import Engine

    if backend == "durable":
        from neurocds.engine import durable_available

        ok, reason = durable_available()
        if not ok:
            fail_input(
                f"--backend durable: {reason}. Install it with pip install 'durable-rules==2.0.28' "
                "(CPython 3.12 or older), or use --backend reference"
            )
    options = audit_options(audit_dir)
    try:
        engine = Engine(packs=packs, backend=backend, verify=verify, audit_dir=audit_dir, audit_options=options)
    except PackLoadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PACK_FAILED)
    except audit_error() as exc:
        audit_failed(exc, opening=True)
    for pack in engine.failed_packs:  # installed but broken: left out, and every result says so
        click.echo(f"warning: pack {pack.name} could not load; results are incomplete without it: {pack.error}",
                   err=True)
    return engine


FHIR_HINT = (
    "this looks like FHIR: use --fhir (evaluate --fhir or fhir-to-facts read a Bundle, a resource "
    "or a CDS Hooks request)"
)


def report_invalid(exc: FactsValidationError, fmt: str, raw: bytes | None = None) -> NoReturn:
    """Every violation (text on stderr, or JSON on stdout), exit 2.

    ``raw``: the input's bytes (or their start), to tell FHIR passed without ``--fhir``.
    """
    hint = FHIR_HINT if looks_like_fhir(raw) else None
    if fmt == "json":
        out = exc.to_dict()
        if hint:
            out["hint"] = hint
        # ASCII escapes: a member name can hold anything, the output stays printable.
        click.echo(json.dumps(out, indent=2, ensure_ascii=True))
    else:
        click.echo(f"Invalid facts document: {_count(exc)}", err=True)
        if hint:
            click.echo(f"  {hint}", err=True)
        for v in exc.violations:
            click.echo(terminal_safe(f"  {v.pointer or '/'}: {v.message}{_details(v)}"), err=True)
        if exc.truncated:
            click.echo(f"  ... and more problems, not listed (the first {len(exc.violations)} are)", err=True)
    sys.exit(EXIT_INVALID)


def _count(exc: FactsValidationError) -> str:
    return f"more than {len(exc.violations)} problems" if exc.truncated else f"{len(exc.violations)} problem(s)"


def _details(v: Violation) -> str:
    """``(expected X; found Y)``, leaving out what is absent or already said in the message."""
    parts = []
    if v.expected and v.expected not in v.message:
        parts.append(f"expected {v.expected}")
    if v.found:
        parts.append(f"found {v.found}")
    return f" ({'; '.join(parts)})" if parts else ""


def load_facts(
    file: str, fhir_input: FhirInputOptions | None, fmt: str, engine: Any
) -> tuple[Any, dict[str, Any] | None]:
    """The facts document (raw bytes, or converted from FHIR) and the conversion's provenance.

    FHIR input is read exactly as ``fhir-to-facts`` reads it (same options, same limit).
    """
    if fhir_input is None:
        return read_input(file, fmt), None
    from neurocds.cli.fhir import convert_fhir_input
    from neurocds.fhir import FhirInputError, MappingSourceFailure, engine_mapping_paths, load_mapping_tables

    left_out: list[MappingSourceFailure] = []  # plugins whose mapping hook failed: the others' tables still load
    try:
        tables = load_mapping_tables(engine_mapping_paths(engine, left_out))  # the engine's packs' tables too
        conversion = convert_fhir_input(file, fhir_input, tables)
    except FactsValidationError as exc:
        report_invalid(exc, fmt)
    except FhirInputError as exc:
        pointer = getattr(exc, "pointer", "") or ""
        report_invalid(FactsValidationError([Violation(pointer, str(exc), code="fhir")]), fmt)
    except NeurocdsError as exc:  # a mapping table is broken: not the input's fault
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PACK_FAILED)
    # Facts those tables would have mapped are unknown: said on stderr and in the trace, and exit 3.
    warnings = [
        *conversion.warnings,
        *({"kind": MAPPING_LEFT_OUT, "source": f.source, "message": str(f)} for f in left_out),
    ]
    _show_warnings(warnings)
    return conversion.facts, {"provenance": conversion.provenance, "warnings": warnings}


def _show_warnings(warnings: list[Any]) -> None:
    """What the FHIR input lost (an unknown unit, a stale value) goes to stderr, every time.

    A value dropped for its unit is unknown to the rules, and a finding that needed it
    does not fire: the person reading the result must see why. Messages name resources,
    codes and units, never values or patient ids.
    """
    for warning in warnings:
        if isinstance(warning, dict) and isinstance(warning.get("message"), str):
            where = warning.get("resource") or warning.get("pointer") or ""
            click.echo(f"warning: FHIR input{f' {where}' if where else ''}: {warning['message']}", err=True)


def _parsed_once(engine: Any, raw: bytes) -> Any:
    """The facts parsed and validated once: the engine evaluates the document as it is, and
    the text report reads the patient id from it (reading the bytes again was a second parse).

    Refused input goes to the engine as the bytes it is, which refuses it again (a second
    parse, on refusal only) and puts the refusal on the audit record.
    """
    try:
        return engine.validator.parse_valid(raw)
    except FactsValidationError:
        return raw


@click.command("evaluate")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--fhir",
    is_flag=True,
    help="FILE is FHIR R4 (a Bundle, one resource or a CDS Hooks request), converted as fhir-to-facts does.",
)
@fhir_input_options
@click.option("--no-trace", is_flag=True, help="Leave the why-not trace out (findings keep their because).")
@engine_options
def evaluate_cmd(
    file: str,
    fmt: str,
    fhir: bool,
    fhir_input: FhirInputOptions,
    no_trace: bool,
    packs: str | None,
    backend: str | None,
    verify: bool,
    audit_dir: str | None,
) -> None:
    """Evaluate a facts document (FILE, or - for stdin); most urgent findings first.

    With --fhir, the options --now, --window-days, --patient-id and --max-input-bytes
    apply as in fhir-to-facts.
    """
    if not fhir and not fhir_input.is_default:
        raise click.UsageError("--now, --window-days, --patient-id and --max-input-bytes need --fhir")
    engine = make_engine(packs, backend, verify, audit_dir)
    facts, provenance = load_facts(file, fhir_input if fhir else None, fmt, engine)
    raw = None if fhir else facts
    if raw is not None:
        facts = _parsed_once(engine, raw)
    try:
        result = engine.evaluate(facts, trace=not no_trace, provenance=provenance)
    except FactsValidationError as exc:
        report_invalid(exc, fmt, raw=raw)
    except audit_error() as exc:  # not a pack failure: the decision could not be put on record
        audit_failed(exc)
    except NeurocdsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_PACK_FAILED)
    from neurocds.explain.render import render_result

    if fmt == "json":
        click.echo(result.to_json())
    else:
        click.echo(render_result(result.to_dict(), patient_id=patient_id_of(facts), label_of=engine.label_of))
    tables_left_out = any(w.get("kind") == MAPPING_LEFT_OUT for w in (provenance or {}).get("warnings", []))
    sys.exit(EXIT_OK if result.complete and not tables_left_out else EXIT_PACK_FAILED)


@click.command("validate")
@click.argument("file")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--packs", envvar="NEUROCDS_PACKS", help="Packs whose extension schemas apply.")
def validate_cmd(file: str, fmt: str, packs: str | None) -> None:
    """Check a facts document against the facts schema (every problem at once)."""
    engine = make_engine(packs, "reference", False, None)
    raw = read_input(file, fmt)
    try:
        engine.validate(raw)
    except FactsValidationError as exc:
        report_invalid(exc, fmt, raw=raw)
    click.echo(json.dumps({"valid": True}) if fmt == "json" else "valid")


@click.command("explain")
@click.argument("file")
@click.option("--finding", "finding_id", help="Explain why this finding fired, or why it did not.")
@click.option("--rule", "rule_id", help="Explain one rule: why it fired, or why not.")
@engine_options
def explain_cmd(
    file: str,
    finding_id: str | None,
    rule_id: str | None,
    packs: str | None,
    backend: str | None,
    verify: bool,
    audit_dir: str | None,
) -> None:
    """Show the why-tree of a finding or a rule, back to the input facts."""
    from neurocds.explain.render import render_rule_state

    if bool(finding_id) == bool(rule_id):
        raise click.UsageError("give exactly one of --finding or --rule")
    raw = read_input(file)
    engine = make_engine(packs, backend, verify, audit_dir)
    try:
        result = engine.evaluate(raw).to_dict()
    except FactsValidationError as exc:
        report_invalid(exc, "text", raw=raw)
    lines: list[str] = []
    if rule_id:
        lines = render_rule_state(result, rule_id, engine.label_of)
    else:
        finding = next((f for f in result["findings"] if f["id"] == finding_id), None)
        rules = [r for r in engine.rules if r.kind == "finding" and r.key == finding_id]
        if finding is not None:
            lines = [f"{finding['title']} [{finding_id}] - {finding['urgency'].upper()}", f"  {finding['detail']}"]
            for rid in finding["rules"]:
                lines += render_rule_state(result, rid, engine.label_of)
        elif rules:
            lines = [f"Finding {finding_id} did not fire."]
            for rule in rules:
                lines += render_rule_state(result, rule.id, engine.label_of)
        else:
            raise click.UsageError(f"no loaded rule concludes finding {finding_id!r}")
    click.echo("\n".join([*lines, "", result["disclaimer"]]))


@click.group("packs")
def packs_group() -> None:
    """Inspect the installed rule packs."""


@packs_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--packs", envvar="NEUROCDS_PACKS", help="Comma-separated allowlist of packs to load.")
def packs_list(fmt: str, packs: str | None) -> None:
    """List loaded packs with version, content hash, rule count and source."""
    engine = make_engine(packs, None, True, None)
    rows = []
    for pack in [*engine.packs, *engine.failed_packs]:
        count = sum(1 for r in engine.rules if r.pack == pack.name)
        rows.append(
            {
                **pack.info(),
                "rules": count,
                "depends_on": list(pack.record.depends_on),
                "source": pack.source,
                "description": pack.record.description,
            }
        )
    if fmt == "json":
        click.echo(json.dumps({"packs": rows, "engine": engine.engine_info()}, indent=2))
        return
    for row in rows:
        deps = f" (needs {', '.join(row['depends_on'])})" if row["depends_on"] else ""
        click.echo(
            f"{row['name']} {row['version']}  {row['status']}  {row['rules']} rules  sha256:{row['sha256'][:12]}{deps}"
        )
        click.echo(f"    {row['description']}")
        click.echo(f"    from {row['source']}")
        if row.get("error"):
            click.echo(f"    error: {row['error']}")
    info = engine.engine_info()
    click.echo(
        f"backend: {info['backend']}{' (verified by reference)' if info['verified'] else ''}"
        f"{'; ' + info['note'] if info.get('note') else ''}"
    )


def register(group: click.Group) -> None:
    for command in (evaluate_cmd, validate_cmd, explain_cmd, packs_group):
        group.add_command(command)
