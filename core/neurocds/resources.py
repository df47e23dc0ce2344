"""Locate the data folders (``schemas/``, ``rulesets/``) both in a wheel and in a checkout.

In a wheel the folders sit inside the package (``neurocds/schemas``); in a
source checkout or editable install they sit at the repository's top, two levels
above the package folder (``core/neurocds/`` and ``schemas/``). Nothing here
names a clinical file.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any


def data_dir(package: ModuleType, name: str) -> Path:
    """Return the folder ``name`` shipped with ``package`` (wheel) or at the checkout's top."""
    return data_dir_beside(Path(package.__file__ or "").resolve().parent, name)


def data_dir_beside(here: Path, name: str) -> Path:
    """The folder ``name`` inside the package folder ``here`` (wheel) or two levels up (checkout)."""
    for candidate in (here / name, here.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} not found next to {here}")


def schemas_dir() -> Path:
    # This module sits in the neurocds package folder itself.
    return data_dir_beside(Path(__file__).resolve().parent, "schemas")


@lru_cache(maxsize=32)
def load_schema(filename: str) -> dict[str, Any]:
    """Load one JSON Schema from ``schemas/`` (cached: schemas are read-only data)."""
    with (schemas_dir() / filename).open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema
