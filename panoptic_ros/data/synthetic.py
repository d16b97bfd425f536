"""Deterministic synthetic street scenes in the Cityscapes label space, with exact labels.

A forward-facing car camera: sky above a horizon, a road in perspective with lane marks,
sidewalks with curbs, terrain, vegetation, buildings with windows, walls, fences, poles
with signs and lights, and things standing on the ground (cars, trucks, buses, persons,
riders on bicycles and motorcycles, parked bicycles) drawn far to near, so nearer objects
occlude farther ones and the instance map holds exactly the visible pixels. Then global
lighting, a colour cast, shadows and sensor noise.

Everything is placed in size-relative coordinates from ``numpy.random.default_rng(seed)``:
the same seed at another size gives the same scene, resampled. Training uses seeds from 0
upwards; evaluation uses seeds at or above :data:`HELD_OUT_SEED_START`, which training must
never reach.

Rules of the labels:

* Instances with fewer visible pixels than :func:`min_instance_px` (0.05% of the image,
  at least 16 px) become void (semantic 255, instance 0), as do fully hidden ones (dropped).
* Lane marks are road; windows, wheels and signs' faces belong to their object.
* The class ``train`` is never generated (trains on a street camera are rare and a box
  with windows would only teach confusion with buses). Riders ride bicycles or motorcycles,
  which are separate instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.labels import CITYSCAPES, LabelSpace

__all__ = [
    "HELD_OUT_SEED_START",
    "SyntheticDataset",
    "SyntheticScene",
    "generate_scene",
    "min_instance_px",
]

#: First seed of the held-out evaluation range; training seeds stay below it.
HELD_OUT_SEED_START: Final = 1_000_000

_VOID = 255
_C = {name: index for index, name in enumerate(CITYSCAPES.names)}


@dataclass(frozen=True, slots=True)
class SyntheticScene:
    """One scene with its ground truth.

    Attributes:
        image: [H, W, 3] uint8 RGB.
        semantic: [H, W] uint8 class index (CITYSCAPES order), 255 void.
        instances: [H, W] int32, 0 none, k for the k-th instance.
        instance_classes: Class index of instance k at position k-1.
        seed: The seed it was generated from.
    """

    image: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    instance_classes: tuple[int, ...]
    seed: int


def min_instance_px(height: int, width: int) -> int:
    """Visible pixels an instance needs to stay labelled (else it becomes void)."""
    return max(16, int(0.0005 * height * width))


class _Canvas:
    """Draws into image, semantic and instance maps at once, in relative coordinates."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.image = np.zeros((height, width, 3), np.uint8)
        self.semantic = np.full((height, width), _VOID, np.uint8)
        self.instances = np.zeros((height, width), np.int32)
        self._scale = np.array([width, height], np.float64)

    def px(self, points: Sequence[tuple[float, float]]) -> npt.NDArray[np.int32]:
        """Relative (u, v) -> pixel polygon; 4 fractional bits for sub-pixel accuracy."""
        return np.round(np.asarray(points, np.float64) * self._scale * 16).astype(np.int32)

    def polygon(
        self,
        points: Sequence[tuple[float, float]],
        colour: Sequence[float],
        cls: int,
        instance: int = 0,
    ) -> None:
        pts = [self.px(points)]
        cv2.fillPoly(self.image, pts, tuple(int(c) for c in colour), cv2.LINE_8, shift=4)
        cv2.fillPoly(self.semantic, pts, int(cls), cv2.LINE_8, shift=4)
        cv2.fillPoly(self.instances, pts, int(instance), cv2.LINE_8, shift=4)

    def rect(
        self,
        u0: float,
        v0: float,
        u1: float,
        v1: float,
        colour: Sequence[float],
        cls: int,
        instance: int = 0,
    ) -> None:
        self.polygon([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], colour, cls, instance)

    def ellipse(
        self,
        u: float,
        v: float,
        ru: float,
        rv: float,
        colour: Sequence[float],
        cls: int,
        instance: int = 0,
        *,
        thickness_rel: float = 0.0,
    ) -> None:
        centre = (round(u * self.w * 16), round(v * self.h * 16))
        axes = (max(round(ru * self.w * 16), 8), max(round(rv * self.h * 16), 8))
        thickness = -1 if thickness_rel <= 0 else max(1, round(thickness_rel * self.h))
        for target, value in (
            (self.image, tuple(int(c) for c in colour)),
            (self.semantic, int(cls)),
            (self.instances, int(instance)),
        ):
            cv2.ellipse(target, centre, axes, 0, 0, 360, value, thickness, cv2.LINE_8, shift=4)

    def line(
        self,
        u0: float,
        v0: float,
        u1: float,
        v1: float,
        thickness_rel: float,
        colour: Sequence[float],
        cls: int,
        instance: int = 0,
    ) -> None:
        p0 = (round(u0 * self.w * 16), round(v0 * self.h * 16))
        p1 = (round(u1 * self.w * 16), round(v1 * self.h * 16))
        thickness = max(1, round(thickness_rel * self.h))
        for target, value in (
            (self.image, tuple(int(c) for c in colour)),
            (self.semantic, int(cls)),
            (self.instances, int(instance)),
        ):
            cv2.line(target, p0, p1, value, thickness, cv2.LINE_8, shift=4)


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> list[float]:
    return [float(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour]


def _texture(
    rng: np.random.Generator, height: int, width: int, cells: tuple[int, int], amplitude: float
) -> npt.NDArray[np.float32]:
    """Smooth random field in [-amplitude, amplitude], [H, W] float32 (size-independent)."""
    coarse = rng.uniform(-amplitude, amplitude, cells).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True, slots=True)
