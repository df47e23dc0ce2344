"""Trusting CDS clients: verify the EHR's JWT on every call (CDS Hooks 2.0).

The EHR signs a short-lived JWT with its private key; we check it against the
public JWK Set configured for its issuer. Decisions, each made to close a hole:

* Only ES384 and RS384 (the algorithms the spec requires clients to support).
  ``none`` and every HMAC algorithm are refused before any key is looked at, and
  symmetric (``oct``) keys are never loaded, so a public key can never be used
  as an HMAC secret.
* The key is chosen by the configured issuer and the header ``kid``. A ``jku``
  header is never fetched (it would let the caller pick the URL we fetch and the
  keys we trust); when the issuer is configured with a JWK Set URL, a ``jku`` that
  names another URL is refused.
* ``aud`` must contain the exact URL of the endpoint called, built from the
  configured base URL, never from the request's ``Host`` header.
* ``exp``/``iat`` are checked against the injected clock with a small leeway, and
  ``exp - iat`` is capped, which also bounds how long a ``jti`` must be remembered.
* A ``jti`` is remembered (per issuer) until its token expires; a second use is
  refused. When the cache is full of live entries new tokens are refused: failing
  closed is safer than forgetting a ``jti`` that could then be replayed.

Failure reasons are for the server log only; clients get a bare 401. Nothing here
ever logs or returns the token itself.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK

log = logging.getLogger("neurocds.cdshooks.security")

ALGORITHMS: dict[str, tuple[str, str | None]] = {"ES384": ("EC", "P-384"), "RS384": ("RSA", None)}
MAX_TOKEN_CHARS = 8192
MAX_JWKS_BYTES = 512 * 1024
MIN_RSA_BITS = 2048
JWKS_FETCH_TIMEOUT = 5.0
JWKS_MIN_REFRESH_SECONDS = 30.0


class AuthError(Exception):
    """A request is not authenticated. ``str(exc)`` is a reason for the server log only."""


def _is_url(location: str) -> bool:
    return location.startswith(("https://", "http://"))


def parse_jwks(document: Any, origin: str) -> dict[str, PyJWK]:
    """Usable signature keys of a JWK Set, by ``kid``; symmetric and unsuitable keys are skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{origin}: not a JWK Set (no 'keys' array)")
    keys: dict[str, PyJWK] = {}
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            log.warning("%s: key %d skipped (no kid)", origin, index)
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        alg = _algorithm_for(jwk)
        if alg is None:
            log.warning("%s: key %r skipped (not an ES384 or RS384 public key)", origin, jwk["kid"])
            continue
        if any(k in jwk for k in ("d", "p", "q")):
            # A private key in a public key set is a configuration accident; refuse to use it.
            log.warning("%s: key %r skipped (contains private key material)", origin, jwk["kid"])
            continue
        try:
            key = PyJWK(dict(jwk), algorithm=alg)
        except jwt.PyJWTError as exc:
            log.warning("%s: key %r skipped (%s)", origin, jwk["kid"], type(exc).__name__)
            continue
        if alg == "RS384" and key.key.key_size < MIN_RSA_BITS:
            log.warning("%s: key %r skipped (RSA key shorter than %d bits)", origin, jwk["kid"], MIN_RSA_BITS)
            continue
        keys[jwk["kid"]] = key
    if not keys:
        raise ValueError(f"{origin}: the JWK Set has no usable ES384 or RS384 public key")
    return keys


def _algorithm_for(jwk: Mapping[str, Any]) -> str | None:
    for alg, (kty, crv) in ALGORITHMS.items():
        if jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv) and jwk.get("alg", alg) == alg:
            return alg
    return None


