"""Objects on the ground, in metres, from one frame's instance masks (one camera, flat ground).

For a planner that has no depth sensor: each detected thing whose ground contact is visible
becomes a box in the ground frame (REP 105, e.g. ``base_footprint``, whose z = 0 plane is
the ground), with a covariance a tracker or planner can weigh.

The model, per instance k of ``FrameResult.instance_ids``:

1. **Contact row.** For every column of the mask, its lowest pixel. The contact row is a
   high percentile (``contact_percentile``, default 90, NumPy's ``lower`` method, so
   always the bottom of a real column) of those rows: the row that only the lowest tenth of
   the columns reach. One stray pixel or a thin shadow a few columns wide does not move it;
   a car's wheels (the lowest columns) do. The object meets the road between that pixel's
   centre and the next one's, so the contact lies at image y = row + 0.5; the contact
   column is the middle of the mask's columns.
2. **Ray.** That pixel is cast as a ray through the camera model (``K`` and ``D`` or the
   rectified ``P``, binning and ROI: :class:`~panoptic_ros.camera_model.CameraModel`),
   moved into the ground frame, and intersected with z = 0. The range is the horizontal
   distance from the point below the camera to the contact point.
3. **Left out, counted by reason** (:data:`LEFT_OUT_REASONS`), never guessed: no pixels in
   the map; the contact row is the image's last row (the object goes on below the image,
   its contact is not seen); the ray does not point below the horizon; the contact is
   beyond ``max_range_m``.
4. **Box.** The contact point lies on the object's near face, a vertical plane through it
   facing the camera. The rays through the mask's left and right edges (at the contact
   row) and its top edge (at the contact column) meet that plane: width and height. The
   length (along the ray) is the class's prior (``length_prior_m``, else
   ``default_length_m``): monocular masks show no depth. The box centre is the contact
   point pushed back by half the length along the ray's horizontal direction, raised by
   half the height; its yaw is the viewing direction (the heading is not observed).
5. **Covariance** of the pose, in (x, y, z, roll, pitch, yaw), row-major [6, 6]. The range
   follows from the ray's depression angle a below the horizontal and the camera height
   h: r = h / tan(a), so dr/da = (r^2 + h^2) / h. The angle is uncertain by the mask's
   pixel quantisation (da/dv x ``pixel_sigma_px``, da/dv measured on the camera model over
   one pixel) and by the tilt of the real ground against the plane (``tilt_sigma_deg``);
   both add in quadrature: sigma_r = (r^2 + h^2) / h x sqrt((da/dv sigma_px)^2 +
   sigma_tilt^2), growing with the square of the range. Across the ray, sigma_lat = r x
   (azimuth change per pixel) x ``pixel_sigma_px``. The height scales with the range, so
   sigma_z = (height / 2) x sigma_r / r. Roll and pitch carry the tilt variance; yaw is
   unobserved and gets the variance of a uniform angle, pi^2 / 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from panoptic_ros.camera_model import CameraModel, rigid_inverse
from panoptic_ros.config import GridConfig, ObjectsConfig, parse_length_prior
from panoptic_ros.errors import ConfigError
from panoptic_ros.results import FrameResult, Instance

__all__ = [
    "DEFAULT_LENGTH_PRIOR_M",
    "LEFT_OUT_REASONS",
    "GroundObject",
    "GroundObjects",
    "ObjectParams",
    "locate_objects",
]

#: Why an instance got no ground object, in the order the checks run.
LEFT_OUT_REASONS: Final = (
    "no_pixels",
    "cut_by_image_bottom",
    "at_or_above_horizon",
    "beyond_max_range",
)

#: Typical lengths in metres (along the viewing ray) of the Cityscapes thing classes: the
#: default of ``objects.length_prior``.
DEFAULT_LENGTH_PRIOR_M: Final[Mapping[str, float]] = MappingProxyType(
    parse_length_prior(ObjectsConfig().length_prior)
)

# Below this height (m) above its ground plane a camera cannot see the ground ahead.
_MIN_CAMERA_HEIGHT_M: Final = 0.01
# Variance of an unobserved yaw: a uniform angle over a full turn.
_UNKNOWN_YAW_VARIANCE: Final = math.pi**2 / 3


@dataclass(frozen=True, slots=True)
class ObjectParams:
    """Settings of :func:`locate_objects` (config section ``objects``, plus the grid's frame).

    Attributes:
        max_range_m: Objects whose contact is further (horizontally) are left out.
        tilt_sigma_deg: Standard deviation of the real ground's tilt against the plane.
        pixel_sigma_px: Standard deviation of the mask's lower edge, in image pixels.
        contact_percentile: Percentile of the per-column lowest rows taken as contact row.
        length_prior_m: Class name -> object length along the viewing ray.
        default_length_m: Length of classes without a prior.
        rectified: Whether images are rectified (``P``) or raw (``K`` + ``D``).
    """

    max_range_m: float = 60.0
    tilt_sigma_deg: float = 1.0
    pixel_sigma_px: float = 1.0
    contact_percentile: float = 90.0
    length_prior_m: Mapping[str, float] = field(default_factory=lambda: DEFAULT_LENGTH_PRIOR_M)
    default_length_m: float = 1.0
    rectified: bool = False

    @classmethod
    def from_config(cls, objects: ObjectsConfig, grid: GridConfig) -> ObjectParams:
        """The settings of sections ``objects`` and ``grid`` (rectified or raw images)."""
        return cls(
            max_range_m=objects.max_range_m,
            tilt_sigma_deg=objects.tilt_sigma_deg,
            pixel_sigma_px=objects.pixel_sigma_px,
            contact_percentile=objects.contact_percentile,
            length_prior_m=MappingProxyType(parse_length_prior(objects.length_prior)),
            default_length_m=objects.default_length_m,
            rectified=grid.image_is_rectified,
        )

    def length_of(self, class_name: str) -> float:
        """The length prior of a class (``default_length_m`` when it has none)."""
        return float(self.length_prior_m.get(class_name, self.default_length_m))


@dataclass(frozen=True, slots=True)
class GroundObject:
    """One detected thing placed on the ground plane.

    Attributes:
        index: The instance's value k in ``instance_ids`` (detection k-1 of ``instances``).
        track_id: The persistent object id (0 when no tracker ran).
        class_id: Class index in the label space.
        class_name: Class name.
        score: Confidence in 0..1, as in ``instances``.
        position_xyz: Box centre in the ground frame (m).
        yaw: Box orientation about z (rad): the horizontal viewing direction.
        size_lwh: Box length (along the ray), width, height (m).
        contact_xyz: Where the object meets the ground plane (z = 0), on its near face.
        range_m: Horizontal distance from the point below the camera to the contact (m).
        contact_px: The contact pixel (x, y) in the published image.
        covariance: [6, 6] float64 pose covariance (x, y, z, roll, pitch, yaw).
    """

    index: int
    track_id: int
    class_id: int
    class_name: str
    score: float
    position_xyz: tuple[float, float, float]
    yaw: float
    size_lwh: tuple[float, float, float]
    contact_xyz: tuple[float, float, float]
    range_m: float
    contact_px: tuple[float, float]
    covariance: npt.NDArray[np.float64]

    @property
    def object_id(self) -> str:
        """The id the 2D and 3D detections share: the track id, else the instance index."""
        return str(self.track_id or self.index)


@dataclass(frozen=True, slots=True)
class GroundObjects:
    """The ground objects of one frame.

    Attributes:
        objects: One per instance with a visible contact, in instance index order.
        left_out: Reason (:data:`LEFT_OUT_REASONS`) -> instances left out for it (every
            reason present, 0 when none).
    """

    objects: tuple[GroundObject, ...]
    left_out: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class _MaskFootprint:
    """The image-plane facts of one mask the geometry needs (published image pixels)."""

    instance: Instance
    contact_row: int
    first_col: int
    last_col: int
    top_row: int

    @property
    def contact_px(self) -> tuple[float, float]:
        return ((self.first_col + self.last_col) / 2.0, self.contact_row + 0.5)

    def probe_pixels(self) -> npt.NDArray[np.float64]:
        """[7, 2] pixels whose rays the geometry needs, in :data:`_PROBES` order."""
        u, v = self.contact_px
        return np.array(
            [
                [u, v],
                [self.first_col - 0.5, v],
                [self.last_col + 0.5, v],
                [u, self.top_row - 0.5],
                [u, v - 0.5],
                [u, v + 0.5],
                [u - 0.5, v],
            ],
            dtype=np.float64,
        )


_PROBES: Final = ("contact", "left", "right", "top", "up", "down", "beside")


def _footprint(
    instance_ids: npt.NDArray[np.uint16], instance: Instance, percentile: float
) -> _MaskFootprint | None:
    """Lowest row per column and the extent of one mask, inside its box; None if empty."""
    height, width = instance_ids.shape
    x0, y0, x1, y1 = instance.bbox_xyxy
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), width - 1), min(int(y1), height - 1)
    if x1 < x0 or y1 < y0:
        return None
    mask = instance_ids[y0 : y1 + 1, x0 : x1 + 1] == instance.index
    columns = mask.any(axis=0)
    if not columns.any():
        return None
    # Lowest True per column: the first True from the bottom (a view, no copy).
    from_bottom = np.argmax(mask[::-1], axis=0)[columns]
    bottoms = (mask.shape[0] - 1 - from_bottom) + y0
    # NumPy's percentile(method="lower"), without its overhead: the floor of the virtual index.
    rank = math.floor(percentile / 100.0 * (len(bottoms) - 1))
    contact_row = int(np.partition(bottoms, rank)[rank])
    present = np.flatnonzero(columns)
    top_row = int(np.argmax(mask.any(axis=1))) + y0
    return _MaskFootprint(
        instance=instance,
        contact_row=contact_row,
        first_col=int(present[0]) + x0,
        last_col=int(present[-1]) + x0,
        top_row=top_row,
    )


def _depression(directions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Angle (rad) of ground-frame directions below the horizontal plane."""
    return np.arctan2(-directions[..., 2], np.hypot(directions[..., 0], directions[..., 1]))


def _on_plane(
    origin: npt.NDArray[np.float64],
    direction: npt.NDArray[np.float64],
    point: npt.NDArray[np.float64],
    normal: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64] | None:
    """Where a ray meets the plane through ``point`` with ``normal``; None if it does not."""
    facing = float(normal @ direction)
    if facing <= 1e-12:
        return None
    distance = float(normal @ (point - origin)) / facing
    return None if distance <= 0 else origin + distance * direction


def locate_objects(
    result: FrameResult,
    camera: CameraModel,
    camera_from_ground: npt.NDArray[np.float64],
    params: ObjectParams,
) -> GroundObjects:
    """Place a frame's instances on the ground plane (see the module docstring for the model).

    Args:
        result: The frame's result; ``instance_ids`` [H, W] uint16 in the image as
            published (binned, cropped), ``instances`` with their boxes and track ids.
        camera: The camera model of the image.
        camera_from_ground: [4, 4] float64 transform taking ground-frame points into the
            optical frame (tf2 ``lookup_transform(optical_frame, ground_frame, stamp)``).
        params: Range limit, uncertainties, length priors, rectified or raw.

    Returns:
        The objects (instance index order) and the count of instances left out per reason.

    Raises:
        ConfigError: The camera is not above the ground plane (a wrong transform).
    """
    left_out = dict.fromkeys(LEFT_OUT_REASONS, 0)
    ground_from_camera = rigid_inverse(camera_from_ground)
    rotation, camera_position = ground_from_camera[:3, :3], ground_from_camera[:3, 3]
    camera_height = float(camera_position[2])
    if camera_height < _MIN_CAMERA_HEIGHT_M:
        raise ConfigError(
            f"the camera is {camera_height:.3f} m above the ground plane; check the transform"
        )
    image_height = result.instance_ids.shape[0]
    footprints = []
    for instance in sorted(result.instances, key=lambda inst: inst.index):
        footprint = _footprint(result.instance_ids, instance, params.contact_percentile)
        if footprint is None:
            left_out["no_pixels"] += 1
        elif footprint.contact_row >= image_height - 1:
            left_out["cut_by_image_bottom"] += 1
        else:
            footprints.append(footprint)
    if not footprints:
        return GroundObjects((), MappingProxyType(left_out))
    pixels = np.concatenate([f.probe_pixels() for f in footprints])
    origins, directions = camera.pixel_rays(pixels, rectified=params.rectified)
    origins = origins @ rotation.T + camera_position
    directions = directions @ rotation.T
    shape = (len(footprints), len(_PROBES), 3)
    origins, directions = origins.reshape(shape), directions.reshape(shape)
    tilt_sigma = math.radians(params.tilt_sigma_deg)
    objects = []
    for footprint, ray_origins, ray_directions in zip(footprints, origins, directions, strict=True):
        located = _locate(footprint, ray_origins, ray_directions, camera_height, tilt_sigma, params)
        if isinstance(located, str):
            left_out[located] += 1
        else:
            objects.append(located)
    return GroundObjects(tuple(objects), MappingProxyType(left_out))


def _locate(
    footprint: _MaskFootprint,
    origins: npt.NDArray[np.float64],
    directions: npt.NDArray[np.float64],
    camera_height: float,
    tilt_sigma: float,
    params: ObjectParams,
) -> GroundObject | str:
    """One object from its probe rays ([7, 3] ground-frame origins and directions)."""
    probe = {name: i for i, name in enumerate(_PROBES)}
    origin, direction = origins[probe["contact"]], directions[probe["contact"]]
    if direction[2] >= -1e-12 or origin[2] <= 0:
        return "at_or_above_horizon"
    contact = origin - origin[2] / direction[2] * direction
    contact[2] = 0.0
    range_m = float(np.hypot(*(contact[:2] - origin[:2])))
    if range_m > params.max_range_m:
        return "beyond_max_range"
    forward = np.array([direction[0], direction[1], 0.0])
    forward /= np.linalg.norm(forward)
    left = np.array([-forward[1], forward[0], 0.0])

    # Width and height where the edge rays meet the near face.
    edges = {
        name: _on_plane(origins[probe[name]], directions[probe[name]], contact, forward)
        for name in ("left", "right", "top")
    }
    left_point, right_point, top_point = edges["left"], edges["right"], edges["top"]
    width = (
        0.0
        if left_point is None or right_point is None
        else abs(float((left_point - right_point) @ left))
    )
    height = 0.0 if top_point is None else max(float(top_point[2]), 0.0)
    length = params.length_of(footprint.instance.class_name)
    centre = contact + forward * (length / 2.0)
    centre[2] = height / 2.0
    yaw = math.atan2(forward[1], forward[0])

    # Range: through the depression angle; across: through the azimuth.
    depression = _depression(directions[[probe["up"], probe["down"]]])
    angle_per_px = abs(float(depression[1] - depression[0]))
    angle_sigma = math.hypot(angle_per_px * params.pixel_sigma_px, tilt_sigma)
    range_sigma = (range_m**2 + camera_height**2) / camera_height * angle_sigma
    beside = directions[probe["beside"]]
    azimuth_per_px = (
        abs(
            math.remainder(
                math.atan2(beside[1], beside[0]) - math.atan2(direction[1], direction[0]),
                math.tau,
            )
        )
        / 0.5
    )
    lateral_sigma = range_m * azimuth_per_px * params.pixel_sigma_px
    axes = np.stack([forward[:2], left[:2]], axis=1)  # columns: along, across
    covariance = np.zeros((6, 6), dtype=np.float64)
    covariance[:2, :2] = axes @ np.diag([range_sigma**2, lateral_sigma**2]) @ axes.T
    covariance[2, 2] = (height / 2.0 * range_sigma / range_m) ** 2 if range_m > 0 else 0.0
    covariance[3, 3] = covariance[4, 4] = tilt_sigma**2
    covariance[5, 5] = _UNKNOWN_YAW_VARIANCE
    instance = footprint.instance
    return GroundObject(
        index=instance.index,
        track_id=instance.track_id,
        class_id=instance.class_id,
        class_name=instance.class_name,
        score=float(instance.score),
        position_xyz=(float(centre[0]), float(centre[1]), float(centre[2])),
        yaw=yaw,
        size_lwh=(length, width, height),
        contact_xyz=(float(contact[0]), float(contact[1]), 0.0),
        range_m=range_m,
        contact_px=footprint.contact_px,
        covariance=covariance,
    )
