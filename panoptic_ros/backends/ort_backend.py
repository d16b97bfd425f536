"""ONNX Runtime backend: the CPU default, and CUDA when onnxruntime-gpu is installed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import BackendBase, BackendRequest, resolve_network_hw
from panoptic_ros.contract import (
    FUSED_OUTPUTS,
    HEAD_OUTPUTS,
    INPUT_NAME,
    METADATA_KEY,
    ContractKind,
    ModelMetadata,
)
from panoptic_ros.errors import BackendError, ModelFileError, first_line
from panoptic_ros.results import HeadOutputs

__all__ = ["OnnxRuntimeBackend"]

logger = logging.getLogger(__name__)


def _fixed_hw(shape: list[Any]) -> tuple[int, int] | None:
    """Return (H, W) of an NHWC input shape when both are fixed integers, else None."""
    height, width = shape[1], shape[2]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return (height, width)
    return None


def _check_external_data(model_path: Path) -> None:
    """Refuse external data outside the model's folder before ONNX Runtime reads any.

    Recent ONNX Runtime releases refuse such paths themselves; older ones (still common in
    Jetson wheels) do not. Without the ``onnx`` package the check is left to ONNX Runtime.

    Raises:
        ModelFileError: An external-data location escapes the folder, or the file is not ONNX.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        logger.debug("onnx is not installed; external data paths are checked by onnxruntime")
        return
    from panoptic_ros.export.onnx_export import check_external_data

    check_external_data(model_path)


def _check_class_count(session: Any, metadata: ModelMetadata, model_path: Path) -> None:
    """Refuse a model whose ``semantic_logits`` channels differ from its metadata's classes.

    Raises:
        ModelFileError: The output has a fixed channel count other than the label space's.
    """
    shape = next(o.shape for o in session.get_outputs() if o.name == HEAD_OUTPUTS[0])
    channels = shape[1] if len(shape) == 4 else None
    if isinstance(channels, int) and channels != metadata.labels.num_classes:
        raise ModelFileError(
            f"ONNX model {str(model_path)!r} outputs {channels} classes but its metadata names "
            f"{metadata.labels.num_classes}; re-export it with matching labels"
        )


class OnnxRuntimeBackend(BackendBase):
    """Runs a ``heads``-contract ONNX model with ONNX Runtime.

    Args:
        model_path: The ONNX file; its ``panoptic_ros`` metadata must be embedded.
        network_hw: Network input (H, W); (0, 0) = the model's own.
        device: ``cpu``, ``cuda``/``cuda:N`` (needs onnxruntime-gpu) or ``auto``.
        num_threads: Intra-op threads; 0 = ONNX Runtime's default.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: Path,
        *,
        network_hw: tuple[int, int] = (0, 0),
        device: str = "auto",
        num_threads: int = 0,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError(
                "onnxruntime is not installed; pip install onnxruntime (or panoptic_ros[cpu])"
            ) from err
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.log_severity_level = 3
        available = ort.get_available_providers()
        providers: list[Any] = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in available:
            device_id = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device_id}))
        elif device.startswith("cuda"):
            raise BackendError(
                f"device {device!r} requested but onnxruntime has no CUDA provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use device cpu"
            )
        _check_external_data(model_path)
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFileError(
                f"cannot load ONNX model {str(model_path)!r}: {first_line(err)}"
            ) from err
        meta_map = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta_map:
            raise ModelFileError(
                f"ONNX model {str(model_path)!r} has no '{METADATA_KEY}' metadata; export it with "
                "panoptic-ros export"
            )
        self.metadata: ModelMetadata = ModelMetadata.from_json(
            meta_map[METADATA_KEY], str(model_path)
        )
        self.fused = self.metadata.contract is ContractKind.FUSED
        contract_outputs = FUSED_OUTPUTS if self.fused else HEAD_OUTPUTS
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if [i.name for i in inputs] != [INPUT_NAME] or inputs[0].type != "tensor(uint8)":
            found = [(i.name, i.type) for i in inputs]
            raise ModelFileError(
                f"ONNX model {str(model_path)!r} must take one uint8 input '{INPUT_NAME}', "
                f"found {found}"
            )
        missing = [n for n in contract_outputs if n not in outputs]
        if missing:
            raise ModelFileError(
                f"ONNX model {str(model_path)!r} lacks outputs {missing} of the "
                f"{self.metadata.contract.value} contract (has {outputs})"
            )
        if not self.fused:
            _check_class_count(self._session, self.metadata, model_path)
        self.input_hw = resolve_network_hw(
            self.metadata, network_hw, _fixed_hw(inputs[0].shape), str(model_path)
        )
        self.providers: list[str] = self._session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.model_path = model_path

    @classmethod
    def from_request(cls, request: BackendRequest) -> OnnxRuntimeBackend:
        """Create from a resolved :class:`BackendRequest`."""
        return cls(
            request.model_path,
            network_hw=request.network_hw,
            device=request.device,
            num_threads=request.num_threads,
        )

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        """Run the model on [N, H, W, 3] uint8 RGB inputs of size ``input_hw``.

        Raises:
            BackendError: ONNX Runtime failed at run time.
        """
        try:
            logits, heatmap, offsets = self._session.run(list(HEAD_OUTPUTS), {INPUT_NAME: images})
        except Exception as err:
            raise BackendError(f"onnxruntime inference failed: {first_line(err)}") from err
        return HeadOutputs(
            np.asarray(logits, dtype=np.float32),
            np.asarray(heatmap, dtype=np.float32),
            np.asarray(offsets, dtype=np.float32),
        )

    def infer_fused(self, images: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], ...]:
        """Run a ``fused``-contract model: (semantic, instance, instance_table, count).

        Raises:
            BackendError: ONNX Runtime failed at run time.
        """
        try:
            return tuple(self._session.run(list(FUSED_OUTPUTS), {INPUT_NAME: images}))
        except Exception as err:
            raise BackendError(f"onnxruntime inference failed: {first_line(err)}") from err

    def close(self) -> None:
        """Drop the session."""
        self._session = None
