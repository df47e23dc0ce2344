"""``neurocds pack lint``: find mistakes in rule packs that load fine, and the ones that do not load.

Rule files are read and schema-checked but not built, so a pack the engine would
refuse still gets every finding at once. Each check has a stable code (the table
:data:`CHECKS`), a level (``error``, ``warning``, ``note``) and a fixture in
``tests/authoring/test_lint.py`` that triggers it and one that does not. A hit
that is right can be ignored in ``pack.yaml`` with a reason::

    lint:
      ignore:
        - {rule: NCDS008, target: my.finding, reason: "the imaging rule is deliberately more urgent"}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurocds.errors import NeurocdsError, PackLoadError
from neurocds.facts.validation import FactsValidator
from neurocds.resources import load_schema
from neurocds.rules.packs import LoadedPack
from neurocds.rules.ruleset import URGENCY_RANK, WORSENING_FIELD, WORSENING_LIST, FactsIndex, read_rule_file

from .domains import MISSING, Domain, evaluate_leaf, leaf_domain
from .lint_report import LintReport, Problem
from .metadata import PackMetadata, installed_packs, metadata_of, select, with_dependencies
from .sources import line_of


@dataclass
class _PackRules:
    pack: LoadedPack
    rules: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)  # (file, index, raw rule)
    unreadable: list[Problem] = field(default_factory=list)

    def conclusions(self) -> tuple[dict[str, set[Any]], set[str]]:
        derived: dict[str, set[Any]] = {}
        findings: set[str] = set()
        for _, _, raw in self.rules:
            if "derive" in raw:
                derived.setdefault(raw["derive"]["name"], set()).add(_key(raw["derive"].get("value", True)))
            elif "finding" in raw:
                findings.add(raw["finding"])
        return derived, findings


def _key(value: Any) -> Any:
    """A value as a set member that keeps True apart from 1."""
    return (type(value).__name__, value)


def _read(pack: LoadedPack) -> _PackRules:
    out = _PackRules(pack)
    for path in pack.rule_files:
        try:
            doc = read_rule_file(Path(path), pack.name).doc
        except PackLoadError as exc:
            message = str(exc).split(": ", 1)[-1] if exc.pointer else str(exc)
            out.unreadable.append(Problem("NCDS000", pack.name, str(path), exc.pointer or "", str(path), message))
            continue
        out.rules.extend((str(path), i, raw) for i, raw in enumerate(doc["rules"]))
    return out


def facts_index(packs: Sequence[LoadedPack]) -> FactsIndex:
    """The facts schema every rule is checked against: the base one plus each pack's extension."""
    extensions = {p.name: dict(p.record.facts_schema) for p in packs if p.record.facts_schema}
    return FactsIndex(FactsValidator(load_schema("facts.schema.json"), extensions).schema)


def lint(selected: Sequence[LoadedPack], installed: Sequence[LoadedPack]) -> LintReport:
    """Lint ``selected`` packs; ``installed`` (a superset) says who concludes and who reads what."""
    try:
        index = facts_index(installed)
    except NeurocdsError:
        index = facts_index(selected)
    rules_of = {p.name: _read(p) for p in installed}
    for p in selected:
        rules_of.setdefault(p.name, _read(p))
    metadata = metadata_of(installed if set(map(id, selected)) <= set(map(id, installed)) else selected)
    report = LintReport([p.name for p in selected])
    read_anywhere = _reads(r for pr in rules_of.values() for _, _, r in pr.rules)
    for pack in selected:
        own = rules_of[pack.name]
        meta = metadata.get(pack.name) or PackMetadata(None, None)
        scope = [rules_of[p.name] for p in with_dependencies(installed or selected, pack) if p.name in rules_of]
        concluded = _concluded(scope, [metadata[p.pack.name] for p in scope if p.pack.name in metadata])
        found = list(own.unreadable)
        for file, i, raw in own.rules:
            found += _rule_checks(pack.name, file, f"/rules/{i}", raw, index, concluded)
        found = _apply_ignores(pack.name, found + _pack_checks(own, read_anywhere, meta), meta)
        for problem in found:
            problem.line = line_of(problem.file, problem.pointer) if problem.file else 1
        report.problems += found
    report.problems.sort(key=lambda p: (p.pack, p.file, p.line, p.code))
    return report


def _concluded(
    scope: Iterable[_PackRules], metas: Iterable[PackMetadata]
) -> tuple[dict[str, set[Any]], set[str], set[str]]:
    derived: dict[str, set[Any]] = {}
    findings: set[str] = set()
    for pack_rules in scope:
        d, f = pack_rules.conclusions()
        for name, values in d.items():
            derived.setdefault(name, set()).update(values)
        findings |= f
    computed = {name for meta in metas for name in meta.computed_reads()}
    return derived, findings, computed


def _reads(rules: Iterable[Mapping[str, Any]]) -> set[str]:
    return {node["derived"] for raw in rules for node, _ in _walk(raw["when"], "") if "derived" in node}


