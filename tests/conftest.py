"""Session-wide test settings."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_rule_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Engines in tests (and the CLI processes they start) cache checked rule files in a
    # folder of this session, never in the user's own ~/.cache.
    os.environ.setdefault("NEUROCDS_CACHE_DIR", str(tmp_path_factory.mktemp("neurocds-cache")))
