"""Built-in FHIR -> facts mapping tables (data) for facts-v1.

Every ``*.yaml`` file in this folder is a mapping table validated against
``schemas/fhir-mapping.schema.json``. Nothing here is executed except the hook
below, which only lists the files. Found by core through the ``neurocds.fhir_maps``
entry-point group. May import: only ``neurocds.hookspecs``, like any pack.
"""

from __future__ import annotations

from pathlib import Path

from neurocds.hookspecs import hookimpl

HERE = Path(__file__).resolve().parent


@hookimpl
def neurocds_fhir_mappings() -> list[Path]:
    """The built-in tables, sorted so the load order (and any error) is stable."""
    return sorted(HERE.glob("*.yaml"))
