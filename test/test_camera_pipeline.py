"""One camera's tail (decode to messages), the stage vocabulary and backend capabilities.

The node, ``replay`` and ``bench`` all run frames through
:class:`panoptic_ros.camera_pipeline.CameraPipeline`; these tests pin what it does
(stages timed under one set of names, tracker applied, outputs built only when wanted,
header kept) and how the pipeline tells a backend's capabilities without probing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from bag_fixtures import FakePipeline, FakeTracker, make_frames
from oracle import OracleBackend

from panoptic_ros.backends.base import Backend, BackendBase, DeviceBackend, FusedBackend
from panoptic_ros.bags import make_typestore
from panoptic_ros.camera_pipeline import CameraPipeline
from panoptic_ros.config import RenderConfig
from panoptic_ros.errors import BackendError, CodecError, ConfigError
from panoptic_ros.fusion import FusionParams
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.output_paths import check_output
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.results import FrameResult, StageTimings
from panoptic_ros.ros_messages import OUTPUT_TOPICS, MessageClasses, header_message, image_message
from panoptic_ros.timing import STAGES, StageStats
from panoptic_ros.tracking import InstanceTracker

CLASSES = MessageClasses.from_typestore(make_typestore())


def _message(index: int = 0, frame_id: str = "cam") -> Any:
    """A rosbags ``sensor_msgs/Image`` (bgr8) of one of the fixtures' frames."""
    rgb = make_frames(index + 1)[index]
    header = header_message(CLASSES, 1_000_000_000 + index, frame_id)
    return image_message(CLASSES, header, np.ascontiguousarray(rgb[..., ::-1]), "bgr8")


class _CountingPipeline(FakePipeline):
    def __init__(self) -> None:
        super().__init__()
        self.draws = 0

    def render(
        self,
        image: npt.NDArray[np.uint8],
        result: FrameResult,
        *,
        alpha: float = 0.5,
        draw_boxes: bool = True,
    ) -> npt.NDArray[np.uint8]:
        self.draws += 1
        return super().render(image, result, alpha=alpha, draw_boxes=draw_boxes)


def test_every_stage_is_timed_and_the_header_kept() -> None:
    camera = CameraPipeline(FakePipeline(), CLASSES, tracker=FakeTracker())
    message = _message()
    frame = camera.process(message, render=RenderConfig())

    timings = frame.result.timings.as_dict()
    assert tuple(timings) == STAGES
    # decode..fusion come from the pipeline (the fake's fixed 1, 2, 3 ms), the rest is
    # measured by the tail.
    assert (timings["preprocess"], timings["inference"], timings["fusion"]) == (1.0, 2.0, 3.0)
    for stage in ("tracking", "overlay", "messages"):
        assert timings[stage] > 0, stage
    assert frame.result.timings.total_ms == pytest.approx(sum(timings.values()))

    assert list(frame.messages) == list(OUTPUT_TOPICS)
    assert all(m.header is message.header for m in frame.messages.values())
    # The tracker ran before the messages were built: the detection carries its id.
    (detection,) = frame.messages["instances"].detections
    assert detection.id == "1001"
    assert frame.overlay is not None
    assert frame.overlay.shape == (*frame.image.shape[:2], 3)
    assert np.array_equal(
        np.frombuffer(bytes(frame.messages["overlay"].data), np.uint8), frame.overlay.reshape(-1)
    )


def test_only_the_wanted_outputs_are_built() -> None:
    pipeline = _CountingPipeline()
    camera = CameraPipeline(pipeline, CLASSES, tracker=FakeTracker())
    frame = camera.process(_message(), render=RenderConfig(), outputs={"semantic", "instances"})
    assert sorted(frame.messages) == ["instances", "semantic"]
    assert frame.overlay is None
    assert pipeline.draws == 0
    assert frame.result.timings.overlay_ms == 0.0

    frame = camera.process(_message(), render=RenderConfig(), outputs={"overlay"})
    assert list(frame.messages) == ["overlay"] and pipeline.draws == 1


def test_each_camera_keeps_its_own_ids() -> None:
    """The default tracker is the camera's: ids persist over its frames, not across cameras."""
    pipeline = FakePipeline()
    front = CameraPipeline(pipeline, CLASSES)
    rear = CameraPipeline(pipeline, CLASSES)
    assert isinstance(front.tracker, InstanceTracker)
    assert front.tracker is not rear.tracker
    ids = [front.process(_message(), render=RenderConfig()).result.instances[0].track_id]
    ids.append(front.process(_message(), render=RenderConfig()).result.instances[0].track_id)
    rear_id = rear.process(_message(), render=RenderConfig()).result.instances[0].track_id
    assert ids[0] == ids[1] > 0  # the same car in the same place: one id
    assert rear_id == ids[0]  # a fresh counter: each camera numbers its own objects


