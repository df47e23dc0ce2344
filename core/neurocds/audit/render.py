"""Human-readable views of a recorded decision: a why-tree as text, or as HTML.

Both views are built from one model (:func:`why_model`) made only from the
record itself, so they show what was decided then, not what current packs say.
The HTML page is self-contained (inline CSS, no scripts, no external
resources) and every value from the record is HTML-escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from neurocds.audit.inputs import input_facts, name_of, why_not
from neurocds.audit.query import body_of
from neurocds.audit.report_html import REPORT_CSS, escape_html, urgency_badge
from neurocds.audit.verify import VerifyReport
from neurocds.facts.canonical import json_text

_NO_VALUE = object()


def _resolve(doc: Any, pointer: str) -> Any:
    """RFC 6901 lookup; ``_NO_VALUE`` when the pointer does not resolve."""
    if pointer == "":
        return doc
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _NO_VALUE
    return node


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def why_model(record: Mapping[str, Any]) -> dict[str, Any]:
    """A nested, render-neutral explanation of one decision record."""
    body = body_of(record)
    facts = body.get("facts")
    derived = {d.get("name"): d for d in _dicts(body.get("derived"))}
    findings = {f.get("id"): f for f in _dicts(body.get("findings"))}

    def expand(item: Mapping[str, Any], seen: frozenset[str]) -> dict[str, Any]:
        if "pointer" in item:
            pointer = str(item["pointer"])
            value = item.get("value", _NO_VALUE)
            if value is _NO_VALUE and isinstance(facts, Mapping):
                value = _resolve(facts, pointer)
            node: dict[str, Any] = {"kind": "fact", "label": name_of(pointer), "pointer": pointer}
            if value is not _NO_VALUE:
                node["value"] = value
            return node
        if "derived" in item:
            name = str(item["derived"])
            d = derived.get(name, {})
            node = {"kind": "derived", "label": name, "rule": d.get("rule"), "children": []}
            value = item.get("value", d.get("value", _NO_VALUE))
            if value is not _NO_VALUE:
                node["value"] = value
            if name not in seen:  # a cycle would be an engine bug; never loop on it
                node["children"] = [expand(b, seen | {name}) for b in _dicts(d.get("because"))]
            return node
        ref = str(item.get("finding", "?"))
        f = findings.get(ref, {})
        node = {"kind": "finding", "label": ref, "urgency": f.get("urgency"), "children": []}
        if ref not in seen:
            node["children"] = [expand(b, seen | {ref}) for b in _dicts(f.get("because"))]
        return node

    model_findings = []
    for f in _dicts(body.get("findings")):
        fid = str(f.get("id"))
        model_findings.append(
            {
                "id": fid,
                "urgency": f.get("urgency"),
                "title": f.get("title", ""),
                "detail": f.get("detail"),
                "rule": f.get("rule"),
                "pack": f.get("pack"),
                "because": [expand(b, frozenset({fid})) for b in _dicts(f.get("because"))],
                "unknown": [str(u) for u in f.get("unknown") or ()],
                "recommendations": [str(r) for r in f.get("recommendations") or ()],
                "evidence": _dicts(f.get("evidence")),
            }
        )
    recorded_trace = body.get("trace")
    trace: dict[str, Any] = recorded_trace if isinstance(recorded_trace, dict) else {}
    return {
        "sequence": record.get("sequence"),
        "recorded_at": record.get("recorded_at"),
        "decision_id": body.get("decision_id"),
        "evaluated_at": body.get("evaluated_at"),
        "engine": body.get("engine") or {},
        "packs": _dicts(body.get("packs")),
        "highest_urgency": body.get("highest_urgency"),
        "complete": body.get("complete"),
        "redacted": body.get("redacted"),
        "facts_sha256": body.get("facts_sha256"),
        "patient_pseudonym": body.get("patient_pseudonym"),
        "findings": model_findings,
        "missing_data": _dicts(body.get("missing_data")),
        "not_fired": _dicts(trace.get("not_fired")),
        "errors": _dicts(body.get("errors")),
        "inputs": input_facts(body),
    }


def _value_text(node: Mapping[str, Any]) -> str:
    if "value" not in node:
        return "(value not stored)" if node["kind"] == "fact" else ""
    return json.dumps(node["value"], ensure_ascii=False)


def _node_text(node: Mapping[str, Any]) -> str:
    if node["kind"] == "fact":
        return f"fact {node['label']} = {_value_text(node)}"
    if node["kind"] == "derived":
        rule = f" (rule {node['rule']})" if node.get("rule") else ""
        value = f" = {_value_text(node)}" if "value" in node else ""
        return f"derived {node['label']}{value}{rule}"
    return f"finding {node['label']} [{node.get('urgency') or '?'}]"


def _tree_lines(nodes: list[dict[str, Any]], prefix: str) -> list[str]:
    out = []
    for i, node in enumerate(nodes):
        last = i == len(nodes) - 1
        out.append(f"{prefix}{'└─ ' if last else '├─ '}{_node_text(node)}")
        out.extend(_tree_lines(node.get("children", []), prefix + ("   " if last else "│  ")))
    return out


def _rejection_text(record: Mapping[str, Any]) -> str:
    body = body_of(record)
    lines = [
        f"Rejected input {body.get('rejection_id')} (sequence {record.get('sequence')}, {record.get('recorded_at')})"
    ]
    for v in _dicts(body.get("violations")):
        lines.append(f"  {v.get('pointer') or '/'} [{v.get('code')}]: {v.get('message')}")
    return "\n".join(lines)


def _pack_text(p: Mapping[str, Any]) -> str:
    return f"{p.get('name')} {p.get('version')} [{p.get('status', 'ok')}] sha256:{str(p.get('sha256'))[:12]}"


def _finding_text(f: Mapping[str, Any]) -> list[str]:
    lines = [f"■ [{str(f['urgency']).upper()}] {f['id']}: {f['title']}", f"  rule {f['rule']} (pack {f['pack']})"]
    if f.get("detail"):
        lines.append(f"  {f['detail']}")
    if f["because"]:
        lines.append("  because")
        lines.extend(_tree_lines(f["because"], "  "))
    lines.extend(f"  not recorded (unknown): {name_of(u)}" for u in f["unknown"])
    lines.extend(f"  → {r}" for r in f["recommendations"])
    lines.extend(f"  evidence: {e.get('source', '')} {e.get('citation', '')}".rstrip() for e in f["evidence"])
    return lines


def related_lines(related: Sequence[Mapping[str, Any]]) -> list[str]:
    """Cards issued for a decision and the clinicians' feedback on them, one line each."""
    lines = []
    for r in related:
        body = body_of(r)
        if r.get("type") == "cards":
            lines.append(f"  cards issued: {', '.join(map(str, body.get('card_uuids') or ())) or 'none'}")
        elif r.get("type") == "feedback":
            reason = body.get("override_reason") or {}
            why = reason.get("display") or reason.get("code") or ""
            comment = reason.get("userComment") or ("(comment kept as its hash)" if "userComment_sha256" in reason
                                                     else "")  # fmt: skip
            detail = "; ".join(x for x in (why, comment) if x)
            lines.append(f"  card {body.get('card_uuid')}: {body.get('outcome')}" + (f" ({detail})" if detail else "")
                         + f", recorded {r.get('recorded_at')}")  # fmt: skip
    return lines


