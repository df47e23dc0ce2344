"""From a validated hook call to a CDS Hooks response, and feedback into the audit log.

Runs in a worker thread (conversion and evaluation are CPU-bound and the audit
log writes synchronously). Which card belongs to which decision is kept in a
bounded in-memory index, filled at start from the audit log's ``cards`` records,
so feedback can name the decision. With an audit log the index is also written to
the state file the worker processes share (:mod:`neurocds.cdshooks.shared_state`),
so feedback reaching another worker than the one that issued the card names its
decision too. Feedback about a card no index knows is still recorded, without a
``decision_id`` (that absence is the flag), and logged as a warning.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from neurocds.cdshooks.cards import SHEET_PATH, build_cards, incomplete_card
from neurocds.cdshooks.config import ServiceConfig
from neurocds.cdshooks.discovery import ServiceDefinition
from neurocds.cdshooks.evidence import evidence_url
from neurocds.cdshooks.fetch import describe_sources
from neurocds.cdshooks.orders import (
    DRAFT_KEY,
    FactSources,
    as_orders_being_placed,
    draft_medication_requests,
    mark_drafts,
)
from neurocds.cdshooks.requests import FeedbackItem, HookRequest, Issue, RequestError
from neurocds.cdshooks.shared_state import SharedState
from neurocds.errors import FactsValidationError
from neurocds.explain.render import fact_name

log = logging.getLogger("neurocds.cdshooks")

CARD_INDEX_SIZE = 100_000
MAX_NOTES_ON_CARD = 12


class CardIndex:
    """card uuid -> decision id, most recent ``size`` cards; ``shared``: the workers' common index."""

    def __init__(self, size: int = CARD_INDEX_SIZE, shared: SharedState | None = None) -> None:
        self._size = size
        self._map: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._shared = shared

    def add(self, decision_id: str, card_uuids: Sequence[str]) -> None:
        if self._shared is not None:  # before the cards are sent: their feedback may reach another worker
            self._shared.add_cards(decision_id, card_uuids)
        self._remember(decision_id, card_uuids)

    def _remember(self, decision_id: str, card_uuids: Sequence[str]) -> None:
        with self._lock:
            for card in card_uuids:
                self._map[card] = decision_id
                self._map.move_to_end(card)
            while len(self._map) > self._size:
                self._map.popitem(last=False)

    def get(self, card_uuid: str) -> str | None:
        with self._lock:
            found = self._map.get(card_uuid)
        if found is None and self._shared is not None:
            found = self._shared.decision_of(card_uuid)
        return found

    def load(self, directory: Path) -> None:
        """Fill the index from the newest ``cards`` records, read from the log's end backwards:
        as many as the index holds, so start-up costs the same on any length of log."""
        from neurocds.audit.chain import LOG_NAME
        from neurocds.audit.query import records_backwards

        if not (directory / LOG_NAME).exists():
            return
        newest_first: list[tuple[str, list[str]]] = []
        held = 0
        try:
            for record in records_backwards(directory, max_bytes=self._size * 4096):
                body = record.get("cards")
                if record.get("type") == "cards" and isinstance(body, dict):
                    uuids = [str(c) for c in body.get("card_uuids") or ()]
                    newest_first.append((str(body.get("decision_id")), uuids))
                    held += len(uuids)
                    if held >= self._size:
                        break
        except Exception as exc:  # a missing or unreadable log must not stop the service
            log.warning("card index not loaded from the audit log: %s", type(exc).__name__)
            return
        for decision_id, uuids in reversed(newest_first):
            self._remember(decision_id, uuids)


