"""Stage 1, facts: strict JSON parsing and JSON Schema validation of a facts document.

Turns untrusted bytes, text or dicts into a validated facts document, or a
``FactsValidationError`` naming every problem by its JSON pointer.

May import: the base modules (``neurocds.errors``, ``neurocds.resources``,
``neurocds.hookspecs``, ``neurocds.version``). Nothing else in neurocds.
"""
