"""``neurocds pack show``: one pack at a glance, and JSON schemas bundled into one self-contained file.

The pack view lists its rules, the findings with their urgencies, the derived facts
it concludes and reads, the facts fields it uses (directly) and its dependencies,
read from the rule files without loading them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from neurocds.resources import load_schema
from neurocds.rules.packs import LoadedPack

from .reads import PackIndex

SCHEMAS = {
    "facts": "facts.schema.json",
    "result": "result.schema.json",
    "trace": "trace.schema.json",
    "audit-record": "audit-record.schema.json",
    "ruleset": "ruleset.schema.json",
    "pack-metadata": "pack-metadata.schema.json",
}


def describe_pack(installed: Sequence[LoadedPack], name: str) -> dict[str, Any]:
    index = PackIndex(installed)
    pack, meta = index.packs[name], index.metadata[name]
    rules = index.rules_of(name)
    findings: dict[str, set[str]] = {}
    for rule in rules:
        if rule.kind == "finding":
            findings.setdefault(rule.key, set()).add(str(rule.urgency))
    concluded = sorted({r.key for r in rules if r.kind == "derive"})
    reads = sorted({d for r in rules for d in r.derived})
    return {
        "name": name,
        "version": pack.record.version,
        "description": pack.record.description,
        "source": pack.source,
        "depends_on": list(pack.record.depends_on),
        "rule_files": [str(p) for p in pack.rule_files],
        "metadata": meta.data,
        "metadata_file": str(meta.path) if meta.path is not None else None,
        "rules": [
            {"id": r.id, "title": r.title, "concludes": f"{r.kind} {r.key}", "urgency": r.urgency} for r in rules
        ],
        "findings": {f: sorted(u) for f, u in sorted(findings.items())},
        "derived_concluded": concluded,
        "derived_read": [
            {"name": d, "from": sorted({c.pack for c in index.concluders.get(("derive", d), ())}) or ["computed"]}
            for d in reads
        ],
        "computed_facts": meta.computed_reads(),
        "findings_read": sorted({f for r in rules for f in r.findings}),
        "facts_fields": sorted({f for r in rules for f in r.facts}),
        "unreadable_files": {f: e for f, e in index.unreadable.items() if f in map(str, pack.rule_files)},
    }


def show_text(view: Mapping[str, Any]) -> str:
    lines = [f"{view['name']} {view['version']}: {view['description']}", f"  from {view['source']}"]
    lines.append(f"  depends on: {', '.join(view['depends_on']) or 'nothing'}")
    meta = view["metadata"] or {}
    if meta:
        developer = (meta.get("developer") or {}).get("name", "?")
        lines.append(
            f"  released {meta.get('release_date')} by {developer}; funding: {', '.join(meta.get('funding', []))}"
        )
    else:
        lines.append("  no pack.yaml metadata")
    lines.append(f"rules ({len(view['rules'])}):")
    lines += [
        f"  {r['id']}  → {r['concludes']}" + (f" [{r['urgency']}]" if r["urgency"] else "") for r in view["rules"]
    ]
    lines.append(f"findings ({len(view['findings'])}):")
    lines += [f"  {f}  {'/'.join(u)}" for f, u in view["findings"].items()]
    lines.append(f"derived facts concluded: {', '.join(view['derived_concluded']) or 'none'}")
    read = [f"{d['name']} (from {', '.join(d['from'])})" for d in view["derived_read"]]
    lines.append(f"derived facts read: {', '.join(read) or 'none'}")
    if view["computed_facts"]:
        lines.append(
            "computed facts: " + ", ".join(f"{k} reads {', '.join(v)}" for k, v in view["computed_facts"].items())
        )
    if view["findings_read"]:
        lines.append(f"findings read: {', '.join(view['findings_read'])}")
    lines.append(f"facts fields used ({len(view['facts_fields'])}): {', '.join(view['facts_fields'])}")
    for file, error in view["unreadable_files"].items():
        lines.append(f"unreadable: {file}: {error}")
    return "\n".join(lines) + "\n"


def bundled_schema(kind: str) -> dict[str, Any]:
    """The schema with every schema file it references embedded under ``$defs`` (by its ``$id``).

    A 2020-12 validator resolves a ``$ref`` to ``other.schema.json`` against an
    embedded resource whose ``$id`` is that URL, so the result validates offline
    with a plain ``jsonschema.validate``.
    """
    schema = copy.deepcopy(load_schema(SCHEMAS[kind]))
    embedded = {d.get("$id") for d in schema.get("$defs", {}).values() if isinstance(d, Mapping)}
    base = str(schema.get("$id", "")).rsplit("/", 1)[0]
    todo = sorted(_external_refs(schema))
    while todo:
        file = todo.pop()
        target = f"{base}/{file}"
        if target in embedded or target == schema.get("$id"):
            continue
        other = copy.deepcopy(load_schema(file))
        schema.setdefault("$defs", {})[file.removesuffix(".json").replace(".", "_")] = other
        embedded.add(target)
        todo += sorted(_external_refs(other))
    return schema


def _external_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            found.add(ref.split("#", 1)[0])
        for value in node.values():
            found |= _external_refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _external_refs(value)
    return found
