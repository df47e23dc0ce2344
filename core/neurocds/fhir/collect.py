"""Gather evidence, provenance and warnings during one conversion; build the document.

Boolean facts are collected as evidence for and against and decided at the
end, so the result does not depend on the order of resources in the Bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neurocds.fhir.bundle import Item
from neurocds.fhir.rules import CodeHit, NotMappedRule


def fact_pointer(path: str) -> str:
    """JSON pointer of a dotted fact path (table paths hold no '/' or '~')."""
    return "/" + path.replace(".", "/")


def source(item: Item, hit: CodeHit | None = None, rule: str | None = None) -> dict[str, Any]:
    """One provenance record: which resource and which coding led to a fact."""
    return {
        "resource": item.label,
        "system": hit.system if hit else None,
        "code": hit.code if hit else None,
        "display": hit.display if hit else None,
        "rule": rule if rule is not None else (hit.rule.rule if hit else None),
    }


@dataclass
class Collector:
    values: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    _evidence: dict[str, dict[bool, list[dict[str, Any]]]] = field(default_factory=dict)
    _noted_rules: set[str] = field(default_factory=set)
    _dated_after_now: dict[str, int] = field(default_factory=dict)

    def warn(self, resource: str | None, pointer: str | None, message: str) -> None:
        self.warnings.append({"resource": resource, "pointer": pointer, "message": message})

    def set_value(self, path: str, value: Any, sources: list[dict[str, Any]] | None = None) -> None:
        self.values[path] = value
        if sources:
            self.provenance[fact_pointer(path)] = sources

    def add_boolean(self, path: str, value: bool, src: dict[str, Any]) -> None:
        bucket = self._evidence.setdefault(path, {True: [], False: []})
        if src not in bucket[value]:
            bucket[value].append(src)

    def not_mapped(self, rule: NotMappedRule, item: Item) -> None:
        """Warn once per deliberately unmapped entry, naming the first resource met."""
        if rule.rule in self._noted_rules:
            return
        self._noted_rules.add(rule.rule)
        self.warn(item.label, None, f"recognised but deliberately not mapped ({rule.rule}): {rule.reason}")

    def dated_after_now(self, rtype: str) -> None:
        self._dated_after_now[rtype] = self._dated_after_now.get(rtype, 0) + 1

    def finish(self, constants: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        for path in sorted(self._evidence):
            evidence = self._evidence[path]
            if evidence[True]:
                self.set_value(path, True, evidence[True])
                if evidence[False]:
                    against = ", ".join(sorted({s["resource"] for s in evidence[False]}))
                    self.warn(
                        None,
                        fact_pointer(path),
                        f"conflicting evidence: kept true; refuted/absent according to {against}",
                    )
            else:
                self.set_value(path, False, evidence[False])
        if self._dated_after_now:
            counts = ", ".join(f"{n} {t}" for t, n in sorted(self._dated_after_now.items()))
            self.warn(None, None, f"resources dated after 'now' were ignored: {counts}")
        document: dict[str, Any] = {}
        for path, value in [*constants.items(), *sorted(self.values.items())]:
            _put(document, path, value)
        return document, dict(sorted(self.provenance.items()))


def _put(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = document
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
