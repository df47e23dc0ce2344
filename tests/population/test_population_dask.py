"""A real Dask cluster: LocalCluster(n_workers=2, processes=True), the same partitions as a serial run.

The 10,000-patient comparison carries the ``population_10k`` marker (it runs by
default and in CI; ``-m "not population_10k"`` leaves it out while iterating).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from neurocds.cli import main
from neurocds.population import RunSettings, run_population

from .helpers import NOW, facts_ndjson, read_results

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,  # other runs on this machine may hold :8787
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def _per_patient(out: Path) -> dict[str, Any]:
    lines = read_results(out)
    table = {
        line["patient_id"]: {k: v for k, v in line["result"].items() if k not in ("evaluation_id", "evaluated_at")}
        for line in lines
    }
    assert len(table) == len(lines), "a patient was written twice"
    return table


@pytest.mark.population_10k
def test_ten_thousand_patients_serial_and_on_the_cluster_agree(cluster, tmp_path) -> None:
    source = tmp_path / "patients.ndjson"
    records = facts_ndjson(source, 10_000, seed=16)
    # The reference backend and no trace keep this under a minute on two busy cores; the durable
    # backend on a cluster is compared with a serial run in the test below.
    settings = RunSettings(now=NOW, backend="reference", trace=False, partition_size=1000)
    serial = run_population([source], tmp_path / "serial", settings, workers=0)
    spread = run_population([source], tmp_path / "dask", settings, client=cluster)
    assert serial["counts"]["records_in"] == records == spread["counts"]["results"] + spread["counts"]["errors"]
    assert spread["counts"]["results"] == 10_000
    assert _per_patient(tmp_path / "dask") == _per_patient(tmp_path / "serial")
    assert spread["results_sha256"] == serial["results_sha256"]
    assert spread["summary_sha256"] == serial["summary_sha256"]
    assert (tmp_path / "dask" / "errors.ndjson").read_bytes() == (tmp_path / "serial" / "errors.ndjson").read_bytes()
    workers = spread["workers"]
    pids = set(cluster.run(os.getpid).values())
    assert set(map(int, workers)) <= pids and len(workers) == 2  # both workers took part...
    assert all(w["engine_starts"] == 1 for w in workers.values()), workers  # ...each with one engine


def test_a_killed_dask_worker_loses_nothing_and_doubles_nothing(cluster, tmp_path) -> None:
    source = tmp_path / "patients.ndjson"
    facts_ndjson(source, 400, seed=3)
    settings = RunSettings(now=NOW, trace=False, partition_size=10)
    expected = run_population([source], tmp_path / "serial", settings, workers=0)
    victims: list[int] = []

    def kill_a_worker(done: int, total: int, patients: int) -> None:
        if done >= 2 and not victims:
            pid = next(iter(cluster.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)  # the nanny starts a new worker; the scheduler reruns its tasks
            victims.append(pid)

    result = run_population([source], tmp_path / "dask", settings, client=cluster, on_progress=kill_a_worker)
    assert victims
    assert result["counts"] == expected["counts"]
    assert result["results_sha256"] == expected["results_sha256"]
    assert _per_patient(tmp_path / "dask") == _per_patient(tmp_path / "serial")
    assert all(w["engine_starts"] == 1 for w in result["workers"].values())


def test_cli_scheduler_address_runs_on_the_cluster(cluster, tmp_path) -> None:
    source = tmp_path / "patients.ndjson"
    facts_ndjson(source, 50, seed=5)
    address = cluster.scheduler.address
    assert address.startswith("tcp://")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["population", "run", str(source), "--out", str(out), "--scheduler", address, "--now", NOW, "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    pids = set(cluster.run(os.getpid).values())
    summary_workers = {int(pid) for pid in read_summary(out)["workers"]}
    assert summary_workers <= pids and os.getpid() not in summary_workers


def read_summary(out: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((out / "summary.json").read_text()))
