"""Locate the files panoptic_ros ships: the default model, the sample bag, config, launch.

They live in the source tree when run from a checkout, under ``<prefix>/share/panoptic_ros``
after ``pip install`` or ``colcon build``. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from panoptic_ros.errors import ModelFileError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "SAMPLE_BAG_NAME",
    "SYNTHETIC_MODEL_NAME",
    "default_engine_cache_dir",
    "default_model_path",
    "find_share_file",
    "sample_bag_path",
    "share_dirs",
    "synthetic_model_path",
]

PACKAGE = "panoptic_ros"
DEFAULT_MODEL_NAME = "panoptic_lite0_real.onnx"
#: The model trained on synthetic scenes only: exact labels on them, for tests and the
#: synthetic evaluation; not for real cameras.
SYNTHETIC_MODEL_NAME = "panoptic_lite0_synthetic.onnx"
SAMPLE_BAG_NAME = "synthetic_street"


def share_dirs() -> list[Path]:
    """Return candidate share folders, most specific first (checkout, ament index, prefix)."""
    candidates = [Path(__file__).resolve().parent.parent]
    try:
        from ament_index_python.packages import (  # type: ignore[import-not-found, unused-ignore]
            PackageNotFoundError,
            get_package_share_directory,
        )

        with contextlib.suppress(PackageNotFoundError):
            candidates.append(Path(get_package_share_directory(PACKAGE)))
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    return [c for c in candidates if c.is_dir()]


def find_share_file(relative: str) -> Path:
    """Return the first existing ``<share>/<relative>``.

    Raises:
        ModelFileError: Not found in any share folder.
    """
    for root in share_dirs():
        path = root / relative
        if path.exists():
            return path
    searched = ", ".join(str(d) for d in share_dirs()) or "(no share folder found)"
    raise ModelFileError(f"bundled file {relative!r} not found; searched {searched}")


def default_model_path() -> Path:
    """Return the bundled default model (ONNX)."""
    return find_share_file(f"models/{DEFAULT_MODEL_NAME}")


def synthetic_model_path() -> Path:
    """Return the bundled model trained on synthetic scenes only (ONNX)."""
    return find_share_file(f"models/{SYNTHETIC_MODEL_NAME}")


def sample_bag_path() -> Path:
    """Return the bundled sample rosbag2 folder (synthetic street frames)."""
    return find_share_file(f"samples/{SAMPLE_BAG_NAME}")


def default_engine_cache_dir() -> Path:
    """Return ``$ROS_HOME/panoptic_ros/engines`` (``~/.ros`` when ROS_HOME is unset)."""
    ros_home = os.environ.get("ROS_HOME") or str(Path.home() / ".ros")
    return Path(ros_home) / PACKAGE / "engines"
