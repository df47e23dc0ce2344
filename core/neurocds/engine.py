"""The engine: validated facts in, explained findings out.

One :class:`Engine` owns one plugin manager, its packs, its compiled rules and
its backends; nothing is module-global, so several engines with different packs
can live in one process.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurocds.backends.reference import ReferenceEvaluator, Run
from neurocds.errors import FactsValidationError, PackFailure, PackLoadError, PacksUnavailable, RuleEvaluationError
from neurocds.explain.explainer import Explainer
from neurocds.facts.strictjson import ParseLimits, parse_strict, sha256_canonical
from neurocds.facts.validation import FactsValidator
from neurocds.hookspecs import ComputedFacts
from neurocds.resources import load_schema
from neurocds.result import DISCLAIMER, Result, highest_urgency
from neurocds.rules.compiler import compile_rules, value_kind
from neurocds.rules.packs import (
    LoadedPack,
    call_impl,
    check_unique,
    content_hash,
    dependency_order,
    discover,
    find_impl,
    new_plugin_manager,
    parse_allowlist,
    register_plugin,
)
from neurocds.rules.ruleset import FactsIndex, Rule, RuleBuilder, read_rule_file
from neurocds.version import __version__

BACKENDS = ("durable", "reference")


def durable_available() -> tuple[bool, str]:
    try:
        from neurocds.backends.durable import load_extension

        load_extension()
    except ImportError as exc:
        return False, f"durable_rules cannot be imported here ({exc})"
    return True, ""


class Engine:
    """Evaluate facts documents against the loaded rule packs.

    :param packs: allowlist of pack names (``None``: the ``NEUROCDS_PACKS`` variable, or all).
    :param plugins: extra plugin objects or modules to register (tests, embedders), as
        ``(name, plugin)`` pairs or bare objects.
    :param entry_points: also load packs from the ``neurocds.packs`` entry points.
    :param backend: ``"durable"`` (default where it imports) or ``"reference"``.
    :param verify: run the reference evaluator too and flag any difference (durable only).
    :param on_pack_error: ``"raise"`` a :class:`PackLoadError` at load, or ``"skip"`` the
        pack and report it as failed in every result.
    :param audit_dir: append every decision to the tamper-evident log in this folder.
    """

    def __init__(
        self,
        *,
        packs: str | Sequence[str] | None = None,
        plugins: Sequence[Any] = (),
        entry_points: bool = True,
        backend: str | None = None,
        verify: bool = True,
        on_pack_error: str = "raise",
        audit_dir: str | Path | None = None,
        audit_options: Mapping[str, Any] | None = None,
        parse_limits: ParseLimits | None = None,
        firing_budget: int | None = None,
    ) -> None:
        self.pm = new_plugin_manager()
        self._limits = parse_limits or ParseLimits()
        self.allowlist = parse_allowlist(packs)
        self.failed_packs: list[LoadedPack] = []
        loaded = self._register(plugins, entry_points)
        self.packs: list[LoadedPack] = []
        self.rules: list[Rule] = []
        ok, reason = durable_available()
        if backend is None:
            backend = "durable" if ok else "reference"
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "durable" and not ok:
            raise PackLoadError(f"the durable backend is unavailable: {reason}")
        self._durable_caps = backend == "durable"  # the reference backend has no table limits
        self._load_rules(dependency_order(loaded, self.allowlist), on_pack_error)
        self.backend_name = backend
        self.backend_note = "" if ok else reason
        self.verify = verify and backend == "durable"
        self.compiled = compile_rules(self.rules, self._durable_caps)
        self.reference = ReferenceEvaluator(self.rules)
        self.durable = None
        if backend == "durable":
            from neurocds.backends.durable import DurableBackend

            self.durable = DurableBackend(self.compiled, firing_budget=firing_budget)
        self.explainer = Explainer(self.rules, self._labels.get, self.reference.plan)
        self._compute_calls = _compute_calls(self.pm, self.packs)
        self._detail_impls = {p.name: find_impl(self.pm, "neurocds_finding_detail", p.plugin) for p in self.packs}
        self._audit = self._open_audit(audit_dir, audit_options)

    # ----------------------------------------------------------------- loading
    def _register(self, plugins: Sequence[Any], use_entry_points: bool) -> list[LoadedPack]:
        candidates: list[tuple[str, str, Any]] = discover(self.allowlist) if use_entry_points else []
        for item in plugins:
            name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
            candidates.append((name, f"plugin object {name}", plugin))
        loaded: list[LoadedPack] = []
        for name, source, plugin in candidates:
            loaded.extend(register_plugin(self.pm, name, plugin, source))
        if self.allowlist is not None:
            loaded = [p for p in loaded if p.name in self.allowlist]
            missing = self.allowlist - {p.name for p in loaded}
            if missing:
                raise PacksUnavailable(
                    f"allowlisted pack(s) not installed: {', '.join(sorted(missing))}", unavailable=frozenset(missing)
                )
        check_unique(loaded)
        return loaded

    def _load_rules(self, ordered: list[LoadedPack], on_pack_error: str) -> None:
        base = load_schema("facts.schema.json")
        extensions = {p.name: dict(p.record.facts_schema) for p in ordered if p.record.facts_schema}
        self.validator = FactsValidator(base, extensions, self._limits)
        self.facts_schema = self.validator.schema
        builder = RuleBuilder(FactsIndex(self.facts_schema))
        self._labels = _labels(self.facts_schema)
        rule_source: dict[str, str] = {}
        namespace_owner: dict[str, str] = {}
        failed: set[str] = set()
        for pack in ordered:
            try:
                blocked = [d for d in pack.record.depends_on if d in failed]
                if blocked:
                    raise PackLoadError(f"depends on failed pack(s) {', '.join(blocked)}", pack=pack.name)
                pack.sha256 = content_hash(pack)
                rules: list[Rule] = []
                for path in pack.rule_files:
                    doc = read_rule_file(path, pack.name)
                    owner = namespace_owner.setdefault(doc["namespace"], pack.name)
                    if owner != pack.name:
                        raise PackLoadError(
                            f"namespace {doc['namespace']!r} is already owned by pack {owner!r}",
                            pack=pack.name,
                            file=str(path),
                            pointer="/namespace",
                        )
                    rules.extend(builder.build(doc, str(path)))
                for rule in rules:
                    if rule.id in rule_source:
                        raise PackLoadError(
                            f"duplicate rule id {rule.id!r}: in {rule_source[rule.id]} and in "
                            f"{rule.file}{rule.pointer}",
                            pack=pack.name,
                            file=rule.file,
                        )
                    rule_source[rule.id] = f"{rule.file}{rule.pointer}"
                # Compile this pack's rules alone first, so a bad rule is blamed on its own pack.
                compile_rules([*self.rules, *rules], self._durable_caps)
            except PackLoadError as exc:
                if on_pack_error != "skip":
                    raise
                pack.status, pack.error = "failed", str(exc)
                pack.failure_kind = "pack_skipped" if blocked else "pack_load"
                failed.add(pack.name)
                self.failed_packs.append(pack)
                continue
            self.packs.append(pack)
            self.rules.extend(rules)

    def _open_audit(self, audit_dir: str | Path | None, options: Mapping[str, Any] | None) -> Any:
        if audit_dir is None:
            return None
        from neurocds.audit import AuditLog

        return AuditLog.from_options(Path(audit_dir), options, facts_schema=self.facts_schema)

    # --------------------------------------------------------------- queries
    @property
    def audit_log(self) -> Any:
        """The tamper-evident log this engine records decisions in (``None`` without ``audit_dir``)."""
        return self._audit

    def pack_infos(self) -> list[dict[str, Any]]:
        return [p.info() for p in [*self.packs, *self.failed_packs]]

    def label_of(self, pointer: str) -> str | None:
        return self._labels.get(pointer)

    def engine_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": "neurocds",
            "version": __version__,
            "backend": self.backend_name,
            "verified": self.verify,
        }
        if self.backend_note:
            info["note"] = self.backend_note
        return info

    def validate(self, facts: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
        """Strictly parse and validate; raises :class:`FactsValidationError` with every violation."""
        return self.validator.parse_and_validate(facts)

    # ------------------------------------------------------------ evaluation
    def evaluate(
        self,
        facts: Mapping[str, Any] | str | bytes,
        *,
        trace: bool = True,
        provenance: Mapping[str, Any] | None = None,
    ) -> Result:
        """Validate and evaluate one facts document.

        :param trace: include the why-not trace of every rule that did not fire.
        :param provenance: where each fact came from (e.g. FHIR resources); copied into the trace.
        :raises FactsValidationError: the document is invalid (nothing is evaluated).
        """
        try:
            doc = self.validate(facts)
        except FactsValidationError as exc:
            if self._audit is not None:
                # The rejection is recorded without values; the parsed document (if any) only
                # lets the log derive the patient pseudonym.
                self._audit.record_rejection(
                    exc,
                    facts=_parsed_or_none(facts, self._limits),
                    engine=self.engine_info(),
                    packs=self.pack_infos(),
                )
            raise
        failures = [PackFailure(p.name, "load", p.error or "", kind=p.failure_kind) for p in self.failed_packs]
        computed, computed_because = self._compute(doc, failures)
        # A pack whose compute hook raised does not run (hookspecs promise); the others do.
        disabled = frozenset(f.pack for f in failures if f.stage == "compute_facts")
        on_fire = self._on_fire(doc)
        # The durable session goes first: creating it zeroes most of a core's L2 cache, so the
        # reference evaluation's states, which every explanation below reads, are made after it.
        durable = self._durable_session(doc, computed, on_fire, disabled)
        ref_run, evaluation = self.reference.run(doc, computed, on_fire, disabled)
        run, errors = ref_run, [e.to_dict() for e in ref_run.errors]
        if durable is not None:
            run, errors = self._checked(durable, ref_run)
        findings = self.explainer.findings(run, evaluation, _evidence)
        fired_urgency = {f["id"]: f["urgency"] for f in findings}
        failed_names = {f.pack for f in failures} | {e["pack"] for e in errors if e.get("pack")}  # rule errors too
        packs = [dict(p.info(), status="failed" if p.name in failed_names else p.status) for p in self.packs]
        packs += [p.info() for p in self.failed_packs]
        data: dict[str, Any] = {
            "result_version": "1",
            "evaluation_id": str(uuid.uuid4()),
            "evaluated_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "facts_sha256": sha256_canonical(doc),
            "highest_urgency": highest_urgency(findings),
            "complete": not failures and not errors,
            "findings": findings,
            "derived": self.explainer.derived(run, evaluation, computed, computed_because),
            "missing_data": None,  # built on demand, like the trace
            "packs": packs,
            "errors": [f.to_dict() for f in failures] + errors,
            "engine": self.engine_info(),
            "trace": None,  # built by _trace_builder when a consumer first asks (Result.to_dict)
            "disclaimer": DISCLAIMER,
        }
        result = Result(
            data,
            {
                "missing_data": lambda: self.explainer.missing_data(run, evaluation, fired_urgency),
                "trace": self._trace_builder(run, evaluation, trace, provenance),
            },
        )
        if self._audit is not None:
            self._audit.record_decision(result.to_dict(), doc)
        return result

    def _trace_builder(
        self, run: Run, evaluation: Any, trace: bool, provenance: Mapping[str, Any] | None
    ) -> Callable[[], dict[str, Any]]:
        """The why/why-not trace, built from this evaluation's recorded node states on demand."""

        copied = dict(provenance) if provenance else None  # as it was at evaluation time

        def build() -> dict[str, Any]:
            out = self.explainer.trace(run, evaluation) if trace else {"fired": [], "not_fired": [], "omitted": True}
            if copied:
                out["input_provenance"] = copied
            return out

        return build

    def _durable_session(
        self, doc: Mapping[str, Any], computed: Mapping[str, Any], on_fire: Any, disabled: frozenset[str]
    ) -> Run | RuleEvaluationError | None:
        """The durable backend's answer, or the error that stopped it (``None`` without that backend)."""
        if self.durable is None:
            return None
        try:
            return self.durable.run(doc, computed, on_fire, disabled)
        except RuleEvaluationError as exc:
            return exc

    def _checked(self, durable: Run | RuleEvaluationError, ref_run: Run) -> tuple[Run, list[dict[str, Any]]]:
        """The durable answer, verified against the reference one when ``verify`` is on."""
        if isinstance(durable, RuleEvaluationError):
            # Fail safe: report the reference answer, loudly incomplete.
            return ref_run, [e.to_dict() for e in ref_run.errors] + [durable.to_dict()]
        run = durable
        errors = [e.to_dict() for e in run.errors]
        if not self.verify:
            return run, errors
        only_durable = run.fired_set() - ref_run.fired_set()
        only_reference = ref_run.fired_set() - run.fired_set()
        if only_durable or only_reference or run.derived != ref_run.derived:

            def names(indices: set[int]) -> str:
                return ", ".join(sorted(self.rules[i].id for i in indices)) or "none"

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

    def _compute(self, doc: Mapping[str, Any], failures: list[PackFailure]) -> tuple[dict[str, Any], dict[str, Any]]:
        computed: dict[str, Any] = {}
        because: dict[str, tuple[str, list[str]]] = {}
        if not self._compute_calls:
            return computed, because
        # A hook must not be able to change what other packs see; a JSON round trip copies at C speed.
        frozen = json.loads(json.dumps(doc))
        for pack, impl, own_packs in self._compute_calls:
            try:
                out = call_impl(impl, facts=frozen)
                if out is None:
                    continue
                if not isinstance(out, ComputedFacts) or out.pack not in own_packs:
                    raise TypeError("neurocds_compute_facts must return ComputedFacts for one of its own packs")
                for name, value in sorted(out.values.items()):
                    if not isinstance(value, str | int | float | bool) or (
                        isinstance(value, float) and not math.isfinite(value)
                    ):
                        raise TypeError(f"computed fact {name!r} must be a finite JSON scalar")
                    used_as = self.compiled.derived_kinds.get(name)
                    if used_as is not None and value_kind(value) != used_as:
                        raise TypeError(f"computed fact {name!r} is a {value_kind(value)}; rules use it as a {used_as}")
                    computed[name] = value
                    because[name] = (out.pack, list(out.because.get(name, ())))
            except Exception as exc:
                failures.append(PackFailure(pack.name, "compute_facts", f"{type(exc).__name__}: {exc}"))
        return computed, because

    def _on_fire(self, doc: Mapping[str, Any]) -> Any:
        def on_fire(rule: Rule, derived: Mapping[str, Any]) -> str | None:
            impl = self._detail_impls.get(rule.pack)
            if impl is None:
                return None
            detail: str | None = call_impl(impl, finding_id=rule.key, rule_id=rule.id, facts=doc, derived=dict(derived))
            return detail

        return on_fire


