"""TensorRT engine logic that needs no GPU: build plans per version, staleness, cache, lock.

Building and running engines needs TensorRT and an NVIDIA GPU; those tests are marked
``gpu`` and skip with the reason here.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import BackendError, EngineError
from panoptic_ros.export.engine import (
    DeviceInfo,
    EngineRecord,
    build_plan,
    engine_cache_path,
    ensure_engine,
    stale_reason,
)
from panoptic_ros.labels import CITYSCAPES

ORIN_TRT10 = DeviceInfo("10.3.0", "Orin", "8.7", 16, l4t_version="36.4.3", dla_cores=2)
H100_TRT11 = DeviceInfo("11.0.0", "NVIDIA H100 80GB HBM3", "9.0", 132)
METADATA = ModelMetadata(labels=CITYSCAPES, input_hw=(512, 1024))


@pytest.mark.parametrize(
    ("device", "precision", "fp16_flag", "dla", "strongly_typed", "flags"),
    [
        (H100_TRT11, "fp32", False, -1, True, ()),
        (H100_TRT11, "int8", False, -1, True, ()),
        (ORIN_TRT10, "fp16", False, -1, True, ()),
        (ORIN_TRT10, "fp32", True, -1, False, ("FP16",)),
        (ORIN_TRT10, "int8", False, 1, True, ("GPU_FALLBACK",)),
    ],
)
def test_build_plan_follows_the_tensorrt_version(
    device: DeviceInfo,
    precision: str,
    fp16_flag: bool,
    dla: int,
    strongly_typed: bool,
    flags: tuple[str, ...],
) -> None:
    plan = build_plan(device, precision, fp16_flag=fp16_flag, dla_core=dla)
    assert (plan.strongly_typed, plan.builder_flags, plan.dla_core) == (strongly_typed, flags, dla)


@pytest.mark.parametrize(
    ("device", "kwargs", "match"),
    [
        (H100_TRT11, {"fp16_flag": True}, "no FP16 builder flag"),
        (H100_TRT11, {"dla_core": 0}, "reports 0 DLA cores"),
        (ORIN_TRT10, {"dla_core": 0}, "DLA runs FP16 or INT8 only"),
        (DeviceInfo("8.6.1", "Xavier", "7.2", 8), {}, "TensorRT 10 or 11 is required"),
    ],
)
def test_impossible_builds_are_refused(
    device: DeviceInfo, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(EngineError, match=match):
        build_plan(device, "fp32", **kwargs)


def _record(**changes: Any) -> EngineRecord:
    base = EngineRecord(
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        sm_count=16,
        l4t_version="36.4.3",
        dla_core=-1,
        precision="fp16",
        strongly_typed=True,
        builder_flags=(),
        min_shape=(1, 512, 1024, 3),
        opt_shape=(1, 512, 1024, 3),
        max_shape=(1, 512, 1024, 3),
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"onnx_sha256": "b" * 64}, "the ONNX model changed"),
        ({"tensorrt_version": "10.7.0"}, "built for TensorRT 10.3.0, this is 10.7.0"),
        ({"gpu_name": "RTX 4090"}, "built on Orin, this GPU is RTX 4090"),
        ({"sm_count": 8}, "16 SMs, this GPU has 8"),
        ({"l4t_version": "36.3.0"}, "L4T 36.4.3, this is L4T 36.3.0"),
        (
            {
                "opt_shape": (1, 544, 960, 3),
                "min_shape": (1, 544, 960, 3),
                "max_shape": (1, 544, 960, 3),
            },
            "do not cover",
        ),
    ],
)
def test_stale_reasons(changes: dict[str, Any], reason: str) -> None:
    assert stale_reason(_record(), _record()) is None
    assert reason in (stale_reason(_record(), _record(**changes)) or "")


class FakeBuilder:
    """Writes a plan file and its record as build_engine does, and counts builds."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.builds = 0
        self.delay_s = delay_s

    def __call__(self, onnx_path: Path, engine_path: Path, **kwargs: Any) -> EngineRecord:
        from panoptic_ros.export.engine import file_sha256

        self.builds += 1
        time.sleep(self.delay_s)
        device, plan, metadata = kwargs["device"], kwargs["plan"], kwargs["metadata"]
        shape = (1, *kwargs["input_hw"], 3)
        record = EngineRecord(
            onnx_sha256=file_sha256(onnx_path),
            tensorrt_version=device.tensorrt_version,
            gpu_name=device.gpu_name,
            compute_capability=device.compute_capability,
            sm_count=device.sm_count,
            l4t_version=device.l4t_version,
            dla_core=plan.dla_core,
            precision=metadata.precision,
            strongly_typed=plan.strongly_typed,
            builder_flags=plan.builder_flags,
            min_shape=shape,
            opt_shape=shape,
            max_shape=shape,
        )
        engine_path.write_bytes(b"plan")
        engine_path.with_suffix(".json").write_text(record.to_json())
        return record


