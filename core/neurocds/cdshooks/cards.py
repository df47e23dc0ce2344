"""Engine result -> CDS Hooks cards.

Everything shown comes from the result document (findings, missing data, packs,
errors, disclaimer) and the facts schema labels; nothing clinical is written
here. All text is Markdown-escaped: fact values come from the EHR and pack
text is plain text, and neither may turn into links or HTML in the EHR's view.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from neurocds.explain.render import LabelOf, Namer, fact_name, value_words

SUMMARY_MAX = 139  # the spec: summary "<140 characters"
FINDING_SYSTEM = "urn:neurocds:finding"
NOTICE_SYSTEM = "urn:neurocds:notice"
OVERRIDE_SYSTEM = "urn:neurocds:override-reason"
INDICATOR = {"emergency": "critical", "urgent": "warning"}  # everything else: info
INDICATOR_RANK = {"critical": 2, "warning": 1, "info": 0}
URGENCY_RANK = {"emergency": 4, "urgent": 3, "routine": 2, "info": 1, "none": 0}
MISSING_IN_SUMMARY = 4
MISSING_ON_CARD = 10

# Offered on every card so that feedback carries a coded reason the audit log can count.
OVERRIDE_REASONS: tuple[dict[str, str], ...] = (
    {"system": OVERRIDE_SYSTEM, "code": "not-applicable", "display": "Not applicable to this patient"},
    {"system": OVERRIDE_SYSTEM, "code": "already-addressed", "display": "Already addressed"},
    {"system": OVERRIDE_SYSTEM, "code": "data-incorrect", "display": "Recorded data is incorrect"},
    {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement", "display": "Clinical judgement differs"},
)

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")

# Where the service serves each finding's DSI source-attribute sheet (a finding card's source.url).
SHEET_PATH = "/dsi/sheet"


def md(text: Any) -> str:
    """Plain text as inert GitHub-flavoured Markdown (no links, emphasis or HTML)."""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;")
    value = _MD_SPECIAL.sub(r"\\\1", value)
    # Line breaks would let a value start a heading or list of its own.
    return " ".join(value.split())


def truncate(text: str, limit: int = SUMMARY_MAX) -> str:
    """At most ``limit`` characters, cut at a word boundary where one is near, marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def _because_lines(because: Iterable[Mapping[str, Any]], names: Namer) -> list[str]:
    """One line per reason; a fact two rule tests read (K < 3.0 and K < 2.5) is one line naming both."""
    order: list[str | tuple[str, str]] = []
    tests: dict[tuple[str, str], list[str]] = {}
    for item in because:
        if "pointer" in item:
            name = md(names.fact(str(item["pointer"])))
            if item.get("recorded"):
                shown = md(value_words(item.get("value"))) if "value" in item else "recorded"
            else:
                shown = "**not recorded**"
            if (name, shown) not in tests:
                tests[(name, shown)] = []
                order.append((name, shown))
            if item.get("test"):
                tests[(name, shown)].append(md(item["test"]))
        elif "derived" in item:  # named, and followed by the recorded facts it was derived from
            order.append(f"- {md(names.expanded(item))}")
        elif "finding" in item:
            order.append(f"- {md(names.item(item))}")
    lines = []
    for entry in order:
        if isinstance(entry, str):
            lines.append(entry)
            continue
        listed = tests[entry]
        label = "rule test" if len(listed) == 1 else "rule tests"
        lines.append(f"- {entry[0]}: {entry[1]}" + (f" ({label}: {'; '.join(listed)})" if listed else ""))
    return lines


def _pack_versions(result: Mapping[str, Any]) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("version", "")) for p in result.get("packs") or ()}


def _source(label: str, system: str, code: str, display: str) -> dict[str, Any]:
    return {"label": label, "topic": {"system": system, "code": code, "display": truncate(display, 200)}}


def _card(summary: str, indicator: str, detail: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": truncate(summary),
        "indicator": indicator,
        "detail": detail,
        "source": source,
        "overrideReasons": [dict(r) for r in OVERRIDE_REASONS],
    }


