"""The CDS Hooks 2.0 HTTP service as a Starlette app: discovery, service calls, feedback.

Per request: authenticate (401, before the body is read, so an unauthenticated
caller cannot make us parse a large document) -> size limit (413) and body
deadline (408) -> strict JSON (400) -> request shape (400) -> fetch the prefetch
keys the EHR did not send from an allowlisted ``fhirServer`` (412 when refused
or failed; :mod:`neurocds.cdshooks.fetch`) -> FHIR -> facts -> evaluate -> cards
(200). Error bodies are FHIR OperationOutcomes naming the JSON
pointer; they never quote request values. The log gets method, service id,
status and timings only: no patient ids, facts, tokens or FHIR access tokens.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neurocds.audit.errors import AuditError
from neurocds.authoring.sheet import build_sheet, to_html
from neurocds.cdshooks.cards import SHEET_PATH
from neurocds.cdshooks.config import INSECURE_HEADER, ConfigError, ServiceConfig
from neurocds.cdshooks.discovery import ServiceDefinition, build_services, discovery_document, service_by_id
from neurocds.cdshooks.evaluation import Evaluator
from neurocds.cdshooks.evidence import CONTENT_SECURITY_POLICY, evidence_page
from neurocds.cdshooks.fetch import Fetcher
from neurocds.cdshooks.health import HEALTH_PATH, HEALTH_TYPE, health_document
from neurocds.cdshooks.requests import (
    HookRequest,
    Issue,
    RequestError,
    operation_outcome,
    parse_feedback,
    parse_hook_request,
)
from neurocds.cdshooks.security import AuthError, TokenVerifier, caller_of
from neurocds.errors import FactsValidationError
from neurocds.facts.canonical import compact_json
from neurocds.facts.strictjson import fhir_limits, parse_strict

log = logging.getLogger("neurocds.cdshooks")

JSON_TYPES = ("application/json", "application/fhir+json")
MAX_JSON_DEPTH = 64


RETRY_AFTER_SECONDS = 30  # while the audit log cannot record: long enough for someone to look


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    """The body did not arrive within the configured deadline."""


class ClientGone(Exception):
    """The client closed the connection before its body was read: nothing to answer."""


class FastJSONResponse(JSONResponse):
    """The cards of a hook call, written by orjson: starlette's compact JSON, several times cheaper.

    One difference: orjson writes a NaN as ``null`` where starlette raises; cards carry
    none (facts holding one are refused when parsed).
    """

    def render(self, content: Any) -> bytes:
        return compact_json(content)


def outcome_response(issues: list[Issue], status: int) -> JSONResponse:
    return JSONResponse(operation_outcome(issues), status_code=status, media_type="application/fhir+json")


def unauthorized() -> Response:
    # No body and no reason: the reason would tell an attacker which check to work on.
    return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="neurocds"'})


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refusing more than ``limit`` bytes whatever Content-Length claims.

    The whole body must arrive within ``timeout`` seconds: a client trickling it a
    byte at a time would otherwise hold a connection and a buffer indefinitely.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError([Issue("", "Content-Length is not a number", "structure")])
        if int(declared) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:  # chunked bodies, or a Content-Length that lied
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    except ClientDisconnect:
        raise ClientGone from None
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
        self.limits = fhir_limits(config.max_body_bytes, MAX_JSON_DEPTH)
        self.fetcher = Fetcher(config)

    async def authenticate(self, request: Request, path: str) -> tuple[bool, dict[str, str]]:
        """Whether the call is authenticated, and who vouched for it: the token's ``issuer``,
        ``subject`` and ``tenant`` claims, for the audit record (empty: insecure_dev). Never the token."""
        if self.verifier is None:
            return True, {}
        audience = self.config.endpoint_url(path)
        header = request.headers.get("authorization")
        try:
            # In a thread: fetching a JWK Set from a URL blocks.
            claims = await run_in_threadpool(self.verifier.verify, header, audience)
        except AuthError as exc:
            # %r: the path is caller-controlled and must not be able to forge log lines.
            log.warning("401 %s %r: %s", request.method, path, exc)
            return False, {}
        return True, caller_of(claims)

    async def read_raw(self, request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in JSON_TYPES:
            raise RequestError([Issue("", "the body must be application/json", "not-supported")], 415)
        return await read_body(request, self.config.max_body_bytes, self.config.body_timeout_seconds)

    def parse_json(self, raw: bytes) -> Any:
        """Strict JSON (CPU-bound: call it from a worker thread)."""
        try:
            return parse_strict(raw, self.limits)
        except FactsValidationError as exc:
            raise RequestError([Issue(v.pointer, v.message, "structure") for v in exc.violations[:20]]) from None

    def parse_call(self, raw: bytes, service: ServiceDefinition) -> HookRequest:
        """Parse and check a service call (CPU-bound: call it from a worker thread)."""
        hook_request, issues = parse_hook_request(self.parse_json(raw), service)
        if hook_request is None:
            raise RequestError(issues)
        return hook_request

    async def answer(self, raw: bytes, service: ServiceDefinition, caller: dict[str, str]) -> dict[str, Any]:
        """Parse, fetch what the prefetch lacks (in the event loop: it waits on the network), evaluate."""
        hook_request, response = await run_in_threadpool(self._answer_if_complete, raw, service, caller)
        if response is not None:
            return response
        prefetch, fetched = await self.fetcher.complete(hook_request, service, caller.get("issuer"))
        return await run_in_threadpool(self.evaluator.respond, hook_request, service, prefetch, fetched, caller)

    def _answer_if_complete(
        self, raw: bytes, service: ServiceDefinition, caller: dict[str, str]
    ) -> tuple[HookRequest, dict[str, Any] | None]:
        """Parse; when nothing is to be fetched (the usual call), evaluate in the same worker thread:
        each hand-over between the event loop and a thread costs CPU and a GIL switch."""
        hook_request = self.parse_call(raw, service)
        if self.fetcher.will_fetch(hook_request, service):
            return hook_request, None
        prefetch = dict(hook_request.prefetch or {})
        return hook_request, self.evaluator.respond(hook_request, service, prefetch, {}, caller)

    async def evidence(self, request: Request) -> Response:
        """A finding's evidence and source sheet (pack content only, so no token: browsers open it)."""
        from neurocds.result import DISCLAIMER

        engine = self.evaluator.engine
        versions = {str(p.get("name")): str(p.get("version", "")) for p in engine.pack_infos()}
        page = evidence_page(getattr(engine, "rules", ()), versions, request.path_params["finding_id"], DISCLAIMER)
        if page is None:
            return outcome_response([Issue("", "no loaded rule concludes this finding", "not-found")], 404)
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    async def discovery(self, request: Request) -> Response:
        if not (await self.authenticate(request, "/cds-services"))[0]:
            return unauthorized()
        log_failed_packs(self.evaluator.engine)  # every answer is incomplete while one is missing
        return JSONResponse(discovery_document(self.services))

    async def health(self, request: Request) -> Response:
        """Whether the audit log can be appended to (200 pass, 503 fail); no token, no patient data."""
        problem = await run_in_threadpool(self.evaluator.health_problem)
        if problem is not None:
            log.error("health: %s", problem)
        body = health_document(problem, self.evaluator.audit is not None)
        return JSONResponse(body, status_code=503 if problem else 200, media_type=HEALTH_TYPE)

    async def call(self, request: Request) -> Response:
        service_id = request.path_params["service_id"]
        authenticated, caller = await self.authenticate(request, f"/cds-services/{service_id}")
        if not authenticated:
            return unauthorized()
        service = service_by_id(self.services, service_id)
        if service is None:
            return outcome_response([Issue("", "no such CDS service", "not-found")], 404)
        started = time.perf_counter()
        try:
            raw = await self.read_raw(request)
            response = await self.answer(raw, service, caller)
        except (BodyTooLarge, BodyTooSlow, ClientGone) as exc:
            return self._unread(exc, service_id)
        except AuditError as exc:
            return self._cannot_record(service_id, exc)
        except RequestError as exc:
            log.info("%d %s: %d issue(s)", exc.status, service_id, len(exc.issues))
            return outcome_response(exc.issues, exc.status)
        log.info(
            "200 %s: %d card(s) in %.1f ms", service_id, len(response["cards"]), (time.perf_counter() - started) * 1e3
        )
        return FastJSONResponse(response)

    async def feedback(self, request: Request) -> Response:
        service_id = request.path_params["service_id"]
        authenticated, caller = await self.authenticate(request, f"/cds-services/{service_id}/feedback")
        if not authenticated:
            return unauthorized()
        if service_by_id(self.services, service_id) is None:
            return outcome_response([Issue("", "no such CDS service", "not-found")], 404)
        try:
            raw = await self.read_raw(request)
            items, issues = parse_feedback(await run_in_threadpool(self.parse_json, raw))
            if issues:
                raise RequestError(issues)
            unknown = await run_in_threadpool(self.evaluator.record_feedback, items, caller)
        except (BodyTooLarge, BodyTooSlow, ClientGone) as exc:
            return self._unread(exc, f"{service_id} feedback")
        except AuditError as exc:
            return self._cannot_record(f"{service_id} feedback", exc)
        except RequestError as exc:
            log.info("%d %s feedback: %d issue(s)", exc.status, service_id, len(exc.issues))
            return outcome_response(exc.issues, exc.status)
        log.info("200 %s feedback: %d item(s), %d for unknown cards", service_id, len(items), unknown)
        return Response(status_code=200)

    def _cannot_record(self, what: str, exc: AuditError) -> Response:
        return cannot_record(what, exc)

    def _unread(self, exc: Exception, what: str) -> Response:
        """The body was not read whole: too large (413), too slow (408), or the client left."""
        if isinstance(exc, ClientGone):
            # A normal event (the user closed the chart, a proxy gave up): one line, no answer to send.
            log.info("%s: the client disconnected before its request body arrived", what)
            return Response(status_code=400)  # never sent: the connection is gone
        if isinstance(exc, BodyTooSlow):
            seconds = self.config.body_timeout_seconds
            log.info("408 %s: the request body did not arrive within %g s", what, seconds)
            issue = Issue("", f"the request body did not arrive within {seconds:g} seconds", "timeout")
            status = 408
        else:
            issue = Issue("", f"the body is larger than {self.config.max_body_bytes} bytes", "too-long")
            status = 413
        # Close the connection: the rest of the body is never read.
        response = outcome_response([issue], status)
        response.headers["Connection"] = "close"
        return response


