"""The built-in rule packs and FHIR mapping tables: plugins, registered exactly like third-party ones.

Each module here is one pack's plugin (a few lines: it names the pack and its
rule files under ``rulesets/``); ``fhir_maps`` lists the FHIR mapping tables.
Every clinical word lives in those data files, not in ``neurocds``.

May import: only the pack author's API of neurocds (``neurocds.hookspecs``,
``neurocds.resources``, ``neurocds.testing``), like any third-party pack.
"""

# Every built-in pack, by name: what this project's own tests pin (``Engine(packs=BUILTIN_PACKS)``),
# so that a third-party pack installed beside them cannot change their answers.
BUILTIN_PACKS = ("weakness-pattern", "spinal-compression", "neuromuscular", "cerebrovascular", "treatment-expectation")
