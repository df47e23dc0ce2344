"""The layout is the pipeline: each folder is one stage, and a stage imports only itself and what lies below.

Every import in ``core/neurocds`` and ``plugins/neurocds_packs`` is read from the
source (module level, inside functions and under ``TYPE_CHECKING`` alike: a lazy
import is still a dependency) and checked against ``LAYERS``. Siblings on one
layer may not import each other. A new module must be given a layer here, so
nobody adds one without deciding where it sits.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"neurocds": REPO / "core" / "neurocds", "neurocds_packs": REPO / "plugins" / "neurocds_packs"}

# Bottom first. Each layer is a list of sibling groups; a module belongs to the
# group whose name is its longest matching prefix.
LAYERS: list[list[str]] = [
    ["neurocds.errors", "neurocds.resources", "neurocds.hookspecs", "neurocds.version", "neurocds.installed"],
    ["neurocds.facts"],
    ["neurocds.rules"],
    ["neurocds.backends"],
    ["neurocds.explain"],
    ["neurocds.audit", "neurocds.fhir"],
    ["neurocds.engine", "neurocds.result", "neurocds.testing", "neurocds"],
    ["neurocds.authoring"],
    ["neurocds.replay", "neurocds.cdshooks", "neurocds.population"],
    ["neurocds.cli"],
    ["neurocds.__main__"],
]
# The base modules are the foundation of one another: hookspecs names errors, for example.
SHARED_GROUPS = {0, 6}
# Packs are plugins: they see only what a third-party pack sees.
PACK_API = {"neurocds.hookspecs", "neurocds.resources", "neurocds.testing"}


def module_name(path: Path, package: str, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def imports_of(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from neurocds import hookspecs` imports the submodule, not the facade.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                yield node.lineno, candidate if resolves(candidate) else target


def resolves(name: str) -> bool:
    package, _, rest = name.partition(".")
    root = ROOTS.get(package)
    if root is None or not rest:
        return False
    path = root.joinpath(*rest.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def group_of(module: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best[1])):
                best = (rank, group)
    return best


def all_modules() -> Iterator[tuple[Path, str]]:
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            yield path, module_name(path, package, root)


def violations() -> list[str]:
    found = []
    for path, module in all_modules():
        where = group_of(module) if module.startswith("neurocds.") or module == "neurocds" else None
        for line, target in imports_of(path, module):
            if not (target == "neurocds" or target.startswith(("neurocds.", "neurocds_packs"))):
                continue
            place = f"{path.relative_to(REPO)}:{line}: {module} imports {target}"
            if module.startswith("neurocds_packs"):
                if target.startswith("neurocds.") and not any(
                    target == api or target.startswith(api + ".") for api in PACK_API
                ):
                    found.append(f"{place} (a pack may import only {sorted(PACK_API)})")
                continue
            if target.startswith("neurocds_packs"):
                found.append(f"{place} (core never imports the plugins)")
                continue
            assert where is not None, module
            theirs = group_of(target)
            if theirs is None:
                found.append(f"{place} (no layer for {target})")
            elif theirs[0] > where[0]:
                found.append(f"{place} (layer {where[1]} may not import the higher {theirs[1]})")
            elif theirs[0] == where[0] and theirs[1] != where[1] and where[0] not in SHARED_GROUPS:
                found.append(f"{place} (siblings {where[1]} and {theirs[1]} are independent)")
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = [m for _, m in all_modules() if m.startswith("neurocds.") and group_of(m) is None]
    assert not unplaced, f"give these modules a layer in tests/test_layout.py: {unplaced}"


def test_no_stage_imports_a_higher_one() -> None:
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a facts module importing the engine, and core importing a pack, are caught."""
    core = tmp_path / "core" / "neurocds"
    (core / "facts").mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "engine.py").write_text("")
    (core / "facts" / "__init__.py").write_text("")
    (core / "facts" / "bad.py").write_text("def f():\n    from neurocds.engine import Engine\n")
    (core / "audit").mkdir()
    (core / "audit" / "__init__.py").write_text("from ..fhir import x\nimport neurocds_packs.thing\n")
    (core / "fhir").mkdir()
    (core / "fhir" / "__init__.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setitem(ROOTS, "neurocds", core)
    monkeypatch.setitem(ROOTS, "neurocds_packs", tmp_path / "plugins" / "none")
    found = violations()
    assert any("neurocds.facts.bad imports neurocds.engine" in v and "higher" in v for v in found), found
    assert any("neurocds.audit imports neurocds.fhir" in v and "independent" in v for v in found), found
    assert any("imports neurocds_packs.thing" in v and "never imports the plugins" in v for v in found), found


def test_every_package_says_what_it_is_for_and_may_import() -> None:
    for path, module in all_modules():
        if path.name != "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if module in ("neurocds.schemas", "neurocds_packs.rulesets"):
            continue
        assert doc, f"{module} has no docstring"
        if module != "neurocds":
            assert "may import" in doc.lower(), f"{module}'s docstring does not say what it may import"


def test_pyproject_ships_every_package_folder() -> None:
    with (REPO / "pyproject.toml").open("rb") as fh:
        listed = set(tomllib.load(fh)["tool"]["setuptools"]["packages"])
    folders = {m for path, m in all_modules() if path.name == "__init__.py"}
    assert folders - listed == set(), "package folders missing from pyproject.toml [tool.setuptools] packages"
