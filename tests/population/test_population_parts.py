"""How a run's parts become its outputs: compact result lines, parts joined without a second encoding,
part sizes and line counts checked, and only summaries travelling back from the workers."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import orjson
import pytest

from neurocds import Engine
from neurocds.population import (
    InputRecord,
    PopulationError,
    RunSettings,
    evaluate_partition,
    iter_result_lines,
    output,
    run_population,
)
from neurocds.population.executors import run_partition
from neurocds.population.partition import _result_line
from neurocds.population.sources import InputError, plan_partitions
from neurocds_packs import BUILTIN_PACKS

from .helpers import NOW, facts_ndjson, read_results

SETTINGS = RunSettings(now=NOW, partition_size=40, packs=tuple(BUILTIN_PACKS))
VOLATILE = ("evaluation_id", "evaluated_at")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "patients.ndjson"
    facts_ndjson(path, 120)
    return path


@pytest.fixture(scope="module")
def serial(population: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_population([population], tmp_path_factory.mktemp("serial") / "out", SETTINGS, workers=0)


def _interrupted(population: Path, out: Path, after: int) -> None:
    def stop(done: int, total: int, patients: int) -> None:
        if done == after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_population([population], out, SETTINGS, workers=0, on_progress=stop)


def test_a_result_line_is_the_result_document_compactly_encoded(population: Path) -> None:
    docs = [line for line in population.read_bytes().splitlines() if line.strip()][:30]
    evaluated = evaluate_partition((InputRecord(f"p:{i}", "facts", d) for i, d in enumerate(docs)), SETTINGS)
    engine = Engine(packs=BUILTIN_PACKS)
    expected = []
    for doc in docs:
        try:
            expected.append(engine.evaluate(doc, trace=SETTINGS.trace).to_dict())
        except Exception:
            continue
    assert len(evaluated.lines) == len(expected) and len(evaluated.lines) + len(evaluated.errors) == len(docs)
    for line, digest, result in zip(evaluated.lines, evaluated.result_hashes, expected, strict=True):
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        parsed = orjson.loads(line)
        assert line == orjson.dumps(parsed) + b"\n"  # compact, UTF-8, in the document's key order
        assert list(parsed) == ["patient_id", "source", "result"]
        assert list(parsed["result"]) == list(result)  # the engine's document, member for member, in its order
        stable = {k: v for k, v in parsed["result"].items() if k not in VOLATILE}
        assert stable == {k: v for k, v in result.items() if k not in VOLATILE}
        assert parsed["result"]["facts_sha256"] == result["facts_sha256"]
        # The per-patient hash (hashed in place, over spans of the line) is the hash of the stable part's encoding.
        stable_line = orjson.dumps({"patient_id": parsed["patient_id"], "result": stable})
        assert digest == hashlib.sha256(stable_line).hexdigest()


def test_each_facts_line_is_parsed_once(population: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocds.facts import validation
    from neurocds.population import partition

    lines = [line for line in population.read_bytes().splitlines() if line.strip()][:30]
    strict: list[bytes] = []
    lenient: list[Any] = []
    parse_strict, patient_id_of = validation.parse_strict, partition.patient_id_of
    monkeypatch.setattr(validation, "parse_strict", lambda data, lim: strict.append(data) or parse_strict(data, lim))
    monkeypatch.setattr(partition, "patient_id_of", lambda facts: _record(lenient, patient_id_of, facts))
    evaluated = evaluate_partition((InputRecord(f"p:{i}", "facts", d) for i, d in enumerate(lines)), SETTINGS)
    assert len(evaluated.lines) == 27 and len(evaluated.errors) == 3
    assert strict == lines  # the engine took each parsed document as it was: one strict parse a line
    # The id of an accepted patient is read from that parse; only a line refused by the schema is
    # read again, for its error entry (one refused as unreadable JSON or past a parse limit is not).
    assert len(lenient) == 2 and [e["patient_id"] for e in evaluated.errors] == [None, "bad-type", None]


def _record(seen: list[Any], read: Any, facts: Any) -> Any:
    if isinstance(facts, bytes | str):
        seen.append(facts)
    return read(facts)


@pytest.mark.parametrize("patient_id", [None, "p", 'quote " and \\ back', "ünï\u2028code", '","source":"x'])
@pytest.mark.parametrize("order", ["engine", "ids first", "no ids"])
def test_the_result_hash_is_over_the_stable_part_whatever_the_ids_and_member_order(patient_id: Any, order: str) -> None:
    result: dict[str, Any] = {
        "result_version": "1",
        "evaluation_id": 'id "1"',
        "evaluated_at": "2026-01-01T00:00:00.000Z",
        "facts_sha256": "ab" * 32,
        "findings": [{"id": "x.y", "because": ["a", {"n": 1.5e-7}]}],
    }
    if order == "ids first":
        result = {k: result[k] for k in (*VOLATILE, "result_version", "facts_sha256", "findings")}
    elif order == "no ids":
        result = {k: v for k, v in result.items() if k not in VOLATILE}
    line, digest = _result_line(patient_id, 'in,"source":"/p.ndjson:3', result)
    assert orjson.loads(line) == {"patient_id": patient_id, "source": 'in,"source":"/p.ndjson:3', "result": result}
    stable = {"patient_id": patient_id, "result": {k: v for k, v in result.items() if k not in VOLATILE}}
    assert digest == hashlib.sha256(orjson.dumps(stable)).hexdigest()


def test_a_sink_takes_each_line_as_it_is_made_and_nothing_is_kept(population: Path) -> None:
    docs = [line for line in population.read_bytes().splitlines() if line.strip()][:30]
    kept = evaluate_partition((InputRecord(f"p:{i}", "facts", d) for i, d in enumerate(docs)), SETTINGS)
    sent: list[bytes] = []
    streamed = evaluate_partition(
        (InputRecord(f"p:{i}", "facts", d) for i, d in enumerate(docs)), SETTINGS, sink=sent.append
    )
    assert streamed.lines == [] and len(sent) == streamed.results == kept.results == len(kept.lines) == 27
    assert [orjson.loads(line)["result"]["facts_sha256"] for line in sent] == [
        orjson.loads(line)["result"]["facts_sha256"] for line in kept.lines
    ]
    assert streamed.result_bytes == sum(map(len, sent)) and streamed.result_hashes == kept.result_hashes


def test_a_partition_that_fails_midway_leaves_no_results_part(population: Path, tmp_path: Path) -> None:
    source = tmp_path / "patients.ndjson"
    source.write_bytes(population.read_bytes())
    part = plan_partitions([source], SETTINGS, tmp_path / "work").partitions[0]
    source.write_bytes(b"\n".join(population.read_bytes().splitlines()[:20]) + b"\n")  # cut while the run reads it
    with pytest.raises(InputError, match="changed while the run read it"):
        run_partition(part, SETTINGS, str(tmp_path / "out"))
    assert list((tmp_path / "out" / "parts").iterdir()) == []  # neither a part nor its temporary file


def test_what_a_partition_sends_back_is_a_summary_not_the_results(population: Path, tmp_path: Path) -> None:
    settings = RunSettings.from_dict({**SETTINGS.to_dict(), "partition_size": 100})
    part = plan_partitions([population], settings, tmp_path / "work").partitions[0]
    marker = run_partition(part, settings, str(tmp_path))
    results_bytes = output.part_path(tmp_path, part, output.RESULTS).stat().st_size
    sent = len(pickle.dumps(marker))
    assert marker["results"] + marker["errors"] == part.count == 100
    assert marker["bytes"][output.RESULTS] == results_bytes
    # Counts, tallies and one hash per patient: far less than one result document per patient.
    assert sent < 200 * part.count + 8192, sent
    assert results_bytes > 20 * sent
    assert b'"findings"' not in pickle.dumps(marker) and "findings" not in json.dumps(marker)


def test_the_results_are_the_parts_byte_for_byte_and_never_copied(
    serial: dict[str, Any], population: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _interrupted(population, out, after=3)  # three partitions finished, their parts kept
    kept = {i: (out / "parts" / f"part-0000{i}.results.ndjson").read_bytes() for i in range(3)}

    copied: list[int] = []
    kernel_copy = output.os.copy_file_range

    def counted(source: int, target: int, count: int, *args: Any) -> int:
        copied.append(count)
        return kernel_copy(source, target, count, *args)

    monkeypatch.setattr(output.os, "copy_file_range", counted)
    monkeypatch.setattr(output.shutil, "copyfile", lambda *a, **k: pytest.fail("a results part was copied"))
    summary = run_population([population], out, SETTINGS, workers=0, resume=True)
    assert sum(copied) == (out / "errors.ndjson").stat().st_size  # the rejects' few lines, no result
    assert summary["resumed_partitions"] == 3 and summary["results_sha256"] == serial["results_sha256"]
    for i, data in kept.items():
        assert (out / "results" / f"part-0000{i}.ndjson").read_bytes() == data
    manifest = json.loads((out / "results" / "_manifest.json").read_text())
    assert [p["path"] for p in manifest["parts"]] == [f"part-{i:05d}.ndjson" for i in range(summary["partitions"])]
    assert manifest["lines"] == summary["counts"]["results"] == len(read_results(out)) == sum(
        p["lines"] for p in manifest["parts"]
    )
    listed = ["_manifest.json", *(p["path"] for p in manifest["parts"])]
    assert sorted(f.name for f in (out / "results").iterdir()) == listed
    assert not (out / "parts").exists()


def test_a_part_cut_short_is_run_again_on_resume(serial: dict[str, Any], population: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupted(population, out, after=2)
    cut = out / "parts" / "part-00000.results.ndjson"
    cut.write_bytes(cut.read_bytes()[:-500])  # a disk that filled up, a copy that stopped
    summary = run_population([population], out, SETTINGS, workers=0, resume=True)
    assert summary["resumed_partitions"] == 1  # part-00001 kept, part-00000 evaluated again
    assert summary["results_sha256"] == serial["results_sha256"]
    assert summary["counts"] == serial["counts"]


def test_lines_are_counted_on_the_written_files(population: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _interrupted(population, out, after=2)
    part = out / "parts" / "part-00001.results.ndjson"
    data = part.read_bytes()
    part.write_bytes(data.replace(b"\n", b" ", 1))  # same size, one line fewer
    with pytest.raises(PopulationError, match="records went missing") as info:
        run_population([population], out, SETTINGS, workers=0, resume=True)
    assert info.value.kind == "failed"


def test_a_part_changed_after_its_partition_finished_fails_the_run_and_resume_redoes_it(
    serial: dict[str, Any], population: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    def tamper_when_all_done(done: int, total: int, patients: int) -> None:
        if done == total:  # every partition finished, the outputs not yet assembled
            with open(out / "parts" / "part-00000.results.ndjson", "ab") as fh:
                fh.write(b'{"patient_id":"stray"}\n')

    with pytest.raises(PopulationError, match="partition wrote") as info:
        run_population([population], out, SETTINGS, workers=0, on_progress=tamper_when_all_done)
    assert info.value.kind == "failed" and not (out / "summary.json").exists()
    assert sorted(f.name for f in out.iterdir() if f.name != "parts") == [".run.json"]  # no half-assembled output
    summary = run_population([population], out, SETTINGS, workers=0, resume=True)
    assert summary["resumed_partitions"] == summary["partitions"] - 1  # all but the tampered one
    assert summary["results_sha256"] == serial["results_sha256"]
    assert not any(b"stray" in line for line in iter_result_lines(out))


def test_a_sweep_gives_pack_hooks_a_budget_a_busy_machine_cannot_overrun(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from neurocds.cli import main
    from neurocds.population import process_engine
    from neurocds.population.settings import DEFAULT_SWEEP_HOOK_BUDGET
    from neurocds.rules.hooks import DEFAULT_HOOK_BUDGET_S

    assert DEFAULT_SWEEP_HOOK_BUDGET > 10 * DEFAULT_HOOK_BUDGET_S
    assert process_engine(SETTINGS)._runner.budget_s == DEFAULT_SWEEP_HOOK_BUDGET  # the engine's own runner
    tighter = RunSettings.from_dict({**SETTINGS.to_dict(), "hook_budget": 0.5})
    assert process_engine(tighter)._runner.budget_s == 0.5 and tighter.engine_key() != SETTINGS.engine_key()
    with pytest.raises(ValueError, match="hook_budget"):
        RunSettings(hook_budget=0)
    refused = CliRunner().invoke(main, ["population", "run", "x.ndjson", "--out", str(tmp_path), "--hook-budget", "-1"])
    assert refused.exit_code == 2 and "hook_budget" in refused.output
