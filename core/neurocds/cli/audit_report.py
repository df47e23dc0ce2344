"""`neurocds audit report`: one decision, or every decision in a period, as an HTML page.

Kept apart from :mod:`neurocds.cli.audit` (which declares the command) for length.
May import: everything (the CLI is the top stage).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from neurocds.audit.errors import AuditError


def write_report(
    audit_dir: Path,
    record_id: str | None,
    html_out: Path,
    public_key: Path | None,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Write the page; exit 1 (after writing it) when the log fails verification.

    :raises AuditError: no such record, or it is not a decision.
    """
    from neurocds.audit.verify import verify_log

    if record_id is not None:
        from neurocds.audit.query import find_record
        from neurocds.audit.render import render_html

        record = find_record(audit_dir, record_id)
        if record.get("type") != "decision":
            raise AuditError(f"record {record_id} is a {record.get('type')} record, not a decision")
        from neurocds.audit.index import related

        result = verify_log(audit_dir, public_key=public_key)
        page = render_html(record, result, related(audit_dir, str(record["decision"].get("decision_id"))))
    else:
        from neurocds.audit import index
        from neurocds.audit.period import render_period_html, summarise
        from neurocds.audit.query import RecordFilter

        flt = RecordFilter(since=since, until=until, types=("decision", "rejection", "feedback"))
        records = list(index.query(audit_dir, flt))
        result = verify_log(audit_dir, public_key=public_key)
        page = render_period_html(summarise(records, _shown(since), _shown(until)), result)
    html_out.write_text(page, encoding="utf-8")
    click.echo(f"wrote {html_out}")
    if not result.ok:  # the page says so too; a script must not take it for a sound record
        click.echo(f"error: the log fails verification (first bad sequence {result.first_bad_sequence})", err=True)
        sys.exit(1)


def _shown(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None
