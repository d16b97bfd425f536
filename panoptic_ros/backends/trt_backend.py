"""TensorRT backend: a cached engine (TensorRT 10.x or 11.x) run asynchronously on a stream.

Tensors are bound by name (the name-based I/O API of TensorRT 10 and 11: ``num_io_tensors``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and checked against the
output contract. Memory and the stream belong to torch when torch with CUDA is installed:
the engine reads the uint8 frame from a torch device tensor and writes the heads into torch
device tensors on torch's current stream, which :meth:`infer_tensors` hands to the GPU
fusion without a host round trip. Without torch, pycuda owns them, on the device's primary
context (``retain_primary_context``; ``pycuda.autoinit`` would create a separate context
that does not mix with other CUDA users in the process), with page-locked host buffers
for the copies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import BackendRequest, resolve_network_hw
from panoptic_ros.contract import HEAD_OUTPUTS, INPUT_NAME, ModelMetadata
from panoptic_ros.errors import BackendError, EngineError, ModelFileError
from panoptic_ros.results import HeadOutputs

__all__ = ["TensorRTBackend"]

logger = logging.getLogger(__name__)


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendError(
            "tensorrt is not installed (pip install panoptic_ros[tensorrt]; on Jetson: JetPack's "
            "python3-libnvinfer)"
        ) from err
    return trt


class _TorchMemory:
    """Device tensors and the current stream from torch."""

    def __init__(self, device_index: int) -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device for the TensorRT backend")
        self.torch = torch
        self.device = torch.device("cuda", device_index)

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        torch_dtype = {
            np.uint8: self.torch.uint8,
            np.float32: self.torch.float32,
            np.float16: self.torch.float16,
            np.int32: self.torch.int32,
        }[dtype]
        return self.torch.empty(shape, dtype=torch_dtype, device=self.device)

    @staticmethod
    def address(tensor: Any) -> int:
        return int(tensor.data_ptr())

    def stream_handle(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def upload(self, target: Any, array: npt.NDArray[Any]) -> None:
        target.copy_(self.torch.from_numpy(array), non_blocking=False)

    def download(self, tensor: Any) -> npt.NDArray[Any]:
        return np.asarray(tensor.float().cpu().numpy())

    def synchronize(self) -> None:
        self.torch.cuda.current_stream(self.device).synchronize()


class _PycudaMemory:
    """Device buffers, page-locked host buffers and a stream from pycuda (primary context)."""

    def __init__(self, device_index: int) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as err:
            raise BackendError("the TensorRT backend needs torch with CUDA or pycuda") from err
        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(device_index).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()
        self._host: dict[int, npt.NDArray[Any]] = {}

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        allocation = self.cuda.mem_alloc(max(size, 1))
        host = self.cuda.pagelocked_empty(shape, dtype)
        self._host[int(allocation)] = host
        return (allocation, shape, dtype)

    @staticmethod
    def address(buffer: Any) -> int:
        return int(buffer[0])

    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def upload(self, target: Any, array: npt.NDArray[Any]) -> None:
        host = self._host[int(target[0])]
        np.copyto(host, array.reshape(host.shape))
        self.cuda.memcpy_htod_async(target[0], host, self.stream)

    def download(self, buffer: Any) -> npt.NDArray[Any]:
        host = self._host[int(buffer[0])]
        self.cuda.memcpy_dtoh_async(host, buffer[0], self.stream)
        self.stream.synchronize()
        return np.asarray(host, dtype=np.float32).copy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context.pop()


class TensorRTBackend:
    """Runs a serialized TensorRT engine under the output contract.

    Args:
        engine_path: The plan file.
        metadata: The model's metadata (from the ONNX the engine was built from).
        input_hw: Network input size the engine was built for.
        device_index: CUDA device.
    """

    name = "tensorrt"

    def __init__(
        self,
        engine_path: Path,
        metadata: ModelMetadata,
        input_hw: tuple[int, int],
        *,
        device_index: int = 0,
    ) -> None:
        trt = _import_tensorrt()
        self.metadata = metadata
        self.input_hw = input_hw
        self.model_path = engine_path
        self.device = f"cuda:{device_index}"
        try:
            self._memory: Any = _TorchMemory(device_index)
        except (ImportError, BackendError):
            self._memory = _PycudaMemory(device_index)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        try:
            data = Path(engine_path).read_bytes()
        except OSError as err:
            raise EngineError(f"cannot read engine {engine_path}: {err.strerror}") from err
        self._engine = runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineError(
                f"engine {engine_path} does not deserialize (truncated, or built for another "
                "TensorRT version or GPU); rebuild it with panoptic-ros build-engine"
            )
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = [INPUT_NAME, *HEAD_OUTPUTS]
        if sorted(names) != sorted(expected):
            raise EngineError(
                f"engine {engine_path} has tensors {names}; the contract needs {expected}"
            )
        if self._engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise EngineError(f"engine {engine_path}: 'image' is not an input")
        channels = int(self._engine.get_tensor_shape(HEAD_OUTPUTS[0])[1])  # -1 when dynamic
        if channels > 0 and channels != metadata.labels.num_classes:
            raise ModelFileError(
                f"engine {engine_path} outputs {channels} classes but the model's metadata "
                f"names {metadata.labels.num_classes}; re-export the model with matching labels"
            )
        self._context = self._engine.create_execution_context()
        self._trt = trt
        self._buffers: dict[str, Any] = {}
        self._batch_shape: tuple[int, ...] | None = None

    @classmethod
    def from_request(cls, request: BackendRequest) -> TensorRTBackend:
        """Find or build the engine for the requested ONNX model on this GPU, then load it."""
        from panoptic_ros.export.engine import ensure_engine
        from panoptic_ros.export.onnx_export import read_onnx_metadata
        from panoptic_ros.resources import default_engine_cache_dir

        _import_tensorrt()
        metadata = read_onnx_metadata(request.model_path)
        input_hw = resolve_network_hw(metadata, request.network_hw, None, str(request.model_path))
        cache_dir = Path(request.model.engine_cache_dir or default_engine_cache_dir())
        index = int(request.device.split(":")[1]) if ":" in request.device else 0
        engine_path, _ = ensure_engine(
            request.model_path,
            metadata=metadata,
            input_hw=input_hw,
            cache_dir=cache_dir,
            engine_path=Path(request.model.engine_file_path)
            if request.model.engine_file_path
            else None,
            allow_build=request.model.allow_engine_build,
            force=request.model.force_engine_update,
            fp16_flag=request.precision == "fp16" and metadata.precision == "fp32",
        )
        return cls(engine_path, metadata, input_hw, device_index=index)

    def _bind(self, batch_shape: tuple[int, ...]) -> None:
        """(Re)allocate I/O for a batch shape and give TensorRT the addresses."""
        trt = self._trt
        self._context.set_input_shape(INPUT_NAME, batch_shape)
        self._buffers = {INPUT_NAME: self._memory.empty(batch_shape, np.uint8)}
        for name in HEAD_OUTPUTS:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = (
                np.float16
                if self._engine.get_tensor_dtype(name) == trt.DataType.HALF
                else np.float32
            )
            self._buffers[name] = self._memory.empty(shape, dtype)
        for name, buffer in self._buffers.items():
            self._context.set_tensor_address(name, self._memory.address(buffer))
        self._batch_shape = batch_shape

    def _run(self, images: npt.NDArray[np.uint8]) -> None:
        batch = np.ascontiguousarray(images)
        if batch.shape != self._batch_shape:
            self._bind(tuple(batch.shape))
        self._memory.upload(self._buffers[INPUT_NAME], batch)
        if not self._context.execute_async_v3(self._memory.stream_handle()):
            raise BackendError("TensorRT execution failed (see the TensorRT log)")

    def infer_tensors(self, images: npt.NDArray[np.uint8]) -> tuple[Any, ...]:
        """Run and keep the heads on the device (torch tensors; needs torch)."""
        if not isinstance(self._memory, _TorchMemory):
            raise BackendError("device outputs need torch with CUDA; use infer()")
        self._run(images)
        return tuple(self._buffers[name].float() for name in HEAD_OUTPUTS)

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        """Run [N, H, W, 3] uint8 RGB inputs; heads copied to the host as float32."""
        self._run(images)
        outputs = [self._memory.download(self._buffers[name]) for name in HEAD_OUTPUTS]
        return HeadOutputs(*outputs)

    def close(self) -> None:
        """Release the context and buffers."""
        self._buffers = {}
        self._context = None
        if isinstance(self._memory, _PycudaMemory):
            self._memory.close()

    def __enter__(self) -> TensorRTBackend:
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
