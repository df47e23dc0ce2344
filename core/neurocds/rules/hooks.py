"""Calling pack code: read-only facts in, a time budget around it, a checked answer out.

Every call into a pack (entry-point import, registration, ``neurocds_register_packs``,
``neurocds_compute_facts``, ``neurocds_finding_detail``) goes through
:class:`HookRunner`. Three promises follow from it:

* a hook cannot change anything through what it is given: facts are a deep-frozen
  view (:func:`neurocds.facts.readonly.freeze`: mappings are
  :class:`types.MappingProxyType`, arrays are tuples), built once per evaluation and
  shared, which costs one walk instead of a copy per hook;
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
from collections.abc import Callable, Sequence
from typing import Any

# CPU seconds per pack and evaluation. Not a promise of a CDS Hooks answer within 500 ms: a
# pack that blocks spends no CPU and is stopped by the wall limit, WALL_LIMIT_FACTOR times
# this (1 s per pack and evaluation by default), and each pack has a budget of its own.
DEFAULT_HOOK_BUDGET_S = 0.2
LOAD_BUDGET_S = 10.0  # CPU seconds for importing a pack and its register hook, once per Engine (50 s of wall time)
WALL_LIMIT_FACTOR = 5.0  # a blocked pack (no CPU spent) is stopped after this many budgets of wall time
_MIN_WAIT_S = 0.005  # re-reads of a starved worker's CPU clock are at least this far apart
# A per-thread CPU clock (Linux and most Unixes); elsewhere the budget is wall-clock time.
_CPU_CLOCKS = hasattr(time, "pthread_getcpuclockid")


class HookFailure(Exception):
    """Pack code failed: it raised, overran its budget or returned something not allowed.

    ``cpu`` and ``wall``: the seconds the failed call spent (zero when it never ran), which
    still count against the pack's budget: a pack that spends and then raises is charged.
    """

    def __init__(self, message: str, cpu: float = 0.0, wall: float = 0.0) -> None:
        super().__init__(message)
        self.cpu, self.wall = cpu, wall


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
        self.loading = Budget(self, self.load_budget_s)  # what each plugin has left of its load budget
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
            raise HookFailure(f"{hook} raised {type(exc).__name__}: {exc}", cpu, wall) from exc
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
    """What is left of each pack's budget (all its calls share it): one per evaluation, with
    the hook budget; and each runner's :attr:`HookRunner.loading`, with the load budget, so a
    plugin's import, registration and ``neurocds_register_packs`` share one load budget."""

    __slots__ = ("_limit", "_runner", "_spent")

    def __init__(self, runner: HookRunner, limit_s: float | None = None) -> None:
        self._runner = runner
        self._limit = runner.budget_s if limit_s is None else limit_s
        self._spent: dict[str, tuple[float, float]] = {}  # pack -> (CPU seconds, wall seconds)

    def call(self, pack: str, hook: str, fn: Callable[..., Any], *args: Any) -> Any:
        runner, limit = self._runner, self._limit
        wall_limit = limit * runner.wall_factor
        cpu, wall = self._spent.get(pack, (0.0, 0.0))
        if cpu >= limit or wall >= wall_limit:
            raise HookFailure(runner.overrun(hook, "cpu" if cpu >= limit else "wall", limit))
        try:
            value, cpu_used, wall_used = runner.run(pack, hook, fn, args, limit - cpu, wall_limit - wall, limit)
        except HookOverrun as exc:  # spent: the pack's later calls fail at once
            self._spent[pack] = (limit, wall) if exc.kind == "cpu" else (cpu, wall_limit)
            raise
        except HookFailure as exc:  # it raised: what it spent first is charged all the same
            self._spent[pack] = (cpu + exc.cpu, wall + exc.wall)
            raise
        self._spent[pack] = (cpu + cpu_used, wall + wall_used)
        return value
