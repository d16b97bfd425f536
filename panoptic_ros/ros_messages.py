"""Fill ROS output messages from a :class:`~panoptic_ros.results.FrameResult`, for any classes.

One code path builds the outputs for both worlds: the node hands in the rclpy message
classes (:meth:`MessageClasses.from_modules`), replay and tests the rosbags typestore
dataclasses (:meth:`MessageClasses.from_typestore`). This module imports neither: it only
calls the classes it is given, always with every field as a keyword (rosbags dataclasses
require all fields; rclpy accepts all).

Outputs (see :data:`OUTPUT_TOPICS`), all with the input image's header unchanged:

* ``drivable_mask``: ``sensor_msgs/Image`` mono8, 255 drivable, 0 not;
* ``semantic``: mono8 class index per pixel, 255 void;
* ``instance_ids``: 16UC1 (little-endian), k where the k-th detection lies, 0 none;
* ``instances``: ``vision_msgs/Detection2DArray``, detection k-1 <-> value k;
* ``overlay``: bgr8 picture for RViz.

Ground outputs (see :data:`GROUND_TOPICS`), in the ground frame with the image's stamp:

* ``objects``: ``vision_msgs/Detection3DArray`` of :mod:`panoptic_ros.ground_objects`;
* ``objects_markers``: ``visualization_msgs/MarkerArray`` (cubes and labels) for RViz.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import CodecError
from panoptic_ros.ground_objects import GroundObject
from panoptic_ros.results import FrameResult, Instance

__all__ = [
    "GROUND_TOPICS",
    "OUTPUT_TOPICS",
    "ImageEncoding",
    "MessageClasses",
    "build_output_messages",
    "detection_array",
    "header_message",
    "image_message",
    "object_detection_array",
    "object_markers",
    "rclpy_byte_array",
    "rclpy_float64_array",
    "stamp_ns",
]

#: Output name (relative topic) -> ROS message type.
OUTPUT_TOPICS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "drivable_mask": "sensor_msgs/msg/Image",
        "semantic": "sensor_msgs/msg/Image",
        "instance_ids": "sensor_msgs/msg/Image",
        "instances": "vision_msgs/msg/Detection2DArray",
        "overlay": "sensor_msgs/msg/Image",
    }
)

#: Ground output name (relative topic) -> ROS message type.
GROUND_TOPICS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "objects": "vision_msgs/msg/Detection3DArray",
        "objects_markers": "visualization_msgs/msg/MarkerArray",
    }
)

ImageEncoding = Literal["mono8", "16UC1", "bgr8"]

# encoding -> (array ndim, channels, numpy dtype of a pixel value, bytes per value)
_IMAGE_LAYOUTS: Final[Mapping[str, tuple[int, int, type[np.generic], int]]] = MappingProxyType(
    {
        "mono8": (2, 1, np.uint8, 1),
        "16UC1": (2, 1, np.uint16, 2),
        "bgr8": (3, 3, np.uint8, 1),
    }
)

# A default-constructed geometry_msgs/PoseWithCovariance: origin, identity rotation (w = 1,
# as ROS' Quaternion default), zero covariance.
_COVARIANCE_SIZE: Final = 36


def _identity(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return values


def rclpy_byte_array(buffer: npt.NDArray[np.uint8]) -> array.array[int]:
    """Convert a contiguous uint8 buffer into what an rclpy ``uint8[]`` field takes fastest.

    rosidl_generator_py's setter for an unbounded ``uint8[]`` field stores an
    ``array.array('B')`` as it is (only its type code is checked). Any other value (bytes,
    a list, a NumPy array) is either validated element by element when field checks are on
    (``ROS_PYTHON_CHECK_FIELDS``, and always on Humble under ``__debug__``) or converted by
    ``array.array('B', value)``, which iterates a NumPy array as Python ints (about 100x
    slower than a copy). The generated constructor wraps its keyword in
    ``array.array('B', value)``, which for an array of the same type code is one memcpy.
    ``array.frombytes`` reads the NumPy buffer directly, so this is a single memcpy, where
    ``array.array('B', buffer.tobytes())`` would copy twice.

    Args:
        buffer: [L] (or any shape, C-contiguous) uint8 payload.

    Returns:
        ``array.array('B')`` holding a copy of the bytes.
    """
    out = array.array("B")
    # ndarray.data is a memoryview of the buffer: frombytes copies from it once.
    out.frombytes(np.ascontiguousarray(buffer, dtype=np.uint8).reshape(-1).data)
    return out


def rclpy_float64_array(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return ``values`` as the float64 ndarray an rclpy ``float64[36]`` field stores as is."""
    return np.ascontiguousarray(values, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class MessageClasses:
    """The message classes (or factories) the builders instantiate, named as in ROS.

    Attributes:
        Header: ``std_msgs/Header``.
        Time: ``builtin_interfaces/Time``.
        Image: ``sensor_msgs/Image``.
        Detection2DArray: ``vision_msgs/Detection2DArray``.
        Detection2D: ``vision_msgs/Detection2D``.
        ObjectHypothesisWithPose: ``vision_msgs/ObjectHypothesisWithPose``.
        ObjectHypothesis: ``vision_msgs/ObjectHypothesis``.
        BoundingBox2D: ``vision_msgs/BoundingBox2D``.
        Pose2D: ``vision_msgs/Pose2D`` (not geometry_msgs').
        Point2D: ``vision_msgs/Point2D``.
        PoseWithCovariance: ``geometry_msgs/PoseWithCovariance``.
        Pose: ``geometry_msgs/Pose``.
        Point: ``geometry_msgs/Point``.
        Quaternion: ``geometry_msgs/Quaternion``.
        byte_array: Converts a C-contiguous [L] uint8 buffer into the value ``Image.data``
            takes (rosbags: the ndarray itself; rclpy: :func:`rclpy_byte_array`).
        float64_array: Converts [36] float64 into the covariance field's value.
        Detection3DArray: ``vision_msgs/Detection3DArray`` (None: ``objects`` unavailable).
        Detection3D: ``vision_msgs/Detection3D``.
        BoundingBox3D: ``vision_msgs/BoundingBox3D``.
        Vector3: ``geometry_msgs/Vector3``.
        MarkerArray: ``visualization_msgs/MarkerArray`` (None: no markers).
        Marker: Builds a ``visualization_msgs/Marker`` from Humble's fields (rosbags' Jazzy
            class also needs the texture and mesh-file fields added in Iron: filled empty).
        ColorRGBA: ``std_msgs/ColorRGBA``.
        Duration: ``builtin_interfaces/Duration``.
    """

    Header: Callable[..., Any]
    Time: Callable[..., Any]
    Image: Callable[..., Any]
    Detection2DArray: Callable[..., Any]
    Detection2D: Callable[..., Any]
    ObjectHypothesisWithPose: Callable[..., Any]
    ObjectHypothesis: Callable[..., Any]
    BoundingBox2D: Callable[..., Any]
    Pose2D: Callable[..., Any]
    Point2D: Callable[..., Any]
    PoseWithCovariance: Callable[..., Any]
    Pose: Callable[..., Any]
    Point: Callable[..., Any]
    Quaternion: Callable[..., Any]
    byte_array: Callable[[npt.NDArray[np.uint8]], Any] = _identity
    float64_array: Callable[[npt.NDArray[np.float64]], Any] = _identity
    Detection3DArray: Callable[..., Any] | None = None
    Detection3D: Callable[..., Any] | None = None
    BoundingBox3D: Callable[..., Any] | None = None
    Vector3: Callable[..., Any] | None = None
    MarkerArray: Callable[..., Any] | None = None
    Marker: Callable[..., Any] | None = None
    ColorRGBA: Callable[..., Any] | None = None
    Duration: Callable[..., Any] | None = None

    @classmethod
    def from_typestore(cls, typestore: Any) -> MessageClasses:
        """Take the classes from a rosbags typestore (see ``bags.make_typestore``).

        Raises:
            CodecError: The typestore lacks a type (vision_msgs not registered).
        """
        names = {
            "Header": "std_msgs/msg/Header",
            "Time": "builtin_interfaces/msg/Time",
            "Image": "sensor_msgs/msg/Image",
            "Detection2DArray": "vision_msgs/msg/Detection2DArray",
            "Detection2D": "vision_msgs/msg/Detection2D",
            "ObjectHypothesisWithPose": "vision_msgs/msg/ObjectHypothesisWithPose",
            "ObjectHypothesis": "vision_msgs/msg/ObjectHypothesis",
            "BoundingBox2D": "vision_msgs/msg/BoundingBox2D",
            "Pose2D": "vision_msgs/msg/Pose2D",
            "Point2D": "vision_msgs/msg/Point2D",
            "PoseWithCovariance": "geometry_msgs/msg/PoseWithCovariance",
            "Pose": "geometry_msgs/msg/Pose",
            "Point": "geometry_msgs/msg/Point",
            "Quaternion": "geometry_msgs/msg/Quaternion",
        }
        missing = [n for n in names.values() if n not in typestore.types]
        if missing:
            raise CodecError(
                f"typestore lacks {missing[0]}; build it with panoptic_ros.bags.make_typestore()"
            )
        types = typestore.types
        ground = {
            "Detection3DArray": "vision_msgs/msg/Detection3DArray",
            "Detection3D": "vision_msgs/msg/Detection3D",
            "BoundingBox3D": "vision_msgs/msg/BoundingBox3D",
            "Vector3": "geometry_msgs/msg/Vector3",
            "MarkerArray": "visualization_msgs/msg/MarkerArray",
            "ColorRGBA": "std_msgs/msg/ColorRGBA",
            "Duration": "builtin_interfaces/msg/Duration",
        }
        optional = {key: types.get(name) for key, name in ground.items()}
        marker = types.get("visualization_msgs/msg/Marker")
        # rosbags stores uint8[] and float64[36] as ndarrays: pass them through, no copy.
        return cls(
            **{key: types[name] for key, name in names.items()},
            byte_array=_identity,
            float64_array=_identity,
            Marker=None if marker is None else _jazzy_marker(types),
            **optional,
        )

    @classmethod
    def from_modules(
        cls,
        *,
        builtin_interfaces: ModuleType,
        std_msgs: ModuleType,
        sensor_msgs: ModuleType,
        geometry_msgs: ModuleType,
        vision_msgs: ModuleType,
        visualization_msgs: ModuleType | None = None,
    ) -> MessageClasses:
        """Take the classes from imported rclpy message modules (``std_msgs.msg`` ...).

        The node imports the ``*.msg`` modules and passes them here, so this module stays
        free of ROS imports. Without ``visualization_msgs`` there are no markers.
        """
        return cls(
            Header=std_msgs.Header,
            Time=builtin_interfaces.Time,
            Image=sensor_msgs.Image,
            Detection2DArray=vision_msgs.Detection2DArray,
            Detection2D=vision_msgs.Detection2D,
            ObjectHypothesisWithPose=vision_msgs.ObjectHypothesisWithPose,
            ObjectHypothesis=vision_msgs.ObjectHypothesis,
            BoundingBox2D=vision_msgs.BoundingBox2D,
            Pose2D=vision_msgs.Pose2D,
            Point2D=vision_msgs.Point2D,
            PoseWithCovariance=geometry_msgs.PoseWithCovariance,
            Pose=geometry_msgs.Pose,
            Point=geometry_msgs.Point,
            Quaternion=geometry_msgs.Quaternion,
            byte_array=rclpy_byte_array,
            float64_array=rclpy_float64_array,
            # Absent classes (an older package, no visualization_msgs) leave None: only
            # the outputs that need them are refused.
            Detection3DArray=getattr(vision_msgs, "Detection3DArray", None),
            Detection3D=getattr(vision_msgs, "Detection3D", None),
            BoundingBox3D=getattr(vision_msgs, "BoundingBox3D", None),
            Vector3=getattr(geometry_msgs, "Vector3", None),
            MarkerArray=getattr(visualization_msgs, "MarkerArray", None),
            Marker=getattr(visualization_msgs, "Marker", None),
            ColorRGBA=getattr(std_msgs, "ColorRGBA", None),
            Duration=getattr(builtin_interfaces, "Duration", None),
        )


def _jazzy_marker(types: Mapping[str, Any]) -> Callable[..., Any]:
    """A Marker factory taking Humble's fields; the fields added in Iron are left empty."""
    marker = types["visualization_msgs/msg/Marker"]
    image = types["sensor_msgs/msg/CompressedImage"]
    mesh = types["visualization_msgs/msg/MeshFile"]
    time = types["builtin_interfaces/msg/Time"]
    header = types["std_msgs/msg/Header"]

    def build(**fields: Any) -> Any:
        return marker(
            **fields,
            texture_resource="",
            texture=image(
                header=header(stamp=time(sec=0, nanosec=0), frame_id=""),
                format="",
                data=np.zeros(0, dtype=np.uint8),
            ),
            uv_coordinates=[],
            mesh_file=mesh(filename="", data=np.zeros(0, dtype=np.uint8)),
        )

    return build


def header_message(classes: MessageClasses, stamp_ns: int, frame_id: str) -> Any:
    """Build a ``std_msgs/Header`` from nanoseconds since the epoch and a frame id."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return classes.Header(stamp=classes.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns(header: Any) -> int:
    """Return a header's stamp in nanoseconds since the epoch."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_message(
    classes: MessageClasses, header: Any, pixels: npt.NDArray[Any], encoding: ImageEncoding
) -> Any:
    """Build a ``sensor_msgs/Image`` holding ``pixels``.

    Args:
        classes: Message classes to instantiate.
        header: The header to carry (the input image's, reused as is).
        pixels: ``mono8``: [H, W] uint8; ``16UC1``: [H, W] uint16 (written little-endian,
            ``is_bigendian=0``, ``step=2W``); ``bgr8``: [H, W, 3] uint8 BGR.
        encoding: One of ``mono8``, ``16UC1``, ``bgr8``.

    Returns:
        The message. With rosbags classes ``data`` is a view of ``pixels`` when it is
        already contiguous (no copy): do not modify ``pixels`` until it is serialised.

    Raises:
        CodecError: ``pixels`` has the wrong shape or dtype for ``encoding``.
    """
    layout = _IMAGE_LAYOUTS.get(encoding)
    if layout is None:
        raise CodecError(f"cannot build an image message with encoding {encoding!r}")
    ndim, channels, dtype, value_bytes = layout
    shape_ok = pixels.ndim == ndim and (ndim == 2 or pixels.shape[2] == channels)
    if not shape_ok or pixels.dtype.kind != np.dtype(dtype).kind or pixels.itemsize != value_bytes:
        want = "[H, W]" if ndim == 2 else f"[H, W, {channels}]"
        raise CodecError(
            f"{encoding} image needs {want} {np.dtype(dtype).name}, got "
            f"{list(pixels.shape)} {pixels.dtype}"
        )
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if value_bytes > 1:
        # ROS images say their byte order; we always send little-endian.
        pixels = pixels.astype(np.dtype(dtype).newbyteorder("<"), copy=False)
    buffer = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    return classes.Image(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels * value_bytes,
        data=classes.byte_array(buffer),
    )


