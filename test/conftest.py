"""Shared fixtures: real recordings from ../shared/data, skips with reasons, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PANOPTIC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    """Collect every test module except ``*_launch.py`` as a plain module.

    Why: on a ROS 2 machine launch_testing's pytest plugin imports each test module during
    collection to look for ``generate_test_description``. A module-level
    ``pytest.importorskip("torch")`` then raises out of the folder's collection and the whole
    folder is reported as one skip (seen under Jazzy with pytest 7.4 and 9). Only
    ``*_launch.py`` files are launch tests, so only they reach launch_testing's hook.
    """
    if module_path.name.endswith("_launch.py") or module_path.name == "__init__.py":
        return None
    return pytest.Module.from_parent(parent, path=module_path)


def _cuda_missing() -> str | None:
    """Why the ``gpu`` tests cannot run here (None when a CUDA device is present)."""
    try:
        import torch
    except ImportError:
        return "needs a CUDA device: torch is not installed"
    if not torch.cuda.is_available():
        return "needs a CUDA device: torch.cuda.is_available() is False on this machine"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``gpu``-marked test with the reason when there is no CUDA device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    reason = _cuda_missing() if gpu_items else None
    if reason is not None:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


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


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight network exported under the output contract (dynamic size)."""
    torch = pytest.importorskip("torch")
    from panoptic_ros.contract import ModelMetadata
    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.labels import CITYSCAPES
    from panoptic_ros.modeling.network import build_network

    torch.manual_seed(0)
    network = build_network(num_classes=CITYSCAPES.num_classes, fpn_channels=16, head_channels=16)
    metadata = ModelMetadata(labels=CITYSCAPES.with_drivable(["road"]), input_hw=(128, 256))
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.onnx"
    return export_onnx(network.eval(), path, metadata=metadata, input_hw=(128, 256), dynamic=True)
