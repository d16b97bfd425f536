"""Replay writes ground objects from a bag's CameraInfo and TF; the offline TF tree."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bag_fixtures import (
    PERIOD_NS,
    START_NS,
    FakePipeline,
    FakeTracker,
    ground_contact_xy,
    make_ground_bag,
    make_raw_bag,
)

from panoptic_ros.bags import iter_messages, make_typestore, open_reader
from panoptic_ros.camera_model import transform_matrix
from panoptic_ros.config import RenderConfig, ReplayConfig
from panoptic_ros.errors import TransformError
from panoptic_ros.replay import run_replay
from panoptic_ros.ros_messages import stamp_ns
from panoptic_ros.transforms import TransformTree


def _replay(bag: Path, out: Path, **config: Any) -> Any:
    return run_replay(
        bag,
        out,
        FakePipeline(),
        config=ReplayConfig(write_video=False, **config),
        render=RenderConfig(),
        tracker=FakeTracker(),
        progress=False,
    )


def _topic(out: Path, topic: str) -> list[tuple[int, Any]]:
    with open_reader(out / "panoptic") as reader:
        return list(iter_messages(reader, topic))


def test_replay_writes_objects_from_camera_info_and_tf_static(tmp_path: Path) -> None:
    bag = make_ground_bag(tmp_path)
    summary = _replay(bag, tmp_path / "out")
    assert summary.topics_written["/panoptic/objects"] == 3
    assert summary.topics_written["/panoptic/objects_markers"] == 3
    assert summary.objects["frames"] == 3
    assert summary.objects["frames_without"] == {}
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["objects"]["left_out"]["cut_by_image_bottom"] == 0
    with open_reader(tmp_path / "out" / "panoptic") as reader:
        types = {t: i.msgtype for t, i in reader.topics.items()}
        typestore = make_typestore()
        for connection in reader.connections:
            assert connection.digest == typestore.hash_rihs01(connection.msgtype)
    assert types["/panoptic/objects"] == "vision_msgs/msg/Detection3DArray"
    assert types["/panoptic/objects_markers"] == "visualization_msgs/msg/MarkerArray"
    objects = _topic(tmp_path / "out", "/panoptic/objects")
    instances = _topic(tmp_path / "out", "/panoptic/instances")
    contact_x, contact_y = ground_contact_xy()
    # Pushed back half the car's length along the ray from the camera (1.2 m ahead).
    bearing = math.atan2(contact_y, contact_x - 1.2)
    for index, ((log_ns, message), (_, detections_2d)) in enumerate(
        zip(objects, instances, strict=True)
    ):
        stamp = START_NS + index * PERIOD_NS
        assert log_ns == stamp
        assert stamp_ns(message.header) == stamp
        assert message.header.frame_id == "base_footprint"
        (detection,) = message.detections
        # The fake tracker's id of frame n, shared with the 2D detection.
        assert detection.id == detections_2d.detections[0].id == str(1000 * (index + 1) + 1)
        centre = detection.results[0].pose.pose.position
        assert centre.x == pytest.approx(contact_x + 2.25 * math.cos(bearing), rel=1e-6)
        assert centre.y == pytest.approx(contact_y + 2.25 * math.sin(bearing), rel=1e-6)
    markers = _topic(tmp_path / "out", "/panoptic/objects_markers")
    clear, box, label = markers[0][1].markers
    assert clear.action == 3
    assert box.header.frame_id == "base_footprint"
    assert label.text.startswith("car 1001 0.75")


def test_frames_whose_tf_is_late_get_no_objects(tmp_path: Path) -> None:
    bag = make_ground_bag(tmp_path, mount_on_tf_until=1)
    summary = _replay(bag, tmp_path / "out")
    assert summary.frames == 3
    assert summary.topics_written["/panoptic/objects"] == 2
    assert summary.objects["frames"] == 2
    (reason,) = summary.objects["frames_without"]
    assert "not known at the image stamp" in reason
    assert summary.objects["frames_without"][reason] == 1
    assert "objects  1 frames without" in summary.format_table()


def test_no_objects_without_camera_info_or_when_switched_off(tmp_path: Path) -> None:
    plain = _replay(make_raw_bag(tmp_path), tmp_path / "plain")
    assert "/panoptic/objects" not in plain.topics_written
    assert plain.objects == {}
    off = _replay(make_ground_bag(tmp_path), tmp_path / "off", write_objects=False)
    assert "/panoptic/objects" not in off.topics_written


# ---------------------------------------------------------------------------- TF tree


def _stamped(parent: str, child: str, xyz: Any, xyzw: Any, stamp_ns: int = 0) -> Any:
    types = make_typestore().types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return types["geometry_msgs/msg/TransformStamped"](
        header=types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
            frame_id=parent,
        ),
        child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=xyz[0], y=xyz[1], z=xyz[2]),
            rotation=types["geometry_msgs/msg/Quaternion"](
                x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3]
            ),
        ),
    )


def test_tree_chains_through_the_common_ancestor() -> None:
    quarter = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))  # +90 deg about z
    tree = TransformTree()
    tree.add(_stamped("base", "mast", (1.0, 0.0, 2.0), (0, 0, 0, 1.0)), static=True)
    tree.add(_stamped("mast", "cam", (0.0, 0.5, 0.0), quarter), static=True)
    tree.add(_stamped("base", "wheel", (0.0, -1.0, 0.0), (0, 0, 0, 1.0)), static=True)
    # A point 1 m along cam's x is at base (1, 1.5, 2); in wheel, 1 m further on +y.
    cam_point = np.array([1.0, 0.0, 0.0, 1.0])
    base_from_cam = tree.lookup("base", "cam", 0)
    assert np.allclose(base_from_cam @ cam_point, [1.0, 1.5, 2.0, 1.0])
    assert np.allclose(tree.lookup("wheel", "cam", 0) @ cam_point, [1.0, 2.5, 2.0, 1.0])
    assert np.allclose(tree.lookup("cam", "base", 0), np.linalg.inv(base_from_cam))
    assert np.allclose(tree.lookup("cam", "cam", 0), np.eye(4))
    with pytest.raises(TransformError, match="no transform between map and cam"):
        tree.lookup("map", "cam", 0)
    with pytest.raises(TransformError, match="two parents"):
        tree.add(_stamped("wheel", "cam", (0, 0, 0), (0, 0, 0, 1.0)), static=True)


def test_timed_edges_interpolate_and_refuse_extrapolation() -> None:
    tree = TransformTree()
    half = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))  # +90 deg about z
    tree.add(_stamped("odom", "base", (0.0, 0.0, 0.0), (0, 0, 0, 1.0), 10), static=False)
    tree.add(_stamped("odom", "base", (2.0, 0.0, 0.0), half, 20), static=False)
    middle = tree.lookup("odom", "base", 15)
    expected = transform_matrix(
        (1.0, 0.0, 0.0), (0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8))
    )
    assert np.allclose(middle, expected)
    assert np.allclose(tree.lookup("odom", "base", 20)[:3, 3], [2.0, 0.0, 0.0])
    with pytest.raises(TransformError, match="extrapolation into the future"):
        tree.lookup("odom", "base", 21)
    with pytest.raises(TransformError, match="extrapolation into the past"):
        tree.lookup("odom", "base", 9)
    tolerant = TransformTree(tolerance_ns=5)
    tolerant.add(_stamped("odom", "base", (3.0, 0.0, 0.0), (0, 0, 0, 1.0), 10), static=False)
    assert np.allclose(tolerant.lookup("odom", "base", 14)[:3, 3], [3.0, 0.0, 0.0])
