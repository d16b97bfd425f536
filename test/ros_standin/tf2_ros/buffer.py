"""tf2_ros.buffer.Buffer essentials: one-hop lookups, either direction, latest transform."""

from __future__ import annotations

from typing import Any

import numpy as np

from tf2_ros import LookupException


def _rotate(q: tuple[float, float, float, float], v: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    u = np.array([x, y, z])
    return 2 * np.dot(u, v) * u + (w * w - np.dot(u, u)) * v + 2 * w * np.cross(u, v)


class Buffer:
    def __init__(self, *_: Any, **__: Any) -> None:
        self._transforms: dict[tuple[str, str], Any] = {}

    def set_transform(self, transform: Any, authority: str) -> bool:
        self._transforms[(transform.header.frame_id, transform.child_frame_id)] = transform
        return True

    set_transform_static = set_transform

    def lookup_transform(
        self, target_frame: str, source_frame: str, time: Any, timeout: Any = None
    ) -> Any:
        from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3

        direct = self._transforms.get((target_frame, source_frame))
        if direct is not None:
            return direct
        stored = self._transforms.get((source_frame, target_frame))
        if stored is None:
            raise LookupException(
                f'"{target_frame}" passed to lookupTransform argument target_frame does not exist.'
            )
        t, r = stored.transform.translation, stored.transform.rotation
        inverse_q = (-r.x, -r.y, -r.z, r.w)
        inverse_t = -_rotate(inverse_q, np.array([t.x, t.y, t.z]))
        result = TransformStamped()
        result.header.frame_id = target_frame
        result.child_frame_id = source_frame
        result.transform = Transform(
            translation=Vector3(
                x=float(inverse_t[0]), y=float(inverse_t[1]), z=float(inverse_t[2])
            ),
            rotation=Quaternion(x=inverse_q[0], y=inverse_q[1], z=inverse_q[2], w=inverse_q[3]),
        )
        return result
