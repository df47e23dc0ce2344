"""Audit-log options shared by ``evaluate``, ``explain`` and ``serve``, exit code 4, and key folders.

The options are declared once here. They are not passed to the command functions
(``expose_value=False``): click stores them in the context, and
:func:`audit_options` turns them, with the environment, into the options of
:meth:`neurocds.audit.AuditLog.from_options`. Each flag also reads its
``NEUROCDS_AUDIT_*`` variable; a value click cannot read is a usage error (exit 2).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from neurocds.audit.errors import AuditError

F = TypeVar("F", bound=Callable[..., Any])

# The variables of neurocds.audit.settings, spelled here so that declaring the flags does
# not import the audit log (its package loads signing, rendering and export): a command
# run without --audit-dir never needs it. tests/test_cli_startup.py keeps the two equal.
REDACT_ENV = "NEUROCDS_AUDIT_REDACT"
PSEUDONYM_KEY_ENV = "NEUROCDS_AUDIT_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE_ENV = "NEUROCDS_AUDIT_PSEUDONYM_KEY_FILE"
CHECKPOINT_EVERY_ENV = "NEUROCDS_AUDIT_CHECKPOINT_EVERY"
SIGNING_KEY_ENV = "NEUROCDS_AUDIT_SIGNING_KEY"
SEGMENT_ENV = "NEUROCDS_AUDIT_SEGMENT"


class _NothingRaised(Exception):
    """Stands for ``AuditError`` while the audit log is not imported: then none can have been raised."""


def audit_error() -> type[AuditError]:
    """The class to catch audit-log failures by (``except audit_error():``), without importing the log.

    An ``AuditError`` can only exist once its module is imported, so until then a class
    that nothing raises catches exactly the same exceptions.
    """
    module = sys.modules.get("neurocds.audit.errors")
    return cast("type[AuditError]", module.AuditError if module is not None else _NothingRaised)

# The audit log could not be opened, or refused to record the decision or the
# rejection (a damaged chain, a bad key): no result is shown, because a decision
# that is not on record must not be acted on as if it were.
EXIT_AUDIT = 4
_META = "neurocds.audit_flags"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    assert param.name is not None
    ctx.meta.setdefault(_META, {})[param.name] = (value, param.opts[0])
    return value


def _setting(
    flag: str, name: str, env: str, help_text: str, callback: Callable[..., Any] = _remember, **kw: Any
) -> Callable[[F], F]:
    """One audit flag: reads ``env`` too, and goes to the context, not to the command."""
    return click.option(
        flag, name, envvar=env, show_envvar=True, expose_value=False, callback=callback, help=help_text, **kw
    )


def _remember_segment(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """When the log rolls (``daily``, ``64MB``, ``daily,1GB``): checked here, passed on as written."""
    if value is not None:
        from neurocds.audit import settings  # only when the flag is given: see the variables above
        from neurocds.audit.errors import AuditError

        try:
            settings.parse_segment(str(value), SEGMENT_ENV)
        except AuditError as exc:
            raise click.BadParameter(exc.reason, ctx=ctx, param=param) from None
    return _remember(ctx, param, value)


def audit_config_options(func: F) -> F:
    """Add the audit configuration flags (they only matter together with ``--audit-dir``)."""
    key_file = click.Path(dir_okay=False, exists=True)
    options = [
        _setting(
            "--audit-redact/--no-audit-redact",
            "redact",
            REDACT_ENV,
            "Store no facts in the audit log, only their hash and a keyed pseudonym of the patient id "
            "(needs a pseudonym key outside the audit directory).",
            default=None,
        ),
        _setting(
            "--audit-pseudonym-key-file",
            "pseudonym_key_file",
            PSEUDONYM_KEY_FILE_ENV,
            "HMAC key (hex) for patient pseudonyms; with redaction it must lie outside the audit "
            f"directory, mode 0600. Or the hex key itself in {PSEUDONYM_KEY_ENV}.",
            type=key_file,
        ),
        _setting(
            "--audit-checkpoint-every",
            "checkpoint_every",
            CHECKPOINT_EVERY_ENV,
            "Sign a checkpoint after every N records (needs --audit-signing-key).",
            type=click.IntRange(min=1),
        ),
        _setting(
            "--audit-signing-key",
            "signing_key_path",
            SIGNING_KEY_ENV,
            "Ed25519 private key (PEM, mode 0600) for checkpoints, outside the audit directory.",
            type=key_file,
        ),
        _setting(
            "--audit-segment",
            "segment",
            SEGMENT_ENV,
            "Roll the log to a new segment file: daily, at a size (64MB), or both (daily,1GB).",
            callback=_remember_segment,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def audit_options(audit_dir: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The audit options of the running command (``None`` when nothing is audited).

    Flags given on the command line without an audit directory are a usage error:
    they would have no effect. The same settings made only in the environment are
    ignored then (an operator may export them for every run, audited or not).
    """
    ctx = click.get_current_context()
    flags: dict[str, tuple[Any, str]] = ctx.meta.get(_META, {})
    if audit_dir is None:
        typed = sorted(
            flag
            for name, (value, flag) in flags.items()
            if value is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        )
        if typed:
            raise click.UsageError(f"{', '.join(typed)} given without --audit-dir: nothing would be recorded")
        return None
    from neurocds.audit import settings
    from neurocds.audit.errors import AuditError

    try:
        settings.check_env_names(os.environ)
        hex_key = os.environ.get(settings.PSEUDONYM_KEY_ENV, "").strip() or None
    except AuditError as exc:
        raise click.UsageError(exc.reason) from exc
    options = {name: value for name, (value, _) in flags.items() if value is not None}
    if hex_key is not None:
        options["pseudonym_key"] = hex_key
    return options


def audit_failed(exc: AuditError, *, opening: bool = False) -> NoReturn:
    """Say why the audit log failed and exit with :data:`EXIT_AUDIT`; nothing else is printed."""
    what = "cannot be opened, so nothing was evaluated" if opening else "could not record this evaluation"
    click.echo(
        f"error: {exc}\nerror: the audit log {what}; no result is given (exit {EXIT_AUDIT}). "
        "`neurocds audit verify` checks the log.",
        err=True,
    )
    sys.exit(EXIT_AUDIT)


def make_key_folder(path: Path) -> None:
    """Create the missing folders above a key file, each mode 0700 (the owner's only).

    A key is often written to a new place (``~/keys/audit.key``); making the folder is
    what the user asked for, and 0700 keeps other users from even listing it.
    """
    missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)  # mkdir's mode is narrowed by the umask, never widened: set it exactly
        except OSError as exc:
            raise click.ClickException(f"cannot create the folder {folder} for {path}: {exc.strerror or exc}") from None