def render_text(record: Mapping[str, Any], related: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The decision as a plain-text why-tree (rejections: their violations).

    :param related: the decision's ``cards`` and ``feedback`` records, shown after the findings.
    """
    if record.get("type") == "rejection":
        return _rejection_text(record)
    if record.get("type") != "decision":
        return json_text(record)  # what json.dumps(indent=2) writes, by orjson where it can
    m = why_model(record)
    eng = m["engine"]
    lines = [
        f"Decision {m['decision_id']} (sequence {m['sequence']})",
        f"  evaluated {m['evaluated_at']}, recorded {m['recorded_at']}",
        f"  engine {eng.get('name')} {eng.get('version')} backend={eng.get('backend')} verified={eng.get('verified')}",
        "  packs: " + ", ".join(_pack_text(p) for p in m["packs"]),
        f"  highest urgency: {str(m['highest_urgency']).upper()}   complete: {'yes' if m['complete'] else 'NO'}",
        f"  facts sha256: {m['facts_sha256']}{'  (facts redacted)' if m['redacted'] else ''}",
        "",
        f"Findings ({len(m['findings'])})",
    ]
    for f in m["findings"]:
        lines.extend(_finding_text(f))
    if related:
        lines += ["", "Cards and feedback", *related_lines(related)]
    if m["missing_data"]:
        lines += ["", "Missing data that could change the result"]
        for d in m["missing_data"]:
            rules = ", ".join(map(str, d.get("rules") or ()))
            lines.append(f"  {d.get('pointer')} [{d.get('urgency', '')}] rules: {rules}")
    if m["inputs"]:
        lines += ["", f"Input facts ({len(m['inputs'])})"]
        for row in m["inputs"]:
            source = f"   from {'; '.join(row['sources'])}" if row["sources"] else ""
            lines.append(f"  {row['name']}: {row['value']}{source}")
    if m["not_fired"]:
        lines += ["", f"Rules that did not fire ({len(m['not_fired'])})"]
        for n in m["not_fired"]:
            lines.append(f"  {n.get('rule')} ({n.get('state')}): {why_not(n)}")
    if m["errors"]:
        lines += ["", "Errors"]
        for e in m["errors"]:
            message = e.get("message", "(message redacted)")
            lines.append(f"  [{e.get('kind')}] {e.get('pack')}/{e.get('rule')}: {message}")
    lines += ["", "Decision support for a clinician, not a diagnosis."]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;max-width:60rem;color:#1a1a1a}
table{border-collapse:collapse}
.finding{border:1px solid #ddd;border-radius:.4rem;padding:.6rem 1rem;margin:.8rem 0}
ul.tree{list-style:none;padding-left:1.2rem;border-left:2px solid #e0e0e0}
""" + REPORT_CSS


def _tree_html(nodes: list[dict[str, Any]]) -> str:
    if not nodes:
        return ""
    items = []
    for node in nodes:
        if node["kind"] == "fact":
            label = f"fact <code>{escape_html(node['label'])}</code> = <code>{escape_html(_value_text(node))}</code>"
        elif node["kind"] == "derived":
            value = f" = <code>{escape_html(_value_text(node))}</code>" if "value" in node else ""
            rule = f' <span class="muted">(rule {escape_html(node.get("rule"))})</span>' if node.get("rule") else ""
            label = f"derived <code>{escape_html(node['label'])}</code>{value}{rule}"
        else:
            label = f"finding <code>{escape_html(node['label'])}</code> {urgency_badge(node.get('urgency'))}"
        items.append(f"<li>{label}{_tree_html(node.get('children', []))}</li>")
    return f'<ul class="tree">{"".join(items)}</ul>'


def _verification_html(report: VerifyReport | None, sequence: int) -> str:
    if report is None:
        return "<p>Verification was not run.</p>"
    intact = report.verified_through >= sequence
    if intact:
        chain = f'<span class="ok">verified</span> from sequence 1 through {report.verified_through}'
    else:
        first_bad = escape_html(report.first_bad_sequence)
        chain = f'<span class="bad">NOT verified</span>: first problem at sequence {first_bad}'
    cp = report.covering_checkpoint(sequence) if intact else None
    if cp is None:
        cover = '<span class="bad">no signed checkpoint covers this record yet</span>'
    else:
        state = {"valid": "signature verified", "unchecked": "signature not checked (no public key)"}
        cover = (
            f"checkpoint {cp.checkpoint_sequence} (signs sequence {cp.covers}, key {escape_html(cp.key_id)}): "
            f"{escape_html(state.get(cp.signature, cp.signature))}"
        )
    problems = "".join(
        f"<li>sequence {escape_html(p.sequence)} [{escape_html(p.code)}]: {escape_html(p.reason)}</li>"
        for p in report.problems
    )
    notes = "".join(f"<li>{escape_html(n)}</li>" for n in report.notes)
    return (
        f"<table><tr><th>Hash chain</th><td>{chain}</td></tr>"
        f"<tr><th>Checkpoint</th><td>{cover}</td></tr></table>"
        + (f"<p>Problems:</p><ul>{problems}</ul>" if problems else "")
        + (f'<ul class="muted">{notes}</ul>' if notes else "")
    )


def _list_html(title: str, items: list[str]) -> str:
    return f"<p><b>{title}</b></p><ul>{''.join(f'<li>{i}</li>' for i in items)}</ul>" if items else ""


def _finding_html(f: Mapping[str, Any]) -> str:
    parts = [
        f"<h3>{urgency_badge(f['urgency'])} {escape_html(f['title'])} "
        f"<span class='muted'><code>{escape_html(f['id'])}</code></span></h3>",
        f"<p class='muted'>rule <code>{escape_html(f['rule'])}</code>, pack <code>{escape_html(f['pack'])}</code></p>",
    ]
    if f.get("detail"):
        parts.append(f"<p>{escape_html(f['detail'])}</p>")
    if f["because"]:
        parts.append(f"<p><b>Because</b></p>{_tree_html(f['because'])}")
    parts.append(_list_html("Not recorded (unknown)", [escape_html(name_of(u)) for u in f["unknown"]]))
    parts.append(_list_html("Recommendations", [escape_html(r) for r in f["recommendations"]]))
    evidence = [
        f"{escape_html(e.get('source'))} <span class='muted'>{escape_html(e.get('citation'))}</span>"
        for e in f["evidence"]
    ]
    parts.append(_list_html("Evidence", evidence))
    return f"<div class='finding'>{''.join(parts)}</div>"


def _row(label: str, html_value: str) -> str:
    return f"<tr><th>{label}</th><td>{html_value}</td></tr>"


def _inputs_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{escape_html(r['name'])}</td><td>{escape_html(r['value'])}</td>"
        f"<td class='muted'>{escape_html('; '.join(r['sources']))}</td></tr>"
        for r in rows
    )
    return f"<h2>Input facts ({len(rows)})</h2><table><tr><th>Fact</th><th>Value</th><th>From</th></tr>{body}</table>"


