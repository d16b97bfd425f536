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
    "DependencyError",
    "EngineError",
    "EvaluationError",
    "ModelFileError",
    "PanopticError",
    "TransformError",
    "first_line",
]


class PanopticError(Exception):
    """Base class of every error panoptic_ros raises on purpose."""


class ConfigError(PanopticError):
    """A configuration file, override or parameter is invalid (names the dotted key)."""


class DependencyError(PanopticError):
    """An optional package a command needs is not installed (names the pip extra to add)."""


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


class TransformError(PanopticError):
    """A transform between two frames is unknown, or not known at the asked time."""


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of an exception's (or a message's) text.

    Foreign libraries (ONNX Runtime, CUDA, YAML parsers) put tracebacks and source excerpts
    into their messages; a log line or a one-line error keeps only the first line. An
    exception without text gives its type's name.
    """
    lines = [line for line in str(err).splitlines() if line.strip()]
    if lines:
        return lines[0].strip()
    return "" if isinstance(err, str) else type(err).__name__