def _compute_calls(pm: Any, packs: Sequence[LoadedPack]) -> list[tuple[LoadedPack, Any, frozenset[str]]]:
    """Each plugin's compute hook once (a plugin may register several packs), with the packs it owns."""
    calls: list[tuple[LoadedPack, Any, frozenset[str]]] = []
    seen: set[int] = set()
    for pack in packs:
        impl = find_impl(pm, "neurocds_compute_facts", pack.plugin)
        if impl is None or id(pack.plugin) in seen:
            continue
        seen.add(id(pack.plugin))
        calls.append((pack, impl, frozenset(p.name for p in packs if p.plugin is pack.plugin)))
    return calls


def _evidence(rule: Rule) -> list[dict[str, str]]:
    return [{"source": e.source, "citation": e.citation} for e in rule.evidence]


def _parsed_or_none(facts: Mapping[str, Any] | str | bytes, limits: ParseLimits) -> Any:
    if isinstance(facts, Mapping):
        return facts
    try:
        return parse_strict(facts, limits)
    except FactsValidationError:
        return None


def _labels(schema: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, sub in schema.get("properties", {}).items():
        pointer = f"{prefix}/{name}"
        # The schema's short title names a fact for people; the description is the fallback.
        label = sub.get("title") or sub.get("description")
        if label:
            out[pointer] = label
        out.update(_labels(sub, pointer))
    return out
