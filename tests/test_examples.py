"""The README's table of clinical examples is true: each example is valid and fires what the table says.

The section "Clinical packs and examples" of README.md lists, per pack, a facts file
in examples/ and the finding ids (with their urgency where given in parentheses) or
derived facts it shows. Both are read from the README itself, so the table cannot
drift from what the packs do; every examples/*.json must be in it, with a command.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Clinical packs and examples"
PACKS = ("weakness-pattern", "spinal-compression", "neuromuscular", "cerebrovascular", "treatment-expectation")
# A backticked id, optionally followed by "(urgency" as in "(emergency)" or "(emergency: potassium 2.3 mmol/L)".
SHOWN = re.compile(r"`((?:pattern|spinal|neuromuscular|cerebrovascular|treatment)\.[a-z0-9_.]+)`(?:\s*\((\w+))?")
URGENCIES = {"emergency", "urgent", "routine", "info"}


def readme_section(text: str) -> str:
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else None]


def parse_table(section: str) -> list[tuple[str, str, dict[str, str | None]]]:
    """(pack, example path, {id shown: urgency or None}) per table row.

    An urgency in parentheses after an id applies to it; "(all info)" at the end of a
    row applies to every id of the row that has none of its own.
    """
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] not in PACKS:
            continue
        example = re.fullmatch(r"`(examples/[^`]+\.json)`", cells[1])
        assert example, f"example cell is not a backticked examples/*.json path: {cells[1]!r}"
        shown: dict[str, str | None] = {}
        for match in SHOWN.finditer(cells[2]):
            urgency = match.group(2)
            shown[match.group(1)] = urgency if urgency in URGENCIES else None
        all_of = re.search(r"\(all (\w+)\)\s*$", cells[2])
        if all_of and all_of.group(1) in URGENCIES:
            shown = {k: v or all_of.group(1) for k, v in shown.items()}
        rows.append((cells[0], example.group(1), shown))
    return rows


ROWS = parse_table(readme_section((REPO / "README.md").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(packs=BUILTIN_PACKS)


def test_table_parser_reads_ids_urgencies_and_all_suffix() -> None:
    section = (
        f"{SECTION}\n\n| pack | example | what it shows |\n|---|---|---|\n"
        "| neuromuscular | `examples/k.json` | `neuromuscular.electrolyte_imbalance` (emergency: K 2.3), "
        "`neuromuscular.generalized_weakness` |\n"
        "| treatment-expectation | `examples/t.json` | `treatment.cause_directed_plan`, derived "
        "`pattern.leg_weakness` (all info) |\n\n## Next\n| spinal-compression | `examples/x.json` | `spinal.a` |\n"
    )
    assert parse_table(readme_section(section)) == [
        (
            "neuromuscular",
            "examples/k.json",
            {"neuromuscular.electrolyte_imbalance": "emergency", "neuromuscular.generalized_weakness": None},
        ),
        (
            "treatment-expectation",
            "examples/t.json",
            {"treatment.cause_directed_plan": "info", "pattern.leg_weakness": "info"},
        ),
    ]


def test_every_pack_and_every_example_file_is_in_the_table() -> None:
    assert {pack for pack, _, _ in ROWS} == set(PACKS)
    listed = {example for _, example, _ in ROWS}
    on_disk = {f"examples/{p.name}" for p in (REPO / "examples").glob("*.json")}
    assert listed == on_disk, f"examples not in the README table: {sorted(on_disk - listed)}"
    section = readme_section((REPO / "README.md").read_text(encoding="utf-8"))
    no_command = [e for e in sorted(listed) if f"neurocds evaluate {e}" not in section]
    assert not no_command, f"examples without a command to run them in the README: {no_command}"


@pytest.mark.parametrize(("pack", "example", "shown"), ROWS, ids=[f"{r[0]}:{r[1]}" for r in ROWS])
def test_example_fires_what_the_readme_says(pack: str, example: str, shown: dict[str, Any], engine: Engine) -> None:
    assert shown, f"the README row for {example} names nothing it shows"
    result = engine.evaluate((REPO / example).read_bytes())  # raises on a document facts-v1 rejects
    assert result.errors == [] and result.complete
    derived = {name for name, value in result.derived.items() if value is not False}
    for item, urgency in shown.items():
        if item.startswith("pattern."):
            assert item in derived, f"{example}: derived {item} not concluded; got {sorted(derived)}"
            continue
        finding = result.finding(item)
        assert finding is not None, f"{example}: {item} did not fire; fired {result.finding_ids}"
        assert urgency is None or finding["urgency"] == urgency, f"{example}: {item} is {finding['urgency']}"
    # The row's pack must be what the example illustrates: some id it names belongs to that pack.
    prefix = {"weakness-pattern": "pattern.", "spinal-compression": "spinal.", "treatment-expectation": "treatment."}
    assert any(item.startswith(prefix.get(pack, f"{pack}.")) for item in shown)
