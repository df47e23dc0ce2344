"""Fixtures: one engine with the test pack, keys, and real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neurocds_packs import BUILTIN_PACKS

from .support import EHR_ISSUER, FIXED_NOW, Keys, Server, TestPack, make_keys, running_server


@pytest.fixture(scope="session")
def engine() -> Any:
    from neurocds import Engine

    return Engine(packs=[*BUILTIN_PACKS, "cds-test"], plugins=[("cds-test", TestPack())])


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="module")
def server(engine: Any, keys: Keys, audit_dir: Path) -> Iterator[Server]:
    """Secured (ES384/RS384 tokens from the test EHR), audited, clock fixed at FIXED_NOW."""
    config = {"issuers": {EHR_ISSUER: str(keys.jwks_path)}, "audit_dir": audit_dir, "clock": lambda: FIXED_NOW}
    with running_server(config, engine) as srv:
        yield srv
