"""Static checks in the test suite (CI runs only the README's test command).

mypy --strict checks the package, including node.py against rclpy's real Python sources
(rclpy-intellisense); ruff checks style and lints. Skipped with the reason when the tools
are not installed (they come with the ``dev`` extra).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.linter


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None and not (Path(sys.executable).parent / name).exists():
        pytest.skip(f"{name} is not installed (pip install -e .[dev])")
    return [sys.executable, "-m", name]


def test_mypy_strict(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy's sources (pip install rclpy-intellisense) are needed to check node.py")
    command = [*_tool("mypy"), "--cache-dir", str(tmp_path / "mypy"), "panoptic_ros"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert completed.returncode == 0, completed.stdout[-4000:]


def test_ruff() -> None:
    ruff = _tool("ruff")
    for args in (
        ["check", "panoptic_ros", "test", "launch"],
        ["format", "--check", "panoptic_ros", "test", "launch"],
    ):
        completed = subprocess.run(
            [*ruff, *args], capture_output=True, text=True, cwd=REPO, check=False
        )
        assert completed.returncode == 0, completed.stdout[-4000:]
