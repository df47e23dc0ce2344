"""Plain-text rendering of results and explanations for a clinician's terminal.

Everything shown comes from the result document (titles, details and labels are
the packs' and the schema's words); this module only lays them out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_CODE_WORD = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")
URGENCY_ORDER = ("emergency", "urgent", "routine", "info")
URGENCY_HEADING = {
    "emergency": "EMERGENCY - act now (minutes to hours)",
    "urgent": "URGENT - same day",
    "routine": "ROUTINE",
    "info": "FOR INFORMATION",
}


LabelOf = Callable[[str], "str | None"]

# What must never reach a terminal raw: C0 and C1 controls but newline and tab (an
# ESC starts an ANSI sequence that can recolour, move the cursor or retitle the
# window), bidirectional overrides (they reorder what the reader sees), and unpaired
# surrogates (no terminal encoding can carry them).
_TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def terminal_safe(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape (``\\x1b``)."""
    return _TERMINAL_UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def pointer_words(pointer: str) -> str:
    """``/section/field_name`` -> ``section: field name`` (for facts the schema gives no title)."""
    parts = [p.replace("~1", "/").replace("~0", "~").replace("_", " ") for p in pointer.strip("/").split("/")]
    return ": ".join(parts) if parts else pointer


def fact_name(pointer: str, label: str | None) -> str:
    """A fact's name for people: its label's first sentence, else the pointer in words.

    Labels are the facts schema's titles; a field with only a description (a pack's own
    field, say) gets that description's first sentence, since the rest explains the
    contract (units, tri-state), not the fact.
    """
    first = re.split(r"\.\s|;", label, maxsplit=1)[0].strip().rstrip(".") if label else ""
    return first or pointer_words(pointer)