def _walk(node: Mapping[str, Any], pointer: str) -> Iterable[tuple[Mapping[str, Any], str]]:
    yield node, pointer
    for word in ("all", "any"):
        for i, child in enumerate(node.get(word, ())):
            yield from _walk(child, f"{pointer}/{word}/{i}")
    if "not" in node:
        yield from _walk(node["not"], f"{pointer}/not")


def _rule_checks(
    pack: str,
    file: str,
    at: str,
    raw: Mapping[str, Any],
    index: FactsIndex,
    concluded: tuple[dict[str, set[Any]], set[str], set[str]],
) -> list[Problem]:
    rule_id = raw["id"]
    out: list[Problem] = []

    def hit(code: str, pointer: str, message: str, target: str = rule_id) -> None:
        out.append(Problem(code, pack, file, pointer, target, message))

    derived, findings, computed = concluded
    for node, rel in _walk(raw["when"], f"{at}/when"):
        if "fact" in node or "any_item" in node:
            _leaf_checks(node, rel, index, hit)
        elif "derived" in node:
            name, value = node["derived"], node.get("eq", True)
            if name not in computed and _key(value) not in derived.get(name, set()):
                said = "" if value is True else f" with value {value!r}"
                hit(
                    "NCDS002",
                    rel,
                    f"derived fact {name!r}{said} is read, but nothing in this pack or its dependencies concludes it",
                    name,
                )
        elif "finding" in node and node["finding"] not in findings:
            hit(
                "NCDS002",
                rel,
                f"finding {node['finding']!r} is read, but nothing in this pack or its dependencies concludes it",
                node["finding"],
            )
        elif "all" in node:
            _contradiction(node, rel, index, hit)
    if "worsened_by" in raw:
        # The classes are item values of the facts' list, checked as an item test of them would be.
        classes = {"field": WORSENING_FIELD, "in": raw["worsened_by"]["medication_classes"]}
        _leaf_checks({"any_item": WORSENING_LIST, "where": classes}, f"{at}/worsened_by/medication_classes", index, hit)
    if raw.get("urgency") in ("emergency", "urgent"):
        thin = []
        if not raw.get("evidence"):
            thin.append("evidence")
        if len(str(raw.get("rationale", "")).strip()) < 20:
            thin.append("a rationale")
        if not raw.get("recommendations"):
            thin.append("recommendations")
        if thin:
            hit("NCDS009", at, f"{raw['urgency']} rule without {' or '.join(thin)}")
    return out


def _leaf_checks(node: Mapping[str, Any], pointer: str, index: FactsIndex, hit: Any) -> None:
    if "any_item" in node:
        items = index.arrays.get(node["any_item"])
        spec = node["where"]
        schema = (items or {}).get("properties", {}).get(spec["field"])
        if items is None or schema is None:
            where = node["any_item"] if items is None else f"{node['any_item']}[].{spec['field']}"
            hit("NCDS001", pointer, f"{where!r} is not an array fact field of the facts schema", where)
            return
        op = next(k for k in spec if k != "field")
        _value_checks(f"{node['any_item']}[].{spec['field']}", schema, op, spec[op], pointer, hit)
        return
    path = node["fact"]
    schema = index.leaves.get(path)
    if schema is None:
        hit("NCDS001", pointer, f"fact {path!r} is not in the facts schema", path)
        return
    op = next(k for k in node if k != "fact")
    if op != "known":
        _value_checks(path, schema, op, node[op], pointer, hit)


def _value_checks(path: str, schema: Mapping[str, Any], op: str, value: Any, pointer: str, hit: Any) -> None:
    domain = leaf_domain(schema, [value] if op != "in" else list(value))
    outside = domain.outside(op, value)
    if outside:
        hit("NCDS003", pointer, f"{path} {op} {value!r}: {outside}", path)
        return
    if domain.finite_or_bounded:
        results = {evaluate_leaf(op, value, v) for v in domain.values}
        if results == {True}:
            hit(
                "NCDS005",
                pointer,
                f"{path} {op} {value!r} is true for every allowed value ({domain.describe()}): "
                f"it only asks whether {path} is recorded",
                path,
            )
        elif results == {False}:
            hit(
                "NCDS005",
                pointer,
                f"{path} {op} {value!r} is false for every allowed value ({domain.describe()}): it is never true",
                path,
            )


def _contradiction(node: Mapping[str, Any], pointer: str, index: FactsIndex, hit: Any) -> None:
    """Fact tests on one path inside one ``all`` that no recorded value (or absence) satisfies together."""
    by_path: dict[str, list[tuple[str, Any]]] = {}
    for child in node["all"]:
        if "fact" in child and child["fact"] in index.leaves:
            op = next(k for k in child if k != "fact")
            by_path.setdefault(child["fact"], []).append((op, child[op]))
    for path, tests in by_path.items():
        if len(tests) < 2:
            continue
        wanted = [v for op, v in tests for v in (v if op == "in" else [v]) if op not in ("known",)]
        domain: Domain = leaf_domain(index.leaves[path], wanted)
        candidates = [*domain.values, MISSING]
        if not any(all(evaluate_leaf(op, v, c) is True for op, v in tests) for c in candidates):
            shown = " and ".join(f"{path} {op} {v!r}" for op, v in tests)
            hit("NCDS004", pointer, f"can never be true: {shown}", path)


