"""FHIR mapping tables (data) for facts-v1."""
