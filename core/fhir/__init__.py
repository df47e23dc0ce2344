"""neurocds.fhir"""
