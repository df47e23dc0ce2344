"""The one adapter over durable_rules' C extension (``durable_rules_engine``).

durable_rules 2.0.28 is unmaintained and has measured crashes, hangs and silent
wrong answers (see the shared fact sheet). This module fences it in:

* it calls the C extension directly, never the stock ``Host`` (whose dispatcher
  thread has a use-after-free beyond ~8 concurrent sessions, swallows action
  exceptions and gives up silently on slow actions) nor the ``durable.lang`` DSL;
* one session, reused: creating a session allocates and zeroes two index tables
  per beta node (about 1.6 M of the 2.3 M instructions a fresh session cost with
  the 2.0.0 packs), so each evaluation instead retracts every fact it asserted,
  newest first, which leaves the session holding only its sentinel fact, as a
  fresh one would after its sentinel ran (``tests/core/test_session_reuse.py``
  checks that, and the same firings as fresh sessions on every corpus document).
  Any error, or a retraction the extension refuses, deletes the session instead,
  and the next evaluation starts a fresh one; so does every
  ``SESSION_REUSES``-th evaluation, a bound on whatever the tests cannot see;
* the compiled ruleset carries a sentinel rule on a fact of its own, asserted and
  completed first in every new session, because deleting a session in which no
  action ran is an uninitialised free (crash A). Doing it first matters: an assert
  the extension refuses (error 303 when more than 64 alpha nodes match one fact,
  304 beyond 16 facts in a join) leaves no action run, and the deletion then
  crashed the process;
* every error of the extension becomes a :class:`RuleEvaluationError` (kind
  ``backend``), so the engine reports the reference answer, loudly incomplete;
* session ids and fact ids are chosen here and checked against the extension's
  32-bit FNV-1a hash, which it compares instead of the strings (upstream #376);
* facts reach it only after schema validation, projected to the fields rules use
  and encoded with :func:`neurocds.rules.compiler.encode` (finite numbers, ASCII);
* a firing budget stops runaway chaining; an ``on_fire`` callback that raises
  becomes a :class:`RuleEvaluationError` naming the rule. The engine passes none:
  pack hooks run after the session, so no pack code runs while the lock is held;
* a per-ruleset lock serialises sessions: the C calls hold the GIL anyway, so
  this costs no parallelism, and it keeps live sessions far below the 1024 cap.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
from collections.abc import Mapping
from typing import Any

from neurocds.backends.reference import FireCallback, Run, fire_rule
from neurocds.errors import RuleEvaluationError
from neurocds.rules.compiler import (
    MAX_EXACT_INT,
    TYPE_DERIVED,
    TYPE_FINDING,
    TYPE_INPUT,
    TYPE_SENTINEL,
    CompiledRuleset,
    CompileError,
    encode,
    inexact_number,
)

MAX_LIVE_SESSIONS = 1024  # the extension's own cap per ruleset (MemoryError beyond)
SESSION_REUSES = 10_000  # evaluations one session serves before a fresh one (1 in 10,000 pays 2.3 M)
SENTINEL_ID = "s"  # the sentinel fact's id; input and conclusion facts are x0, x1, ...
_INEXACT = "durable_rules cannot compare the integer at {} exactly (beyond ±2**53); reference answer only"


def load_extension() -> Any:
    """Import the C extension or raise ImportError with the reason (e.g. Python 3.13)."""
    import durable_rules_engine

    return durable_rules_engine


def fnv1a32(text: str) -> int:
    """The hash the extension uses for ids and sids (32-bit FNV-1a over the bytes)."""
    h = 0x811C9DC5
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


# Fact ids x0, x1, ... recur in every session, session ids never: only the former are cached.
_fact_id_hash = functools.lru_cache(maxsize=1024)(fnv1a32)


def projection_tree(paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """The fields some rule reads, as a nested dict (``True`` marks a leaf)."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if child is True:  # a whole object is already wanted
                break
            node = child
        else:
            node[path[-1]] = True
    return tree


