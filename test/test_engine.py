"""TensorRT engines without a GPU: build plans per version, staleness, cache, lock, and the
builder, backend and pipeline run end to end against a stand-in of TensorRT 10 and 11.

Building and running engines on real TensorRT needs an NVIDIA GPU; that test is marked
``gpu`` and skips with the reason here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_tensorrt import make_tensorrt

from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import BackendError, EngineError
from panoptic_ros.export.engine import (
    BuildPlan,
    DeviceInfo,
    EngineRecord,
    build_engine,
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

        self.builds += 1
        time.sleep(self.delay_s)
        device, plan, metadata = kwargs["device"], kwargs["plan"], kwargs["metadata"]
        shape = (1, *kwargs["input_hw"], 3)
        record = EngineRecord.of(
            onnx_path,
            device,
            plan,
            metadata.precision,
            (shape, shape, shape),
            plan_sha256=hashlib.sha256(b"plan").hexdigest(),
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
    sha8 = hashlib.sha256(b"model v1").hexdigest()[:8]
    assert path.name == f"model.{sha8}.orin.trt10.3.0.fp32-512x1024.plan"
    ensure_engine(onnx_path, **kwargs)
    assert builder.builds == 1  # fresh: reused
    ensure_engine(onnx_path, **{**kwargs, "device": replace(ORIN_TRT10, tensorrt_version="10.7.0")})
    assert builder.builds == 2  # another TensorRT: its own cache entry
    onnx_path.write_bytes(b"model v2")  # a new model is a new cache entry ...
    with pytest.raises(EngineError, match="no engine is cached yet"):
        ensure_engine(onnx_path, **kwargs, allow_build=False)
    # ... and an explicit engine path of the old one says what changed.
    with pytest.raises(EngineError, match="the ONNX model changed; run panoptic-ros build-engine"):
        ensure_engine(onnx_path, **kwargs, engine_path=path, allow_build=False)
    path, _ = ensure_engine(onnx_path, **kwargs)
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


def test_cache_path_names_the_model_gpu_and_version(tmp_path: Path) -> None:
    sha = "0123456789abcdef" * 4
    path = engine_cache_path(tmp_path, Path("m.onnx"), H100_TRT11, "int8-512x1024", sha)
    assert path.name == "m.01234567.nvidia_h100_80gb_hbm3.trt11.0.0.int8-512x1024.plan"


def test_models_with_the_same_name_keep_their_own_engines(tmp_path: Path) -> None:
    """city/model.onnx and kitti/model.onnx share a cache without rebuilding over each other."""
    builder = FakeBuilder()
    models = []
    for name in ("city", "kitti"):
        (tmp_path / name).mkdir()
        models.append(tmp_path / name / "model.onnx")
        models[-1].write_bytes(f"{name} weights".encode())
    kwargs: dict[str, Any] = {
        "metadata": METADATA,
        "input_hw": (512, 1024),
        "cache_dir": tmp_path / "cache",
        "device": H100_TRT11,
        "builder": builder,
    }
    paths = [ensure_engine(model, **kwargs)[0] for model in models]
    assert paths[0] != paths[1] and builder.builds == 2
    for model in models * 2:
        ensure_engine(model, **kwargs)
    assert builder.builds == 2  # each found its own fresh engine


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


def test_gpu_tests_skip_with_the_reason_without_cuda(request: pytest.FixtureRequest) -> None:
    """The ``gpu`` marker alone skips a test on a machine without CUDA, saying why."""
    from conftest import _cuda_missing

    reason = _cuda_missing()
    if reason is None:
        pytest.skip("a CUDA device is present: the gpu tests run")
    for item in request.session.items:
        if item.get_closest_marker("gpu") is not None:
            skips = [m.kwargs.get("reason", "") for m in item.iter_markers("skip")]
            assert reason in skips, item.nodeid


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


# ------------------------------------------------------------------ against the TensorRT stand-in
# test/fake_tensorrt.py follows the real bindings of TensorRT 10 and 11 (names, enums, return
# values, failure modes) and runs the ONNX model in ONNX Runtime at the addresses TensorRT is
# given. Torch CPU tensors stand in for device memory.

VERSIONS = ("10.3.0", "11.1.0")
STAND_IN_GPU = ("Stand-in GPU", "8.7", 16)


def _device(trt: types.ModuleType, dla_cores: int = 2) -> DeviceInfo:
    return DeviceInfo(trt.__version__, STAND_IN_GPU[0], STAND_IN_GPU[1], 16, dla_cores=dla_cores)


@pytest.fixture(params=VERSIONS)
def fake_trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The stand-in tensorrt module of TensorRT 10.3 or 11.1 (two DLA cores), imported as such."""
    module = make_tensorrt(request.param, dla_cores=2)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.fixture
