"""The engine: validated facts in, explained findings out.

One :class:`Engine` owns one plugin manager, its packs, its compiled rules and
its backends; nothing is module-global, so several engines with different packs
can live in one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from neurocds.answers import checked, engine_summary, evidence, pack_reports, parsed_or_none, trace_builder
from neurocds.backends import BACKENDS, choose_backend, durable_available
from neurocds.backends.reference import Evaluation, ReferenceEvaluator, Run, concluders_of, dependency_order
from neurocds.errors import FactsValidationError, PackFailure, PackLoadError, PacksUnavailable, RuleEvaluationError
from neurocds.explain.explainer import Explainer
from neurocds.facts.strictjson import ParseLimits, sha256_canonical
from neurocds.factschema import compose_validator
from neurocds.result import DISCLAIMER, EvaluationClock, Result, new_evaluation_id
from neurocds.rules import packs as packs_mod
from neurocds.rules.cache import LoadCache
from neurocds.rules.compiler import compile_cached, compile_rules
from neurocds.rules.hooks import DEFAULT_HOOK_BUDGET_S, LOAD_BUDGET_S, WALL_LIMIT_FACTOR, Budget, HookRunner
from neurocds.rules.packhooks import FrozenFacts, PackHooks
from neurocds.rules.packs import LoadedPack, discover, find_impl, parse_allowlist
from neurocds.rules.references import check_detailed_findings, check_references, concluded_key
from neurocds.rules.ruleset import FactsIndex, Rule, RuleBuilder, schema_labels

PACK_ERROR_POLICIES = ("auto", "raise", "skip")
__all__ = ["BACKENDS", "Engine", "durable_available"]


class Engine:
    """Evaluate facts documents against the loaded rule packs.

    :param packs: allowlist of pack names (``None``: the ``NEUROCDS_PACKS`` variable, or all).
    :param plugins: extra plugin objects or modules to register (tests, embedders), as
        ``(name, plugin)`` pairs or bare objects.
    :param entry_points: also load packs from the ``neurocds.packs`` entry points.
    :param backend: ``"durable"`` (default where it imports) or ``"reference"``.
    :param verify: run the reference evaluator too and flag any difference (durable only).
    :param on_pack_error: what a pack that cannot load does: ``"raise"`` a :class:`PackLoadError`
        at load; ``"skip"`` it and report it as failed in every result (``complete: false``);
        ``"auto"`` (default): raise for a pack asked for by name (the allowlist, or ``plugins``),
        skip one that is merely installed, so one broken third-party pack never silences the rest.
    :param hook_budget: seconds of CPU time each pack's hooks may take per evaluation (all
        its calls together, counted on the pack's own worker thread, so time spent waiting
        for a CPU or the GIL on a busy machine is not the pack's); an overrun is that pack's
        failure and the evaluation returns without it.
    :param load_budget: seconds of CPU time a pack's import and registration may take at load.
    :param hook_wall_factor: pack code that blocks (sleeps, waits) spends no CPU time: it is
        stopped after this many times its budget of wall-clock time (default 5: 1 s per
        evaluation for the default ``hook_budget``, 50 s at load).
    :param audit_dir: append every decision to the tamper-evident log in this folder.
    :param cache: keep what loading checked (rule files, schema, compile) in the per-user
        cache (``True``: where ``NEUROCDS_CACHE_DIR`` / ``XDG_CACHE_HOME`` say,
        ``NEUROCDS_CACHE=0`` turns it off), in this folder, or not at all (``False``);
        see :mod:`neurocds.rules.cache`.
    """

    @packs_mod.collector_paused
    def __init__(
        self,
        *,
        packs: str | Sequence[str] | None = None,
        plugins: Sequence[Any] = (),
        entry_points: bool = True,
        backend: str | None = None,
        verify: bool = True,
        on_pack_error: str = "auto",
        audit_dir: str | Path | None = None,
        audit_options: Mapping[str, Any] | None = None,
        parse_limits: ParseLimits | None = None,
        firing_budget: int | None = None,
        hook_budget: float = DEFAULT_HOOK_BUDGET_S,
        load_budget: float = LOAD_BUDGET_S,
        hook_wall_factor: float = WALL_LIMIT_FACTOR,
        cache: bool | str | Path = True,
    ) -> None:
        if on_pack_error not in PACK_ERROR_POLICIES:
            raise ValueError(f"on_pack_error must be one of {', '.join(PACK_ERROR_POLICIES)}, not {on_pack_error!r}")
        self.pm = packs_mod.new_plugin_manager()
        self._runner = HookRunner(hook_budget, load_budget, hook_wall_factor)
        self._limits = parse_limits or ParseLimits()
        self.allowlist = parse_allowlist(packs)
        self._policy = on_pack_error
        self._explicit: set[str] = set()  # packs from ``plugins``: asked for by the caller
        self.failed_packs: list[LoadedPack] = []
        loaded = self._register(plugins, entry_points)
        self.packs: list[LoadedPack] = []
        self.rules: list[Rule] = []
        backend, reason = choose_backend(backend)
        self._durable_caps = backend == "durable"  # the reference backend has no table limits
        self.load_cache = LoadCache.from_setting(cache)
        self._load_rules(*packs_mod.dependency_order(loaded, self.allowlist))
        self.backend_name = backend
        self.backend_note = reason
        self.verify = verify and backend == "durable"
        # No cap check here: _load_rules checked these very rules (the last pack's prefix).
        self.compiled = compile_cached(self.rules, *self._compiled_key)
        self.reference = ReferenceEvaluator(self.rules)
        self.durable = None
        if backend == "durable":
            from neurocds.backends.durable import DurableBackend

            self.durable = DurableBackend(self.compiled, firing_budget=firing_budget)
        self.explainer = Explainer(self.rules, self._labels.get, self.reference.plan)
        self._hooks = PackHooks(self.pm, self.packs, self._runner, self.rules)
        self._audit = self._open_audit(audit_dir, audit_options)
        # What every result repeats and nothing changes after loading: built once, copied per result.
        self._load_failures, self._loaded_infos, self._failed_infos = pack_reports(self.packs, self.failed_packs)
        self._engine_info = engine_summary(self.backend_name, self.verify, self.backend_note)
        self._clock = EvaluationClock()

    # ----------------------------------------------------------------- loading
    def _register(self, plugins: Sequence[Any], use_entry_points: bool) -> list[LoadedPack]:
        candidates: list[tuple[str, str, Any, bool]] = [
            (name, source, ep, True) for name, source, ep in (discover(self.allowlist) if use_entry_points else [])
        ]
        for item in plugins:
            name, plugin = item if isinstance(item, tuple) else (getattr(item, "__name__", repr(item)), item)
            candidates.append((name, f"plugin object {name}", plugin, False))
        loaded: list[LoadedPack] = []
        for name, source, plugin, from_entry_point in candidates:
            try:
                obj = packs_mod.import_plugin(self._runner, name, source, plugin) if from_entry_point else plugin
                registered = packs_mod.register_plugin(self.pm, name, obj, source, self._runner)
            except PackLoadError as exc:
                self._fail(packs_mod.failed_plugin(name, source, exc), exc, explicit=not from_entry_point)
                continue
            if not from_entry_point:
                self._explicit.update(p.name for p in registered)
            loaded.extend(registered)
        if self.allowlist is not None:
            loaded = [p for p in loaded if p.name in self.allowlist]
            missing = self.allowlist - {p.name for p in [*loaded, *self.failed_packs]}
            if missing:
                raise PacksUnavailable(
                    f"allowlisted pack(s) not installed: {', '.join(sorted(missing))}", unavailable=frozenset(missing)
                )
        packs_mod.check_unique(loaded)
        return loaded

    def _fail(self, pack: LoadedPack, exc: PackLoadError, *, explicit: bool = False, kind: str = "pack_load") -> None:
        """Raise, or record ``pack`` as failed, as the ``on_pack_error`` policy says."""
        asked_for = explicit or self.allowlist is not None or pack.name in self._explicit
        if self._policy == "raise" or (self._policy == "auto" and asked_for):
            raise exc
        pack.status, pack.error, pack.failure_kind = "failed", str(exc), kind
        self.failed_packs.append(pack)

    def _load_rules(self, ordered: list[LoadedPack], problems: Mapping[str, PackLoadError]) -> None:
        self.validator, checked_key, cache, problems = compose_validator(
            ordered, problems, self._limits, self.load_cache
        )
        self.facts_schema = self.validator.schema
        builder = RuleBuilder(FactsIndex(self.facts_schema))
        self._labels = schema_labels(self.facts_schema)
        rule_source: dict[str, str] = {}
        namespace_owner: dict[str, str] = {}
        failed: set[str] = set()
        concluded: set[tuple[str, str, Any]] = set()
        computing: list[str] = []  # namespaces of loaded packs with a compute hook
        for pack in ordered:
            blocked: list[str] = []
            try:
                if pack.name in problems:
                    raise problems[pack.name]
                blocked = [d for d in pack.record.depends_on if d in failed]
                if blocked:
                    raise PackLoadError(f"depends on failed pack(s) {', '.join(blocked)}", pack=pack.name)
                docs = packs_mod.read_pack(pack, self.load_cache)  # one read per file; sets pack.sha256
                rules: list[Rule] = []
                del builder.references[:]
                for path, doc in zip(pack.rule_files, docs, strict=True):
                    pack.namespaces.append(doc["namespace"])
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
                with_pack = [*self.rules, *rules]
                own_computing = pack.namespaces if find_impl(self.pm, "neurocds_compute_facts", pack.plugin) else []
                # Compile and order with this pack's rules added, so a bad rule or a rule cycle
                # is blamed on the pack that brings it. Both verdicts depend only on these rules,
                # so both are skipped for packs that, by content hash and in this order, passed before.
                checks = LoadCache.key(
                    b"compiles and orders", checked_key.encode(), repr(self._durable_caps).encode(),
                    *(p.sha256.encode() for p in [*self.packs, pack]),
                )  # fmt: skip
                checked_before = cache.get("compile-checks", checks) is not None
                if not checked_before:
                    compile_rules(with_pack, self._durable_caps)
                check_detailed_findings(pack.name, pack.record.detailed_findings, rules)
                check_references(
                    pack.name,
                    builder.references,
                    concluded | {concluded_key(r) for r in rules},
                    [*computing, *own_computing],
                )
                if not checked_before:
                    try:
                        dependency_order(with_pack, concluders_of(with_pack))
                    except PackLoadError as exc:
                        raise PackLoadError(str(exc).split(" (pack ")[0], pack=pack.name, file=rules[0].file) from None
                    cache.put("compile-checks", checks, {"compiled": True, "ordered": True})
            except PackLoadError as exc:
                self._fail(pack, exc, kind="pack_skipped" if blocked else "pack_load")
                failed.add(pack.name)
                continue
            self.packs.append(pack)
            self.rules.extend(rules)
            concluded.update(concluded_key(r) for r in rules)
            computing.extend(own_computing)
        # The loaded packs' rules are built from their content (hashes, in order) and the schema.
        packs_key = LoadCache.key(b"compiled", checked_key.encode(), *(p.sha256.encode() for p in self.packs))
        self._compiled_key = (cache, packs_key)

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

    @property
    def hook_runner(self) -> HookRunner:
        """What calls this engine's pack code (budgets, failure isolation); the FHIR tables use it too."""
        return self._runner

    def pack_infos(self) -> list[dict[str, Any]]:
        return [dict(info) for info in [*self._loaded_infos, *self._failed_infos]]

    def label_of(self, pointer: str) -> str | None:
        return self._labels.get(pointer)

    def engine_info(self) -> dict[str, Any]:
        return dict(self._engine_info)

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
            doc = self.validator.document_to_evaluate(facts)  # a ValidatedFacts: not copied
        except FactsValidationError as exc:
            if self._audit is not None:
                # The rejection is recorded without values; the parsed document (if any) only
                # lets the log derive the patient pseudonym.
                self._audit.record_rejection(
                    exc,
                    facts=parsed_or_none(facts, self._limits),
                    engine=self.engine_info(),
                    packs=self.pack_infos(),
                )
            raise
        facts_sha256 = sha256_canonical(doc)  # of the document as received, before any pack code
        failures = list(self._load_failures)  # hooks append theirs
        budget, frozen = self._hooks.budget(), FrozenFacts(doc)
        computed, computed_because, disabled = self._computed_facts(frozen, budget, failures)
        # The durable session goes first, so the reference evaluation's states, which every
        # explanation reads, are the most recent in the cache.
        durable = self._durable_session(doc, computed, disabled)
        ref_run, evaluation = self.reference.run(doc, computed, None, disabled)
        run, errors = ref_run, [e.to_dict() for e in ref_run.errors]
        if durable is not None:
            run, errors = checked(durable, ref_run, self.rules, self.verify)
        if budget is not None and self._hooks.details_wanted(run.fired):
            derived = {**computed, **run.derived}
            details, detail_errors = self._hooks.details(self.rules, run.fired, derived, frozen, budget)
            run.details.update(details)
            errors += detail_errors
        failed_names = {f.pack for f in failures} | {e["pack"] for e in errors if e.get("pack")}  # rule errors too
        loaded_infos, failed_infos = self._loaded_infos, self._failed_infos

        def build_packs() -> list[dict[str, Any]]:
            packs = [dict(i, status="failed") if i["name"] in failed_names else dict(i) for i in loaded_infos]
            return packs + [dict(info) for info in failed_infos]

        explainer = self.explainer
        built: dict[str, list[dict[str, Any]]] = {}  # the findings, once, for whichever member asks first

        def build_findings() -> list[dict[str, Any]]:
            if "findings" not in built:
                built["findings"] = explainer.findings(run, evaluation, evidence)
            return built["findings"]

        def build_missing_data() -> list[dict[str, Any]]:
            fired_urgency = {f["id"]: f["urgency"] for f in build_findings()}
            return explainer.missing_data(run, evaluation, fired_urgency)

        data: dict[str, Any] = {
            "result_version": "1",
            "evaluation_id": new_evaluation_id(),
            "evaluated_at": self._clock.now(),
            "facts_sha256": facts_sha256,
            "highest_urgency": explainer.highest_urgency(run),
            "complete": not failures and not errors,
            # The explanation (each finding's and derived fact's ``because``, the missing data and
            # the trace) is read from the evaluation's node states when a consumer first asks;
            # the packs' copies are made then too.
            "findings": None,
            "derived": None,
            "missing_data": None,
            "packs": None,
            "errors": [f.to_dict() for f in failures] + errors,
            "engine": dict(self._engine_info),
            "trace": None,
            "disclaimer": DISCLAIMER,
        }
        result = Result(
            data,
            {
                "findings": build_findings,
                "derived": lambda: explainer.derived(run, evaluation, computed, computed_because),
                "missing_data": build_missing_data,
                "packs": build_packs,
                "trace": trace_builder(explainer, run, evaluation, trace, provenance),
            },
        )
        if self._audit is not None:
            self._audit.record_decision(result.to_dict(), doc)
        return result

    def node_states(self, facts: Mapping[str, Any] | str | bytes) -> Evaluation:
        """The reference evaluator's state of every rule and condition node for one document.

        What coverage tools read (``neurocds.authoring.coverage``): the same evaluation
        ``evaluate`` explains from, without a result, an audit record or durable_rules.
        """
        doc = self.validator.document_to_evaluate(facts)
        computed, _, disabled = self._computed_facts(FrozenFacts(doc), self._hooks.budget(), [])
        return self.reference.run(doc, computed, None, disabled)[1]

    def _computed_facts(
        self, frozen: FrozenFacts, budget: Budget | None, failures: list[PackFailure]
    ) -> tuple[dict[str, Any], dict[str, Any], frozenset[str]]:
        """Computed facts, why each holds, and the packs whose compute hook failed: those do not run (hookspecs)."""
        computed: dict[str, Any] = {}
        because: dict[str, Any] = {}
        if budget is not None and self._hooks.compute_calls:
            computed, because = self._hooks.compute(frozen, self.compiled.derived_kinds, failures, budget)
        return computed, because, frozenset(f.pack for f in failures if f.stage == "compute_facts")

    def _durable_session(
        self, doc: Mapping[str, Any], computed: Mapping[str, Any], disabled: frozenset[str]
    ) -> Run | RuleEvaluationError | None:
        """The durable backend's answer, or the error that stopped it (``None`` without that backend)."""
        if self.durable is None:
            return None
        try:
            return self.durable.run(doc, computed, None, disabled)
        except RuleEvaluationError as exc:
            return exc
