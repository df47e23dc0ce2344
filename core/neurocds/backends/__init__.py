"""Stage 3, backends: the evaluators that decide compiled rules against validated facts.

``reference`` is the pure-Python Kleene (three-valued) evaluator that checks
and explains every answer; ``durable`` is the one adapter that talks to the
durable_rules C extension, and only ever hands it validated facts.

May import: the base modules, ``neurocds.facts`` and ``neurocds.rules``.
"""
