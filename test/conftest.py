"""Shared fixtures: real recordings from ../shared/data, skips with reasons, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PANOPTIC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings folder; skips the test with the missing path when absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set PANOPTIC_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_bags(shared_data: Path) -> Path:
    """``../shared/data/bags``."""
    return shared_data / "bags"


@pytest.fixture(scope="session")
def shared_images(shared_data: Path) -> Path:
    """``../shared/data/images``."""
    return shared_data / "images"
