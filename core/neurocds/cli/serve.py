"""``neurocds serve``: run the CDS Hooks 2.0 service (uvicorn, ``--workers N`` processes).

Refuses to start without a trusted issuer unless ``--insecure-dev`` is given,
which prints a warning on every start and marks every response with the
``X-Neurocds-Insecure`` header. Exit codes: 2 bad options, 3 a pack, mapping
table or JWK Set could not be loaded, 4 the audit log cannot be opened.

With ``--workers N`` above 1, uvicorn's supervisor starts N processes on one
socket (and restarts one that dies). The options are checked, and the app built
once, in the parent, so a bad option still exits with its code before any worker
starts; each worker then builds its own app from the same settings, passed in
the environment (:data:`WORKER_ENV`). The workers share the replay cache and the
card index in a file beside the audit log, and append to the one chain under its
file lock, so a secured service needs ``--audit-dir`` to run more than one.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from neurocds.cdshooks.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    LOOPBACK_HOSTS,
)
from neurocds.cli.auditing import audit_config_options, audit_failed, audit_options

EXIT_USAGE, EXIT_LOAD = 2, 3
LOOPBACK = LOOPBACK_HOSTS
# The settings every worker process builds its app from (JSON; the parent checked them).
WORKER_ENV = "NEUROCDS_SERVE_WORKER"
MAX_WORKERS = 64

INSECURE_WARNING = """\
************************************************************************
* WARNING: --insecure-dev: requests are NOT authenticated.             *
* Anyone who can reach this port can read decision support for any    *
* patient data they send. Development only; never use with real data. *
************************************************************************"""


def _parse_issuers(values: tuple[str, ...]) -> dict[str, str]:
    issuers: dict[str, str] = {}
    for value in values:
        # Split at the first '=': a JWK Set URL may carry a query string, an issuer rarely does.
        iss, sep, jwks = value.partition("=")
        if not sep or not iss or not jwks:
            raise click.BadParameter(f"expected ISS=JWKS_PATH_OR_URL, got {value!r}", param_hint="--issuer")
        if not jwks.startswith(("https://", "http://")) and not Path(jwks).is_file():
            raise click.BadParameter(f"JWK Set file not found: {jwks}", param_hint="--issuer")
        issuers[iss] = jwks
    return issuers


def _parse_fhir_servers(values: tuple[str, ...], unauthenticated: bool) -> dict[str, tuple[str, ...]]:
    """``ISS=URL`` pairs (``URL`` alone under --insecure-dev) as issuer -> allowed FHIR base URLs."""
    from neurocds.cdshooks.config import UNAUTHENTICATED

    servers: dict[str, list[str]] = {}
    for value in values:
        # Split before the URL's scheme: an issuer is itself usually a URL, with no '=' in it.
        cut = max(value.find("=https://"), value.find("=http://"))
        if cut > 0:
            iss, url = value[:cut], value[cut + 1 :]
        elif unauthenticated and value.startswith(("https://", "http://")):
            iss, url = UNAUTHENTICATED, value
        else:
            raise click.BadParameter(f"expected ISS=URL, got {value!r}", param_hint="--fhir-server")
        servers.setdefault(iss, []).append(url)
    return {iss: tuple(urls) for iss, urls in servers.items()}


def _plain_http_off_loopback(location: str) -> bool:
    """A JWK Set URL fetched without TLS from a host other than this one."""
    from urllib.parse import urlsplit

    parts = urlsplit(location)
    return parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK


def register(group: click.Group) -> None:
    @group.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
    @click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
    @click.option(
        "--base-url",
        default=None,
        help="Public base URL the EHR calls (JWT 'aud' is checked against it). Default: http://HOST:PORT.",
    )
    @click.option(
        "--issuer",
        "issuer_specs",
        multiple=True,
        metavar="ISS=JWKS_PATH_OR_URL",
        help="A trusted EHR: its 'iss' and its JWK Set (file or URL). Repeatable.",
    )
    @click.option("--insecure-dev", is_flag=True, help="Accept unauthenticated calls (development only).")
    @click.option(
        "--audit-dir",
        envvar="NEUROCDS_AUDIT_DIR",
        type=click.Path(file_okay=False),
        help="Record decisions, cards and feedback in this tamper-evident audit log.",
    )
    @click.option(
        "--max-body",
        default=1_048_576,
        show_default=True,
        type=click.IntRange(1024, None),
        help="Largest request body in bytes (413 beyond).",
    )
    @click.option(
        "--observation-window-days",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="How old an Observation may be and still count (default: the FHIR converter's).",
    )
    @click.option(
        "--cors-origin",
        "cors_origins",
        multiple=True,
        metavar="ORIGIN",
        help=(
            "Let a browser-based CDS client at ORIGIN (https://host[:port], or '*') call the service, "
            "e.g. the CDS Hooks sandbox. Repeatable. Default: none (no CORS headers)."
        ),
    )
    @click.option(
        "--fhir-server",
        "fhir_server_specs",
        multiple=True,
        metavar="ISS=URL",
        help=(
            "A FHIR server the service may query for prefetch keys a call did not bring, when the call's "
            "token was issued by ISS (https only). Repeatable. With --insecure-dev: URL alone."
        ),
    )
    @click.option(
        "--fhir-test-loopback",
        is_flag=True,
        help="Also accept http:// FHIR servers on a loopback address (tests and local development only).",
    )
    @click.option(
        "--fhir-deadline",
        type=click.FloatRange(min=0, min_open=True),
        default=0.4,
        show_default=True,
        help="Seconds for all FHIR fetches of one call together (412 after).",
    )
    @click.option(
        "--fhir-page-size",
        type=click.IntRange(1, 1000),
        default=100,
        show_default=True,
        help="The _count asked of each FHIR search (next pages are followed, at most 10 per key).",
    )
    @click.option(
        "--header-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_HEADER_TIMEOUT,
        show_default=True,
        help="Seconds a client has to send its request line and headers (408 and closed after).",
    )
    @click.option(
        "--body-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_BODY_TIMEOUT,
        show_default=True,
        help="Seconds a client has to send the whole request body once its headers are in (408 after).",
    )
    @click.option(
        "--max-connections",
        type=click.IntRange(1, None),
        default=DEFAULT_MAX_CONNECTIONS,
        show_default=True,
        help="Open connections accepted at once; one more is answered 503 and closed.",
    )
    @click.option(
        "--workers",
        type=click.IntRange(1, MAX_WORKERS),
        default=1,
        show_default=True,
        help="Worker processes on the one port. Above 1, --audit-dir is needed when tokens are checked "
        "(the workers share the replay cache and card index beside the audit log).",
    )
    @audit_config_options
    @click.option("--packs", envvar="NEUROCDS_PACKS", help="Comma-separated allowlist of packs to load.")
    @click.option(
        "--log-level",
        type=click.Choice(["critical", "error", "warning", "info", "debug"]),
        default="info",
        show_default=True,
    )
    def serve(
        host: str,
        port: int,
        base_url: str | None,
        issuer_specs: tuple[str, ...],
        insecure_dev: bool,
        audit_dir: str | None,
        max_body: int,
        observation_window_days: float | None,
        cors_origins: tuple[str, ...],
        fhir_server_specs: tuple[str, ...],
        fhir_test_loopback: bool,
        fhir_deadline: float,
        fhir_page_size: int,
        header_timeout: float,
        body_timeout: float,
        max_connections: int,
        workers: int,
        packs: str | None,
        log_level: str,
    ) -> None:
        """Run the CDS Hooks 2.0 service (discovery at BASE_URL/cds-services)."""
        issuers = _parse_issuers(issuer_specs)
        if workers > 1 and issuers and audit_dir is None:
            click.echo(
                "error: --workers above 1 needs --audit-dir: a token used at one worker must be refused at "
                "every other, and the workers share the replay cache beside the audit log.",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        if not issuers and not insecure_dev:
            click.echo(
                "error: no trusted issuer. Give --issuer ISS=JWKS_PATH_OR_URL (repeatable), or "
                "--insecure-dev for local development without authentication.",
                err=True,
            )
            sys.exit(EXIT_USAGE)
        if insecure_dev and not issuers:
            click.secho(INSECURE_WARNING, fg="red", bold=True, err=True)
            if host not in LOOPBACK:
                click.secho(f"WARNING: listening on {host}, not loopback, without authentication.", fg="red", err=True)
        elif insecure_dev:
            click.echo("note: --insecure-dev is ignored: trusted issuers are given, so every call needs a token.",
                       err=True)  # fmt: skip
        for iss, jwks in issuers.items():
            if _plain_http_off_loopback(jwks):
                click.secho(
                    f"WARNING: the JWK Set of issuer {iss} is fetched over plain http from another host: whoever "
                    "can alter that traffic can sign tokens the service will accept. Use https.",
                    fg="red",
                    err=True,
                )
        url_host = f"[{host}]" if ":" in host else host
        settings: dict[str, Any] = {
            "base_url": base_url or f"http://{url_host}:{port}",
            "issuers": issuers,
            "insecure_dev": insecure_dev,
            "audit_dir": audit_dir,
            "audit_options": audit_options(audit_dir),
            "max_body": max_body,
            "observation_window_days": observation_window_days,
            "cors_origins": list(cors_origins),
            "body_timeout": body_timeout,
            "fetch": {
                "fhir_servers": _parse_fhir_servers(fhir_server_specs, insecure_dev and not issuers),
                "fhir_loopback_test_mode": fhir_test_loopback,
                "fhir_deadline_seconds": fhir_deadline,
                "fhir_page_size": fhir_page_size,
            },
            "packs": packs,
        }
        app = _build_app(**settings)
        import uvicorn

        from neurocds.cdshooks.transport import uvicorn_options

        _log_to_stderr(log_level)
        options = uvicorn_options(header_timeout=header_timeout, max_connections=max_connections)
        if workers > 1:
            del app  # checked; each worker builds its own from the same settings
            guard = {"header_timeout": header_timeout, "max_connections": max_connections}
            worker = {"app": settings, "guard": guard, "log_level": log_level}
            os.environ[WORKER_ENV] = json.dumps(worker, default=str)  # paths as strings
            options["http"] = f"{__name__}:WorkerProtocol"  # by name: uvicorn pickles its config to each worker
            app = f"{__name__}:worker_app"
        else:
            _freeze_heap()
        uvicorn.run(
            app, host=host, port=port, log_level=log_level, server_header=False, workers=workers,
            factory=workers > 1, **options,
        )  # fmt: skip


def _freeze_heap() -> None:
    """The engine's compiled rules live as long as the process: frozen, the collector stops
    rescanning them after every few thousand allocations (a third of the time per evaluation
    at 4,000 rules: tests/perf/bench_rule_scale.py)."""
    gc.collect()
    gc.freeze()


def _worker_settings() -> dict[str, Any]:
    raw = os.environ.get(WORKER_ENV)
    if raw is None:
        raise RuntimeError(f"{WORKER_ENV} is not set: worker_app is started by `neurocds serve --workers N`")
    settings: dict[str, Any] = json.loads(raw)
    return settings


def worker_app() -> Any:
    """The app of one worker process of ``neurocds serve --workers N`` (a uvicorn factory)."""
    settings = _worker_settings()
    _log_to_stderr(settings["log_level"])
    app = _build_app(**settings["app"])
    _freeze_heap()
    return app


def __getattr__(name: str) -> Any:
    """``WorkerProtocol``: the guarded HTTP protocol of a worker, built from :data:`WORKER_ENV`
    (uvicorn imports it by name in each worker; a class made at run time cannot be pickled)."""
    if name == "WorkerProtocol":
        from neurocds.cdshooks.transport import guarded_protocol

        return guarded_protocol(**_worker_settings()["guard"])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _log_to_stderr(level: str) -> None:
    """The service's own log lines (status, counts, timings; never patient data or tokens) to stderr."""
    import logging

    logger = logging.getLogger("neurocds")
    logger.setLevel(level.upper())
    # httpx logs every request URL at INFO, and a FHIR search URL names the patient.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