def cannot_record(what: str, exc: AuditError) -> Response:
    """The audit log cannot record: no advice is given that is not on record (503, retry later)."""
    log.error("503 %s: the audit log cannot record: %s", what, exc)
    issue = Issue("", "the decision could not be recorded in the audit log, so no advice is given; "
                  "try again later", "transient")  # fmt: skip
    response = outcome_response([issue], 503)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Unexpected errors become a bare OperationOutcome; the traceback goes to the log, not the caller."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except AuditError as exc:  # e.g. a used token cannot be written down beside the log: nothing is trusted
            return cannot_record(f"{request.method} {request.url.path!r}", exc)
        except Exception:
            ref = str(uuid.uuid4())
            log.exception("500 %s %s (error reference %s)", request.method, request.url.path, ref)
            return outcome_response([Issue("", f"internal error (reference {ref})", "exception")], 500)

    return wrapped


def log_failed_packs(engine: Any) -> None:
    """Warn about each installed pack that could not load: the service answers without it."""
    for pack in getattr(engine, "failed_packs", ()):
        log.warning("pack %s could not load; every answer is incomplete without it: %s", pack.name, pack.error)


class _SheetPages:
    """The DSI source-attribute sheet of the engine's packs as HTML, linked from every finding card.

    No token is asked: the sheet holds no patient data, and the clinician who follows a
    card's link opens it in a browser that has none.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._sheet: dict[str, Any] | None = None

    def sheet(self) -> dict[str, Any]:
        if self._sheet is None:
            packs = list(self.engine.packs)
            self._sheet = build_sheet(packs, [p.name for p in packs])
        return self._sheet

    async def page(self, request: Request) -> Response:
        finding = request.path_params.get("finding_id")
        sheet = self.sheet()
        if finding is not None and not any(f["id"] == finding for p in sheet["packs"] for f in p["findings"]):
            return outcome_response([Issue("", f"no loaded pack concludes finding {finding!r}", "not-found")], 404)
        return HTMLResponse(to_html(sheet, only_finding=finding))


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
        # Used tokens outlive a restart and are shared by all workers, beside the audit log.
        store = evaluator.shared
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
    log_failed_packs(engine)
    sheets = _SheetPages(engine)
    routes = [
        Route(SHEET_PATH, _guard(sheets.page), methods=["GET"]),
        Route(SHEET_PATH + "/{finding_id}", _guard(sheets.page), methods=["GET"]),
        Route(HEALTH_PATH, _guard(service.health), methods=["GET"]),
        Route("/cds-services", _guard(service.discovery), methods=["GET"]),
        Route("/cds-services/{service_id}", _guard(service.call), methods=["POST"]),
        Route("/cds-services/{service_id}/feedback", _guard(service.feedback), methods=["POST"]),
        Route("/evidence/{finding_id}", _guard(service.evidence), methods=["GET"]),
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
