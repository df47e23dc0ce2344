"""Which facts each rule reads: directly, and through the derived facts, findings and compute hooks it uses.

Built from the rule files of every installed pack (read, not loaded) and each
pack's ``pack.yaml`` (its compute hook's declared reads). ``neurocds pack show``
lists a pack's rules and fields from it; the DSI source-attribute sheet follows
each finding's rules down to the input fields, so an attribute such as sex is
reported as used even when only a derived fact in another pack reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocds.errors import PackLoadError
from neurocds.rules.packs import LoadedPack
from neurocds.rules.ruleset import read_rule_file

from .metadata import PackMetadata, read_metadata


@dataclass
class RuleReads:
    """One rule as data: what it concludes and what its condition reads directly."""

    id: str
    pack: str
    title: str
    kind: str  # finding | derive
    key: str
    value: Any
    urgency: str | None
    evidence: list[dict[str, str]]
    file: str
    facts: set[str] = field(default_factory=set)  # dotted paths (an item test: the array path)
    derived: set[str] = field(default_factory=set)
    findings: set[str] = field(default_factory=set)
    worsened_by: dict[str, Any] | None = None  # the rule's ``worsened_by`` as written


def _leaves(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for word in ("all", "any"):
        for child in node.get(word, ()):
            yield from _leaves(child)
    if "not" in node:
        yield from _leaves(node["not"])
    elif not any(w in node for w in ("all", "any")):
        yield node


class PackIndex:
    """Every installed pack's rules, metadata and conclusions, for following reads across packs."""

    def __init__(self, installed: Sequence[LoadedPack]) -> None:
        self.packs = {p.name: p for p in installed}
        self.metadata: dict[str, PackMetadata] = {p.name: read_metadata(p) for p in installed}
        self.rules: list[RuleReads] = []
        self.unreadable: dict[str, str] = {}
        for pack in installed:
            for path in pack.rule_files:
                try:
                    doc = read_rule_file(Path(path), pack.name).doc
                except PackLoadError as exc:
                    self.unreadable[str(path)] = str(exc)
                    continue
                self.rules += [_rule_reads(pack.name, str(path), raw) for raw in doc["rules"]]
        self.concluders: dict[tuple[str, str], list[RuleReads]] = {}
        for rule in self.rules:
            self.concluders.setdefault((rule.kind, rule.key), []).append(rule)
        # Computed derived fact -> (pack, the fact paths its compute hook declares it reads).
        self.computed: dict[str, tuple[str, list[str]]] = {
            name: (pack, reads) for pack, meta in self.metadata.items() for name, reads in meta.computed_reads().items()
        }

    def rules_of(self, pack: str) -> list[RuleReads]:
        return [r for r in self.rules if r.pack == pack]

    def fact_reads(self, rule: RuleReads) -> dict[str, list[str]]:
        """Dotted fact path -> how the rule reaches it ('direct', or the chain of derived facts/findings)."""
        out: dict[str, list[str]] = {}
        self._follow(rule, (), out, set())
        return out

    def _follow(self, rule: RuleReads, chain: tuple[str, ...], out: dict[str, list[str]], seen: set[str]) -> None:
        if rule.id in seen:
            return
        seen = seen | {rule.id}
        how = " → ".join(chain) if chain else "direct"
        for path in rule.facts:
            out.setdefault(path, []).append(how)
        for name in sorted(rule.derived):
            step = (*chain, f"derived {name}")
            if name in self.computed:
                pack, reads = self.computed[name]
                for path in reads:
                    out.setdefault(path, []).append(" → ".join((*step, f"compute hook of {pack}")))
            for concluder in self.concluders.get(("derive", name), ()):
                self._follow(concluder, (*step, f"rule {concluder.id}"), out, seen)
        for finding in sorted(rule.findings):
            for concluder in self.concluders.get(("finding", finding), ()):
                self._follow(concluder, (*chain, f"finding {finding}", f"rule {concluder.id}"), out, seen)


def _rule_reads(pack: str, file: str, raw: Mapping[str, Any]) -> RuleReads:
    if "finding" in raw:
        kind, key, value = "finding", raw["finding"], True
    else:
        kind, key, value = "derive", raw["derive"]["name"], raw["derive"].get("value", True)
    rule = RuleReads(
        raw["id"], pack, raw["title"], kind, key, value, raw.get("urgency"), list(raw.get("evidence", ())), file
    )
    rule.worsened_by = raw.get("worsened_by")
    for leaf in _leaves(raw["when"]):
        if "fact" in leaf:
            rule.facts.add(leaf["fact"])
        elif "any_item" in leaf:
            rule.facts.add(leaf["any_item"])
        elif "derived" in leaf:
            rule.derived.add(leaf["derived"])
        elif "finding" in leaf:
            rule.findings.add(leaf["finding"])
    return rule
