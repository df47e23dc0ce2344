"""Start-up benchmark: fresh processes against ``python -c pass`` in the same run.

    python tests/perf/bench_startup.py [--rounds 7]

Interleaved rounds of: ``python -c pass`` (the floor), ``neurocds --help``,
``neurocds evaluate EXAMPLE`` and ``python -c "from neurocds import Engine; Engine()"``
(built-in packs), each a fresh process, with the load cache warm (a folder of this run,
filled once before the rounds), plus ``Engine()`` with the cache off (a cold start).
Bytecode is on, as in an installed package (pip compiles it): the children write it to a
folder of this run (``PYTHONPYCACHEPREFIX``, whatever ``PYTHONDONTWRITEBYTECODE`` says),
filled by one warm-up run of every command.
Prints, for each, the median wall time and the median CPU time (user + system, read
from the child's rusage: steadier than wall time on a shared machine), each as the
excess over the floor: the figure the goals are stated in (help < 80 ms,
evaluate < 150 ms, Engine() < 100 ms of wall time over the floor).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crossed-stroke.json"
CLI = [sys.executable, "-c", "from neurocds.cli import main; main()"]
ENGINE = [sys.executable, "-c", "from neurocds import Engine; Engine()"]
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "neurocds --help": ([*CLI, "--help"], {}),
    "neurocds evaluate FILE": ([*CLI, "evaluate", str(EXAMPLE)], {}),
    "Engine()": (ENGINE, {}),
    "Engine(), cache off": (ENGINE, {"NEUROCDS_CACHE": "0"}),
}
GOALS_MS = {"neurocds --help": 80, "neurocds evaluate FILE": 150, "Engine()": 100}


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - start) * 1e3
    proc.returncode = 0  # reaped above; keeps Popen from waiting again
    return wall, (usage.ru_utime + usage.ru_stime) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="neurocds-bench-cache-") as cache:
        base = {**os.environ, "NEUROCDS_CACHE_DIR": cache, "PYTHONPYCACHEPREFIX": str(Path(cache) / "pycache")}
        for name in ("NEUROCDS_CACHE", "PYTHONDONTWRITEBYTECODE"):
            base.pop(name, None)
        for command, extra in COMMANDS.values():  # fill the load cache and the bytecode once
            run(command, {**base, **extra})
        walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
        cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.rounds):
            for name, (command, extra) in COMMANDS.items():
                wall, cpu = run(command, {**base, **extra})
                walls[name].append(wall)
                cpus[name].append(cpu)
    floor_wall = statistics.median(walls["python -c pass"])
    floor_cpu = statistics.median(cpus["python -c pass"])
    print(f"{'':24s} {'wall median':>12s} {'over floor':>11s} {'CPU median':>11s} {'over floor':>11s}")
    for name in COMMANDS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        goal = f"(goal < {GOALS_MS[name]} ms)" if name in GOALS_MS else ""
        print(f"{name:24s} {wall:9.1f} ms {wall - floor_wall:8.1f} ms {cpu:8.1f} ms {cpu - floor_cpu:8.1f} ms  {goal}")
    print(f"({args.rounds} interleaved rounds of fresh processes; load cache warm unless 'cache off')")


if __name__ == "__main__":
    main()
