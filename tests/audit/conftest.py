"""Fixtures for the audit tests (helpers live in ``audit_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocds.audit.signing import generate_keypair


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "audit.key", d / "audit.pub")
    return d / "audit.key", d / "audit.pub"


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("otherkeys")
    generate_keypair(d / "other.key", d / "other.pub")
    return d / "other.key", d / "other.pub"
