"""The CDS Hooks 2.0 HTTP service as a Starlette app: discovery, service calls, feedback.

Per request: authenticate (401, before the body is read, so an unauthenticated
caller cannot make us parse a large document) -> size limit (413) -> strict JSON
(400) -> request shape (400) -> prefetch present (412) -> FHIR -> facts ->
evaluate -> cards (200). Error bodies are FHIR OperationOutcomes naming the JSON
pointer; they never quote request values. The log gets method, service id,
status and timings only: no patient ids, facts, tokens or FHIR access tokens.

The FHIR server named in a request is never called: this version needs the
prefetch (the discovery document says so) and answers 412 without it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurocds.audit.errors import AuditError
from neurocds.cdshooks.config import INSECURE_HEADER, ConfigError, ServiceConfig
from neurocds.cdshooks.discovery import ServiceDefinition, build_services, discovery_document, service_by_id
from neurocds.cdshooks.evaluation import Evaluator
from neurocds.cdshooks.requests import Issue, RequestError, operation_outcome, parse_feedback, parse_hook_request
from neurocds.cdshooks.security import AuthError, TokenVerifier
from neurocds.errors import FactsValidationError
from neurocds.facts.strictjson import ParseLimits, parse_strict

log = logging.getLogger("neurocds.cdshooks")

JSON_TYPES = ("application/json", "application/fhir+json")
MAX_JSON_DEPTH = 64


RETRY_AFTER_SECONDS = 30  # while the audit log cannot record: long enough for someone to look


class BodyTooLarge(Exception):
    pass


def outcome_response(issues: list[Issue], status: int) -> JSONResponse:
    return JSONResponse(operation_outcome(issues), status_code=status, media_type="application/fhir+json")


def unauthorized() -> Response:
    # No body and no reason: the reason would tell an attacker which check to work on.
    return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="neurocds"'})


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError([Issue("", "Content-Length is not a number", "structure")])
        if int(declared) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:  # chunked bodies, or a Content-Length that lied
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class _Headers:
    """Pure ASGI middleware: headers every response carries (insecure marker, no caching)."""

    def __init__(self, app: ASGIApp, extra: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.extra = extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *self.extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CdsService:
    """Route handlers bound to one configuration, verifier and evaluator."""

    def __init__(self, config: ServiceConfig, evaluator: Evaluator, verifier: TokenVerifier | None) -> None:
        self.config = config
        self.evaluator = evaluator
        self.verifier = verifier
        # Prefetch templates are generated from the same mapping tables the converter uses.
        self.services = build_services(evaluator.tables)
        self.limits = ParseLimits(max_bytes=config.max_body_bytes, max_depth=MAX_JSON_DEPTH)

    async def authenticate(self, request: Request, path: str) -> bool:
        if self.verifier is None:
            return True
        audience = self.config.endpoint_url(path)
        header = request.headers.get("authorization")
        try:
            # In a thread: fetching a JWK Set from a URL blocks.
            await run_in_threadpool(self.verifier.verify, header, audience)
        except AuthError as exc:
            # %r: the path is caller-controlled and must not be able to forge log lines.
            log.warning("401 %s %r: %s", request.method, path, exc)
            return False
        return True

    async def read_raw(self, request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in JSON_TYPES:
            raise RequestError([Issue("", "the body must be application/json", "not-supported")], 415)
        return await read_body(request, self.config.max_body_bytes)

    def parse_json(self, raw: bytes) -> Any:
        """Strict JSON (CPU-bound: call it from a worker thread)."""
        try:
            return parse_strict(raw, self.limits)
        except FactsValidationError as exc:
            raise RequestError([Issue(v.pointer, v.message, "structure") for v in exc.violations[:20]]) from None

    def answer(self, raw: bytes, service: ServiceDefinition) -> dict[str, Any]:
        """Parse, check, convert, evaluate, record: one worker-thread hop for the whole CPU-bound part."""
        hook_request, issues = parse_hook_request(self.parse_json(raw), service)
        if hook_request is None:
            raise RequestError(issues)
        return self.evaluator.respond(hook_request, service)

    async def discovery(self, request: Request) -> Response:
        if not await self.authenticate(request, "/cds-services"):
            return unauthorized()
        return JSONResponse(discovery_document(self.services))

    async def call(self, request: Request) -> Response:
        service_id = request.path_params["service_id"]
        if not await self.authenticate(request, f"/cds-services/{service_id}"):
            return unauthorized()
        service = service_by_id(self.services, service_id)
        if service is None:
            return outcome_response([Issue("", "no such CDS service", "not-found")], 404)
        started = time.perf_counter()
        try:
            raw = await self.read_raw(request)
            response = await run_in_threadpool(self.answer, raw, service)
        except BodyTooLarge:
            return self._too_large()
        except AuditError as exc:
            return self._cannot_record(service_id, exc)
        except RequestError as exc:
            log.info("%d %s: %d issue(s)", exc.status, service_id, len(exc.issues))
            return outcome_response(exc.issues, exc.status)
        log.info(
            "200 %s: %d card(s) in %.1f ms", service_id, len(response["cards"]), (time.perf_counter() - started) * 1e3
        )
        return JSONResponse(response)

    async def feedback(self, request: Request) -> Response:
        service_id = request.path_params["service_id"]
        if not await self.authenticate(request, f"/cds-services/{service_id}/feedback"):
            return unauthorized()
        if service_by_id(self.services, service_id) is None:
            return outcome_response([Issue("", "no such CDS service", "not-found")], 404)
        try:
            raw = await self.read_raw(request)
            items, issues = parse_feedback(await run_in_threadpool(self.parse_json, raw))
            if issues:
                raise RequestError(issues)
            unknown = await run_in_threadpool(self.evaluator.record_feedback, items)
        except BodyTooLarge:
            return self._too_large()
        except AuditError as exc:
            return self._cannot_record(f"{service_id} feedback", exc)
        except RequestError as exc:
            log.info("%d %s feedback: %d issue(s)", exc.status, service_id, len(exc.issues))
            return outcome_response(exc.issues, exc.status)
        log.info("200 %s feedback: %d item(s), %d for unknown cards", service_id, len(items), unknown)
        return Response(status_code=200)

    def _cannot_record(self, what: str, exc: AuditError) -> Response:
        """The audit log cannot record: no advice is given that is not on record (503, retry later)."""
        log.error("503 %s: the audit log cannot record: %s", what, exc)
        issue = Issue("", "the decision could not be recorded in the audit log, so no advice is given; "
                      "try again later", "transient")  # fmt: skip
        response = outcome_response([issue], 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    def _too_large(self) -> Response:
        issue = Issue("", f"the body is larger than {self.config.max_body_bytes} bytes", "too-long")
        # Close the connection: the rest of an oversized body is never read.
        response = outcome_response([issue], 413)
        response.headers["Connection"] = "close"
        return response


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Unexpected errors become a bare OperationOutcome; the traceback goes to the log, not the caller."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:
            ref = str(uuid.uuid4())
            log.exception("500 %s %s (error reference %s)", request.method, request.url.path, ref)
            return outcome_response([Issue("", f"internal error (reference {ref})", "exception")], 500)

    return wrapped


def create_app(config: ServiceConfig, engine: Any | None = None) -> Starlette:
    """The service. ``engine``: an :class:`~neurocds.engine.Engine` (default: all installed packs).

    Give the audit directory to ``config``, not to the engine: the service records
    decisions, the cards issued for them and feedback in one chain.
    """
    if engine is None:
        from neurocds.engine import Engine

        engine = Engine()
    if config.audit_dir is not None and getattr(engine, "audit_log", None) is not None:
        raise ConfigError("the audit log is configured twice: give audit_dir to the service config only")
    evaluator = Evaluator(config, engine)  # first: it opens (and checks) the audit log
    verifier = None
    if config.secured:
        store = None
        if config.audit_dir is not None:  # used tokens outlive a restart, in the log's index
            from neurocds.audit.index import UsedTokens

            store = UsedTokens(config.audit_dir)
        verifier = TokenVerifier.from_locations(
            config.issuers,
            clock=config.clock,
            leeway_seconds=config.token_leeway_seconds,
            max_lifetime_seconds=config.max_token_lifetime_seconds,
            replay_cache_size=config.replay_cache_size,
            jwks_cache_seconds=config.jwks_cache_seconds,
            replay_store=store,
        )
    service = CdsService(config, evaluator, verifier)
    routes = [
        Route("/cds-services", _guard(service.discovery), methods=["GET"]),
        Route("/cds-services/{service_id}", _guard(service.call), methods=["POST"]),
        Route("/cds-services/{service_id}/feedback", _guard(service.feedback), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.service = service
    extra = [(b"cache-control", b"no-store")]
    if not config.secured:
        extra.append((INSECURE_HEADER.lower().encode(), b"no authentication (development mode)"))
    app.add_middleware(_Headers, extra=extra)
    if config.cors_origins:
        # Added last, so outermost: a preflight (OPTIONS, no token) is answered before routing.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=[INSECURE_HEADER],
            allow_credentials=False,  # tokens travel in Authorization, never in cookies
            max_age=600,
        )
    return app
