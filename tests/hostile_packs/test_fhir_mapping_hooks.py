"""A pack's ``neurocds_fhir_mappings`` hook is pack code: raising, hanging, exiting or returning
junk leaves that pack's tables out, names it, and every other pack's tables still convert FHIR
(through the API and through ``neurocds evaluate --fhir``). The same holds for a
``neurocds.fhir_maps`` entry point that cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds.fhir import FhirConverter, MappingSourceFailure, engine_mapping_paths, load_mapping_tables
from neurocds.hookspecs import hookimpl
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LOCAL = "http://example.org/local"
GOOD_FINDING = "goodmaps.organophosphate"
TABLE = """\
format: neurocds-fhir-mapping/1
table: {table}
conditions:
  - id: organophosphate
    facts: exposures.organophosphate
    scope: current
    within_days: 3650
    codes: [{{system: "{system}", code: "OP-EXPOSURE"}}]
"""
BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"}},
        {
            "resource": {
                "resourceType": "Condition",
                "id": "c1",
                "code": {"coding": [{"system": LOCAL, "code": "OP-EXPOSURE"}]},
                "subject": {"reference": "Patient/p1"},
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
                "verificationStatus": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
                    ]
                },
                "onsetDateTime": "2024-05-30",
            }
        },
    ],
}


def _sleep() -> Any:
    time.sleep(10)


def _raise(exc: BaseException) -> Callable[[], Any]:
    def hook() -> Any:
        raise exc

    return hook


def _invalid_table(tmp: Path) -> list[Path]:
    path = tmp / "invalid.yaml"
    path.write_text("format: neurocds-fhir-mapping/1\ntable: 42\nconditions: nope\n")
    return [path]


# Set when each test ends: a worker thread cannot be killed, and a spin left running would
# hold the GIL for the rest of the session (it made the whole suite 3x slower).
_STOP_SPINNING = threading.Event()


class _SpinningList(list):  # type: ignore[type-arg]  # a hook answer whose reading runs pack code
    def __iter__(self) -> Any:
        while not _STOP_SPINNING.is_set():
            pass
        return iter(())


@pytest.fixture(autouse=True)
def _stop_spinning() -> Iterator[None]:
    _STOP_SPINNING.clear()
    yield
    _STOP_SPINNING.set()


# kind -> the hook's body (given a scratch folder), and words the failure must contain
HOSTILE: dict[str, tuple[Callable[[Path], Any], str]] = {
    "raises": (lambda _: _raise(RuntimeError("boom"))(), "raised RuntimeError: boom"),
    "exits": (lambda _: _raise(SystemExit(3))(), "raised SystemExit"),
    "interrupt": (lambda _: _raise(KeyboardInterrupt())(), "raised KeyboardInterrupt"),
    "hangs": (lambda _: _sleep(), "did not return within"),
    "returns-a-dict": (lambda _: {"tables": []}, "must return a list of table files, got dict"),
    "returns-numbers": (lambda _: [42], "must return paths, got int"),
    "returns-bytes": (lambda _: [b"/etc/passwd"], "must return paths, got bytes"),
    "names-a-missing-file": (lambda tmp: [tmp / "nowhere.yaml"], "which is not a file"),
    "names-a-folder": (lambda tmp: [tmp], "which is not a file"),
    "returns-too-many": (lambda tmp: [tmp / "x.yaml"] * 100_000, "at most"),
    "names-an-invalid-table": (_invalid_table, "invalid mapping table"),
    # Its answer is read on the budgeted worker too: reading it on the caller's thread hung Engine users.
    "answer-spins-when-read": (lambda tmp: _SpinningList([tmp / "x.yaml"]), "ran past the pack's budget"),
}


def good_pack(tmp: Path) -> Any:
    table = tmp / "good-table.yaml"
    table.write_text(TABLE.format(table="good-extras", system=LOCAL))
    when = {"fact": "exposures.organophosphate", "eq": True}
    plugin = inline_pack(tmp / "good", "goodmaps", "goodmaps", [rule(GOOD_FINDING, when)])
    plugin.neurocds_fhir_mappings = hookimpl(lambda: [table])
    return plugin


def hostile_pack(tmp: Path, kind: str) -> Any:
    body = HOSTILE[kind][0]
    when = {"fact": "strength.left_leg", "lte": 5}
    plugin = inline_pack(tmp / "bad", "hostile", "hostile", [rule("hostile.any", when)])
    plugin.neurocds_fhir_mappings = hookimpl(lambda: body(tmp))
    return plugin


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_mapping_hook_is_named_and_the_other_packs_tables_still_apply(kind: str, tmp_path: Path) -> None:
    engine = Engine(
        packs=[*BUILTIN_PACKS, "goodmaps", "hostile"],
        plugins=[("goodmaps", good_pack(tmp_path)), ("hostile", hostile_pack(tmp_path, kind))],
        load_budget=0.5,
    )
    problems: list[MappingSourceFailure] = []
    started = time.monotonic()
    paths = engine_mapping_paths(engine, problems)
    assert time.monotonic() - started < 5.0  # the hanging hook is not waited for past its budget
    assert [p.source for p in problems] == ["pack plugin hostile"], problems
    assert HOSTILE[kind][1] in problems[0].message
    assert "hostile" in str(problems[0])
    assert tmp_path / "good-table.yaml" in paths
    conversion = FhirConverter(load_mapping_tables(paths), now=NOW).convert_bundle(BUNDLE)
    assert conversion.facts["exposures"] == {"organophosphate": True}
    result = engine.evaluate(conversion.facts)
    assert GOOD_FINDING in result.finding_ids


def test_without_a_list_the_failure_is_logged_not_lost(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(
        packs=[*BUILTIN_PACKS, "hostile"], plugins=[("hostile", hostile_pack(tmp_path, "raises"))], load_budget=0.5
    )
    with caplog.at_level("WARNING", logger="neurocds.fhir"):
        paths = engine_mapping_paths(engine)
    assert paths and "pack plugin hostile" in caplog.text and "boom" in caplog.text


def test_a_pack_that_failed_to_load_adds_no_tables(tmp_path: Path) -> None:
    good = good_pack(tmp_path)
    good.neurocds_register_packs = hookimpl(lambda: {"not": "a list"})  # fails at registration
    engine = Engine(packs=BUILTIN_PACKS, plugins=[("goodmaps", good)], on_pack_error="skip")
    assert tmp_path / "good-table.yaml" not in engine_mapping_paths(engine, [])


# ------------------------------------------------------------------ the command line
SITE_PACK = """
import json
from pathlib import Path
from neurocds.hookspecs import RulePack, hookimpl
from neurocds.testing import rule

