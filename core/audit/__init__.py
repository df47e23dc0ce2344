"""neurocds.audit"""