def project(facts: Mapping[str, Any], tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Copy only the fields some rule reads: less to encode, nothing else reaches C."""
    out: dict[str, Any] = {}
    for key in facts.keys() & tree.keys():  # the present ones only, intersected at C speed
        value, sub = facts[key], tree[key]
        if sub is True:
            kind = type(value)
            # Scalars by exact type first: this runs for every projected fact of every evaluation.
            if (kind is int and not -MAX_EXACT_INT <= value <= MAX_EXACT_INT) or (
                (kind is list or kind is dict) and inexact_number(value)
            ):
                raise RuleEvaluationError(_INEXACT.format(prefix + key), kind="backend")
            out[key] = value
        elif type(value) is dict:
            inner = project(value, sub, f"{prefix}{key}/")
            if inner:
                out[key] = inner
    return out


class DurableBackend:
    """Evaluates a compiled ruleset on durable_rules, one session per evaluation."""

    name = "durable"
    _ruleset_counter = itertools.count()  # names must be unique per process

    def __init__(self, compiled: CompiledRuleset, *, firing_budget: int | None = None):
        self._dre = load_extension()
        self.compiled = compiled
        self._name = f"neurocds_{next(self._ruleset_counter)}_{id(self)}"
        try:
            self._handle = self._dre.create_ruleset(self._name, compiled.json)
        except Exception as exc:  # a cap the compiler does not know yet: a load error, not a crash later
            raise CompileError(f"durable_rules refused the compiled rules: {type(exc).__name__}: {exc}") from exc
        self._projection = projection_tree(compiled.input_paths)
        # The same few conclusion facts are asserted in evaluation after evaluation: their JSON
        # (everything after the session and fact ids) is encoded once. The compiler keeps each
        # derived fact to one kind of value, so True and 1 never meet under one key.
        self._sentinel_tail = _tail({"t": TYPE_SENTINEL})
        self._conclusion_tails = {key: _tail(_conclusion_body(*key)) for key in compiled.referenced}
        self._lock = threading.Lock()
        self._sessions = itertools.count(1)
        self._live: set[int] = set()
        self._session: tuple[str, int] | None = None  # (sid, hash) of the reused session
        self._uses = 0
        self.firing_budget = firing_budget or max(1000, 8 * len(compiled.definition))

    def _new_sid(self) -> tuple[str, int]:
        while True:
            sid = f"s{next(self._sessions)}"
            h = fnv1a32(sid)
            if h not in self._live:
                if len(self._live) >= MAX_LIVE_SESSIONS:
                    raise RuleEvaluationError("too many live durable_rules sessions", kind="backend")
                self._live.add(h)
                return sid, h

    def run(
        self,
        facts: Mapping[str, Any],
        computed: Mapping[str, Any],
        on_fire: FireCallback | None = None,
        disabled: frozenset[str] = frozenset(),
    ) -> Run:
        """One evaluation; firings of rules of ``disabled`` packs are ignored (never recorded or chained on)."""
        with self._lock:
            if self._session is None:
                self._session = self._open_session()
            sid = self._session[0]
            asserted: list[str] = []
            clean = False
            try:
                run = self._run_session(sid, facts, computed, on_fire, disabled, asserted)
                clean = self._retract(asserted)
                return run
            finally:
                self._uses += 1
                if not clean or self._uses >= SESSION_REUSES:
                    self._close_session()

    def _open_session(self) -> tuple[str, int]:
        """A new session whose sentinel action has run (crash A: see the module docstring)."""
        sid, sid_hash = self._new_sid()
        dre, handle = self._dre, self._handle
        try:
            code, state_handle = dre.assert_fact(handle, f'{{"sid":"{sid}","id":"{SENTINEL_ID}",{self._sentinel_tail}')
            started = dre.start_action_for_state(handle, state_handle) if code == 0 else None
            if not started:
                raise RuleEvaluationError("durable_rules did not run the sentinel rule", kind="backend")
            dre.update_state(handle, started[0])
            if dre.complete_and_start_action(handle, state_handle):
                dre.abandon_action(handle, state_handle)
                raise RuleEvaluationError("durable_rules started an action before any input fact", kind="backend")
        except BaseException as exc:
            try:
                dre.delete_state(handle, sid)
            finally:
                self._live.discard(sid_hash)
            if isinstance(exc, RuleEvaluationError):
                raise
            raise RuleEvaluationError(f"durable_rules failed: {type(exc).__name__}: {exc}", kind="backend") from exc
        self._uses = 0
        return sid, sid_hash

    def _retract(self, asserted: list[str]) -> bool:
        """Retract this evaluation's facts, newest first; False if the extension refused one."""
        dre, handle = self._dre, self._handle
        try:
            for fact in reversed(asserted):
                dre.retract_fact(handle, fact)
        except Exception:
            return False
        return True

    def _close_session(self) -> None:
        if self._session is None:
            return
        sid, sid_hash = self._session
        self._session = None
        try:
            self._dre.delete_state(self._handle, sid)
        finally:
            self._live.discard(sid_hash)

    def close(self) -> None:
        """Delete the reused session (the engine works on: the next evaluation opens a new one)."""
        with self._lock:
            self._close_session()

    def _run_session(
        self,
        sid: str,
        facts: Mapping[str, Any],
        computed: Mapping[str, Any],
        on_fire: FireCallback | None,
        disabled: frozenset[str],
        asserted: list[str],
    ) -> Run:
        dre, handle, compiled = self._dre, self._handle, self.compiled
        run = Run(backend=self.name)
        used_ids: set[int] = {_fact_id_hash(SENTINEL_ID)}
        counter = itertools.count()

        def fact_id() -> str:
            while True:
                candidate = f"x{next(counter)}"
                h = _fact_id_hash(candidate)
                if h not in used_ids:
                    used_ids.add(h)
                    return candidate

        def assert_fact(tail: str) -> int:
            # Session and fact ids are ours: ASCII letters and digits, nothing to escape.
            code: int
            state_handle: int
            fact = f'{{"sid":"{sid}","id":"{fact_id()}",{tail}'
            code, state_handle = dre.assert_fact(handle, fact)
            if code == 2:  # duplicate id: impossible with our ids, so it is a bug
                raise RuleEvaluationError("durable_rules saw a duplicate fact id", kind="backend")
            if code == 0:  # stored: retracted after the evaluation
                asserted.append(fact)
            # code 1: no rule consumes the fact, so it was not stored. Expected for facts nobody references.
            return state_handle

        done: set[tuple[str, str, Any]] = set()

        def assert_conclusion(kind: str, name: str, value: Any) -> None:
            key = (kind, name, value)
            if key in compiled.referenced and key not in done:
                done.add(key)
                assert_fact(self._conclusion_tails[key])

        derived_view: dict[str, Any] = dict(computed)
        fired: set[int] = set()
        firings = 0
        result = None
        state_handle = 0
        try:
            for name in sorted(computed):
                if inexact_number(computed[name]):
                    raise RuleEvaluationError(_INEXACT.format(f"computed fact {name}"), kind="backend")
                assert_conclusion("derived", name, computed[name])
            state_handle = assert_fact(_tail({"t": TYPE_INPUT, "f": project(facts, self._projection)}))
            result = dre.start_action_for_state(handle, state_handle)
            while result:
                state_json, message = result[0], result[1]
                firings += 1
                if firings > self.firing_budget:
                    raise RuleEvaluationError(
                        f"firing budget of {self.firing_budget} exhausted: runaway chaining", kind="budget"
                    )
                index = compiled.rule_of.get(_rule_name(message))
                if index is not None and index not in fired and compiled.rules[index].pack not in disabled:
                    fired.add(index)
                    rule = compiled.rules[index]
                    fire_rule(rule, index, run, derived_view, on_fire)
                    if rule.kind == "derive":
                        derived_view.setdefault(rule.key, rule.value)
                        assert_conclusion("derived", rule.key, rule.value)
                    else:
                        assert_conclusion("finding", rule.key, True)
                dre.update_state(handle, state_json)
                message = dre.complete_and_start_action(handle, state_handle)
                result = (state_json, message) if message else None
        except BaseException as exc:
            # Release the action lease before the session is deleted in run().
            if result:
                dre.abandon_action(handle, state_handle)
            if isinstance(exc, RuleEvaluationError):
                raise
            raise RuleEvaluationError(f"durable_rules failed: {type(exc).__name__}: {exc}", kind="backend") from exc
        return run


def _conclusion_body(kind: str, name: str, value: Any) -> dict[str, Any]:
    if kind == "derived":
        return {"t": TYPE_DERIVED, "n": name, "v": value}
    return {"t": TYPE_FINDING, "n": name}


def _tail(body: dict[str, Any]) -> str:
    """The encoded fact body without its opening brace, to follow the ids: ``{"sid":..,"id":..,<tail>``."""
    return encode(body)[1:]


def _rule_name(message: str) -> str:
    # Messages look like {"<rule name>":{...}}; the rule name is all we need.
    if message.startswith('{"'):
        end = message.find('"', 2)
        if end > 2:
            return message[2:end]
    first_key: str = next(iter(json.loads(message)))
    return first_key
