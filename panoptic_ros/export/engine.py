"""TensorRT engines from ONNX, for TensorRT 10.x and 11.x, cached per device and model.

Precision lives in the model file (see :mod:`panoptic_ros.export.quantize`): TensorRT 11
builds only strongly typed networks and has no FP16/INT8 builder flags or calibrators.
TensorRT 10 builds FP16 and Q/DQ models strongly typed too, and keeps the legacy FP16 flag
available for FP32 models. Decisions branch on the TensorRT version and on the DLA cores
the builder reports, never on the platform's name (:func:`build_plan`, pure and tested).

An engine only runs on the TensorRT version and GPU it was built for, so every plan has a
JSON sidecar (:class:`EngineRecord`) with the ONNX checksum, the plan's own checksum,
TensorRT version, L4T release (Jetson), GPU name, compute capability, SM count, DLA core,
precision and input shapes. :func:`ensure_engine` compares it with the current device and
the plan file with its checksum, and rebuilds a stale, foreign, swapped or corrupted
engine, or refuses with the reason when building is not allowed; it never silently uses
one. Builds run under a file lock and write to a temporary file that is renamed, so two
nodes starting together build once and never read half a file. The cache lives in a
writable directory (default ``$ROS_HOME/panoptic_ros/engines``), since an installed share
folder may be read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from panoptic_ros.contract import INPUT_NAME, ModelMetadata
from panoptic_ros.errors import EngineError

__all__ = [
    "BuildPlan",
    "DeviceInfo",
    "EngineRecord",
    "build_engine",
    "build_plan",
    "current_device",
    "engine_cache_path",
    "ensure_engine",
    "file_sha256",
    "plan_mismatch",
    "stale_reason",
]

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX: Final = ".json"
LOCK_SUFFIX: Final = ".lock"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What an engine is tied to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    l4t_version: str = ""
    dla_cores: int = 0

    @property
    def tensorrt_major(self) -> int:
        """Major version number (10, 11 ...)."""
        return int(self.tensorrt_version.split(".")[0])


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """How to build: network creation flags and builder flags (names of TensorRT enums)."""

    strongly_typed: bool
    builder_flags: tuple[str, ...]
    dla_core: int
    reason: str


def build_plan(
    device: DeviceInfo, model_precision: str, *, fp16_flag: bool = False, dla_core: int = -1
) -> BuildPlan:
    """Decide network and builder flags from the TensorRT version and the DLA cores present.

    Args:
        device: The build device.
        model_precision: ``fp32``, ``fp16`` or ``int8`` (from the model's metadata).
        fp16_flag: Ask for TensorRT 10's legacy FP16 builder flag on an FP32 model.
        dla_core: DLA core to place layers on (-1 = GPU only).

    Raises:
        EngineError: A combination this TensorRT cannot build, with what to do instead.
    """
    flags: list[str] = []
    if dla_core >= 0:
        if dla_core >= device.dla_cores:
            raise EngineError(
                f"DLA core {dla_core} requested but the builder reports {device.dla_cores} DLA "
                "cores; use dla_core=-1 for the GPU"
            )
        if model_precision == "fp32" and not fp16_flag:
            raise EngineError(
                "DLA runs FP16 or INT8 only; quantize the model (panoptic-ros quantize --dla)"
            )
        flags.append("GPU_FALLBACK")
    if device.tensorrt_major >= 11:
        if fp16_flag:
            raise EngineError(
                f"TensorRT {device.tensorrt_version} has no FP16 builder flag (strongly typed "
                "networks only); build the FP16 model from panoptic-ros quantize instead"
            )
        return BuildPlan(
            True,
            tuple(flags),
            dla_core,
            f"TensorRT {device.tensorrt_major}: strongly typed, precision from the model",
        )
    if device.tensorrt_major == 10:
        if model_precision == "fp32" and fp16_flag:
            flags.append("FP16")
            return BuildPlan(
                False,
                tuple(flags),
                dla_core,
                "TensorRT 10, FP32 model: legacy FP16 builder flag as asked",
            )
        return BuildPlan(
            True, tuple(flags), dla_core, "TensorRT 10: strongly typed, precision from the model"
        )
    raise EngineError(
        f"TensorRT {device.tensorrt_version} is too old; TensorRT 10 or 11 is required"
    )


@dataclass(frozen=True, slots=True)
class EngineRecord:
    """The sidecar of an engine: what it was built from, with what, for which device."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    sm_count: int
    l4t_version: str
    dla_core: int
    precision: str
    strongly_typed: bool
    builder_flags: tuple[str, ...]
    min_shape: tuple[int, ...]
    opt_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    build_seconds: float = 0.0
    #: SHA-256 of the plan file as written; '' in records of older builds (never trusted).
    plan_sha256: str = ""

    @classmethod
    def of(
        cls,
        onnx_path: Path,
        device: DeviceInfo,
        plan: BuildPlan,
        precision: str,
        shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
        *,
        build_seconds: float = 0.0,
        plan_sha256: str = "",
    ) -> EngineRecord:
        """The record of an engine built from a model by ``plan`` on ``device``.

        Args:
            onnx_path: The ONNX model (its SHA-256 is recorded).
            device: The device the engine is for.
            plan: How it is built (DLA core, typing, builder flags).
            precision: The model's precision.
            shapes: (min, opt, max) input shapes of the optimisation profile.
            build_seconds: How long the build took (0 for a wanted record).
            plan_sha256: SHA-256 of the written plan ('' before it exists).
        """
        return cls(
            onnx_sha256=file_sha256(onnx_path),
            tensorrt_version=device.tensorrt_version,
            gpu_name=device.gpu_name,
            compute_capability=device.compute_capability,
            sm_count=device.sm_count,
            l4t_version=device.l4t_version,
            dla_core=plan.dla_core,
            precision=precision,
            strongly_typed=plan.strongly_typed,
            builder_flags=plan.builder_flags,
            min_shape=shapes[0],
            opt_shape=shapes[1],
            max_shape=shapes[2],
            build_seconds=build_seconds,
            plan_sha256=plan_sha256,
        )

    def to_json(self) -> str:
        """Pretty JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, engine_path: Path) -> EngineRecord:
        """Read the sidecar beside ``engine_path``.

        Raises:
            EngineError: Missing or unreadable sidecar.
        """
        path = engine_path.with_suffix(SIDECAR_SUFFIX)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for key in ("builder_flags", "min_shape", "opt_shape", "max_shape"):
                data[key] = tuple(data[key])
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise EngineError(f"engine record {str(path)!r} is missing or invalid: {err}") from err


def file_sha256(path: Path) -> str:
    """SHA-256 of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stale_reason(record: EngineRecord, wanted: EngineRecord) -> str | None:
    """Why an engine built as ``record`` cannot serve ``wanted`` (None if it can)."""
    checks = (
        ("onnx_sha256", "the ONNX model changed"),
        ("tensorrt_version", "it was built for TensorRT {old}, this is {new}"),
        ("gpu_name", "it was built on {old}, this GPU is {new}"),
        ("compute_capability", "it was built for compute capability {old}, this GPU has {new}"),
        ("sm_count", "it was built for {old} SMs, this GPU has {new}"),
        ("l4t_version", "it was built on L4T {old}, this is L4T {new}"),
        ("dla_core", "it was built for DLA core {old}, {new} is configured"),
        ("builder_flags", "it was built with flags {old}, {new} are configured"),
    )
    for key, template in checks:
        old, new = getattr(record, key), getattr(wanted, key)
        if old != new:
            return template.format(old=old or "none", new=new or "none")
    if not (
        all(a <= b for a, b in zip(record.min_shape, wanted.min_shape, strict=True))
        and all(a >= b for a, b in zip(record.max_shape, wanted.max_shape, strict=True))
    ):
        return f"its shapes {record.min_shape}..{record.max_shape} do not cover {wanted.opt_shape}"
    return None


def plan_mismatch(engine_path: Path, record: EngineRecord) -> str | None:
    """Why the plan file is not the one ``record`` describes (None if it is)."""
    if not record.plan_sha256:
        return "its record has no plan checksum (built by an older panoptic_ros)"
    if file_sha256(engine_path) != record.plan_sha256:
        return "the plan file does not match its record's SHA-256 (replaced or corrupted)"
    return None


def engine_cache_path(
    cache_dir: Path, onnx_path: Path, device: DeviceInfo, tag: str, onnx_sha256: str
) -> Path:
    """``<cache>/<stem>.<sha8>.<gpu>.trt<version>.<tag>.plan``, one per model, device and tag.

    The first 8 hex digits of the ONNX SHA-256 keep two models with the same file name
    (``city/model.onnx``, ``kitti/model.onnx``) from rebuilding over each other.
    """
    gpu = "".join(c if c.isalnum() else "_" for c in device.gpu_name).strip("_").lower()
    name = f"{Path(onnx_path).stem}.{onnx_sha256[:8]}.{gpu}.trt{device.tensorrt_version}.{tag}"
    return Path(cache_dir) / f"{name}.plan"


@contextlib.contextmanager
def _build_lock(engine_path: Path) -> Iterator[None]:
    """Exclusive lock beside the engine, so concurrent starts build once."""
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = engine_path.with_suffix(LOCK_SUFFIX)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
        temporary = Path(tmp.name)
    try:
        # NamedTemporaryFile creates 0600 files; a model must be readable like any file.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ------------------------------------------------------------------ TensorRT specific


def _tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as err:
        raise EngineError(
            "tensorrt is not installed; on x86 pip install panoptic_ros[tensorrt], on Jetson use "
            "JetPack's python3-libnvinfer"
        ) from err
    return trt


def _l4t_version() -> str:
    try:
        head = Path("/etc/nv_tegra_release").read_text(encoding="utf-8").split(",")
    except OSError:
        return ""
    release = head[0].split("R")[-1].strip() if head else ""
    revision = head[1].split(":")[-1].strip() if len(head) > 1 else ""
    return f"{release}.{revision}".strip(".")


def current_device(device_index: int = 0) -> DeviceInfo:
    """The TensorRT version and GPU properties of this machine.

    Raises:
        EngineError: tensorrt or a CUDA device is missing.
    """
    trt = _tensorrt()
    name, capability, sms = _gpu_properties(device_index)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    return DeviceInfo(
        tensorrt_version=str(trt.__version__),
        gpu_name=name,
        compute_capability=capability,
        sm_count=sms,
        l4t_version=_l4t_version(),
        dla_cores=int(builder.num_DLA_cores),
    )


def _gpu_properties(index: int) -> tuple[str, str, int]:
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(index)
            return props.name, f"{props.major}.{props.minor}", int(props.multi_processor_count)
    except ImportError:
        pass
    try:
        import pycuda.driver as cuda

        cuda.init()
        device = cuda.Device(index)
        major, minor = device.compute_capability()
        sms = device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
        return str(device.name()), f"{major}.{minor}", int(sms)
    except ImportError as err:
        raise EngineError(
            "neither torch with CUDA nor pycuda is installed; cannot see the GPU"
        ) from err
    except Exception as err:
        raise EngineError(f"no CUDA device {index}: {err}") from err


def _shapes(
    metadata: ModelMetadata, input_hw: tuple[int, int], max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    height, width = input_hw
    shape = (1, height, width, 3)
    return shape, shape, (max_batch, height, width, 3)


class _Progress:
    """Logs TensorRT's build phases (TensorRT >= 10 IProgressMonitor) with elapsed time."""

    def __init__(self, trt: Any) -> None:
        base = getattr(trt, "IProgressMonitor", object)
        started = time.monotonic()

        class Monitor(base):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                if base is not object:
                    base.__init__(self)
                self._last = 0.0

            def phase_start(
                self, phase_name: str, parent_phase: str | None, num_steps: int
            ) -> None:
                logger.info(
                    "engine build: %s (%d steps) at %.0f s",
                    phase_name,
                    num_steps,
                    time.monotonic() - started,
                )

            def step_complete(self, phase_name: str, step: int) -> bool:
                now = time.monotonic()
                if now - self._last > 10:
                    self._last = now
                    logger.info("engine build: %s step %d, %.0f s", phase_name, step, now - started)
                return True

            def phase_finish(self, phase_name: str) -> None:
                pass

        self.monitor = Monitor() if base is not object else None


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    metadata: ModelMetadata,
    input_hw: tuple[int, int],
    device: DeviceInfo,
    plan: BuildPlan,
    workspace_mb: int = 2048,
    timing_cache: Path | None = None,
    max_batch: int = 1,
) -> EngineRecord:
    """Build and write ``engine_path`` and its sidecar (call under :func:`_build_lock`).

    Raises:
        EngineError: Parsing or building failed (the parser's errors are named).
    """
    trt = _tensorrt()
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    creation = 0
    if plan.strongly_typed:
        creation |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(creation)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        logger.warning("TensorRT did not take the timing cache %s; building without", timing_cache)
    min_shape, opt_shape, max_shape = _shapes(metadata, input_hw, max_batch)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, min_shape, opt_shape, max_shape)
    config.add_optimization_profile(profile)
    progress = _Progress(trt)
    if progress.monitor is not None:
        config.progress_monitor = progress.monitor
    started = time.monotonic()
    logger.info(
        "building a TensorRT %s engine from %s (%s); this can take minutes",
        device.tensorrt_version,
        onnx_path,
        plan.reason,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {onnx_path}; run with -v for its log")
    seconds = time.monotonic() - started
    plan_bytes = bytes(serialized)
    _atomic_write(engine_path, plan_bytes)
    if timing_cache is not None:
        _atomic_write(timing_cache, bytes(cache.serialize()))
    record = EngineRecord.of(
        onnx_path,
        device,
        plan,
        metadata.precision,
        (min_shape, opt_shape, max_shape),
        build_seconds=round(seconds, 1),
        plan_sha256=hashlib.sha256(plan_bytes).hexdigest(),
    )
    _atomic_write(engine_path.with_suffix(SIDECAR_SUFFIX), record.to_json().encode())
    logger.info("engine %s built in %.0f s", engine_path, seconds)
    return record


def ensure_engine(
    onnx_path: Path,
    *,
    metadata: ModelMetadata,
    input_hw: tuple[int, int],
    cache_dir: Path,
    engine_path: Path | None = None,
    allow_build: bool = True,
    force: bool = False,
    fp16_flag: bool = False,
    dla_core: int = -1,
    workspace_mb: int = 2048,
    device: DeviceInfo | None = None,
    builder: Any = None,
) -> tuple[Path, EngineRecord]:
    """Return a fresh engine for this device and model, building it when needed and allowed.

    An engine is fresh when its record matches this model, device and build options and the
    plan file's SHA-256 equals the one recorded at build time.

    Args:
        onnx_path: The model.
        metadata: Its metadata (precision, names).
        input_hw: Network input size of the engine.
        cache_dir: Writable cache folder.
        engine_path: A specific plan to use (default: derived inside ``cache_dir``).
        allow_build: Build a missing or stale engine (else raise with the reason).
        force: Rebuild even a fresh engine.
        fp16_flag: TensorRT 10's legacy FP16 flag for an FP32 model.
        dla_core: DLA core (-1 = GPU).
        workspace_mb: Builder workspace limit.
        device: Device description (default: :func:`current_device`).
        builder: Build function (tests pass a fake; default :func:`build_engine`).

    Raises:
        EngineError: Stale or missing engine with building disallowed, or a failed build.
    """
    device = device or current_device()
    plan = build_plan(device, metadata.precision, fp16_flag=fp16_flag, dla_core=dla_core)
    wanted = EngineRecord.of(
        onnx_path, device, plan, metadata.precision, _shapes(metadata, input_hw, 1)
    )
    tag = (
        f"{metadata.precision}{'-fp16flag' if 'FP16' in plan.builder_flags else ''}"
        + (f"-dla{plan.dla_core}" if plan.dla_core >= 0 else "")
        + f"-{input_hw[0]}x{input_hw[1]}"
    )
    path = (
        Path(engine_path)
        if engine_path
        else engine_cache_path(cache_dir, onnx_path, device, tag, wanted.onnx_sha256)
    )
    build = builder or build_engine
    with _build_lock(path):
        reason = "a rebuild was forced" if force else None
        if reason is None:
            if not path.is_file():
                reason = "no engine is cached yet"
            else:
                try:
                    record = EngineRecord.read(path)
                    reason = stale_reason(record, wanted) or plan_mismatch(path, record)
                except EngineError as err:
                    reason = str(err)
        if reason is None:
            return path, record
        if not allow_build:
            raise EngineError(
                f"engine {path} cannot be used: {reason}; run panoptic-ros build-engine or "
                "allow building (model.allow_engine_build)"
            )
        logger.info("building engine %s: %s", path, reason)
        timing_cache = (
            path.parent
            / f"timing.trt{device.tensorrt_version}.{device.gpu_name.replace(' ', '_')}.cache"
        )
        record = build(
            onnx_path,
            path,
            metadata=metadata,
            input_hw=input_hw,
            device=device,
            plan=plan,
            workspace_mb=workspace_mb,
            timing_cache=timing_cache,
        )
        return path, record
