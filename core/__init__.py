"""neurocds: a plugin-based clinical decision-support rules engine.

Decision support for a clinician, never a diagnosis.

    >>> from neurocds import Engine
    >>> result = Engine().evaluate({"facts_version": "1", "patient": {"id": "p1"}})
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurocds")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+unknown"

from neurocds.errors import (
    FactsValidationError,
    NeurocdsError,
    PackLoadError,
    RuleEvaluationError,
)


def __getattr__(name: str) -> object:
    # Lazy: importing neurocds (e.g. for the hook markers) must not load every pack.
    if name == "Engine":
        from neurocds.engine import Engine

        return Engine
    if name == "Result":
        from neurocds.result import Result

        return Result
    raise AttributeError(name)


__all__ = [
    "Engine",
    "FactsValidationError",
    "NeurocdsError",
    "PackLoadError",
    "Result",
    "RuleEvaluationError",
    "__version__",
]
