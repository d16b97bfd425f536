"""The camera model of ``sensor_msgs/CameraInfo``: ground points to pixels and pixels to rays.

ROS-free, shared by the node's ground outputs (:mod:`panoptic_ros.ros.ground_grid`,
:mod:`panoptic_ros.ground_objects`) and by the offline replay.

Conventions: the optical frame is REP 103 (x right, y down, z forward). Pixels are those of
the image as published: after binning and the region of interest, pixel centres at integer
coordinates, so pixel (u, v) covers [u - 0.5, u + 0.5) x [v - 0.5, v + 0.5). Raw images use
the intrinsics ``K`` with the distortion ``D``; rectified images the projection ``P`` (the
rectification rotation ``R`` is taken as the identity: the image's frame_id is the
rectified optical frame, as for a monocular camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import ConfigError

__all__ = ["CameraModel", "camera_info_topic", "rigid_inverse", "transform_matrix"]

# Iterative undistortion: stop after this many steps or below this change (normalised units).
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic beside an image topic (``/cam/image_raw`` -> ``/cam/camera_info``).

    A compressed transport topic (``/cam/image_raw/compressed``) names its base topic's.
    """
    image_topic = image_topic.removesuffix("/compressed")
    parent, slash, _ = image_topic.rpartition("/")
    return f"{parent}/camera_info" if slash else "camera_info"


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

    def pixel_rays(
        self, pixels: npt.NDArray[np.float64], *, rectified: bool
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Cast rays through pixels of the image as published (the inverse of :meth:`project`).

        Args:
            pixels: [M, 2] float64 (x, y) in the published, binned and cropped image.
            rectified: True if the image is rectified (use ``P``), else raw (``K`` + ``D``).

        Returns:
            ([M, 3] float64 ray origins, [M, 3] float64 unit directions), in the optical
            frame. The origin is the optical centre (0, 0, 0) except for a rectified image
            whose ``P`` has a baseline term (the right camera of a stereo pair).
        """
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        roi_x, roi_y = self.roi_xywh[:2]
        full = pixels * [self.binning_x, self.binning_y] + [roi_x, roi_y]
        count = len(full)
        if rectified:
            inverse = np.linalg.inv(self.p[:, :3])
            homogeneous = np.concatenate([full, np.ones((count, 1))], axis=1)
            directions = homogeneous @ inverse.T
            origin = -(inverse @ self.p[:, 3])
            origins = np.broadcast_to(origin, (count, 3)).copy()
        else:
            points = np.ascontiguousarray(full.reshape(-1, 1, 2))
            if count == 0:
                normalized = np.zeros((0, 2))
            elif self.distortion_model == "equidistant":
                normalized = cv2.fisheye.undistortPoints(
                    points, self.k, self.d[:4], criteria=_UNDISTORT_CRITERIA
                ).reshape(-1, 2)
            else:
                normalized = cv2.undistortPointsIter(
                    points, self.k, self.d, None, None, _UNDISTORT_CRITERIA
                ).reshape(-1, 2)
            directions = np.concatenate([normalized, np.ones((count, 1))], axis=1)
            origins = np.zeros((count, 3))
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        return origins, directions


def rigid_inverse(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Inverse of a [4, 4] rotation + translation transform (exact, no LAPACK call)."""
    rotation = matrix[:3, :3]
    inverse = np.eye(4)
    inverse[:3, :3] = rotation.T
    inverse[:3, 3] = -(rotation.T @ matrix[:3, 3])
    return inverse


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
