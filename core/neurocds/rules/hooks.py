"""Calling pack code: read-only facts in, a time budget around it, a checked answer out.

Every call into a pack (entry-point import, registration, ``neurocds_register_packs``,
``neurocds_compute_facts``, ``neurocds_finding_detail``) goes through
:class:`HookRunner`. Three promises follow from it:

* a hook cannot change anything through what it is given: facts are a deep-frozen
  view (:func:`freeze`: mappings are :class:`types.MappingProxyType`, arrays are
  tuples), built once per evaluation and shared, which costs one walk instead of a
  copy per hook;
* a hook that overruns its budget is reported as that pack's failure and the
  evaluation goes on. The budget is CPU time of the pack's own worker thread (a busy
  machine makes a healthy pack wait for a CPU or the GIL, and that wait is not the
  pack's); a pack that blocks spends none, so a wall-clock limit several times the
  budget stops it too. A Python thread cannot be killed, so pack code runs on a
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

DEFAULT_HOOK_BUDGET_S = 0.2  # CPU seconds per pack and evaluation: well under CDS Hooks' 500 ms
LOAD_BUDGET_S = 10.0  # CPU seconds for importing a pack and its register hook, once per Engine
WALL_LIMIT_FACTOR = 5.0  # a blocked pack (no CPU spent) is stopped after this many budgets of wall time
_MIN_WAIT_S = 0.005  # re-reads of a starved worker's CPU clock are at least this far apart
# A per-thread CPU clock (Linux and most Unixes); elsewhere the budget is wall-clock time.
_CPU_CLOCKS = hasattr(time, "pthread_getcpuclockid")
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
    locks are far cheaper than ``threading.Event`` on this path (every hook call crosses it).
    ``abandoned``: the caller stopped waiting, so the worker goes back to the idle list itself;
    ``ended``: the worker is done with it. Both change under ``handoff``, a lock of this job
    alone, so the usual path (the caller waited) takes no lock another thread holds."""

    __slots__ = ("abandoned", "args", "ended", "error", "fn", "handoff", "running", "value")

    def __init__(self, fn: Callable[..., Any], args: Sequence[Any]) -> None:
        self.fn, self.args = fn, args
        self.running = _thread.allocate_lock()
        self.running.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.ended = False
        self.handoff = _thread.allocate_lock()

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are the pack's failure too
            self.error = exc
        finally:
            self.running.release()

    def finished(self, timeout: float) -> bool:
        return self.running.acquire(timeout=max(timeout, 0.0))


