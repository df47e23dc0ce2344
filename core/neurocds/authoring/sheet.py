"""The DSI source-attribute sheet (ONC HTI-1, 45 CFR 170.315(b)(11)) of each pack and finding.

For an evidence-based decision support intervention the certification criterion
asks for source attributes a user can review: the bibliographic citation, the
developer, the funding source, release and revision dates, and whether the
intervention *uses* each of nine patient attributes. The first five come from the
pack's ``pack.yaml`` and its rules' evidence. The nine "use of" answers are never
typed by hand: a field of the facts schema that carries an attribute is marked
``x-dsi-attributes``, and an answer is "yes" exactly when some rule of the finding
reads such a field, directly or through derived facts, chained findings and
compute hooks (which declare the paths they read in ``pack.yaml``).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from neurocds.rules.packs import LoadedPack

from .lint import facts_index
from .reads import PackIndex, RuleReads

SHEET_FORMAT = "neurocds-dsi-sheet/1"
# The nine HTI-1 "use of" source attributes, in the order of 170.315(b)(11)(iv)(A)(5)(i).
ATTRIBUTES = (
    ("race", "Race"),
    ("ethnicity", "Ethnicity"),
    ("language", "Language"),
    ("sexual_orientation", "Sexual orientation"),
    ("gender_identity", "Gender identity"),
    ("sex", "Sex"),
    ("date_of_birth", "Date of birth"),
    ("social_determinants_of_health", "Social determinants of health"),
    ("health_status_assessments", "Health status assessments"),
)
ATTRIBUTE_MARK = "x-dsi-attributes"


def attribute_fields(leaves: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Dotted fact path -> the attributes its schema marks it as carrying."""
    return {path: list(schema[ATTRIBUTE_MARK]) for path, schema in leaves.items() if schema.get(ATTRIBUTE_MARK)}


def _uses(index: PackIndex, rules: Sequence[RuleReads], marked: Mapping[str, list[str]]) -> dict[str, Any]:
    fields: dict[str, dict[str, list[str]]] = {key: {} for key, _ in ATTRIBUTES}
    for rule in rules:
        for path, hows in index.fact_reads(rule).items():
            for attribute in marked.get(path, ()):
                if attribute in fields:
                    fields[attribute].setdefault(path, []).extend(f"rule {rule.id}: {h}" for h in hows)
    return {
        key: {
            "used": bool(fields[key]),
            "fields": [{"path": p, "how": sorted(set(h))} for p, h in sorted(fields[key].items())],
        }
        for key, _ in ATTRIBUTES
    }


def build_sheet(installed: Sequence[LoadedPack], packs: Sequence[str] = ()) -> dict[str, Any]:
    """The sheet of ``packs`` (all installed when empty), following reads across every installed pack."""
    index = PackIndex(installed)
    marked = attribute_fields(facts_index(installed).leaves)
    out = []
    for name in packs or sorted(index.packs):
        pack, meta = index.packs[name], index.metadata[name]
        rules = index.rules_of(name)
        findings = []
        for finding in sorted({r.key for r in rules if r.kind == "finding"}):
            own = [r for r in rules if r.kind == "finding" and r.key == finding]
            citations = list({(e["source"], e["citation"]): e for r in own for e in r.evidence}.values())
            findings.append(
                {
                    "id": finding,
                    "titles": sorted({r.title for r in own}),
                    "urgencies": sorted({str(r.urgency) for r in own}),
                    "rules": [r.id for r in own],
                    "evidence": citations,
                    # At ordering, a draft of these medicine classes is offered for removal on the card.
                    "worsened_by": [{"rule": r.id, **r.worsened_by} for r in own if r.worsened_by],
                    "attributes": _uses(index, own, marked),
                }
            )
        out.append(
            {
                "pack": name,
                "version": pack.record.version,
                "description": pack.record.description,
                "release_date": meta.get("release_date"),
                "revision_date": meta.get("revision_date") or meta.get("release_date"),
                "developer": meta.get("developer"),
                "funding": meta.get("funding"),
                "bibliography": meta.get("bibliography"),
                "intended_use": meta.get("intended_use"),
                "metadata_problems": [message for _, message in meta.problems],
                "attributes": _uses(index, rules, marked),
                "findings": findings,
            }
        )
    fields = {path: attrs for path, attrs in sorted(marked.items())}
    return {"format": SHEET_FORMAT, "attribute_fields": fields, "packs": out}


def _answer(entry: Mapping[str, Any]) -> str:
    if not entry["used"]:
        return "No"
    return "Yes: " + "; ".join(f"{f['path']} ({', '.join(f['how'])})" for f in entry["fields"])


