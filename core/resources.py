"""Locate the data folders (``schemas/``, ``rulesets/``) both in a wheel and in a checkout.

In a wheel the folders sit inside the package (``neurocds/schemas``); in a
source checkout or editable install they sit beside the package folder
(``core/`` and ``schemas/`` are siblings). Nothing here names a clinical file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any


def data_dir(package: ModuleType, name: str) -> Path:
    """Return the folder ``name`` shipped with ``package`` (wheel) or beside it (checkout)."""
    here = Path(package.__file__ or "").resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} not found next to {here}")


def schemas_dir() -> Path:
    import neurocds

    return data_dir(neurocds, "schemas")


@lru_cache(maxsize=32)
def load_schema(filename: str) -> dict[str, Any]:
    """Load one JSON Schema from ``schemas/`` (cached: schemas are read-only data)."""
    with (schemas_dir() / filename).open(encoding="utf-8") as fh:
        return json.load(fh)
