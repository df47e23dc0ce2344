"""neurocds.cdshooks"""
