"""The error hierarchy of panoptic_ros.

Every error the package raises for bad input is a :class:`PanopticError`, with a message
of one line: what failed, the value or path, and the fix where there is one. Foreign
exceptions (OpenCV, ONNX Runtime, TensorRT, rosbags) are wrapped at the module that calls
them, ``raise ... from err``, so callers catch one family.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BagError",
    "CodecError",
    "ConfigError",
    "EngineError",
    "EvaluationError",
    "ModelFileError",
    "PanopticError",
]


class PanopticError(Exception):
    """Base class of every error panoptic_ros raises on purpose."""


class ConfigError(PanopticError):
    """A configuration file, override or parameter is invalid (names the dotted key)."""


class CodecError(PanopticError):
    """An image message cannot be decoded (encoding, size, step or payload is wrong)."""


class ModelFileError(PanopticError):
    """A model file is missing, unreadable, lacks metadata or breaks the output contract."""


class EngineError(PanopticError):
    """A TensorRT engine is missing, stale, foreign to this device or cannot be built."""


class BackendError(PanopticError):
    """An inference backend is unavailable or failed while running."""


class BagError(PanopticError):
    """A rosbag2 cannot be read or written (corrupt, missing topic, output exists)."""


class EvaluationError(PanopticError):
    """Predictions or ground truth for evaluation are inconsistent or unreadable."""
