"""The ``neurocds`` command line: one click group, subcommands in sibling modules.

The top of the import layers: it may import anything in neurocds; nothing in
neurocds imports it (``neurocds.__main__`` only calls it).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# Each entry is a module in this package exposing ``register(group)``. A module
# that is missing is skipped so partial installs still give a working CLI.
_SUBCOMMAND_MODULES = ("evaluate", "fhir", "audit", "serve", "pack", "population")


class _Main(click.Group):
    """The top group: an audit-log failure no command handled exits 4 with its reason."""

    def invoke(self, ctx: click.Context) -> Any:
        from neurocds.audit.errors import AuditError

        try:
            return super().invoke(ctx)
        except AuditError as exc:
            from neurocds.cli.auditing import audit_failed

            audit_failed(exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurocds")
def main() -> None:
    """neurocds: clinical decision support for leg weakness.

    Decision support for a clinician, never a diagnosis.
    """


for _name in _SUBCOMMAND_MODULES:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # only our own missing module is tolerated
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(main)
