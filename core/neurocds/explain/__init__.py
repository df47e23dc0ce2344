"""Stage 4, explain: findings, their reasons, the why/why-not trace and their rendering as text.

Reads the node states the reference evaluation recorded; computes nothing the
evaluators did not decide.

May import: the base modules, ``neurocds.facts``, ``neurocds.rules`` and
``neurocds.backends``.
"""
