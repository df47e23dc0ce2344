"""neurocds: a plugin-based clinical decision-support rules engine.

Decision support for a clinician, never a diagnosis.

    >>> from neurocds import Engine
    >>> result = Engine().evaluate({"facts_version": "1", "patient": {"id": "p1"}})

The package is laid out as the pipeline it runs, each folder one stage (or one
capability) that imports only from itself and the layers below it
(``tests/test_layout.py`` holds this):

    base        errors, resources, hookspecs, version
    facts       strict JSON parsing, schema validation
    rules       rule files, conditions, compiler, plan, pack loading
    backends    durable_rules adapter, reference evaluator
    explain     findings, reasons, why/why-not trace, rendering
    audit, fhir the decision log; FHIR R4 input (siblings, independent)
    engine      engine, result, testing, this facade
    replay, cdshooks   capabilities on top of the engine
    cli         the command line
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurocds.errors import (
    FactsValidationError,
    NeurocdsError,
    PackLoadError,
    RuleEvaluationError,
)

if TYPE_CHECKING:
    from neurocds.version import __version__


def __getattr__(name: str) -> object:
    # Lazy: importing neurocds (e.g. for the hook markers, or the command line's --help)
    # must not load every pack, nor read the installed distribution's metadata.
    if name == "__version__":
        from neurocds.version import __version__

        return __version__
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
