"""The built-in packs' rule files: what the loader reads is exactly what the wheel ships.

plugins/neurocds_packs/_files.py reads rule files by suffix; pyproject.toml's package-data decides
which of them go into the wheel. If the two drift, a rule file that loads in a
checkout is silently missing from an installed package (its pack loads with fewer
rules and nothing fails), so the two lists are compared here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from neurocds_packs._files import RULE_FILE_SUFFIXES, rule_files_in

REPO = Path(__file__).resolve().parents[1]


def shipped_rule_patterns() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as fh:
        pyproject = tomllib.load(fh)
    return set(pyproject["tool"]["setuptools"]["package-data"]["neurocds_packs.rulesets"])


def test_rule_files_in_reads_every_accepted_suffix_and_nothing_else(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.json", "notes.txt", "d.yaml.orig", "pack.yaml"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "nested.yaml").mkdir()  # a folder named like a rule file is not one
    assert [p.name for p in rule_files_in(tmp_path)] == ["a.yaml", "b.yml", "c.json"]


def test_package_data_ships_every_rule_file_type_the_loader_reads() -> None:
    expected = {f"*/*{suffix}" for suffix in RULE_FILE_SUFFIXES}
    assert shipped_rule_patterns() == expected, "pyproject.toml package-data and RULE_FILE_SUFFIXES differ"


def test_every_file_under_rulesets_is_a_shipped_rule_file() -> None:
    # A file of another type, or one nested deeper than rulesets/<pack>/, would be neither
    # loaded nor shipped: it is a mistake, not data.
    strays = [
        str(path.relative_to(REPO))
        for path in (REPO / "rulesets").rglob("*")
        if path.is_file()
        and (path.suffix not in RULE_FILE_SUFFIXES or len(path.relative_to(REPO / "rulesets").parts) != 2)
    ]
    assert not strays, f"files under rulesets/ that are not rule files of a pack: {strays}"