class _Road:
    horizon: float
    vanish_u: float
    left_bottom: float
    right_bottom: float

    def edges(self, v: float) -> tuple[float, float]:
        """Left and right road edge u at image row v (relative)."""
        t = (v - self.horizon) / (1.0 - self.horizon)
        return (
            self.vanish_u + (self.left_bottom - self.vanish_u) * t,
            self.vanish_u + (self.right_bottom - self.vanish_u) * t,
        )


def _background(canvas: _Canvas, rng: np.random.Generator) -> _Road:
    horizon = rng.uniform(0.35, 0.55)
    vanish_u = rng.uniform(0.35, 0.65)
    half_width = rng.uniform(0.35, 0.75)
    centre = vanish_u + rng.uniform(-0.25, 0.25)
    road = _Road(horizon, vanish_u, centre - half_width, centre + half_width)

    sky_top = _jitter(rng, (110, 160, 220), 35)
    sky_bottom = _jitter(rng, (190, 210, 235), 25)
    canvas.rect(-0.01, -0.01, 1.01, horizon + 0.001, sky_top, _C["sky"])
    rows = int(horizon * canvas.h) + 1
    ramp = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
    canvas.image[:rows] = (np.array(sky_top) * (1 - ramp) + np.array(sky_bottom) * ramp).astype(
        np.uint8
    )
    terrain = _jitter(rng, (120, 130, 70), 25)
    canvas.rect(-0.01, horizon, 1.01, 1.01, terrain, _C["terrain"])

    # Buildings on either side, from far (near the vanishing point) outwards.
    for side in (-1, 1):
        if rng.random() < 0.2:
            continue
        u = vanish_u + side * rng.uniform(0.02, 0.06)
        while 0.0 < u < 1.0:
            width = rng.uniform(0.08, 0.25)
            far, near = (u, u + side * width)
            base_far = horizon + 0.02 * abs(far - vanish_u)
            base_near = horizon + 0.12 * abs(near - vanish_u)
            top = horizon - rng.uniform(0.12, 0.38) * (0.5 + abs(near - vanish_u))
            colour = _jitter(
                rng,
                [(150, 110, 90), (190, 180, 160), (120, 120, 135), (170, 150, 120)][
                    rng.integers(4)
                ],
                25,
            )
            polygon = [
                (far, top + 0.05 * abs(far - vanish_u)),
                (near, top),
                (near, base_near),
                (far, base_far),
            ]
            canvas.polygon(polygon, colour, _C["building"])
            window = [c * 0.55 for c in colour]
            for row in np.arange(0.2, 0.85, rng.uniform(0.14, 0.22)):
                for col in np.arange(0.12, 0.85, rng.uniform(0.15, 0.3)):
                    ua, ub = far + (near - far) * col, far + (near - far) * (col + 0.08)
                    va = top + (base_near - top) * row
                    canvas.rect(
                        min(ua, ub),
                        va,
                        max(ua, ub),
                        va + 0.035 * (1 - row * 0.5),
                        window,
                        _C["building"],
                    )
            u = near
    # Vegetation: tree crowns and hedges.
    for _ in range(rng.integers(0, 6)):
        u = rng.uniform(0, 1)
        v = horizon - rng.uniform(0.0, 0.12)
        green = _jitter(rng, (60, 110, 50), 25)
        canvas.ellipse(
            u, v, rng.uniform(0.03, 0.09), rng.uniform(0.05, 0.12), green, _C["vegetation"]
        )
        canvas.rect(u - 0.006, v, u + 0.006, horizon + 0.05, (80, 60, 40), _C["vegetation"])
    # Sidewalks beside the road, with curbs, and the road itself.
    sidewalk = _jitter(rng, (175, 165, 160), 20)
    extra = rng.uniform(0.15, 0.45)
    for side, edge in ((-1, road.left_bottom), (1, road.right_bottom)):
        if rng.random() < 0.15:
            continue
        outer = edge + side * extra
        canvas.polygon(
            [(vanish_u, horizon), (vanish_u + side * 0.01, horizon), (outer, 1.01), (edge, 1.01)],
            sidewalk,
            _C["sidewalk"],
        )
        if rng.random() < 0.35:  # a wall or fence behind the sidewalk
            cls = _C["wall"] if rng.random() < 0.5 else _C["fence"]
            colour = _jitter(rng, (140, 130, 120) if cls == _C["wall"] else (110, 100, 80), 20)
            height = rng.uniform(0.04, 0.1)
            canvas.polygon(
                [
                    (vanish_u + side * 0.01, horizon - 0.005),
                    (outer + side * 0.1, 1.01 - height * 6),
                    (outer + side * 0.1, 1.01),
                    (vanish_u + side * 0.01, horizon + 0.004),
                ],
                colour,
                cls,
            )
    asphalt = _jitter(rng, (85, 85, 90), 18)
    canvas.polygon(
        [
            (vanish_u - 0.004, horizon),
            (vanish_u + 0.004, horizon),
            (road.right_bottom, 1.01),
            (road.left_bottom, 1.01),
        ],
        asphalt,
        _C["road"],
    )
    texture = _texture(rng, canvas.h, canvas.w, (12, 24), 10.0)
    is_road = canvas.semantic == _C["road"]
    canvas.image[is_road] = np.clip(
        canvas.image[is_road].astype(np.float32) + texture[is_road, None], 0, 255
    ).astype(np.uint8)
    # Lane marks: solid edges and a dashed centre line (all class road).
    mark = (235, 235, 230) if rng.random() < 0.7 else (230, 200, 60)
    for u_bottom in (road.left_bottom + 0.02, road.right_bottom - 0.02):
        canvas.line(vanish_u, horizon, u_bottom, 1.0, 0.006, (225, 225, 220), _C["road"])
    centre_bottom = (road.left_bottom + road.right_bottom) / 2
    dash_start = rng.uniform(0, 0.5)
    for index in range(10):
        t0 = (index + dash_start) / 10
        t1 = t0 + 0.05
        v0, v1 = horizon + (1 - horizon) * t0**2, horizon + (1 - horizon) * t1**2
        u0 = vanish_u + (centre_bottom - vanish_u) * (v0 - horizon) / (1 - horizon)
        u1 = vanish_u + (centre_bottom - vanish_u) * (v1 - horizon) / (1 - horizon)
        canvas.line(u0, v0, u1, v1, 0.004 + 0.01 * t1, mark, _C["road"])
    # Poles with signs or lights on the sidewalks.
    for _ in range(rng.integers(0, 4)):
        side = -1 if rng.random() < 0.5 else 1
        depth = rng.uniform(0.15, 0.9)
        v_ground = horizon + (1 - horizon) * depth
        left, right = road.edges(v_ground)
        u = (left if side < 0 else right) + side * rng.uniform(0.01, 0.06) * (0.3 + depth)
        height = 0.55 * (v_ground - horizon) + 0.08
        half = max(0.006, 0.01 * depth)
        canvas.rect(u - half, v_ground - height, u + half, v_ground, (90, 90, 95), _C["pole"])
        if rng.random() < 0.5:
            size = 0.035 * (0.3 + depth)
            canvas.ellipse(
                u,
                v_ground - height,
                size,
                size * 1.7,
                _jitter(rng, (200, 40, 40), 30),
                _C["traffic sign"],
            )
        else:
            size = 0.02 * (0.3 + depth)
            canvas.rect(
                u - size,
                v_ground - height - size * 5,
                u + size,
                v_ground - height,
                (35, 35, 35),
                _C["traffic light"],
            )
            canvas.ellipse(
                u,
                v_ground - height - size * 3.5,
                size * 0.6,
                size * 0.9,
                (60, 220, 80),
                _C["traffic light"],
            )
    return road