HERE = Path(__file__).parent

@hookimpl
def neurocds_register_packs():
    path = HERE / "{name}-rules.json"
    rules = [rule("{name}.op", {{"fact": "exposures.organophosphate", "eq": True}})]
    document = {{"format": "neurocds-ruleset/1", "pack": "{name}", "namespace": "{name}", "rules": rules}}
    path.write_text(json.dumps(document))
    return [RulePack(name="{name}", version="0.0.1", rule_files=[path], description="site pack")]

@hookimpl
def neurocds_fhir_mappings():
{body}
"""
FAULTS = {
    "raises": "    raise RuntimeError('mapping hook failed')",
    "exits": "    raise SystemExit(0)",
    "junk": "    return 'not-a-list.yaml'",
}
BROKEN_MAPS = "raise ImportError('this fhir_maps plugin cannot be imported')\n"


def install(site: Path, name: str, module: str, group: str, entry: str) -> None:
    (site / f"{name.replace('-', '_')}.py").write_text(module)
    meta = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (meta / "entry_points.txt").write_text(f"[{group}]\n{entry} = {name.replace('-', '_')}\n")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_evaluate_fhir_names_the_faulty_pack_and_converts_with_the_others(fault: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "tables").mkdir(parents=True)
    table = site / "tables" / "good.yaml"
    table.write_text(TABLE.format(table="site-good", system=LOCAL))
    good_body = f"    return [Path({str(table)!r})]"
    install(site, "good-site", SITE_PACK.format(name="goodsite", body=good_body), "neurocds.packs", "goodsite")
    install(site, "bad-site", SITE_PACK.format(name="badsite", body=FAULTS[fault]), "neurocds.packs", "badsite")
    install(site, "broken-maps", BROKEN_MAPS, "neurocds.fhir_maps", "broken")
    (tmp_path / "bundle.json").write_text(json.dumps(BUNDLE))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NEUROCDS_PACKS", None)
    args = ["evaluate", "--fhir", "--now", "2024-06-01T12:00:00Z", "--format", "json", str(tmp_path / "bundle.json")]
    proc = subprocess.run(
        [sys.executable, "-m", "neurocds", *args], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 3, proc.stderr  # tables were left out: as for any pack failure
    assert "FHIR mapping tables of pack plugin badsite left out" in proc.stderr
    assert "FHIR mapping tables of entry point broken = broken_maps left out" in proc.stderr
    assert "cannot be imported" in proc.stderr
    result = json.loads(proc.stdout)
    assert "goodsite.op" in [f["id"] for f in result["findings"]]  # its table mapped the local code
    assert "badsite.op" in [f["id"] for f in result["findings"]]  # its rules run on the facts the others mapped
    warnings = result["trace"]["input_provenance"]["warnings"]
    assert {w["source"] for w in warnings if w.get("kind") == "fhir_mappings_left_out"} == {
        "pack plugin badsite",
        "entry point broken = broken_maps",
    }
