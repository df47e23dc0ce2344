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

from neurocds.cdshooks.markdown import md, truncate
from neurocds.cdshooks.orders import FactSources
from neurocds.cdshooks.removals import draft_offers, is_medication_list
from neurocds.explain.render import LabelOf, Namer, fact_name, value_words
from neurocds.rules.ruleset import WorsenedBy

FINDING_SYSTEM = "urn:neurocds:finding"
NOTICE_SYSTEM = "urn:neurocds:notice"
OVERRIDE_SYSTEM = "urn:neurocds:override-reason"
INDICATOR = {"emergency": "critical", "urgent": "warning"}  # everything else: info
INDICATOR_RANK = {"critical": 2, "warning": 1, "info": 0}
URGENCY_RANK = {"emergency": 4, "urgent": 3, "routine": 2, "info": 1, "none": 0}
DECIDING_URGENCIES = ("emergency", "urgent")
MISSING_IN_SUMMARY = 4
MISSING_ON_CARD = 10

# Offered on every card so that feedback carries a coded reason the audit log can count.
OVERRIDE_REASONS: tuple[dict[str, str], ...] = (
    {"system": OVERRIDE_SYSTEM, "code": "not-applicable", "display": "Not applicable to this patient"},
    {"system": OVERRIDE_SYSTEM, "code": "already-addressed", "display": "Already addressed"},
    {"system": OVERRIDE_SYSTEM, "code": "data-incorrect", "display": "Recorded data is incorrect"},
    {"system": OVERRIDE_SYSTEM, "code": "clinical-judgement", "display": "Clinical judgement differs"},
)

# Where the service serves each finding's DSI source-attribute sheet (a finding card's source.url).
SHEET_PATH = "/dsi/sheet"


def _medication_words(pointer: str, value: Any, sources: FactSources) -> str:
    """Medicines by name; those the clinician is ordering right now are marked as drafts."""
    items = value if isinstance(value, list) else [value]
    base = pointer if isinstance(value, list) else pointer.rsplit("/", 1)[0]
    words = []
    for index, med in enumerate(items):
        where = f"{base}/{index}" if isinstance(value, list) else pointer
        text = value_words(med)
        words.append(f"{text} [draft order, not yet signed]" if sources.is_draft(where) else text)
    return "; ".join(words) or "none"