def _vehicle(
    canvas: _Canvas,
    rng: np.random.Generator,
    u: float,
    v: float,
    scale: float,
    cls: int,
    instance: int,
) -> None:
    """A car, truck or bus whose wheels stand on (u, v); ``scale`` = height at that depth."""
    body = _jitter(
        rng,
        [
            (180, 30, 30),
            (30, 60, 160),
            (220, 220, 220),
            (30, 30, 30),
            (120, 120, 125),
            (200, 170, 40),
        ][rng.integers(6)],
        25,
    )
    glass = (45, 60, 75)
    if cls == _C["car"]:
        width, height = scale * rng.uniform(1.6, 2.2), scale
        canvas.ellipse(u, v + 0.01 * scale, width * 0.55, 0.06 * scale, (30, 30, 30), _C["road"])
        canvas.rect(
            u - width / 2, v - height * 0.55, u + width / 2, v - height * 0.12, body, cls, instance
        )
        canvas.polygon(
            [
                (u - width * 0.38, v - height * 0.55),
                (u - width * 0.28, v - height),
                (u + width * 0.28, v - height),
                (u + width * 0.38, v - height * 0.55),
            ],
            body,
            cls,
            instance,
        )
        canvas.polygon(
            [
                (u - width * 0.32, v - height * 0.58),
                (u - width * 0.25, v - height * 0.92),
                (u + width * 0.25, v - height * 0.92),
                (u + width * 0.32, v - height * 0.58),
            ],
            glass,
            cls,
            instance,
        )
    else:
        tall = 1.7 if cls == _C["truck"] else 1.9
        width, height = scale * rng.uniform(1.8, 2.4), scale * tall
        canvas.rect(u - width / 2, v - height, u + width / 2, v - height * 0.1, body, cls, instance)
        if cls == _C["bus"]:
            canvas.rect(
                u - width * 0.45,
                v - height * 0.9,
                u + width * 0.45,
                v - height * 0.6,
                glass,
                cls,
                instance,
            )
        else:
            canvas.rect(
                u - width * 0.4,
                v - height * 0.95,
                u + width * 0.4,
                v - height * 0.75,
                glass,
                cls,
                instance,
            )
            canvas.rect(
                u - width / 2,
                v - height * 0.72,
                u + width / 2,
                v - height * 0.68,
                [c * 0.6 for c in body],
                cls,
                instance,
            )
    for side in (-1, 1):
        canvas.ellipse(
            u + side * width * 0.33,
            v - 0.08 * scale,
            0.1 * scale * canvas.h / canvas.w,
            0.1 * scale,
            (20, 20, 20),
            cls,
            instance,
        )
    lights = (250, 240, 200) if rng.random() < 0.5 else (200, 30, 30)
    for side in (-1, 1):
        canvas.rect(
            u + side * width * 0.42 - 0.03 * width,
            v - height * 0.45 if cls == _C["car"] else v - height * 0.25,
            u + side * width * 0.42 + 0.03 * width,
            v - height * 0.38 if cls == _C["car"] else v - height * 0.2,
            lights,
            cls,
            instance,
        )


