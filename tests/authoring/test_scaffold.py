"""`neurocds pack new`: the scaffolded distribution installs beside neurocds, lints clean and covers 100 %."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from neurocds import Engine
from neurocds.authoring.cases import check_case, load_case_file
from neurocds.authoring.coverage import CoverageCollector
from neurocds.authoring.lint import lint
from neurocds.authoring.metadata import installed_packs, select
from neurocds.authoring.scaffold import ScaffoldError, scaffold
from neurocds.cli import main

REPO = Path(__file__).resolve().parents[2]


def _import(module_dir: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"scaffolded_{name}", module_dir / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("depends_on", [(), ("weakness-pattern",)], ids=["standalone", "on-weakness-pattern"])
def test_scaffolded_pack_passes_its_cases_with_full_coverage_and_lints_clean(
    tmp_path: Path, depends_on: tuple[str, ...]
) -> None:
    # In process, both variants: the plugin module as written, its case files, coverage and lint.
    files = scaffold("b12-deficiency", "b12", tmp_path / "pack", depends_on=depends_on)
    assert {f.name for f in files} >= {"pyproject.toml", "pack.yaml", "b12-deficiency.yaml", "fires.case.yaml"}
    plugin = _import(tmp_path / "pack" / "src" / "b12_deficiency", "b12")
    engine = Engine(packs=[*depends_on, "b12-deficiency"], plugins=[("b12-deficiency", plugin)])
    collector = CoverageCollector(engine, ["b12-deficiency"])
    known = {r.key for r in engine.rules if r.kind == "finding"}
    cases = [c for f in sorted((tmp_path / "pack" / "tests" / "cases").glob("*.case.yaml")) for c in load_case_file(f)]
    assert len(cases) == 5
    for case in cases:
        outcome = check_case(case, engine, known)
        assert outcome.passed, outcome.report()
        collector.record_facts(case.facts)
    assert collector.to_dict()["totals"]["conditions"]["percent"] == 100.0
    installed = installed_packs(plugins=[("b12-deficiency", plugin)])
    report = lint(select(installed, ["b12-deficiency"]), installed)
    assert report.exit_code == 0 and report.problems == []


def test_pack_new_refuses_bad_names_and_a_non_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="lower-case words"):
        scaffold("B12", "b12", tmp_path / "a")
    with pytest.raises(ScaffoldError, match="namespace"):
        scaffold("b12", "class", tmp_path / "b")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = CliRunner().invoke(main, ["pack", "new", "demo", "--namespace", "demo", "--dir", str(tmp_path / "full")])
    assert result.exit_code == 2 and "is not empty" in result.output and "Traceback" not in result.output


def _fresh_venv(where: Path) -> Path:
    """A venv that sees this environment's dependencies (a .pth line) but not its neurocds: fast, offline."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return python


@pytest.mark.skipif(sys.platform == "win32", reason="venv layout differs")
def test_pack_new_installs_into_a_fresh_venv_and_its_pytest_is_green(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    args = ["pack", "new", "demo", "--namespace", "demo", "--depends-on", "weakness-pattern", "--dir", str(demo)]
    made = CliRunner().invoke(main, args)
    assert made.exit_code == 0, made.output
    python = _fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("NEUROCDS_PACKS", "PYTHONPATH")}
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, str(REPO), str(demo)], check=True, env=env, capture_output=True)
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=demo, env=env, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout and "condition coverage 100.0% (required 100.0%): ok" in tests.stdout
    neurocds = [str(python), "-m", "neurocds"]
    linted = subprocess.run([*neurocds, "pack", "lint", "demo"], cwd=demo, env=env, capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 errors, 0 warnings" in linted.stdout
    listed = subprocess.run([*neurocds, "packs", "list"], env=env, capture_output=True, text=True, check=True)
    assert "demo 0.1.0" in listed.stdout
