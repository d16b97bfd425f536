"""Geometry of panoptic_ros.ground_objects against closed-form expectations.

The camera: a pinhole at height H above flat ground, pitched down by THETA, optical frame
REP 103. A ray through image row v (pixel centres at integers) leaves the camera at the
depression angle THETA + atan((v - cy) / fy) below the horizontal and meets the ground at
the horizontal range H / tan(that angle): the expectations below are written from that
formula alone, independently of the code's ray casting.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from panoptic_ros.camera_model import CameraModel, camera_info_topic
from panoptic_ros.config import GridConfig, ObjectsConfig, parse_length_prior
from panoptic_ros.errors import ConfigError
from panoptic_ros.ground_objects import (
    DEFAULT_LENGTH_PRIOR_M,
    LEFT_OUT_REASONS,
    ObjectParams,
    locate_objects,
)
from panoptic_ros.results import FrameResult, Instance
from panoptic_ros.tracking import InstanceTracker

H = 1.5
THETA = math.radians(4.0)
W_PX, H_PX = 1920, 1080
F = 2000.0
CX, CY = 959.5, 539.5


def camera_from_ground(height: float = H, pitch: float = THETA) -> np.ndarray:
    """[4, 4] ground -> optical for a camera at (0, 0, height) looking along +x, pitched down."""
    z_axis = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])  # optical axis
    x_axis = np.array([0.0, -1.0, 0.0])  # image right = ground -y
    y_axis = np.cross(z_axis, x_axis)  # image down
    ground_from_camera = np.eye(4)
    ground_from_camera[:3, :3] = np.stack([x_axis, y_axis, z_axis], axis=1)
    ground_from_camera[:3, 3] = [0.0, 0.0, height]
    return np.linalg.inv(ground_from_camera)


def pinhole(
    *,
    d: list[float] | None = None,
    model: str = "plumb_bob",
    p: np.ndarray | None = None,
    binning: int = 1,
    roi: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> CameraModel:
    k = np.array([[F, 0.0, CX], [0.0, F, CY], [0.0, 0.0, 1.0]])
    if p is None:
        p = np.concatenate([k, np.zeros((3, 1))], axis=1)
    return CameraModel(
        width=W_PX,
        height=H_PX,
        k=k,
        d=np.asarray(d or [0.0] * 5, dtype=np.float64),
        distortion_model=model,
        p=p,
        binning_x=binning,
        binning_y=binning,
        roi_xywh=roi,
    )


def row_for_range(range_m: float, fy: float = F, cy: float = CY) -> float:
    """Continuous image y where flat ground at ``range_m`` appears (pinhole)."""
    return cy + fy * math.tan(math.atan2(H, range_m) - THETA)


def range_for_row(v: float, fy: float = F, cy: float = CY) -> float:
    """Horizontal range of the ground seen at continuous image y ``v`` (pinhole)."""
    return H / math.tan(THETA + math.atan((v - cy) / fy))


def range_for_pixel(u: float, v: float, f: float = F, cx: float = CX, cy: float = CY) -> float:
    """Horizontal range of the ground seen at continuous pixel (u, v) (pinhole, any column)."""
    forward = math.cos(THETA) - math.sin(THETA) * (v - cy) / f
    lateral = -(u - cx) / f
    down = math.sin(THETA) + math.cos(THETA) * (v - cy) / f
    return H * math.hypot(forward, lateral) / down


def frame(
    boxes: list[tuple[int, int, int, int]],
    shape: tuple[int, int] = (H_PX, W_PX),
    classes: list[str] | None = None,
) -> FrameResult:
    """Rectangular masks, inclusive boxes (x0, y0, x1, y1); instance k = boxes[k-1]."""
    ids = np.zeros(shape, np.uint16)
    instances = []
    for k, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        ids[y0 : y1 + 1, x0 : x1 + 1] = k
        name = (classes or ["car"] * len(boxes))[k - 1]
        area = (x1 - x0 + 1) * (y1 - y0 + 1)
        instances.append(
            Instance(k, 13, name, 0.8, (x0, y0, x1, y1), area, ((y0 + y1) / 2, (x0 + x1) / 2))
        )
    zeros = np.zeros(shape, np.uint8)
    return FrameResult(zeros, ids, zeros, tuple(instances))


PARAMS = ObjectParams(max_range_m=80.0)


@pytest.mark.parametrize("range_m", [5.0, 10.0, 20.0, 35.0, 50.0])
def test_contact_row_gives_the_range_of_the_closed_form(range_m: float) -> None:
    # A mask whose lowest row is `row`: its contact is at y = row + 0.5, x = 959.5 = cx.
    row = math.floor(row_for_range(range_m))
    result = frame([(910, row - 40, 1009, row)])
    (obj,) = locate_objects(result, pinhole(), camera_from_ground(), PARAMS).objects
    assert obj.range_m == pytest.approx(range_for_row(row + 0.5), rel=1e-9)
    # The mask drawn from ground truth (pixels whose centre lies above the true contact)
    # gives the true range to 1 %: quantisation is at most half a pixel.
    assert obj.range_m == pytest.approx(range_m, rel=0.01)
    assert obj.contact_xyz[2] == 0.0
    # Straight ahead.
    assert obj.contact_xyz[0] == pytest.approx(obj.range_m, rel=1e-12)
    assert obj.contact_xyz[1] == pytest.approx(0.0, abs=1e-9)


def test_box_centre_size_and_yaw() -> None:
    range_m = 20.0
    row = math.floor(row_for_range(range_m))
    distance = math.hypot(range_m, H)
    # A car 1.8 m wide, 1.5 m high, seen straight ahead, 100 px tall in the image.
    half_width_px = round(0.9 * F / distance)
    result = frame([(960 - half_width_px, row - 100, 959 + half_width_px, row)])
    (obj,) = locate_objects(result, pinhole(), camera_from_ground(), PARAMS).objects
    length, width, height = obj.size_lwh
    assert length == 4.5  # the car prior
    contact_range = obj.range_m
    # Width: 2 * half_width_px pixels at the near face's distance along the optical axis.
    depth = contact_range * math.cos(THETA) + H * math.sin(THETA)
    assert width == pytest.approx(2 * half_width_px * depth / F, rel=0.02)
    # Height: the top edge ray meets the vertical plane through the contact point.
    top_angle = THETA + math.atan((row - 100 - 0.5 - CY) / F)
    assert height == pytest.approx(H - contact_range * math.tan(top_angle), rel=1e-6)
    x, y, z = obj.position_xyz
    assert x == pytest.approx(obj.contact_xyz[0] + length / 2, rel=1e-6)
    assert y == pytest.approx(obj.contact_xyz[1], abs=1e-3)
    assert z == pytest.approx(height / 2)
    assert obj.yaw == pytest.approx(0.0, abs=1e-3)


def test_objects_off_axis_are_placed_along_their_ray() -> None:
    row = math.floor(row_for_range(15.0))
    result = frame([(1500, row - 30, 1540, row)])
    (obj,) = locate_objects(result, pinhole(), camera_from_ground(), PARAMS).objects
    bearing = math.atan2(obj.contact_xyz[1], obj.contact_xyz[0])
    assert bearing < 0  # right of the camera
    assert obj.yaw == pytest.approx(bearing, abs=1e-9)
    # Pushed back along the ray: centre, contact and camera foot are collinear.
    assert math.atan2(obj.position_xyz[1], obj.position_xyz[0]) == pytest.approx(bearing)


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_distortion_is_undone(model: str) -> None:
    d = {
        "plumb_bob": [-0.28, 0.09, 0.0005, -0.0003, -0.01],
        "rational_polynomial": [-0.28, 0.09, 0.0005, -0.0003, -0.01, 0.02, 0.01, 0.002],
        "equidistant": [0.05, -0.01, 0.002, -0.0005],
    }[model]
    camera = pinhole(d=d, model=model)
    pose = camera_from_ground()
    for range_m in (5.0, 12.0, 30.0, 50.0):
        # The true contact (at the image centre column) seen through the distortion.
        ground = np.array([[range_m, 0.0, 0.0]])
        in_camera = ground @ pose[:3, :3].T + pose[:3, 3]
        pixels, _ = camera.project(in_camera, rectified=False)
        u, v = pixels[0]
        row = math.floor(v)
        column = round(u)
        result = frame([(column - 20, row - 30, column + 20, row)])
        (obj,) = locate_objects(result, camera, pose, PARAMS).objects
        # Exact: the ray through (column, row + 0.5) undistorted, then the closed form.
        _, rays = camera.pixel_rays(np.array([[float(column), row + 0.5]]), rectified=False)
        ray_ground = rays[0] @ np.linalg.inv(pose)[:3, :3].T
        depression = math.atan2(-ray_ground[2], math.hypot(*ray_ground[:2]))
        assert obj.range_m == pytest.approx(H / math.tan(depression), rel=1e-9)
        assert obj.range_m == pytest.approx(range_m, rel=0.01)
        # Ignoring the distortion would be far off near the image's edges.
        undistorted = range_for_row(row + 0.5)
        if abs(v - CY) > 150:
            assert abs(undistorted - range_m) > 2 * abs(obj.range_m - range_m)


def test_rectified_projection_p_is_used() -> None:
    # P differs from K (new focal length and centre after rectification).
    f_rect, cx_rect, cy_rect = 1800.0, 950.0, 530.0
    p = np.array([[f_rect, 0, cx_rect, 0.0], [0, f_rect, cy_rect, 0.0], [0, 0, 1, 0.0]])
    camera = pinhole(d=[-0.3, 0.1, 0, 0, 0], p=p)
    params = replace(PARAMS, rectified=True)
    for range_m in (5.0, 25.0, 50.0):
        row = math.floor(row_for_range(range_m, f_rect, cy_rect))
        result = frame([(940, row - 20, 960, row)])
        (obj,) = locate_objects(result, camera, camera_from_ground(), params).objects
        assert obj.range_m == pytest.approx(range_for_row(row + 0.5, f_rect, cy_rect), rel=1e-9)
        assert obj.range_m == pytest.approx(range_m, rel=0.01)


@pytest.mark.parametrize(("binning", "roi"), [(2, (0, 0, 0, 0)), (1, (320, 180, 1280, 720))])
def test_binning_and_roi(binning: int, roi: tuple[int, int, int, int]) -> None:
    camera = pinhole(binning=binning, roi=roi)
    x_off, y_off = roi[:2]
    out_h = (roi[3] or H_PX) // binning
    out_w = (roi[2] or W_PX) // binning
    for range_m in (8.0, 20.0, 45.0):
        full_row = row_for_range(range_m)
        # Published row: (full - offset) / binning; the mask's lowest row contains it.
        row = math.floor((full_row - y_off) / binning)
        column = (960 - x_off) // binning
        result = frame([(column - 10, row - 10, column + 10, row)], shape=(out_h, out_w))
        (obj,) = locate_objects(result, camera, camera_from_ground(), PARAMS).objects
        full_v = (row + 0.5) * binning + y_off
        assert obj.range_m == pytest.approx(range_for_pixel(column * binning + x_off, full_v))
        assert obj.range_m == pytest.approx(range_m, rel=0.01 * binning)


def test_left_out_objects_are_counted_by_reason() -> None:
    horizon_row = math.floor(CY - F * math.tan(THETA))  # ground at infinity: v = cy - f tan
    boxes = [
        (100, 900, 200, H_PX - 1),  # touches the image bottom: contact not seen
        (300, horizon_row - 50, 400, horizon_row - 5),  # contact above the horizon
        (500, 300, 600, math.floor(row_for_range(120.0))),  # beyond 80 m
        (700, 600, 800, math.floor(row_for_range(10.0))),  # kept
    ]
    result = frame(boxes)
    # An instance listed without pixels in the map (e.g. painted over) is left out too.
    ghost = Instance(5, 13, "car", 0.5, (1000, 100, 1010, 110), 0, (105.0, 1005.0))
    result = replace(result, instances=(*result.instances, ghost))
    located = locate_objects(result, pinhole(), camera_from_ground(), PARAMS)
    assert [o.index for o in located.objects] == [4]
    assert dict(located.left_out) == {
        "no_pixels": 1,
        "cut_by_image_bottom": 1,
        "at_or_above_horizon": 1,
        "beyond_max_range": 1,
    }
    assert tuple(located.left_out) == LEFT_OUT_REASONS


def test_contact_row_is_robust_to_stray_pixels_and_uses_the_lowest_columns() -> None:
    row = math.floor(row_for_range(12.0))
    result = frame([(900, row - 60, 999, row)])
    ids = result.instance_ids.copy()
    # One stray column reaching 40 rows lower (a shadow pixel run): ignored.
    ids[row + 1 : row + 41, 950] = 1
    # The middle of the mask (between the wheels) ends higher: the wheels decide.
    ids[row - 10 : row + 1, 920:980] = 0
    (obj,) = locate_objects(
        replace(result, instance_ids=ids), pinhole(), camera_from_ground(), PARAMS
    ).objects
    assert obj.contact_px == (949.5, row + 0.5)
    assert obj.range_m == pytest.approx(range_for_pixel(949.5, row + 0.5), rel=1e-9)


def test_covariance_grows_with_range_as_the_model_says() -> None:
    pixel_sigma, tilt_deg = 1.5, 0.5
    params = replace(PARAMS, pixel_sigma_px=pixel_sigma, tilt_sigma_deg=tilt_deg)
    previous = 0.0
    sigmas = []
    for range_m in (5.0, 10.0, 20.0, 30.0, 40.0, 50.0):
        row = math.floor(row_for_range(range_m))
        result = frame([(950, row - 20, 969, row)])
        (obj,) = locate_objects(result, pinhole(), camera_from_ground(), params).objects
        v = row + 0.5
        # d(angle)/dv of a pinhole: fy / (fy^2 + (v - cy)^2); dr/d(angle) = (r^2 + h^2) / h.
        angle_per_px = F / (F**2 + (v - CY) ** 2)
        angle_sigma = math.hypot(angle_per_px * pixel_sigma, math.radians(tilt_deg))
        r = obj.range_m
        expected_range_sigma = (r**2 + H**2) / H * angle_sigma
        cov = obj.covariance.reshape(6, 6)
        # Straight ahead: along the ray is x.
        assert math.sqrt(cov[0, 0]) == pytest.approx(expected_range_sigma, rel=1e-3)
        # Across: range x azimuth per pixel x pixel sigma; at the centre column the azimuth
        # changes by 1 / (f x the ray's forward component) per pixel.
        forward = math.cos(THETA) - math.sin(THETA) * (v - CY) / F
        assert math.sqrt(cov[1, 1]) == pytest.approx(r * pixel_sigma / (F * forward), rel=1e-3)
        assert cov[0, 0] > previous
        previous = cov[0, 0]
        assert np.allclose(cov, cov.T)
        assert cov[5, 5] == pytest.approx(math.pi**2 / 3)
        sigmas.append(math.sqrt(cov[0, 0]))
    # Both terms are angles, nearly constant here: sigma grows as r^2 + h^2 (x 92 from 5 m).
    assert sigmas[-1] / sigmas[0] == pytest.approx((50**2 + H**2) / (5**2 + H**2), rel=0.05)


def test_ids_match_instances_in_every_frame() -> None:
    tracker = InstanceTracker()
    rows = [math.floor(row_for_range(r)) for r in (8.0, 15.0, 25.0)]
    for step in range(5):
        boxes = [
            (200 + 400 * i + 3 * step, row - 30, 260 + 400 * i + 3 * step, row)
            for i, row in enumerate(rows)
        ]
        if step == 3:
            boxes = boxes[1:]  # one object leaves; the others keep their ids
        result = tracker.update(frame(boxes))
        located = locate_objects(result, pinhole(), camera_from_ground(), PARAMS)
        by_index = {inst.index: inst for inst in result.instances}
        assert len(located.objects) == len(result.instances)
        for obj in located.objects:
            instance = by_index[obj.index]
            assert obj.track_id == instance.track_id != 0
            assert obj.object_id == str(instance.track_id)
            assert obj.class_name == instance.class_name
            assert obj.score == instance.score


def test_camera_below_the_ground_is_refused() -> None:
    with pytest.raises(ConfigError, match="above the ground plane"):
        locate_objects(frame([(0, 0, 5, 5)]), pinhole(), camera_from_ground(height=-0.5), PARAMS)


def test_length_prior_entries() -> None:
    assert parse_length_prior(["car=4.5", " van = 5 "]) == {"car": 4.5, "van": 5.0}
    for bad, match in [
        ("car", "NAME=METRES"),
        ("car=x", "not a number"),
        ("car=-1", "positive"),
        ("=3", "NAME=METRES"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_length_prior([bad])
    with pytest.raises(ConfigError, match="twice"):
        parse_length_prior(["car=4", "car=5"])
    params = ObjectParams(length_prior_m={"car": 4.0}, default_length_m=0.7)
    assert params.length_of("car") == 4.0
    assert params.length_of("dog") == 0.7
    assert DEFAULT_LENGTH_PRIOR_M["car"] == 4.5
    configured = ObjectParams.from_config(
        ObjectsConfig(length_prior=("bus=10",), max_range_m=30.0),
        GridConfig(image_is_rectified=True),
    )
    assert configured.length_of("bus") == 10.0
    assert configured.length_of("car") == 1.0
    assert (configured.max_range_m, configured.rectified) == (30.0, True)
    with pytest.raises(ConfigError, match=r"objects\.length_prior entry 'car'"):
        ObjectsConfig(length_prior=("car",))


def test_camera_info_topic() -> None:
    assert camera_info_topic("/cam/image_raw") == "/cam/camera_info"
    assert camera_info_topic("/cam/image_raw/compressed") == "/cam/camera_info"
    assert camera_info_topic("image") == "camera_info"


def test_contact_row_is_numpys_lower_percentile() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        ids = np.zeros((200, 300), np.uint16)
        width = int(rng.integers(1, 60))
        bottoms = rng.integers(120, 180, size=width)
        for column, bottom in enumerate(bottoms):
            ids[100 : bottom + 1, 50 + column] = 1
        instance = Instance(
            1, 13, "car", 0.9, (50, 100, 50 + width - 1, int(bottoms.max())), 1, (0.0, 0.0)
        )
        zeros = np.zeros(ids.shape, np.uint8)
        result = FrameResult(zeros, ids, zeros, (instance,))
        percentile = float(rng.uniform(50, 100))
        camera = CameraModel(
            300,
            200,
            np.array([[200.0, 0, 150], [0, 200, 100], [0, 0, 1]]),
            np.zeros(5),
            "plumb_bob",
            np.eye(3, 4),
        )
        params = replace(PARAMS, contact_percentile=percentile, max_range_m=1000.0)
        (obj,) = locate_objects(result, camera, camera_from_ground(pitch=0.3), params).objects
        assert obj.contact_px[1] == np.percentile(bottoms, percentile, method="lower") + 0.5
