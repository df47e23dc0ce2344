"""Replaying 1.0.0 decisions with the installed 2.0.0 packs shows exactly what packs-v2 changed.

Every case of the library is evaluated with the 1.0.0 packs (rebuilt from the copy of their
rule files in tests/fixtures/packs-v1) and recorded in an audit log, as a 1.0.0 installation
would have recorded it. Each decision is then replayed with ``--compare`` against the
installed packs. tests/fixtures/packs-v2-replay-differences.yaml lists, per case, the
findings version 2 adds, removes or re-grades and the packs-v2 row responsible; every case
it does not list must replay with the same findings at the same urgencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from case_library import load_cases
from click.testing import CliRunner
from packs_spec import parse_spec, spec_path, v2_changed_ids
from packs_v1 import DEPENDS_ON, v1_engine

from neurocds.audit.query import read_records
from neurocds.cli import main
from neurocds.engine import Engine
from neurocds.replay import ReplayOutcome, replay_decision
from neurocds.rules.conditions import DerivedRef, FindingRef
from neurocds_packs import BUILTIN_PACKS

EXPECTED = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "packs-v2-replay-differences.yaml").read_text(encoding="utf-8")
)
CASES = load_cases()
CASE_BY_NAME = {case["name"]: case_id for case_id, case in CASES.items()}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audit log of every case, decided with the 1.0.0 packs."""
    root = tmp_path_factory.mktemp("packs-v1")
    engine = v1_engine(root / "packs", audit_dir=root / "log")
    for case in CASES.values():
        assert engine.evaluate(case["facts"]).errors == []
    return root / "log"


@pytest.fixture(scope="module")
def outcomes(log_dir: Path) -> dict[str, ReplayOutcome]:
    """Case id -> the outcome of replaying its 1.0.0 decision with --compare."""
    engines: dict[tuple[Any, ...], Engine] = {}

    def installed(packs: list[str], info: Mapping[str, Any]) -> Engine:
        # What the default factory builds (the recorded pack names, installed versions),
        # built once per pack set rather than once per record.
        key = (tuple(packs), info.get("backend"), info.get("verified"))
        if key not in engines:
            engines[key] = Engine(packs=packs, backend=info.get("backend"), verify=bool(info.get("verified")))
        return engines[key]

    out = {}
    for record in read_records(log_dir):
        if record.get("type") != "decision":
            continue
        case_id = CASE_BY_NAME[record["decision"]["facts"]["patient"]["id"]]
        out[case_id] = replay_decision(record, compare=True, engine_factory=installed)
    assert set(out) == set(CASES)
    return out


def observed(outcome: ReplayOutcome) -> dict[str, Any]:
    """The finding changes of one replay, in the form of the expectations file."""
    seen: dict[str, Any] = {}
    if outcome.added:
        seen["added"] = sorted(f["id"] for f in outcome.added)
    if outcome.removed:
        seen["removed"] = sorted(f["id"] for f in outcome.removed)
    if outcome.urgency_changed:
        seen["urgency_changed"] = {f["id"]: [f["recorded"], f["current"]] for f in outcome.urgency_changed}
    return seen


def expected(case_id: str) -> dict[str, Any]:
    entry = EXPECTED.get(case_id, {})
    out: dict[str, Any] = {k: sorted(entry[k]) for k in ("added", "removed") if k in entry}
    if "urgency_changed" in entry:
        out["urgency_changed"] = entry["urgency_changed"]
    return out


def test_the_fixture_packs_are_version_1(tmp_path: Path) -> None:
    # The copy must be the released contract: version 1.0.0 and exactly packs-v1's finding ids.
    engine = v1_engine(tmp_path)
    assert {p["name"]: p["version"] for p in engine.pack_infos()} == dict.fromkeys(DEPENDS_ON, "1.0.0")
    v1 = parse_spec(spec_path().read_text(encoding="utf-8"))
    v1_findings = {f for items in v1.values() for f, urgencies in items.items() if urgencies is not None}
    assert {r.key for r in engine.rules if r.kind == "finding"} == v1_findings


def test_every_replay_names_the_pack_versions(outcomes: dict[str, ReplayOutcome]) -> None:
    for case_id, outcome in outcomes.items():
        versions = {d["name"]: (d["recorded"]["version"], d["installed"]["version"]) for d in outcome.pack_differences}
        installed = {**dict.fromkeys(DEPENDS_ON, ("1.0.0", "2.0.0")), "neuromuscular": ("1.0.0", "2.1.0")}
        assert versions == installed, case_id
        assert not outcome.identical, case_id


