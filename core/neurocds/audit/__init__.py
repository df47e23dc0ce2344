"""Tamper-evident audit log of every decision neurocds makes.

Public API::

    from neurocds.audit import AuditLog, verify_log

    log = AuditLog("/var/lib/neurocds/audit")        # or AuditLog.from_env()
    log.record_decision(result, facts)               # durable before it returns
    report = verify_log("/var/lib/neurocds/audit", public_key="audit.pub")
    assert report.ok, report.first_bad_sequence

Stage 5, audit: the log itself (records, chain, checkpoints, verification,
queries, reports, FHIR export). Replaying a decision needs the engine, so it
lives above it, in :mod:`neurocds.replay`.

May import: the base modules and the stages below it (``neurocds.facts``,
``neurocds.rules``, ``neurocds.backends``, ``neurocds.explain``); not
``neurocds.fhir``, its sibling, nor anything above.

See :mod:`neurocds.audit.verify` for exactly what is and is not detectable.
"""

from __future__ import annotations

from neurocds.audit.errors import AuditError, AuditIntegrityError, ReplayRefused
from neurocds.audit.fhir import export_fhir
from neurocds.audit.query import RecordFilter, find_record, query_records, read_records
from neurocds.audit.render import render_html, render_text
from neurocds.audit.signing import generate_keypair
from neurocds.audit.store_state import Appended
from neurocds.audit.verify import Problem, VerifyReport, format_report, verify_log
from neurocds.audit.writer import AUDIT_DIR_ENV, AuditLog, PendingRecord

__all__ = [
    "AUDIT_DIR_ENV",
    "Appended",
    "AuditError",
    "AuditIntegrityError",
    "AuditLog",
    "PendingRecord",
    "Problem",
    "RecordFilter",
    "ReplayRefused",
    "VerifyReport",
    "export_fhir",
    "find_record",
    "format_report",
    "generate_keypair",
    "query_records",
    "read_records",
    "render_html",
    "render_text",
    "verify_log",
]
