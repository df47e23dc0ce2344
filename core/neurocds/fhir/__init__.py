"""neurocds.fhir: FHIR R4 Bundles and CDS Hooks prefetch -> a facts document.

Generic machinery only. Which code means which fact, canonical units and their
conversions, medication classes and the layout of the output document are all
data: mapping tables validated against ``schemas/fhir-mapping.schema.json``
(built-in ones in ``neurocds_packs.fhir_maps``; plugins add more through the
``neurocds_fhir_mappings`` hook). The status and recency policy is documented
in :mod:`neurocds.fhir.policy`.

A capability beside the audit stage (it turns FHIR into facts, which the
engine then evaluates). May import: the base modules and the stages below it
(``neurocds.facts``, ``neurocds.rules``, ``neurocds.backends``,
``neurocds.explain``); not ``neurocds.audit``, its sibling, nor anything
above. It finds the built-in tables through the ``neurocds.fhir_maps`` entry
points, never by importing ``neurocds_packs``.

Example::

    from datetime import datetime, UTC
    from neurocds.fhir import FhirConverter

    result = FhirConverter(now=datetime(2020, 1, 1, tzinfo=UTC)).convert_bundle(bundle)
    result.facts, result.provenance, result.warnings
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurocds.fhir.bundle import FhirInputError
    from neurocds.fhir.convert import FhirConversion, FhirConverter
    from neurocds.fhir.dates import latest_time
    from neurocds.fhir.mapping import MappingTableError, MappingTables, load_mapping_tables
    from neurocds.fhir.policy import DEFAULT_CONDITION_POLICY, ConditionPolicy
    from neurocds.fhir.sources import MappingSourceFailure, default_mapping_paths, engine_mapping_paths

# Public name -> the module defining it. Imported on first use: a command that reads no
# FHIR (``neurocds evaluate FILE``) does not pay for the converter and its tables.
_HOME = {
    "DEFAULT_CONDITION_POLICY": "policy",
    "ConditionPolicy": "policy",
    "FhirConversion": "convert",
    "FhirConverter": "convert",
    "FhirInputError": "bundle",
    "MappingTableError": "mapping",
    "MappingTables": "mapping",
    "MappingSourceFailure": "sources",
    "default_mapping_paths": "sources",
    "engine_mapping_paths": "sources",
    "latest_time": "dates",
    "load_mapping_tables": "mapping",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


__all__ = [
    "DEFAULT_CONDITION_POLICY",
    "ConditionPolicy",
    "FhirConversion",
    "FhirConverter",
    "FhirInputError",
    "MappingSourceFailure",
    "MappingTableError",
    "MappingTables",
    "default_mapping_paths",
    "engine_mapping_paths",
    "latest_time",
    "load_mapping_tables",
]
