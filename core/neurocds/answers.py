"""How one evaluation's answer is put together from the backends' runs.

durable_rules' run is checked against the reference run (the product's promise:
every default answer is verified), a disagreement or a durable failure is reported
loudly, and the why/why-not trace is built from the recorded node states only when
a consumer first asks. Split from :mod:`neurocds.engine`, whose :class:`Engine` uses it.

May import: base modules, facts, rules, backends, explain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from neurocds.backends.reference import Evaluation, Run
from neurocds.errors import FactsValidationError, PackFailure, RuleEvaluationError
from neurocds.explain.explainer import Explainer
from neurocds.facts.strictjson import ParseLimits, parse_strict
from neurocds.rules.packs import LoadedPack
from neurocds.rules.ruleset import Rule
from neurocds.version import __version__


def checked(
    durable: Run | RuleEvaluationError, ref_run: Run, rules: Sequence[Rule], verify: bool
) -> tuple[Run, list[dict[str, Any]]]:
    """The durable answer, verified against the reference one when ``verify`` is on."""
    if isinstance(durable, RuleEvaluationError):
        # Fail safe: report the reference answer, loudly incomplete.
        return ref_run, [e.to_dict() for e in ref_run.errors] + [durable.to_dict()]
    run = durable
    errors = [e.to_dict() for e in run.errors]
    if not verify:
        return run, errors
    only_durable = run.fired_set() - ref_run.fired_set()
    only_reference = ref_run.fired_set() - run.fired_set()
    if only_durable or only_reference or run.derived != ref_run.derived:

        def names(indices: set[int]) -> str:
            return ", ".join(sorted(rules[i].id for i in indices)) or "none"

        errors.append(
            RuleEvaluationError(
                f"backends disagree: only durable fired [{names(only_durable)}]; only reference fired "
                f"[{names(only_reference)}]",
                kind="disagreement",
            ).to_dict()
        )
        merged = Run(
            backend="durable+reference",
            fired=sorted(run.fired_set() | ref_run.fired_set()),
            derived={**ref_run.derived, **run.derived},
            details={**ref_run.details, **run.details},
        )
        return merged, errors
    return run, errors


def trace_builder(
    explainer: Explainer, run: Run, evaluation: Evaluation, trace: bool, provenance: Mapping[str, Any] | None
) -> Callable[[], dict[str, Any]]:
    """The why/why-not trace, built from this evaluation's recorded node states on demand."""

    copied = dict(provenance) if provenance else None  # as it was at evaluation time

    def build() -> dict[str, Any]:
        out = explainer.trace(run, evaluation) if trace else {"fired": [], "not_fired": [], "omitted": True}
        if copied:
            out["input_provenance"] = copied
        return out

    return build


def evidence(rule: Rule) -> list[dict[str, str]]:
    return [{"source": e.source, "citation": e.citation} for e in rule.evidence]


def parsed_or_none(facts: Mapping[str, Any] | str | bytes, limits: ParseLimits) -> Any:
    """The document a rejected input parses to, if any (the audit log derives a pseudonym from it)."""
    if isinstance(facts, Mapping):
        return facts
    try:
        return parse_strict(facts, limits)
    except FactsValidationError:
        return None


def engine_summary(backend: str, verified: bool, note: str) -> dict[str, Any]:
    """The ``engine`` member of every result: which engine answered, and how."""
    info: dict[str, Any] = {"name": "neurocds", "version": __version__, "backend": backend, "verified": verified}
    if note:
        info["note"] = note
    return info


def pack_reports(
    loaded: Sequence[LoadedPack], failed: Sequence[LoadedPack]
) -> tuple[list[PackFailure], list[dict[str, Any]], list[dict[str, Any]]]:
    """What every result repeats about the packs and nothing changes after loading, built once:
    the failures of the packs that did not load, and the loaded and failed packs' infos."""
    failures = [PackFailure(p.name, "load", p.error or "", kind=p.failure_kind) for p in failed]
    return failures, [p.info() for p in loaded], [p.info() for p in failed]