def _person(
    canvas: _Canvas,
    rng: np.random.Generator,
    u: float,
    v: float,
    scale: float,
    cls: int,
    instance: int,
    *,
    seated: bool = False,
) -> None:
    """A standing (or, for riders, seated) person whose feet (or seat) are at (u, v)."""
    height = scale
    aspect = canvas.h / canvas.w
    shirt = _jitter(
        rng,
        [(200, 60, 60), (60, 90, 180), (230, 230, 230), (40, 40, 40), (60, 140, 80)][
            rng.integers(5)
        ],
        30,
    )
    trousers = _jitter(rng, (50, 50, 70), 25)
    skin = _jitter(rng, (210, 170, 140), 35)
    half = height * 0.14 * aspect
    torso_top, torso_bottom = v - height * 0.82, v - height * 0.45
    canvas.rect(u - half, torso_top, u + half, torso_bottom, shirt, cls, instance)
    if seated:
        canvas.polygon(
            [
                (u - half, torso_bottom),
                (u + half, torso_bottom),
                (u + half * 2.5, v - height * 0.2),
                (u + half * 1.5, v - height * 0.2),
            ],
            trousers,
            cls,
            instance,
        )
    else:
        stride = rng.uniform(0.0, 0.6) * half
        canvas.polygon(
            [
                (u - half, torso_bottom),
                (u - 0.1 * half, torso_bottom),
                (u - stride * 0.2, v),
                (u - half - stride, v),
            ],
            trousers,
            cls,
            instance,
        )
        canvas.polygon(
            [
                (u + 0.1 * half, torso_bottom),
                (u + half, torso_bottom),
                (u + half + stride, v),
                (u + stride * 0.2, v),
            ],
            trousers,
            cls,
            instance,
        )
    canvas.ellipse(u, v - height * 0.9, half * 0.75, height * 0.09, skin, cls, instance)


