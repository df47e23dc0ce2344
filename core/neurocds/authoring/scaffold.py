"""``neurocds pack new``: write a pip-installable rule-pack distribution from templates.

The templates (``templates/*.tmpl``, shipped with neurocds) are filled with
:class:`string.Template`: a standard-library substitution is all a dozen files
need, and it keeps a template-engine dependency out of every install. The result
lints clean, and its pytest run (two case files, five cases) covers 100 % of its
example rule's condition outcomes.
"""

from __future__ import annotations

import datetime as dt
import keyword
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template

from neurocds.errors import NeurocdsError

PACK_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
NAMESPACE = re.compile(r"^[a-z][a-z0-9_]*$")
FOUNDATION = "weakness-pattern"

# Template -> where it goes in the new distribution ({module} is the import name).
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "plugin.py.tmpl": "src/{module}/__init__.py",
    "rules.yaml.tmpl": "src/{module}/rules/{name}.yaml",
    "pack.yaml.tmpl": "src/{module}/rules/pack.yaml",
    "fires.case.yaml.tmpl": "tests/cases/fires.case.yaml",
    "silent.case.yaml.tmpl": "tests/cases/silent.case.yaml",
    "test_pack.py.tmpl": "tests/test_pack.py",
}


class ScaffoldError(NeurocdsError):
    """The pack cannot be written: a bad name, or the target folder is not empty."""


def scaffold(
    name: str,
    namespace: str,
    target: Path,
    *,
    depends_on: Sequence[str] = (),
    developer: str = "TODO: your name or organisation",
    contact: str = "TODO: e-mail or issue tracker URL",
    funding: str = "none declared",
    today: dt.date | None = None,
) -> list[Path]:
    """Write the distribution for pack ``name`` into ``target`` (created; must be empty). Returns the files."""
    if not PACK_NAME.match(name) or len(name) > 64:
        raise ScaffoldError(f"pack name {name!r} must be lower-case words joined by '-' (like 'b12-deficiency')")
    if not NAMESPACE.match(namespace) or keyword.iskeyword(namespace):
        raise ScaffoldError(f"namespace {namespace!r} must be a lower-case identifier (like 'b12')")
    for dep in depends_on:
        if not PACK_NAME.match(dep):
            raise ScaffoldError(f"--depends-on {dep!r} is not a pack name")
    if target.exists() and any(target.iterdir()):
        raise ScaffoldError(f"{target} exists and is not empty; choose a new folder")
    module = name.replace("-", "_")
    deps = tuple(dict.fromkeys(depends_on))
    templates = resources.files("neurocds.authoring") / "templates"
    # The example's first condition is data too (core names no clinical field): on the
    # foundation pack's derived fact when the pack builds on it, else on a fact.
    first = templates.joinpath(
        "condition-foundation.tmpl" if FOUNDATION in deps else "condition-standalone.tmpl"
    ).read_text(encoding="utf-8")
    values = {
        "name": name,
        "namespace": namespace,
        "module": module,
        "dist": f"neurocds-pack-{name}",
        "version": "0.1.0",
        "title": f"The {name} rule pack.",
        "depends_py": repr(deps),
        "depends_text": f", depends on {', '.join(deps)}" if deps else "",
        "packs_csv": ",".join([*deps, name]),
        "first_condition": first,
        "today": (today or dt.date.today()).isoformat(),
        "developer": developer.replace('"', "'"),
        "contact": contact.replace('"', "'"),
        "funding": funding.replace('"', "'"),
    }
    written = []
    for template, where in LAYOUT.items():
        path = target / where.format(module=module, name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    (target / "src" / module / "py.typed").write_text("", encoding="utf-8")
    return written
