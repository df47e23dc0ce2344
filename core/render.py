"""Plain-text rendering of results and explanations for a clinician's terminal.

Everything shown comes from the result document (titles, details and labels are
the packs' and the schema's words); this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

URGENCY_ORDER = ("emergency", "urgent", "routine", "info")
URGENCY_HEADING = {
    "emergency": "EMERGENCY - act now (minutes to hours)",
    "urgent": "URGENT - same day",
    "routine": "ROUTINE",
    "info": "FOR INFORMATION",
}


def pointer_words(pointer: str) -> str:
    """``/section/field_name`` -> ``section: field name``."""
    parts = [p.replace("~1", "/").replace("~0", "~").replace("_", " ") for p in pointer.strip("/").split("/")]
    return ": ".join(parts) if parts else pointer


def short_label(label: str | None, limit: int = 70) -> str:
    """The first sentence of a field's schema description, as a parenthesis."""
    if not label:
        return ""
    first = label.split(". ")[0].split("; ")[0].rstrip(".")
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return f" ({first})"


def value_words(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no (recorded as absent)"
    if isinstance(value, list):
        return ", ".join(str(v.get("name", v)) if isinstance(v, Mapping) else str(v) for v in value) or "none"
    return str(value)


def because_line(item: Mapping[str, Any]) -> str:
    if "derived" in item:
        value = item.get("value", True)
        return f"derived: {item['derived']}" + ("" if value is True else f" = {value}")
    if "finding" in item:
        return f"finding: {item['finding']}"
    name = pointer_words(item["pointer"])
    if not item.get("recorded", True):
        return f"{name}: not recorded"
    return f"{name}: {value_words(item.get('value'))}"


def because_expanded(item: Mapping[str, Any], derived: Mapping[tuple[str, str], Mapping[str, Any]]) -> str:
    """A because-item in words; a derived fact is followed by the recorded facts it came from."""
    line = because_line(item)
    entry = derived.get((item["derived"], repr(item.get("value", True)))) if "derived" in item else None
    if entry and entry.get("because"):
        inner = ", ".join(because_line(b) for b in entry["because"] if "pointer" in b)
        if inner:
            line = f"{line} ({inner})"
    return line


def render_result(result: Mapping[str, Any], *, patient_id: str | None = None, max_missing: int = 12) -> str:
    lines: list[str] = []
    who = f" for patient {patient_id}" if patient_id else ""
    lines.append(f"neurocds decision support{who}")
    lines.append(
        f"Highest urgency: {result['highest_urgency'].upper()}   "
        f"({len(result['findings'])} finding(s), backend {result['engine']['backend']}"
        f"{', verified' if result['engine'].get('verified') else ''})"
    )
    if result["engine"].get("note"):
        lines.append(f"Note: {result['engine']['note']}; the pure-Python reference evaluator answered.")
    if not result["complete"]:
        lines.append("")
        lines.append("!! INCOMPLETE: part of the rule base could not be evaluated. Absence of a finding below")
        lines.append("!! does NOT mean all clear.")
        for error in result["errors"]:
            where = (
                f" [{error.get('pack')}{' / ' + error['rule'] if error.get('rule') else ''}]"
                if error.get("pack")
                else ""
            )
            lines.append(f"!!  - {error.get('kind') or error.get('stage')}{where}: {error['message']}")
    derived = _derived_index(result)
    for urgency in URGENCY_ORDER:
        group = [f for f in result["findings"] if f["urgency"] == urgency]
        if not group:
            continue
        lines += ["", f"== {URGENCY_HEADING[urgency]} =="]
        for finding in group:
            lines.append(f"* {finding['title']}  [{finding['id']}]")
            lines.append(f"  {finding['detail']}")
            lines.append("  Because: " + "; ".join(because_expanded(b, derived) for b in finding["because"]))
            for step in finding["recommendations"]:
                lines.append(f"  - {step}")
            if finding.get("unknown"):
                lines.append("  Would change with: " + ", ".join(pointer_words(p) for p in finding["unknown"]))
            sources = sorted({e["source"] for e in finding["evidence"]})
            lines.append("  Evidence: " + "; ".join(sources))
    if result["complete"] and not result["findings"]:
        lines += ["", "No finding fired on the facts supplied."]
    lines += render_undecided(result)
    missing = result["missing_data"][:max_missing]
    if missing:
        lines += ["", "== Not recorded - would most change the picture =="]
        for item in missing:
            label = short_label(item.get("label"))
            shown = ", ".join(item["findings"][:3])
            more = f" (+{len(item['findings']) - 3} more)" if len(item["findings"]) > 3 else ""
            lines.append(f"- [{item['urgency']}] {pointer_words(item['pointer'])}{label}")
            lines.append(f"    could decide: {shown}{more}")
        if len(result["missing_data"]) > max_missing:
            lines.append(f"  ... and {len(result['missing_data']) - max_missing} more (see --format json)")
    lines += ["", result["disclaimer"]]
    return "\n".join(lines)


def render_undecided(result: Mapping[str, Any]) -> list[str]:
    """Emergency and urgent rules already partly met, with exactly the facts that would decide them."""
    shown: dict[str, Mapping[str, Any]] = {}
    fired = {f["id"] for f in result["findings"]}
    for entry in result["trace"].get("not_fired", []):
        finding = entry.get("concludes", {}).get("finding")
        if (
            entry["state"] == "unknown"
            and finding
            and finding not in fired
            and entry.get("conditions_met")
            and entry.get("urgency") in ("emergency", "urgent")
        ):
            best = shown.get(finding)
            if (
                best is None
                or entry["conditions_met"] / entry["conditions_total"]
                > best["conditions_met"] / best["conditions_total"]
            ):
                shown[finding] = entry
    if not shown:
        return []
    lines = ["", "== Undecided - partly met; record these to decide =="]
    for finding, entry in sorted(shown.items(), key=lambda kv: (URGENCY_ORDER.index(kv[1]["urgency"]), kv[0])):
        facts = ", ".join(pointer_words(p) for p in entry["unknown_facts"])
        lines.append(f"- [{entry['urgency']}] {entry['title']} [{finding}]")
        lines.append(f"    record: {facts}")
    return lines


def _derived_index(result: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(d["name"], repr(d["value"])): d for d in result["derived"]}


def render_why(result: Mapping[str, Any], items: Sequence[Mapping[str, Any]], indent: str, seen: set[str]) -> list[str]:
    """The because-tree: derived facts and findings expanded back to the input facts."""
    lines: list[str] = []
    derived = _derived_index(result)
    fired = {f["rule"]: f for f in result["trace"]["fired"]}
    findings = {f["id"]: f for f in result["findings"]}
    for item in items:
        lines.append(f"{indent}- {because_line(item)}")
        if "derived" in item:
            entry = derived.get((item["derived"], repr(item.get("value", True))))
            if entry and entry.get("rule") and entry["rule"] not in seen:
                seen.add(entry["rule"])
                lines.append(f"{indent}  (rule {entry['rule']})")
                lines += render_why(result, entry["because"], indent + "    ", seen)
        elif "finding" in item and item["finding"] in findings:
            finding = findings[item["finding"]]
            for rule_id in finding["rules"]:
                if rule_id in fired and rule_id not in seen:
                    seen.add(rule_id)
                    lines.append(f"{indent}  (rule {rule_id})")
                    lines += render_why(result, fired[rule_id]["because"], indent + "    ", seen)
    return lines


def render_rule_state(result: Mapping[str, Any], rule_id: str) -> list[str]:
    for entry in result["trace"]["fired"]:
        if entry["rule"] == rule_id:
            return [f"Rule {rule_id} FIRED because:", *render_why(result, entry["because"], "  ", {rule_id})]
    for entry in result["trace"]["not_fired"]:
        if entry["rule"] == rule_id:
            if entry["state"] == "false":
                out = [f"Rule {rule_id} did NOT fire: these conditions are false on the recorded facts:"]
                out += [
                    f"  - {because_line(b)} (needs {b.get('test', '')})"
                    if "test" in b
                    else f"  - {because_line(b)} (not concluded)"
                    for b in entry.get("false_conditions", [])
                ]
                return out
            out = [f"Rule {rule_id} could NOT be decided: these facts are not recorded:"]
            out += [f"  - {pointer_words(p)}" for p in entry.get("unknown_facts", [])]
            return out
    return [f"Rule {rule_id} is not in the loaded packs."]
