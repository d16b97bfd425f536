"""The backend interface and the ``auto`` choice between TensorRT, torch and ONNX Runtime.

A backend takes a batch of uint8 RGB network inputs and returns the three heads of the
model contract (:class:`~panoptic_ros.results.HeadOutputs`). Backends import their runtime
(torch, onnxruntime, tensorrt) only when created, so ``import panoptic_ros`` stays light.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from panoptic_ros.config import BackendConfig, ModelConfig
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import BackendError, ConfigError, ModelFileError
from panoptic_ros.resources import default_model_path
from panoptic_ros.results import HeadOutputs

__all__ = [
    "BACKENDS",
    "BACKEND_ORDER",
    "Backend",
    "BackendBase",
    "BackendRequest",
    "DeviceBackend",
    "FusedBackend",
    "create_backend",
    "cuda_available",
    "resolve_model_path",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Backend(Protocol):
    """What every inference backend offers.

    Attributes:
        name: Backend name (``onnxruntime``, ``torch``, ``tensorrt``).
        device: Where it runs (``cpu``, ``cuda:0``), with the provider where useful.
        metadata: The model's metadata (labels, normalisation, contract).
        input_hw: Network input (H, W) this backend was set up for.
        device_outputs: True when the backend is a :class:`DeviceBackend` whose
            ``infer_tensors`` hands the heads over on the device (torch on CUDA, TensorRT
            with torch-owned memory); the pipeline then fuses there.
        fused: True for a ``fused``-contract model: the backend is a
            :class:`FusedBackend` and only ``infer_fused`` runs it.
    """

    name: str
    device: str
    metadata: ModelMetadata
    input_hw: tuple[int, int]
    device_outputs: bool
    fused: bool

    @property
    def model_path(self) -> Path | None:
        """The file the model was loaded from (None for a network built in memory)."""
        ...

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        """Run the network on [N, H, W, 3] uint8 RGB inputs of size ``input_hw``."""
        ...

    def close(self) -> None:
        """Release runtime resources (sessions, GPU memory); idempotent."""
        ...

    def __enter__(self) -> Self:
        """Return self."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the backend."""
        ...


@runtime_checkable
class DeviceBackend(Backend, Protocol):
    """A backend that can keep the network's heads on the device (see ``device_outputs``)."""

    def infer_tensors(self, images: Any) -> tuple[Any, ...]:
        """Run [N, H, W, 3] uint8 RGB inputs (host array or device tensor) on the device.

        Returns:
            (semantic_logits [N, C, h, w], center_heatmap [N, 1, h, w], offsets
            [N, 2, h, w]) float32 torch tensors on the device, valid after later calls.
        """
        ...


@runtime_checkable
class FusedBackend(Backend, Protocol):
    """A backend that can run a ``fused``-contract model (see ``fused``)."""

    def infer_fused(self, images: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], ...]:
        """Run [N, H, W, 3] uint8 RGB inputs: (semantic, instance, instance_table, count)."""
        ...


