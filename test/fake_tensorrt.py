"""A stand-in for the ``tensorrt`` Python module (TensorRT 10.x or 11.x) for CPU-only tests.

:func:`make_tensorrt` returns a module with the names, signatures and failure modes of the
real bindings that panoptic_ros uses (checked against NVIDIA/TensorRT's ``pyCore.cpp`` of
10.7 and 11.1 and the Python API reference):

* ``__version__``; ``Logger`` with its severities.
* ``NetworkDefinitionCreationFlag``: TensorRT 10 has ``EXPLICIT_BATCH`` (0) and
  ``STRONGLY_TYPED`` (1); TensorRT 11 has ``STRONGLY_TYPED`` (0, accepted and ignored:
  every network is strongly typed) and the plugin-preference flags.
* ``BuilderFlag``: ``FP16`` and ``INT8`` exist on 10 and are gone on 11 (``AttributeError``,
  as with the real module). Like TensorRT 10, a strongly typed network refuses precision
  flags at build time.
* ``Builder(logger)``: ``num_DLA_cores``, ``create_network(flags=0)``,
  ``create_builder_config()``, ``create_optimization_profile()``,
  ``build_serialized_network(network, config)`` returning plan bytes or None.
* ``IBuilderConfig``: ``set_memory_pool_limit(pool, pool_size)``, ``set_flag``,
  ``get_flag``, ``default_device_type``, ``DLA_core``, ``add_optimization_profile``,
  ``create_timing_cache(serialized_timing_cache)``, ``set_timing_cache(cache,
  ignore_mismatch)``, ``progress_monitor`` (an ``IProgressMonitor`` subclass whose
  ``__init__`` must call the base ``__init__``, as pybind11 requires).
* ``OnnxParser(network, logger)``: ``parse_from_file(model)`` really reads the ONNX file,
  checks it, refuses operators TensorRT 10's parser lacks and non-zero or non-int8 Q/DQ
  zero points; ``num_errors`` and ``get_error(index)``.
* ``Runtime(logger)``: ``DLA_core`` and ``deserialize_cuda_engine(serialized_engine)``,
  which returns None for anything but a complete plan of this TensorRT version.
* ``ICudaEngine``: ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
  ``get_tensor_shape`` (-1 for dynamic dimensions), ``get_tensor_dtype``,
  ``create_execution_context()``.
* ``IExecutionContext``: ``set_input_shape`` (False outside the optimisation profile),
  ``get_tensor_shape``, ``set_tensor_address(name, memory)`` and
  ``execute_async_v3(stream_handle)``, which reads the inputs from the raw addresses, runs
  the ONNX model in ONNX Runtime and writes the outputs to their addresses (so "device
  memory" is any host memory: CPU torch tensors or NumPy arrays).

Nothing is simulated beyond that: no kernels, no tactics. What a test can check is that the
caller uses the API as the real module requires and that the bytes it binds are the ones
the network reads and writes. ``fake_builds`` and ``fake_executions`` on the module record
what was built and run, for assertions.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import logging
import struct
import types
from typing import Any

import numpy as np

PLAN_MAGIC = b"FAKE-TRT-PLAN\x00"
CACHE_MAGIC = b"FAKE-TRT-TIMING\x00"

_ONNX_TO_DTYPE = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}
_NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}

logger = logging.getLogger("fake_tensorrt")


def make_tensorrt(version: str = "10.3.0", *, dla_cores: int = 0) -> types.ModuleType:
    """A fresh stand-in ``tensorrt`` module of ``version`` whose builder reports ``dla_cores``."""
    major = int(version.split(".", maxsplit=1)[0])
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.fake_builds = []
    module.fake_executions = []

    class Logger:
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

        def __init__(self, min_severity: int = 2) -> None:
            self.min_severity = min_severity

        def log(self, severity: int, msg: str) -> None:
            if severity <= self.min_severity:
                logger.log(logging.ERROR if severity <= 1 else logging.WARNING, msg)

    DataType = enum.IntEnum(
        "DataType",
        [
            ("FLOAT", 0),
            ("HALF", 1),
            ("INT8", 2),
            ("INT32", 3),
            ("BOOL", 4),
            ("UINT8", 5),
            ("INT64", 8),
        ],
    )

    def nptype(trt_type: Any) -> type:
        return _NUMPY[DataType(trt_type).name]

    TensorIOMode = enum.IntEnum("TensorIOMode", [("NONE", 0), ("INPUT", 1), ("OUTPUT", 2)])
    MemoryPoolType = enum.IntEnum(
        "MemoryPoolType",
        [("WORKSPACE", 0), ("DLA_MANAGED_SRAM", 1), ("DLA_LOCAL_DRAM", 2), ("DLA_GLOBAL_DRAM", 3)],
    )
    DeviceType = enum.IntEnum("DeviceType", [("GPU", 0), ("DLA", 1)])
    if major >= 11:
        creation_flags = [
            ("STRONGLY_TYPED", 0),
            ("PREFER_JIT_PYTHON_PLUGINS", 1),
            ("PREFER_AOT_PYTHON_PLUGINS", 2),
        ]
        builder_flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32"]
    else:
        creation_flags = [("EXPLICIT_BATCH", 0), ("STRONGLY_TYPED", 1)]
        builder_flags = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT"]
        builder_flags += ["DISABLE_TIMING_CACHE", "TF32", "OBEY_PRECISION_CONSTRAINTS"]
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation_flags)
    BuilderFlag = enum.IntEnum("BuilderFlag", [(n, i) for i, n in enumerate(builder_flags)])

    class IHostMemory(bytes):
        """Serialized data; supports the buffer protocol like the real IHostMemory."""

        @property
        def nbytes(self) -> int:
            return len(self)

    class IProgressMonitor:
        def __init__(self) -> None:
            self._base_initialised = True

    class ITimingCache:
        def __init__(self, entries: dict[str, float] | None = None) -> None:
            self.entries = dict(entries or {})

        def serialize(self) -> IHostMemory:
            body = json.dumps({"version": version, "entries": self.entries}).encode()
            return IHostMemory(CACHE_MAGIC + body)

        def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
            self.entries.update(input_cache.entries)
            return True

        def reset(self) -> bool:
            self.entries.clear()
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            shapes = tuple(tuple(int(v) for v in s) for s in (min, opt, max))
            low, mid, high = shapes
            if not (len(low) == len(mid) == len(high)) or not all(
                a <= b <= c for a, b, c in zip(low, mid, high, strict=True)
            ):
                raise ValueError(f"profile of {input}: need min <= opt <= max, got {shapes}")
            self.shapes[input] = shapes

        def get_shape(self, input: str) -> list[tuple[int, ...]]:
            return list(self.shapes[input])

    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.model_bytes = b""
            self.inputs: list[ITensor] = []
            self.outputs: list[ITensor] = []

        def get_flag(self, flag: Any) -> bool:
            if major >= 11 and flag == NetworkDefinitionCreationFlag.STRONGLY_TYPED:
                return True
            return bool(self.flags & (1 << int(flag)))

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, index: int) -> ITensor:
            return self.inputs[index]

        def get_output(self, index: int) -> ITensor:
            return self.outputs[index]

    class _ParserError:
        def __init__(self, text: str) -> None:
            self.text = text

        def desc(self) -> str:
            return self.text

        def __str__(self) -> str:
            return self.text

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self.network = network
            self.logger = logger
            self.errors: list[_ParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> _ParserError:
            return self.errors[index]

        def clear_errors(self) -> None:
            self.errors.clear()

        def parse_from_file(self, model: str) -> bool:
            try:
                with open(model, "rb") as stream:
                    data = stream.read()
            except OSError as err:
                self.errors.append(_ParserError(f"cannot open {model}: {err.strerror}"))
                return False
            return self.parse(data)

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            from panoptic_ros.export.tensorrt_ops import TENSORRT_ONNX_OPS

            try:
                proto = onnx.load_from_string(model)
                onnx.checker.check_model(proto)
            except Exception as err:
                self.errors.append(_ParserError(f"invalid ONNX model: {err}"))
                return False
            initializers = {i.name: i for i in proto.graph.initializer}
            for node in proto.graph.node:
                if node.op_type not in TENSORRT_ONNX_OPS:
                    self.errors.append(
                        _ParserError(f"{node.name}: no importer registered for op {node.op_type}")
                    )
                if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
                    zero_point = initializers.get(node.input[2])
                    if zero_point is None:
                        continue
                    values = onnx.numpy_helper.to_array(zero_point)
                    if zero_point.data_type != onnx.TensorProto.INT8 or values.any():
                        self.errors.append(
                            _ParserError(
                                f"{node.name}: TensorRT only supports symmetric int8 "
                                "quantization; the zero point must be int8 zeros"
                            )
                        )
            if self.errors:
                return False
            self.network.model_bytes = model
            self.network.inputs = [_tensor(v) for v in proto.graph.input]
            self.network.outputs = [_tensor(v) for v in proto.graph.output]
            return True

    def _tensor(value: Any) -> ITensor:
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
        )
        return ITensor(value.name, dims, DataType[_ONNX_TO_DTYPE[value.type.tensor_type.elem_type]])

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set[Any] = set()
            self.pool_limits: dict[Any, int] = {}
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1
            self.profiles: list[IOptimizationProfile] = []
            self.timing_cache: ITimingCache | None = None
            self.progress_monitor: Any = None

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self.pool_limits[MemoryPoolType(pool)] = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self.pool_limits.get(MemoryPoolType(pool), 1 << 40)

        def set_flag(self, flag: Any) -> None:
            self.flags.add(BuilderFlag(flag))

        def get_flag(self, flag: Any) -> bool:
            return BuilderFlag(flag) in self.flags

        def clear_flag(self, flag: Any) -> None:
            self.flags.discard(BuilderFlag(flag))

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            data = bytes(serialized_timing_cache)
            if not data:
                return ITimingCache()
            if not data.startswith(CACHE_MAGIC):
                logger.warning("timing cache is not a TensorRT timing cache; starting empty")
                return ITimingCache()
            body = json.loads(data[len(CACHE_MAGIC) :])
            if body["version"] != version:
                logger.warning("timing cache from TensorRT %s ignored", body["version"])
                return ITimingCache()
            return ITimingCache(body["entries"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            self.timing_cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        @property
        def num_DLA_cores(self) -> int:
            return dla_cores

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _fail(self, message: str) -> None:
            self.logger.log(Logger.ERROR, message)

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> IHostMemory | None:
            if not network.model_bytes:
                self._fail("network has no layers (was the ONNX parsed?)")
                return None
            strongly_typed = network.get_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            precision_flags = [f.name for f in config.flags if f.name in ("FP16", "INT8")]
            if strongly_typed and precision_flags:
                self._fail(f"strongly typed networks do not take the flags {precision_flags}")
                return None
            dla = config.default_device_type == DeviceType.DLA
            if dla:
                if not 0 <= config.DLA_core < dla_cores:
                    self._fail(f"DLA core {config.DLA_core} of {dla_cores} does not exist")
                    return None
                if BuilderFlag.GPU_FALLBACK not in config.flags:
                    self._fail("layers that DLA cannot run and no GPU fallback was allowed")
                    return None
            profiles: dict[str, list[list[int]]] = {}
            for tensor in network.inputs:
                dynamic = -1 in tensor.shape
                given = [p.shapes[tensor.name] for p in config.profiles if tensor.name in p.shapes]
                if dynamic and not given:
                    self._fail(
                        f"network has dynamic input {tensor.name} {tensor.shape} but no "
                        "optimization profile defines it"
                    )
                    return None
                for shapes in given:
                    for shape in shapes:
                        if len(shape) != len(tensor.shape) or any(
                            d not in (-1, s) for d, s in zip(tensor.shape, shape, strict=True)
                        ):
                            self._fail(f"profile {shape} does not fit {tensor.name} {tensor.shape}")
                            return None
                if given:
                    profiles[tensor.name] = [list(s) for s in given[0]]
            monitor = config.progress_monitor
            if monitor is not None and not getattr(monitor, "_base_initialised", False):
                raise TypeError(
                    "tensorrt.IProgressMonitor.__init__() must be called when overriding __init__"
                )
            onnx_sha = hashlib.sha256(network.model_bytes).hexdigest()
            layers = _layer_names(network.model_bytes)
            cache = config.timing_cache
            hits = misses = 0
            if monitor is not None:
                monitor.phase_start("Building engine", None, len(layers))
            for step, layer in enumerate(layers):
                key = hashlib.sha256(
                    f"{onnx_sha}:{layer}:{profiles}:{sorted(f.name for f in config.flags)}".encode()
                ).hexdigest()
                if cache is not None and key in cache.entries:
                    hits += 1
                else:
                    misses += 1
                    if cache is not None:
                        cache.entries[key] = 0.01
                if monitor is not None and not monitor.step_complete("Building engine", step):
                    self._fail("build cancelled by the progress monitor")
                    return None
            if monitor is not None:
                monitor.phase_finish("Building engine")
            header = {
                "version": version,
                "strongly_typed": strongly_typed,
                "flags": sorted(f.name for f in config.flags),
                "device_type": "DLA" if dla else "GPU",
                "dla_core": config.DLA_core if dla else -1,
                "profiles": profiles,
                "workspace_bytes": config.get_memory_pool_limit(MemoryPoolType.WORKSPACE),
            }
            module.fake_builds.append(
                {**header, "timing_cache_hits": hits, "timing_cache_misses": misses}
            )
            return IHostMemory(_pack_plan(header, network.model_bytes))

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            self.DLA_core = -1

        @property
        def num_DLA_cores(self) -> int:
            return dla_cores

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            unpacked = _unpack_plan(bytes(serialized_engine))
            if unpacked is None:
                self.logger.log(Logger.ERROR, "the serialized engine is invalid or truncated")
                return None
            header, model = unpacked
            if header["version"] != version:
                self.logger.log(
                    Logger.ERROR,
                    f"the engine plan file is not compatible with this version of TensorRT, "
                    f"expecting library version {version} got {header['version']}",
                )
                return None
            return ICudaEngine(header, model, self.DLA_core)

    class ICudaEngine:
        def __init__(self, header: dict[str, Any], model: bytes, runtime_dla_core: int) -> None:
            import onnx

            self.header = header
            self.model = model
            self.executing_dla_core = runtime_dla_core if header["device_type"] == "DLA" else -1
            proto = onnx.load_from_string(model)
            self._io = [(_tensor(v), TensorIOMode.INPUT) for v in proto.graph.input]
            self._io += [(_tensor(v), TensorIOMode.OUTPUT) for v in proto.graph.output]
            self._session: Any = None

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        @property
        def num_optimization_profiles(self) -> int:
            return 1

        def _find(self, name: str) -> tuple[ITensor, Any] | None:
            return next(((t, m) for t, m in self._io if t.name == name), None)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0].name

        def get_tensor_mode(self, name: str) -> Any:
            found = self._find(name)
            return TensorIOMode.NONE if found is None else found[1]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            found = self._find(name)
            return () if found is None else found[0].shape

        def get_tensor_dtype(self, name: str) -> Any:
            found = self._find(name)
            return DataType.FLOAT if found is None else found[0].dtype

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[list[int]]:
            return self.header["profiles"][name]

        def session(self) -> Any:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                self._session = ort.InferenceSession(
                    self.model, options, providers=["CPUExecutionProvider"]
                )
            return self._session

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self._shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}
            self._output_shapes: dict[tuple[Any, ...], dict[str, tuple[int, ...]]] = {}
            self.stream_handles: list[int] = []

        def set_input_shape(self, name: str, shape: Any) -> bool:
            found = self.engine._find(name)
            shape = tuple(int(v) for v in shape)
            if found is None or found[1] != TensorIOMode.INPUT:
                return False
            low, _, high = self.engine.header["profiles"].get(name, [found[0].shape] * 3)
            if len(shape) != len(low) or not all(
                a <= s <= b for a, s, b in zip(low, shape, high, strict=True)
            ):
                logger.error("%s: shape %s is outside the profile %s..%s", name, shape, low, high)
                return False
            self._shapes[name] = shape
            return True

        def _inputs_known(self) -> bool:
            return all(t.name in self._shapes for t, m in self.engine._io if m == 1)

        def _outputs_for_shapes(self) -> dict[str, tuple[int, ...]]:
            key = tuple(sorted(self._shapes.items()))
            if key not in self._output_shapes:
                feeds = {
                    t.name: np.zeros(self._shapes[t.name], nptype(t.dtype))
                    for t, m in self.engine._io
                    if m == TensorIOMode.INPUT
                }
                names = [t.name for t, m in self.engine._io if m == TensorIOMode.OUTPUT]
                values = self.engine.session().run(names, feeds)
                self._output_shapes[key] = {
                    n: tuple(v.shape) for n, v in zip(names, values, strict=True)
                }
            return self._output_shapes[key]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            found = self.engine._find(name)
            if found is None:
                return ()
            if found[1] == TensorIOMode.INPUT:
                return self._shapes.get(name, found[0].shape)
            if not self._inputs_known():
                return found[0].shape
            return self._outputs_for_shapes()[name]

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if self.engine._find(name) is None:
                return False
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addresses.get(name, 0)

        def execute_async_v3(self, stream_handle: int) -> bool:
            self.stream_handles.append(int(stream_handle))
            io = self.engine._io
            if not self._inputs_known() or any(not self._addresses.get(t.name) for t, _ in io):
                return False
            feeds = {
                t.name: _at(self._addresses[t.name], self._shapes[t.name], nptype(t.dtype)).copy()
                for t, m in io
                if m == TensorIOMode.INPUT
            }
            names = [t.name for t, m in io if m == TensorIOMode.OUTPUT]
            values = self.engine.session().run(names, feeds)
            outputs = [t for t, m in io if m == TensorIOMode.OUTPUT]
            for tensor, value in zip(outputs, values, strict=True):
                target = _at(self._addresses[tensor.name], value.shape, nptype(tensor.dtype))
                target[...] = value
            module.fake_executions.append({"stream": int(stream_handle), "inputs": feeds})
            return True

    for name, value in list(locals().items()):
        if name[0].isupper() and isinstance(value, type):
            setattr(module, name, value)
    module.nptype = nptype
    module.float32 = DataType.FLOAT
    module.float16 = DataType.HALF
    module.int32 = DataType.INT32
    module.uint8 = DataType.UINT8
    return module


def _layer_names(model: bytes) -> list[str]:
    import onnx

    return [n.name or n.op_type for n in onnx.load_from_string(model).graph.node]


def _pack_plan(header: dict[str, Any], model: bytes) -> bytes:
    meta = json.dumps(header, sort_keys=True).encode()
    body = PLAN_MAGIC + struct.pack("<II", len(meta), len(model)) + meta + model
    return body + hashlib.sha256(body).digest()


def _unpack_plan(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    start = len(PLAN_MAGIC) + 8
    if len(data) < start + 32 or not data.startswith(PLAN_MAGIC):
        return None
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        return None
    meta_len, model_len = struct.unpack("<II", data[len(PLAN_MAGIC) : start])
    if start + meta_len + model_len != len(body):
        return None
    header = json.loads(body[start : start + meta_len])
    return header, body[start + meta_len :]


def _at(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """The memory at ``address`` as a writable array of ``shape`` and ``dtype`` (no copy)."""
    count = int(np.prod(shape, dtype=np.int64))
    raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
