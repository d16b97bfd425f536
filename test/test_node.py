"""panoptic_node driven through the rclpy stand-in (test/ros_standin), with real frames.

The stand-in checks message field types as rclpy's generated classes do and passes every
published message through CDR (rosbags), so a wrong field type or layout fails here. The
same behaviours run against real rclpy in test_node_launch.py on a ROS 2 machine.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from panoptic_ros.codec import decode_image, encode_raw
from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.results import FrameResult, Instance
from panoptic_ros.timing import STAGES

STANDIN = Path(__file__).parent / "ros_standin"
ROS_MODULES = (
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "vision_msgs",
    "diagnostic_msgs",
    "nav_msgs",
    "visualization_msgs",
    "tf2_msgs",
    "tf2_ros",
    "lifecycle_msgs",
    "standin_messages",
)


@pytest.fixture
def ros(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import the stand-in in place of rclpy (the venv's rclpy-intellisense has no C core)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ROS_MODULES or name == "panoptic_ros.ros.node":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(STANDIN))
    rclpy = importlib.import_module("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.shutdown()
    for name in list(sys.modules):
        if name.split(".")[0] in ROS_MODULES or name == "panoptic_ros.ros.node":
            del sys.modules[name]


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the node")
        time.sleep(0.01)


class Probe:
    """A second node that publishes camera frames and records what panoptic_node sends."""

    def __init__(self, ros: Any, image_topic: str = "/camera/image_raw") -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage, Image

        self.node = Node("probe")
        self.received: dict[str, list[Any]] = {}
        self._sensor_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = self.node.create_publisher(Image, image_topic, self._sensor_qos)
        self.compressed_pub = self.node.create_publisher(
            CompressedImage, image_topic + "/compressed", self._sensor_qos
        )

    def publisher(self, msg_type: type, topic: str) -> Any:
        return self.node.create_publisher(msg_type, topic, self._sensor_qos)

    def listen(self, topic: str, msg_type: type) -> list[Any]:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        box: list[Any] = self.received.setdefault(topic, [])
        self.node.create_subscription(
            msg_type,
            topic,
            box.append,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
        )
        return box

    def listen_outputs(self, prefix: str = "/panoptic/front") -> dict[str, list[Any]]:
        from nav_msgs.msg import OccupancyGrid
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        types = {"instances": Detection2DArray, "drivable_grid": OccupancyGrid}
        names = (
            "drivable_mask",
            "semantic",
            "instance_ids",
            "instances",
            "overlay",
            "drivable_grid",
        )
        return {n: self.listen(f"{prefix}/{n}", types.get(n, Image)) for n in names}


def rosbags_to_standin(message: Any, typename: str) -> Any:
    from standin_messages import from_rosbags

    return from_rosbags(message, typename)


def image_message(
    rgb: np.ndarray,
    *,
    encoding: str = "rgb8",
    stamp_ns: int = 1_700_000_000_040_000_000,
    frame_id: str = "camera_front_optical_frame",
) -> Any:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    if encoding == "rgb9":
        fields = replace(encode_raw(rgb, "rgb8"), encoding="rgb9")
    else:
        fields = encode_raw(rgb, encoding)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    data = __import__("array").array("B")
    data.frombytes(fields.data)
    return Image(
        header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=int(fields.is_bigendian),
        step=fields.step,
        data=data,
    )


def dashcam_frames(shared_bags: Path, count: int) -> list[Any]:
    from rosbags.highlevel import AnyReader

    from panoptic_ros.bags import make_typestore

    frames = []
    with AnyReader(
        [shared_bags / "dashcam_raw_mcap"], default_typestore=make_typestore()
    ) as reader:
        for connection, _, raw in reader.messages(connections=reader.connections):
            frames.append(
                rosbags_to_standin(reader.deserialize(raw, connection.msgtype), connection.msgtype)
            )
            if len(frames) == count:
                break
    return frames


class FakePipeline:
    """Deterministic stand-in for PanopticPipeline: left half drivable, one car box."""

    def __init__(self, *, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        from panoptic_ros.fusion import FusionParams

        self.labels = CITYSCAPES.with_drivable(["road"])
        self.fusion = FusionParams()
        self.delay_s = delay_s
        self.gate = gate
        self.processed: list[str] = []
        self.closed = False
        self.backend = type(
            "B",
            (),
            {
                "name": "fake",
                "device": "cpu",
                "model_path": "fake.onnx",
                "metadata": type("M", (), {"labels": CITYSCAPES})(),
            },
        )()

    def describe(self) -> str:
        return "backend=fake"

    def process_message(self, message: Any) -> tuple[np.ndarray, FrameResult]:
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay_s)
        image = decode_image(message)
        h, w = image.shape[:2]
        semantic = np.full((h, w), 2, np.uint8)
        semantic[:, : w // 2] = 0
        ids = np.zeros((h, w), np.uint16)
        ids[h // 4 : h // 2, w // 4 : w // 2] = 1
        semantic[ids == 1] = 13
        self.processed.append(message.header.frame_id)
        area = int((ids == 1).sum())
        car = Instance(
            1,
            13,
            "car",
            0.9,
            (w // 4, h // 4, w // 2 - 1, h // 2 - 1),
            area,
            ((h // 4 + h // 2 - 1) / 2, (w // 4 + w // 2 - 1) / 2),
        )
        drivable = np.where(semantic == 0, 255, 0).astype(np.uint8)
        return image, FrameResult(semantic, ids, drivable, (car,))

    def render(self, image: np.ndarray, result: FrameResult, **kwargs: Any) -> np.ndarray:
        from panoptic_ros.render import render_overlay

        return render_overlay(image, result, self.labels, **kwargs)

    def close(self) -> None:
        self.closed = True


def make_node(ros: Any, pipeline: Any = None, **parameters: Any) -> Any:
    from rclpy.parameter import Parameter

    from panoptic_ros.ros.node import PanopticNode

    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    factory = (lambda config: pipeline) if pipeline is not None else None
    kwargs: dict[str, Any] = {"namespace": "/panoptic", "parameter_overrides": overrides}
    if factory is not None:
        kwargs["pipeline_factory"] = factory
    return PanopticNode(**kwargs)


# ---------------------------------------------------------------------------- tests


def test_real_frames_through_the_real_pipeline(
    ros: Any, shared_bags: Path, tiny_onnx_model: Path
) -> None:
    node = make_node(
        ros, **{"model.model_file_path": str(tiny_onnx_model), "backend.name": "onnxruntime"}
    )
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        frames = dashcam_frames(shared_bags, 2)
        for frame in frames:
            probe.image_pub.publish(frame)
            wait_for(lambda: len(outputs["overlay"]) >= frames.index(frame) + 1)
        assert len(outputs["drivable_grid"]) == 0  # off by default
        for name in ("drivable_mask", "semantic", "instance_ids", "overlay"):
            message = outputs[name][-1]
            assert message.header == frames[-1].header, name  # stamp and frame_id unchanged
            assert (message.height, message.width) == (540, 960)
        assert outputs["drivable_mask"][-1].encoding == "mono8"
        assert outputs["instance_ids"][-1].encoding == "16UC1"
        assert outputs["overlay"][-1].encoding == "bgr8"
        ids = np.frombuffer(outputs["instance_ids"][-1].data, "<u2").reshape(540, 960)
        detections = outputs["instances"][-1].detections
        assert int(ids.max()) == len(detections)
        assert outputs["instances"][-1].header == frames[-1].header
    finally:
        node.destroy_node()


def test_outputs_follow_the_contract(ros: Any) -> None:
    pipeline = FakePipeline()
    node = make_node(ros, pipeline)
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        rgb = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        frame = image_message(rgb, encoding="bgr8")
        probe.image_pub.publish(frame)
        # Outputs go out one after another: wait for the last image-plane one too.
        image_plane = ("drivable_mask", "semantic", "instance_ids", "instances", "overlay")
        wait_for(lambda: all(len(outputs[name]) == 1 for name in image_plane))
        mask = np.frombuffer(outputs["drivable_mask"][0].data, np.uint8).reshape(60, 80)
        assert np.all(mask[:, :20] == 255)
        assert np.all(mask[:, 40:] == 0)
        assert np.all(mask[15:30, 20:40] == 0)  # the car stands on the road: not drivable
        (detection,) = outputs["instances"][0].detections
        assert detection.results[0].hypothesis.class_id == "car"
        assert detection.bbox.center.position.x == pytest.approx((20 + 39) / 2)
        assert detection.bbox.size_x == pytest.approx(20.0)
        assert detection.id == "1"
        assert detection.header == frame.header
        overlay = np.frombuffer(outputs["overlay"][0].data, np.uint8).reshape(60, 80, 3)
        assert overlay.shape == (60, 80, 3)
    finally:
        node.destroy_node()
    assert pipeline.closed


def test_object_ids_persist_and_are_not_reused(ros: Any) -> None:
    node = make_node(ros, FakePipeline())
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        rgb = np.zeros((60, 80, 3), np.uint8)
        for index in range(3):
            probe.image_pub.publish(image_message(rgb, stamp_ns=1_700_000_000_000_000_000 + index))
            wait_for(lambda: len(outputs["instances"]) == index + 1)
        assert [o.detections[0].id for o in outputs["instances"]] == ["1", "1", "1"]
    finally:
        node.destroy_node()


def test_no_subscriber_no_messages(ros: Any) -> None:
    pipeline = FakePipeline()
    node = make_node(ros, pipeline)
    try:
        probe = Probe(ros)
        probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8)))
        wait_for(lambda: node._cameras["front"].stats.processed_total == 1)
        assert all(p.published == 0 for p in node._cameras["front"].publishers.values())
        semantic = probe.listen(
            "/panoptic/front/semantic", type(image_message(np.zeros((2, 2, 3), np.uint8)))
        )
        probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8)))
        wait_for(lambda: len(semantic) == 1)
        publishers = node._cameras["front"].publishers
        assert publishers["semantic"].published == 1
        assert publishers["overlay"].published == 0
    finally:
        node.destroy_node()


def test_superseded_frames_are_dropped_and_counted(ros: Any) -> None:
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    node = make_node(ros, pipeline)
    try:
        probe = Probe(ros)
        probe.listen_outputs()
        rgb = np.zeros((20, 30, 3), np.uint8)
        for index in range(12):
            probe.image_pub.publish(image_message(rgb, frame_id=f"f{index}"))
            time.sleep(0.002)
        gate.set()
        wait_for(lambda: pipeline.processed and pipeline.processed[-1] == "f11")
        # The worker took the first frame, then only the newest: nothing queued behind.
        assert len(pipeline.processed) <= 3
        stats = node._cameras["front"].stats
        wait_for(lambda: stats.processed_total == len(pipeline.processed))
        node.publish_diagnostics()
        assert node._mailbox.dropped("front") == 12 - len(pipeline.processed)
    finally:
        node.destroy_node()


def test_bad_frame_is_counted_and_the_node_keeps_running(ros: Any) -> None:
    from rclpy.logging import LOG

    node = make_node(ros, FakePipeline())
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        diagnostics = probe.listen(
            "/diagnostics", __import__("diagnostic_msgs.msg").msg.DiagnosticArray
        )
        for _ in range(3):
            probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8), encoding="rgb9"))
            time.sleep(0.05)
        probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8)))
        wait_for(lambda: len(outputs["semantic"]) == 1)
        warnings = [m for _, level, m in LOG if level == "WARN" and "rgb9" in m]
        assert len(warnings) == 1  # throttled: one line, not one per frame
        assert "unsupported image encoding 'rgb9'" in warnings[0]
        wait_for(lambda: node._cameras["front"].stats.processed_total == 1)
        node.publish_diagnostics()
        status = diagnostics[-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert values["frames_failed"] == "3"
        assert values["errors_codec"] == "3"
        # The published frame's stages, under the names replay and bench use.
        assert [k for k in values if k.endswith("_p50_ms") and k[:-7] in STAGES] == [
            f"{stage}_p50_ms" for stage in STAGES
        ]
        assert status.level == bytes([1])  # WARN
        assert status.name == "panoptic_node: front"
    finally:
        node.destroy_node()


def test_diagnostics_run_on_a_steady_clock(ros: Any) -> None:
    from rclpy.clock import ClockType

    node = make_node(ros, FakePipeline())
    try:
        (timer,) = node.timers
        assert timer.clock.clock_type == ClockType.STEADY_TIME
        assert timer.timer_period_ns == 1_000_000_000
        probe = Probe(ros)
        diagnostics = probe.listen(
            "/diagnostics", __import__("diagnostic_msgs.msg").msg.DiagnosticArray
        )
        timer.callback()
        status = diagnostics[0].status[0]
        assert status.level == bytes([1])
        assert status.message == "no input received yet"
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("fusion.nms_kernel", 4, "must be odd"),
        ("fusion.center_threshold", 2.0, "center_threshold"),
        ("backend.name", "cuda", "must be one of"),
        ("node.image_topics", ["/a", "/b"], "give one topic per camera"),
        ("fusion.top_k", 1.5, "expecting type 'INTEGER'"),
    ],
)
def test_invalid_parameters_fail_at_startup(ros: Any, name: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_node(ros, FakePipeline(), **{name: value})


def test_empty_list_on_the_command_line(ros: Any) -> None:
    """``-p name:=[]`` declares the parameter without a type (as rcl does): read as []."""
    node = make_node(ros, FakePipeline(), **{"labels.drivable_classes": None})
    try:
        assert node.config.labels.drivable_classes == ()
    finally:
        node.destroy_node()
    with pytest.raises(ConfigError, match="at least one camera"):
        make_node(ros, FakePipeline(), **{"node.camera_names": None})


def test_runtime_parameter_changes_are_validated(ros: Any) -> None:
    from rclpy.parameter import Parameter

    pipeline = FakePipeline()
    node = make_node(ros, pipeline)
    try:
        (ok,) = node.set_parameters([Parameter("fusion.center_threshold", value=0.4)])
        assert ok.successful
        assert pipeline.fusion.center_threshold == 0.4
        (bad,) = node.set_parameters([Parameter("fusion.nms_kernel", value=4)])
        assert not bad.successful and "must be odd" in bad.reason
        (fixed,) = node.set_parameters([Parameter("model.model_file_path", value="x.onnx")])
        assert not fixed.successful and "read-only" in fixed.reason
        (unknown,) = node.set_parameters([Parameter("labels.drivable_classes", value=["lava"])])
        assert not unknown.successful and "unknown class 'lava'" in unknown.reason
        (more,) = node.set_parameters(
            [Parameter("labels.drivable_classes", value=["road", "sidewalk"])]
        )
        assert more.successful
        assert set(pipeline.labels.drivable) == {0, 1}
        (off,) = node.set_parameters([Parameter("node.publish_overlay", value=False)])
        assert off.successful
        assert "overlay" not in node._cameras["front"].publishers
    finally:
        node.destroy_node()


def test_two_cameras_one_flooding(ros: Any) -> None:
    pipeline = FakePipeline(delay_s=0.02)
    node = make_node(
        ros,
        pipeline,
        **{
            "node.camera_names": ["front", "rear"],
            "node.image_topics": ["/front/image", "/rear/image"],
        },
    )
    try:
        probe = Probe(ros)
        from sensor_msgs.msg import Image

        front = probe.publisher(Image, "/front/image")
        rear = probe.publisher(Image, "/rear/image")
        rear_out = probe.listen("/panoptic/rear/semantic", Image)
        rgb = np.zeros((20, 30, 3), np.uint8)
        for index in range(150):
            front.publish(image_message(rgb, frame_id="front"))
            if index % 30 == 0:
                rear.publish(image_message(rgb, frame_id="rear"))
            time.sleep(0.002)
        wait_for(lambda: len(rear_out) == 5)
        assert node._mailbox.dropped("rear") == 0
        assert node._mailbox.dropped("front") > 50
    finally:
        node.destroy_node()


def test_drivable_grid_from_camera_info_and_tf(ros: Any) -> None:
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    node = make_node(ros, FakePipeline(), **{"node.publish_drivable_grid": True})
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        # The usual static transform: optical frame 1.5 m above base_footprint, REP 103 axes.
        mount = TransformStamped(
            header=Header(stamp=Time(sec=0, nanosec=0), frame_id="base_footprint"),
            child_frame_id="camera_front_optical_frame",
            transform=Transform(
                translation=Vector3(x=0.0, y=0.0, z=1.5),
                rotation=Quaternion(x=-0.5, y=0.5, z=-0.5, w=0.5),
            ),
        )
        from rclpy.qos import DurabilityPolicy, QoSProfile

        static_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        tf_static = probe.node.create_publisher(TFMessage, "/tf_static", static_qos)
        tf_static.publish(TFMessage(transforms=[mount]))
        info = CameraInfo(
            width=80,
            height=60,
            distortion_model="plumb_bob",
            d=[0.0] * 5,
            k=np.array([40.0, 0, 40, 0, 40.0, 30, 0, 0, 1]),
            p=np.array([40.0, 0, 40, 0, 0, 40.0, 30, 0, 0, 0, 1, 0]),
        )
        probe.publisher(CameraInfo, "/camera/camera_info").publish(info)
        frame = image_message(np.zeros((60, 80, 3), np.uint8))
        probe.image_pub.publish(frame)
        wait_for(lambda: len(outputs["drivable_grid"]) == 1)
        grid = outputs["drivable_grid"][0]
        assert grid.header.stamp == frame.header.stamp
        assert grid.header.frame_id == "base_footprint"
        assert (grid.info.width, grid.info.height) == (200, 100)
        assert (grid.info.origin.position.x, grid.info.origin.position.y) == (0.0, -10.0)
        cells = np.asarray(grid.data, np.int8).reshape(100, 200)
        # The fake mask is drivable on the image's left half, i.e. at +y (left) ahead.
        assert cells[75, 50] == 0  # x = 10.1 m, y = +5.1 m
        assert cells[25, 50] == 100  # x = 10.1 m, y = -4.9 m
        assert np.all(cells[:, 0] == -1)  # right under the car: below the image
    finally:
        node.destroy_node()


def yaml_overrides(text: str) -> dict[str, Any]:
    """Parameter overrides as `ros2 run ... --params-file` hands them to the node."""
    import yaml

    from panoptic_ros.config import flatten_config

    document = yaml.safe_load(text)
    return flatten_config(document["/**"]["ros__parameters"])


def test_bundled_params_file_gives_the_defaults(ros: Any) -> None:
    from panoptic_ros.config import Config

    text = (Path(__file__).parent.parent / "config" / "panoptic.yaml").read_text()
    node = make_node(ros, FakePipeline(), **yaml_overrides(text))
    try:
        assert node.config.fusion == Config().fusion
        assert node.config.node == Config().node
        descriptor = node._descriptors["fusion.center_threshold"]
        assert descriptor.description.startswith("minimum centre-heatmap value")
        assert descriptor.floating_point_range[0].to_value == 1.0
        assert node._descriptors["model.model_file_path"].read_only
        assert "one of: auto, tensorrt" in node._descriptors["backend.name"].additional_constraints
    finally:
        node.destroy_node()


def test_params_file_overrides(ros: Any) -> None:
    text = """