def no_implicit_host_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU tensors refuse ``np.asarray(tensor)`` as CUDA tensors do (``TypeError``).

    The stand-in device memory is host memory, so code that silently treated a device tensor
    as a NumPy array would pass on CPU and crash on a GPU; within a test using this fixture
    it fails the same way. Explicit ``tensor.cpu().numpy()`` copies still work.
    """
    torch = pytest.importorskip("torch")

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"can't convert {self.device} device type tensor to numpy implicitly (stand-in for "
            "a CUDA tensor); use Tensor.cpu() to copy the tensor to host memory first"
        )

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)


def _build(
    trt: types.ModuleType,
    onnx_path: Path,
    tmp_path: Path,
    *,
    metadata: ModelMetadata | None = None,
    input_hw: tuple[int, int] = (128, 256),
    **kwargs: Any,
) -> tuple[Path, EngineRecord]:
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    return ensure_engine(
        onnx_path,
        metadata=metadata or read_onnx_metadata(onnx_path),
        input_hw=input_hw,
        cache_dir=tmp_path / "cache",
        device=_device(trt),
        **kwargs,
    )


def test_stand_in_follows_the_version(fake_trt: types.ModuleType) -> None:
    flags = fake_trt.NetworkDefinitionCreationFlag
    if fake_trt.__version__.startswith("10."):
        assert (int(flags.EXPLICIT_BATCH), int(flags.STRONGLY_TYPED)) == (0, 1)
        assert hasattr(fake_trt.BuilderFlag, "FP16") and hasattr(fake_trt.BuilderFlag, "INT8")
    else:
        assert int(flags.STRONGLY_TYPED) == 0 and not hasattr(flags, "EXPLICIT_BATCH")
        assert not hasattr(fake_trt.BuilderFlag, "FP16")
        assert not hasattr(fake_trt.BuilderFlag, "INT8")
    assert fake_trt.Runtime(fake_trt.Logger()).deserialize_cuda_engine(b"\x00" * 64) is None


@pytest.mark.parametrize("fp16_flag", [False, True])
def test_build_engine_sets_what_the_plan_says(
    fake_trt: types.ModuleType, tiny_onnx_model: Path, tmp_path: Path, fp16_flag: bool
) -> None:
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    metadata = read_onnx_metadata(tiny_onnx_model)
    device = _device(fake_trt)
    if fp16_flag and device.tensorrt_major >= 11:
        with pytest.raises(EngineError, match="no FP16 builder flag"):
            build_plan(device, metadata.precision, fp16_flag=True)
        return
    plan = build_plan(device, metadata.precision, fp16_flag=fp16_flag)
    record = build_engine(
        tiny_onnx_model,
        tmp_path / "e.plan",
        metadata=metadata,
        input_hw=(128, 256),
        device=device,
        plan=plan,
        workspace_mb=512,
        timing_cache=tmp_path / "timing.cache",
    )
    built = fake_trt.fake_builds[-1]
    assert built["strongly_typed"] == (not fp16_flag)  # the network creation flag reached it
    assert built["flags"] == (["FP16"] if fp16_flag else [])
    assert built["workspace_bytes"] == 512 << 20
    assert built["profiles"] == {"image": [[1, 128, 256, 3]] * 3}  # dynamic H, W need one
    assert built["device_type"] == "GPU"
    assert (record.strongly_typed, record.builder_flags) == (not fp16_flag, plan.builder_flags)
    assert record.precision == "fp32" and record.opt_shape == (1, 128, 256, 3)


def test_a_strongly_typed_network_refuses_precision_flags(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT 10 fails a build that mixes both; the plan never asks for it."""
    trt = make_tensorrt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    wrong = BuildPlan(True, ("FP16",), -1, "both")
    with pytest.raises(EngineError, match="failed to build"):
        build_engine(
            tiny_onnx_model,
            tmp_path / "e.plan",
            metadata=read_onnx_metadata(tiny_onnx_model),
            input_hw=(128, 256),
            device=_device(trt),
            plan=wrong,
        )
    assert not (tmp_path / "e.plan").exists()


