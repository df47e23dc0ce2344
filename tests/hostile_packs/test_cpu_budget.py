"""The hook budget counts the CPU time of the pack's own thread, with a wall-clock limit behind it.

A busy machine (other threads holding the GIL, other processes holding the CPUs) makes a
healthy pack wait; that wait is not the pack's, so it must not fail the pack. A pack that
spins is stopped by its CPU budget; a pack that blocks spends no CPU and is stopped by the
wall-clock limit (``WALL_LIMIT_FACTOR`` times the budget).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds.hookspecs import ComputedFacts
from neurocds.rules.hooks import _CPU_CLOCKS, Budget, HookFailure, HookRunner
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

from .hostile import EMERGENCY, emergency_doc

pytestmark = pytest.mark.skipif(not _CPU_CLOCKS, reason="no per-thread CPU clock: the budget is wall-clock time")


def spin(cpu_s: float, then_wait_s: float = 0.0) -> float:
    """Spend ``cpu_s`` of this thread's CPU time, then wait ``then_wait_s`` without spending
    any; the wall-clock seconds it took.

    The wait stands in for time the worker spends runnable but not running: how much GIL
    starvation the busy threads cause depends on the machine (0.15 s to 1.5 s for 50 ms
    here), so the tests add a fixed wait that takes the call past its budget in wall-clock
    time on any machine, and keep the busy threads for the realistic part.
    """
    started, wall = time.thread_time(), time.monotonic()
    while time.thread_time() - started < cpu_s:
        pass
    time.sleep(then_wait_s)
    return time.monotonic() - wall


@contextlib.contextmanager
def busy_threads(count: int = 8) -> Iterator[None]:
    """Threads that only want the GIL, each holding it for a long switch interval: a loaded worker."""
    stop = threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.02)
    threads = [
        threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], daemon=True) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)


def test_a_sleeping_pack_is_stopped_by_the_wall_clock_limit() -> None:
    runner = HookRunner(0.05)  # the default factor: 5 x 50 ms
    gate = threading.Event()
    started = time.monotonic()
    try:
        with pytest.raises(HookFailure, match="did not return within the pack's wall-clock limit of 250 ms"):
            runner.call("p", "h", gate.wait, (30,), 0.05)
        assert 0.25 <= time.monotonic() - started < 10  # generous: it sleeps 30 s
    finally:
        gate.set()


def test_a_spinning_pack_is_stopped_by_its_cpu_budget() -> None:
    runner = HookRunner(0.1, wall_factor=100)  # the wall-clock limit (10 s) is far away
    stop = threading.Event()
    started = time.monotonic()
    try:
        with pytest.raises(HookFailure, match="ran past the pack's budget of 100 ms of CPU time"):
            runner.call("p", "h", lambda: [None for _ in iter(stop.is_set, True)], (), 0.1)
        assert time.monotonic() - started < 10  # stopped by CPU time, not by the wall-clock limit
    finally:
        stop.set()


# GIL starvation is erratic (a 50 ms hook took 0.2 to 1.5 s here): the wall-clock limit is
# set far away so that only the CPU budget is under test.
LOOSE_WALL = 100


def test_a_healthy_pack_on_a_loaded_worker_is_not_failed() -> None:
    runner = HookRunner(0.2, wall_factor=LOOSE_WALL)
    with busy_threads():
        hook_wall, cpu, wall = runner.run("p", "h", spin, (0.05, 0.25), 0.2, runner.wall_budget_s, 0.2)
    # The load is real: the call took longer than its budget in wall-clock time, yet it
    # used about its own 50 ms of CPU, and was not failed.
    assert hook_wall > 0.2, f"the busy threads did not slow the worker ({hook_wall:.3f} s); the test shows nothing"
    assert wall >= hook_wall and 0.05 <= cpu < 0.2


def test_a_healthy_compute_hook_under_load_keeps_the_result_complete(tmp_path: Path) -> None:
    walls: list[float] = []

    def compute(facts: Any) -> ComputedFacts:
        walls.append(spin(0.05, 0.25))
        return ComputedFacts(pack="busy", values={"busy.ok": True})

    plugin = inline_pack(tmp_path, "busy", "busy", [rule("busy.f", {"derived": "busy.ok"})], compute=compute)
    engine = Engine(
        packs=[*BUILTIN_PACKS, "busy"], plugins=[("busy", plugin)], hook_budget=0.2, hook_wall_factor=LOOSE_WALL
    )
    with busy_threads():
        result = engine.evaluate(emergency_doc())
    assert walls and walls[0] > 0.2, f"the busy threads did not slow the hook ({walls}); the test shows nothing"
    assert result.complete and not result.errors
    assert "busy.f" in result.finding_ids and EMERGENCY in result.finding_ids


def test_a_pack_that_spends_then_raises_is_charged_for_what_it_spent() -> None:
    # A detail hook runs once per fired finding: if a raising call cost nothing, a pack
    # could spend most of its budget and raise, again and again, without limit.
    runner = HookRunner(0.2, wall_factor=LOOSE_WALL)
    budget = Budget(runner)

    def spend_then_raise() -> None:
        spin(0.15)
        raise ValueError("after spending")

    messages = []
    for _ in range(5):
        with pytest.raises(HookFailure) as failure:
            budget.call("p", "neurocds_finding_detail", spend_then_raise)
        messages.append(str(failure.value))
    assert "raised ValueError" in messages[0]
    assert all("budget of 200 ms of CPU time" in m for m in messages[1:]), messages