def _build_app(
    *,
    base_url: str,
    issuers: dict[str, str],
    insecure_dev: bool,
    audit_dir: str | None,
    audit_options: dict[str, Any] | None,
    max_body: int,
    observation_window_days: float | None,
    cors_origins: list[str],
    body_timeout: float,
    fetch: dict[str, Any],
    packs: str | None,
) -> Any:
    from neurocds.audit.errors import AuditError
    from neurocds.cdshooks import ConfigError, ServiceConfig, create_app
    from neurocds.engine import Engine
    from neurocds.errors import NeurocdsError

    try:
        config = ServiceConfig(
            base_url=base_url,
            issuers=issuers,
            insecure_dev=insecure_dev,
            max_body_bytes=max_body,
            audit_dir=Path(audit_dir) if audit_dir else None,
            audit_options=audit_options,
            observation_window=timedelta(days=observation_window_days) if observation_window_days else None,
            cors_origins=tuple(cors_origins),
            body_timeout_seconds=body_timeout,
            **fetch,
        )
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        return create_app(config, Engine(packs=packs))
    except AuditError as exc:
        audit_failed(exc, opening=True)
    except (NeurocdsError, ValueError, OSError) as exc:
        click.echo(f"error: cannot start the service: {exc}", err=True)
        sys.exit(EXIT_LOAD)
