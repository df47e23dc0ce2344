"""This project's tests pin the packs they test, so installing a third-party pack cannot turn them red.

An ``Engine`` built without ``packs=`` (and with entry points on) loads every installed
pack: a third-party one would add rules that no case covers, findings that change card
lists and instruction counts. Every engine in tests/ must name its packs
(``packs=BUILTIN_PACKS``), turn entry points off, or say why not with ``# unpinned: reason``.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def unpinned_engines() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Engine"):
                continue
            keywords = {k.arg for k in node.keywords}
            if "packs" in keywords or "entry_points" in keywords or None in keywords:  # None: **kwargs passed on
                continue
            if "# unpinned:" in lines[node.lineno - 1]:
                continue
            found.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    return found


def test_every_engine_in_the_tests_names_its_packs() -> None:
    unpinned = unpinned_engines()
    assert not unpinned, f"engines that load whatever is installed (add packs=BUILTIN_PACKS): {unpinned}"