/**:
  ros__parameters:
    fusion:
      center_threshold: 0.3
    node:
      camera_names: [left, right]
      image_topics: [/stereo/left/image_raw, /stereo/right/image_raw]
      input_transport: compressed
      publish_overlay: false
"""
    node = make_node(ros, FakePipeline(), **yaml_overrides(text))
    try:
        assert node.config.fusion.center_threshold == 0.3
        topics = sorted(s.topic_name for s in node.subscriptions)
        assert topics == ["/stereo/left/image_raw/compressed", "/stereo/right/image_raw/compressed"]
        published = sorted(p.topic_name for p in node.publishers)
        assert "/panoptic/left/semantic" in published
        assert not any(name.endswith("overlay") for name in published)
    finally:
        node.destroy_node()


def test_one_cameras_bad_frames_do_not_affect_another(ros: Any) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    node = make_node(
        ros,
        FakePipeline(),
        **{
            "node.camera_names": ["front", "rear"],
            "node.image_topics": ["/front/image", "/rear/image"],
        },
    )
    try:
        probe = Probe(ros)
        front = probe.publisher(Image, "/front/image")
        rear = probe.publisher(Image, "/rear/image")
        front_out = probe.listen("/panoptic/front/semantic", Image)
        rgb = np.zeros((20, 30, 3), np.uint8)
        for index in range(4):
            broken = image_message(rgb)
            broken.data = broken.data[: len(broken.data) // 2]  # truncated payload
            rear.publish(broken)
            front.publish(image_message(rgb, frame_id=f"front{index}"))
            wait_for(lambda: len(front_out) == index + 1)
        assert [m.header.frame_id for m in front_out] == [f"front{i}" for i in range(4)]
        assert node._cameras["front"].stats.errors_total == 0
        wait_for(lambda: node._cameras["rear"].stats.errors_total == 4)
        del CompressedImage
    finally:
        node.destroy_node()


def test_log_lines_are_throttled_per_camera_and_say_what_was_held_back(ros: Any) -> None:
    """Two broken cameras: one line each, not one for both; later lines count the rest."""
    from rclpy.logging import LOG
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    node = make_node(
        ros,
        FakePipeline(),
        **{
            "node.camera_names": ["front", "rear"],
            "node.image_topics": ["/front/image", "/rear/image"],
            "node.log_throttle_s": 600.0,
        },
    )
    LOG.clear()
    try:
        probe = Probe(ros)
        publishers = {name: probe.publisher(Image, f"/{name}/image") for name in ("front", "rear")}
        stats = {name: node._cameras[name].stats for name in publishers}
        rgb9 = image_message(np.zeros((20, 30, 3), np.uint8), encoding="rgb9")
        for index in range(3):
            for name, publisher in publishers.items():
                publisher.publish(rgb9)
                wait_for(lambda name=name: stats[name].errors_total == index + 1)
        warnings = [m for _, level, m in LOG if level == "WARN"]
        assert sorted(m.split(":")[0] for m in warnings) == ["front", "rear"], warnings
        # A shorter period applies at once, and the next line says how many were held back.
        (ok,) = node.set_parameters([Parameter("node.log_throttle_s", value=0.0)])
        assert ok.successful
        publishers["front"].publish(rgb9)
        wait_for(lambda: stats["front"].errors_total == 4)
        front = [m for _, level, m in LOG if level == "WARN" and m.startswith("front:")]
        assert len(front) == 2, front
        assert front[-1].endswith("(2 more since the last report)"), front[-1]
    finally:
        node.destroy_node()


class _BrokenOverlayPipeline(FakePipeline):
    """Inference works; drawing the overlay fails on every other frame."""

    def __init__(self) -> None:
        super().__init__()
        self.draws = 0

    def render(self, image: np.ndarray, result: FrameResult, **_: Any) -> np.ndarray:
        self.draws += 1
        if self.draws % 2:
            raise ValueError("overlay failed\nwith a second line")
        return np.zeros((*image.shape[:2], 3), np.uint8)


def test_a_failure_after_inference_costs_one_frame(ros: Any) -> None:
    """Everything after the network (tracking, overlay, messages) is guarded as well."""
    from rclpy.logging import LOG

    node = make_node(ros, _BrokenOverlayPipeline())
    LOG.clear()
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        stats = node._cameras["front"].stats
        for index in range(4):
            probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8)))
            wait_for(lambda: stats.processed_total + stats.errors_total == index + 1)
        assert node._worker.is_alive()
        assert stats.processed_total == 2 and dict(stats.errors_by_kind) == {"internal": 2}
        assert len(outputs["overlay"]) == 2
        (line,) = [m for _, level, m in LOG if level == "ERROR"]
        assert line == "front: unexpected ValueError while processing: overlay failed"
    finally:
        node.destroy_node()


def test_outputs_switched_while_frames_flow(ros: Any) -> None:
    """Publishers created and destroyed by parameter changes never break the frame loop."""
    from rclpy.parameter import Parameter

    node = make_node(ros, FakePipeline())
    try:
        probe = Probe(ros)
        outputs = probe.listen_outputs()
        stats = node._cameras["front"].stats
        stop = threading.Event()

        def toggle() -> None:
            enabled = True
            while not stop.is_set():
                enabled = not enabled
                node.set_parameters(
                    [
                        Parameter("node.publish_semantic", value=enabled),
                        Parameter("node.publish_overlay", value=enabled),
                    ]
                )

        toggler = threading.Thread(target=toggle)
        toggler.start()
        try:
            for index in range(60):
                probe.image_pub.publish(image_message(np.zeros((20, 30, 3), np.uint8)))
                wait_for(lambda: stats.processed_total + stats.errors_total == index + 1)
        finally:
            stop.set()
            toggler.join()
        assert stats.errors_total == 0, stats.last_error
        assert stats.processed_total == 60
        assert len(outputs["drivable_mask"]) == 60  # untouched outputs lose nothing
    finally:
        node.destroy_node()


def test_unknown_parameters_are_named_with_a_suggestion(ros: Any) -> None:
    from rclpy.logging import LOG

    LOG.clear()
    node = make_node(
        ros,
        FakePipeline(),
        **{
            "fusion.center_treshold": 0.2,
            "nonsense": 1,
            "use_sim_time": True,
            "qos_overrides./parameter_events.publisher.depth": 5,
        },
    )
    try:
        warnings = [m for _, level, m in LOG if level == "WARN"]
        assert warnings == [
            "parameter fusion.center_treshold is not a setting of this node; did you mean "
            "fusion.center_threshold?",
            "parameter nonsense is not a setting of this node; see config/panoptic.yaml",
        ]
        assert node.config.fusion.center_threshold == 0.1  # the typo changed nothing
    finally:
        node.destroy_node()


def test_settings_read_at_start_up_are_refused_at_run_time(ros: Any) -> None:
    from rclpy.parameter import Parameter

    node = make_node(ros, FakePipeline())
    try:
        for name, value in (
            ("node.publish_drivable_grid", True),
            ("node.input_transport", "compressed"),
            ("node.input_depth", 3),
        ):
            (result,) = node.set_parameters([Parameter(name, value=value)])
            assert not result.successful and "read-only" in result.reason, name
        assert node._cameras["front"].grid_publisher is None
    finally:
        node.destroy_node()


def test_qos_overrides_through_the_standard_parameters(ros: Any) -> None:
    """qos_overrides.<topic>.<entity>.<policy> (rclpy's QoSOverridingOptions) win over node.*."""
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    node = make_node(
        ros,
        FakePipeline(),
        **{
            "qos_overrides./camera/image_raw.subscription.reliability": "reliable",
            "qos_overrides./camera/image_raw.subscription.depth": 2,
            "qos_overrides./panoptic/front/overlay.publisher.reliability": "best_effort",
            "qos_overrides./panoptic/front/semantic.publisher.durability": "transient_local",
        },
    )
    try:
        (image,) = [s for s in node.subscriptions if s.topic_name == "/camera/image_raw"]
        assert image.qos.reliability == ReliabilityPolicy.RELIABLE and image.qos.depth == 2
        publishers = node._cameras["front"].publishers
        assert publishers["overlay"].qos.reliability == ReliabilityPolicy.BEST_EFFORT
        assert publishers["semantic"].qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        # Only the named topics changed; the rest keep the node.* defaults.
        assert publishers["drivable_mask"].qos.reliability == ReliabilityPolicy.RELIABLE
        assert publishers["drivable_mask"].qos.durability == DurabilityPolicy.VOLATILE
        name = "qos_overrides./panoptic/front/overlay.publisher.reliability"
        assert node.get_parameter(name).value == "best_effort"
        assert node._descriptors[name].read_only
        # A publisher switched off and on again keeps its override.
        for enabled in (False, True):
            (done,) = node.set_parameters([Parameter("node.publish_overlay", value=enabled)])
            assert done.successful
        assert publishers["overlay"].qos.reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.destroy_node()
    with pytest.raises(ConfigError, match="Unexpected QoS override for policy `reliability`"):
        make_node(
            ros,
            FakePipeline(),
            **{"qos_overrides./camera/image_raw.subscription.reliability": "sometimes"},
        )
