"""The drivable mask projected onto the ground plane: an occupancy grid for a planner.

The grid lies in a ground frame (REP 105, e.g. ``base_footprint``) whose z = 0 plane is the
ground. Each cell's centre is transformed into the camera's optical frame (REP 103: x right,
y down, z forward), projected through the camera model of ``sensor_msgs/CameraInfo``
(intrinsics ``K`` with distortion ``D``, or the rectified ``P`` for rectified images, then
binning and ROI) and looks up the mask there. Going from cells to pixels, never pixels to
cells, means rays at or above the horizon are never used (no ground point projects onto
them), every cell gets exactly one answer and there are no holes far away.

Cell values follow nav_msgs/OccupancyGrid: 0 drivable, 100 not drivable, -1 unseen (behind
the camera, outside the image, or outside the ROI).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import ConfigError

__all__ = [
    "DRIVABLE",
    "NOT_DRIVABLE",
    "UNSEEN",
    "CameraModel",
    "GridSpec",
    "project_drivable_grid",
    "transform_matrix",
]

DRIVABLE = 0
NOT_DRIVABLE = 100
UNSEEN = -1

# Undistorted points further than this many image widths outside the frame are dropped
# before the distortion polynomial, which folds back into the image far outside its range.
_DISTORTION_MARGIN = 0.25


@dataclass(frozen=True, slots=True)
class CameraModel:
    """The parts of ``sensor_msgs/CameraInfo`` the projection needs.

    Attributes:
        width: Full-resolution sensor width (CameraInfo.width).
        height: Full-resolution sensor height.
        k: [3, 3] float64 intrinsics of the raw (distorted) image.
        d: [n] float64 distortion coefficients.
        distortion_model: ``plumb_bob``, ``rational_polynomial`` or ``equidistant``.
        p: [3, 4] float64 projection of the rectified image.
        binning_x: Horizontal binning (1 = none).
        binning_y: Vertical binning.
        roi_xywh: Region of interest in full-resolution pixels; (0, 0, 0, 0) = whole image.
    """

    width: int
    height: int
    k: npt.NDArray[np.float64]
    d: npt.NDArray[np.float64]
    distortion_model: str
    p: npt.NDArray[np.float64]
    binning_x: int = 1
    binning_y: int = 1
    roi_xywh: tuple[int, int, int, int] = (0, 0, 0, 0)

    @classmethod
    def from_camera_info(cls, info: Any) -> CameraModel:
        """Read a CameraInfo message (rclpy or rosbags; fields ``k``/``d``/``p`` lower-case).

        Raises:
            ConfigError: If the intrinsics are all zero (an uncalibrated camera) or the
                distortion model is unknown.
        """
        k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            msg = "CameraInfo has no focal length (K is zero): calibrate the camera first"
            raise ConfigError(msg)
        model = str(info.distortion_model or "plumb_bob")
        if model not in ("plumb_bob", "rational_polynomial", "equidistant"):
            msg = f"CameraInfo distortion model {model!r} is not supported"
            raise ConfigError(msg)
        roi = info.roi
        return cls(
            width=int(info.width),
            height=int(info.height),
            k=k,
            d=np.asarray(info.d, dtype=np.float64),
            distortion_model=model,
            p=p,
            binning_x=max(int(info.binning_x), 1),
            binning_y=max(int(info.binning_y), 1),
            roi_xywh=(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)),
        )

    def project(
        self, points_camera: npt.NDArray[np.float64], *, rectified: bool
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Project optical-frame points to pixels of the image as published.

        Args:
            points_camera: [M, 3] float64 points in the optical frame (metres).
            rectified: True if the image is rectified (use ``P``), else raw (``K`` + ``D``).

        Returns:
            ([M, 2] float64 pixel (x, y) in the published, binned and cropped image;
            [M] bool, True where the point is in front of the camera and the projection
            is trustworthy).
        """
        z = points_camera[:, 2]
        in_front = z > 1e-6
        safe_z = np.where(in_front, z, 1.0)
        if rectified:
            homogeneous = np.concatenate([points_camera, np.ones_like(z)[:, None]], axis=1)
            projected = homogeneous @ self.p.T
            pixels = projected[:, :2] / np.where(in_front, projected[:, 2], 1.0)[:, None]
            valid = in_front & (projected[:, 2] > 1e-6)
        else:
            normalized = points_camera[:, :2] / safe_z[:, None]
            # Keep the distortion polynomial inside the range it was fitted on.
            undistorted = normalized @ self.k[:2, :2].T + self.k[:2, 2]
            margin_x = _DISTORTION_MARGIN * self.width
            margin_y = _DISTORTION_MARGIN * self.height
            valid = (
                in_front
                & (undistorted[:, 0] > -margin_x)
                & (undistorted[:, 0] < self.width + margin_x)
                & (undistorted[:, 1] > -margin_y)
                & (undistorted[:, 1] < self.height + margin_y)
            )
            pixels = np.full((len(z), 2), -1.0)
            if valid.any():
                object_points = np.ascontiguousarray(
                    np.concatenate([normalized[valid], np.ones((int(valid.sum()), 1))], axis=1)
                )
                zero = np.zeros(3)
                if self.distortion_model == "equidistant":
                    distorted, _ = cv2.fisheye.projectPoints(
                        object_points[:, None, :], zero, zero, self.k, self.d[:4]
                    )
                else:
                    distorted, _ = cv2.projectPoints(object_points, zero, zero, self.k, self.d)
                pixels[valid] = distorted.reshape(-1, 2)
        roi_x, roi_y = self.roi_xywh[:2]
        pixels = (pixels - [roi_x, roi_y]) / [self.binning_x, self.binning_y]
        return pixels, valid


