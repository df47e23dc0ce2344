"""An installed pack that cannot load: the CLI, ``packs list`` and the service report it and
run the others, every result ``complete: false``; an allowlist naming it is an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .hostile import EMERGENCY, EXAMPLE

REPO = Path(__file__).resolve().parents[2]

BROKEN = """
from neurocds.hookspecs import hookimpl

@hookimpl
def neurocds_register_packs():
    return {"name": "broken-pack"}  # a dict, not a list of RulePack records
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder that, on sys.path, makes one broken pack look installed (an entry point)."""
    (tmp_path / "broken_pack_module.py").write_text(BROKEN, encoding="utf-8")
    dist = tmp_path / "broken_pack-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-pack\nVersion: 1.0\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[neurocds.packs]\nbroken-pack = broken_pack_module\n", encoding="utf-8")
    return tmp_path


def neurocds(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NEUROCDS_PACKS", None)
    return subprocess.run(
        [sys.executable, "-m", "neurocds", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_evaluate_reports_the_broken_pack_and_answers_with_the_others(site: Path) -> None:
    proc = neurocds(site, "evaluate", str(EXAMPLE), "--format", "json")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 3  # an incomplete result, as for any pack failure
    assert "warning: pack broken-pack could not load" in proc.stderr and "got dict" in proc.stderr
    result = json.loads(proc.stdout)
    assert result["complete"] is False and EMERGENCY in [f["id"] for f in result["findings"]]
    assert [e["pack"] for e in result["errors"]] == ["broken-pack"]


def test_packs_list_shows_the_broken_pack_as_failed(site: Path) -> None:
    proc = neurocds(site, "packs", "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)["packs"]}
    assert rows["broken-pack"]["status"] == "failed" and "got dict" in rows["broken-pack"]["error"]
    assert rows["weakness-pattern"]["status"] == "ok"
    text = neurocds(site, "packs", "list").stdout
    assert "broken-pack unknown  failed" in text and "error: " in text


def test_an_allowlist_naming_the_broken_pack_is_an_error(site: Path) -> None:
    proc = neurocds(site, "packs", "list", "--packs", "weakness-pattern,broken-pack")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: neurocds_register_packs must return a list of RulePack records, got dict")


def test_the_service_starts_and_logs_the_broken_pack(site: Path) -> None:
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from neurocds import Engine\n"
        "from tests.cdshooks.support import running_server\n"
        "with running_server({'insecure_dev': True}, Engine()) as srv:\n"
        "    print(srv.call('GET', '/cds-services').status)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "200"
    assert proc.stderr.count("pack broken-pack could not load") >= 2  # at start and at discovery


def test_skip_mode_with_an_allowlist_reports_the_broken_pack(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How replay rebuilds an engine: the recorded packs, failures reported as they were."""
    from neurocds import Engine

    monkeypatch.syspath_prepend(str(site))
    engine = Engine(packs=["weakness-pattern", "broken-pack"], on_pack_error="skip")
    assert [p.name for p in engine.failed_packs] == ["broken-pack"]
    assert [p.name for p in engine.packs] == ["weakness-pattern"]
