"""neurocds.population: evaluate whole patient populations, on local cores or a Dask cluster.

Inputs (facts NDJSON, folders or globs of facts files, folders of per-patient FHIR
Bundles, FHIR Bulk Data ``$export`` output) are cut into partitions; each partition
is evaluated by :func:`evaluate_partition`, a pure function over records that Spark
(``mapInPandas``), Ray or any process pool can call; the run writes results NDJSON
(a folder of one part per partition, in input order: :func:`iter_result_lines`),
Parquet (one row per patient x finding), ``errors.ndjson`` and ``summary.json``, and
appends one audit record for the whole run.

A capability above the engine, beside ``neurocds.replay`` and ``neurocds.cdshooks``.
May import: the engine layer (``neurocds.engine``, ``neurocds.result``), the
audit and fhir stages and everything below them; not the CLI, nor its siblings.

Example::

    from neurocds.population import RunSettings, run_population

    summary = run_population(["patients.ndjson"], "out/", RunSettings(now="2025-01-01T00:00:00Z"))
    summary["counts"]["results"], summary["results_sha256"]
"""

from neurocds.population.output import iter_result_lines
from neurocds.population.partition import (
    EvaluatedPartition,
    InputRecord,
    engine_starts,
    evaluate_partition,
    process_engine,
)
from neurocds.population.run import PopulationError, run_population
from neurocds.population.settings import RunSettings
from neurocds.population.sources import Partition, plan_partitions

__all__ = [
    "EvaluatedPartition",
    "InputRecord",
    "Partition",
    "PopulationError",
    "RunSettings",
    "engine_starts",
    "evaluate_partition",
    "iter_result_lines",
    "plan_partitions",
    "process_engine",
    "run_population",
]
