"""ROS-free parts of the node: newest-frame mailbox, camera health, ground-plane grid."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from panoptic_ros.errors import ConfigError
from panoptic_ros.ros.camera_stats import CameraStats, HealthLevel, HealthThresholds, LogThrottle
from panoptic_ros.ros.ground_grid import (
    DRIVABLE,
    NOT_DRIVABLE,
    UNSEEN,
    CameraModel,
    GridSpec,
    project_drivable_grid,
    transform_matrix,
)
from panoptic_ros.ros.latest_frame import LatestFrameMailbox

MS = 1_000_000

# ---- mailbox ---------------------------------------------------------------------------


def test_mailbox_keeps_only_the_newest_frame_and_counts_drops() -> None:
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox(("front",))
    assert not mailbox.offer("front", 1)
    assert mailbox.offer("front", 2)
    assert mailbox.offer("front", 3)
    delivery = mailbox.take(timeout_s=0)
    assert delivery is not None
    assert delivery.message == 3
    assert mailbox.dropped("front") == 2
    assert mailbox.received("front") == 3
    assert mailbox.take(timeout_s=0.01) is None


def test_mailbox_serves_cameras_in_turn_when_one_floods() -> None:
    mailbox: LatestFrameMailbox[str] = LatestFrameMailbox(("a", "b"))
    served = []
    for step in range(10):
        for _ in range(6):  # "a" floods at six frames per frame of "b"
            mailbox.offer("a", f"a{step}")
        mailbox.offer("b", f"b{step}")
        for _ in range(2):
            delivery = mailbox.take(timeout_s=0)
            assert delivery is not None
            served.append(delivery.camera)
    assert served.count("b") == 10
    assert mailbox.dropped("b") == 0
    assert mailbox.dropped("a") == 50


def test_mailbox_wakes_a_waiting_worker_and_closes() -> None:
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox(("front",))
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(mailbox.take(timeout_s=5)))
    worker.start()
    time.sleep(0.05)
    mailbox.offer("front", 7)
    worker.join(timeout=5)
    assert got[0] is not None
    assert got[0].message == 7  # type: ignore[attr-defined]
    closer = threading.Thread(target=lambda: got.append(mailbox.take()))
    closer.start()
    mailbox.close()
    closer.join(timeout=5)
    assert not closer.is_alive()
    assert got[-1] is None


def test_mailbox_reopens_after_close_without_stale_frames() -> None:
    """A managed node deactivated and activated again: waits again, counts go on."""
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox(("front",))
    mailbox.offer("front", 1)
    mailbox.offer("front", 2)  # drops 1
    mailbox.close()
    mailbox.offer("front", 3)  # arrives while closed (a callback in flight): stale
    mailbox.reopen()
    started = time.monotonic()
    assert mailbox.take(timeout_s=0.2) is None  # waited: nothing stale, not closed
    assert time.monotonic() - started >= 0.15
    mailbox.offer("front", 4)
    delivery = mailbox.take(timeout_s=1)
    assert delivery is not None and delivery.message == 4
    assert mailbox.received("front") == 4
    assert mailbox.dropped("front") == 1


def test_mailbox_rejects_unknown_camera() -> None:
    mailbox: LatestFrameMailbox[int] = LatestFrameMailbox(("front",))
    with pytest.raises(KeyError):
        mailbox.offer("rear", 1)


# ---- camera health ---------------------------------------------------------------------


def _feed(stats: CameraStats, *, frames: int, period_ms: float, latency_ms: float) -> int:
    now = 0
    for index in range(frames):
        now = int(index * period_ms * MS)
        stats.record_input(now)
        stats.record_output(now, now + int(latency_ms * MS), stamp_age_ms=latency_ms + 3)
    return now


def test_health_reports_rates_and_percentiles() -> None:
    stats = CameraStats(window_s=5.0)
    now = _feed(stats, frames=100, period_ms=50, latency_ms=20)
    health = stats.health(now + 20 * MS, HealthThresholds())
    values = dict(health.values)
    assert health.level == HealthLevel.OK, health.message
    assert float(values["input_rate_hz"]) == pytest.approx(20, rel=0.05)
    assert float(values["latency_p50_ms"]) == pytest.approx(20, abs=0.01)
    assert float(values["stamp_age_p50_ms"]) == pytest.approx(23, abs=0.01)


def test_health_grades_latency_drops_silence_and_errors() -> None:
    thresholds = HealthThresholds(latency_warn_ms=100, latency_error_ms=500, input_timeout_s=1)
    slow = CameraStats()
    now = _feed(slow, frames=20, period_ms=50, latency_ms=200)
    assert slow.health(now, thresholds).level == HealthLevel.WARN
    very_slow = CameraStats()
    now = _feed(very_slow, frames=20, period_ms=50, latency_ms=800)
    assert very_slow.health(now, thresholds).level == HealthLevel.ERROR

    silent = CameraStats()
    now = _feed(silent, frames=5, period_ms=50, latency_ms=10)
    health = silent.health(now + 3000 * MS, thresholds)
    assert health.level == HealthLevel.WARN
    assert "no input for 3.0 s" in health.message
    assert CameraStats().health(0, thresholds).message == "no input received yet"

    dropping = CameraStats()
    now = _feed(dropping, frames=20, period_ms=50, latency_ms=10)
    dropping.record_drops(15)
    assert "75% of frames dropped" in dropping.health(now, thresholds).message

    failing = CameraStats()
    now = _feed(failing, frames=20, period_ms=50, latency_ms=10)
    failing.record_error("codec", "unsupported image encoding 'rgb9'", now_ns=now)
    health = failing.health(now, thresholds)
    assert health.level == HealthLevel.WARN
    assert dict(health.values)["errors_codec"] == "1"


def test_health_grades_the_window_not_the_whole_run() -> None:
    """A bad frame or a burst of drops long past does not keep a camera at WARN."""
    thresholds = HealthThresholds(input_timeout_s=1)
    stats = CameraStats(window_s=5.0)
    stats.record_input(0)
    stats.record_output(0, 10 * MS, stamp_age_ms=10)
    stats.record_error("codec", "unsupported image encoding 'rgb9'", now_ns=20 * MS)
    stats.record_drops(0)
    assert stats.health(1000 * MS, thresholds).level == HealthLevel.WARN
    for index in range(1, 21):  # 20 frames at 10 Hz, half of them dropped
        now = 1000 * MS + index * 100 * MS
        stats.record_input(now)
        if index % 2:
            stats.record_output(now, now + 10 * MS, stamp_age_ms=10)
    stats.record_drops(10)
    burst = stats.health(3000 * MS, thresholds)
    assert "50% of frames dropped" not in burst.message  # 10 of 21 <= the 0.5 threshold
    assert "bad frames in the last 5 s" in burst.message
    # Ten seconds of clean frames later: the error and the drops are out of the window.
    for index in range(1, 101):
        now = 3000 * MS + index * 100 * MS
        stats.record_input(now)
        stats.record_output(now, now + 10 * MS, stamp_age_ms=10)
        if index % 10 == 0:
            stats.health(now, thresholds)
    health = stats.health(13000 * MS, thresholds)
    assert health.level == HealthLevel.OK, health.message
    values = dict(health.values)
    assert values["frames_failed"] == "1"  # the totals stay
    assert values["frames_dropped"] == "10"


def test_drop_share_is_taken_over_the_window() -> None:
    thresholds = HealthThresholds(drop_ratio_warn=0.5)
    stats = CameraStats(window_s=5.0)
    for index in range(100):  # 10 s of clean frames at 10 Hz
        now = index * 100 * MS
        stats.record_input(now)
        stats.record_output(now, now + 10 * MS, stamp_age_ms=10)
        if index % 10 == 0:
            stats.health(now, thresholds)
    for index in range(100, 160):  # then 6 s at 10 Hz, 4 of every 5 frames dropped
        now = index * 100 * MS
        stats.record_input(now)
        if index % 5 == 0:
            stats.record_output(now, now + 10 * MS, stamp_age_ms=10)
        stats.record_drops(stats.dropped_total + (index % 5 != 0))
        if index % 10 == 0:
            stats.health(now, thresholds)
    # Over the whole run 48 of 160 (30%) were dropped; over the last 5 s, 80% (the window
    # starts at the last health() snapshot before it, so within a frame or two of that).
    message = stats.health(159 * 100 * MS, thresholds).message
    share = re.search(r"(\d+)% of frames dropped", message)
    assert share is not None, message
    assert 75 <= int(share.group(1)) <= 85, message


def test_input_without_output_is_an_error() -> None:
    thresholds = HealthThresholds(input_timeout_s=1)
    stats = CameraStats(window_s=5.0)
    for index in range(31):  # 3 s of input at 10 Hz, nothing published yet (model warm-up)
        stats.record_input(index * 100 * MS)
    assert stats.health(3000 * MS, thresholds).level == HealthLevel.OK
    for index in range(31, 81):  # 8 s in all, still nothing published
        stats.record_input(index * 100 * MS)
    health = stats.health(8000 * MS, thresholds)
    assert health.level == HealthLevel.ERROR
    assert "nothing was published in 5 s" in health.message
    stats.record_output(8000 * MS, 8100 * MS, stamp_age_ms=100)
    assert stats.health(8100 * MS, thresholds).level == HealthLevel.OK


def test_a_problem_that_keeps_the_frame_is_counted_but_not_as_failed() -> None:
    stats = CameraStats()
    now = _feed(stats, frames=5, period_ms=50, latency_ms=10)
    stats.record_error("non_finite", "NaN in outputs", now_ns=now, frame_lost=False)
    health = stats.health(now, HealthThresholds())
    values = dict(health.values)
    assert values["errors_non_finite"] == "1"
    assert values["frames_failed"] == "0"
    assert health.level == HealthLevel.WARN
    assert "NaN in outputs" in health.message


def test_log_throttle() -> None:
    throttle = LogThrottle(period_s=1.0)
    assert throttle.ready("codec", 0)
    assert not throttle.ready("codec", 500 * MS)
    assert throttle.ready("other", 500 * MS)
    assert throttle.ready("codec", 1000 * MS)
    assert throttle.suppressed["codec"] == 1


# ---- ground grid -----------------------------------------------------------------------

CAMERA_HEIGHT_M = 1.5
LANE_HALF_WIDTH_M = 2.0


def _camera_info(width: int = 640, height: int = 480, **changes: object) -> SimpleNamespace:
    fx = fy = 400.0
    info = SimpleNamespace(
        width=width,
        height=height,
        k=[fx, 0, width / 2, 0, fy, height / 2, 0, 0, 1],
        d=[0.0] * 5,
        distortion_model="plumb_bob",
        p=[fx, 0, width / 2, 0, 0, fy, height / 2, 0, 0, 0, 1, 0],
        binning_x=0,
        binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False),
    )
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def _camera_from_ground() -> npt.NDArray[np.float64]:
    """Camera 1.5 m above base_footprint, looking along +x (REP 103 optical axes)."""
    rotation = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ np.array([0.0, 0.0, CAMERA_HEIGHT_M])
    return matrix


def _lane_mask(info: SimpleNamespace) -> npt.NDArray[np.uint8]:
    """Ground truth by back-projecting every pixel (the inverse path): 255 where the pixel's
    ray meets the ground inside the lane |y| < 2 m."""
    k = np.asarray(info.k, np.float64).reshape(3, 3)
    ys, xs = np.mgrid[0 : info.height, 0 : info.width].astype(np.float64)
    pixels = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)[:, None, :]
    normalized = cv2.undistortPoints(pixels, k, np.asarray(info.d, np.float64)).reshape(-1, 2)
    # Optical ray (u, v, 1): ground frame direction (1, -u, -v); it descends when v > 0.
    down = normalized[:, 1]
    hits = down > 1e-6
    distance = np.where(hits, CAMERA_HEIGHT_M / np.where(hits, down, 1.0), np.inf)
    lateral = -normalized[:, 0] * distance
    inside = hits & (np.abs(lateral) < LANE_HALF_WIDTH_M)
    return np.where(inside, 255, 0).astype(np.uint8).reshape(info.height, info.width)


def _expected_cells(grid: GridSpec) -> npt.NDArray[np.int8]:
    centres = grid.cell_centres()
    return np.where(np.abs(centres[:, 1]) < LANE_HALF_WIDTH_M, DRIVABLE, NOT_DRIVABLE).reshape(
        grid.shape
    )


def _check_lane(cells: npt.NDArray[np.int8], grid: GridSpec, *, min_seen: float) -> None:
    expected = _expected_cells(grid)
    centres = grid.cell_centres().reshape(*grid.shape, 3)
    # Cells within one cell of the lane border may go either way (pixel quantisation).
    clear = np.abs(np.abs(centres[..., 1]) - LANE_HALF_WIDTH_M) > grid.resolution_m
    seen = cells != UNSEEN
    assert seen.mean() > min_seen
    assert np.array_equal(cells[seen & clear], expected[seen & clear])


GRID = GridSpec(resolution_m=0.25, length_m=30.0, width_m=12.0, origin_x_m=-5.0)


def test_grid_marks_the_lane_and_leaves_unseen_cells_unknown() -> None:
    info = _camera_info()
    cells = project_drivable_grid(
        _lane_mask(info), CameraModel.from_camera_info(info), _camera_from_ground(), GRID
    )
    assert cells.shape == (48, 120)
    _check_lane(cells, GRID, min_seen=0.4)
    centres = GRID.cell_centres().reshape(*GRID.shape, 3)
    # Behind the camera (x < 0) nothing is seen; close in front, below the image, neither.
    assert np.all(cells[centres[..., 0] < 0] == UNSEEN)
    assert np.all(cells[(centres[..., 0] > 0) & (centres[..., 0] < 1.5)] == UNSEEN)
    # A lane cell straight ahead at 10 m is drivable, a cell 5 m to the side is not.
    assert cells[24, 60] == DRIVABLE
    assert cells[4, 60] == NOT_DRIVABLE


def test_grid_with_distortion_binning_and_roi() -> None:
    info = _camera_info(d=[-0.25, 0.08, 0.0005, -0.0003, 0.0])
    full_mask = _lane_mask(info)
    camera = CameraModel.from_camera_info(info)
    reference = project_drivable_grid(full_mask, camera, _camera_from_ground(), GRID)
    _check_lane(reference, GRID, min_seen=0.35)

    binned_info = _camera_info(d=info.d, binning_x=2, binning_y=2)
    binned_mask = cv2.resize(full_mask, (320, 240), interpolation=cv2.INTER_NEAREST)
    binned = project_drivable_grid(
        binned_mask, CameraModel.from_camera_info(binned_info), _camera_from_ground(), GRID
    )
    assert np.mean(binned == reference) > 0.97

    roi = SimpleNamespace(x_offset=100, y_offset=240, width=400, height=200, do_rectify=False)
    roi_info = _camera_info(d=info.d, roi=roi)
    cropped = full_mask[240:440, 100:500]
    cells = project_drivable_grid(
        cropped, CameraModel.from_camera_info(roi_info), _camera_from_ground(), GRID
    )
    seen = cells != UNSEEN
    assert 0.05 < seen.mean() < (reference != UNSEEN).mean()
    assert np.array_equal(cells[seen], reference[seen])


def test_grid_rectified_uses_p() -> None:
    info = _camera_info()
    info.k = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1]  # wrong K: only P may be used
    mask = _lane_mask(_camera_info())
    cells = project_drivable_grid(
        mask, CameraModel.from_camera_info(info), _camera_from_ground(), GRID, rectified=True
    )
    _check_lane(cells, GRID, min_seen=0.4)


def test_transform_matrix_matches_the_optical_frame_convention() -> None:
    # The usual static transform of an optical frame under a camera body frame (x forward):
    # rotation (-0.5, 0.5, -0.5, 0.5); its inverse is what tf2 returns for camera <- ground.
    base_from_optical = transform_matrix((0.0, 0.0, CAMERA_HEIGHT_M), (-0.5, 0.5, -0.5, 0.5))
    assert np.allclose(np.linalg.inv(base_from_optical), _camera_from_ground(), atol=1e-12)
    with pytest.raises(ConfigError, match="zero quaternion"):
        transform_matrix((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0))


def test_uncalibrated_camera_is_refused() -> None:
    with pytest.raises(ConfigError, match="calibrate the camera"):
        CameraModel.from_camera_info(_camera_info(k=[0.0] * 9))


def _pitched_camera(pitch_deg: float) -> npt.NDArray[np.float64]:
    """camera <- ground for a camera 1.5 m up, looking along +x and pitched down."""
    pitch = np.deg2rad(pitch_deg)
    level = _camera_from_ground()[:3, :3]
    # Pitch down = rotate the camera about its own x axis (optical x = right).
    tilt = np.array(
        [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]]
    )
    rotation = tilt @ level
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ np.array([0.0, 0.0, CAMERA_HEIGHT_M])
    return matrix


@pytest.mark.parametrize("pitch_deg", [0.0, 6.0, 12.0])
def test_pitched_camera_grid_matches_geometry(pitch_deg: float) -> None:
    """Ground truth by intersecting each pixel's ray with the ground (the inverse path)."""
    info = _camera_info()
    camera_from_ground = _pitched_camera(pitch_deg)
    ground_from_camera = np.linalg.inv(camera_from_ground)
    k = np.asarray(info.k).reshape(3, 3)
    ys, xs = np.mgrid[0 : info.height, 0 : info.width].astype(np.float64)
    rays = (
        np.stack(
            [(xs + 0.5 - k[0, 2]) / k[0, 0], (ys + 0.5 - k[1, 2]) / k[1, 1], np.ones_like(xs)],
            axis=-1,
        )
        @ ground_from_camera[:3, :3].T
    )
    origin = ground_from_camera[:3, 3]
    down = rays[..., 2] < -1e-9  # rays at or above the horizon never meet the ground
    distance = np.where(down, -origin[2] / np.where(down, rays[..., 2], -1.0), np.inf)
    lateral = origin[1] + distance * rays[..., 1]
    mask = np.where(down & (np.abs(lateral) < LANE_HALF_WIDTH_M), 255, 0).astype(np.uint8)
    cells = project_drivable_grid(
        mask, CameraModel.from_camera_info(info), camera_from_ground, GRID
    )
    _check_lane(cells, GRID, min_seen=0.25)
    # Pitching down moves the nearest visible ground closer to the car.
    centres = GRID.cell_centres().reshape(*GRID.shape, 3)
    nearest_seen = centres[..., 0][cells != UNSEEN].min()
    expected = CAMERA_HEIGHT_M / np.tan(
        np.arctan(info.height / 2 / k[1, 1]) + np.deg2rad(pitch_deg)
    )
    assert abs(nearest_seen - expected) <= GRID.resolution_m
