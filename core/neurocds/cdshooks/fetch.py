"""Fetch from the EHR's FHIR server what the prefetch did not bring (CDS Hooks 2.0).

The spec leaves it to the service "to programmatically retrieve any additional
necessary data". What is fetched, and from where, is decided here:

* only keys of this service's prefetch that are absent or hold an
  OperationOutcome (the EHR tried and failed); a ``null`` value means the EHR
  has no such data for this patient and is not fetched;
* only from a ``fhirServer`` on the allowlist of the issuer whose token the
  call carried (https only; plain http on loopback only in an explicit test
  mode). Anything else is refused before a socket is opened: an EHR must not be
  able to make the service carry a bearer token, or its own network position,
  to a server of the caller's choice;
* the bearer token goes to that origin only: a ``next`` link that leaves it is
  refused, redirects are not followed;
* every template is queried at once (httpx, asyncio) under one deadline per
  call, following ``Bundle.link[next]`` up to a page and byte cap per key.

A refusal or failure is a :class:`RequestError` with status 412 and an
OperationOutcome. Neither the token nor response bodies are ever logged; the
log gets the key, the HTTP status and the time.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from neurocds.cdshooks.config import LOOPBACK_HOSTS, UNAUTHENTICATED, ServiceConfig
from neurocds.cdshooks.discovery import ServiceDefinition
from neurocds.cdshooks.requests import HookRequest, Issue, RequestError
from neurocds.errors import FactsValidationError
from neurocds.facts.strictjson import fhir_limits, parse_strict

log = logging.getLogger("neurocds.cdshooks")

_TEMPLATE_TOKEN = "{{context.patientId}}"
_T = TypeVar("_T")


def keys_to_fetch(prefetch: Mapping[str, Any] | None, service: ServiceDefinition) -> list[str]:
    """This service's keys that the EHR did not send, or sent as an OperationOutcome."""
    sent = prefetch or {}
    wanted = []
    for key in service.prefetch:
        if key not in sent or (isinstance(sent[key], Mapping) and sent[key].get("resourceType") == "OperationOutcome"):
            wanted.append(key)
    return wanted


def allowed_server(fhir_server: str, issuer: str | None, config: ServiceConfig) -> str | None:
    """``fhir_server`` normalised, if the issuer's allowlist holds it and its scheme is acceptable."""
    base = fhir_server.rstrip("/")
    parts = urlsplit(base)
    if parts.username or parts.password or parts.query or parts.fragment or not parts.hostname:
        return None
    if parts.scheme != "https":
        test_loopback = config.fhir_loopback_test_mode and parts.hostname in LOOPBACK_HOSTS
        if not (parts.scheme == "http" and test_loopback):
            return None
    allowed = config.fhir_servers.get(issuer if issuer is not None else UNAUTHENTICATED, ())
    return base if base in allowed else None


def _refusal(message: str, pointer: str = "/fhirServer", code: str = "forbidden") -> RequestError:
    return RequestError([Issue(pointer, message, code)], 412)


def _bearer_token(request: HookRequest) -> str | None:
    """The access token from ``fhirAuthorization``, after checking it is for this patient."""
    auth = request.fhir_authorization
    if auth is None:
        return None
    patient = auth.get("patient")
    if patient is not None and patient != request.patient_id:
        raise _refusal("is for another patient than context.patientId", "/fhirAuthorization/patient", "security")
    token = auth.get("access_token")
    if not isinstance(token, str) or not token or auth.get("token_type", "Bearer").lower() != "bearer":
        raise _refusal("needs a Bearer access_token", "/fhirAuthorization", "security")
    return token


