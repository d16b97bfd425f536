"""The model file contract: tensor names, layouts and the metadata every model carries.

Every model file (ONNX or TensorRT engine) that panoptic_ros runs follows one of two
named contracts:

``heads`` (default)
    input ``image``: uint8 [N, H, W, 3] RGB, H and W multiples of ``size_divisibility``;
    outputs ``semantic_logits`` [N, C, H/4, W/4], ``center_heatmap`` [N, 1, H/4, W/4],
    ``offsets`` [N, 2, H/4, W/4] ((dy, dx) in input pixels), float32 or float16.

``fused`` (fusion folded into the graph)
    input ``image`` as above; outputs ``semantic`` [N, H/4, W/4] int32,
    ``instance`` [N, H/4, W/4] int32 (0 = none, k = row k-1 of the table),
    ``instance_table`` [N, K, 4] float32 rows (class, score, centre row, centre column in
    stride-4 cells), the first ``instance_count`` rows valid, and ``instance_count`` [N]
    int32 (see :mod:`panoptic_ros.export.fused`).

The metadata (JSON, stored as the ONNX ``metadata_props`` entry ``panoptic_ros`` and as
a ``<model>.json`` sidecar beside engines) names the classes, thing/stuff flags, colours,
drivable classes, input size and normalisation, so a model brings its own label space.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panoptic_ros.errors import ModelFileError
from panoptic_ros.labels import LabelSpace

__all__ = [
    "FUSED_OUTPUTS",
    "HEAD_OUTPUTS",
    "INPUT_NAME",
    "METADATA_KEY",
    "OUTPUT_STRIDE",
    "SIZE_DIVISIBILITY",
    "ContractKind",
    "ModelMetadata",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]

INPUT_NAME = "image"
HEAD_OUTPUTS = ("semantic_logits", "center_heatmap", "offsets")
FUSED_OUTPUTS = ("semantic", "instance", "instance_table", "instance_count")
METADATA_KEY = "panoptic_ros"
OUTPUT_STRIDE = 4
SIZE_DIVISIBILITY = 32
FORMAT_VERSION = 1


class ContractKind(str, enum.Enum):
    """Which output contract a model file follows."""

    HEADS = "heads"
    FUSED = "fused"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a model file says about itself.

    Attributes:
        labels: Classes (index = semantic value), thing flags, colours, drivable classes.
        input_hw: Network input (H, W) the model was made for; for a model with a fixed
            input this is the only size it accepts.
        dynamic_input: True when H and W may be any multiple of ``size_divisibility``.
        contract: Which output contract the model follows.
        mean_rgb: Per-channel mean subtracted inside the graph (0..255 scale).
        std_rgb: Per-channel std divided inside the graph (0..255 scale).
        precision: ``fp32``, ``fp16`` (mixed) or ``int8`` (Q/DQ): what the weights are.
        architecture: Free-form description (backbone, channels) for people and rebuilds.
        provenance: Free-form training/export record (data, steps, metrics, checksums).
        max_instances: K, the fixed instance-table size of a fused model (0 otherwise).
    """

    labels: LabelSpace
    input_hw: tuple[int, int]
    dynamic_input: bool = True
    contract: ContractKind = ContractKind.HEADS
    mean_rgb: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std_rgb: tuple[float, float, float] = (128.0, 128.0, 128.0)
    precision: str = "fp32"
    output_stride: int = OUTPUT_STRIDE
    size_divisibility: int = SIZE_DIVISIBILITY
    architecture: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    max_instances: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready metadata document."""
        return {
            "format_version": FORMAT_VERSION,
            "contract": self.contract.value,
            "input_size": list(self.input_hw),
            "dynamic_input": self.dynamic_input,
            "output_stride": self.output_stride,
            "size_divisibility": self.size_divisibility,
            "normalization": {"mean": list(self.mean_rgb), "std": list(self.std_rgb)},
            "precision": self.precision,
            "max_instances": self.max_instances,
            **self.labels.to_dict(),
            "architecture": dict(self.architecture),
            "provenance": dict(self.provenance),
        }

    def to_json(self) -> str:
        """Return :meth:`to_dict` as compact JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metadata") -> ModelMetadata:
        """Parse a metadata document.

        Raises:
            ModelFileError: Missing or malformed fields (the message names ``source``).
        """
        try:
            version = int(data.get("format_version", 0))
            if version != FORMAT_VERSION:
                raise ValueError(f"format_version {version}, this package reads {FORMAT_VERSION}")
            norm = data["normalization"]
            height, width = (int(v) for v in data["input_size"])
            mean = tuple(float(v) for v in norm["mean"])
            std = tuple(float(v) for v in norm["std"])
            if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
                raise ValueError("normalization needs 3 means and 3 positive stds")
            return cls(
                labels=LabelSpace.from_dict(data),
                input_hw=(height, width),
                dynamic_input=bool(data.get("dynamic_input", True)),
                contract=ContractKind(data.get("contract", "heads")),
                mean_rgb=(mean[0], mean[1], mean[2]),
                std_rgb=(std[0], std[1], std[2]),
                precision=str(data.get("precision", "fp32")),
                output_stride=int(data.get("output_stride", OUTPUT_STRIDE)),
                size_divisibility=int(data.get("size_divisibility", SIZE_DIVISIBILITY)),
                architecture=dict(data.get("architecture", {})),
                provenance=dict(data.get("provenance", {})),
                max_instances=int(data.get("max_instances", 0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"{source}: invalid panoptic_ros metadata: {err!s}") from err
        except Exception as err:  # ConfigError from the label space
            if isinstance(err, ModelFileError):
                raise
            raise ModelFileError(f"{source}: invalid panoptic_ros metadata: {err}") from err

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ModelMetadata:
        """Parse :meth:`to_json` output.

        Raises:
            ModelFileError: Not JSON or malformed.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ModelFileError(f"{source}: metadata is not JSON ({err.msg})") from err
        if not isinstance(data, Mapping):
            raise ModelFileError(f"{source}: metadata must be a JSON object")
        return cls.from_dict(data, source)


def sidecar_path(model_path: str | Path) -> Path:
    """Return the metadata sidecar path of a model or engine file (``x.onnx`` -> ``x.json``)."""
    return Path(model_path).with_suffix(".json")


def write_sidecar(model_path: str | Path, metadata: ModelMetadata) -> Path:
    """Write ``metadata`` beside ``model_path``; returns the sidecar path."""
    path = sidecar_path(model_path)
    path.write_text(
        json.dumps(metadata.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


def read_sidecar(model_path: str | Path) -> ModelMetadata:
    """Read the metadata sidecar of ``model_path``.

    Raises:
        ModelFileError: The sidecar is missing or invalid.
    """
    path = sidecar_path(model_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ModelFileError(
            f"model metadata {str(path)!r} is missing ({err.strerror}); every model needs "
            "its metadata"
        ) from err
    return ModelMetadata.from_json(text, str(path))
