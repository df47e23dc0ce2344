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

from neurocds.fhir.bundle import FhirInputError
from neurocds.fhir.convert import FhirConversion, FhirConverter
from neurocds.fhir.dates import latest_time
from neurocds.fhir.mapping import (
    MappingTableError,
    MappingTables,
    default_mapping_paths,
    engine_mapping_paths,
    load_mapping_tables,
)
from neurocds.fhir.policy import DEFAULT_CONDITION_POLICY, ConditionPolicy

__all__ = [
    "DEFAULT_CONDITION_POLICY",
    "ConditionPolicy",
    "FhirConversion",
    "FhirConverter",
    "FhirInputError",
    "MappingTableError",
    "MappingTables",
    "default_mapping_paths",
    "engine_mapping_paths",
    "latest_time",
    "load_mapping_tables",
]