class HookOverrun(HookFailure):
    """Pack code ran past its CPU budget (``kind="cpu"``) or its wall-clock limit (``"wall"``)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class HookRunner:
    """Runs pack code on reusable daemon worker threads under a budget (one runner per Engine).

    A call is limited by the CPU time the pack's own worker thread spends (``budget_s``
    per evaluation, ``load_budget_s`` at load), not by the time that passes: on a busy
    machine a healthy pack waits for a CPU or for the GIL while other threads run, and
    that waiting is not the pack's doing. A pack that blocks (sleeps, waits on I/O or a
    lock) spends no CPU, so a wall-clock limit, ``wall_factor`` times the budget, stops
    it too. Where the platform has no per-thread CPU clock the budget is wall-clock time.
    """

    def __init__(
        self,
        budget_s: float = DEFAULT_HOOK_BUDGET_S,
        load_budget_s: float = LOAD_BUDGET_S,
        wall_factor: float = WALL_LIMIT_FACTOR,
    ) -> None:
        checks = (("hook budget", budget_s), ("load budget", load_budget_s), ("wall-clock factor", wall_factor))
        for what, value in checks:
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be a positive number, not {value!r}")
        if wall_factor < 1:
            raise ValueError(f"wall-clock factor must be at least 1 (a multiple of the budget), not {wall_factor!r}")
        self.budget_s = float(budget_s)
        self.load_budget_s = float(load_budget_s)
        self.wall_factor = float(wall_factor) if _CPU_CLOCKS else 1.0
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        # (pack, hook) -> a call that overran and is still running, with the words it failed with
        self._late: dict[tuple[str, str], tuple[_Job, str]] = {}

    @property
    def wall_budget_s(self) -> float:
        """The wall-clock limit of a pack's hooks in one evaluation."""
        return self.budget_s * self.wall_factor

    def call(self, pack: str, hook: str, fn: Callable[..., Any], args: Sequence[Any], budget: float) -> Any:
        """``fn(*args)`` on a worker; :class:`HookFailure` if it raises or runs past ``budget`` s of
        CPU time (or ``wall_factor`` times that of wall-clock time)."""
        return self.run(pack, hook, fn, args, budget, budget * self.wall_factor, budget)[0]

    def run(
        self,
        pack: str,
        hook: str,
        fn: Callable[..., Any],
        args: Sequence[Any],
        cpu_s: float,
        wall_s: float,
        whole: float,
    ) -> tuple[Any, float, float]:
        """``(value, CPU seconds, wall seconds)`` of ``fn(*args)`` run within ``cpu_s``/``wall_s``.

        ``whole`` is the budget that ``cpu_s`` is what is left of (named in an overrun).
        """
        key = (pack, hook)
        with self._lock:
            late = self._late.get(key)
            if late is not None and late[0].running.locked():
                raise HookFailure(late[1])  # the same words: answers stay deterministic
            self._late.pop(key, None)
            worker = self._idle.pop() if self._idle else _Worker(self)
        job = _Job(fn, args)
        # The worker's CPU clock as its previous call ended: idle, it spends nothing since.
        # (Read by the caller, once per call: read on the worker, a reading cost ~15 us more.)
        cpu_base = worker.cpu_at_rest
        started = time.monotonic()
        worker.give(job)
        # A thread cannot spend more CPU time than the time that passes, so waiting for what
        # is left of the CPU budget never oversleeps it: a healthy call costs this one wait.
        kind = None if job.finished(min(cpu_s, wall_s)) else self._wait(job, worker, cpu_base, cpu_s, started + wall_s)
        wall = time.monotonic() - started
        if kind is not None:
            message = self.overrun(hook, kind, whole)
            with self._lock:
                self._late[key] = (job, message)
            with job.handoff:
                job.abandoned = not job.ended  # if so, the worker goes back to the idle list when it ends
            if not job.abandoned:  # it ended just now
                worker.cpu_at_rest = worker.cpu_clock()
                self._release(worker)
            raise HookOverrun(message, kind)
        # Read before the worker is idle again: no other call's CPU time is counted in it.
        worker.cpu_at_rest = worker.cpu_clock()
        cpu = wall if cpu_base is None else worker.cpu_at_rest - cpu_base  # type: ignore[operator]  # both None or neither
        self._release(worker)
        if job.error is not None:
            exc = job.error
            raise HookFailure(f"{hook} raised {type(exc).__name__}: {exc}") from exc
        return job.value, cpu, wall

    @staticmethod
    def _wait(job: _Job, worker: _Worker, cpu_base: float | None, cpu_s: float, deadline: float) -> str | None:
        """After a first wait: ``None`` once the job finished; ``"cpu"`` or ``"wall"`` when it ran
        past a limit (its CPU time is read between waits, each as long as what is left)."""
        while True:
            now = time.monotonic()
            if cpu_base is None:  # no per-thread clock: the budget is wall-clock time
                return "wall"
            used = worker.cpu_clock() - cpu_base  # type: ignore[operator]  # not None: cpu_base was read
            if used >= cpu_s:
                return "cpu"
            if now >= deadline:
                return "wall"
            if job.finished(max(min(cpu_s - used, deadline - now), _MIN_WAIT_S)):
                return None

    def overrun(self, hook: str, kind: str, budget: float) -> str:
        if kind == "cpu":
            return f"{hook} ran past the pack's budget of {budget * 1000:g} ms of CPU time"
        return f"{hook} did not return within the pack's wall-clock limit of {budget * self.wall_factor * 1000:g} ms"

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
        thread = threading.Thread(target=self._loop, name="neurocds-pack-hook", daemon=True)
        thread.start()  # returns once the thread runs, so its ident is known
        assert thread.ident is not None
        self._clock = time.pthread_getcpuclockid(thread.ident) if _CPU_CLOCKS else None
        self.cpu_at_rest = self.cpu_clock()  # kept up to date by the caller that waited for a call

    def cpu_clock(self) -> float | None:
        """The CPU time this worker thread has spent so far (``None``: no per-thread clock)."""
        return None if self._clock is None else time.clock_gettime(self._clock)

    def give(self, job: _Job) -> None:
        self._job = job
        self._ready.release()

    def _loop(self) -> None:
        while True:
            self._ready.acquire()
            job, self._job = self._job, None
            if job is None:
                continue
            job.run()
            with job.handoff:  # a caller that waited puts the worker back itself
                job.ended = True
                abandoned = job.abandoned
            if abandoned:
                self.cpu_at_rest = self.cpu_clock()
                self._runner._release(self)


class Budget:
    """What is left of each pack's budget in one evaluation (all its hook calls share it)."""

    __slots__ = ("_runner", "_spent")

    def __init__(self, runner: HookRunner) -> None:
        self._runner = runner
        self._spent: dict[str, tuple[float, float]] = {}  # pack -> (CPU seconds, wall seconds)

    def call(self, pack: str, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        runner = self._runner
        cpu, wall = self._spent.get(pack, (0.0, 0.0))
        if cpu >= runner.budget_s or wall >= runner.wall_budget_s:
            raise HookFailure(runner.overrun(hook, "cpu" if cpu >= runner.budget_s else "wall", runner.budget_s))
        try:
            value, cpu_used, wall_used = runner.run(
                pack, hook, fn, args, runner.budget_s - cpu, runner.wall_budget_s - wall, runner.budget_s
            )
        except HookOverrun as exc:  # spent: the pack's later calls in this evaluation fail at once
            self._spent[pack] = (runner.budget_s, wall) if exc.kind == "cpu" else (cpu, runner.wall_budget_s)
            raise
        self._spent[pack] = (cpu + cpu_used, wall + wall_used)
        return value


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
