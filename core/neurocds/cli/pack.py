"""``neurocds pack new|lint|show|guide``, ``neurocds schema`` and ``neurocds dsi sheet``: the pack author's commands.

Exit codes: ``pack lint`` exits with its worst problem not ignored (``2`` error,
``1`` warning, ``0`` clean); every command exits ``2`` on a usage error (an
unknown pack, a folder that is not empty) with a one-line message.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from neurocds.authoring import lint as lint_mod
from neurocds.authoring import lint_report, sheet
from neurocds.authoring.metadata import PackNotFound, installed_packs, select
from neurocds.authoring.scaffold import ScaffoldError, scaffold
from neurocds.authoring.show import SCHEMAS, bundled_schema, describe_pack, show_text
from neurocds.errors import NeurocdsError
from neurocds.resources import load_schema
from neurocds.rules.packs import LoadedPack


def _installed() -> list[LoadedPack]:
    try:
        return installed_packs()
    except NeurocdsError as exc:
        raise click.UsageError(f"cannot read the installed packs: {exc}") from exc


@click.group("pack")
def pack_group() -> None:
    """Write, check and inspect rule packs (the pack author's kit)."""


@pack_group.command("new")
@click.argument("name")
@click.option("--namespace", required=True, help="Prefix of every id the pack concludes (e.g. 'b12').")
@click.option("--depends-on", "depends_on", multiple=True, help="A pack this one builds on (repeatable).")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="Target folder (default: ./NAME).")
@click.option("--developer", default="TODO: your name or organisation", help="pack.yaml developer name.")
@click.option("--contact", default="TODO: e-mail or issue tracker URL", help="pack.yaml developer contact.")
@click.option("--funding", default="none declared", help="pack.yaml funding source.")
def pack_new(
    name: str,
    namespace: str,
    depends_on: tuple[str, ...],
    directory: Path | None,
    developer: str,
    contact: str,
    funding: str,
) -> None:
    """Write a pip-installable pack distribution: plugin, example rule, pack.yaml, cases, tests, README."""
    target = directory or Path(name)
    try:
        files = scaffold(
            name, namespace, target, depends_on=depends_on, developer=developer, contact=contact, funding=funding
        )
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"wrote {len(files) + 1} files to {target}/")
    for path in files:
        click.echo(f"  {path.relative_to(target)}")
    shown = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"
    click.echo(f"next: pip install -e '{shown}[test]' && (cd {shown} && pytest)")


@pack_group.command("lint")
@click.argument("packs", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report here instead of stdout.")
@click.option("--show-ignored", is_flag=True, help="Text format: list hits ignored in pack.yaml, with the reason.")
def pack_lint(packs: tuple[str, ...], fmt: str, output: Path | None, show_ignored: bool) -> None:
    """Check installed packs (all when none is named); exit 2 on errors, 1 on warnings, 0 when clean."""
    installed = _installed()
    try:
        report = lint_mod.lint(select(installed, packs), installed)
    except PackNotFound as exc:
        raise click.UsageError(str(exc)) from exc
    root = Path.cwd()
    if fmt == "json":
        text = lint_report.to_json(report, root)
    elif fmt == "sarif":
        text = lint_report.to_sarif(report, root)
    else:
        text = lint_report.to_text(report, root, show_ignored=show_ignored)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        click.echo(report.summary(), err=True)
    else:
        click.echo(text, nl=False)
    raise SystemExit(report.exit_code)


@pack_group.command("show")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def pack_show(name: str, fmt: str) -> None:
    """The pack's rules, findings and urgencies, derived facts concluded and read, facts fields, dependencies."""
    installed = _installed()
    try:
        select(installed, [name])
    except PackNotFound as exc:
        raise click.UsageError(str(exc)) from exc
    view = describe_pack(installed, name)
    click.echo(json.dumps(view, indent=2, ensure_ascii=False) if fmt == "json" else show_text(view), nl=fmt == "json")


@pack_group.command("guide")
@click.option("--pack", "packs", multiple=True, help="List the derived facts of this pack only (repeatable).")
def pack_guide(packs: tuple[str, ...]) -> None:
    """Print the pack author's guide, generated from the schemas, hooks and the kit's tables.

    docs/pack-authoring.md is this output for the built-in packs.
    """
    from neurocds.authoring.guide import guide_markdown

    try:
        text = guide_markdown(packs)
    except PackNotFound as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(text, nl=False)


@click.command("schema")
@click.argument("kind", type=click.Choice(sorted(SCHEMAS)))
@click.option("--bundled", is_flag=True, help="One self-contained file: referenced schemas embedded under $defs.")
def schema_cmd(kind: str, bundled: bool) -> None:
    """Print a JSON schema neurocds reads or writes (validate with any 2020-12 validator)."""
    schema = bundled_schema(kind) if bundled else load_schema(SCHEMAS[kind])
    click.echo(json.dumps(schema, indent=2, ensure_ascii=False))


@click.group("dsi")
def dsi_group() -> None:
    """Decision support intervention (DSI) transparency: ONC HTI-1 source attributes."""


@dsi_group.command("sheet")
@click.option("--pack", "packs", multiple=True, help="Only this pack (repeatable; default: every installed pack).")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md", show_default=True)
def dsi_sheet(packs: tuple[str, ...], fmt: str) -> None:
    """The source-attribute sheet per pack and finding; the nine 'use of' answers are computed from the rules."""
    installed = _installed()
    try:
        names = [p.name for p in select(installed, packs)]
    except PackNotFound as exc:
        raise click.UsageError(str(exc)) from exc
    doc = sheet.build_sheet(installed, names)
    render = {"md": sheet.to_markdown, "json": sheet.to_json, "html": sheet.to_html}[fmt]
    click.echo(render(doc), nl=False)


def register(group: click.Group) -> None:
    for command in (pack_group, schema_cmd, dsi_group):
        group.add_command(command)
