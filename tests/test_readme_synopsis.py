"""The README's command synopses name every command, subcommand and option the CLI has.

The synopses are what a reader scans to learn what exists; an option added to a command
and not to its synopsis is an option nobody finds. Each synopsis entry (a line starting
``neurocds``, with its indented continuation lines) is checked against the click command
it names: every option must appear in the entry, unless the entry points elsewhere for
the details ("see ..."), or says ``--prefix-* as for CMD`` (those options are then checked
against CMD's entry). A group written ``pack new|lint|show ...`` needs an entry for each
subcommand; one written ``audit ... (verify, list, ...)`` needs each subcommand named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from neurocds.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _block_after(heading: str, first_line: str) -> str:
    """The first fenced block after ``heading`` whose first line starts with ``first_line``."""
    section = README[README.index(heading) :]
    for match in re.finditer(r"```[a-z]*\n(.*?)```", section, re.S):
        if match.group(1).startswith(first_line):
            return match.group(1)
    raise AssertionError(f"no synopsis block starting {first_line!r} under {heading!r}")


def _entries(block: str) -> list[str]:
    entries: list[str] = []
    for line in block.splitlines():
        if line.startswith("neurocds "):
            entries.append(line)
        elif line.startswith(" ") and entries:
            entries[-1] += "\n" + line
    return entries


SYNOPSES = _entries(_block_after("\n## Command line", "neurocds evaluate")) + _entries(
    _block_after("\n### The pack author's kit", "neurocds pack new")
)
CONTEXT = click.Context(main)


def _resolve(entry: str) -> tuple[list[str], click.Command, list[str]]:
    """The command path an entry names, its click command, and the names after a group (``a|b|c``)."""
    path: list[str] = []
    command: click.Command = main
    for word in entry.split()[1:]:
        if not isinstance(command, click.Group):
            break
        names = word.split("|")
        if len(names) > 1 or names[0] not in command.list_commands(CONTEXT):
            return path, command, [n for n in names if n in command.list_commands(CONTEXT)]
        sub = command.get_command(CONTEXT, names[0])
        assert sub is not None
        path.append(names[0])
        command = sub
    return path, command, []


def _named(option: click.Option, text: str) -> bool:
    names = option.opts + option.secondary_opts
    return any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) for name in names)


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _entry_for(path: list[str]) -> str:
    for entry in SYNOPSES:
        found, _, names = _resolve(entry)
        if found == path and not names:
            return entry
    raise AssertionError(f"the README has no synopsis entry for `neurocds {' '.join(path)}`")


@pytest.mark.parametrize("entry", SYNOPSES, ids=lambda e: " ".join(e.split()[:3]))
def test_each_synopsis_names_every_option_of_its_command(entry: str) -> None:
    path, command, names = _resolve(entry)
    if names:  # `pack new|lint|show|guide ...`: each has its own entry
        assert isinstance(command, click.Group) and set(names) == set(command.list_commands(CONTEXT)), entry
        for name in names:
            _entry_for([*path, name])
        return
    if isinstance(command, click.Group):  # `audit ... (verify, list, ...)`
        missing = [n for n in command.list_commands(CONTEXT) if not re.search(rf"\b{re.escape(n)}\b", entry)]
        assert not missing, f"`neurocds {' '.join(path)}` synopsis does not name {missing}"
        return
    if re.search(r"\bsee\b", entry):  # points to the command's own section for the details
        return
    elsewhere = {m.group(1): m.group(2) for m in re.finditer(r"(--[\w-]+)-\* as for ([\w-]+)", entry)}
    for option in _options(command):
        prefix = next((p for p in elsewhere if option.opts[0].startswith(p + "-")), None)
        text = _entry_for([elsewhere[prefix]]) if prefix else entry
        assert _named(option, text), f"`neurocds {' '.join(path)}` synopsis does not show {option.opts[0]}"


def test_every_command_has_a_synopsis() -> None:
    named = {tuple(_resolve(entry)[0][:1]) for entry in SYNOPSES}
    assert {(name,) for name in main.list_commands(CONTEXT)} <= named


def test_the_root_pointer_is_empty_in_json_and_a_slash_in_text() -> None:
    shown = "/: wrong type: expected object (found array [1])"
    assert f"`{shown}` for `[1]`" in README.replace("\n", " ")
    text = CliRunner().invoke(main, ["validate", "-"], input="[1]")
    assert text.exit_code == 2 and f"  {shown}" in text.stderr.splitlines()
    as_json = CliRunner().invoke(main, ["validate", "--format", "json", "-"], input="[1]")
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["errors"][0]["pointer"] == ""
