"""Population runs on local processes: outputs, accounting, reproducibility, resume, a killed worker, audit."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from neurocds.audit import AuditLog, read_records, verify_log
from neurocds.population import (
    InputRecord,
    PopulationError,
    RunSettings,
    evaluate_partition,
    run_population,
)
from neurocds.population.partition import ROW_COLUMNS

from .helpers import NOW, facts_ndjson, read_ndjson, read_results

SETTINGS = RunSettings(now=NOW, partition_size=60)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("in") / "patients.ndjson"
    return path, facts_ndjson(path, 300)


@pytest.fixture(scope="module")
def serial(population: tuple[Path, int], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("serial") / "out"
    return out, run_population([population[0]], out, SETTINGS, workers=0)


def _by_patient(out: Path) -> dict[str, dict[str, Any]]:
    lines = read_results(out)
    ids = [line["patient_id"] for line in lines]
    assert len(ids) == len(set(ids)), "a patient was written twice"
    return {
        line["patient_id"]: {k: v for k, v in line["result"].items() if k not in ("evaluation_id", "evaluated_at")}
        for line in lines
    }


def test_every_line_is_a_result_or_an_error_with_its_pointer(serial, population) -> None:
    out, summary = serial
    path, records = population
    counts = summary["counts"]
    assert counts["records_in"] == records == counts["results"] + counts["errors"]
    assert counts["errors"] == 3 and counts["blank_lines"] == 1
    errors = read_ndjson(out / "errors.ndjson")
    assert [e["stage"] for e in errors] == ["parse", "validate", "validate"]
    bad_type = next(e for e in errors if e["patient_id"] == "bad-type")
    assert bad_type["source"].startswith(f"{path}:")
    assert "/strength/left_leg" in [p["pointer"] for p in bad_type["errors"]]
    # The source line number is the real one (the blank line and the bad lines count).
    line_no = int(bad_type["source"].rsplit(":", 1)[1])
    assert json.loads(path.read_text().splitlines()[line_no - 1])["patient"]["id"] == "bad-type"
    assert len(read_results(out)) == counts["results"]
    assert not (out / "parts").exists()


def test_parquet_has_a_row_per_patient_and_finding(serial) -> None:
    out, summary = serial
    table = pq.read_table(out / "findings.parquet")
    assert tuple(table.column_names) == ROW_COLUMNS
    rows = table.to_pylist()
    assert len({r["patient_id"] for r in rows}) == summary["counts"]["results"]
    results = _by_patient(out)
    expected = Counter((pid, f["id"]) for pid, r in results.items() for f in r["findings"])
    assert Counter((r["patient_id"], r["finding"]) for r in rows if r["finding"]) == expected
    assert Counter(r["finding"] for r in rows if r["finding"]) == Counter(summary["by_finding"])
    first = next(r for r in rows if r["finding"])
    finding = next(f for f in results[first["patient_id"]]["findings"] if f["id"] == first["finding"])
    assert (first["urgency"], first["pack"], first["rule"]) == (finding["urgency"], finding["pack"], finding["rule"])


def test_summary_names_packs_engine_inputs_and_clock(serial, population) -> None:
    out, summary = serial
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["now"] == NOW and summary["engine"]["backend"] == "durable" and summary["engine"]["verified"]
    assert {p["name"] for p in summary["packs"]} >= {"spinal-compression", "weakness-pattern"}
    assert all(len(p["sha256"]) == 64 for p in summary["packs"])
    import hashlib

    assert summary["inputs"][0]["sha256"] == hashlib.sha256(population[0].read_bytes()).hexdigest()
    assert sum(summary["by_urgency"].values()) == summary["counts"]["results"]
    assert summary["counts"]["incomplete_results"] == 0 and summary["incomplete_reasons"] == {}


def test_local_processes_match_serial_with_one_engine_each(serial, population, tmp_path) -> None:
    out, summary = serial
    parallel = run_population([population[0]], tmp_path / "out", SETTINGS, workers=2)
    assert _by_patient(tmp_path / "out") == _by_patient(out)
    assert parallel["results_sha256"] == summary["results_sha256"]
    assert parallel["summary_sha256"] == summary["summary_sha256"]
    assert (tmp_path / "out" / "errors.ndjson").read_bytes() == (out / "errors.ndjson").read_bytes()
    workers = parallel["workers"]
    assert 1 <= len(workers) <= 2 and os.getpid() not in map(int, workers)
    assert all(w["engine_starts"] == 1 for w in workers.values()), workers  # never one engine per partition
    assert sum(w["partitions"] for w in workers.values()) == parallel["partitions"] > 2


def test_same_inputs_elsewhere_give_the_same_summary_hash(serial, population, tmp_path) -> None:
    """Gzip, another folder, another partition size: the same patients and packs, the same hash."""
    _, summary = serial
    moved = tmp_path / "moved.ndjson.gz"
    moved.write_bytes(gzip.compress(population[0].read_bytes()))
    again = run_population([moved], tmp_path / "out", RunSettings(now=NOW, partition_size=1000), workers=0)
    assert again["results_sha256"] == summary["results_sha256"]
    assert again["counts"] == summary["counts"]
    assert again["inputs"][0]["sha256"] != summary["inputs"][0]["sha256"]  # the gzip file itself differs
    assert again["summary_sha256"] != summary["summary_sha256"]
    # Only what was read changed the summary hash: the plain file read from another place hashes alike.
    copy = tmp_path / "copy.ndjson"
    shutil.copy(population[0], copy)
    third = run_population([copy], tmp_path / "out3", RunSettings(now=NOW, partition_size=7), workers=0)
    assert third["summary_sha256"] == summary["summary_sha256"]


def test_resume_keeps_finished_partitions_and_duplicates_nothing(serial, population, tmp_path) -> None:
    _, summary = serial
    out = tmp_path / "out"

    def stop_after_two(done: int, total: int, patients: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or the machine going down

    with pytest.raises(KeyboardInterrupt):
        run_population([population[0]], out, SETTINGS, workers=0, on_progress=stop_after_two)
    assert not (out / "summary.json").exists()
    with pytest.raises(PopulationError, match="--resume"):
        run_population([population[0]], out, SETTINGS, workers=0)
    with pytest.raises(PopulationError, match="other inputs or settings") as info:
        run_population(
            [population[0]], out, RunSettings(now=NOW, partition_size=60, backend="reference"), workers=0, resume=True
        )
    assert info.value.kind == "resume"
    resumed = run_population([population[0]], out, SETTINGS, workers=0, resume=True)
    assert resumed["resumed_partitions"] == 2
    assert resumed["results_sha256"] == summary["results_sha256"]
    assert resumed["counts"] == summary["counts"]
    assert len(_by_patient(out)) == summary["counts"]["results"]
    # Resuming a run that finished does nothing and says what it found.
    assert run_population([population[0]], out, SETTINGS, workers=0, resume=True) == resumed


def test_a_killed_worker_is_replaced_and_its_partition_rerun_once(serial, population, tmp_path) -> None:
    _, summary = serial
    pools: list[Any] = []
    killed: list[int] = []

    def kill_one(done: int, total: int, patients: int) -> None:
        if done >= 1 and not killed and pools:
            pid = next(iter(pools[0]._processes))  # a live worker of the first pool, mid-run
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    out = tmp_path / "out"
    settings = RunSettings(now=NOW, partition_size=20)
    result = run_population([population[0]], out, settings, workers=2, on_pool=pools.append, on_progress=kill_one)
    assert killed and len(pools) >= 2, "the kill did not break the pool"
    assert sum(w["partitions"] for w in result["workers"].values()) == result["partitions"]
    assert all(w["engine_starts"] == 1 for w in result["workers"].values())  # the replacement built its own
    assert result["results_sha256"] == summary["results_sha256"]  # nothing is missing or doubled
    assert result["counts"] == summary["counts"]
    assert len(_by_patient(out)) == summary["counts"]["results"]


def test_one_audit_record_per_run(population, tmp_path) -> None:
    log = AuditLog(tmp_path / "audit")
    summary = run_population([population[0]], tmp_path / "out", SETTINGS, workers=0, audit_log=log)
    records = list(read_records(tmp_path / "audit"))
    assert [r["type"] for r in records] == ["population_run"]
    body = records[0]["population_run"]
    assert body["results_sha256"] == summary["results_sha256"]
    assert body["summary_sha256"] == summary["summary_sha256"]
    assert body["inputs"][0]["sha256"] == summary["inputs"][0]["sha256"]
    assert [p["sha256"] for p in body["packs"]] == [p["sha256"] for p in summary["packs"]]
    assert body["counts"]["results"] == summary["counts"]["results"]
    assert verify_log(tmp_path / "audit").ok


def test_reference_backend_and_slim_output_say_what_ran(population, tmp_path) -> None:
    settings = RunSettings(now=NOW, backend="reference", slim=True, partition_size=100)
    summary = run_population([population[0]], tmp_path / "out", settings, workers=0)
    assert summary["engine"]["backend"] == "reference" and summary["settings"]["backend"] == "reference"
    line = read_results(tmp_path / "out")[0]
    assert set(line) == {
        "patient_id",
        "source",
        "facts_sha256",
        "highest_urgency",
        "complete",
        "findings",
        "missing_data",
        "errors",
    }
    assert set(line["findings"][0]) == {"id", "urgency", "pack", "rule"} if line["findings"] else True


def test_folders_and_globs_of_facts_files(tmp_path) -> None:
    folder = tmp_path / "facts"
    folder.mkdir()
    source = tmp_path / "all.ndjson"
    facts_ndjson(source, 12, bad=False)
    for i, line in enumerate(source.read_text().splitlines()):
        (folder / f"p{i:02d}.json").write_text(line)
    (folder / "broken.json").write_text('{"facts_version": "1", "patient": {"id": "b"}, "age": NaN}')
    by_folder = run_population([folder], tmp_path / "a", SETTINGS, workers=0)
    by_glob = run_population([str(folder / "p*.json")], tmp_path / "b", SETTINGS, workers=0)
    assert by_folder["counts"]["results"] == by_glob["counts"]["results"] == 12
    assert by_folder["counts"]["errors"] == 1
    error = read_ndjson(tmp_path / "a" / "errors.ndjson")[0]
    assert error["source"] == str(folder / "broken.json") and error["stage"] == "parse"
    assert by_glob["results_sha256"] == run_population([source], tmp_path / "c", SETTINGS, workers=0)["results_sha256"]


def test_the_partition_function_is_pure_and_public() -> None:
    """What a Spark mapInPandas or Ray task calls: records in, lines, rows and errors out, no files."""
    docs = [
        json.dumps({"facts_version": "1", "patient": {"id": f"s{i}"}, "strength": {"left_leg": 2}}) for i in range(3)
    ]
    records = [InputRecord(f"spark:{i}", "facts", doc) for i, doc in enumerate(docs)]
    records.append(InputRecord("spark:3", "facts", "[]"))
    first = evaluate_partition(records, RunSettings(now=NOW))
    second = evaluate_partition(records, RunSettings(now=NOW))
    assert first.result_hashes == second.result_hashes and len(first.result_hashes) == 3
    assert [json.loads(line)["patient_id"] for line in first.lines] == ["s0", "s1", "s2"]
    assert first.errors[0]["source"] == "spark:3" and first.records_in == 4
    assert len(first.rows["patient_id"]) >= 3


def test_unusable_inputs_are_refused_before_anything_runs(tmp_path) -> None:
    with pytest.raises(PopulationError, match="no such file") as info:
        run_population([tmp_path / "missing.ndjson"], tmp_path / "out", SETTINGS, workers=0)
    assert info.value.kind == "input"
    with pytest.raises(ValueError, match="RFC 3339"):
        RunSettings(now="yesterday")
    with pytest.raises(PopulationError, match="no-such-pack") as info:
        run_population([tmp_path], tmp_path / "out2", RunSettings(packs=("no-such-pack",)), workers=2)
    assert info.value.kind == "input" and not (tmp_path / "out2").exists()


def test_incomplete_results_are_counted_with_their_reasons(tmp_path) -> None:
    from neurocds import Engine
    from neurocds.testing import inline_pack, rule

    def compute(facts: Any) -> Any:
        raise RuntimeError("compute hook failed")

    weak = {"fact": "strength.left_leg", "lt": 5}
    engine = Engine(
        plugins=[
            ("good", inline_pack(tmp_path, "good", "good", [rule("good.weak", weak)])),
            ("hooky", inline_pack(tmp_path, "hooky", "hooky", [rule("hooky.r", weak)], compute=compute)),
        ],
        entry_points=False,
    )
    doc = {"facts_version": "1", "patient": {"id": "i1"}, "strength": {"left_leg": 3}}
    out = evaluate_partition([InputRecord("x:1", "facts", json.dumps(doc))], RunSettings(now=NOW), engine=engine)
    tallies = out.to_tallies()
    assert tallies["incomplete_results"] == 1 and tallies["incomplete"] == {"compute_hook": 1}
    assert out.rows["complete"] == [False]