def _because_lines(because: Iterable[Mapping[str, Any]], names: Namer, sources: FactSources) -> list[str]:
    """One line per fact, in words: its value and the date of the result used; never rule syntax."""
    order: list[str] = []
    for item in because:
        if "pointer" in item:
            pointer = str(item["pointer"])
            name = names.fact(pointer)
            if not item.get("recorded"):
                line = f"- {md(name)}: **not recorded**"
            elif "value" not in item:
                line = f"- {md(name)}: recorded"
            elif is_medication_list(item.get("value")):
                line = f"- {md(name)}: {md(_medication_words(pointer, item['value'], sources))}"
            else:
                line = f"- {md(name)}: {md(value_words(item['value']))}"
            date = sources.dates.get(pointer)
            if date and item.get("recorded"):
                line += f" {md(f'(result of {date})')}"
        elif "derived" in item:  # named, and followed by the recorded facts it was derived from
            line = f"- {md(names.expanded(item))}"
        elif "finding" in item:
            line = f"- {md(names.item(item))}"
        else:
            continue
        if line not in order:  # a fact two rule tests read (K < 3.0 and K < 2.5) is one line
            order.append(line)
    return order


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
    sources: FactSources | None = None,
    link_of: Callable[[str], str] | None = None,
    sheet_url: Callable[[str], str] | None = None,
    worsened_by: Mapping[str, WorsenedBy] | None = None,
    offered_on: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One finding's card. ``offered_on``: draft resource -> summary of the more urgent card that
    already offers its removal (this card names that card instead of offering it again)."""
    sources = sources or FactSources()
    urgency = str(finding.get("urgency", "info"))
    title = str(finding.get("title") or finding.get("id"))
    parts = [f"**Urgency: {md(urgency)}**", md(finding.get("detail", ""))]
    because = _because_lines(finding.get("because") or (), names, sources)
    if because:
        parts.append("**Why this was raised**\n\n" + "\n".join(because))
    unknown = [f"- {md(names.fact(p))}" for p in finding.get("unknown") or ()]
    if unknown:
        parts.append("**Not recorded, and could change this (raise it, or withdraw it)**\n\n" + "\n".join(unknown))
    suggestions, worsening, elsewhere, named = draft_offers(finding, sources, worsened_by or {}, offered_on or {})
    if worsening:
        parts.append("**Being ordered now, and can worsen this**\n\n" + "\n".join(worsening))
    if elsewhere:
        parts.append("**Removal offered on a more urgent card**\n\n" + "\n".join(elsewhere))
    others = [name for pointer, name in sources.draft_names.items()
              if not named.intersection(sources.drafts.get(pointer, ()))]  # fmt: skip
    if others:
        # At ordering, the orders being placed sit beside every finding, even one whose rule
        # does not read medicines: the clinician weighs them together.
        drafts = "\n".join(f"- {md(name)}" for name in others)
        parts.append(f"**Being ordered now (draft orders, not cited by this finding)**\n\n{drafts}")
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
    card = _card(title, INDICATOR.get(urgency, "info"), "\n\n".join(parts), source)
    if link_of is not None:
        # The full evidence and where the rule comes from, one click away from the summary.
        card["links"] = [{"label": "Evidence and sources for this finding", "url": link_of(str(finding.get("id"))),
                          "type": "absolute"}]  # fmt: skip
    if suggestions:
        card["suggestions"] = suggestions
        # Each suggestion removes a different draft: independent, so several may be taken.
        card["selectionBehavior"] = "any" if len(suggestions) > 1 else "at-most-one"
    return card


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


def deciding_facts(
    result: Mapping[str, Any], rule_facts: Mapping[str, frozenset[str]] | None = None
) -> list[dict[str, Any]]:
    """The unknown facts that would decide a partly met emergency or urgent rule, most urgent first.

    A rule is partly met when at least one of its conditions holds and none is known to
    fail (its state is unknown), and, when ``rule_facts`` (rule id -> the facts its own
    conditions read that are recorded for this patient) is given, it reads a recorded
    fact: a condition met only by an absence ("glucose not recorded", "no sensory
    level") is no support. Recording the facts such a rule waits on decides it. Rules
    with nothing recorded behind them would list the same facts on every chart opening.
    """
    waiting: dict[str, dict[str, Any]] = {}
    for rule in (result.get("trace") or {}).get("not_fired") or ():
        urgency = str(rule.get("urgency", ""))
        if rule.get("state") != "unknown" or urgency not in DECIDING_URGENCIES:
            continue
        if not rule.get("conditions_met"):
            continue
        if rule_facts is not None and not rule_facts.get(str(rule.get("rule"))):
            continue
        title = str(rule.get("title") or rule.get("rule"))
        for pointer in rule.get("unknown_facts") or ():
            entry = waiting.setdefault(str(pointer), {"pointer": str(pointer), "urgency": urgency, "titles": []})
            if URGENCY_RANK[urgency] > URGENCY_RANK[entry["urgency"]]:
                entry["urgency"] = urgency
            if title not in entry["titles"]:
                entry["titles"].append(title)
    labels = {str(m.get("pointer")): m.get("label") for m in result.get("missing_data") or ()}
    for pointer, entry in waiting.items():
        entry["label"] = labels.get(pointer)
    return sorted(waiting.values(), key=lambda m: -URGENCY_RANK[m["urgency"]])  # stable: engine order


def missing_data_card(
    deciding: Sequence[Mapping[str, Any]], notes: Sequence[str], disclaimer: str, label_of: LabelOf
) -> dict[str, Any]:
    """One card for the unknown facts that would decide urgent advice, and notes about the EHR data."""
    names = [_missing_label(m, label_of) for m in deciding]
    parts = []
    if deciding:
        brief = [re.sub(r"\s*\([^)]*\)", "", n) for n in names]  # parentheticals cost summary space
        shown = "; ".join(brief[:MISSING_IN_SUMMARY]) + ("; …" if len(brief) > MISSING_IN_SUMMARY else "")
        summary = f"Not recorded: {shown}"
        lines = []
        for m, name in list(zip(deciding, names, strict=True))[:MISSING_ON_CARD]:
            titles = list(m.get("titles") or ())
            decides = "; ".join(titles[:2]) + (f"; and {len(titles) - 2} more" if len(titles) > 2 else "")
            lines.append(f"- **{md(name)}**: would decide {md(m.get('urgency'))} advice ({md(decides)})")
        if len(deciding) > MISSING_ON_CARD:
            lines.append(f"- and {len(deciding) - MISSING_ON_CARD} more facts that are not recorded")
        parts.append(
            "Advice that is partly supported by the record waits on these facts, most urgent first:\n\n"
            + "\n".join(lines)
        )
    else:
        summary = "Some EHR data was not available to decision support"
    if notes:
        # First, and named in the summary: a value dropped for its unit is one the rules never saw,
        # and EHRs often show the summary alone.
        listed = "\n".join(f"- {md(n)}" for n in notes)
        parts.insert(0, f"**Data the EHR did not supply or that could not be read**\n\n{listed}")
        if deciding:
            noted = f"{len(notes)} note{'s' if len(notes) != 1 else ''}"
            summary = f"EHR data not used ({noted}); {summary[0].lower()}{summary[1:]}"
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
    data_notes: Sequence[str] = (),
    sources: FactSources | None = None,
    link_of: Callable[[str], str] | None = None,
    rule_facts: Mapping[str, frozenset[str]] | None = None,
    sheet_url: Callable[[str], str] | None = None,
    worsened_by: Mapping[str, WorsenedBy] | None = None,
) -> list[dict[str, Any]]:
    """Cards for one result, most urgent first.

    :param notes: notes about the input that always make a missing-data card (prefetch
        keys not sent or null, keys not used).
    :param data_notes: notes from the FHIR conversion (stale or unmapped values); shown
        only when the card is there for another reason, not on every chart opening.
    :param sources: dates of the results and draft orders behind each fact.
    :param link_of: finding id -> URL of its evidence and source sheet (``links[]``).
    :param rule_facts: rule id -> recorded facts its conditions read (:func:`deciding_facts`).
    :param sheet_url: finding id -> the URL of its source-attribute sheet, put in each
        finding card's ``source.url``.
    :param worsened_by: rule id -> the medicine classes that worsen its finding (pack data):
        a fired rule's card offers to remove a draft order of such a class. Each draft's
        removal is offered once, on the most urgent card that names it (the engine's order
        among equally urgent ones); the other cards naming it say which card offers it.
    """
    disclaimer = str(result.get("disclaimer", ""))
    versions = _pack_versions(result)
    findings = sorted(
        result.get("findings") or (), key=lambda f: -URGENCY_RANK.get(str(f.get("urgency")), 0)
    )  # stable: the engine's order breaks ties
    names = Namer(result, label_of)
    cards: list[dict[str, Any]] = []
    offered_on: dict[str, str] = {}  # each draft's removal on one card: the first, most urgent, naming it
    for finding in findings:
        card = finding_card(finding, versions, disclaimer, names, sources, link_of, sheet_url, worsened_by, offered_on)
        for suggestion in card.get("suggestions", ()):
            offered_on.update(dict.fromkeys((a["resourceId"] for a in suggestion["actions"]), card["summary"]))
        cards.append(card)
    failed = any(p.get("status") == "failed" for p in result.get("packs") or ())
    if failed or not result.get("complete", False):
        cards.append(incomplete_card(result, disclaimer))
    deciding = deciding_facts(result, rule_facts)
    if deciding or notes:
        cards.append(missing_data_card(deciding, [*notes, *data_notes], disclaimer, label_of))
    # Stable sort by indicator: findings keep their order inside each level, notices follow findings.
    cards.sort(key=lambda c: -INDICATOR_RANK[c["indicator"]])
    return cards