def finding_card(
    finding: Mapping[str, Any],
    versions: Mapping[str, str],
    disclaimer: str,
    names: Namer,
    sheet_url: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    urgency = str(finding.get("urgency", "info"))
    title = str(finding.get("title") or finding.get("id"))
    parts = [f"**Urgency: {md(urgency)}**", md(finding.get("detail", ""))]
    because = _because_lines(finding.get("because") or (), names)
    if because:
        parts.append("**Why this was raised**\n\n" + "\n".join(because))
    unknown = [f"- {md(names.fact(p))}" for p in finding.get("unknown") or ()]
    if unknown:
        parts.append("**Not recorded, and could change this (raise it, or withdraw it)**\n\n" + "\n".join(unknown))
    recs = [f"- {md(r)}" for r in finding.get("recommendations") or ()]
    if recs:
        parts.append("**Consider**\n\n" + "\n".join(recs))
    evidence = [f"- {md(e.get('source', ''))}: {md(e.get('citation', ''))}" for e in finding.get("evidence") or ()]
    if evidence:
        parts.append("**Evidence**\n\n" + "\n".join(evidence))
    parts.append(f"_{md(disclaimer)}_")
    pack = str(finding.get("pack", ""))
    label = f"neurocds {pack} {versions.get(pack, '')}".strip()
    source = _source(label, FINDING_SYSTEM, str(finding.get("id")), title)
    if sheet_url is not None:
        # CDS Hooks' Source.url: where the user learns about the source, here the finding's
        # DSI source-attribute sheet (citation, developer, funding, dates, use of attributes).
        source["url"] = sheet_url(str(finding.get("id")))
    return _card(title, INDICATOR.get(urgency, "info"), "\n\n".join(parts), source)


def incomplete_card(result: Mapping[str, Any], disclaimer: str) -> dict[str, Any]:
    """Said whenever a pack failed or the evaluation is incomplete: silence must not read as 'all clear'."""
    failed = [p for p in result.get("packs") or () if p.get("status") == "failed"]
    errors = list(result.get("errors") or ())
    names = sorted({str(p.get("name")) for p in failed} | {str(e["pack"]) for e in errors if e.get("pack")})
    lines = []
    for name in names:
        stages = sorted({str(e.get("stage") or e.get("kind") or "evaluation") for e in errors if e.get("pack") == name})
        lines.append(f"- pack {md(name)} failed ({md(', '.join(stages) or 'load')})")
    for e in errors:
        if not e.get("pack"):
            lines.append(f"- engine problem: {md(e.get('kind') or e.get('stage') or 'error')}")
    what = f"{len(names)} rule pack(s) failed" if names else "the evaluation did not complete"
    detail = "\n\n".join(
        [
            f"**Decision support is incomplete: {what}.** Advice these packs would have given is missing, "
            "so the absence of a card is not reassurance. The engine's operators have the details.",
            "\n".join(lines) or "- no further detail",
            f"_{md(disclaimer)}_",
        ]
    )
    summary = f"Decision support incomplete: {what}; advice may be missing"
    return _card(summary, "warning", detail, _source("neurocds", NOTICE_SYSTEM, "incomplete", "Incomplete evaluation"))


def missing_data_card(
    missing: Sequence[Mapping[str, Any]], notes: Sequence[str], disclaimer: str, label_of: LabelOf
) -> dict[str, Any]:
    """One card for the unknown facts that would most change the picture, most urgent first."""
    ordered = sorted(missing, key=lambda m: -URGENCY_RANK.get(str(m.get("urgency")), 0))  # stable: keeps engine order
    names = [_missing_label(m, label_of) for m in ordered]
    parts = []
    if ordered:
        brief = [re.sub(r"\s*\([^)]*\)", "", n) for n in names]  # parentheticals cost summary space
        shown = "; ".join(brief[:MISSING_IN_SUMMARY]) + ("; …" if len(brief) > MISSING_IN_SUMMARY else "")
        summary = f"Not recorded: {shown}"
        lines = []
        for m, name in list(zip(ordered, names, strict=True))[:MISSING_ON_CARD]:
            count = len(m.get("findings") or ())
            lines.append(
                f"- **{md(name)}**: could lead to advice up to {md(m.get('urgency', 'info'))} urgency "
                f"({count} possible finding{'s' if count != 1 else ''})"
            )
        if len(ordered) > MISSING_ON_CARD:
            lines.append(f"- and {len(ordered) - MISSING_ON_CARD} more facts that are not recorded")
        parts.append("Recording these facts would most change the advice, most urgent first:\n\n" + "\n".join(lines))
    else:
        summary = "Some EHR data was not available to decision support"
    if notes:
        # First, and named in the summary: a value dropped for its unit is one the rules never saw,
        # and EHRs often show the summary alone.
        listed = "\n".join(f"- {md(n)}" for n in notes)
        parts.insert(0, f"**Data the EHR did not supply or that could not be read**\n\n{listed}")
        if ordered:
            count = f"{len(notes)} note{'s' if len(notes) != 1 else ''}"
            summary = f"EHR data not used ({count}); {summary[0].lower()}{summary[1:]}"
    parts.append(f"_{md(disclaimer)}_")
    source = _source("neurocds", NOTICE_SYSTEM, "missing-data", "Facts not recorded")
    return _card(summary, "info", "\n\n".join(parts), source)


def _missing_label(item: Mapping[str, Any], label_of: LabelOf) -> str:
    pointer = str(item.get("pointer", ""))
    label = item.get("label")
    return fact_name(pointer, label if isinstance(label, str) and label else label_of(pointer))


def build_cards(
    result: Mapping[str, Any],
    *,
    label_of: LabelOf,
    notes: Sequence[str] = (),
    sheet_url: Callable[[str], str] | None = None,
) -> list[dict[str, Any]]:
    """Cards for one result, most urgent first.

    :param notes: plain-language notes about the input (prefetch keys not sent, values
        skipped by the FHIR converter); shown on the missing-data card.
    :param sheet_url: finding id -> the URL of its source-attribute sheet, put in each
        finding card's ``source.url``.
    """
    disclaimer = str(result.get("disclaimer", ""))
    versions = _pack_versions(result)
    findings = sorted(
        result.get("findings") or (), key=lambda f: -URGENCY_RANK.get(str(f.get("urgency")), 0)
    )  # stable: the engine's order breaks ties
    names = Namer(result, label_of)
    cards = [finding_card(f, versions, disclaimer, names, sheet_url) for f in findings]
    failed = any(p.get("status") == "failed" for p in result.get("packs") or ())
    if failed or not result.get("complete", False):
        cards.append(incomplete_card(result, disclaimer))
    missing = list(result.get("missing_data") or ())
    if missing or notes:
        cards.append(missing_data_card(missing, notes, disclaimer, label_of))
    # Stable sort by indicator: findings keep their order inside each level, notices follow findings.
    cards.sort(key=lambda c: -INDICATOR_RANK[c["indicator"]])
    return cards
