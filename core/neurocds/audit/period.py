"""A report over many decisions: what an auditor reviews for a period, as one HTML page.

Counts by finding and by urgency, the clinicians' overrides and their reasons, the
incomplete decisions and why, the pack versions in force, the chain's verification
status, and a row for each decision (linked from the counts) with the command that
shows it in full. Built from the records alone; every value is HTML-escaped and the
page is self-contained (inline CSS, no scripts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from neurocds.audit.query import body_of
from neurocds.audit.report_html import REPORT_CSS, URGENCIES, escape_html, urgency_badge
from neurocds.audit.verify import VerifyReport


@dataclass
class PeriodSummary:
    since: str | None
    until: str | None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    rejections: int = 0
    by_urgency: Counter[str] = field(default_factory=Counter)
    by_finding: Counter[str] = field(default_factory=Counter)
    titles: dict[str, str] = field(default_factory=dict)
    packs: Counter[str] = field(default_factory=Counter)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    incomplete: list[dict[str, Any]] = field(default_factory=list)


def summarise(records: Iterable[Mapping[str, Any]], since: str | None, until: str | None) -> PeriodSummary:
    """Gather the period's decisions, rejections and feedback (records in log order)."""
    out = PeriodSummary(since, until)
    for record in records:
        body, rtype = body_of(record), record.get("type")
        if rtype == "rejection":
            out.rejections += 1
        elif rtype == "feedback":
            if body.get("outcome") == "overridden":
                reason = body.get("override_reason") or {}
                out.overrides.append(
                    {
                        "decision_id": body.get("decision_id"),
                        "card": body.get("card_uuid"),
                        "reason": reason.get("display") or reason.get("code") or "(no reason given)",
                        "comment": reason.get("userComment", ""),
                        "recorded_at": record.get("recorded_at"),
                    }
                )
            else:
                out.accepted += 1
        elif rtype == "decision":
            findings = [f for f in body.get("findings") or () if isinstance(f, Mapping)]
            row = {
                "id": body.get("decision_id"),
                "sequence": record.get("sequence"),
                "recorded_at": record.get("recorded_at"),
                "urgency": body.get("highest_urgency"),
                "complete": body.get("complete"),
                "findings": [str(f.get("id")) for f in findings],
            }
            out.decisions.append(row)
            out.by_urgency[str(body.get("highest_urgency"))] += 1
            for f in findings:
                out.by_finding[str(f.get("id"))] += 1
                out.titles.setdefault(str(f.get("id")), str(f.get("title") or ""))
            for p in body.get("packs") or ():
                if isinstance(p, Mapping):
                    out.packs[f"{p.get('name')} {p.get('version')} ({str(p.get('sha256'))[:12]})"] += 1
            if not body.get("complete"):
                errors = [e for e in body.get("errors") or () if isinstance(e, Mapping)]
                why = "; ".join(
                    f"{e.get('kind')}: {e.get('pack')}/{e.get('rule') or '-'}"
                    + (f" ({e['message']})" if isinstance(e.get("message"), str) and e["message"] else "")
                    for e in errors
                )
                out.incomplete.append({**row, "why": why or "some rules could not be decided"})
    return out


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], empty: str) -> str:
    if not rows:
        return f"<p class='muted'>{escape_html(empty)}</p>"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _link(decision_id: Any) -> str:
    return f"<a href='#d-{escape_html(decision_id)}'><code>{escape_html(str(decision_id)[:8])}</code></a>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;max-width:64rem;color:#1a1a1a}
table{border-collapse:collapse;margin:.4rem 0}
""" + REPORT_CSS


def _verification(report: VerifyReport) -> str:
    if report.ok:
        return (
            f"<p class='ok'>Chain intact: {report.records} records verified through sequence "
            f"{report.last_sequence}.</p>"
        )
    problems = "".join(
        f"<li>sequence {escape_html(p.sequence)}: {escape_html(p.reason)}</li>" for p in report.problems[:20]
    )
    return (
        f"<p class='bad'>The log FAILS verification from sequence {escape_html(report.first_bad_sequence)}: "
        f"records after {escape_html(report.verified_through)} cannot be trusted.</p><ul>{problems}</ul>"
    )


def render_period_html(summary: PeriodSummary, report: VerifyReport) -> str:
    s = summary
    period = f"{s.since or 'the first record'} to {s.until or 'the last record'}"
    urgency_rows = [(urgency_badge(u), str(s.by_urgency[u])) for u in URGENCIES if s.by_urgency[u]]
    finding_rows = [
        (f"<code>{escape_html(f)}</code>", escape_html(s.titles.get(f, "")), str(n))
        for f, n in s.by_finding.most_common()
    ]
    pack_rows = [(escape_html(p), str(n)) for p, n in sorted(s.packs.items())]
    override_rows = [
        (_link(o["decision_id"]), escape_html(o["reason"]), escape_html(o["comment"]), escape_html(o["recorded_at"]))
        for o in s.overrides
    ]
    incomplete_rows = [(_link(d["id"]), escape_html(d["recorded_at"]), escape_html(d["why"])) for d in s.incomplete]
    decision_rows = [
        (
            f"<span id='d-{escape_html(d['id'])}'><code>{escape_html(d['id'])}</code></span>",
            escape_html(d["sequence"]),
            escape_html(d["recorded_at"]),
            urgency_badge(d["urgency"]),
            "yes" if d["complete"] else "<span class='bad'>NO</span>",
            escape_html(", ".join(d["findings"]) or "none"),
        )
        for d in s.decisions
    ]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>neurocds audit report: {escape_html(period)}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body><h1>neurocds audit report</h1>
<p>Period: {escape_html(period)}. {len(s.decisions)} decisions, {s.rejections} rejected inputs,
{len(s.overrides)} overridden and {s.accepted} accepted cards.</p>
<h2>Verification</h2>{_verification(report)}
<h2>Decisions by highest urgency</h2>{_table(("Urgency", "Decisions"), urgency_rows, "No decisions.")}
<h2>Findings</h2>{_table(("Finding", "Title", "Decisions"), finding_rows, "No findings.")}
<h2>Overrides ({len(s.overrides)})</h2>{_table(("Decision", "Reason", "Comment", "Recorded"), override_rows,
                                               "No card was overridden.")}
<h2>Incomplete decisions ({len(s.incomplete)})</h2>{_table(("Decision", "Recorded", "Why"), incomplete_rows,
                                                            "Every decision was complete.")}
<h2>Pack versions in force</h2>{_table(("Pack, version (content hash)", "Decisions"), pack_rows, "None.")}
<h2>Decisions ({len(s.decisions)})</h2>
<p class="muted">Each in full: <code>neurocds audit report ID --html FILE</code>
or <code>neurocds audit show ID</code>.</p>
{_table(("Decision", "Seq", "Recorded", "Urgency", "Complete", "Findings"), decision_rows, "No decisions.")}
<p class="disclaimer">Decision support for a clinician, not a diagnosis.</p>
</body></html>
"""
