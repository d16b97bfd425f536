"""Tests of panoptic_ros.ros_messages: output messages round-trip through CDR intact."""

from __future__ import annotations

import array
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bag_fixtures import fake_result, make_frames
from rosbags.typesys import Stores, get_typestore

from panoptic_ros.bags import make_typestore
from panoptic_ros.errors import CodecError
from panoptic_ros.results import FrameResult, Instance
from panoptic_ros.ros_messages import (
    OUTPUT_TOPICS,
    MessageClasses,
    build_output_messages,
    detection_array,
    header_message,
    image_message,
    rclpy_byte_array,
    stamp_ns,
)

STAMP_NS = 1_700_000_123_456_789_012


@pytest.fixture(scope="module")
def typestore() -> Any:
    return make_typestore()


@pytest.fixture(scope="module")
def classes(typestore: Any) -> MessageClasses:
    return MessageClasses.from_typestore(typestore)


def _round_trip(typestore: Any, message: Any) -> Any:
    raw = typestore.serialize_cdr(message, message.__msgtype__)
    return typestore.deserialize_cdr(raw, message.__msgtype__)


def _result_with_two_instances() -> FrameResult:
    base = fake_result(make_frames(1)[0])
    ids = base.instance_ids.copy()
    ids[0:4, 0:6] = 2  # a second instance, top-left: inclusive box (0, 0, 5, 3)
    person = Instance(
        index=2,
        class_id=11,
        class_name="person",
        score=0.5,
        bbox_xyxy=(0, 0, 5, 3),
        area_px=24,
        centroid_yx=(1.5, 2.5),
        track_id=0,
    )
    car = replace(base.instances[0], track_id=42)
    # Deliberately out of order: detections must follow the index, not the tuple order.
    return replace(base, instance_ids=ids, instances=(person, car))


def test_header_helpers(classes: MessageClasses) -> None:
    header = header_message(classes, STAMP_NS, "cam")
    assert (header.stamp.sec, header.stamp.nanosec) == (1_700_000_123, 456_789_012)
    assert stamp_ns(header) == STAMP_NS
    assert header.frame_id == "cam"


def test_every_output_round_trips(typestore: Any, classes: MessageClasses) -> None:
    result = _result_with_two_instances()
    overlay = np.random.default_rng(1).integers(0, 256, (*result.image_hw, 3), dtype=np.uint8)
    header = header_message(classes, STAMP_NS, "camera_front_optical_frame")
    messages = build_output_messages(classes, header, result, overlay_bgr=overlay)
    assert list(messages) == list(OUTPUT_TOPICS)
    height, width = result.image_hw
    expected = {
        "drivable_mask": ("mono8", width, result.drivable_mask),
        "semantic": ("mono8", width, result.semantic),
        "instance_ids": ("16UC1", 2 * width, result.instance_ids),
        "overlay": ("bgr8", 3 * width, overlay),
    }
    for name, message in messages.items():
        assert message.__msgtype__ == OUTPUT_TOPICS[name]
        assert message.header is header  # the input header, not a copy
        back = _round_trip(typestore, message)
        assert back.header.frame_id == "camera_front_optical_frame"
        assert stamp_ns(back.header) == STAMP_NS
        if name == "instances":
            continue
        encoding, step, pixels = expected[name]
        assert (back.encoding, back.height, back.width) == (encoding, height, width)
        assert (back.step, back.is_bigendian) == (step, 0)
        dtype = "<u2" if encoding == "16UC1" else np.uint8
        decoded = np.frombuffer(back.data.tobytes(), dtype=dtype).reshape(pixels.shape)
        np.testing.assert_array_equal(decoded, pixels)
    back = _round_trip(typestore, messages["instances"])
    assert [d.id for d in back.detections] == ["42", "2"]  # track id, else the index
    for detection in back.detections:
        assert stamp_ns(detection.header) == STAMP_NS


