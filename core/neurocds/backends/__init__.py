"""Stage 3, backends: the evaluators that decide compiled rules against validated facts.

``reference`` is the pure-Python Kleene (three-valued) evaluator that checks
and explains every answer; ``durable`` is the one adapter that talks to the
durable_rules C extension, and only ever hands it validated facts.

May import: the base modules, ``neurocds.facts`` and ``neurocds.rules``.
"""

from __future__ import annotations

from neurocds.errors import PackLoadError


def durable_available() -> tuple[bool, str]:
    """Whether the durable_rules extension loads here, and if not, why (for the caller to say)."""
    try:
        from neurocds.backends.durable import load_extension

        load_extension()
    except ImportError as exc:
        return False, f"durable_rules cannot be imported here ({exc})"
    return True, ""


#: The backends an Engine can evaluate with.
BACKENDS = ("durable", "reference")


def choose_backend(asked: str | None) -> tuple[str, str]:
    """The backend to use for ``asked`` (``None``: durable where it loads, else reference) and,
    when durable_rules does not load here, why (said in every result's ``engine.note``).

    :raises ValueError: ``asked`` is not one of :data:`BACKENDS`.
    :raises PackLoadError: ``durable`` was asked for and does not load here.
    """
    ok, reason = durable_available()
    backend = asked if asked is not None else ("durable" if ok else "reference")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "durable" and not ok:
        raise PackLoadError(f"the durable backend is unavailable: {reason}")
    return backend, reason
