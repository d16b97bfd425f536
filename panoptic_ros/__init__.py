"""panoptic_ros: real-time panoptic segmentation for ROS 2.

The core (codec, geometry, backends, fusion, pipeline, replay) is free of ROS imports;
``panoptic_ros.ros.node`` is the thin rclpy adapter. Importing this package loads neither
torch, onnxruntime nor tensorrt: backends import them when they are built.
"""

from __future__ import annotations

from panoptic_ros.config import Config, load_config
from panoptic_ros.errors import (
    BackendError,
    BagError,
    CodecError,
    ConfigError,
    DependencyError,
    EngineError,
    EvaluationError,
    ModelFileError,
    PanopticError,
)
from panoptic_ros.labels import CITYSCAPES, ClassInfo, LabelSpace
from panoptic_ros.results import FrameResult, HeadOutputs, Instance, StageTimings

__version__ = "0.1.0"

__all__ = [
    "CITYSCAPES",
    "BackendError",
    "BagError",
    "ClassInfo",
    "CodecError",
    "Config",
    "ConfigError",
    "DependencyError",
    "EngineError",
    "EvaluationError",
    "FrameResult",
    "HeadOutputs",
    "Instance",
    "LabelSpace",
    "ModelFileError",
    "PanopticError",
    "StageTimings",
    "__version__",
    "load_config",
]
