"""The evidence and source sheet of a finding: the page a card's ``links[]`` opens.

Served at ``GET /evidence/{finding id}`` without a token: an EHR opens card links
in the clinician's browser, which carries no CDS Hooks JWT. The page holds pack
content only (never patient data): for every loaded rule that concludes the
finding, its title, urgency, pack and version, rule id and file, rationale,
recommendations, the medicine classes that worsen it (``worsened_by``) and evidence
(source and citation). Everything is HTML-escaped,
and the page forbids scripts and every external load.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_STYLE = "body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}dt{font-weight:bold}"


def evidence_url(base_url: str, finding_id: str) -> str:
    return f"{base_url}/evidence/{quote(finding_id, safe='')}"


def evidence_page(rules: Iterable[Any], versions: dict[str, str], finding_id: str, disclaimer: str) -> str | None:
    """The sheet for ``finding_id`` as HTML, or ``None`` when no loaded rule concludes it."""
    concluding = [r for r in rules if r.kind == "finding" and r.key == finding_id]
    if not concluding:
        return None
    e = html.escape
    sections = []
    for rule in concluding:
        items = "".join(f"<li>{e(rec)}</li>" for rec in rule.recommendations)
        evidence = "".join(f"<li><b>{e(ev.source)}</b>: {e(ev.citation)}</li>" for ev in rule.evidence)
        worsening = getattr(rule, "worsened_by", None)
        worse = (
            f"<dt>Worsened by (a draft order of these is offered for removal)</dt>"
            f"<dd>{e(', '.join(worsening.classes))}: {e(worsening.rationale)}</dd>"
            if worsening is not None
            else ""
        )
        sections.append(
            f"<section><h2>{e(rule.title)}</h2><dl>"
            f"<dt>Urgency</dt><dd>{e(str(rule.urgency))}</dd>"
            f"<dt>Rule pack</dt><dd>{e(rule.pack)} {e(versions.get(rule.pack, ''))}</dd>"
            f"<dt>Rule</dt><dd>{e(rule.id)} ({e(Path(rule.file).name)}{e(rule.pointer)})</dd>"
            f"<dt>Why the rule exists</dt><dd>{e(rule.rationale)}</dd>"
            f"<dt>Consider</dt><dd><ul>{items}</ul></dd>{worse}"
            f"<dt>Evidence</dt><dd><ul>{evidence}</ul></dd></dl></section>"
        )
    title = e(concluding[0].title)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>Evidence and sources: {e(finding_id)}</h1>"
        + "".join(sections)
        + f"<p><i>{e(disclaimer)}</i></p></body></html>"
    )