def render_html(
    record: Mapping[str, Any], report: VerifyReport | None = None, related: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """A self-contained HTML page for one decision record."""
    m = why_model(record)
    eng = m["engine"]
    packs = [
        f"<code>{escape_html(p.get('name'))}</code> {escape_html(p.get('version'))} "
        f"[{escape_html(p.get('status', 'ok'))}] "
        f"<span class='muted'>sha256 {escape_html(p.get('sha256'))}</span>"
        for p in m["packs"]
    ]
    missing = [
        f"<code>{escape_html(d.get('pointer'))}</code> {urgency_badge(d.get('urgency'))}" for d in m["missing_data"]
    ]
    errors = [
        f"[{escape_html(e.get('kind'))}] {escape_html(e.get('pack'))}/{escape_html(e.get('rule'))}: "
        f"{escape_html(e.get('message', '(message redacted)'))}"
        for e in m["errors"]
    ]
    engine = (
        f"{escape_html(eng.get('name'))} {escape_html(eng.get('version'))}, backend {escape_html(eng.get('backend'))}, "
        f"verified {escape_html(eng.get('verified'))}"
    )
    complete = "yes" if m["complete"] else '<span class="bad">NO: some rules could not be decided</span>'
    facts = f"<code>{escape_html(m['facts_sha256'])}</code>" + (" (facts redacted)" if m["redacted"] else "")
    rows = "".join(
        [
            _row("Sequence", escape_html(m["sequence"])),
            _row("Evaluated", escape_html(m["evaluated_at"])),
            _row("Recorded", escape_html(m["recorded_at"])),
            _row("Engine", engine),
            _row("Highest urgency", urgency_badge(m["highest_urgency"])),
            _row("Complete", complete),
            _row("Facts SHA-256", facts),
            _row("Patient pseudonym", f"<code>{escape_html(m['patient_pseudonym'])}</code>"),
        ]
    )
    findings = "".join(_finding_html(f) for f in m["findings"]) or "<p>No findings.</p>"
    title = f"neurocds decision {escape_html(m['decision_id'])}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body><h1>{title}</h1>
<table>{rows}</table>
<h2>Verification</h2>{_verification_html(report, int(m["sequence"] or 0))}
<h2>Packs</h2><ul>{"".join(f"<li>{p}</li>" for p in packs)}</ul>
<h2>Findings ({len(m["findings"])})</h2>{findings}
{_list_html("Cards and feedback", [escape_html(x.strip()) for x in related_lines(related or [])])}
{_inputs_html(m["inputs"])}
{_list_html("Rules that did not fire, and why", [f"<code>{escape_html(n.get('rule'))}</code> "
            f"({escape_html(n.get('state'))}): {escape_html(why_not(n))}" for n in m["not_fired"]])}
{_list_html("Missing data", missing)}
{_list_html("Errors", errors)}
<p class="disclaimer">Decision support for a clinician, not a diagnosis.</p>
</body></html>
"""