def value_words(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no (recorded as absent)"
    if isinstance(value, list):
        return ", ".join(value_words(v) for v in value) or "none"
    if isinstance(value, Mapping):  # a list item: its name, then its other members ("furosemide (class: ...)")
        rest = ", ".join(f"{k}: {value_words(v)}" for k, v in value.items() if k != "name")
        if "name" not in value:
            return rest
        return f"{value['name']} ({rest})" if rest else str(value["name"])
    if isinstance(value, str) and _CODE_WORD.fullmatch(value):
        return value.replace("_", " ")  # an enumerated code ("nerve_root_compression") read as words
    return str(value)


class Namer:
    """Words for the facts, derived facts and findings a result refers to.

    Facts are named by ``label_of`` (the facts schema's titles, through the engine),
    derived facts by the title of the rule that derived them, findings by their title;
    each falls back to its identifier, so a result alone can always be rendered.
    """

    def __init__(self, result: Mapping[str, Any], label_of: LabelOf | None = None) -> None:
        self.label_of = label_of
        self.derived = _derived_index(result)
        self.finding_titles = {f["id"]: f["title"] for f in result.get("findings", [])}

    def fact(self, pointer: str) -> str:
        return fact_name(pointer, self.label_of(pointer) if self.label_of is not None else None)

    def item(self, item: Mapping[str, Any]) -> str:
        """One because-item in words."""
        if "derived" in item:
            value = item.get("value", True)
            entry = self.derived.get((item["derived"], repr(value)))
            if entry and entry.get("title"):
                return str(entry["title"])
            return f"{item['derived']}" + ("" if value is True else f" = {value}")
        if "finding" in item:
            title = self.finding_titles.get(item["finding"])
            return f"{title} [{item['finding']}]" if title else f"finding {item['finding']}"
        name = self.fact(item["pointer"])
        if not item.get("recorded", True):
            return f"{name}: not recorded"
        return f"{name}: {value_words(item.get('value'))}"

    def expanded(self, item: Mapping[str, Any]) -> str:
        """A because-item in words; a derived fact is followed by the recorded facts it rests on.

        Derived facts built on derived facts are flattened: the recorded facts under all of
        them are listed once, in one parenthesis, so the reason never nests three deep.
        """
        line = self.item(item)
        inner = "; ".join(self.recorded_under(item))
        return f"{line} ({inner})" if inner else line

    def recorded_under(self, item: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
        """The recorded facts a derived fact rests on, through any derived facts between, once each."""
        if "derived" not in item or item["derived"] in seen:
            return []
        entry = self.derived.get((item["derived"], repr(item.get("value", True))))
        out: list[str] = []
        for below in (entry or {}).get("because") or ():
            if "derived" in below:
                out += self.recorded_under(below, seen | {item["derived"]})
            elif "pointer" in below:
                out.append(self.item(below))
        return _unique(out)

    def because_text(self, because: Iterable[Mapping[str, Any]]) -> str:
        """A finding's reasons on one line; a fact already named under a derived fact is not repeated."""
        items = list(because)
        shown_under = {text for item in items for text in self.recorded_under(item)}
        lines = [self.expanded(item) for item in items if "pointer" not in item or self.item(item) not in shown_under]
        return "; ".join(_unique(lines))


def _unique(lines: Iterable[str]) -> list[str]:
    """Lines in order without repeats (two tests on one fact read the same in words)."""
    return list(dict.fromkeys(lines))


def render_result(
    result: Mapping[str, Any],
    *,
    patient_id: str | None = None,
    max_missing: int = 12,
    label_of: LabelOf | None = None,
) -> str:
    """The result for a clinician's terminal. ``label_of`` names facts (the engine's ``label_of``)."""
    names = Namer(result, label_of)
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
    for urgency in URGENCY_ORDER:
        group = [f for f in result["findings"] if f["urgency"] == urgency]
        if not group:
            continue
        lines += ["", f"== {URGENCY_HEADING[urgency]} =="]
        for finding in group:
            lines.append(f"* {finding['title']}  [{finding['id']}]")
            lines.append(f"  {finding['detail']}")
            lines.append("  Because: " + names.because_text(finding["because"]))
            for step in finding["recommendations"]:
                lines.append(f"  - {step}")
            if finding.get("unknown"):
                unknown = ", ".join(names.fact(p) for p in finding["unknown"])
                lines.append(f"  Would change with, not recorded: {unknown}")
            sources = sorted({e["source"] for e in finding["evidence"]})
            lines.append("  Evidence: " + "; ".join(sources))
    if result["complete"] and not result["findings"]:
        lines += ["", "No finding fired on the facts supplied."]
    lines += render_undecided(result, names)
    missing = result["missing_data"][:max_missing]
    if missing:
        lines += ["", "== Not recorded - would most change the picture =="]
        for item in missing:
            shown = ", ".join(item["findings"][:3])
            more = f" (+{len(item['findings']) - 3} more)" if len(item["findings"]) > 3 else ""
            lines.append(f"- [{item['urgency']}] {names.fact(item['pointer'])}")
            lines.append(f"    could decide: {shown}{more}")
        if len(result["missing_data"]) > max_missing:
            lines.append(f"  ... and {len(result['missing_data']) - max_missing} more (see --format json)")
    lines += ["", result["disclaimer"]]
    # Names and values come from the document: escaped here, once, for every line.
    return terminal_safe("\n".join(lines))


def render_undecided(result: Mapping[str, Any], names: Namer | None = None) -> list[str]:
    """Emergency and urgent rules already partly met, with exactly the facts that would decide them."""
    names = names or Namer(result)
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
    # These rules did NOT fire: their titles are what they would say, so each is framed as open.
    lines = ["", "== Not decided - partly met; recording these facts would decide them =="]
    for finding, entry in sorted(shown.items(), key=lambda kv: (URGENCY_ORDER.index(kv[1]["urgency"]), kv[0])):
        facts = ", ".join(names.fact(p) for p in entry["unknown_facts"])
        lines.append(f"- [{entry['urgency']}] open: {entry['title']} [{finding}]")
        lines.append(f"    record: {facts}")
    return lines


def _derived_index(result: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(d["name"], repr(d["value"])): d for d in result.get("derived") or ()}


def render_why(
    result: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    indent: str,
    seen: set[str],
    names: Namer | None = None,
) -> list[str]:
    """The because-tree: derived facts and findings expanded back to the input facts."""
    names = names or Namer(result)
    lines: list[str] = []
    fired = {f["rule"]: f for f in result["trace"]["fired"]}
    findings = {f["id"]: f for f in result["findings"]}
    for item in items:
        lines.append(f"{indent}- {names.item(item)}")
        if "derived" in item:
            entry = names.derived.get((item["derived"], repr(item.get("value", True))))
            if entry and entry.get("rule") and entry["rule"] not in seen:
                seen.add(entry["rule"])
                lines.append(f"{indent}  (rule {entry['rule']})")
                lines += render_why(result, entry["because"], indent + "    ", seen, names)
        elif "finding" in item and item["finding"] in findings:
            finding = findings[item["finding"]]
            for rule_id in finding["rules"]:
                if rule_id in fired and rule_id not in seen:
                    seen.add(rule_id)
                    lines.append(f"{indent}  (rule {rule_id})")
                    lines += render_why(result, fired[rule_id]["because"], indent + "    ", seen, names)
    return lines


def render_rule_state(result: Mapping[str, Any], rule_id: str, label_of: LabelOf | None = None) -> list[str]:
    """Why ``rule_id`` fired, did not, or could not be decided (terminal-safe lines)."""
    return [terminal_safe(line) for line in _rule_state_lines(result, rule_id, label_of)]


def _rule_state_lines(result: Mapping[str, Any], rule_id: str, label_of: LabelOf | None) -> list[str]:
    names = Namer(result, label_of)
    for entry in result["trace"]["fired"]:
        if entry["rule"] == rule_id:
            return [f"Rule {rule_id} FIRED because:", *render_why(result, entry["because"], "  ", {rule_id}, names)]
    for entry in result["trace"]["not_fired"]:
        if entry["rule"] == rule_id:
            if entry["state"] == "false":
                out = [f"Rule {rule_id} did NOT fire: these conditions are false on the recorded facts:"]
                out += [
                    f"  - {names.item(b)} (needs {b.get('test', '')})"
                    if "test" in b
                    else f"  - {names.item(b)} (not concluded)"
                    for b in entry.get("false_conditions", [])
                ]
                return out
            out = [f"Rule {rule_id} could NOT be decided: these facts are not recorded:"]
            out += [f"  - {names.fact(p)}" for p in entry.get("unknown_facts", [])]
            return out
    return [f"Rule {rule_id} is not in the loaded packs."]