def _zero_pose(classes: MessageClasses) -> Any:
    return classes.PoseWithCovariance(
        pose=classes.Pose(
            position=classes.Point(x=0.0, y=0.0, z=0.0),
            orientation=classes.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=classes.float64_array(np.zeros(_COVARIANCE_SIZE, dtype=np.float64)),
    )


def _detection(classes: MessageClasses, header: Any, instance: Instance) -> Any:
    x0, y0, x1, y1 = instance.bbox_xyxy
    # Inclusive pixel-centre boxes (results.py): centre between the end pixels, size counts
    # both end pixels.
    bbox = classes.BoundingBox2D(
        center=classes.Pose2D(
            position=classes.Point2D(x=(x0 + x1) / 2.0, y=(y0 + y1) / 2.0), theta=0.0
        ),
        size_x=float(x1 - x0 + 1),
        size_y=float(y1 - y0 + 1),
    )
    hypothesis = classes.ObjectHypothesisWithPose(
        hypothesis=classes.ObjectHypothesis(
            class_id=instance.class_name, score=float(instance.score)
        ),
        pose=_zero_pose(classes),
    )
    return classes.Detection2D(
        header=header,
        results=[hypothesis],
        bbox=bbox,
        id=str(instance.track_id or instance.index),
    )


def detection_array(classes: MessageClasses, header: Any, result: FrameResult) -> Any:
    """Build the ``vision_msgs/Detection2DArray`` of a frame's instances.

    Detection k-1 describes the pixels of value k in ``instance_ids`` (index order). Each
    carries one hypothesis (class name, score) with a default pose, its box in camera
    pixels and ``id`` = the track id (the instance index when no tracker ran).
    """
    ordered = sorted(result.instances, key=lambda inst: inst.index)
    return classes.Detection2DArray(
        header=header, detections=[_detection(classes, header, inst) for inst in ordered]
    )


def _needs(classes: MessageClasses, *names: str) -> list[Callable[..., Any]]:
    found = [getattr(classes, name) for name in names]
    missing = [name for name, cls in zip(names, found, strict=True) if cls is None]
    if missing:
        raise CodecError(f"no {missing[0]} message class given; is its package installed?")
    return found


def _ground_pose(classes: MessageClasses, obj: GroundObject) -> Any:
    x, y, z = obj.position_xyz
    return classes.Pose(
        position=classes.Point(x=float(x), y=float(y), z=float(z)),
        orientation=classes.Quaternion(
            x=0.0, y=0.0, z=math.sin(obj.yaw / 2.0), w=math.cos(obj.yaw / 2.0)
        ),
    )


def object_detection_array(
    classes: MessageClasses, stamp: Any, frame_id: str, objects: Sequence[GroundObject]
) -> Any:
    """Build the ``vision_msgs/Detection3DArray`` of a frame's ground objects.

    One ``Detection3D`` per object: ``id`` as the ``instances`` detection of the same
    object (the track id), one hypothesis (class name, score) whose pose is the box centre
    with the object's covariance, and the box (centre, size = length along the viewing
    ray, width, height).

    Args:
        classes: Message classes to instantiate (with the 3D classes).
        stamp: The image's stamp (``builtin_interfaces/Time``), carried unchanged.
        frame_id: The ground frame (``grid.frame_id``).
        objects: The objects (:func:`panoptic_ros.ground_objects.locate_objects`).

    Raises:
        CodecError: ``classes`` has no vision_msgs 3D classes.
    """
    array_cls, detection_cls, box_cls, vector_cls = _needs(
        classes, "Detection3DArray", "Detection3D", "BoundingBox3D", "Vector3"
    )
    header = classes.Header(stamp=stamp, frame_id=frame_id)
    detections = []
    for obj in objects:
        length, width, height = obj.size_lwh
        hypothesis = classes.ObjectHypothesisWithPose(
            hypothesis=classes.ObjectHypothesis(class_id=obj.class_name, score=float(obj.score)),
            pose=classes.PoseWithCovariance(
                pose=_ground_pose(classes, obj),
                covariance=classes.float64_array(obj.covariance.reshape(_COVARIANCE_SIZE)),
            ),
        )
        detections.append(
            detection_cls(
                header=header,
                results=[hypothesis],
                bbox=box_cls(
                    center=_ground_pose(classes, obj),
                    size=vector_cls(x=float(length), y=float(width), z=float(height)),
                ),
                id=obj.object_id,
            )
        )
    return array_cls(header=header, detections=detections)


# visualization_msgs/Marker constants (the same in Humble and Jazzy).
_CUBE: Final = 1
_TEXT_VIEW_FACING: Final = 9
_ADD: Final = 0
_DELETEALL: Final = 3
_LABEL_HEIGHT_M: Final = 0.6


def object_markers(
    classes: MessageClasses,
    stamp: Any,
    frame_id: str,
    objects: Sequence[GroundObject],
    colors_rgb: Mapping[str, tuple[int, int, int]] | None = None,
) -> Any:
    """Build a ``visualization_msgs/MarkerArray`` of the objects for RViz.

    A ``DELETEALL`` marker first (RViz drops the previous frame's boxes, so none lingers),
    then per object a translucent cube (namespace ``objects``) and a label "class id score
    range" above it (namespace ``labels``), both with the object id as marker id when it
    is a number.

    Args:
        classes: Message classes to instantiate (with the visualization_msgs classes).
        stamp: The image's stamp, carried unchanged.
        frame_id: The ground frame.
        objects: The objects.
        colors_rgb: Class name -> display colour (0..255); grey for others.

    Raises:
        CodecError: ``classes`` has no visualization_msgs classes.
    """
    array_cls, marker_cls, vector_cls, color_cls, duration_cls = _needs(
        classes, "MarkerArray", "Marker", "Vector3", "ColorRGBA", "Duration"
    )
    header = classes.Header(stamp=stamp, frame_id=frame_id)
    colors = colors_rgb or {}

    def marker(**fields: Any) -> Any:
        base: dict[str, Any] = {
            "header": header,
            "ns": "",
            "id": 0,
            "type": _CUBE,
            "action": _ADD,
            "pose": classes.Pose(
                position=classes.Point(x=0.0, y=0.0, z=0.0),
                orientation=classes.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            "scale": vector_cls(x=1.0, y=1.0, z=1.0),
            "color": color_cls(r=0.0, g=0.0, b=0.0, a=0.0),
            "lifetime": duration_cls(sec=0, nanosec=0),
            "frame_locked": False,
            "points": [],
            "colors": [],
            "text": "",
            "mesh_resource": "",
            "mesh_use_embedded_materials": False,
        }
        base.update(fields)
        return marker_cls(**base)

    markers = [marker(action=_DELETEALL)]
    for number, obj in enumerate(objects):
        marker_id = int(obj.object_id) if obj.object_id.isdigit() else number
        marker_id = marker_id if marker_id < 2**31 else number
        length, width, height = obj.size_lwh
        r, g, b = colors.get(obj.class_name, (160, 160, 160))
        markers.append(
            marker(
                ns="objects",
                id=marker_id,
                pose=_ground_pose(classes, obj),
                scale=vector_cls(
                    x=float(max(length, 0.05)),
                    y=float(max(width, 0.05)),
                    z=float(max(height, 0.05)),
                ),
                color=color_cls(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=0.5),
            )
        )
        x, y, _ = obj.position_xyz
        markers.append(
            marker(
                ns="labels",
                id=marker_id,
                type=_TEXT_VIEW_FACING,
                pose=classes.Pose(
                    position=classes.Point(
                        x=float(x), y=float(y), z=float(height + _LABEL_HEIGHT_M)
                    ),
                    orientation=classes.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                ),
                scale=vector_cls(x=0.0, y=0.0, z=_LABEL_HEIGHT_M),
                color=color_cls(r=1.0, g=1.0, b=1.0, a=1.0),
                text=f"{obj.class_name} {obj.object_id} {obj.score:.2f} {obj.range_m:.1f} m",
            )
        )
    return array_cls(markers=markers)


def build_output_messages(
    classes: MessageClasses,
    header: Any,
    result: FrameResult,
    *,
    overlay_bgr: npt.NDArray[np.uint8] | None = None,
    enabled: Iterable[str] = frozenset(OUTPUT_TOPICS),
) -> dict[str, Any]:
    """Build the enabled outputs of one frame, keyed by output name (:data:`OUTPUT_TOPICS`).

    Outputs not in ``enabled`` are not built at all (no subscriber, no cost).

    Args:
        classes: Message classes to instantiate.
        header: The input image's header, carried unchanged by every output.
        result: The frame's panoptic result.
        overlay_bgr: [H, W, 3] uint8 BGR overlay; required when ``overlay`` is enabled.
        enabled: Names of the outputs to build.

    Returns:
        ``{name: message}`` in :data:`OUTPUT_TOPICS` order.

    Raises:
        ValueError: An unknown output name, or ``overlay`` enabled without ``overlay_bgr``
            (programming errors of the caller).
    """
    wanted = frozenset(enabled)
    unknown = sorted(wanted - OUTPUT_TOPICS.keys())
    if unknown:
        raise ValueError(f"unknown outputs {unknown}; known: {list(OUTPUT_TOPICS)}")
    if "overlay" in wanted and overlay_bgr is None:
        raise ValueError("the overlay output is enabled but no overlay_bgr image was given")
    messages: dict[str, Any] = {}
    if "drivable_mask" in wanted:
        messages["drivable_mask"] = image_message(classes, header, result.drivable_mask, "mono8")
    if "semantic" in wanted:
        messages["semantic"] = image_message(classes, header, result.semantic, "mono8")
    if "instance_ids" in wanted:
        messages["instance_ids"] = image_message(classes, header, result.instance_ids, "16UC1")
    if "instances" in wanted:
        messages["instances"] = detection_array(classes, header, result)
    if overlay_bgr is not None and "overlay" in wanted:
        messages["overlay"] = image_message(classes, header, overlay_bgr, "bgr8")
    return messages
