"""The pack author's guide (``docs/pack-authoring.md``), generated from the code it describes.

Prose lives in ``templates/guide.md.tmpl``; every list in it is generated here from its
source of truth: the facts schema (fields and DSI attribute marks), the installed
packs' rule files (derived facts), the ruleset schema (rule fields, condition forms,
operators), the case-file, plugin-option, lint and pack-metadata tables of this kit,
and the hook specifications' docstrings. A test regenerates it and compares.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from importlib import resources
from string import Template
from typing import Any

from neurocds import hookspecs
from neurocds.resources import load_schema
from neurocds.rules.conditions import OP_SYMBOL
from neurocds.rules.packs import LoadedPack

from .cases import EXPECTATION_HELP
from .lint import facts_index
from .lint_report import CHECKS
from .metadata import installed_packs, select
from .pytest_plugin import OPTIONS
from .reads import PackIndex
from .sheet import ATTRIBUTE_MARK, ATTRIBUTES

_FORM_MEANING = {
    "all": "every part is true",
    "any": "some part is true",
    "not": "the part is false",
}
_OP_MEANING = {
    "eq": ("the fact equals the value", "the fact is not recorded"),
    "ne": ("the fact is recorded as something else", "the fact is not recorded"),
    "lt": ("the fact is below the value", "the fact is not recorded"),
    "lte": ("the fact is at most the value", "the fact is not recorded"),
    "gt": ("the fact is above the value", "the fact is not recorded"),
    "gte": ("the fact is at least the value", "the fact is not recorded"),
    "in": ("the fact is one of the listed values", "the fact is not recorded"),
    "known": ("`true`: the fact is recorded; `false`: it is not", "never"),
    "is_not": ("the fact is not recorded, or recorded as something else", "never"),
}


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    kind = str(schema.get("type", "object" if "properties" in schema else "?"))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        kind += f" {'' if low is None else low}..{'' if high is None else high}"
    if kind == "array" and "properties" in schema.get("items", {}):
        kind += " of {" + ", ".join(schema["items"]["properties"]) + "}"
    return kind


def facts_rows(leaves: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for path, schema in leaves.items():
        if schema.get("type") == "object" and "properties" in schema:
            continue
        meaning = schema.get("description") or schema.get("title") or ""
        marks = ", ".join(schema.get(ATTRIBUTE_MARK, ()))
        rows.append(f"| `{path}` | {_cell(_type(schema))} | {_cell(meaning)} | {marks} |")
    return rows


def derived_rows(index: PackIndex) -> list[str]:
    rows = []
    for rule in index.rules:
        if rule.kind == "derive":
            facts = ", ".join(f"`{f}`" for f in sorted(rule.facts))
            refs = ", ".join(f"`{d}`" for d in sorted(rule.derived))
            reads = "; ".join(x for x in (facts, refs) if x)
            value = "true" if rule.value is True else f"`{rule.value}`"
            rows.append(f"| `{rule.key}` | {value} | {rule.pack} (`{rule.id}`) | {_cell(rule.title)}; reads {reads} |")
    for name, (pack, paths) in sorted(index.computed.items()):
        rows.append(f"| `{name}` | computed | {pack} (compute hook) | reads {', '.join(paths)} |")
    return rows


def schema_rows() -> tuple[list[str], list[str], list[str]]:
    ruleset = load_schema("ruleset.schema.json")["$defs"]
    rule_rows = []
    for name, spec in ruleset["rule"]["properties"].items():
        meaning = spec.get("description") or {"derive": "the derived fact concluded: {name, value}"}.get(name, "")
        required = " (required)" if name in ruleset["rule"]["required"] else ""
        rule_rows.append(f"| `{name}`{required} | {_cell(meaning)} |")
    forms = []
    fact_ops: list[str] = []
    for form in ruleset["condition"]["oneOf"]:
        keys = list(form["properties"])
        head = keys[0]
        if head == "fact":
            fact_ops = keys[1:]
            shape = "{fact: path, <operator>: value}"
        elif head in _FORM_MEANING:
            shape = f"{{{head}: ...}}"
        else:
            shape = "{" + ", ".join(f"{k}: ..." for k in keys) + "}"
        meaning = form.get("description") or _FORM_MEANING.get(head, "")
        forms.append(f"| `{shape}` | {_cell(meaning)} |")
    ops = []
    for op in fact_ops:
        true_when, unknown_when = _OP_MEANING[op]
        symbol = f" ({OP_SYMBOL[op]})" if op in OP_SYMBOL else ""
        ops.append(f"| `{op}`{symbol} | {true_when} | {unknown_when} |")
    return rule_rows, forms, ops


def hook_sections() -> list[str]:
    out = []
    for name in hookspecs.HOOK_NAMES:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        signature = inspect.signature(getattr(hookspecs, name))
        out += [f"### `{name}{str(signature).replace(chr(39), '')}`", "", doc, ""]
    for record in (hookspecs.RulePack, hookspecs.ComputedFacts):
        out += [f"### `{record.__name__}`", "", inspect.getdoc(record) or "", ""]
    return out


def guide_markdown(packs: Sequence[str] = (), installed: Sequence[LoadedPack] | None = None) -> str:
    """The guide, with the derived facts of ``packs`` (all installed when empty)."""
    everything = list(installed) if installed is not None else installed_packs()
    chosen = select(everything, packs)
    leaves = facts_index(chosen).leaves
    rule_rows, forms, ops = schema_rows()
    metadata = load_schema("pack-metadata.schema.json")
    fields = {label: [p for p, s in leaves.items() if key in s.get(ATTRIBUTE_MARK, ())] for key, label in ATTRIBUTES}
    values = {
        "facts_fields": facts_rows(leaves),
        "derived_facts": derived_rows(PackIndex(chosen)),
        "rule_fields": rule_rows,
        "condition_forms": forms,
        "operators": ops,
        "case_keys": [f"| `{k}` | {v} |" for k, v in EXPECTATION_HELP.items()],
        "plugin_options": [f"| {f'`{f}`' if f else ''} | {f'`{i}`' if i else ''} | {h} |" for f, i, _, h in OPTIONS],
        "lint_checks": [f"| {c.code} | {c.name} | {c.level} | {_cell(c.summary)} |" for c in CHECKS.values()],
        "pack_metadata": [
            f"| `{k}`{' (required)' if k in metadata['required'] else ''} | {_cell(v.get('description', ''))} |"
            for k, v in metadata["properties"].items()
        ],
        "attributes": [
            f"| {label} | {', '.join(f'`{p}`' for p in paths) or 'none'} |" for label, paths in fields.items()
        ],
        "hooks": hook_sections(),
    }
    template = (resources.files("neurocds.authoring") / "templates" / "guide.md.tmpl").read_text(encoding="utf-8")
    return Template(template).substitute({k: "\n".join(v).rstrip() for k, v in values.items()}).rstrip() + "\n"
