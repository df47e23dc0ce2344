"""``GET /health``: can this service record what it advises right now?

Every call appends to the audit log before its cards are sent, and a call whose
decision cannot be recorded is refused (503). So the service is healthy when the
log can be appended to: its chain verified at start, its tail still matches its
head file (checked under the log's lock, as the next append would check it), the
files an append writes can be opened for writing, and the disk has room. A load
balancer polls this without a token: the answer names no patient, path or token.
The body follows the IETF health-check draft (``application/health+json``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

HEALTH_PATH = "/health"
HEALTH_TYPE = "application/health+json"
MIN_FREE_BYTES = 16 * 1024 * 1024  # room for thousands of records: below it, the next append may fail
CHECK = "audit-log:appendable"


def _writable(path: Path) -> str | None:
    """Why ``path`` cannot be opened for appending (nothing is written), or ``None``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return f"{path.name} cannot be opened for writing: {exc.strerror or type(exc).__name__}"
    os.close(fd)
    return None


def appendable_problem(audit: Any, directory: Path, damage: str | None, state_file: Path | None) -> str | None:
    """Why the audit log cannot be appended to now, or ``None`` when it can."""
    from neurocds.audit.chain import HEAD_NAME, LOG_NAME
    from neurocds.audit.errors import AuditError

    if damage is not None:
        return damage
    try:
        audit.head()  # the tail checks of an append, under its lock (a torn write is recovered, as then)
    except AuditError as exc:
        return f"the audit log cannot be appended to: {exc.reason}"
    except OSError as exc:
        return f"the audit log cannot be appended to: {exc.strerror or type(exc).__name__}"
    files = [directory / LOG_NAME, directory / HEAD_NAME, *([state_file] if state_file is not None else [])]
    for path in files:
        problem = _writable(path)
        if problem is not None:
            return problem
    # Quarantine files and the lock file are created in the directory itself.
    if not os.access(directory, os.W_OK | os.X_OK):
        return "the audit directory is not writable"
    if shutil.disk_usage(directory).free < MIN_FREE_BYTES:
        return f"less than {MIN_FREE_BYTES // (1024 * 1024)} MiB free on the audit log's disk"
    return None


def health_document(problem: str | None, audited: bool) -> dict[str, Any]:
    """The body of ``/health``: ``pass`` or ``fail``, with the reason."""
    status = "fail" if problem is not None else "pass"
    check: dict[str, Any] = {"status": status}
    if not audited:
        check["output"] = "no audit log is configured: nothing is recorded"
    elif problem is not None:
        check["output"] = problem
    return {"status": status, "description": "neurocds CDS Hooks service", "checks": {CHECK: [check]}}
