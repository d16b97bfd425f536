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

import numpy as np
import numpy.typing as npt

from panoptic_ros.camera_model import CameraModel, transform_matrix

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
