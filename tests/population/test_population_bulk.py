"""FHIR input at population scale: a folder of per-patient Bundles and a Bulk Data export made from Synthea."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from neurocds.cli import main
from neurocds.population import RunSettings, run_population

from .helpers import NOW, SYNTHEA, bulk_export_from_synthea, read_ndjson, read_results

SETTINGS = RunSettings(now=NOW, slim=True, partition_size=8)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("export")
    return folder, bulk_export_from_synthea(folder)


@pytest.fixture(scope="module")
def per_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bundles") / "out"
    return out, run_population([SYNTHEA], out, SETTINGS, workers=0)


def _facts_by_patient(out: Path) -> dict[str, str]:
    return {line["patient_id"]: line["facts_sha256"] for line in read_results(out)}


def test_a_folder_of_bundles_converts_every_patient(per_bundle) -> None:
    _, summary = per_bundle
    bundles = sorted(SYNTHEA.glob("*.json"))
    assert summary["counts"]["records_in"] == len(bundles) == summary["counts"]["results"]
    assert {i["kind"] for i in summary["inputs"]} == {"fhir-bundles"}
    assert summary["now"] == NOW


def test_bulk_export_joined_by_patient_gives_the_same_facts_as_each_bundle(export, per_bundle, tmp_path) -> None:
    folder, lines = export
    out = tmp_path / "out"
    summary = run_population([folder / "manifest.json"], out, SETTINGS, workers=0)
    assert summary["counts"]["records_in"] == lines["Patient"] == summary["counts"]["results"]
    # Every line of the export is accounted for: joined to its patient, shared, or rejected.
    bulk = summary["bulk"]
    assert (
        bulk["resource_lines"]
        == sum(lines.values())
        == bulk["joined"] + bulk["shared"] + bulk["rejected"] + bulk["patients"]
    )
    assert bulk["rejected"] == 0 and bulk["shared"] == lines["Organization"] + lines["Practitioner"]
    assert _facts_by_patient(out) == _facts_by_patient(per_bundle[0])  # the join lost and invented nothing
    # Conditions and medications really came through the join (not all-unknown documents).
    run_population(
        [folder / "manifest.json"], tmp_path / "full", RunSettings(now=NOW, trace=False, partition_size=8), workers=0
    )
    cited = {
        source["resource"].split("/")[0]
        for line in read_results(tmp_path / "full")
        for sources in line["result"]["trace"]["input_provenance"]["provenance"].values()
        for source in sources
    }
    assert {"Patient", "Condition", "MedicationRequest"} <= cited


def test_bulk_without_manifest_gzipped_and_with_bad_lines(tmp_path, export) -> None:
    folder = tmp_path / "export"
    lines = bulk_export_from_synthea(folder, manifest=False, gz=True)
    import gzip

    condition = folder / "Condition.000.ndjson.gz"
    data = gzip.decompress(condition.read_bytes())
    orphan = json.dumps({"resourceType": "Condition", "id": "o1", "subject": {"reference": "Patient/nobody"}})
    condition.write_bytes(gzip.compress(data + b"{oops\n" + orphan.encode() + b"\n"))
    summary = run_population([folder], tmp_path / "out", SETTINGS, workers=0)
    assert summary["counts"]["results"] == lines["Patient"]
    assert summary["bulk"]["rejected"] == 2
    errors = read_ndjson(tmp_path / "out" / "errors.ndjson")
    assert [e["stage"] for e in errors] == ["bulk-join", "bulk-join"]
    first_bad = len(data.splitlines()) + 1
    assert errors[0]["source"] == f"{condition}:{first_bad}" and "not JSON" in errors[0]["errors"][0]["message"]
    assert errors[1]["source"] == f"{condition}:{first_bad + 1}"
    assert errors[1]["errors"][0]["pointer"] == "/subject/reference"
    assert _facts_by_patient(tmp_path / "out") == _facts_by_patient(
        _plain_run(export[0], tmp_path / "plain")
    )  # gzip and the manifest change nothing


def _plain_run(folder: Path, out: Path) -> Path:
    run_population([folder], out, SETTINGS, workers=0)
    return out


def test_cli_runs_the_shared_synthea_export_and_writes_every_output(export, tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["population", "run", str(export[0]), "--out", str(out), "--now", NOW, "--workers", "0", "--slim"],
    )
    assert result.exit_code == 0, result.output
    assert "not a diagnosis" in result.output and "patients" in result.output
    assert "partitions" in result.stderr  # the progress bar (on a terminal it redraws; here, its label once)
    quiet = CliRunner().invoke(
        main,
        [
            "population",
            "run",
            str(export[0]),
            "--out",
            str(tmp_path / "q"),
            "--now",
            NOW,
            "--workers",
            "0",
            "--no-progress",
        ],
    )
    assert quiet.exit_code == 0 and "partitions" not in quiet.stderr
    for name in ("results/_manifest.json", "results/part-00000.ndjson", "findings.parquet", "errors.ndjson"):
        assert (out / name).is_file(), name
    assert (out / "summary.json").is_file()
    again = CliRunner().invoke(main, ["population", "run", str(export[0]), "--out", str(out), "--workers", "0"])
    assert again.exit_code == 2 and "--resume" in again.output
    missing = CliRunner().invoke(main, ["population", "run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no such file" in missing.output and "Traceback" not in missing.output
