"""Where the shared contract and third-party data live, for every test.

Order: ``NEUROCDS_SHARED_DIR``; a ``shared/`` folder beside the repository (how CI
lays out a fresh clone); ``/work/shared``. A test that needs them fails, never
skips, when none exists: a missing contract must not turn into a green run.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    candidates = [REPO.parent / "shared", Path("/work/shared")]
    if "NEUROCDS_SHARED_DIR" in os.environ:
        candidates.insert(0, Path(os.environ["NEUROCDS_SHARED_DIR"]))
    for candidate in candidates:
        if (candidate / "spec").is_dir():
            return candidate
    raise FileNotFoundError("shared/ (spec and data) not found beside the repository; set NEUROCDS_SHARED_DIR")


SHARED = shared_dir()
SPEC = SHARED / "spec"
DATA = SHARED / "data"