class JwksSource:
    """The public keys of one issuer, from a file (read at start) or a URL (cached)."""

    def __init__(self, location: str, *, cache_seconds: int = 300) -> None:
        self.location = location
        self.is_url = _is_url(location)
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        if not self.is_url:
            # A file is read once, at start: a missing or bad file must stop the service now.
            path = Path(location)
            self._keys = parse_jwks(json.loads(path.read_text(encoding="utf-8")), str(path))

    def key(self, kid: str) -> PyJWK | None:
        if not self.is_url:
            return self._keys.get(kid)
        with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = age > self._cache_seconds
            # An unknown kid may be a key rotation: refetch, but not more than every 30 s,
            # so a caller sending random kids cannot make us hammer the EHR.
            if stale or (kid not in self._keys and age > JWKS_MIN_REFRESH_SECONDS):
                self._refresh()
            return self._keys.get(kid)

    def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            request = urllib.request.Request(self.location, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as response:
                body = response.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("JWK Set too large")
            self._keys = parse_jwks(json.loads(body), self.location)
        except Exception as exc:  # keep the last good keys: a blip at the EHR must not lock everyone out
            log.warning("JWK Set fetch from %s failed: %s", self.location, type(exc).__name__)


# The longest claim value kept in the audit record (the audit schema's bound); a token is at most 8 KiB.
MAX_CLAIM_CHARS = 1024


def caller_of(claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims of a verified token that say which EHR asked: ``iss``, ``sub`` and ``tenant``
    (CDS Hooks 2.0), as strings. ``jti`` and the token itself are never kept."""
    named = {"issuer": claims.get("iss"), "subject": claims.get("sub"), "tenant": claims.get("tenant")}
    return {key: value[:MAX_CLAIM_CHARS] for key, value in named.items() if isinstance(value, str) and value}


class ReplayCache:
    """``(iss, jti)`` pairs seen, each kept until its token expires.

    :param store: where used tokens outlive a restart and are shared with the other worker
        processes (:class:`neurocds.cdshooks.shared_state.SharedState`): loaded at start, and
        the authority on each use, since another worker may have taken the token since.
    """

    def __init__(self, max_size: int, store: Any = None, now: float | None = None) -> None:
        self._max = max_size
        self._seen: dict[Any, float] = {}
        self._expiry: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self._store = store
        if store is not None:
            for token, expires_at in store.unexpired(time.time() if now is None else now):
                self._seen[token] = expires_at  # stored as hashes: compared as hashes
                heapq.heappush(self._expiry, (expires_at, token))

    def check_and_add(self, key: tuple[str, str], expires_at: float, now: float) -> None:
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                _, old = heapq.heappop(self._expiry)
                self._seen.pop(old, None)
            token = self._store.key_of(key) if self._store is not None else key
            if token in self._seen:
                raise AuthError("jti already used (replay)")
            if len(self._seen) >= self._max:
                raise AuthError("replay cache full; refusing new tokens until some expire")
            # Claimed in the store before the token is accepted: a restart, and every other worker, must see it.
            if self._store is not None and not self._store.claim(key, expires_at, now):
                raise AuthError("jti already used (replay, seen by another worker)")
            self._seen[token] = expires_at
            heapq.heappush(self._expiry, (expires_at, token))

    def __len__(self) -> int:
        return len(self._seen)


class TokenVerifier:
    """Check ``Authorization: Bearer <JWT>`` headers for one service."""

    def __init__(
        self,
        issuers: Mapping[str, JwksSource],
        *,
        clock: Callable[[], datetime],
        leeway_seconds: int = 30,
        max_lifetime_seconds: int = 300,
        replay_cache_size: int = 100_000,
        replay_store: Any = None,
    ) -> None:
        self._issuers = dict(issuers)
        self._clock = clock
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._replay = ReplayCache(replay_cache_size, replay_store, now=clock().timestamp())

    @classmethod
    def from_locations(cls, issuers: Mapping[str, str], **kwargs: Any) -> TokenVerifier:
        cache_seconds = kwargs.pop("jwks_cache_seconds", 300)
        sources = {iss: JwksSource(loc, cache_seconds=cache_seconds) for iss, loc in issuers.items()}
        return cls(sources, **kwargs)

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or :class:`AuthError`. ``audience``: the endpoint URL called."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token header ({type(exc).__name__})") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"algorithm {str(alg)[:16]!r} not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token header has no kid")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token payload ({type(exc).__name__})") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise AuthError("issuer not trusted")
        source = self._issuers.get(iss)
        if source is None:
            raise AuthError("issuer not trusted")
        jku = header.get("jku")
        if jku is not None and source.is_url and jku != source.location:
            raise AuthError("jku does not match the issuer's configured JWK Set URL")
        key = source.key(kid)
        if key is None:
            raise AuthError("unknown kid for this issuer")
        if key.algorithm_name != alg:
            raise AuthError("token algorithm does not match the key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                # Time claims are checked below against the injected clock.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"token rejected ({type(exc).__name__})") from None
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if not _is_number(exp) or not _is_number(iat):
            raise AuthError("exp and iat must be numbers")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise AuthError("jti must be a non-empty string of at most 256 characters")
        now = self._clock().timestamp()
        if iat > now + self._leeway:
            raise AuthError("token issued in the future")
        if exp <= now - self._leeway:
            raise AuthError("token expired")
        if exp - iat > self._max_lifetime:
            raise AuthError("token lifetime longer than allowed")
        nbf = claims.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self._leeway):
            raise AuthError("token not yet valid")
        self._replay.check_and_add((iss, jti), float(exp) + self._leeway, now)
        return claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("Authorization is not a Bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("token too long")
    return token


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
