"""The node's ``objects`` output through the rclpy stand-in: CameraInfo + TF -> objects.

Same set-up as test_node.py (its fixture, probe and fake pipeline): the fake car of
:class:`test_node.FakePipeline` fills rows 15..29 and columns 20..39 of a 60x80 frame.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_node import FakePipeline, Probe, image_message, make_node, ros, wait_for

__all__ = ["ros"]  # the fixture, re-exported for pytest

HEIGHT_M = 1.5
PITCH = math.radians(10.0)
F, CX, CY = 40.0, 40.0, 30.0
STAMP_NS = 1_700_000_000_040_000_000


def _quaternion(matrix: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix (its trace is positive here)."""
    w = math.sqrt(1.0 + np.trace(matrix)) / 2.0
    return (
        (matrix[2, 1] - matrix[1, 2]) / (4 * w),
        (matrix[0, 2] - matrix[2, 0]) / (4 * w),
        (matrix[1, 0] - matrix[0, 1]) / (4 * w),
        w,
    )


def mount(stamp_ns: int = 0) -> Any:
    """base_footprint -> optical frame: 1.5 m up, looking along +x, pitched down 10 deg."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
    from std_msgs.msg import Header

    z_axis = np.array([math.cos(PITCH), 0.0, -math.sin(PITCH)])
    x_axis = np.array([0.0, -1.0, 0.0])
    rotation = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis], axis=1)
    x, y, z, w = _quaternion(rotation)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return TransformStamped(
        header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="base_footprint"),
        child_frame_id="camera_front_optical_frame",
        transform=Transform(
            translation=Vector3(x=0.0, y=0.0, z=HEIGHT_M),
            rotation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)),
        ),
    )


def camera_info() -> Any:
    from sensor_msgs.msg import CameraInfo

    return CameraInfo(
        width=80,
        height=60,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=np.array([F, 0, CX, 0, F, CY, 0, 0, 1]),
        p=np.array([F, 0, CX, 0, 0, F, CY, 0, 0, 0, 1, 0]),
    )


def expected_contact() -> tuple[float, float]:
    """Contact (x, y) of the fake car: pixel (29.5, 29.5) on flat ground (pinhole)."""
    u, v = (20 + 39) / 2, 29 + 0.5
    forward = math.cos(PITCH) - math.sin(PITCH) * (v - CY) / F
    lateral = -(u - CX) / F
    down = math.sin(PITCH) + math.cos(PITCH) * (v - CY) / F
    return HEIGHT_M * forward / down, HEIGHT_M * lateral / down


def publish_static(probe: Probe, transform: Any) -> None:
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    static_qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.node.create_publisher(TFMessage, "/tf_static", static_qos).publish(
        TFMessage(transforms=[transform])
    )


def listen_ground(probe: Probe) -> tuple[list[Any], list[Any], list[Any]]:
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import MarkerArray

    return (
        probe.listen("/panoptic/front/objects", Detection3DArray),
        probe.listen("/panoptic/front/objects_markers", MarkerArray),
        probe.listen("/panoptic/front/instances", Detection2DArray),
    )


def test_objects_from_camera_info_and_static_tf(ros: Any) -> None:
    node = make_node(
        ros,
        FakePipeline(),
        **{"node.publish_objects": True, "node.publish_objects_markers": True},
    )
    try:
        probe = Probe(ros)
        objects, markers, instances = listen_ground(probe)
        publish_static(probe, mount())
        probe.publisher(type(camera_info()), "/camera/camera_info").publish(camera_info())
        frames = [
            image_message(np.zeros((60, 80, 3), np.uint8), stamp_ns=STAMP_NS + i * 40_000_000)
            for i in range(3)
        ]
        for index, frame in enumerate(frames):
            probe.image_pub.publish(frame)
            wait_for(lambda index=index: len(objects) == index + 1 and len(markers) == index + 1)
        contact_x, contact_y = expected_contact()
        for frame, message, detections_2d in zip(frames, objects, instances, strict=True):
            assert message.header.stamp == frame.header.stamp
            assert message.header.frame_id == "base_footprint"
            (detection,) = message.detections
            # The same persistent id as the instances output of the same frame.
            assert [d.id for d in detections_2d.detections] == [detection.id] == ["1"]
            (hypothesis,) = detection.results
            assert hypothesis.hypothesis.class_id == "car"
            assert hypothesis.hypothesis.score == pytest.approx(0.9)
            # The centre: the contact pushed back half the car's 4.5 m along the ray.
            centre = hypothesis.pose.pose.position
            bearing = math.atan2(contact_y, contact_x)
            assert centre.x == pytest.approx(contact_x + 2.25 * math.cos(bearing), rel=1e-6)
            assert centre.y == pytest.approx(contact_y + 2.25 * math.sin(bearing), rel=1e-6)
            assert detection.bbox.size.x == 4.5
            covariance = np.asarray(hypothesis.pose.covariance).reshape(6, 6)
            assert covariance[0, 0] > 0 and covariance[1, 1] > 0
        clear, box, label = markers[-1].markers
        assert clear.action == 3
        assert (box.ns, box.id, box.header.frame_id) == ("objects", 1, "base_footprint")
        assert label.text.startswith("car 1 0.90")
        # The counts of left-out objects are in the diagnostics.
        from diagnostic_msgs.msg import DiagnosticArray

        diagnostics = probe.listen("/diagnostics", DiagnosticArray)
        node.publish_diagnostics()
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
        assert values["objects_left_out_cut_by_image_bottom"] == "0"
    finally:
        node.destroy_node()


def test_objects_without_tf_or_with_late_tf(ros: Any) -> None:
    """No transform, then a stale one: one throttled line, no objects, the node serves on."""
    from rclpy.logging import LOG
    from tf2_msgs.msg import TFMessage

    node = make_node(
        ros,
        FakePipeline(),
        **{"node.publish_objects": True, "node.log_throttle_s": 600.0},
    )
    LOG.clear()
    try:
        probe = Probe(ros)
        objects, _, instances = listen_ground(probe)
        probe.publisher(type(camera_info()), "/camera/camera_info").publish(camera_info())
        stats = node._cameras["front"].stats
        stamps = [STAMP_NS + i * 40_000_000 for i in range(6)]
        for index in range(3):  # no TF at all
            probe.image_pub.publish(
                image_message(np.zeros((60, 80, 3), np.uint8), stamp_ns=stamps[index])
            )
            wait_for(lambda index=index: len(instances) == index + 1)
        # Late: /tf holds the mount only up to a time before the next frames.
        tf = probe.node.create_publisher(TFMessage, "/tf", 10)
        tf.publish(TFMessage(transforms=[mount(stamps[0])]))
        for index in (3, 4):
            probe.image_pub.publish(
                image_message(np.zeros((60, 80, 3), np.uint8), stamp_ns=stamps[index])
            )
            wait_for(lambda index=index: len(instances) == index + 1)
        assert objects == []
        assert node._worker.is_alive()
        assert stats.processed_total == 5
        lines = [m for _, level, m in LOG if level in ("WARN", "ERROR")]
        assert len(lines) == 1, lines
        assert lines[0].startswith("front: no objects: ")
        assert stats.errors_by_kind["objects"] == 5  # every frame counted, none lost
        assert "extrapolation into the future" in stats.last_error  # late, not missing
        # Once the transform arrives in time, objects follow.
        tf.publish(TFMessage(transforms=[mount(stamps[5])]))
        probe.image_pub.publish(image_message(np.zeros((60, 80, 3), np.uint8), stamp_ns=stamps[5]))
        wait_for(lambda: len(objects) == 1)
        assert objects[0].detections[0].id == instances[-1].detections[0].id
    finally:
        node.destroy_node()


def test_no_camera_info_says_so_once(ros: Any) -> None:
    from rclpy.logging import LOG

    node = make_node(
        ros, FakePipeline(), **{"node.publish_objects": True, "node.log_throttle_s": 600.0}
    )
    LOG.clear()
    try:
        probe = Probe(ros)
        objects, _, instances = listen_ground(probe)
        publish_static(probe, mount())
        for index in range(2):
            probe.image_pub.publish(image_message(np.zeros((60, 80, 3), np.uint8)))
            wait_for(lambda index=index: len(instances) == index + 1)
        assert objects == []
        lines = [m for _, level, m in LOG if level == "WARN"]
        assert lines == ["front: no CameraInfo yet; objects skipped"]
    finally:
        node.destroy_node()


def test_rviz_layout_shows_objects_beside_the_grid_in_the_ground_frame() -> None:
    import yaml

    layout = yaml.safe_load(
        (Path(__file__).parent.parent / "rviz" / "panoptic.rviz").read_text(encoding="utf-8")
    )
    manager = layout["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_footprint"
    displays = {d["Topic"]["Value"]: d for d in manager["Displays"] if "Topic" in d}
    grid = displays["/panoptic/front/drivable_grid"]
    markers = displays["/panoptic/front/objects_markers"]
    plugin = displays["/panoptic/front/objects"]
    assert grid["Enabled"] and markers["Enabled"]
    assert markers["Class"] == "rviz_default_plugins/MarkerArray"
    # vision_msgs' RViz plugin is optional: present in the layout, off by default.
    assert plugin["Class"] == "vision_msgs_rviz_plugins/Detection3DArray"
    assert not plugin["Enabled"]


def test_managed_node_publishes_objects_only_while_active(ros: Any) -> None:
    """Objects publishers are lifecycle publishers: silent until activate, gone at cleanup."""
    from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from panoptic_ros.ros.node import PanopticLifecycleNode

    pipeline = FakePipeline()
    parameters = {"node.publish_objects": True, "node.publish_objects_markers": True}
    node = PanopticLifecycleNode(
        namespace="/panoptic",
        parameter_overrides=[Parameter(n, value=v) for n, v in parameters.items()],
        pipeline_factory=lambda config: pipeline,
    )
    try:
        probe = Probe(ros)
        objects, markers, _ = listen_ground(probe)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        # The stand-in keeps no transient-local messages: the mount after configure's listener.
        publish_static(probe, mount())
        ground = node._cameras["front"].ground_publishers
        assert set(ground) == {"objects", "objects_markers"}
        assert all(isinstance(p, LifecyclePublisher) for p in ground.values())
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe.publisher(type(camera_info()), "/camera/camera_info").publish(camera_info())
        probe.image_pub.publish(image_message(np.zeros((60, 80, 3), np.uint8)))
        wait_for(lambda: len(objects) == 1 and len(markers) == 1)
        assert objects[0].header.frame_id == "base_footprint"
        node.trigger_deactivate()
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        topics = [p.topic_name for p in node.publishers]
        assert "/panoptic/front/objects" not in topics
        assert "/panoptic/front/objects_markers" not in topics
    finally:
        node.destroy_node()