def test_detections_follow_instance_ids(typestore: Any, classes: MessageClasses) -> None:
    result = _result_with_two_instances()
    header = header_message(classes, STAMP_NS, "cam")
    back = _round_trip(typestore, detection_array(classes, header, result))
    assert len(back.detections) == 2
    for k, detection in enumerate(back.detections, start=1):
        ys, xs = np.nonzero(result.instance_ids == k)
        box = detection.bbox
        # Inclusive pixel-centre boxes: centre between the end pixels, size counts both.
        assert box.center.position.x == (xs.min() + xs.max()) / 2
        assert box.center.position.y == (ys.min() + ys.max()) / 2
        assert box.size_x == xs.max() - xs.min() + 1
        assert box.size_y == ys.max() - ys.min() + 1
        assert box.center.theta == 0.0
        [hypothesis] = detection.results
        instance = next(i for i in result.instances if i.index == k)
        assert hypothesis.hypothesis.class_id == instance.class_name
        assert hypothesis.hypothesis.score == pytest.approx(instance.score)
        pose = hypothesis.pose.pose
        assert (pose.position.x, pose.position.y, pose.position.z) == (0.0, 0.0, 0.0)
        assert (pose.orientation.x, pose.orientation.w) == (0.0, 1.0)
        np.testing.assert_array_equal(hypothesis.pose.covariance, np.zeros(36))
    assert [d.results[0].hypothesis.class_id for d in back.detections] == ["car", "person"]


def test_no_instances_gives_empty_array(typestore: Any, classes: MessageClasses) -> None:
    result = replace(fake_result(make_frames(1)[0]), instances=())
    back = _round_trip(typestore, detection_array(classes, header_message(classes, 0, "c"), result))
    assert back.detections == []


def test_16uc1_is_little_endian_whatever_the_input(typestore: Any, classes: MessageClasses) -> None:
    values = np.array([[1, 258], [65535, 4096]], dtype=">u2")  # big-endian input
    message = image_message(classes, header_message(classes, 0, "c"), values, "16UC1")
    assert message.data.tobytes() == bytes([1, 0, 2, 1, 255, 255, 0, 16])
    back = _round_trip(typestore, message)
    assert (back.is_bigendian, back.step) == (0, 4)


def test_rosbags_image_data_is_not_copied(classes: MessageClasses) -> None:
    pixels = np.zeros((4, 5), dtype=np.uint8)
    message = image_message(classes, header_message(classes, 0, "c"), pixels, "mono8")
    assert np.shares_memory(message.data, pixels)


@pytest.mark.parametrize(
    ("pixels", "encoding"),
    [
        (np.zeros((4, 5, 3), np.uint8), "mono8"),
        (np.zeros((4, 5), np.uint16), "mono8"),
        (np.zeros((4, 5), np.uint8), "16UC1"),
        (np.zeros((4, 5), np.int16), "16UC1"),
        (np.zeros((4, 5), np.uint8), "bgr8"),
        (np.zeros((4, 5, 4), np.uint8), "bgr8"),
        (np.zeros((4, 5), np.uint8), "rgb8"),
    ],
)
def test_wrong_pixels_are_refused(classes: MessageClasses, pixels: Any, encoding: Any) -> None:
    with pytest.raises(CodecError, match=encoding):
        image_message(classes, header_message(classes, 0, "c"), pixels, encoding)


def test_only_enabled_outputs_are_built(classes: MessageClasses) -> None:
    result = fake_result(make_frames(1)[0])
    header = header_message(classes, 0, "c")
    built = build_output_messages(classes, header, result, enabled={"instances", "semantic"})
    assert list(built) == ["semantic", "instances"]
    assert build_output_messages(classes, header, result, enabled=()) == {}
    with pytest.raises(ValueError, match="unknown outputs"):
        build_output_messages(classes, header, result, enabled={"depth"})
    with pytest.raises(ValueError, match="no overlay_bgr"):
        build_output_messages(classes, header, result, enabled={"overlay"})


def test_typestore_without_vision_msgs_is_refused() -> None:
    with pytest.raises(CodecError, match=r"lacks vision_msgs/msg/.*make_typestore"):
        MessageClasses.from_typestore(get_typestore(Stores.ROS2_JAZZY))


# ---------------------------------------------------------------------------- rclpy path