def _pack_checks(own: _PackRules, read_anywhere: set[str], meta: PackMetadata) -> list[Problem]:
    pack = own.pack.name
    out: list[Problem] = []
    first_file = str(own.pack.rule_files[0]) if own.pack.rule_files else ""
    seen_derived: set[str] = set()
    by_finding: dict[str, list[tuple[str, str, Mapping[str, Any]]]] = {}
    for file, i, raw in own.rules:
        at = f"/rules/{i}"
        if "derive" in raw:
            name = raw["derive"]["name"]
            if name not in read_anywhere and name not in seen_derived:
                seen_derived.add(name)
                out.append(
                    Problem(
                        "NCDS006",
                        pack,
                        file,
                        f"{at}/derive",
                        name,
                        f"derived fact {name!r} is concluded but no installed pack's rule reads it",
                    )
                )
        elif "finding" in raw:
            by_finding.setdefault(raw["finding"], []).append((file, at, raw))
    for finding, rules in by_finding.items():
        out += _redundant(pack, finding, rules)
        urgencies = sorted({r["urgency"] for _, _, r in rules}, key=URGENCY_RANK.__getitem__)
        if len(urgencies) > 1:
            file, at, first = next(r for r in rules if r[2]["urgency"] == urgencies[0])
            out.append(
                Problem(
                    "NCDS008",
                    pack,
                    file,
                    f"{at}/urgency",
                    finding,
                    f"finding {finding!r} is concluded at {', '.join(urgencies)}; {first['id']} gives {urgencies[0]}",
                )
            )
    cited = " ".join(str(b.get("citation", "")) for b in meta.get("bibliography") or ())
    if meta.data is not None:
        for file, i, raw in own.rules:
            for k, evidence in enumerate(raw.get("evidence", ())):
                if evidence["source"] not in cited:
                    message = f"evidence source {evidence['source']!r} is not in pack.yaml's bibliography"
                    out.append(Problem("NCDS010", pack, file, f"/rules/{i}/evidence/{k}/source", raw["id"], message))
    if own.pack.plugin is not None and hasattr(own.pack.plugin, "neurocds_compute_facts") and not meta.computed_reads():
        message = "the plugin implements neurocds_compute_facts; declare computed_facts (name: {reads: [paths]})"
        out.append(Problem("NCDS012", pack, str(meta.path or first_file), "", pack, message))
    meta_file = str(meta.path) if meta.path is not None and meta.path.is_file() else first_file
    for pointer, message in meta.problems:
        out.append(
            Problem(
                "NCDS010",
                pack,
                meta_file if meta.data is not None else first_file,
                pointer if meta.data is not None else "",
                pack,
                message,
            )
        )
    return out


def _canon(node: Any) -> str:
    return json.dumps(node, sort_keys=True)


def _redundant(pack: str, finding: str, rules: list[tuple[str, str, Mapping[str, Any]]]) -> list[Problem]:
    def parts(when: Mapping[str, Any]) -> set[str]:
        return {_canon(c) for c in when["all"]} if "all" in when else {_canon(when)}

    out = []
    for i, (a_file, a_at, a) in enumerate(rules):
        for j, (_, _, b) in enumerate(rules):
            if i == j:
                continue
            same = _canon(a["when"]) == _canon(b["when"])
            if same and i > j:
                continue  # a duplicate pair is reported once, on the first of the two
            stricter = parts(b["when"]) < parts(a["when"]) or _canon(a["when"]) in map(_canon, b["when"].get("any", ()))
            if same or (stricter and URGENCY_RANK[a["urgency"]] <= URGENCY_RANK[b["urgency"]]):
                why = "has the same condition as" if same else "is implied by, at no higher urgency,"
                message = f"rule {a['id']} {why} rule {b['id']} for {finding!r}"
                out.append(Problem("NCDS007", pack, a_file, f"{a_at}/when", a["id"], message))
                break
    return out


def _apply_ignores(pack: str, problems: list[Problem], meta: PackMetadata) -> list[Problem]:
    ignores = meta.ignores()
    used = [False] * len(ignores)
    for problem in problems:
        for i, ignore in enumerate(ignores):
            if ignore["rule"] == problem.code and ignore["target"] == problem.target:
                problem.ignored_because, used[i] = ignore["reason"], True
                break
    file = str(meta.path) if meta.path is not None else ""
    for i, ignore in enumerate(ignores):
        if not used[i]:
            problems.append(
                Problem(
                    "NCDS011",
                    pack,
                    file,
                    f"/lint/ignore/{i}",
                    ignore["target"],
                    f"ignore of {ignore['rule']} for {ignore['target']!r} matches no hit; remove it",
                )
            )
    return problems


def lint_named(names: Sequence[str] = ()) -> LintReport:
    """Lint the installed packs named (all when none), with every installed pack as context."""
    installed = installed_packs()
    return lint(select(installed, names), installed)