class BackendBase(abc.ABC):
    """What the backends share: the capability defaults and use as a context manager.

    A backend sets ``device_outputs`` or ``fused`` (instance or class attribute) only when
    it offers them; :class:`~panoptic_ros.pipeline.PanopticPipeline` checks that such a
    backend really is a :class:`DeviceBackend` or :class:`FusedBackend`.
    """

    device_outputs: bool = False
    fused: bool = False

    @abc.abstractmethod
    def close(self) -> None:
        """Release runtime resources; idempotent."""

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the backend."""
        self.close()


@dataclass(frozen=True, slots=True)
class BackendRequest:
    """Everything a backend factory needs, resolved from the configuration.

    Attributes:
        model_path: The model file (ONNX, or a .safetensors checkpoint for torch).
        network_hw: Requested network input (H, W); (0, 0) = the model's own size.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: Compute precision for backends that choose it (torch autocast).
        num_threads: CPU threads (0 = library default).
        model: The model section (engine paths and rebuild policy for TensorRT).
        backend: The backend section (cuda_graph, gpu_fusion flags).
    """

    model_path: Path
    network_hw: tuple[int, int]
    device: str
    precision: str
    num_threads: int
    model: ModelConfig
    backend: BackendConfig


BackendFactory = Callable[[BackendRequest], Backend]


def _onnxruntime(request: BackendRequest) -> Backend:
    from panoptic_ros.backends.ort_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_request(request)


def _torch(request: BackendRequest) -> Backend:
    from panoptic_ros.backends.torch_backend import TorchBackend

    return TorchBackend.from_request(request)


def _tensorrt(request: BackendRequest) -> Backend:
    from panoptic_ros.backends.trt_backend import TensorRTBackend

    return TensorRTBackend.from_request(request)


#: Name -> factory. ``auto`` tries them in BACKEND_ORDER.
BACKENDS: Mapping[str, BackendFactory] = {
    "tensorrt": _tensorrt,
    "torch": _torch,
    "onnxruntime": _onnxruntime,
}
BACKEND_ORDER: tuple[str, ...] = ("tensorrt", "torch", "onnxruntime")


def resolve_model_path(model: ModelConfig) -> Path:
    """Return the model file to load: the configured one or the bundled default model.

    Raises:
        ModelFileError: The configured file does not exist.
    """
    if not model.model_file_path:
        return default_model_path()
    path = Path(model.model_file_path).expanduser()
    if not path.is_file():
        raise ModelFileError(
            f"model file {str(path)!r} not found; set model.model_file_path to an ONNX model "
            "or leave it empty for the bundled default model"
        )
    return path


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (what ``auto`` checks first)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _auto_candidates(request: BackendRequest) -> list[tuple[str, str]]:
    """Return (backend, reason) in the order ``auto`` tries them, skipping hopeless ones."""
    candidates: list[tuple[str, str]] = []
    wants_gpu = request.device != "cpu"
    if wants_gpu and cuda_available():
        candidates.append(("tensorrt", "CUDA device present"))
        candidates.append(("torch", "CUDA device present"))
    candidates.append(("onnxruntime", "runs everywhere"))
    return candidates


def create_backend(
    model: ModelConfig,
    backend: BackendConfig,
    *,
    factories: Mapping[str, BackendFactory] = BACKENDS,
) -> Backend:
    """Create the configured backend, or the best available one for ``auto``.

    With ``backend.allow_fallback`` a requested backend that cannot start hands over to
    the next in :data:`BACKEND_ORDER`, and the reason is logged; without it, its error is
    raised.

    Raises:
        BackendError: No backend could be created (the message lists each reason).
        ModelFileError: The model file is missing or breaks the contract.
        ConfigError: The configuration names an unknown backend.
    """
    request = BackendRequest(
        model_path=resolve_model_path(model),
        network_hw=(model.network_height, model.network_width),
        device=backend.device,
        precision=backend.precision,
        num_threads=backend.num_threads,
        model=model,
        backend=backend,
    )
    if backend.name == "auto":
        order = _auto_candidates(request)
        fallback = True
    elif backend.name in factories:
        later = BACKEND_ORDER[BACKEND_ORDER.index(backend.name) + 1 :]
        order = [(backend.name, "requested")] + [(n, "fallback") for n in later]
        fallback = backend.allow_fallback
    else:
        raise ConfigError(
            f"backend.name={backend.name!r} must be one of auto, {', '.join(factories)}"
        )
    failures: list[str] = []
    for name, reason in order:
        try:
            created = factories[name](request)
        except (BackendError, ModelFileError) as err:
            # A broken model file is the user's to fix: no other backend will read it better.
            if isinstance(err, ModelFileError) and name == order[-1][0]:
                raise
            failures.append(f"{name}: {err}")
            if not fallback:
                raise
            logger.warning("backend %s unavailable (%s); trying the next one", name, err)
            continue
        logger.info(
            "backend %s on %s chosen (%s); model %s, network input %dx%d",
            created.name,
            created.device,
            reason,
            request.model_path,
            *created.input_hw,
        )
        return created
    raise BackendError("no inference backend could start: " + "; ".join(failures))


def resolve_network_hw(
    metadata: ModelMetadata,
    requested_hw: tuple[int, int],
    fixed_hw: tuple[int, int] | None,
    source: str,
) -> tuple[int, int]:
    """Pick the network input size: the requested one, else the model's own.

    Args:
        metadata: The model's metadata (its ``input_hw`` and size divisibility).
        requested_hw: (H, W) from the configuration; (0, 0) = use the model's.
        fixed_hw: The only size the model file accepts, or None when H, W are dynamic.
        source: The model path, for error messages.

    Raises:
        ConfigError: A size the model cannot take.
    """
    if requested_hw == (0, 0):
        return fixed_hw or metadata.input_hw
    if fixed_hw is not None and requested_hw != fixed_hw:
        raise ConfigError(
            f"model {source!r} has a fixed input of {fixed_hw[0]}x{fixed_hw[1]}; "
            f"model.network_height/width={requested_hw[0]}x{requested_hw[1]} cannot be used "
            "(set them to 0 or export a dynamic model)"
        )
    divisor = metadata.size_divisibility
    if requested_hw[0] % divisor or requested_hw[1] % divisor:
        raise ConfigError(f"network input {requested_hw} must be a multiple of {divisor}")
    return requested_hw
