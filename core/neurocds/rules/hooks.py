"""Calling pack code: read-only facts in, a time budget around it, a checked answer out.

Every call into a pack (entry-point import, ``neurocds_register_packs``,
``neurocds_compute_facts``, ``neurocds_finding_detail``) goes through
:class:`HookRunner`. Three promises follow from it:

* a hook cannot change anything through what it is given: facts are a deep-frozen
  view (:func:`freeze`: mappings are :class:`types.MappingProxyType`, arrays are
  tuples), built once per evaluation and shared, which costs one walk instead of a
  copy per hook;
* a hook that overruns its budget is reported as that pack's failure and the
  evaluation goes on. A Python thread cannot be killed, so pack code runs on a
  worker thread and the caller stops waiting; while the late call is still running,
  the same hook of that pack is not called again (its pack fails at once), so a
  hanging pack holds one thread, not one per evaluation;
* anything pack code raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is
  that pack's failure: it runs on a worker thread, where neither can end the process.
  A real Ctrl-C is delivered to the main thread and still interrupts the caller.
"""

from __future__ import annotations

import _thread
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from neurocds.hookspecs import ComputedFacts, RulePack

DEFAULT_HOOK_BUDGET_S = 0.2  # per pack and evaluation: well under CDS Hooks' 500 ms
LOAD_BUDGET_S = 10.0  # importing a pack and its register hook, once per Engine
MAX_DETAIL_CHARS = 2000
MAX_COMPUTED_VALUES = 256
MAX_NAME_CHARS = 200
MAX_STRING_VALUE_CHARS = 1000
MAX_BECAUSE_POINTERS = 64
MAX_EXACT_INT = 2**53


class HookFailure(Exception):
    """Pack code failed: it raised, overran its budget or returned something not allowed."""


# Exact JSON scalars: immutable and no container, so returned as they are. Most members
# of a facts document are these; testing their exact type first spares each the
# abstract-class checks below, which were most of the cost of freezing (about 170k
# instructions of a 1.2M evaluation on the benchmark documents).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """A deep read-only view of a JSON value: dicts become mapping proxies, lists tuples."""
    kind = type(value)
    if kind is dict:
        return MappingProxyType({k: v if type(v) in _SCALARS else freeze(v) for k, v in value.items()})
    if kind is list:
        return tuple([v if type(v) in _SCALARS else freeze(v) for v in value])
    if kind in _SCALARS:
        return value
    # Any Mapping or sequence, not only exact dicts and lists: a caller's OrderedDict or
    # defaultdict nested in the facts would otherwise reach pack code writable, and one
    # pack could change what the next pack and the rules see.
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


class _Job:
    """One call of pack code. ``running`` is a bare lock held until the call ends: C-level
    locks are far cheaper than ``threading.Event`` on this path (every hook call crosses it)."""

    __slots__ = ("args", "error", "fn", "running", "value")

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        self.fn, self.args = fn, args
        self.running = _thread.allocate_lock()
        self.running.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the pack's failure too
            self.error = exc
        finally:
            self.running.release()

    def finished(self, timeout: float) -> bool:
        return self.running.acquire(timeout=max(timeout, 0.0))


class HookRunner:
    """Runs pack code on reusable daemon worker threads with a deadline (one per Engine)."""

    def __init__(self, budget_s: float = DEFAULT_HOOK_BUDGET_S, load_budget_s: float = LOAD_BUDGET_S) -> None:
        for what, value in (("hook budget", budget_s), ("load budget", load_budget_s)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
        self.budget_s = float(budget_s)
        self.load_budget_s = float(load_budget_s)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._late: dict[tuple[str, str], _Job] = {}  # (pack, hook) -> a call that overran, still running

    def call(self, pack: str, hook: str, fn: Callable[..., Any], args: Sequence[Any], timeout: float) -> Any:
        """``fn(*args)`` on a worker; raises :class:`HookFailure` on an exception or after ``timeout`` s."""
        key = (pack, hook)
        with self._lock:
            late = self._late.get(key)
            if late is not None and late.running.locked():
                raise HookFailure(self.overrun(hook, timeout))  # the same words: answers stay deterministic
            self._late.pop(key, None)
            worker = self._idle.pop() if self._idle else _Worker(self)
        job = _Job(fn, args)
        worker.give(job)
        if not job.finished(timeout):
            with self._lock:
                self._late[key] = job
            raise HookFailure(self.overrun(hook, timeout))
        if job.error is not None:
            exc = job.error
            raise HookFailure(f"{hook} raised {type(exc).__name__}: {exc}") from exc
        return job.value

    def overrun(self, hook: str, timeout: float) -> str:
        budget = self.budget_s if timeout <= self.budget_s else timeout  # a call's share: name the whole
        return f"{hook} did not return within the pack's budget of {budget * 1000:g} ms"

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)


