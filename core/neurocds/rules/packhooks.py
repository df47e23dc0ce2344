"""The per-evaluation hooks of the loaded packs, called through the guarded runner.

Compute hooks run once per evaluation before any rule; finding-detail hooks run once
per fired finding (only the findings its pack declared in ``RulePack.detailed_findings``,
if it did) after the evaluation (never inside a backend, so no backend lock is held
while pack code runs, and verify mode does not call them twice). Both receive the
same deep-frozen view of the facts, built on first use only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import pluggy

from neurocds.errors import PackFailure, RuleEvaluationError
from neurocds.facts.readonly import freeze
from neurocds.rules.hook_answers import check_computed, check_detail, checked_call, unwrap
from neurocds.rules.hooks import Budget, HookFailure, HookRunner
from neurocds.rules.packs import LoadedPack, call_impl, find_impl
from neurocds.rules.ruleset import Rule


class FrozenFacts:
    """The read-only view every hook of one evaluation shares, made when first needed."""

    __slots__ = ("_doc", "_view")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc
        self._view: Any = None

    def get(self) -> Any:
        if self._view is None:
            self._view = freeze(self._doc)
        return self._view


class PackHooks:
    """Which loaded packs implement the per-evaluation hooks, and the guarded calls to them."""

    def __init__(
        self, pm: pluggy.PluginManager, packs: Sequence[LoadedPack], runner: HookRunner, rules: Sequence[Rule]
    ) -> None:
        self.runner = runner
        self.compute_calls: list[tuple[LoadedPack, Any, dict[str, list[str]]]] = []
        seen: set[int] = set()
        for pack in packs:
            impl = find_impl(pm, "neurocds_compute_facts", pack.plugin)
            if impl is None or id(pack.plugin) in seen:
                continue  # once per plugin, even when it registered several packs
            seen.add(id(pack.plugin))
            own = {p.name: list(p.namespaces) for p in packs if p.plugin is pack.plugin}
            self.compute_calls.append((pack, impl, own))
        detail_impls = {
            p.name: (impl, p.record.detailed_findings)
            for p in packs
            if (impl := find_impl(pm, "neurocds_finding_detail", p.plugin)) is not None
        }
        # Rule index -> its pack's detail hook, for every finding rule the hook is called for:
        # all of its pack's, or only those of the findings the pack declared it details. An
        # evaluation that fired none of them hands nothing to a worker (most evaluations).
        self.detail_calls: dict[int, Any] = {}
        for index, rule in enumerate(rules):
            impl, declared = detail_impls.get(rule.pack, (None, None))
            if impl is not None and rule.kind == "finding" and (declared is None or rule.key in declared):
                self.detail_calls[index] = impl

    def budget(self) -> Budget | None:
        """A fresh per-evaluation budget, or ``None`` when no pack has a per-evaluation hook."""
        return Budget(self.runner) if self.compute_calls or self.detail_calls else None

    def details_wanted(self, fired: Sequence[int]) -> bool:
        """Whether any fired rule's finding is one a pack's detail hook is called for."""
        return not self.detail_calls.keys().isdisjoint(fired)

    def compute(
        self, facts: FrozenFacts, kinds: Mapping[str, str], failures: list[PackFailure], budget: Budget
    ) -> tuple[dict[str, Any], dict[str, tuple[str, list[str]]]]:
        """Computed facts of every pack whose hook succeeded; a failing pack adds nothing."""
        computed: dict[str, Any] = {}
        because: dict[str, tuple[str, list[str]]] = {}
        for pack, impl, own in self.compute_calls:
            try:
                checked = unwrap(
                    budget.call(
                        pack.name,
                        "neurocds_compute_facts",
                        checked_call,
                        partial(_call, impl, {"facts": facts.get()}),
                        partial(check_computed, own_packs=own, kinds=kinds),
                    )
                )
            except HookFailure as exc:
                failures.append(PackFailure(pack.name, "compute_facts", str(exc)))
                continue
            if checked is not None:
                name_of_pack, values, pointers = checked
                computed.update(values)
                because.update({name: (name_of_pack, pointers.get(name, [])) for name in values})
        return computed, because

    def details(
        self,
        rules: Sequence[Rule],
        fired: Sequence[int],
        derived: Mapping[str, Any],
        facts: FrozenFacts,
        budget: Budget,
    ) -> tuple[dict[int, str], list[dict[str, Any]]]:
        """Extra detail text per fired finding rule, and an error per hook call that failed."""
        details: dict[int, str] = {}
        errors: list[dict[str, Any]] = []
        frozen_derived: Any = None
        detail_calls = self.detail_calls
        for index in fired:
            impl = detail_calls.get(index)
            if impl is None:
                continue
            rule = rules[index]
            if frozen_derived is None:
                frozen_derived = freeze(dict(derived))
            kwargs = {"finding_id": rule.key, "rule_id": rule.id, "facts": facts.get(), "derived": frozen_derived}
            try:
                hook = "neurocds_finding_detail"
                text = unwrap(budget.call(rule.pack, hook, checked_call, partial(_call, impl, kwargs), check_detail))
            except HookFailure as exc:
                message = f"finding detail for rule {rule.id}: {exc}"
                errors.append(RuleEvaluationError(message, rule=rule.id, pack=rule.pack, kind="action").to_dict())
                continue
            if text:
                details[index] = text
        return details, errors


def _call(impl: Any, kwargs: Mapping[str, Any]) -> Any:
    return call_impl(impl, **kwargs)
