"""``neurocds.installed`` gives the answers ``importlib.metadata`` gives, without importing it.

Each environment below is a list of ``sys.path`` folders built in ``tmp_path``; both
readers are asked the same questions (entry points of a group with their distribution's
name and version, a distribution's version, what an entry point loads) and must agree.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from neurocds import installed
from neurocds.hookspecs import ENTRY_POINT_GROUP, FHIR_MAPS_ENTRY_POINT_GROUP

GROUPS = ("demo.plugins", "other.group", ENTRY_POINT_GROUP, FHIR_MAPS_ENTRY_POINT_GROUP, "console_scripts")
NAMES = ("good-pkg", "Good.Pkg", "good_pkg", "dup", "legacy", "eggy", "zipped", "neurocds", "pluggy", "absent-x")


def dist(site: Path, folder: str, metadata: str | None, entry_points: str | None, meta_file: str = "METADATA") -> None:
    info = site / folder
    info.mkdir(parents=True)
    if metadata is not None:
        (info / meta_file).write_text(metadata, encoding="utf-8")
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


@pytest.fixture
def sites(tmp_path: Path) -> list[str]:
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    dist(
        first,
        "Good_Pkg-1.0.dist-info",
        "Metadata-Version: 2.1\nName: Good.Pkg\nVersion: 1.0\nSummary: a\n  folded summary\n\nName: not a header\n",
        "# a comment\n\n[demo.plugins]\nx = demo_mod:thing.attr [extra]\n  y=demo_mod  \n"
        "[other.group]\nz = demo_mod:thing\n",
    )
    dist(first, "dup-2.0.dist-info", "Name: dup\nVersion: 2.0\n", "[demo.plugins]\nd = demo_mod:first\n")
    (first / "demo_mod.py").write_text(
        "class thing:\n    attr = 'the attr'\nfirst = 'first dup'\nsecond = 'second dup'\n", encoding="utf-8"
    )
    # The same distribution name again, further down sys.path: importlib.metadata keeps the first.
    dist(second, "dup-3.0.dist-info", "Name: dup\nVersion: 3.0\n", "[demo.plugins]\nd = demo_mod:second\n")
    dist(second, "legacy.egg-info", "Name: legacy\nVersion: 0.9\n", "[demo.plugins]\nl = demo_mod\n", "PKG-INFO")
    dist(second, "nothing-1.0.dist-info", "Name: nothing\nVersion: 1.0\n", None)
    egg = third / "eggy-4.2.egg"
    dist(egg, "EGG-INFO", "Name: eggy\nVersion: 4.2\n", "[demo.plugins]\ne = demo_mod:thing\n", "PKG-INFO")
    return [str(first), str(second), str(third), str(egg)]


def answers(reader: Any, source: Any, version: Any) -> dict[str, Any]:
    points = {
        group: sorted((ep.name, ep.value, ep.group, source(ep.dist)) for ep in reader(group)) for group in GROUPS
    }
    return {"entry points": points, "versions": {name: version(name) for name in NAMES}}


def from_metadata() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return answers(
        lambda group: importlib.metadata.entry_points(group=group),
        lambda d: f"{d.metadata['Name']} {d.metadata['Version']}",
        version,
    )


def from_installed() -> dict[str, Any]:
    return answers(installed.entry_points, installed.source_name, installed.version)


def test_this_environment_reads_alike():
    assert from_installed() == from_metadata()
    assert from_installed()["entry points"][ENTRY_POINT_GROUP]  # the built-in packs are there to find


def test_folders_on_sys_path_read_alike(sites: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "path", [*sites, *sys.path])
    mine = from_installed()
    assert mine == from_metadata()
    demo = mine["entry points"]["demo.plugins"]
    assert ("d", "demo_mod:first", "demo.plugins", "dup 2.0") in demo and "demo_mod:second" not in str(demo)
    assert ("y", "demo_mod", "demo.plugins", "Good.Pkg 1.0") in demo
    assert mine["versions"]["Good.Pkg"] == "1.0" and mine["versions"]["eggy"] == "4.2"
    assert mine["versions"]["dup"] == "2.0" and mine["versions"]["absent-x"] is None


def test_entry_points_load_what_importlib_metadata_loads(sites: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "path", [*sites, *sys.path])
    monkeypatch.delitem(sys.modules, "demo_mod", raising=False)
    theirs = {ep.name: ep.load() for ep in importlib.metadata.entry_points(group="demo.plugins")}
    mine = {ep.name: ep.load() for ep in installed.entry_points("demo.plugins")}
    assert mine == theirs and mine["x"] == "the attr"
    with pytest.raises(ValueError, match="not 'module' or 'module:attribute'"):
        installed.EntryPoint("bad", "no good: value!", "demo.plugins").load()


def test_an_archive_on_sys_path_is_left_to_importlib_metadata(sites: list[str], tmp_path: Path, monkeypatch):
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-5.0.dist-info/METADATA", "Name: zipped\nVersion: 5.0\n")
        zf.writestr("zipped-5.0.dist-info/entry_points.txt", "[demo.plugins]\nzz = demo_mod\n")
    monkeypatch.setattr(sys, "path", [*sites, str(archive), *sys.path])
    mine = from_installed()
    assert mine == from_metadata() and mine["versions"]["zipped"] == "5.0"


def test_a_finder_that_lists_distributions_is_left_to_importlib_metadata(tmp_path: Path, monkeypatch):
    hidden = tmp_path / "hidden"  # a metadata folder only this finder knows, on no sys.path entry
    dist(hidden, "hidden-1.0.dist-info", "Name: hidden\nVersion: 1.0\n", "[demo.plugins]\nh = demo_mod\n")

    class Listing:
        @staticmethod
        def find_spec(*_: Any) -> None:
            return None

        @staticmethod
        def find_distributions(context: Any = None) -> list[Any]:
            return [importlib.metadata.PathDistribution(hidden / "hidden-1.0.dist-info")]

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Listing])
    mine = from_installed()
    assert mine == from_metadata()
    assert ("h", "demo_mod", "demo.plugins", "hidden 1.0") in mine["entry points"]["demo.plugins"]


def test_engine_start_reads_no_distribution_metadata_through_importlib():
    probe = "import sys\nfrom neurocds import Engine\nEngine()\nprint('importlib.metadata' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
