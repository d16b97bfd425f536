"""TensorRT backend: a cached engine (TensorRT 10.x or 11.x) run asynchronously on a stream.

Tensors are bound by name (the name-based I/O API of TensorRT 10 and 11: ``num_io_tensors``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) and checked against the
model's output contract (``heads``, or ``fused`` with the fusion in the graph). Memory and
the stream belong to torch when torch with CUDA is installed: host frames are uploaded
through a page-locked staging buffer, frames already on the device (the GPU letterbox's
output) are copied device to device, and the engine writes the heads into torch device
tensors on torch's current stream; :meth:`TensorRTBackend.infer_tensors` hands copies of
them to the GPU fusion without a host round trip. Without torch, pycuda owns them, on the
device's primary context (``retain_primary_context``; ``pycuda.autoinit`` would create a
separate context that does not mix with other CUDA users in the process), with page-locked
host buffers for the copies.
"""

from __future__ import annotations

import hashlib
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
    ContractKind,
    ModelMetadata,
)
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
    """Buffers and the current stream from torch, with page-locked staging for host copies.

    TensorRT reads and writes device memory, so ``device`` is a CUDA device whenever a real
    TensorRT runs; the copies themselves work on any torch device (the tests stand CPU
    tensors in for device memory). Host arrays go through a pinned staging buffer, so the
    upload is an asynchronous DMA on torch's current stream; torch tensors already on the
    device are copied device to device into the engine's input buffer.

    Args:
        device: torch device of the buffers (``cuda:N``).

    Raises:
        BackendError: A CUDA device is asked for and torch sees none.
    """

    #: infer_tensors() can hand device tensors to the caller.
    device_tensors = True

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        if self._cuda and not torch.cuda.is_available():
            raise BackendError("torch sees no CUDA device for the TensorRT backend")
        self._staging: dict[str, Any] = {}
        self._upload_done: Any = None

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        """A device tensor of ``shape`` and NumPy ``dtype``."""
        return self.torch.empty(shape, dtype=self._torch_dtype(dtype), device=self.device)

    def _torch_dtype(self, dtype: npt.DTypeLike) -> Any:
        torch = self.torch
        table = {
            np.dtype(np.uint8): torch.uint8,
            np.dtype(np.int8): torch.int8,
            np.dtype(np.int32): torch.int32,
            np.dtype(np.int64): torch.int64,
            np.dtype(np.float16): torch.float16,
            np.dtype(np.float32): torch.float32,
            np.dtype(np.bool_): torch.bool,
        }
        try:
            return table[np.dtype(dtype)]
        except KeyError as err:
            raise BackendError(f"engine tensor type {np.dtype(dtype)} is not supported") from err

    @staticmethod
    def address(tensor: Any) -> int:
        """Raw device address of a buffer."""
        return int(tensor.data_ptr())

    def stream_handle(self) -> int:
        """The current torch stream on the device (0, the default stream, off CUDA)."""
        if not self._cuda:
            return 0
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def _stage(self, name: str, like: Any) -> Any:
        """The (pinned on CUDA) host buffer for copies of ``like``, reused per tensor name."""
        buffer = self._staging.get(name)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self.torch.empty(like.shape, dtype=like.dtype, pin_memory=self._cuda)
            self._staging[name] = buffer
        return buffer

    def upload(self, target: Any, images: Any) -> None:
        """Copy [N, H, W, 3] uint8 inputs (NumPy on the host or a torch tensor) into ``target``."""
        torch = self.torch
        if isinstance(images, torch.Tensor):
            # Already a tensor (normally on the device): one copy on the current stream.
            target.copy_(images, non_blocking=True)
            return
        staging = self._stage(INPUT_NAME, target)
        if self._upload_done is not None:
            self._upload_done.synchronize()  # the previous frame's DMA has left the buffer
        np.copyto(staging.numpy(), images, casting="no")
        target.copy_(staging, non_blocking=self._cuda)
        if self._cuda:
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            self._upload_done = done

    def download(self, name: str, tensor: Any) -> npt.NDArray[Any]:
        """A host copy of a device buffer, in its own dtype (valid after the next run)."""
        staging = self._stage(name, tensor)
        staging.copy_(tensor, non_blocking=self._cuda)
        self.synchronize()
        return np.array(staging.numpy(), copy=True)

    def detach(self, tensor: Any) -> Any:
        """A float32 device copy that the next run does not overwrite."""
        return tensor.to(self.torch.float32, copy=True)

    def synchronize(self) -> None:
        """Wait for the work queued on the stream."""
        if self._cuda:
            self.torch.cuda.current_stream(self.device).synchronize()