def describe_sources(
    sent: Mapping[str, Any], service: ServiceDefinition, fetched: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per key: ``prefetch``, ``null`` (the EHR has none), ``fetched`` (URL, status, pages) or ``absent``."""
    sources: dict[str, dict[str, Any]] = {}
    for key in service.prefetch:
        if key in fetched:
            sources[key] = fetched[key]
        elif key not in sent:
            sources[key] = {"source": "absent"}
        elif sent[key] is None:
            sources[key] = {"source": "null"}
        else:
            sources[key] = {"source": "prefetch"}
    return sources


class Fetcher:
    """Fetches missing prefetch keys for one service configuration."""

    def __init__(self, config: ServiceConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport  # tests may inject one; the default is a real connection
        self._limits = fhir_limits(config.fhir_max_bytes)
        # Built once: httpx would otherwise load the CA bundle for every call's client (~10 ms).
        self._tls = ssl.create_default_context()

    @staticmethod
    def will_fetch(request: HookRequest, service: ServiceDefinition) -> bool:
        """Whether :meth:`complete` would query the FHIR server (some key is missing and there is one)."""
        return request.fhir_server is not None and bool(keys_to_fetch(dict(request.prefetch or {}), service))

    async def complete(
        self, request: HookRequest, service: ServiceDefinition, issuer: str | None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The prefetch with what was missing fetched, and the fetched keys' source records.

        Without a ``fhirServer`` nothing is fetched (the evaluation says which keys were absent).
        """
        sent = dict(request.prefetch or {})
        wanted = keys_to_fetch(sent, service)
        if not wanted or request.fhir_server is None:  # as will_fetch says
            return sent, {}
        base = allowed_server(request.fhir_server, issuer, self.config)
        if base is None:
            log.warning("412 %s: fhirServer not on the allowlist of this issuer; nothing fetched", service.id)
            raise _refusal("is not a FHIR server this service may query for this client (not on its allowlist)")
        token = _bearer_token(request)
        started = time.perf_counter()
        headers = {"Accept": "application/fhir+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        timeout = httpx.Timeout(self.config.fhir_deadline_seconds)
        async with httpx.AsyncClient(
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            transport=self._transport,
            trust_env=False,  # no proxy or netrc from the environment: the token goes to the allowlisted origin
            verify=self._tls,
        ) as client:
            tasks = [self._fetch_key(client, base, key, service.prefetch[key], request) for key in wanted]
            try:
                async with asyncio.timeout(self.config.fhir_deadline_seconds):
                    results = await _first_failure_cancels_all(tasks)
            except TimeoutError:
                log.warning("412 %s: FHIR server did not answer within the deadline", service.id)
                raise _refusal(
                    f"did not answer within {self.config.fhir_deadline_seconds:g} s", code="timeout"
                ) from None
        sources: dict[str, dict[str, Any]] = {}
        for key, (value, source) in zip(wanted, results, strict=True):
            sent[key] = value
            sources[key] = source
        log.info("fetched %d key(s) for %s in %.1f ms", len(wanted), service.id, (time.perf_counter() - started) * 1e3)
        return sent, sources

    async def _fetch_key(
        self, client: httpx.AsyncClient, base: str, key: str, template: str, request: HookRequest
    ) -> tuple[Any, dict[str, Any]]:
        path = template.replace(_TEMPLATE_TOKEN, quote(request.patient_id, safe=""))
        if "?" in path and "_count=" not in path:
            # Fewer, larger pages: each page is a round trip inside the same deadline.
            path += f"&_count={self.config.fhir_page_size}"
        url = f"{base}/{path}"
        first_url = url
        entries: list[Any] = []
        pages = 0
        total = 0
        document: Any = None
        while True:
            pages += 1
            status, body = await self._get(client, url, key)
            total += len(body)
            if total > self.config.fhir_max_bytes:
                raise _refusal(f"answered more than {self.config.fhir_max_bytes} bytes for one key", code="too-long")
            document = self._resource(body, key)
            if document.get("resourceType") != "Bundle":
                return document, {"source": "fetched", "url": first_url, "status": status, "pages": pages}
            entries.extend(document.get("entry") or [])
            next_url = _next_link(document)
            if next_url is None:
                break
            if pages >= self.config.fhir_max_pages:
                raise _refusal(
                    f"has more than {self.config.fhir_max_pages} pages of results for one key", code="too-long"
                )
            if not (next_url == base or next_url.startswith(base + "/") or next_url.startswith(base + "?")):
                # The token would follow the link: only to the allowlisted server itself.
                raise _refusal("sent a next-page link to another server; not followed", code="security")
            url = next_url
        merged = {"resourceType": "Bundle", "type": document.get("type", "searchset"), "entry": entries}
        return merged, {"source": "fetched", "url": first_url, "status": 200, "pages": pages}

    async def _get(self, client: httpx.AsyncClient, url: str, key: str) -> tuple[int, bytes]:
        try:
            async with client.stream("GET", url) as response:
                if response.status_code in (401, 403):
                    log.warning("412: FHIR server refused access for key %r (%d)", key, response.status_code)
                    raise _refusal(f"refused access ({response.status_code}) for prefetch key {key}", code="security")
                if response.status_code != 200:
                    log.warning("412: FHIR server answered %d for key %r", response.status_code, key)
                    raise _refusal(f"answered {response.status_code} for prefetch key {key}", code="exception")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.config.fhir_max_bytes:
                        raise _refusal(
                            f"answered more than {self.config.fhir_max_bytes} bytes for one key", code="too-long"
                        )
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks)
        except httpx.TimeoutException:
            raise _refusal(f"did not answer within {self.config.fhir_deadline_seconds:g} s", code="timeout") from None
        except httpx.HTTPError as exc:
            # The exception's text can hold the URL (a patient id): only its type is logged.
            log.warning("412: FHIR server unreachable for key %r (%s)", key, type(exc).__name__)
            raise _refusal("could not be reached", code="transient") from None

    def _resource(self, body: bytes, key: str) -> dict[str, Any]:
        try:
            document = parse_strict(body, self._limits)
        except FactsValidationError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
            raise _refusal(f"answered something that is not a FHIR resource for prefetch key {key}", code="invalid")
        if document["resourceType"] == "OperationOutcome":
            raise _refusal(f"answered an OperationOutcome for prefetch key {key}", code="exception")
        entries = document.get("entry")
        if document["resourceType"] == "Bundle" and not (entries is None or isinstance(entries, list)):
            raise _refusal(f"answered an invalid Bundle for prefetch key {key}", code="invalid")
        return document


async def _first_failure_cancels_all(jobs: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run ``jobs`` concurrently; the first failure cancels the others before it propagates.

    (``asyncio.gather`` alone would leave them running against a client about to close.)
    """
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    links = bundle.get("link")
    if not isinstance(links, Sequence):
        return None
    for link in links:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None