def _developer(value: Any) -> str:
    if not isinstance(value, Mapping):
        return "not stated"
    return str(value.get("name", "not stated")) + (f" ({value['contact']})" if value.get("contact") else "")


def _pack_facts(pack: Mapping[str, Any]) -> list[tuple[str, str]]:
    bibliography = pack["bibliography"] or []
    return [
        ("Version", pack["version"]),
        ("Developer", _developer(pack["developer"])),
        ("Funding source", ", ".join(pack["funding"] or ["not stated"])),
        ("Release date", pack["release_date"] or "not stated"),
        ("Revision date", pack["revision_date"] or "not stated"),
        ("Intended use", pack["intended_use"] or "not stated"),
        ("Bibliography", " | ".join(b["citation"] for b in bibliography) or "not stated"),
    ]


def to_markdown(sheet: Mapping[str, Any]) -> str:
    lines = ["# DSI source attributes (ONC HTI-1, 45 CFR 170.315(b)(11))", ""]
    lines.append("Decision support for a clinician, never a diagnosis. The 'use of' answers are computed from")
    lines.append("the facts each rule reads (directly, through derived facts and compute hooks).")
    for pack in sheet["packs"]:
        lines += ["", f"## Pack {pack['pack']}", "", "| Source attribute | Value |", "|---|---|"]
        lines += [f"| {k} | {_md(v)} |" for k, v in _pack_facts(pack)]
        lines += [f"| Use of {label.lower()} | {_md(_answer(pack['attributes'][key]))} |" for key, label in ATTRIBUTES]
        for finding in pack["findings"]:
            lines += ["", f"### Finding {finding['id']}", "", f'<a id="{finding["id"]}"></a>', ""]
            lines += [f"Urgency: {', '.join(finding['urgencies'])}. Rules: {', '.join(finding['rules'])}.", ""]
            lines += [f"- {_md(e['source'])}: {_md(e['citation'])}" for e in finding["evidence"]]
            lines += [f"- {_md(_worsening(w))}" for w in finding["worsened_by"]]
            lines += ["", "| Use of | Answer |", "|---|---|"]
            lines += [f"| {label} | {_md(_answer(finding['attributes'][key]))} |" for key, label in ATTRIBUTES]
    return "\n".join(lines) + "\n"


def _worsening(entry: Mapping[str, Any]) -> str:
    classes = ", ".join(entry["medication_classes"])
    return f"Worsened by {classes} (rule {entry['rule']}; a draft order is offered for removal): {entry['rationale']}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_html(sheet: Mapping[str, Any], only_finding: str | None = None) -> str:
    """The sheet as one page (or one finding's part of it, for a CDS Hooks card link)."""
    parts = [
        "<!doctype html><meta charset='utf-8'><title>DSI source attributes</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:60em}td,th{border:1px solid #ccc;"
        "padding:.2em .5em;text-align:left;vertical-align:top}table{border-collapse:collapse}</style>",
        "<h1>DSI source attributes (ONC HTI-1, 45 CFR 170.315(b)(11))</h1>",
        "<p>Decision support for a clinician, never a diagnosis. The 'use of' answers are computed from the facts "
        "each rule reads (directly, through derived facts and compute hooks).</p>",
    ]
    e = html.escape
    for pack in sheet["packs"]:
        findings = [f for f in pack["findings"] if only_finding in (None, f["id"])]
        if only_finding is not None and not findings:
            continue
        parts.append(f"<h2>Pack {e(pack['pack'])}</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _pack_facts(pack)]
        parts.append("</table>")
        for finding in findings:
            parts.append(f"<h3 id='{e(finding['id'])}'>Finding {e(finding['id'])}</h3>")
            parts.append(f"<p>Urgency: {e(', '.join(finding['urgencies']))}</p><ul>")
            parts += [f"<li>{e(ev['source'])}: {e(ev['citation'])}</li>" for ev in finding["evidence"]]
            parts += [f"<li>{e(_worsening(w))}</li>" for w in finding["worsened_by"]]
            parts.append("</ul><table><tr><th>Use of</th><th>Answer</th></tr>")
            for key, label in ATTRIBUTES:
                parts.append(f"<tr><td>{e(label)}</td><td>{e(_answer(finding['attributes'][key]))}</td></tr>")
            parts.append("</table>")
    return "".join(parts) + "\n"


def to_json(sheet: Mapping[str, Any]) -> str:
    return json.dumps(sheet, indent=2, ensure_ascii=False) + "\n"
