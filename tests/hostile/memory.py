"""Peak memory of one call: resident memory where Linux can measure it, else tracemalloc.

tracemalloc counts every byte Python's allocator hands out, including buffers that are
reserved and never written: orjson's writer reserves about 200 bytes per element of a
list it serializes (126 MiB for a list of 500,000 integers whose JSON is 1 MiB), of
which the process touches only what it writes (1 MiB). The resident set is what a
refusal really costs the machine, so that is what the bounds and the benchmark use:
the high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` (Linux 4.0+),
and its growth above the resident set at the start is the call's peak. Memory the
process freed earlier is reused without growing the resident set, so in a process
that has done other work this is a lower bound: enough to catch the gigabyte the
issue measured; tests/perf/bench_refusal.py measures each refusal in a fresh process.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable
from typing import Any


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    if found is None:
        raise OSError(f"no {field} in /proc/self/status")
    return int(found.group(1))


def resident_peak_mib(func: Callable[[], Any]) -> float | None:
    """Growth of the resident high-water mark while ``func`` runs, in MiB (None: not measurable here)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # 5: reset the peak resident set size to the current one
        before = _status_kib("VmRSS")
    except OSError:
        return None
    func()
    return max(0, _status_kib("VmHWM") - before) / 1024


def traced_peak_mib(func: Callable[[], Any]) -> float:
    """Peak of the bytes Python's allocator handed out while ``func`` ran, in MiB (reserved ones too)."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def peak_mib(func: Callable[[], Any]) -> float:
    """The resident peak where measurable, else the traced one (an upper bound)."""
    resident = resident_peak_mib(func)
    return traced_peak_mib(func) if resident is None else resident
