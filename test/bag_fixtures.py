"""Test helpers for bags: small synthetic camera bags, a fake pipeline and tracker.

Bags are built in ``tmp_path`` with :func:`panoptic_ros.bags.write_image_bag` (3-4 frames of
64x96 by default), in every raw encoding, as JPEG/PNG, in MCAP or sqlite3. The fake
pipeline returns a deterministic :class:`FrameResult` built from the decoded image, so
replay tests run without a model.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.bags import BagWriter, write_image_bag
from panoptic_ros.codec import decode_image, encode_compressed, encode_raw
from panoptic_ros.labels import CITYSCAPES, LabelSpace
from panoptic_ros.render import render_overlay
from panoptic_ros.results import FrameResult, Instance, StageTimings

HEIGHT = 64
WIDTH = 96
START_NS = 1_700_000_000_000_000_000
PERIOD_NS = 40_000_000
FRAME_ID = "camera_optical_frame"
TOPIC = "/camera/image_raw"
ROAD = CITYSCAPES.index("road")
BUILDING = CITYSCAPES.index("building")
CAR = CITYSCAPES.index("car")


def make_frames(
    count: int = 3, height: int = HEIGHT, width: int = WIDTH, seed: int = 0
) -> list[npt.NDArray[np.uint8]]:
    """Return ``count`` distinct [H, W, 3] uint8 RGB frames (smooth, so JPEG keeps them)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for index in range(count):
        base = rng.integers(0, 200, size=3)
        frame = np.stack(
            [
                (base[0] + 2 * xx + 7 * index) % 256,
                (base[1] + 3 * yy) % 256,
                (base[2] + xx + yy) % 256,
            ],
            axis=2,
        ).astype(np.uint8)
        frames.append(frame)
    return frames


def make_raw_bag(
    tmp_path: Path,
    encoding: str = "rgb8",
    *,
    storage: str = "mcap",
    count: int = 3,
    name: str | None = None,
    topic: str = TOPIC,
) -> Path:
    """Write a raw ``sensor_msgs/Image`` bag; returns its folder."""
    path = tmp_path / (name or f"raw_{encoding}_{storage}")
    return write_image_bag(
        path,
        make_frames(count),
        topic=topic,
        encoding=encoding,
        storage=storage,  # type: ignore[arg-type]
        frame_id=FRAME_ID,
        start_ns=START_NS,
        period_ns=PERIOD_NS,
    )


def make_compressed_bag(
    tmp_path: Path,
    fmt: str = "jpeg",
    *,
    storage: str = "mcap",
    count: int = 3,
    name: str | None = None,
    topic: str = TOPIC + "/compressed",
) -> Path:
    """Write a ``sensor_msgs/CompressedImage`` bag (``fmt`` jpeg or png)."""
    path = tmp_path / (name or f"compressed_{fmt}_{storage}")
    return write_image_bag(
        path,
        make_frames(count),
        topic=topic,
        compressed=fmt,
        storage=storage,  # type: ignore[arg-type]
        frame_id=FRAME_ID,
        start_ns=START_NS,
        period_ns=PERIOD_NS,
    )


def make_bag_with_corrupt_frames(
    tmp_path: Path, corrupt: tuple[int, ...] = (1,), count: int = 4, name: str = "corrupt"
) -> Path:
    """Write a JPEG bag whose frames at ``corrupt`` hold a truncated, undecodable JPEG."""
    path = tmp_path / name
    with BagWriter(path) as writer:
        types = writer.typestore.types
        for index, rgb in enumerate(make_frames(count)):
            stamp = START_NS + index * PERIOD_NS
            packed = encode_compressed(rgb, "jpeg")
            data = np.frombuffer(packed.data, dtype=np.uint8)
            if index in corrupt:
                data = data[:20].copy()  # JPEG magic, then nothing: the decoder fails
            sec, nanosec = divmod(stamp, 1_000_000_000)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id=FRAME_ID,
            )
            message = types["sensor_msgs/msg/CompressedImage"](
                header=header, format=packed.format, data=data
            )
            writer.write(TOPIC + "/compressed", message, stamp)
    return path