@dataclass(frozen=True, slots=True)
class GridSpec:
    """Size and placement of the grid in its ground frame.

    Attributes:
        resolution_m: Cell size.
        length_m: Extent along x (forward).
        width_m: Extent along y, centred on x = 0.
        origin_x_m: x of the rear edge.
    """

    resolution_m: float
    length_m: float
    width_m: float
    origin_x_m: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        """(rows along y, columns along x), as OccupancyGrid's height and width."""
        return (
            max(round(self.width_m / self.resolution_m), 1),
            max(round(self.length_m / self.resolution_m), 1),
        )

    @property
    def origin_xy(self) -> tuple[float, float]:
        """Ground-frame position of cell (0, 0)'s outer corner (OccupancyGrid info.origin)."""
        rows, _ = self.shape
        return self.origin_x_m, -rows * self.resolution_m / 2

    def cell_centres(self) -> npt.NDArray[np.float64]:
        """[rows * cols, 3] ground points (x, y, 0) at the cell centres, row-major."""
        rows, cols = self.shape
        x0, y0 = self.origin_xy
        xs = x0 + (np.arange(cols) + 0.5) * self.resolution_m
        ys = y0 + (np.arange(rows) + 0.5) * self.resolution_m
        grid_x, grid_y = np.meshgrid(xs, ys)
        return np.stack([grid_x.ravel(), grid_y.ravel(), np.zeros(grid_x.size)], axis=1)


def transform_matrix(
    translation_xyz: tuple[float, float, float], rotation_xyzw: tuple[float, float, float, float]
) -> npt.NDArray[np.float64]:
    """[4, 4] homogeneous transform from a geometry_msgs/Transform's parts."""
    x, y, z, w = rotation_xyzw
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if norm < 1e-12:
        msg = "transform rotation is a zero quaternion"
        raise ConfigError(msg)
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    matrix = np.eye(4)
    matrix[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    matrix[:3, 3] = translation_xyz
    return matrix


def project_drivable_grid(
    drivable_mask: npt.NDArray[np.uint8],
    camera: CameraModel,
    camera_from_ground: npt.NDArray[np.float64],
    grid: GridSpec,
    *,
    rectified: bool = False,
) -> npt.NDArray[np.int8]:
    """Project a drivable mask onto the ground plane.

    Args:
        drivable_mask: [H, W] uint8 as published (255 drivable), in the binned, cropped
            image the camera sent.
        camera: The camera model.
        camera_from_ground: [4, 4] transform taking ground-frame points into the optical
            frame (tf2 ``lookup_transform(optical_frame, ground_frame, stamp)``).
        grid: Grid size and placement.
        rectified: Whether the image is rectified (``P``) or raw (``K`` and ``D``).

    Returns:
        [rows, cols] int8 cells (0 drivable, 100 not, -1 unseen), row-major from the origin
        corner: OccupancyGrid.data in order.
    """
    rows, cols = grid.shape
    centres = grid.cell_centres()
    in_camera = centres @ camera_from_ground[:3, :3].T + camera_from_ground[:3, 3]
    pixels, valid = camera.project(in_camera, rectified=rectified)
    height, width = drivable_mask.shape
    column = np.floor(pixels[:, 0]).astype(np.int64)
    row = np.floor(pixels[:, 1]).astype(np.int64)
    inside = valid & (column >= 0) & (column < width) & (row >= 0) & (row < height)
    cells = np.full(rows * cols, UNSEEN, dtype=np.int8)
    hit = drivable_mask[row[inside], column[inside]] > 0
    cells[inside] = np.where(hit, DRIVABLE, NOT_DRIVABLE)
    return cells.reshape(rows, cols)