class _PycudaMemory:
    """Device buffers, page-locked host buffers and a stream from pycuda (primary context).

    Without torch nothing outside the backend can use device memory, so outputs always come
    back to the host (:meth:`TensorRTBackend.infer`).
    """

    device_tensors = False

    def __init__(self, device_index: int) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as err:
            raise BackendError("the TensorRT backend needs torch with CUDA or pycuda") from err
        cuda.init()
        self.cuda = cuda
        self.device = f"cuda:{device_index}"
        self.context = cuda.Device(device_index).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()
        self._host: dict[int, npt.NDArray[Any]] = {}

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        """A device allocation with its page-locked host twin."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        allocation = self.cuda.mem_alloc(max(size, 1))
        host = self.cuda.pagelocked_empty(shape, dtype)
        self._host[int(allocation)] = host
        return (allocation, shape, dtype)

    @staticmethod
    def address(buffer: Any) -> int:
        """Raw device address of a buffer."""
        return int(buffer[0])

    def stream_handle(self) -> int:
        """The backend's own stream."""
        return int(self.stream.handle)

    def upload(self, target: Any, images: Any) -> None:
        """Copy host inputs into the device buffer through its page-locked twin."""
        if not isinstance(images, np.ndarray):
            raise BackendError(
                f"the pycuda TensorRT backend takes NumPy inputs, not {type(images).__name__}; "
                "install torch with CUDA for device inputs"
            )
        host = self._host[int(target[0])]
        np.copyto(host, images.reshape(host.shape))
        self.cuda.memcpy_htod_async(target[0], host, self.stream)

    def download(self, name: str, buffer: Any) -> npt.NDArray[Any]:
        """A host copy of a device buffer, in its own dtype."""
        host = self._host[int(buffer[0])]
        self.cuda.memcpy_dtoh_async(host, buffer[0], self.stream)
        self.stream.synchronize()
        return np.array(host, copy=True)

    def detach(self, buffer: Any) -> Any:
        """Device outputs need torch."""
        raise BackendError("device outputs need torch with CUDA; use infer()")

    def synchronize(self) -> None:
        """Wait for the backend's stream."""
        self.stream.synchronize()

    def close(self) -> None:
        """Leave the primary context."""
        self.context.pop()


def _check_images(images: Any) -> tuple[int, ...]:
    """The shape of a [N, H, W, 3] uint8 batch (NumPy or torch).

    Raises:
        BackendError: Another rank, channel count or dtype.
    """
    shape = tuple(int(v) for v in images.shape)
    if len(shape) != 4 or shape[3] != 3 or str(images.dtype) not in ("uint8", "torch.uint8"):
        raise BackendError(
            f"TensorRT input must be [N, H, W, 3] uint8 RGB, got {shape} {images.dtype}"
        )
    return shape


