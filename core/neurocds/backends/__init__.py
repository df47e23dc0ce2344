"""Stage 3, backends: the evaluators that decide compiled rules against validated facts.

``reference`` is the pure-Python Kleene (three-valued) evaluator that checks
and explains every answer; ``durable`` is the one adapter that talks to the
durable_rules C extension, and only ever hands it validated facts.

May import: the base modules, ``neurocds.facts`` and ``neurocds.rules``.
"""

from __future__ import annotations


def durable_available() -> tuple[bool, str]:
    """Whether the durable_rules extension loads here, and if not, why (for the caller to say)."""
    try:
        from neurocds.backends.durable import load_extension

        load_extension()
    except ImportError as exc:
        return False, f"durable_rules cannot be imported here ({exc})"
    return True, ""
