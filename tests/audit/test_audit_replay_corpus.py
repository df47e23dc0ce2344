"""Replay reproduces real decisions exactly: every example, the case library, FHIR input,
with and without the why-not trace."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from neurocds import Engine
from neurocds.audit import read_records
from neurocds.cli import main
from neurocds.replay import replay_decision
from neurocds_packs import BUILTIN_PACKS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.json"))
CASES = sorted((REPO / "tests" / "cases").glob("*/*.yaml"))


def _shared_data() -> Path:
    import sys

    sys.path.insert(0, str(REPO / "tests"))  # shared_data.py: where the third-party data lives
    import shared_data

    return shared_data.DATA


FHIR_INPUTS = ("synthea/bulk10_ca15b832-01e4-41dd-6a52-97bd3e5510cb.json", "fhir-examples/Bundle-ghp.json")


def cli(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(main, list(map(str, args)))
    return out.exit_code, out.output


@pytest.fixture(scope="module")
def cli_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decisions made by `neurocds evaluate`: every example and two FHIR bundles, each with and without trace."""
    d = tmp_path_factory.mktemp("corpus") / "log"
    data = _shared_data()
    inputs: list[list[str | Path]] = [[path] for path in EXAMPLES]
    inputs += [["--fhir", data / name] for name in FHIR_INPUTS]
    for args in inputs:
        for trace in ([], ["--no-trace"]):
            code, output = cli("evaluate", "--audit-dir", d, *trace, *args)
            assert code == 0, output
    return d


def test_every_cli_decision_replays_identically(cli_log: Path) -> None:
    records = read_records(cli_log)
    assert len(records) == 2 * (len(EXAMPLES) + len(FHIR_INPUTS))
    assert sum(r["decision"]["trace"].get("omitted") is True for r in records) == len(records) // 2
    assert sum("input_provenance" in r["decision"]["trace"] for r in records) == 2 * len(FHIR_INPUTS)
    for record in records:
        code, output = cli("audit", "replay", "--audit-dir", cli_log, str(record["sequence"]))
        assert code == 0 and "IDENTICAL" in output, (record["sequence"], output)


def test_the_case_library_replays_identically(tmp_path: Path) -> None:
    engines: dict[tuple[Any, ...], Engine] = {}

    def factory(packs: list[str], info: Mapping[str, Any]) -> Engine:
        # The path replay takes, with the engine built once per pack set rather than per record.
        key = (tuple(packs), info.get("backend"), info.get("verified"))
        if key not in engines:
            engines[key] = Engine(packs=packs, backend=info.get("backend"), verify=bool(info.get("verified")))
        return engines[key]

    engine = Engine(packs=BUILTIN_PACKS, audit_dir=tmp_path / "log")
    for path in CASES:
        facts = yaml.safe_load(path.read_text(encoding="utf-8"))["facts"]
        engine.evaluate(facts, trace=CASES.index(path) % 3 != 0)  # a third without the trace
    records = read_records(tmp_path / "log")
    assert len(records) == len(CASES) > 100
    for record in records:
        outcome = replay_decision(record, engine_factory=factory)
        assert outcome.identical, (record["sequence"], outcome.differing_fields)
    # The default factory (a fresh engine from the recorded packs), on a sample.
    for record in records[:: max(1, len(records) // 8)]:
        assert replay_decision(record).identical, record["sequence"]


def test_a_no_trace_decision_is_replayed_without_trace(cli_log: Path) -> None:
    record = next(r for r in read_records(cli_log) if r["decision"]["trace"].get("omitted"))
    seen: list[bool] = []

    class Spy:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def pack_infos(self) -> list[dict[str, Any]]:
            return self.engine.pack_infos()

        def evaluate(self, facts: Any, *, trace: bool = True) -> Any:
            seen.append(trace)
            return self.engine.evaluate(facts, trace=trace)

    outcome = replay_decision(record, engine_factory=lambda packs, info: Spy(Engine(packs=packs)))
    assert seen == [False] and outcome.identical
    assert json.loads(json.dumps(record["decision"]["trace"]))["omitted"] is True