class TensorRTBackend(BackendBase):
    """Runs a serialized TensorRT engine under the ``heads`` or ``fused`` output contract.

    Args:
        engine_path: The plan file.
        metadata: The model's metadata (from the ONNX the engine was built from); its
            contract decides which outputs the engine must have.
        input_hw: Network input size the engine was built for.
        device: CUDA device of the buffers (``cuda:N``).
        dla_core: DLA core the engine was built for (-1 = GPU); the runtime must be told.
        plan_sha256: SHA-256 of the plan from its engine record; the bytes read are checked
            against it before they are deserialised (None = not checked).

    Raises:
        BackendError: tensorrt, torch/pycuda or the GPU is missing.
        EngineError: The plan is unreadable, is not the one its record describes, does not
            deserialise or breaks the contract.
        ModelFileError: The engine's class count differs from the metadata's.
    """

    name = "tensorrt"

    def __init__(
        self,
        engine_path: Path,
        metadata: ModelMetadata,
        input_hw: tuple[int, int],
        *,
        device: str = "cuda:0",
        dla_core: int = -1,
        plan_sha256: str | None = None,
    ) -> None:
        trt = _import_tensorrt()
        self.metadata = metadata
        self.input_hw = input_hw
        self.model_path = engine_path
        self.fused = metadata.contract is ContractKind.FUSED
        try:
            self._memory: Any = _TorchMemory(device)
        except (ImportError, BackendError):
            index = int(device.split(":")[1]) if ":" in device else 0
            self._memory = _PycudaMemory(index)
        self.device = str(self._memory.device)
        #: infer_tensors() hands device tensors (torch owns the memory; heads contract).
        self.device_outputs = bool(self._memory.device_tensors) and not self.fused
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core >= 0:
            runtime.DLA_core = dla_core  # the core a deserialised DLA engine executes on
        try:
            data = Path(engine_path).read_bytes()
        except OSError as err:
            raise EngineError(f"cannot read engine {engine_path}: {err.strerror}") from err
        if plan_sha256 is not None and hashlib.sha256(data).hexdigest() != plan_sha256:
            raise EngineError(
                f"engine {engine_path} does not match the SHA-256 of its record (replaced or "
                "corrupted); rebuild it with panoptic-ros build-engine --force"
            )
        self._engine = runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineError(
                f"engine {engine_path} does not deserialize (truncated, or built for another "
                "TensorRT version or GPU); rebuild it with panoptic-ros build-engine"
            )
        self._outputs = FUSED_OUTPUTS if self.fused else HEAD_OUTPUTS
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = [INPUT_NAME, *self._outputs]
        if sorted(names) != sorted(expected):
            raise EngineError(
                f"engine {engine_path} has tensors {names}; the {metadata.contract.value} "
                f"contract needs {expected}"
            )
        if self._engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise EngineError(f"engine {engine_path}: 'image' is not an input")
        if not self.fused:
            channels = int(self._engine.get_tensor_shape(HEAD_OUTPUTS[0])[1])  # -1 if dynamic
            if channels > 0 and channels != metadata.labels.num_classes:
                raise ModelFileError(
                    f"engine {engine_path} outputs {channels} classes but the model's metadata "
                    f"names {metadata.labels.num_classes}; re-export the model with matching "
                    "labels"
                )
        self._context = self._engine.create_execution_context()
        self._trt = trt
        self._buffers: dict[str, Any] = {}
        self._batch_shape: tuple[int, ...] | None = None

    @classmethod
    def from_request(cls, request: BackendRequest) -> TensorRTBackend:
        """Find or build the engine for the requested ONNX model on this GPU, then load it.

        Raises:
            BackendError: tensorrt is missing, or the configured device is not a GPU.
            EngineError: The engine is stale and may not be rebuilt, or building failed.
        """
        from panoptic_ros.export.engine import current_device, ensure_engine
        from panoptic_ros.export.onnx_export import read_onnx_metadata
        from panoptic_ros.resources import default_engine_cache_dir

        _import_tensorrt()
        if request.device == "cpu":
            raise BackendError(
                "TensorRT runs on a CUDA device, not backend.device='cpu'; set backend.device "
                "to auto, cuda or cuda:N"
            )
        index = int(request.device.split(":")[1]) if ":" in request.device else 0
        metadata = read_onnx_metadata(request.model_path)
        input_hw = resolve_network_hw(metadata, request.network_hw, None, str(request.model_path))
        cache_dir = Path(request.model.engine_cache_dir or default_engine_cache_dir())
        device = current_device(index)
        fp16_flag = request.precision == "fp16" and metadata.precision == "fp32"
        if fp16_flag and device.tensorrt_major >= 11:
            # TensorRT 11 builds strongly typed networks only: the model file decides.
            logger.warning(
                "backend.precision=fp16 has no effect on TensorRT %s: it runs %s as the %s "
                "model it is; make an FP16 model with panoptic-ros quantize",
                device.tensorrt_version,
                request.model_path,
                metadata.precision,
            )
            fp16_flag = False
        engine_path, record = ensure_engine(
            request.model_path,
            metadata=metadata,
            input_hw=input_hw,
            cache_dir=cache_dir,
            engine_path=Path(request.model.engine_file_path)
            if request.model.engine_file_path
            else None,
            allow_build=request.model.allow_engine_build,
            force=request.model.force_engine_update,
            fp16_flag=fp16_flag,
            dla_core=request.model.dla_core,
            workspace_mb=request.model.workspace_mb,
            device=device,
        )
        return cls(
            engine_path,
            metadata,
            input_hw,
            device=f"cuda:{index}",
            dla_core=record.dla_core,
            plan_sha256=record.plan_sha256,
        )

    def _bind(self, batch_shape: tuple[int, ...]) -> None:
        """(Re)allocate I/O for a batch shape and give TensorRT the addresses.

        Raises:
            BackendError: The engine's optimisation profile does not cover the shape.
        """
        trt = self._trt
        if not self._context.set_input_shape(INPUT_NAME, batch_shape):
            raise BackendError(
                f"engine {self.model_path} does not take input {batch_shape} (outside its "
                "optimisation profile); rebuild it with panoptic-ros build-engine --input-size"
            )
        self._buffers = {INPUT_NAME: self._memory.empty(batch_shape, np.uint8)}
        for name in self._outputs:
            shape = tuple(int(v) for v in self._context.get_tensor_shape(name))
            if min(shape, default=0) < 0:
                raise BackendError(f"engine {self.model_path}: output {name} has shape {shape}")
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._buffers[name] = self._memory.empty(shape, dtype)
        for name, buffer in self._buffers.items():
            if not self._context.set_tensor_address(name, self._memory.address(buffer)):
                raise BackendError(f"TensorRT refused the address of {name!r}")
        self._batch_shape = batch_shape

    def _run(self, images: Any) -> None:
        """Copy the inputs into the engine's buffer and enqueue the engine on the stream."""
        shape = _check_images(images)
        if shape != self._batch_shape:
            self._bind(shape)
        self._memory.upload(self._buffers[INPUT_NAME], images)
        if not self._context.execute_async_v3(self._memory.stream_handle()):
            raise BackendError("TensorRT execution failed (see the TensorRT log)")

    def _heads_only(self) -> None:
        if self.fused:
            raise BackendError(
                f"engine {self.model_path} follows the fused contract; use infer_fused()"
            )

    def infer_tensors(self, images: npt.NDArray[np.uint8] | Any) -> tuple[Any, ...]:
        """Run and keep the heads on the device (for the GPU fusion; needs torch).

        Args:
            images: [N, H, W, 3] uint8 RGB network inputs: a NumPy array (uploaded through a
                page-locked buffer) or a torch tensor already on the device (copied device
                to device).

        Returns:
            (semantic_logits [N,C,h,w], center_heatmap [N,1,h,w], offsets [N,2,h,w]) float32
            torch tensors on the device, copies that later calls do not overwrite.

        Raises:
            BackendError: pycuda owns the memory, the engine is fused, or execution failed.
        """
        self._heads_only()
        if not self._memory.device_tensors:
            raise BackendError("device outputs need torch with CUDA; use infer()")
        self._run(images)
        return tuple(self._memory.detach(self._buffers[name]) for name in HEAD_OUTPUTS)

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        """Run [N, H, W, 3] uint8 RGB inputs; heads copied to the host as float32."""
        self._heads_only()
        self._run(images)
        outputs = [self._memory.download(name, self._buffers[name]) for name in HEAD_OUTPUTS]
        return HeadOutputs(*(o.astype(np.float32, copy=False) for o in outputs))

    def infer_fused(self, images: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], ...]:
        """Run a ``fused``-contract engine: (semantic, instance, instance_table, count) on the host.

        Raises:
            BackendError: The engine follows the heads contract, or execution failed.
        """
        if not self.fused:
            raise BackendError(f"engine {self.model_path} follows the heads contract; use infer()")
        self._run(images)
        return tuple(self._memory.download(name, self._buffers[name]) for name in FUSED_OUTPUTS)

    def close(self) -> None:
        """Release the context and buffers."""
        self._buffers = {}
        self._context = None
        if isinstance(self._memory, _PycudaMemory):
            self._memory.close()