def test_timing_cache_is_written_and_reused(
    fake_trt: types.ModuleType, tiny_onnx_model: Path, tmp_path: Path, caplog: Any
) -> None:
    with caplog.at_level("INFO"):
        path, first = _build(fake_trt, tiny_onnx_model, tmp_path)
    assert "engine build: Building engine" in caplog.text  # the progress monitor was called
    cold = fake_trt.fake_builds[-1]
    caches = list(path.parent.glob("timing.*.cache"))
    assert len(caches) == 1 and cold["timing_cache_hits"] == 0 and cold["timing_cache_misses"] > 0
    _build(fake_trt, tiny_onnx_model, tmp_path, force=True)
    warm = fake_trt.fake_builds[-1]
    assert warm["timing_cache_hits"] == cold["timing_cache_misses"]
    assert warm["timing_cache_misses"] == 0
    assert first.build_seconds >= 0


def test_dla_build_falls_back_to_the_gpu_and_runs_on_its_core(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.export.quantize import convert_fp16

    trt = make_tensorrt("10.3.0", dla_cores=2)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    fp16 = tmp_path / "tiny.fp16.onnx"
    metadata = convert_fp16(tiny_onnx_model, fp16)
    path, record = _build(trt, fp16, tmp_path, metadata=metadata, dla_core=1)
    built = trt.fake_builds[-1]
    assert (built["device_type"], built["dla_core"], built["flags"]) == ("DLA", 1, ["GPU_FALLBACK"])
    assert built["strongly_typed"] and record.dla_core == 1 and "-dla1-" in path.name
    backend = TensorRTBackend(path, metadata, (128, 256), device="cpu", dla_core=record.dla_core)
    assert backend._engine.executing_dla_core == 1  # the runtime was told the core


def test_unparsable_models_are_refused_with_the_parser_errors(
    fake_trt: types.ModuleType, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    import onnx

    from panoptic_ros.export.onnx_export import read_onnx_metadata

    proto = onnx.load(str(tiny_onnx_model))
    # A valid ONNX operator that TensorRT's parser has no importer for.
    proto.graph.node.append(onnx.helper.make_node("Det", ["offsets"], ["det"], name="det_op"))
    broken = tmp_path / "unsupported.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(EngineError, match=r"TensorRT cannot parse .*no importer .* Det") as caught:
        _build(fake_trt, broken, tmp_path, metadata=read_onnx_metadata(tiny_onnx_model))
    assert "\n" not in str(caught.value)


DEMO_HW = (256, 512)


def _demo_backend(trt: types.ModuleType, tmp_path: Path, **kwargs: Any) -> Any:
    """A TensorRT backend (stand-in, CPU tensors as device memory) for the bundled model."""
    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.export.onnx_export import read_onnx_metadata
    from panoptic_ros.resources import synthetic_model_path

    model = synthetic_model_path()
    metadata = read_onnx_metadata(model)
    path, record = _build(trt, model, tmp_path, metadata=metadata, input_hw=DEMO_HW, **kwargs)
    return TensorRTBackend(path, metadata, DEMO_HW, device="cpu", dla_core=record.dla_core)


def _ort_backend(model: Path | None = None) -> Any:
    from panoptic_ros.backends.ort_backend import OnnxRuntimeBackend
    from panoptic_ros.resources import synthetic_model_path

    return OnnxRuntimeBackend(model or synthetic_model_path(), device="cpu", num_threads=1)


def _scene(index: int, hw: tuple[int, int] = DEMO_HW) -> np.ndarray:
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene

    return generate_scene(HELD_OUT_SEED_START + index, *hw).image


def _assert_same_result(got: Any, want: Any) -> None:
    assert np.array_equal(got.semantic, want.semantic)
    assert np.array_equal(got.instance_ids, want.instance_ids)
    assert np.array_equal(got.drivable_mask, want.drivable_mask)
    assert len(got.instances) == len(want.instances)
    for a, b in zip(got.instances, want.instances, strict=True):
        assert (a.class_id, a.bbox_xyxy, a.area_px) == (b.class_id, b.bbox_xyxy, b.area_px)
        assert a.score == pytest.approx(b.score, rel=1e-5)


@pytest.mark.parametrize("gpu_fusion", [True, False])
def test_pipeline_on_tensorrt_equals_onnx_runtime(
    fake_trt: types.ModuleType, no_implicit_host_copies: None, tmp_path: Path, gpu_fusion: bool
) -> None:
    """Build, load and run the demo model end to end; same frames, same results as ORT.

    With gpu_fusion the pipeline takes the device path: the frame is letterboxed into a
    device tensor that goes to infer_tensors(), and the heads are fused in torch.
    """
    from panoptic_ros.fusion import FusionParams
    from panoptic_ros.pipeline import PanopticPipeline

    backend = _demo_backend(fake_trt, tmp_path)
    labels = backend.metadata.labels.with_drivable(["road"])
    with (
        PanopticPipeline(backend, labels, FusionParams(), gpu_fusion=gpu_fusion) as on_trt,
        PanopticPipeline(_ort_backend(), labels, FusionParams(), gpu_fusion=False) as on_ort,
    ):
        assert on_trt.device_fusion is gpu_fusion
        instances = 0
        for index in range(2):
            image = _scene(index)
            got, want = on_trt.process(image), on_ort.process(image)
            _assert_same_result(got, want)
            instances += len(want.instances)
            assert np.array_equal(on_trt.render(image, got), on_ort.render(image, want))
        assert instances > 0
    assert len(fake_trt.fake_executions) == 2


def test_device_outputs_stay_valid_and_device_inputs_are_copied(
    fake_trt: types.ModuleType, no_implicit_host_copies: None, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    backend = _demo_backend(fake_trt, tmp_path)
    first_frame, second_frame = _scene(0)[None], _scene(1)[None]
    first = backend.infer_tensors(first_frame)  # host array: through the staging buffer
    kept = [t.clone() for t in first]
    second = backend.infer_tensors(torch.from_numpy(second_frame))  # a tensor: copied
    assert all(t.dtype == torch.float32 for t in (*first, *second))
    assert all(torch.equal(a, b) for a, b in zip(first, kept, strict=True))  # not overwritten
    with _ort_backend() as reference:
        for heads, frame in ((first, first_frame), (second, second_frame)):
            expected = reference.infer(frame)
            for got, want in zip(
                heads,
                (expected.semantic_logits, expected.center_heatmap, expected.offsets),
                strict=True,
            ):
                np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-5, atol=1e-5)
    assert backend._context.stream_handles == [0, 0]  # torch's current stream (default off CUDA)
    host = backend.infer(first_frame)  # the host path copies, so it too survives later runs
    backend.infer(second_frame)
    np.testing.assert_array_equal(host.semantic_logits, kept[0].cpu().numpy())


def test_shapes_outside_the_engine_profile_are_refused(
    fake_trt: types.ModuleType, tmp_path: Path
) -> None:
    backend = _demo_backend(fake_trt, tmp_path)
    with pytest.raises(BackendError, match="outside its optimisation profile") as caught:
        backend.infer(np.zeros((1, 288, 512, 3), np.uint8))
    assert "\n" not in str(caught.value)
    with pytest.raises(BackendError, match="uint8 RGB"):
        backend.infer(np.zeros((1, *DEMO_HW, 3), np.float32))


def test_a_swapped_or_corrupted_plan_is_stale(
    fake_trt: types.ModuleType, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    """The record names the plan's SHA-256; a plan that differs is never loaded."""
    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    metadata = read_onnx_metadata(tiny_onnx_model)
    path, record = _build(fake_trt, tiny_onnx_model, tmp_path)
    assert record.plan_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    good = path.read_bytes()
    other, _ = _build(fake_trt, tiny_onnx_model, tmp_path, input_hw=(160, 256))
    variants = {
        "corrupted": good[:100] + bytes([good[100] ^ 1]) + good[101:],
        "swapped": other.read_bytes(),  # a complete plan, of another shape
    }
    for name, data in variants.items():
        path.write_bytes(data)
        with pytest.raises(EngineError, match="does not match its record's SHA-256") as caught:
            _build(fake_trt, tiny_onnx_model, tmp_path, allow_build=False)
        assert "\n" not in str(caught.value)
        assert path.read_bytes() == data, name  # refused, left alone
        builds = len(fake_trt.fake_builds)
        _, rebuilt = _build(fake_trt, tiny_onnx_model, tmp_path)
        assert len(fake_trt.fake_builds) == builds + 1, name
        assert rebuilt.plan_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Replaced between the check and the load: the backend checks the bytes it read.
    path.write_bytes(other.read_bytes())
    with pytest.raises(EngineError, match="does not match the SHA-256 of its record"):
        TensorRTBackend(path, metadata, (128, 256), device="cpu", plan_sha256=rebuilt.plan_sha256)
    # A record from before plan checksums is not trusted either.
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    del data["plan_sha256"]
    sidecar.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="no plan checksum"):
        _build(fake_trt, tiny_onnx_model, tmp_path, allow_build=False)


@pytest.fixture
def stand_in_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine answers as a GPU: device properties, and CPU tensors as device memory."""
    import panoptic_ros.backends.trt_backend as trt_backend
    import panoptic_ros.export.engine as engine

    class CpuMemory(trt_backend._TorchMemory):
        def __init__(self, device: str) -> None:
            super().__init__("cpu")

    monkeypatch.setattr(engine, "_gpu_properties", lambda index: STAND_IN_GPU)
    monkeypatch.setattr(trt_backend, "_TorchMemory", CpuMemory)


def test_the_node_uses_an_engine_built_for_a_dla_core(
    tiny_onnx_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in_gpu: None
) -> None:
    """build-engine --dla-core 1 --engine X, then the node's config names X and the core."""
    from panoptic_ros.cli.main import main
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.export.quantize import convert_fp16
    from panoptic_ros.pipeline import PanopticPipeline

    trt = make_tensorrt("10.3.0", dla_cores=2)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    model = tmp_path / "tiny.fp16.onnx"
    convert_fp16(tiny_onnx_model, model)
    engine = tmp_path / "engines" / "tiny.plan"
    command = ["build-engine", str(model), "--engine", str(engine), "--dla-core", "1"]
    assert main([*command, "--workspace-mb", "256", "--build-only"]) == 0
    assert (trt.fake_builds[-1]["dla_core"], trt.fake_builds[-1]["workspace_bytes"]) == (
        1,
        256 << 20,
    )
    built = engine.read_bytes()
    settings: dict[str, Any] = {
        "model.model_file_path": str(model),
        "model.engine_file_path": str(engine),
        "model.allow_engine_build": False,
        "backend.name": "tensorrt",
        "backend.device": "cuda:0",
        "backend.allow_fallback": False,
    }
    with pytest.raises(EngineError, match="built for DLA core 1, -1 is configured"):
        PanopticPipeline.from_config(config_from_flat(settings))
    settings["model.dla_core"] = 1
    with PanopticPipeline.from_config(config_from_flat(settings)) as pipeline:
        assert pipeline.backend.name == "tensorrt"
        assert pipeline.backend._engine.executing_dla_core == 1
        result = pipeline.process(_scene(0, (128, 256)))
        assert result.semantic.shape == (128, 256)
    assert len(trt.fake_builds) == 1 and engine.read_bytes() == built  # used, not rebuilt
    # The configured workspace reaches a rebuild (forced here).
    settings.update({"model.force_engine_update": True, "model.workspace_mb": 64})
    settings["model.allow_engine_build"] = True
    with PanopticPipeline.from_config(config_from_flat(settings)):
        pass
    assert (trt.fake_builds[-1]["dla_core"], trt.fake_builds[-1]["workspace_bytes"]) == (
        1,
        64 << 20,
    )


def test_fused_engines_run_under_tensorrt(
    fake_trt: types.ModuleType,
    tmp_path: Path,
    stand_in_gpu: None,
    no_implicit_host_copies: None,
) -> None:
    """A fused-contract model: same maps and table as ONNX Runtime, through the pipeline too."""
    pytest.importorskip("torch")
    from test_fused_export import LABELS, PARAMS, export_fused_heads
    from test_fusion_torch import realistic_heads

    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.cli.main import main
    from panoptic_ros.export.onnx_export import read_onnx_metadata
    from panoptic_ros.pipeline import PanopticPipeline

    heads = realistic_heads(3)
    model = export_fused_heads(heads, tmp_path / "fused.onnx")
    metadata = read_onnx_metadata(model)
    hw = metadata.input_hw
    engine = tmp_path / "fused.plan"
    assert main(["build-engine", str(model), "--engine", str(engine)]) == 0  # test run included
    backend = TensorRTBackend(engine, metadata, hw, device="cuda:0")
    assert backend.fused and not backend.device_outputs
    image = _scene(0, hw)
    got = backend.infer_fused(image[None])
    with _ort_backend(model) as reference:
        want = reference.infer_fused(image[None])
    assert [a.dtype for a in got] == [b.dtype for b in want]
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert int(got[3][0]) > 0
    with pytest.raises(BackendError, match="fused contract; use infer_fused"):
        backend.infer(image[None])
    with (
        PanopticPipeline(backend, LABELS, PARAMS) as on_trt,
        PanopticPipeline(_ort_backend(model), LABELS, PARAMS) as on_ort,
    ):
        assert not on_trt.device_fusion
        _assert_same_result(on_trt.process(image), on_ort.process(image))


def test_int8_models_from_quantize_build_and_run(
    fake_trt: types.ModuleType, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    """TensorRT's parser takes quantize's Q/DQ model (int8 zero points 0, float biases)."""
    from panoptic_ros.backends.trt_backend import TensorRTBackend
    from panoptic_ros.export.quantize import calibration_frames, quantize_int8
    from panoptic_ros.resources import sample_bag_path

    frames = calibration_frames(sample_bag_path(), (128, 256), count=2)
    model = tmp_path / "tiny.int8.onnx"
    metadata = quantize_int8(tiny_onnx_model, model, frames, method="minmax")
    path, record = _build(fake_trt, model, tmp_path, metadata=metadata)
    assert record.precision == "int8" and fake_trt.fake_builds[-1]["flags"] == []
    assert fake_trt.fake_builds[-1]["strongly_typed"]
    backend = TensorRTBackend(path, metadata, (128, 256), device="cpu")
    with _ort_backend(model) as reference:
        want = reference.infer(frames[0][None])
    got = backend.infer(frames[0][None])
    np.testing.assert_allclose(got.semantic_logits, want.semantic_logits, rtol=1e-5, atol=1e-5)


def test_fp16_precision_uses_the_legacy_flag_on_10_and_the_model_on_11(
    fake_trt: types.ModuleType,
    tiny_onnx_model: Path,
    tmp_path: Path,
    stand_in_gpu: None,
    caplog: Any,
) -> None:
    """backend.precision=fp16 with an FP32 model: TensorRT 10 builds with its FP16 flag;
    TensorRT 11 has none, so it builds the model as it is and says so (it used to refuse,
    and auto then fell back to torch)."""
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.pipeline import PanopticPipeline

    settings: dict[str, Any] = {
        "model.model_file_path": str(tiny_onnx_model),
        "model.engine_cache_dir": str(tmp_path / "cache"),
        "backend.name": "tensorrt",
        "backend.device": "cuda:0",
        "backend.precision": "fp16",
        "backend.allow_fallback": False,
    }
    with (
        caplog.at_level("WARNING", logger="panoptic_ros.backends.trt_backend"),
        PanopticPipeline.from_config(config_from_flat(settings)) as pipeline,
    ):
        assert pipeline.backend.name == "tensorrt"
    built = fake_trt.fake_builds[-1]
    warnings = [r.getMessage() for r in caplog.records]
    if fake_trt.__version__.startswith("10."):
        assert built["flags"] == ["FP16"] and not built["strongly_typed"]
        assert warnings == []
    else:
        assert built["flags"] == [] and built["strongly_typed"]
        assert len(warnings) == 1 and "has no effect on TensorRT 11" in warnings[0]