def make_two_topic_bag(tmp_path: Path, name: str = "two_topics") -> Path:
    """Write a bag with a raw topic ``/cam_a/image_raw`` and a JPEG ``/cam_b/...``."""
    path = tmp_path / name
    with BagWriter(path) as writer:
        types = writer.typestore.types
        for index, rgb in enumerate(make_frames(2)):
            stamp = START_NS + index * PERIOD_NS
            sec, nanosec = divmod(stamp, 1_000_000_000)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id=FRAME_ID,
            )
            raw = types["sensor_msgs/msg/Image"](
                header=header,
                height=HEIGHT,
                width=WIDTH,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * WIDTH,
                data=rgb.reshape(-1),
            )
            packed = encode_compressed(rgb, "jpeg")
            jpeg = types["sensor_msgs/msg/CompressedImage"](
                header=header,
                format=packed.format,
                data=np.frombuffer(packed.data, dtype=np.uint8),
            )
            writer.write("/cam_a/image_raw", raw, stamp)
            writer.write("/cam_b/image_raw/compressed", jpeg, stamp)
    return path


def hash_tree(path: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` of every file under ``path`` (or of the file)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p.relative_to(path) if p != path else p.name): hashlib.sha256(
            p.read_bytes()
        ).hexdigest()
        for p in files
    }


def fake_result(image: npt.NDArray[np.uint8], decode_ms: float = 0.0) -> FrameResult:
    """A deterministic result for an [H, W, 3] image.

    Left half road (drivable), right half building; one car instance in the right half:
    rows H/4..H/2-1, columns 3W/4..W-1.
    """
    height, width = image.shape[:2]
    semantic = np.full((height, width), BUILDING, dtype=np.uint8)
    semantic[:, : width // 2] = ROAD
    drivable = np.zeros((height, width), dtype=np.uint8)
    drivable[:, : width // 2] = 255
    ids = np.zeros((height, width), dtype=np.uint16)
    y0, y1, x0, x1 = height // 4, height // 2 - 1, 3 * width // 4, width - 1
    ids[y0 : y1 + 1, x0 : x1 + 1] = 1
    semantic[ids == 1] = CAR
    area = int((ids == 1).sum())
    car = Instance(
        index=1,
        class_id=CAR,
        class_name="car",
        score=0.75,
        bbox_xyxy=(x0, y0, x1, y1),
        area_px=area,
        centroid_yx=((y0 + y1) / 2, (x0 + x1) / 2),
    )
    timings = StageTimings(decode_ms=decode_ms, preprocess_ms=1.0, inference_ms=2.0, fusion_ms=3.0)
    return FrameResult(semantic, ids, drivable, (car,), timings)


class FakePipeline:
    """Stands in for PanopticPipeline: real decoding, :func:`fake_result` as the model.

    Args:
        fail_on: 0-based call index at which ``process_message`` raises RuntimeError.
    """

    def __init__(self, fail_on: int | None = None) -> None:
        self.labels: LabelSpace = CITYSCAPES
        self.fail_on = fail_on
        self.calls = 0

    def describe(self) -> str:
        return "backend=fake model=none network=0x0"

    def process_message(self, msg: Any) -> tuple[npt.NDArray[np.uint8], FrameResult]:
        index = self.calls
        self.calls += 1
        if self.fail_on is not None and index == self.fail_on:
            raise RuntimeError(f"fake pipeline failure on frame {index}")
        start = time.perf_counter_ns()
        image = decode_image(msg)  # raises CodecError for undecodable frames
        decode_ms = (time.perf_counter_ns() - start) / 1e6
        return image, fake_result(image, decode_ms)

    def render(
        self,
        image: npt.NDArray[np.uint8],
        result: FrameResult,
        *,
        alpha: float = 0.5,
        draw_boxes: bool = True,
    ) -> npt.NDArray[np.uint8]:
        return render_overlay(image, result, self.labels, alpha=alpha, draw_boxes=draw_boxes)


class FakeTracker:
    """Gives instance k of frame n the track id ``1000 * (n + 1) + k`` (visible in tests)."""

    def __init__(self) -> None:
        self.frames = 0

    def update(self, result: FrameResult) -> FrameResult:
        self.frames += 1
        instances = tuple(
            replace(inst, track_id=1000 * self.frames + inst.index) for inst in result.instances
        )
        return replace(result, instances=instances)


# Camera of make_ground_bag: f = 60 px, centre at the image centre, 1.5 m above
# base_footprint and 1.2 m ahead of it, pitched down 10 degrees.
GROUND_F = 60.0
GROUND_HEIGHT_M = 1.5
GROUND_AHEAD_M = 1.2
GROUND_PITCH_DEG = 10.0


def _quaternion_from_matrix(matrix: npt.NDArray[np.float64]) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation matrix whose trace is positive."""
    w = float(np.sqrt(1.0 + np.trace(matrix)) / 2.0)
    return (
        float((matrix[2, 1] - matrix[1, 2]) / (4 * w)),
        float((matrix[0, 2] - matrix[2, 0]) / (4 * w)),
        float((matrix[1, 0] - matrix[0, 1]) / (4 * w)),
        w,
    )


def ground_contact_xy() -> tuple[float, float]:
    """Where :func:`fake_result`'s car meets the ground in a ground bag, in base_footprint.

    Its lowest row is H/2 - 1, so the contact is at image y = H/2 - 0.5 = cy (on the
    optical axis' row, 10 degrees down) and x = (3W/4 + W - 1) / 2, 36 px right of cx.
    """
    pitch = np.radians(GROUND_PITCH_DEG)
    right = ((3 * WIDTH // 4 + WIDTH - 1) / 2 - (WIDTH - 1) / 2) / GROUND_F
    ahead = GROUND_HEIGHT_M / np.tan(pitch)
    return float(GROUND_AHEAD_M + ahead), float(-right * GROUND_HEIGHT_M / np.sin(pitch))


def make_ground_bag(
    tmp_path: Path,
    *,
    name: str = "ground",
    count: int = 3,
    mount_on_tf_until: int | None = None,
) -> Path:
    """A raw image bag with CameraInfo on /camera/camera_info and the camera's TF.

    /tf_static holds base_footprint -> camera_link (1.2 m ahead, 1.5 m up) and
    camera_link -> camera_optical_frame (REP 103 axes, pitched down 10 degrees). With
    ``mount_on_tf_until`` the first link is on /tf instead, stamped at frames
    0..``mount_on_tf_until`` only, so later frames have no transform at their stamp.
    """
    path = tmp_path / name
    pitch = np.radians(GROUND_PITCH_DEG)
    z_axis = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])
    x_axis = np.array([0.0, -1.0, 0.0])
    optical = _quaternion_from_matrix(np.stack([x_axis, np.cross(z_axis, x_axis), z_axis], 1))
    with BagWriter(path) as writer:
        types = writer.typestore.types

        def header(stamp: int, frame_id: str) -> Any:
            sec, nanosec = divmod(stamp, 1_000_000_000)
            return types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id=frame_id,
            )

        def transform(stamp: int, parent: str, child: str, xyz: Any, xyzw: Any) -> Any:
            return types["geometry_msgs/msg/TransformStamped"](
                header=header(stamp, parent),
                child_frame_id=child,
                transform=types["geometry_msgs/msg/Transform"](
                    translation=types["geometry_msgs/msg/Vector3"](
                        x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])
                    ),
                    rotation=types["geometry_msgs/msg/Quaternion"](
                        x=xyzw[0], y=xyzw[1], z=xyzw[2], w=xyzw[3]
                    ),
                ),
            )

        tf_message = types["tf2_msgs/msg/TFMessage"]
        link = (GROUND_AHEAD_M, 0.0, GROUND_HEIGHT_M), (0.0, 0.0, 0.0, 1.0)
        lens = transform(0, "camera_link", FRAME_ID, (0.0, 0.0, 0.0), optical)
        static = (
            [lens]
            if mount_on_tf_until is not None
            else [
                transform(0, "base_footprint", "camera_link", *link),
                lens,
            ]
        )
        writer.write("/tf_static", tf_message(transforms=static), START_NS)
        k = np.array([GROUND_F, 0, (WIDTH - 1) / 2, 0, GROUND_F, (HEIGHT - 1) / 2, 0, 0, 1.0])
        info = types["sensor_msgs/msg/CameraInfo"](
            header=header(START_NS, FRAME_ID),
            height=HEIGHT,
            width=WIDTH,
            distortion_model="plumb_bob",
            d=np.zeros(5),
            k=k,
            r=np.eye(3).reshape(-1),
            p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], axis=1).reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=types["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
            ),
        )
        for index, rgb in enumerate(make_frames(count)):
            stamp = START_NS + index * PERIOD_NS
            if mount_on_tf_until is not None and index <= mount_on_tf_until:
                on_tf = transform(stamp, "base_footprint", "camera_link", *link)
                writer.write("/tf", tf_message(transforms=[on_tf]), stamp)
            writer.write("/camera/camera_info", info, stamp)
            fields = encode_raw(rgb, "rgb8")
            image = types["sensor_msgs/msg/Image"](
                header=header(stamp, FRAME_ID),
                height=fields.height,
                width=fields.width,
                encoding=fields.encoding,
                is_bigendian=0,
                step=fields.step,
                data=np.frombuffer(fields.data, dtype=np.uint8),
            )
            writer.write(TOPIC, image, stamp)
    return path