def _two_wheeler(
    canvas: _Canvas,
    rng: np.random.Generator,
    u: float,
    v: float,
    scale: float,
    cls: int,
    instance: int,
) -> None:
    """A bicycle or motorcycle seen from the side, wheels on row v; ``scale`` = its height."""
    aspect = canvas.h / canvas.w
    radius = scale * 0.32
    gap = scale * 0.55 * aspect
    colour = _jitter(rng, (40, 40, 40) if cls == _C["bicycle"] else (150, 30, 30), 25)
    thickness = 0.12 * scale if cls == _C["bicycle"] else 0.2 * scale
    for side in (-1, 1):
        canvas.ellipse(
            u + side * gap,
            v - radius,
            radius * aspect,
            radius,
            (25, 25, 25),
            cls,
            instance,
            thickness_rel=thickness * 0.6,
        )
    if cls == _C["motorcycle"]:
        canvas.polygon(
            [
                (u - gap * 0.8, v - radius * 1.6),
                (u + gap * 0.9, v - radius * 1.8),
                (u + gap * 0.6, v - radius * 0.6),
                (u - gap * 0.6, v - radius * 0.6),
            ],
            colour,
            cls,
            instance,
        )
    else:
        canvas.line(
            u - gap, v - radius, u, v - radius * 1.9, thickness * 0.5, colour, cls, instance
        )
        canvas.line(
            u, v - radius * 1.9, u + gap, v - radius, thickness * 0.5, colour, cls, instance
        )
        canvas.line(
            u - gap * 0.3,
            v - radius * 1.1,
            u + gap * 0.7,
            v - radius * 1.7,
            thickness * 0.5,
            colour,
            cls,
            instance,
        )