class _Worker:
    """One daemon thread taking one job at a time; back in the idle list when it finishes."""

    def __init__(self, runner: HookRunner) -> None:
        self._runner = runner
        self._ready = _thread.allocate_lock()
        self._ready.acquire()
        self._job: _Job | None = None
        threading.Thread(target=self._loop, name="neurocds-pack-hook", daemon=True).start()

    def give(self, job: _Job) -> None:
        self._job = job
        self._ready.release()

    def _loop(self) -> None:
        while True:
            self._ready.acquire()
            job, self._job = self._job, None
            if job is not None:
                job.run()
            self._runner._release(self)


class Budget:
    """What is left of each pack's budget in one evaluation (all its hook calls share it)."""

    __slots__ = ("_runner", "_spent")

    def __init__(self, runner: HookRunner) -> None:
        self._runner = runner
        self._spent: dict[str, float] = {}

    def call(self, pack: str, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        spent = self._spent.get(pack, 0.0)
        if spent >= self._runner.budget_s:
            raise HookFailure(self._runner.overrun(hook, self._runner.budget_s))
        started = time.monotonic()
        try:
            return self._runner.call(pack, hook, fn, args, self._runner.budget_s - spent)
        finally:
            self._spent[pack] = spent + time.monotonic() - started


# ------------------------------------------------------------------ return checks
def checked_call(produce: Callable[[], Any], check: Callable[[Any], Any]) -> tuple[bool, Any]:
    """Run on a worker (through :meth:`HookRunner.call`): pack code, then the check of its answer.

    The check reaches pack-defined code too (properties of a returned record, ``__iter__``,
    ``__fspath__``), so it must run inside the same budget as the call. A refused answer
    comes back as ``(False, reason)`` (see :func:`unwrap`), so that its words are not
    dressed as an exception the pack raised.
    """
    out = produce()
    try:
        return True, check(out)
    except HookFailure as exc:
        return False, str(exc)


def unwrap(answer: tuple[bool, Any]) -> Any:
    """The checked value of :func:`checked_call`, or :class:`HookFailure` with the refusal."""
    ok, value = answer
    if not ok:
        raise HookFailure(value)
    return value


def check_text(text: Any, what: str, limit: int) -> str:
    """A string of valid Unicode (no lone surrogates, no NUL) of at most ``limit`` characters."""
    # Exactly str: a subclass could override startswith/__eq__ and pass a namespace check
    # (another pack's facts) or compare unlike what it prints.
    if not isinstance(text, str):
        raise HookFailure(f"{what} must be a string, got {type(text).__name__}")
    if type(text) is not str:
        raise HookFailure(f"{what} must be a plain string, not the str subclass {type(text).__name__}")
    if len(text) > limit:
        raise HookFailure(f"{what} is {len(text)} characters long (at most {limit})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HookFailure(f"{what} is not valid Unicode (it holds a lone surrogate)") from None
    if "\x00" in text:
        raise HookFailure(f"{what} holds a NUL character")
    return text


def check_detail(out: Any) -> str | None:
    """What ``neurocds_finding_detail`` may return: ``None`` or a short text."""
    return None if out is None else check_text(out, "neurocds_finding_detail's return value", MAX_DETAIL_CHARS)


def check_records(out: Any) -> list[RulePack]:
    """What ``neurocds_register_packs`` may return: a list (or tuple) of RulePack records."""
    if out is None:
        return []
    if not isinstance(out, list | tuple):
        raise HookFailure(f"neurocds_register_packs must return a list of RulePack records, got {type(out).__name__}")
    for record in out:
        if not isinstance(record, RulePack):
            raise HookFailure(f"neurocds_register_packs must return RulePack records, got {type(record).__name__}")
        check_text(record.name, "RulePack.name", MAX_NAME_CHARS)
        check_text(record.version, "RulePack.version", MAX_NAME_CHARS)
        if isinstance(record.depends_on, str) or not isinstance(record.depends_on, Sequence):
            raise HookFailure(f"RulePack.depends_on of {record.name!r} must be a list of pack names")
        for dep in record.depends_on:
            check_text(dep, "RulePack.depends_on entry", MAX_NAME_CHARS)
        files: Any = record.rule_files  # typed Sequence[Path], but pack code may return anything
        if isinstance(files, str | bytes) or not isinstance(files, Sequence):
            raise HookFailure(f"RulePack.rule_files of {record.name!r} must be a list of paths")
        if record.facts_schema is not None and not isinstance(record.facts_schema, Mapping):
            raise HookFailure(f"RulePack.facts_schema of {record.name!r} must be a mapping or None")
    return list(out)


def check_computed(
    out: Any, own_packs: Mapping[str, Sequence[str]], kinds: Mapping[str, str]
) -> tuple[str, dict[str, Any], dict[str, list[str]]] | None:
    """Check what ``neurocds_compute_facts`` returned: ``(pack, values, because)`` or ``None``.

    :param own_packs: name -> namespaces, for every pack the calling plugin registered.
    :param kinds: derived-fact name -> the kind of value rules use it as.
    """
    if out is None:
        return None
    if not isinstance(out, ComputedFacts):
        raise HookFailure(f"neurocds_compute_facts must return ComputedFacts or None, got {type(out).__name__}")
    if not isinstance(out.pack, str) or out.pack not in own_packs:
        raise HookFailure(f"ComputedFacts.pack {out.pack!r} is not one of its own packs ({', '.join(own_packs)})")
    if not isinstance(out.values, Mapping) or len(out.values) > MAX_COMPUTED_VALUES:
        raise HookFailure(f"ComputedFacts.values must be a mapping of at most {MAX_COMPUTED_VALUES} facts")
    namespaces = own_packs[out.pack]
    values: dict[str, Any] = {}
    for name, value in out.values.items():
        check_text(name, "computed fact name", MAX_NAME_CHARS)
        if not any(name.startswith(ns + ".") for ns in namespaces):
            owned = ", ".join(repr(ns) for ns in namespaces) or "none"
            raise HookFailure(f"computed fact {name!r} is outside the namespaces of pack {out.pack!r} ({owned})")
        values[name] = _check_scalar(name, value, kinds.get(name))
    because: dict[str, list[str]] = {}
    raw_because = out.because if isinstance(out.because, Mapping) else None
    if raw_because is None:
        raise HookFailure("ComputedFacts.because must be a mapping")
    for name, pointers in raw_because.items():
        if name not in values:
            raise HookFailure(f"ComputedFacts.because names {name!r}, which is not among its values")
        if isinstance(pointers, str) or not isinstance(pointers, Sequence) or len(pointers) > MAX_BECAUSE_POINTERS:
            raise HookFailure(f"ComputedFacts.because[{name!r}] must be a list of JSON pointers")
        because[name] = [check_text(p, "JSON pointer", MAX_NAME_CHARS) for p in pointers]
    return out.pack, values, because


def _check_scalar(name: str, value: Any, used_as: str | None) -> Any:
    kind = type(value)
    if kind is bool:
        found = "boolean"
    elif kind is int:
        if not -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            raise HookFailure(f"computed fact {name!r} is an integer beyond ±2**53")
        found = "number"
    elif kind is float:
        if not math.isfinite(value):
            raise HookFailure(f"computed fact {name!r} must be a finite JSON scalar, not {value!r}")
        found = "number"
    elif kind is str:
        check_text(value, f"computed fact {name!r}", MAX_STRING_VALUE_CHARS)
        found = "string"
    else:
        raise HookFailure(
            f"computed fact {name!r} must be a finite JSON scalar (string, number or boolean), not {kind.__name__}"
        )
    if used_as is not None and found != used_as:
        raise HookFailure(f"computed fact {name!r} is a {found}; rules use it as a {used_as}")
    return value
