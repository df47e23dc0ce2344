"""The audit log's environment variables: names, strict parsing, and typo detection.

One definition serves :meth:`AuditLog.from_env` and the command line (whose flags
read the same variables through click). A value that cannot be read is an error,
never a silent default: a mistyped ``NEUROCDS_AUDIT_REDACT`` must not leave facts
in the log. For the same reason a ``NEUROCDS_AUDIT_*`` variable this module does
not know (``NEUROCDS_AUDIT_REDACTED=1``) is an error wherever a log is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from neurocds.audit.errors import AuditError

ENV_PREFIX = "NEUROCDS_AUDIT_"
AUDIT_DIR_ENV = "NEUROCDS_AUDIT_DIR"
REDACT_ENV = "NEUROCDS_AUDIT_REDACT"
PSEUDONYM_KEY_ENV = "NEUROCDS_AUDIT_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE"
CHECKPOINT_EVERY_ENV = "NEUROCDS_AUDIT_CHECKPOINT_EVERY"
SIGNING_KEY_ENV = "NEUROCDS_AUDIT_SIGNING_KEY"
PUBLIC_KEY_ENV = "NEUROCDS_AUDIT_PUBLIC_KEY"  # read by `neurocds audit verify` and `report`
SEGMENT_ENV = "NEUROCDS_AUDIT_SEGMENT"  # when the log rolls to a new segment: "daily", "64MB", "daily,1GB"
KNOWN_ENV = frozenset(
    {
        AUDIT_DIR_ENV,
        REDACT_ENV,
        PSEUDONYM_KEY_ENV,
        PSEUDONYM_KEY_FILE_ENV,
        CHECKPOINT_EVERY_ENV,
        SIGNING_KEY_ENV,
        PUBLIC_KEY_ENV,
        SEGMENT_ENV,
    }
)
# The option each variable sets (the keys of AuditLog.from_options).
OPTION_OF_ENV = {
    REDACT_ENV: "redact",
    PSEUDONYM_KEY_ENV: "pseudonym_key",
    PSEUDONYM_KEY_FILE_ENV: "pseudonym_key_file",
    CHECKPOINT_EVERY_ENV: "checkpoint_every",
    SIGNING_KEY_ENV: "signing_key_path",
    SEGMENT_ENV: "segment",
}
# The words click accepts for a boolean flag's variable, so both readers agree.
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def parse_flag(text: str, name: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise AuditError(f"{name}={text!r} is not a yes/no value (use 1/0, true/false, yes/no or on/off)")


def parse_count(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise AuditError(f"{name}={text!r} is not a positive whole number of records")
    return value


_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def parse_segment(text: str, name: str = "segment") -> tuple[int | None, bool]:
    """When the log rolls: ``"daily"``, a size (``"64MB"``; units B, KB, MB, GB, powers of
    1024) or both, comma-separated: ``(bytes or None, daily)``."""
    size: int | None = None
    daily = False
    for part in (p.strip().upper() for p in text.split(",")):
        if part == "DAILY" and not daily:
            daily = True
            continue
        digits = part.rstrip("KMGB").strip()
        unit = part[len(digits):].strip() if digits else ""
        if size is None and digits.isdigit() and unit in _UNITS and int(digits) * _UNITS[unit] >= 4096:
            size = int(digits) * _UNITS[unit]
            continue
        raise AuditError(
            f"{name}={text!r}: say when the log rolls to a new segment: daily, a size of at least "
            "4KB (such as 64MB), or both (daily,1GB)"
        )
    return size, daily


def check_env_names(environ: Mapping[str, str]) -> None:
    """Refuse ``NEUROCDS_AUDIT_*`` variables that are set but mean nothing (typos)."""
    unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in KNOWN_ENV)
    if unknown:
        raise AuditError(
            f"unknown audit variable(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_ENV))}"
        )


def options_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``AuditLog.from_options`` options the environment sets (empty values count as unset)."""
    check_env_names(environ)
    options: dict[str, Any] = {}
    for name, option in OPTION_OF_ENV.items():
        text = environ.get(name, "")
        if not text.strip():
            continue
        if option == "redact":
            options[option] = parse_flag(text, name)
        elif option == "checkpoint_every":
            options[option] = parse_count(text, name)
        else:
            options[option] = text
    return options