def _things(canvas: _Canvas, rng: np.random.Generator, road: _Road) -> list[int]:
    """Place 0..12 things far to near; returns the class of each instance number."""
    count = int(rng.integers(0, 13))
    kinds = rng.choice(
        [
            "car",
            "car",
            "car",
            "truck",
            "bus",
            "person",
            "person",
            "rider_bicycle",
            "rider_motorcycle",
            "bicycle",
        ],
        size=count,
    )
    depths = np.sort(rng.uniform(0.04, 1.05, size=count))  # 0 = horizon, 1 = bottom edge
    classes: list[int] = []
    for kind, depth in zip(kinds, depths, strict=True):
        v = road.horizon + (1 - road.horizon) * depth
        left, right = road.edges(min(v, 1.0))
        on_road = kind in ("car", "truck", "bus", "rider_bicycle", "rider_motorcycle")
        if on_road:
            u = rng.uniform(left + 0.1 * (right - left), right - 0.1 * (right - left))
        else:
            side = -1 if rng.random() < 0.5 else 1
            edge = left if side < 0 else right
            u = edge + side * rng.uniform(0.02, 0.25) * (0.2 + depth)
        scale = (v - road.horizon) * 0.45  # apparent height shrinks towards the horizon
        if kind in ("car", "truck", "bus"):
            classes.append(_C[kind])
            _vehicle(canvas, rng, u, v, scale, _C[kind], len(classes))
        elif kind == "person":
            classes.append(_C["person"])
            _person(canvas, rng, u, v, scale * 1.3, _C["person"], len(classes))
        elif kind == "bicycle":
            classes.append(_C["bicycle"])
            _two_wheeler(canvas, rng, u, v, scale * 0.8, _C["bicycle"], len(classes))
        else:
            vehicle = _C["bicycle"] if kind == "rider_bicycle" else _C["motorcycle"]
            classes.append(vehicle)
            _two_wheeler(canvas, rng, u, v, scale * 0.8, vehicle, len(classes))
            classes.append(_C["rider"])
            _person(
                canvas,
                rng,
                u,
                v - scale * 0.45,
                scale * 1.0,
                _C["rider"],
                len(classes),
                seated=True,
            )
    return classes


def _finish_labels(
    canvas: _Canvas, classes: list[int]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32], tuple[int, ...]]:
    """Void instances with too few visible pixels, renumber the rest 1..n."""
    semantic, instances = canvas.semantic, canvas.instances
    if not classes:
        return semantic, instances, ()
    visible = np.bincount(instances.ravel(), minlength=len(classes) + 1)
    minimum = min_instance_px(canvas.h, canvas.w)
    renumber = np.zeros(len(classes) + 1, np.int32)
    kept: list[int] = []
    for index, cls in enumerate(classes, start=1):
        if visible[index] >= minimum:
            kept.append(cls)
            renumber[index] = len(kept)
    too_small = (renumber[instances] == 0) & (instances > 0)
    semantic[too_small] = _VOID
    return semantic, renumber[instances], tuple(kept)


def _lighting(canvas: _Canvas, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    image = canvas.image.astype(np.float32)
    gain = rng.uniform(0.65, 1.25)
    cast = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    gamma = rng.uniform(0.8, 1.25)
    image = 255.0 * np.power(np.clip(image * gain * cast / 255.0, 0, 1), gamma)
    # Large soft shading (clouds, shade of buildings) and sensor noise.
    image += _texture(rng, canvas.h, canvas.w, (4, 8), 18.0)[..., None]
    noise_sigma = rng.uniform(1.0, 5.0)
    image += rng.standard_normal((canvas.h, canvas.w, 1), dtype=np.float32) * noise_sigma
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_scene(
    seed: int, height: int = 512, width: int = 1024, *, labels: LabelSpace = CITYSCAPES
) -> SyntheticScene:
    """Generate one street scene.

    Args:
        seed: Any non-negative integer; training uses seeds below ``HELD_OUT_SEED_START``.
        height: Image height in pixels.
        width: Image width in pixels.
        labels: Must be (a copy of) the Cityscapes label space: the scene draws its classes.

    Returns:
        The scene with exact semantic and instance ground truth.
    """
    if labels.names != CITYSCAPES.names:
        msg = "synthetic scenes are drawn in the Cityscapes label space only"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    canvas = _Canvas(height, width)
    road = _background(canvas, rng)
    classes = _things(canvas, rng, road)
    semantic, instances, kept = _finish_labels(canvas, classes)
    image = _lighting(canvas, rng)
    return SyntheticScene(image, semantic, instances, kept, seed)


class SyntheticDataset:
    """Scenes for a list of seeds, generated on access (no torch dependency).

    Args:
        seeds: Seeds of the scenes, e.g. ``range(10_000)`` for training.
        height: Image height.
        width: Image width.
    """

    def __init__(self, seeds: Sequence[int] | range, height: int, width: int) -> None:
        self.seeds = seeds
        self.height = height
        self.width = width

    def __len__(self) -> int:
        """Number of scenes."""
        return len(self.seeds)

    def __getitem__(self, index: int) -> SyntheticScene:
        """The scene of the ``index``-th seed."""
        return generate_scene(int(self.seeds[index]), self.height, self.width)