class _RclpyLikeMessage:
    """Mimics rosidl_generator_py: a uint8[] setter that takes array.array('B') as is.

    Any other value would be checked element by element (or iterated by array.array),
    which is what we must avoid for megabyte images; here it fails loudly instead.
    """

    __msgtype__ = "sensor_msgs/msg/Image"

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "data":
            assert isinstance(value, array.array), type(value)
            assert value.typecode == "B"
        object.__setattr__(self, key, value)


def _fake_rclpy_modules() -> dict[str, Any]:
    def plain(name: str) -> type:
        return type(name, (SimpleNamespace,), {})

    return {
        "builtin_interfaces": SimpleNamespace(Time=plain("Time")),
        "std_msgs": SimpleNamespace(Header=plain("Header")),
        "sensor_msgs": SimpleNamespace(Image=_RclpyLikeMessage),
        "geometry_msgs": SimpleNamespace(
            PoseWithCovariance=plain("PoseWithCovariance"),
            Pose=plain("Pose"),
            Point=plain("Point"),
            Quaternion=plain("Quaternion"),
        ),
        "vision_msgs": SimpleNamespace(
            Detection2DArray=plain("Detection2DArray"),
            Detection2D=plain("Detection2D"),
            ObjectHypothesisWithPose=plain("ObjectHypothesisWithPose"),
            ObjectHypothesis=plain("ObjectHypothesis"),
            BoundingBox2D=plain("BoundingBox2D"),
            Pose2D=plain("Pose2D"),
            Point2D=plain("Point2D"),
        ),
    }


def test_rclpy_classes_get_array_buffers() -> None:
    classes = MessageClasses.from_modules(**_fake_rclpy_modules())
    result = _result_with_two_instances()
    overlay = np.full((*result.image_hw, 3), 7, np.uint8)
    header = header_message(classes, STAMP_NS, "cam")
    messages = build_output_messages(classes, header, result, overlay_bgr=overlay)
    ids = messages["instance_ids"]
    assert ids.data.tobytes() == result.instance_ids.astype("<u2").tobytes()
    assert messages["overlay"].data.tobytes() == overlay.tobytes()
    detections = messages["instances"].detections
    covariance = detections[0].results[0].pose.covariance
    assert isinstance(covariance, np.ndarray)
    assert (covariance.dtype, covariance.shape) == (np.float64, (36,))
    assert detections[0].header is header


def test_rclpy_byte_array_copies_once() -> None:
    buffer = np.arange(10, dtype=np.uint8)
    out = rclpy_byte_array(buffer)
    assert (out.typecode, out.tolist()) == ("B", list(range(10)))
    buffer[0] = 99
    assert out[0] == 0  # an independent copy: the result may be reused after publishing
    strided = np.arange(20, dtype=np.uint8)[::2]
    assert rclpy_byte_array(strided).tolist() == list(range(0, 20, 2))


# ---------------------------------------------------------------------------- benchmark


@pytest.mark.benchmark
def test_benchmark_fill_1080p(benchmark: Any, classes: MessageClasses) -> None:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    ids = rng.integers(0, 50, (1080, 1920), dtype=np.uint16)
    header = header_message(classes, STAMP_NS, "cam")

    def fill() -> tuple[Any, Any]:
        return (
            image_message(classes, header, bgr, "bgr8"),
            image_message(classes, header, ids, "16UC1"),
        )

    overlay, instance_ids = benchmark(fill)
    assert overlay.data.size == 1080 * 1920 * 3
    assert instance_ids.data.size == 1080 * 1920 * 2


@pytest.mark.benchmark
def test_benchmark_fill_and_serialise_1080p(
    benchmark: Any, typestore: Any, classes: MessageClasses
) -> None:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    ids = rng.integers(0, 50, (1080, 1920), dtype=np.uint16)
    header = header_message(classes, STAMP_NS, "cam")

    def fill_and_serialise() -> int:
        sizes = 0
        for pixels, encoding in ((bgr, "bgr8"), (ids, "16UC1")):
            message = image_message(classes, header, pixels, encoding)
            sizes += len(typestore.serialize_cdr(message, message.__msgtype__))
        return sizes

    assert benchmark(fill_and_serialise) > 1080 * 1920 * 5


# ---------------------------------------------------------------------------- ground outputs