def test_an_undecodable_frame_raises_before_tracking() -> None:
    tracker = FakeTracker()
    camera = CameraPipeline(FakePipeline(), CLASSES, tracker=tracker)
    message = _message()
    message.encoding = "rgb9"
    with pytest.raises(CodecError, match="rgb9"):
        camera.process(message, render=RenderConfig())
    assert tracker.frames == 0


def test_stage_timings_and_statistics() -> None:
    timings = StageTimings(decode_ms=1.0, tracking_ms=2.0, overlay_ms=3.0, messages_ms=4.0)
    assert timings.as_dict() == {
        "decode": 1.0,
        "preprocess": 0.0,
        "inference": 0.0,
        "fusion": 0.0,
        "tracking": 2.0,
        "overlay": 3.0,
        "messages": 4.0,
    }
    assert timings.total_ms == 10.0
    stats = StageStats.of([float(v) for v in range(1, 101)])
    assert (stats.p50_ms, stats.mean_ms) == (50.5, 50.5)
    assert stats.p99_ms == pytest.approx(99.01)
    assert StageStats.of([]) == StageStats(0.0, 0.0, 0.0)


# ---------------------------------------------------------------- backend capabilities


def test_the_backends_declare_their_capabilities() -> None:
    oracle = OracleBackend((64, 128), CITYSCAPES)
    assert isinstance(oracle, Backend)
    assert not isinstance(oracle, DeviceBackend | FusedBackend)
    assert (oracle.device_outputs, oracle.fused) == (False, False)
    from panoptic_ros.backends.ort_backend import OnnxRuntimeBackend
    from panoptic_ros.backends.torch_backend import TorchBackend
    from panoptic_ros.backends.trt_backend import TensorRTBackend

    for backend in (OnnxRuntimeBackend, TorchBackend, TensorRTBackend):
        assert issubclass(backend, BackendBase)
    assert hasattr(OnnxRuntimeBackend, "infer_fused")
    assert hasattr(TorchBackend, "infer_tensors")
    assert hasattr(TensorRTBackend, "infer_fused") and hasattr(TensorRTBackend, "infer_tensors")


class _Liar(OracleBackend):
    """Says it can do more than it has the methods for."""


@pytest.mark.parametrize(
    ("capability", "missing"), [("fused", "infer_fused"), ("device_outputs", "infer_tensors")]
)
def test_a_capability_without_its_method_is_refused(capability: str, missing: str) -> None:
    backend = _Liar((64, 128), CITYSCAPES)
    setattr(backend, capability, True)
    with pytest.raises(BackendError, match=f"says {capability} but has no {missing}"):
        PanopticPipeline(backend, CITYSCAPES, FusionParams())


class _FusedOracle(OracleBackend):
    """Declares a fused model and answers through ``infer_fused`` (from the oracle's heads)."""

    fused = True

    def __init__(self, network_hw: tuple[int, int]) -> None:
        super().__init__(network_hw, CITYSCAPES)
        self.fused_calls = 0

    def infer(self, images: npt.NDArray[np.uint8]) -> Any:
        raise AssertionError("a fused backend is run through infer_fused")

    def infer_fused(self, images: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], ...]:
        self.fused_calls += 1
        h, w = images.shape[1] // 4, images.shape[2] // 4
        semantic = np.full((1, h, w), CITYSCAPES.index("road"), np.int64)
        instance = np.zeros((1, h, w), np.int64)
        return semantic, instance, np.zeros((1, 1, 4), np.float32), np.zeros((1,), np.int64)


def test_a_fused_backend_is_run_through_infer_fused() -> None:
    backend = _FusedOracle((64, 128))
    assert isinstance(backend, FusedBackend)
    with PanopticPipeline(backend, CITYSCAPES, FusionParams()) as pipeline:
        assert not pipeline.device_fusion
        result = pipeline.process(np.zeros((64, 128, 3), np.uint8))
    assert backend.fused_calls == 1
    assert np.all(result.semantic == CITYSCAPES.index("road"))


def test_backend_base_closes_on_exit() -> None:
    closed = []

    class _Closing(BackendBase):
        def close(self) -> None:
            closed.append(True)

    with _Closing() as backend:
        assert isinstance(backend, _Closing)
    assert closed == [True]


# ---------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    ("where", "says"),
    [("same", r"\(the same path\)"), ("inside", r"\(inside it\)"), ("parent", r"\(contains it\)")],
)
def test_an_output_overlapping_an_input_is_refused(tmp_path: Path, where: str, says: str) -> None:
    source = tmp_path / "in" / "bag"
    source.mkdir(parents=True)
    output = {"same": source, "inside": source / "out", "parent": tmp_path / "in"}[where]
    with pytest.raises(ConfigError, match=says):
        check_output(output, True, [source])


def test_an_existing_output_needs_overwrite(tmp_path: Path) -> None:
    output = tmp_path / "out"
    check_output(output, False)  # nothing there yet
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for existing in (tmp_path / "gone", tmp_path):  # a dangling link counts as existing
        with pytest.raises(ConfigError, match="exists; pass --overwrite"):
            check_output(existing, False)
        check_output(existing, True)
