"""The ``neurocds`` command line: one click group, subcommands in sibling modules.

The top of the import layers: it may import anything in neurocds; nothing in
neurocds imports it (``neurocds.__main__`` only calls it).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# Every command: the module of this package that defines it (its ``register(group)`` adds
# it), and the one-line summary ``neurocds --help`` lists. A command's module is imported
# only when that command runs (or shows its own help), so ``neurocds evaluate`` never loads
# the CDS Hooks service, the population runner or the pack kit, and ``--help`` loads none.
# tests/test_cli_startup.py keeps this table equal to the commands' own docstrings.
COMMANDS: dict[str, tuple[str, str]] = {
    "audit": ("audit", "Inspect and verify the tamper-evident audit log."),
    "dsi": ("pack", "Decision support intervention (DSI) transparency: ONC HTI-1 source attributes."),
    "evaluate": ("evaluate", "Evaluate a facts document (FILE, or - for stdin); most urgent findings first."),
    "explain": ("evaluate", "Show the why-tree of a finding or a rule, back to the input facts."),
    "fhir-to-facts": (
        "fhir",
        "Convert a FHIR R4 Bundle (or CDS Hooks request / single resource) to facts-v1 JSON.",
    ),
    "pack": ("pack", "Write, check and inspect rule packs (the pack author's kit)."),
    "packs": ("evaluate", "Inspect the installed rule packs."),
    "population": ("population", "Evaluate whole patient populations (local cores by default, or a Dask cluster)."),
    "schema": ("pack", "Print a JSON schema neurocds reads or writes (validate with any 2020-12 validator)."),
    "serve": ("serve", "Run the CDS Hooks 2.0 service (discovery at BASE_URL/cds-services)."),
    "validate": ("evaluate", "Check a facts document against the facts schema (every problem at once)."),
}


class _Main(click.Group):
    """The top group: loads each command's module on demand; an audit-log failure no command
    handled exits 4 with its reason."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = f"{__name__}.{COMMANDS[cmd_name][0]}"
            try:
                importlib.import_module(module).register(self)
            except ModuleNotFoundError as exc:  # a partial install: only our own missing module is tolerated
                if exc.name != module:
                    raise
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click lists them, from the table: listing must not import every command.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            # Not loaded: a stand-in with the table's summary, shortened as click shortens.
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from neurocds.cli.auditing import audit_error, audit_failed

        try:
            return super().invoke(ctx)
        except audit_error() as exc:
            audit_failed(exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurocds")
def main() -> None:
    """neurocds: clinical decision support for leg weakness.

    Decision support for a clinician, never a diagnosis.
    """
