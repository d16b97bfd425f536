"""PyTorch backend: the training checkpoint run directly, on CPU or CUDA.

On CUDA it runs channels-last, optionally under FP16 autocast, and optionally replays a
captured CUDA graph (fixed input size), which removes the per-kernel launch overhead that
dominates small networks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import BackendBase, BackendRequest, resolve_network_hw
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import BackendError, ModelFileError, first_line
from panoptic_ros.results import HeadOutputs

if TYPE_CHECKING:
    import torch

__all__ = ["TorchBackend", "find_checkpoint"]

logger = logging.getLogger(__name__)


def find_checkpoint(model_path: Path) -> Path:
    """Return the safetensors checkpoint for ``model_path`` (itself, or ``<stem>.safetensors``).

    Raises:
        BackendError: No checkpoint is available (an ONNX file alone cannot run in torch).
    """
    if model_path.suffix == ".safetensors":
        return model_path
    sibling = model_path.with_suffix(".safetensors")
    if sibling.is_file():
        return sibling
    raise BackendError(
        f"the torch backend needs a .safetensors checkpoint; none beside {str(model_path)!r} "
        "(set model.model_file_path to a checkpoint or use backend onnxruntime)"
    )


class TorchBackend(BackendBase):
    """Runs a :class:`~panoptic_ros.modeling.network.PanopticNet` (in memory or a checkpoint).

    Args:
        network: The network; moved to ``device`` and put in eval mode.
        metadata: The model's metadata (labels, input size).
        network_hw: Network input (H, W); (0, 0) = the model's own.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32`` or ``fp16`` (autocast on CUDA; CPU always runs FP32).
        num_threads: CPU threads (0 = torch's default).
        cuda_graph: Capture the forward pass in a CUDA graph at the first call.
        model_path: Where the network came from (for logs), if from a file.
    """

    name = "torch"

    def __init__(
        self,
        network: torch.nn.Module,
        metadata: ModelMetadata,
        *,
        network_hw: tuple[int, int] = (0, 0),
        device: str = "auto",
        precision: str = "fp32",
        num_threads: int = 0,
        cuda_graph: bool = False,
        model_path: Path | None = None,
    ) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch sees no CUDA device")
        if precision == "int8":
            raise BackendError(
                "the torch backend runs fp32 or fp16; int8 needs TensorRT or onnxruntime"
            )
        if num_threads:
            torch.set_num_threads(num_threads)
        self.metadata: ModelMetadata = metadata
        self.input_hw = resolve_network_hw(metadata, network_hw, None, str(model_path or "network"))
        self._torch = torch
        self._device = torch.device(device)
        self.device = str(self._device)
        self._fp16 = precision == "fp16" and self._device.type == "cuda"
        #: infer_tensors() leaves the heads on a GPU, where the pipeline fuses them.
        self.device_outputs = self._device.type == "cuda"
        self._network = network.eval().to(self._device)
        if self._device.type == "cuda":
            self._network = self._network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._use_graph = cuda_graph and self._device.type == "cuda"
        self._graph: Any = None
        self._static_in: torch.Tensor | None = None
        self._static_out: tuple[torch.Tensor, ...] | None = None
        self.model_path = model_path

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, **kwargs: Any) -> TorchBackend:
        """Load a .safetensors checkpoint; ``kwargs`` as for the constructor.

        Raises:
            BackendError: torch is not installed.
            ModelFileError: The checkpoint is missing or invalid.
        """
        try:
            import torch  # noqa: F401
        except ImportError as err:
            raise BackendError("torch is not installed; pip install panoptic_ros[train]") from err
        from panoptic_ros.modeling.checkpoint import load_checkpoint

        network, metadata, _ = load_checkpoint(checkpoint)
        classes = getattr(network, "architecture", {}).get("num_classes")
        if classes is not None and classes != metadata.labels.num_classes:
            raise ModelFileError(
                f"checkpoint {str(checkpoint)!r} outputs {classes} classes but its metadata "
                f"names {metadata.labels.num_classes}; save it again with matching labels"
            )
        return cls(network, metadata, model_path=checkpoint, **kwargs)

    @classmethod
    def from_request(cls, request: BackendRequest) -> TorchBackend:
        """Create from a resolved :class:`BackendRequest`."""
        return cls.from_checkpoint(
            find_checkpoint(request.model_path),
            network_hw=request.network_hw,
            device=request.device,
            precision=request.precision,
            num_threads=request.num_threads,
            cuda_graph=request.backend.cuda_graph,
        )

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch = self._torch
        with torch.autocast("cuda", dtype=torch.float16, enabled=self._fp16):
            outputs = self._network(images)
        return (outputs[0].float(), outputs[1].float(), outputs[2].float())

    def infer_tensors(
        self, images: npt.NDArray[np.uint8] | torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Run the network and keep the outputs on the device (for GPU fusion).

        Args:
            images: [N, H, W, 3] uint8 RGB network inputs, on the host or already on the
                device (a torch tensor).

        Returns:
            (semantic_logits [N,C,h,w], center_heatmap [N,1,h,w], offsets [N,2,h,w]) float32
            tensors on the backend's device.
        """
        torch = self._torch
        try:
            with torch.inference_mode():
                source = (
                    images
                    if isinstance(images, torch.Tensor)
                    else torch.from_numpy(np.ascontiguousarray(images))
                )
                batch = source.to(self._device, non_blocking=True)
                if not self._use_graph:
                    return self._forward(batch)
                if (
                    self._graph is None
                    or self._static_in is None
                    or (self._static_in.shape != batch.shape)
                ):
                    self._capture(batch)
                assert self._static_in is not None
                assert self._static_out is not None
                self._static_in.copy_(batch)
                self._graph.replay()
                return tuple(t.clone() for t in self._static_out)
        except RuntimeError as err:
            raise BackendError(f"torch inference failed: {first_line(err)}") from err

    def _capture(self, batch: torch.Tensor) -> None:
        torch = self._torch
        self._static_in = batch.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up outside the graph (cuDNN autotuning, allocations)
                self._forward(self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._forward(self._static_in)
        logger.info("captured a CUDA graph for input %s", tuple(batch.shape))

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        """Run the network on [N, H, W, 3] uint8 RGB inputs; outputs copied to host."""
        logits, heatmap, offsets = self.infer_tensors(images)
        return HeadOutputs(logits.cpu().numpy(), heatmap.cpu().numpy(), offsets.cpu().numpy())

    def close(self) -> None:
        """Free the network and any captured graph."""
        self._graph = None
        self._static_in = None
        self._static_out = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
