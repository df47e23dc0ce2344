"""neurocds"""