def test_engines_are_cached_per_device_and_rebuilt_when_stale(tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"model v1")
    builder = FakeBuilder()
    kwargs = {
        "metadata": METADATA,
        "input_hw": (512, 1024),
        "cache_dir": tmp_path / "cache",
        "device": ORIN_TRT10,
        "builder": builder,
    }
    path, _ = ensure_engine(onnx_path, **kwargs)
    assert path.parent == tmp_path / "cache"
    assert path.name == "model.orin.trt10.3.0.fp32-512x1024.plan"
    ensure_engine(onnx_path, **kwargs)
    assert builder.builds == 1  # fresh: reused
    ensure_engine(onnx_path, **{**kwargs, "device": replace(ORIN_TRT10, tensorrt_version="10.7.0")})
    assert builder.builds == 2  # another TensorRT: its own cache entry
    onnx_path.write_bytes(b"model v2")
    with pytest.raises(EngineError, match="the ONNX model changed; run panoptic-ros build-engine"):
        ensure_engine(onnx_path, **kwargs, allow_build=False)
    ensure_engine(onnx_path, **kwargs)
    assert builder.builds == 3
    path.with_suffix(".json").write_text("{broken")
    ensure_engine(onnx_path, **kwargs)
    assert builder.builds == 4  # an unreadable record is never trusted
    ensure_engine(onnx_path, **kwargs, force=True)
    assert builder.builds == 5
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["gpu_name"] == "Orin" and record["l4t_version"] == "36.4.3"


def test_concurrent_starts_build_once(tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"model")
    builder = FakeBuilder(delay_s=0.3)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            ensure_engine(
                onnx_path,
                metadata=METADATA,
                input_hw=(512, 1024),
                cache_dir=tmp_path / "cache",
                device=H100_TRT11,
                builder=builder,
            )
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert builder.builds == 1


def test_cache_path_names_the_gpu_and_version(tmp_path: Path) -> None:
    path = engine_cache_path(tmp_path, Path("m.onnx"), H100_TRT11, "int8-512x1024")
    assert path.name == "m.nvidia_h100_80gb_hbm3.trt11.0.0.int8-512x1024.plan"


def test_default_cache_is_under_ros_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from panoptic_ros.resources import default_engine_cache_dir

    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    assert default_engine_cache_dir() == tmp_path / "panoptic_ros" / "engines"


def test_tensorrt_backend_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorrt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    from panoptic_ros.backends.trt_backend import TensorRTBackend

    with pytest.raises(BackendError, match="tensorrt is not installed"):
        TensorRTBackend(Path("x.plan"), METADATA, (512, 1024))


@pytest.mark.gpu
def test_real_engine_build_and_run(tiny_onnx_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    metadata = read_onnx_metadata(tiny_onnx_model)
    path, record = ensure_engine(
        tiny_onnx_model, metadata=metadata, input_hw=(128, 256), cache_dir=tmp_path
    )
    assert record.build_seconds > 0
    import numpy as np
    import onnxruntime as ort

    image = np.random.default_rng(0).integers(0, 255, (1, 128, 256, 3), dtype=np.uint8)
    with TensorRTBackend(path, metadata, (128, 256)) as backend:
        heads = backend.infer(image)
    reference = ort.InferenceSession(str(tiny_onnx_model)).run(None, {"image": image})
    assert np.abs(heads.semantic_logits - reference[0]).max() < 1e-2