class Evaluator:
    """Engine, FHIR mapping tables and audit log, shared by all requests."""

    def __init__(self, config: ServiceConfig, engine: Any) -> None:
        from neurocds.fhir import engine_mapping_paths, load_mapping_tables

        self.config = config
        self.engine = engine
        # Loaded once: a bad mapping table must stop the service at start, not fail each call.
        self.tables = load_mapping_tables(engine_mapping_paths(engine))
        self.cards = CardIndex()
        self.rule_facts = facts_read_by_rules(getattr(engine, "rules", ()))
        # Pack data for draft orders: rule id -> the medicine classes that worsen its finding.
        self.worsened_by = {r.id: r.worsened_by for r in getattr(engine, "rules", ()) if r.worsened_by is not None}
        self.audit = None
        self.audit_damage: str | None = None
        self.shared: SharedState | None = None
        if config.audit_dir is not None:
            from neurocds.audit import AuditLog

            self.audit = AuditLog.from_options(
                config.audit_dir, config.audit_options, facts_schema=getattr(engine, "facts_schema", None)
            )
            # The chain's tail is checked (and an interrupted write recovered) now: a damaged
            # log stops the service at start (serve exits 4), not at its first call.
            self.audit.recover()
            self.shared = _open_shared_state(config.audit_dir)
            self.cards = CardIndex(shared=self.shared)
            self.cards.load(config.audit_dir)
            # The whole chain is verified in the background; if it is damaged, every call is
            # refused (503) from then on: an append would extend a chain that fails verification.
            threading.Thread(target=self._verify_log, args=(config.audit_dir,), daemon=True).start()

    def _verify_log(self, directory: Path) -> None:
        from neurocds.audit import verify_log

        try:
            report = verify_log(directory)
        except Exception as exc:  # an unreadable log is damage too
            self.audit_damage = f"the audit log cannot be verified: {type(exc).__name__}"
        else:
            broken = [p for p in report.problems if p.sequence is not None]
            if broken:
                first = min(broken, key=lambda p: p.sequence or 0)
                self.audit_damage = f"the audit log fails verification at sequence {first.sequence}: {first.reason}"
        if self.audit_damage:
            log.error("%s; calls are refused (503) until it is repaired", self.audit_damage)

    def health_problem(self) -> str | None:
        """Why a call could not be recorded now (``None``: it could, or nothing is recorded)."""
        from neurocds.cdshooks.health import appendable_problem

        if self.audit is None or self.config.audit_dir is None:
            return None
        state = self.shared.path if self.shared is not None else None
        return appendable_problem(self.audit, self.config.audit_dir, self.audit_damage, state)

    def _check_recordable(self) -> None:
        if self.audit is not None and self.audit_damage is not None:
            from neurocds.audit.errors import AuditIntegrityError

            raise AuditIntegrityError(self.audit_damage)

    # ------------------------------------------------------------------ calls
    def respond(
        self,
        request: HookRequest,
        service: ServiceDefinition,
        prefetch: Mapping[str, Any] | None = None,
        fetched: Mapping[str, dict[str, Any]] | None = None,
        caller: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Cards for one call. ``prefetch``: the request's, completed by the fetcher;
        ``fetched``: the source records of the keys it fetched; ``caller``: the EHR's verified
        JWT ``issuer``, ``subject`` and ``tenant``, recorded with the decision."""
        from neurocds.fhir import FhirConverter, FhirInputError

        self._check_recordable()
        given = request.prefetch if prefetch is None else prefetch
        # Keys this service did not ask for (the spec's 'patientToGreet') are never used: advice
        # must come from data chosen by this service's templates, not whatever else was attached.
        sent = {key: value for key, value in (given or {}).items() if key in service.prefetch}
        ignored = sum(1 for key in given or {} if key not in service.prefetch)
        if not sent:
            # A null value is an answer ("the EHR has none"); only keys never sent leave nothing to go on.
            message = f"none of this service's prefetch keys ({', '.join(service.prefetch)}) was sent"
            message += ", and no fhirServer was given to fetch them from" if request.fhir_server is None else ""
            if ignored:
                message += f"; {ignored} key(s) it did not ask for are not used instead"
            raise RequestError([Issue("/prefetch", message, "incomplete")], 412)
        kwargs: dict[str, Any] = {}
        if self.config.observation_window is not None:
            kwargs["observation_window_days"] = self.config.observation_window.total_seconds() / 86400
        converter = FhirConverter(self.tables, now=self.config.clock(), **kwargs)
        drafts = draft_medication_requests(request.context) if "draftOrders" in service.required_context else []
        # null keys are answers, said once below; the converter need not note them again.
        readable = {key: value for key, value in sent.items() if value is not None}
        if drafts:
            readable[DRAFT_KEY] = as_orders_being_placed(drafts, request.patient_id)
        try:
            conversion = converter.convert_prefetch(readable, patient_id=request.patient_id)
        except FhirInputError as exc:
            pointer = f"/prefetch{exc.pointer}" if getattr(exc, "pointer", None) else "/prefetch"
            message = f"the prefetch data cannot be read as FHIR R4: {str(exc)[:200]}"
            raise RequestError([Issue(pointer, message, "structure")]) from None
        if conversion.only_other_patients:
            # Every resource is about someone other than context.patientId: advising on this patient
            # from it would be wrong, and advising on no data is a missing prefetch.
            message = "the prefetch holds resources about other patients and none about context.patientId"
            raise RequestError([Issue("/prefetch", message, "incomplete")], 412)
        sources = describe_sources(sent, service, fetched or {})
        notes = _source_notes(sources, ignored)
        data_notes = _conversion_notes(conversion.warnings, self.engine.label_of)
        # A value the EHR sent but that cannot be physiologically true was dropped: the clinician must
        # hear of it on every call (it is often a unit or entry error on a value that matters).
        notes += [n for n in data_notes if IMPOSSIBLE_VALUE in n]
        data_notes = [n for n in data_notes if IMPOSSIBLE_VALUE not in n]
        draft_pointers = mark_drafts(conversion.provenance, drafts)
        try:
            # The provenance goes into the trace, as with `evaluate --fhir`, so the result and
            # the audit record say which FHIR resource and code gave each fact, where each
            # prefetch key came from (sent, fetched from which URL, or null), and which
            # medication items are draft orders (the facts contract has no field for that).
            provenance: dict[str, Any] = {
                "provenance": conversion.provenance,
                "warnings": conversion.warnings,
                "prefetch_sources": sources,
            }
            if draft_pointers:
                provenance["draft_orders"] = draft_pointers
            result = self.engine.evaluate(conversion.facts, provenance=provenance).to_dict()
        except FactsValidationError as exc:
            return self._rejected(exc, conversion.facts)
        cards = build_cards(
            result,
            label_of=self.engine.label_of,
            notes=notes,
            data_notes=data_notes,
            sources=FactSources.build(
                readable,
                conversion.provenance,
                draft_pointers,
                conversion.facts,
                name_key=self.tables.document.medication_name_key,
                class_key=self.tables.document.medication_class_key,
            ),
            link_of=lambda finding_id: evidence_url(self.config.base_url, finding_id),
            rule_facts=_recorded_facts_by_rule(self.rule_facts, conversion.facts),
            sheet_url=self.sheet_url,
            worsened_by=self.worsened_by,
        )
        decision_id = str(result["evaluation_id"])
        asked = {"user": request.context.get("userId"), "fhir_server": request.fhir_server,
                 "hook": service.hook, "hook_instance": request.hook_instance, **(caller or {})}  # fmt: skip
        self._record(decision_id, cards, lambda audit: audit.prepare_decision(result, conversion.facts, asked))
        # Optional arrays without a value are omitted (the spec): no "systemActions": [].
        return {"cards": cards}

    def sheet_url(self, finding_id: str) -> str:
        """The absolute URL of a finding's source-attribute sheet on this service."""
        return self.config.endpoint_url(f"{SHEET_PATH}/{quote(finding_id, safe='')}")

    def _record(self, decision_id: str, cards: list[dict[str, Any]], first: Callable[[Any], Any]) -> None:
        """Index the cards, and append ``first(audit)`` (the decision or rejection) with them.

        One append: one lock and one fsync per call, and after a crash both records are in
        the log or neither is. ``first`` is only called when there is an audit log.
        """
        uuids = [c["uuid"] for c in cards]
        self.cards.add(decision_id, uuids)
        if self.audit is None:
            return
        pending = [first(self.audit)]
        if uuids:
            pending.append(self.audit.prepare_cards(decision_id=decision_id, card_uuids=uuids))
        try:
            self.audit.append_together(pending)
        except OSError as exc:  # e.g. the lock file on a file system gone read-only: not recorded, so 503
            from neurocds.audit.errors import AuditError

            raise AuditError(f"the audit log cannot be written: {exc.strerror or type(exc).__name__}") from None

    def _rejected(self, exc: FactsValidationError, facts: Any) -> dict[str, Any]:
        """The FHIR data gave facts the engine refuses: say so on a card rather than stay silent."""
        rejection_id = str(uuid.uuid4())
        log.warning("facts from prefetch rejected by the engine: %d violation(s)", len(exc.violations))
        pseudo = {"packs": [], "errors": [{"kind": "invalid-facts", "message": ""}], "complete": False}
        card = incomplete_card(pseudo, _disclaimer())
        card["summary"] = "Decision support could not evaluate this patient's data; no advice was given"
        self._record(
            rejection_id,
            [card],
            lambda audit: audit.prepare_rejection(
                exc,
                facts=facts,
                engine=self.engine.engine_info(),
                packs=self.engine.pack_infos(),
                rejection_id=rejection_id,
            ),
        )
        return {"cards": [card]}

    # --------------------------------------------------------------- feedback
    def record_feedback(self, items: Sequence[FeedbackItem], caller: Mapping[str, str] | None = None) -> int:
        """Record every item, with who sent it (``caller``: the EHR's JWT issuer, subject and tenant);
        returns how many named a card this service does not know."""
        self._check_recordable()
        unknown = 0
        for item in items:
            decision_id = self.cards.get(item.card)
            if decision_id is None:
                unknown += 1
                log.warning("feedback for a card this service did not issue (or no longer remembers)")
            if self.audit is not None:
                self.audit.record_feedback(
                    card_uuid=item.card,
                    outcome=item.outcome,
                    override_reason=dict(item.override_reason) if item.override_reason is not None else None,
                    decision_id=decision_id,
                    accepted_suggestions=list(item.accepted_suggestions) or None,
                    outcome_timestamp=item.outcome_timestamp,
                    request=caller,
                )
        return unknown


def _open_shared_state(directory: Path) -> SharedState:
    import sqlite3

    from neurocds.audit.errors import AuditError

    try:
        return SharedState(directory, card_limit=CARD_INDEX_SIZE)
    except (sqlite3.Error, OSError) as exc:  # beside the log: if it cannot be opened, neither can the log
        raise AuditError(f"cannot open the service's shared state in {directory}: {exc}") from None


def facts_read_by_rules(rules: Iterable[Any]) -> dict[str, frozenset[str]]:
    """Rule id -> pointers of the input facts its own conditions test (not derived facts or findings)."""
    from neurocds.rules.conditions import FactTest, ItemTest

    return {
        rule.id: frozenset(
            "/" + "/".join(node.path) for node in rule.when.walk() if isinstance(node, FactTest | ItemTest)
        )
        for rule in rules
    }


def _recorded_facts_by_rule(
    rule_facts: Mapping[str, frozenset[str]], facts: Mapping[str, Any]
) -> dict[str, frozenset[str]]:
    """Rule id -> the facts its conditions read that this patient's facts record."""
    recorded: set[str] = set()
    stack: list[tuple[str, Any]] = [("", facts)]
    while stack:
        base, node = stack.pop()
        for key, value in node.items():
            pointer = f"{base}/{key}"
            recorded.add(pointer)  # objects too: an item test names its list, a fact test its leaf
            if isinstance(value, Mapping):
                stack.append((pointer, value))
    return {rule: read & recorded for rule, read in rule_facts.items()}


def _source_notes(sources: Mapping[str, Mapping[str, Any]], ignored: int) -> list[str]:
    """Notes about whole prefetch keys: always worth a card, since whole families of data are unknown."""
    notes = [f"prefetch '{key}' was not sent: treated as not recorded" for key, s in sources.items()
             if s["source"] == "absent"]  # fmt: skip
    notes += [f"prefetch '{key}' is null: the EHR has no such data for this patient" for key, s in sources.items()
              if s["source"] == "null"]  # fmt: skip
    if ignored:
        notes.append(f"{ignored} prefetch key(s) this service did not ask for were not used")
    return notes


# The FHIR converter's words for a value outside its mapping table's possible range.
IMPOSSIBLE_VALUE = "physiologically possible range"


def _conversion_notes(warnings: Sequence[Any], label_of: Any) -> list[str]:
    """One line per distinct converter warning, naming the fact it concerns."""
    messages: list[str] = []
    for warning in warnings:
        if not isinstance(warning, dict) or not isinstance(warning.get("message"), str):
            continue
        pointer = warning.get("pointer")
        text = warning["message"]
        if isinstance(pointer, str) and pointer:
            text = f"{fact_name(pointer, label_of(pointer))}: {text}"
        if text not in messages:
            messages.append(text)
    if len(messages) > MAX_NOTES_ON_CARD:
        rest = len(messages) - MAX_NOTES_ON_CARD
        messages = [*messages[:MAX_NOTES_ON_CARD], f"and {rest} more note(s) about the FHIR data"]
    return messages


def _disclaimer() -> str:
    from neurocds.result import DISCLAIMER

    return DISCLAIMER
