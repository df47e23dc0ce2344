"""Stage 2, rules: rule files, condition trees, the compiler, the evaluation plan and pack loading.

Reads rule files (data validated by ``schemas/ruleset.schema.json``, never
``eval``-ed), compiles conditions into a safe subset, and loads packs through
the pluggy hooks of :mod:`neurocds.hookspecs`.

May import: the base modules and ``neurocds.facts``.
"""