def test_compare_shows_exactly_the_v2_differences(outcomes: dict[str, ReplayOutcome]) -> None:
    wrong = []
    for case_id, outcome in sorted(outcomes.items()):
        if observed(outcome) != expected(case_id):
            wrong.append(f"{case_id}: replay shows {observed(outcome)}, expected {expected(case_id)}")
        if outcome.same_findings == (case_id in EXPECTED):
            wrong.append(f"{case_id}: same_findings is {outcome.same_findings}")
    assert not wrong, "\n".join(wrong)
    assert len(EXPECTED) >= 30 and len(outcomes) - len(EXPECTED) >= 250  # both kinds are well represented


def builds_on(node: Any, ids: set[str]) -> bool:
    """Whether a condition node refers to one of ``ids`` (a finding or a derived fact)."""
    return (isinstance(node, FindingRef) and node.finding in ids) or (isinstance(node, DerivedRef) and node.name in ids)


def test_every_listed_difference_comes_from_a_v2_row() -> None:
    # A difference is a packs-v2 row's finding, or a finding whose rules build on one, directly or
    # through others ({finding: ...} or {derived: ...}, such as radiculopathy on monoparesis).
    changed = v2_changed_ids()
    chained: set[str] = set()
    rules = Engine(packs=BUILTIN_PACKS).rules
    while True:  # to a fixed point: the chains are a few links long
        reached = changed | chained
        more = {
            rule.key
            for rule in rules
            if rule.kind == "finding" and any(builds_on(n, reached) for n in rule.when.walk())
        }
        if more <= chained:
            break
        chained |= more
    problems = []
    for case_id, entry in EXPECTED.items():
        assert case_id in CASES, f"{case_id}: no such case"
        if entry["because"] not in changed:
            problems.append(f"{case_id}: {entry['because']} is not a row of packs-v2")
        ids = {*entry.get("added", ()), *entry.get("removed", ()), *entry.get("urgency_changed", {})}
        problems += [f"{case_id}: {i} is neither a v2 row nor chained on one" for i in ids - changed - chained]
    assert not problems, "\n".join(problems)


def test_drug_findings_now_name_the_medicines(outcomes: dict[str, ReplayOutcome]) -> None:
    # packs-v2: the drug finding's detail names each medicine behind it; a 1.0.0 decision that
    # raised it replays with the same urgency and a changed detail.
    drug = "neuromuscular.drug_induced_consider"
    replays = [o for o in outcomes.values() if drug not in {f["id"] for f in o.added} and any(
        w["id"] == drug for w in o.wording_changed
    )]  # fmt: skip
    raised_in_both = [
        case_id
        for case_id, case in CASES.items()
        if drug in case["expect_present"] and drug not in {f["id"] for f in outcomes[case_id].added}
    ]
    assert raised_in_both and len(replays) >= len(raised_in_both)
    for case_id in raised_in_both:
        changes = {w["id"]: w["fields"] for w in outcomes[case_id].wording_changed}
        assert "detail" in changes.get(drug, []), case_id


def cli(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(main, list(map(str, args)))
    return out.exit_code, out.output


def sequence_of(log_dir: Path, case_name: str) -> str:
    for record in read_records(log_dir):
        if record.get("type") == "decision" and record["decision"]["facts"]["patient"]["id"] == case_name:
            return str(record["sequence"])
    raise KeyError(case_name)


def test_audit_replay_compare_cli_on_a_changed_and_an_unchanged_case(log_dir: Path) -> None:
    # The command an auditor runs, with the default engine factory (the installed packs).
    code, out = cli(
        "audit", "replay", "--compare", "--audit-dir", log_dir,
        sequence_of(log_dir, "epidural-haematoma-apixaban-back-pain-paraparesis"),
    )  # fmt: skip
    assert code == 1, out
    assert "pack spinal-compression: recorded 1.0.0" in out and "installed 2.0.0" in out
    assert "+ added finding spinal.epidural_haematoma_suspected [emergency]" in out
    assert "CHANGED FINDINGS" in out
    code, out = cli("audit", "replay", "--compare", "--audit-dir", log_dir, sequence_of(log_dir, "cord-umn-signs"))
    assert "SAME FINDINGS" in out and "+ added" not in out and "- removed" not in out, out
    assert "~ wording of treatment.decompression_may_restore_strength changed" in out  # route (b) proviso
