"""Start-up benchmark: wall time of fresh processes against ``python -c pass`` in the same run.

    python tests/perf/bench_startup.py [--rounds 7]

Interleaved rounds of: ``python -c pass`` (the floor), ``neurocds --help``,
``neurocds evaluate EXAMPLE`` and ``python -c "from neurocds import Engine; Engine()"``
(built-in packs), each a fresh process. Prints medians and the excess over the floor,
the figure the goals are stated in (help < 80 ms, evaluate < 150 ms, Engine() < 100 ms).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crossed-stroke.json"
CLI = [sys.executable, "-c", "from neurocds.cli import main; main()"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "neurocds --help": [*CLI, "--help"],
    "neurocds evaluate FILE": [*CLI, "evaluate", str(EXAMPLE)],
    "Engine()": [sys.executable, "-c", "from neurocds import Engine; Engine()"],
}
GOALS_MS = {"neurocds --help": 80, "neurocds evaluate FILE": 150, "Engine()": 100}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            samples[name].append((time.perf_counter() - start) * 1e3)
    floor = statistics.median(samples["python -c pass"])
    for name, times in samples.items():
        median = statistics.median(times)
        goal = f"goal < {GOALS_MS[name]} ms over the floor" if name in GOALS_MS else "the floor"
        print(f"{name:24s} median {median:7.1f} ms  over the floor {median - floor:7.1f} ms  ({goal})")
    print(f"({args.rounds} interleaved rounds of fresh processes)")


if __name__ == "__main__":
    main()
