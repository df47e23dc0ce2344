"""The README's transcripts of kit commands are what those commands print today.

A transcript that drifts (a count of ignores, a coverage table) misleads a pack author
more than no transcript: each ``$ neurocds ...`` block the README shows for a command
that needs no files of its own is run here and compared line by line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
# Commands whose whole output the README quotes, and that read only the installed packs.
SELF_CONTAINED = ("neurocds pack lint",)


def fenced_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced block, fences paired in order (an opener may name a language)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def transcripts(text: str) -> dict[str, list[str]]:
    """Each fenced block that is one ``$ COMMAND`` and its output: the command and the lines shown."""
    found: dict[str, list[str]] = {}
    for lines in fenced_blocks(text):
        if len(lines) > 1 and lines[0].startswith("$ ") and not any(x.startswith("$ ") for x in lines[1:]):
            found[lines[0][2:]] = lines[1:]
    return found


def test_the_parser_finds_the_lint_transcript() -> None:
    assert "neurocds pack lint" in transcripts(README)


@pytest.mark.parametrize("command", SELF_CONTAINED)
def test_transcript_matches_the_command(command: str) -> None:
    shown = transcripts(README)[command]
    args = command.split()[1:]
    run = subprocess.run(
        [sys.executable, "-m", "neurocds", *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False
    )
    assert run.stdout.rstrip("\n").split("\n") == shown, f"README shows {shown}, `{command}` printed {run.stdout!r}"
