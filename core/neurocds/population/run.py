"""One population run: plan, execute, join the parts, check every line is accounted for, summarise, audit.

The summary's ``summary_sha256`` covers what the run decided (inputs by content,
packs, engine, settings, counts, per-patient result hashes) and nothing about
how or when it ran, so the same inputs and packs give the same hash on one
process or on a cluster, today or next year.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurocds.errors import NeurocdsError
from neurocds.facts.strictjson import sha256_canonical
from neurocds.population import executors, output
from neurocds.population.partition import process_engine
from neurocds.population.settings import RunSettings
from neurocds.population.sources import InputError, Plan, plan_partitions

RUN_FILE = ".run.json"
WORK_DIR = ".work"
# Summary members that say how and when the run went, not what it decided.
VOLATILE = ("run_id", "started_at", "finished_at", "seconds", "workers", "resumed_partitions", "summary_sha256")

Progress = Callable[[int, int, int], None]  # (partitions done, partitions total, patients done)


class PopulationError(NeurocdsError):
    """The run cannot start or did not finish; ``reason`` says which and why.

    :param kind: ``input`` (bad inputs or output folder: exit 2), ``resume`` (the
        folder holds another run), ``failed`` (a partition failed, or lines went missing).
    """

    def __init__(self, message: str, *, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


def run_population(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: RunSettings | None = None,
    *,
    input_format: str = "auto",
    workers: int | None = None,
    client: Any = None,
    scheduler: str | None = None,
    resume: bool = False,
    on_progress: Progress | None = None,
    audit_log: Any = None,
    on_pool: Any = None,
) -> dict[str, Any]:
    """Evaluate every patient in ``inputs``; write the outputs to ``out_dir``; return the summary.

    :param workers: local processes (default: every core); ``0`` runs in this process.
    :param client: a ``distributed.Client``; or ``scheduler``, the address of one
        (``tcp://host:8786``). Either runs the partitions on that Dask cluster.
    :param resume: keep the partitions an interrupted run of the same inputs and
        settings finished; run only the others.
    :param audit_log: an :class:`neurocds.audit.AuditLog`: one record for the run.
    :raises PopulationError: see its ``kind``.
    """
    out = Path(out_dir)
    started, clock = datetime.now(UTC), time.perf_counter()
    settings = _settings_for(out, settings or RunSettings(), resume)
    try:
        # Here, not in a worker: a pack that is not installed is one clear error, not three dead workers.
        process_engine(settings)
    except (NeurocdsError, ValueError) as exc:
        raise PopulationError(f"cannot build the engine: {exc}", kind="input") from None
    try:
        plan = plan_partitions([str(i) for i in inputs], settings, out / WORK_DIR, input_format=input_format)
    except (InputError, ValueError) as exc:
        raise PopulationError(str(exc), kind="input") from None
    key = {"settings": settings.to_dict(), "inputs": [i["sha256"] for i in plan.inputs], "format": input_format}
    finished = _finished_run(out, key) if resume else None
    if finished is not None:
        return finished  # resuming a run that completed: nothing left to do
    markers, todo = _prepare(out, plan, key, resume)
    run_id = str(uuid.uuid4())
    if on_progress:
        on_progress(len(markers), len(plan.partitions), sum(m["records_in"] for m in markers.values()))
    try:
        for marker in _execute(todo, settings, out, workers, client, scheduler, run_id, on_pool):
            markers[marker["partition"]] = marker
            if on_progress:
                on_progress(len(markers), len(plan.partitions), sum(m["records_in"] for m in markers.values()))
    except (executors.PartitionFailed, RuntimeError, OSError) as exc:
        raise PopulationError(f"the run did not finish ({exc}); rerun with --resume to continue") from exc
    ordered = [markers[p.name] for p in plan.partitions]
    try:
        written = output.merge(out, plan.partitions, ordered, plan.join_errors)
    except OSError as exc:  # a part changed or vanished after its partition finished
        raise PopulationError(f"cannot assemble the outputs ({exc}); rerun with --resume to redo it") from exc
    summary = _summary(plan, ordered, written, settings, run_id, started, time.perf_counter() - clock)
    summary["resumed_partitions"] = len(plan.partitions) - len(todo)
    output.write_summary(out, summary)
    output.clear_parts(out)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)  # the Bulk Data join's files
    if audit_log is not None:
        audit_log.record_population_run(_audit_body(summary, out))
    return summary


def _settings_for(out: Path, settings: RunSettings, resume: bool) -> RunSettings:
    """``now`` resolved once; a resumed run takes the clock its first attempt recorded."""
    run_file = out / RUN_FILE
    if resume and settings.now is None and run_file.is_file():
        try:
            recorded = json.loads(run_file.read_text())["settings"]["now"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if isinstance(recorded, str):
            return RunSettings.from_dict({**settings.to_dict(), "now": recorded})
    return settings.resolved()


def _finished_run(out: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a completed run of these inputs and settings in ``out``, if there is one."""
    try:
        previous = json.loads((out / RUN_FILE).read_text())
        summary: dict[str, Any] = json.loads((out / output.SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if previous == key else None


def _prepare(out: Path, plan: Plan, key: dict[str, Any], resume: bool) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """The finished partitions to keep and those to run; refuses to mix two runs in one folder."""
    run_file = out / RUN_FILE
    previous = None
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            previous = None
    if resume and previous is not None and previous != key:
        raise PopulationError(
            f"{out} holds a run of other inputs or settings; --resume needs the same ones", kind="resume"
        )
    if not resume and (previous is not None or (out / output.SUMMARY).exists()):
        raise PopulationError(f"{out} already holds a run: pass --resume to continue it, or a new folder", kind="input")
    out.mkdir(parents=True, exist_ok=True)
    markers: dict[str, dict[str, Any]] = {}
    if resume:
        for part in plan.partitions:
            marker = output.read_marker(out, part)
            if marker is not None:
                markers[part.name] = marker
    else:
        output.clear_parts(out)
    output.remove_outputs(out)  # a summary must never describe outputs of another attempt
    # Atomic: a run.json cut short by a crash would read as "no previous run" on --resume.
    output._atomic_write(run_file, lambda tmp: tmp.write_text(json.dumps(key, indent=2)))
    return markers, [p for p in plan.partitions if p.name not in markers]


def _execute(
    todo: list[Any],
    settings: RunSettings,
    out: Path,
    workers: int | None,
    client: Any,
    scheduler: str | None,
    run_id: str,
    on_pool: Any,
) -> Any:
    if not todo:
        return iter(())
    if client is not None or scheduler is not None:
        return _on_dask(todo, settings, out, client, scheduler, run_id)
    count = (os.cpu_count() or 1) if workers is None else workers
    if count == 0:
        return executors.run_in_process(todo, settings, out)
    return executors.run_on_pool(todo, settings, out, min(count, len(todo)), on_pool)


def _on_dask(todo: list[Any], settings: RunSettings, out: Path, client: Any, scheduler: str | None, run_id: str) -> Any:
    own = client is None
    if own:
        from distributed import Client

        try:
            client = Client(scheduler, timeout="20s")  # type: ignore[no-untyped-call]  # unannotated in distributed
        except OSError as exc:
            raise PopulationError(f"cannot reach the Dask scheduler at {scheduler}: {exc}", kind="input") from None
    try:
        yield from executors.run_on_dask(todo, settings, out, client, run_id)
    finally:
        if own:
            client.close()


def _summary(
    plan: Plan,
    markers: list[dict[str, Any]],
    written: dict[str, int],
    settings: RunSettings,
    run_id: str,
    started: datetime,
    seconds: float,
) -> dict[str, Any]:
    results = sum(m["results"] for m in markers)
    errors = sum(m["errors"] for m in markers)
    # Lines in = results + errors, counted three ways: the plan, the workers and the merged files.
    if not (plan.records == results + errors == written["results"] + written["errors"] - len(plan.join_errors)):
        raise PopulationError(
            f"records went missing: {plan.records} in, workers reported {results} results + {errors} errors, "
            f"files hold {written['results']} + {written['errors'] - len(plan.join_errors)}"
        )
    tally: dict[str, Counter[str]] = {k: Counter() for k in ("by_finding", "by_urgency", "incomplete")}
    workers: dict[str, dict[str, int]] = {}
    for marker in markers:
        for name, counter in tally.items():
            counter.update(marker[name])
        pid = str(marker["worker"]["pid"])
        seen = workers.setdefault(pid, {"partitions": 0, "engine_starts": 0})
        seen["partitions"] += 1
        seen["engine_starts"] = max(seen["engine_starts"], marker["worker"]["engine_starts"])
    first = markers[0] if markers else {"engine": {}, "packs": []}
    summary: dict[str, Any] = {
        "summary_version": "1",
        "run_id": run_id,
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seconds": round(seconds, 3),
        "now": settings.now,
        "settings": settings.to_dict(),
        "engine": first["engine"],
        "packs": [{k: p.get(k) for k in ("name", "version", "sha256", "status")} for p in first["packs"]],
        "inputs": plan.inputs,
        "counts": {
            "records_in": plan.records,
            "results": results,
            "errors": errors,
            "incomplete_results": sum(m["incomplete_results"] for m in markers),
            "blank_lines": plan.blank_lines,
            "finding_rows": written["rows"],
        },
        "by_finding": dict(sorted(tally["by_finding"].items())),
        "by_urgency": dict(sorted(tally["by_urgency"].items())),
        "incomplete_reasons": dict(sorted(tally["incomplete"].items())),
        "results_sha256": _chain(h for m in markers for h in m["result_hashes"]),
        "errors_sha256": _chain(h for m in markers for h in m["error_hashes"]),
        "partitions": len(markers),
        "workers": workers,
    }
    if plan.bulk:
        summary["bulk"] = plan.bulk
    stable = {k: v for k, v in summary.items() if k not in VOLATILE}
    stable["inputs"] = [{k: v for k, v in i.items() if k != "path"} for i in plan.inputs]  # content, not place
    stable["settings"] = {k: v for k, v in settings.to_dict().items() if k != "partition_size"}
    stable.pop("partitions")
    summary["summary_sha256"] = sha256_canonical(stable)
    return summary


def _chain(hashes: Any) -> str:
    digest = hashlib.sha256()
    for item in hashes:
        digest.update(item.encode() + b"\n")
    return digest.hexdigest()


def _audit_body(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    return {
        "run_id": summary["run_id"],
        "output_dir": str(out.resolve()),
        "inputs": [{k: i[k] for k in ("path", "sha256", "records")} for i in summary["inputs"]],
        "packs": summary["packs"],
        "engine": summary["engine"],
        "now": summary["now"],
        "counts": {k: summary["counts"][k] for k in ("records_in", "results", "errors", "incomplete_results")},
        "results_sha256": summary["results_sha256"],
        "summary_sha256": summary["summary_sha256"],
    }
