"""Configuration of the CDS Hooks service: one frozen dataclass, checked when built."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_MAX_BODY_BYTES = 1_048_576
# Slow-client limits (enforced by neurocds.cdshooks.transport and the app). They live here,
# with no server import, so the CLI can show them as option defaults without loading uvicorn.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 256
# The allowlist key for calls without a token (insecure_dev only): no issuer vouches for them.
UNAUTHENTICATED = ""
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
INSECURE_HEADER = "X-Neurocds-Insecure"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _is_origin(value: str) -> bool:
    """``*`` or an origin as browsers send it: scheme, host, optional port; nothing else."""
    if value == "*":
        return True
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and f"{parts.scheme}://{parts.netloc}" == value
        and "@" not in parts.netloc
    )


class ConfigError(ValueError):
    """The service configuration is unusable; the message says what to change."""


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service needs besides the engine.

    :param base_url: the public base URL the EHR calls (``https://cds.example.org``),
        without ``/cds-services``. JWT ``aud`` values are checked against URLs built
        from it, never from the request's ``Host`` header, which the caller controls.
    :param issuers: trusted ``iss`` -> path of a JWK Set file, or an ``https://`` /
        ``http://`` URL of one. Required unless ``insecure_dev``.
    :param insecure_dev: accept unauthenticated calls (development only); every
        response then carries the :data:`INSECURE_HEADER` header.
    :param max_body_bytes: largest request body accepted (413 beyond).
    :param audit_dir: folder of the tamper-evident audit log; ``None``: no audit.
    :param audit_options: how the log is kept (redaction, pseudonym key, checkpoints):
        the options of :meth:`neurocds.audit.AuditLog.from_options`.
    :param observation_window: how far back observations count, passed to the FHIR
        converter when it supports a window (``None``: its default).
    :param clock: current time (UTC, aware); injectable so tests can move time.
    :param token_leeway_seconds: clock skew tolerated on ``iat``/``exp``.
    :param max_token_lifetime_seconds: longest ``exp - iat`` accepted; the spec asks
        EHRs for at most five minutes, and it bounds the replay cache.
    :param replay_cache_size: most unexpired ``jti`` values remembered; when full,
        new tokens are refused (fail closed) rather than forgetting live ones.
    :param jwks_cache_seconds: how long a JWK Set fetched from a URL is reused.
    :param cors_origins: browser origins (``https://host[:port]``, or ``*`` for any)
        allowed to call the service cross-origin, such as a browser-based CDS client
        like the CDS Hooks sandbox. Empty (the default): no CORS headers, so browser
        pages elsewhere cannot send it JSON (their preflight gets 405).
    :param body_timeout_seconds: the whole request body must arrive within this
        time once the headers are in (408 otherwise). The header deadline and the
        connection cap are transport options (:mod:`neurocds.cdshooks.transport`).
    :param fhir_servers: trusted issuer -> FHIR base URLs (``https://``) the service
        may query for prefetch keys a call did not bring; the bearer token of the
        call's ``fhirAuthorization`` is sent there only. :data:`UNAUTHENTICATED` keys
        the list for ``insecure_dev`` calls. A ``fhirServer`` not listed for the
        call's issuer is never contacted (412).
    :param fhir_loopback_test_mode: also accept ``http://`` FHIR servers on a
        loopback address (tests and local development only).
    :param fhir_deadline_seconds: one deadline for all fetches of a call (default
        0.4 s, so that fetch and evaluation stay inside the spec's ~500 ms).
    :param fhir_max_pages: ``Bundle.link[next]`` pages followed per key (412 beyond).
    :param fhir_page_size: the ``_count`` asked of each search (servers may send fewer).
    :param fhir_max_bytes: bytes read per key over all its pages (412 beyond).
    """

    base_url: str
    issuers: Mapping[str, str] = field(default_factory=dict)
    insecure_dev: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    audit_dir: Path | None = None
    audit_options: Mapping[str, Any] | None = None
    observation_window: timedelta | None = None
    clock: Callable[[], datetime] = utc_now
    token_leeway_seconds: int = 30
    max_token_lifetime_seconds: int = 300
    replay_cache_size: int = 100_000
    jwks_cache_seconds: int = 300
    cors_origins: tuple[str, ...] = ()
    body_timeout_seconds: float = 30.0
    fhir_servers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fhir_loopback_test_mode: bool = False
    fhir_deadline_seconds: float = 0.4
    fhir_max_pages: int = 10
    fhir_page_size: int = 100
    fhir_max_bytes: int = 8 * 1_048_576

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"base URL must be an absolute http(s) URL without query, got {self.base_url!r}")
        # Normalise once so every audience string is built the same way.
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "issuers", dict(self.issuers))
        if not self.issuers and not self.insecure_dev:
            raise ConfigError(
                "no trusted issuers: give at least one issuer and its JWK Set, or run with insecure_dev "
                "(development only)"
            )
        for iss, source in self.issuers.items():
            if not iss or not source:
                raise ConfigError("every trusted issuer needs a non-empty name and JWK Set location")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if not self.body_timeout_seconds > 0:
            raise ConfigError("body_timeout_seconds must be positive")
        if self.max_token_lifetime_seconds <= 0 or self.token_leeway_seconds < 0:
            raise ConfigError("token lifetime must be positive and leeway not negative")
        servers = {iss: tuple(url.rstrip("/") for url in urls) for iss, urls in dict(self.fhir_servers).items()}
        object.__setattr__(self, "fhir_servers", servers)
        for urls in servers.values():
            for url in urls:
                parts = urlsplit(url)
                if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or "@" in parts.netloc:
                    raise ConfigError(f"FHIR server must be an absolute URL without query or user, got {url!r}")
                if parts.scheme == "http" and not (self.fhir_loopback_test_mode and parts.hostname in LOOPBACK_HOSTS):
                    raise ConfigError(f"FHIR server must use https (http only in loopback test mode), got {url!r}")
        if not self.fhir_deadline_seconds > 0 or min(self.fhir_max_pages, self.fhir_page_size) < 1:
            raise ConfigError("the FHIR fetch deadline, page cap and page size must be positive")
        if self.fhir_max_bytes < 1024:
            raise ConfigError("the FHIR fetch byte cap must be at least 1024")
        if self.audit_dir is not None:
            object.__setattr__(self, "audit_dir", Path(self.audit_dir))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for origin in self.cors_origins:
            if not _is_origin(origin):
                raise ConfigError(f"CORS origin must be '*' or scheme://host[:port] without a path, got {origin!r}")
        if self.audit_options and self.audit_dir is None:
            raise ConfigError("audit options were given but no audit directory")

    @property
    def secured(self) -> bool:
        return bool(self.issuers)

    def endpoint_url(self, path: str) -> str:
        """The exact URL of an endpoint (``/cds-services/x``): the ``aud`` a token must carry."""
        return f"{self.base_url}{path}"
