"""Where partitions run: in this process, on a local process pool, or on a Dask cluster.

Every executor calls the same task, :func:`run_partition`, and yields each
partition's done marker as it finishes. A worker process that dies (killed, out
of memory) takes its partition with it; the partition is run again elsewhere,
up to :data:`MAX_ATTEMPTS` times, and because parts are replaced atomically the
retry never duplicates output.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from neurocds.population.output import results_part, write_partition
from neurocds.population.partition import evaluate_partition, process_engine
from neurocds.population.settings import RunSettings
from neurocds.population.sources import Partition, read_partition

MAX_ATTEMPTS = 3


class PartitionFailed(RuntimeError):
    """A partition could not be completed (its workers kept dying, or it raised)."""

    def __init__(self, part: Partition, reason: str) -> None:
        super().__init__(f"{part.name}: {reason}")
        self.partition = part.name


def run_partition(part: Partition, settings: RunSettings, out_dir: str) -> dict[str, Any]:
    """The task every executor runs: read one partition, evaluate it, write its parts."""
    with results_part(Path(out_dir), part) as sink:  # each result line written as it comes
        evaluated = evaluate_partition(read_partition(part), settings, sink=sink)
        if evaluated.records_in != part.count or evaluated.results + len(evaluated.errors) != part.count:
            raise RuntimeError(
                f"{part.name}: planned {part.count} records, read {evaluated.records_in}, "
                f"wrote {evaluated.results} results + {len(evaluated.errors)} errors"
            )
    return write_partition(Path(out_dir), part, evaluated, settings)


def warm_engine(settings: RunSettings) -> None:
    """Build this process's engine before the first partition arrives (the pool initialiser)."""
    process_engine(settings)


def run_in_process(parts: Sequence[Partition], settings: RunSettings, out_dir: Path) -> Iterator[dict[str, Any]]:
    for part in parts:
        yield run_partition(part, settings, str(out_dir))


def run_on_pool(
    parts: Sequence[Partition],
    settings: RunSettings,
    out_dir: Path,
    workers: int,
    on_pool: Callable[[ProcessPoolExecutor], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run on ``workers`` fresh processes; a pool broken by a dead worker is replaced.

    :param on_pool: called with each pool started (tests use it to find and kill a worker).
    """
    attempts = dict.fromkeys((p.index for p in parts), 0)
    pending = list(parts)
    # spawn, not fork: the parent may hold threads (a progress bar, a Dask client) and durable_rules state.
    context = multiprocessing.get_context("spawn")
    while pending:
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=warm_engine, initargs=(settings,))
        try:
            if on_pool is not None:
                on_pool(pool)
            futures: dict[Future[dict[str, Any]], Partition] = {}
            for part in pending:
                attempts[part.index] += 1
                futures[pool.submit(run_partition, part, settings, str(out_dir))] = part
            pending = []
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    part = futures[future]
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        if attempts[part.index] >= MAX_ATTEMPTS:
                            raise PartitionFailed(part, f"its worker died {MAX_ATTEMPTS} times") from None
                        pending.append(part)  # the pool is gone: run it again on the next one
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C, queued partitions are dropped, not run
        pending.sort(key=lambda p: p.index)


def run_on_dask(
    parts: Sequence[Partition], settings: RunSettings, out_dir: Path, client: Any, run_id: str
) -> Iterator[dict[str, Any]]:
    """Run on a ``distributed.Client``'s cluster; the scheduler reruns the tasks of a worker that died."""
    from distributed import as_completed

    client.run(warm_engine, settings)  # every worker starts its one engine now, in parallel
    futures = client.map(
        run_partition,
        list(parts),
        settings=settings,
        out_dir=str(out_dir),
        key=[f"neurocds-population-{run_id}-{p.name}" for p in parts],
        retries=MAX_ATTEMPTS - 1,
        pure=False,
    )
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]  # distributed has no annotations here
            yield future.result()
    except BaseException:
        client.cancel(futures)  # a failed or interrupted run leaves no work behind on a shared cluster
        raise