def _ground_objects() -> list[Any]:
    from panoptic_ros.ground_objects import GroundObject

    covariance = np.diag([0.5, 0.02, 0.01, 0.0003, 0.0003, 3.29]).astype(np.float64)
    covariance[0, 1] = covariance[1, 0] = 0.004
    car = GroundObject(
        index=1,
        track_id=42,
        class_id=13,
        class_name="car",
        score=0.75,
        position_xyz=(22.25, -1.5, 0.7),
        yaw=-0.07,
        size_lwh=(4.5, 1.8, 1.4),
        contact_xyz=(20.0, -1.35, 0.0),
        range_m=20.05,
        contact_px=(1000.0, 600.5),
        covariance=covariance,
    )
    person = replace(car, index=2, track_id=0, class_name="person", size_lwh=(0.6, 0.5, 1.7))
    return [car, person]


def test_objects_round_trip(typestore: Any, classes: MessageClasses) -> None:
    from panoptic_ros.ros_messages import GROUND_TOPICS, object_detection_array

    stamp = header_message(classes, STAMP_NS, "cam").stamp
    car, person = _ground_objects()
    message = object_detection_array(classes, stamp, "base_footprint", [car, person])
    assert message.__msgtype__ == GROUND_TOPICS["objects"]
    back = _round_trip(typestore, message)
    assert stamp_ns(back.header) == STAMP_NS
    assert back.header.frame_id == "base_footprint"
    first, second = back.detections
    assert (first.id, second.id) == ("42", "2")  # track id, else the instance index
    assert first.header.frame_id == "base_footprint"
    (hypothesis,) = first.results
    assert (hypothesis.hypothesis.class_id, hypothesis.hypothesis.score) == ("car", 0.75)
    pose = hypothesis.pose.pose
    assert (pose.position.x, pose.position.y, pose.position.z) == (22.25, -1.5, 0.7)
    assert 2 * np.arctan2(pose.orientation.z, pose.orientation.w) == pytest.approx(-0.07)
    assert np.array_equal(hypothesis.pose.covariance.reshape(6, 6), car.covariance)
    assert first.bbox.center == pose
    assert (first.bbox.size.x, first.bbox.size.y, first.bbox.size.z) == (4.5, 1.8, 1.4)
    empty = _round_trip(typestore, object_detection_array(classes, stamp, "base_footprint", []))
    assert empty.detections == []


def test_object_markers_round_trip(typestore: Any, classes: MessageClasses) -> None:
    from panoptic_ros.ros_messages import GROUND_TOPICS, object_markers

    stamp = header_message(classes, STAMP_NS, "cam").stamp
    car, person = _ground_objects()
    message = object_markers(
        classes, stamp, "base_footprint", [car, person], colors_rgb={"car": (0, 0, 142)}
    )
    assert message.__msgtype__ == GROUND_TOPICS["objects_markers"]
    back = _round_trip(typestore, message)
    clear, car_box, car_label, person_box, _ = back.markers
    assert clear.action == 3  # DELETEALL: no box of an earlier frame lingers
    assert (car_box.ns, car_box.id, car_box.type) == ("objects", 42, 1)
    assert (car_box.scale.x, car_box.scale.y, car_box.scale.z) == (4.5, 1.8, 1.4)
    assert car_box.color.b == pytest.approx(142 / 255)
    assert car_box.header.frame_id == "base_footprint"
    assert stamp_ns(car_box.header) == STAMP_NS
    assert (car_label.ns, car_label.id, car_label.type) == ("labels", 42, 9)
    assert car_label.text == "car 42 0.75 20.1 m"
    assert person_box.id == 2


def test_ground_outputs_need_their_classes() -> None:
    from panoptic_ros.ros_messages import object_detection_array, object_markers

    base = MessageClasses.from_typestore(make_typestore())
    without = replace(base, Detection3DArray=None, MarkerArray=None)
    with pytest.raises(CodecError, match="no Detection3DArray message class"):
        object_detection_array(without, None, "base_footprint", [])
    with pytest.raises(CodecError, match="no MarkerArray message class"):
        object_markers(without, None, "base_footprint", [])
