"""tf2_ros.buffer.Buffer essentials: one-hop lookups, either direction, at a stamp.

Static transforms (``/tf_static``) hold at every time. Dynamic ones (``/tf``) are kept per
frame pair; a lookup at time 0 takes the newest, any other time must lie within the stored
stamps (else ``ExtrapolationException``, as tf2 says when the transform is late or too
old) and gets the stored transform nearest to it (no interpolation, no waiting).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tf2_ros import ExtrapolationException, LookupException

_NS = 1_000_000_000


def _rotate(q: tuple[float, float, float, float], v: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    u = np.array([x, y, z])
    return 2 * np.dot(u, v) * u + (w * w - np.dot(u, u)) * v + 2 * w * np.cross(u, v)


def _stamp_ns(transform: Any) -> int:
    return int(transform.header.stamp.sec) * _NS + int(transform.header.stamp.nanosec)


class Buffer:
    def __init__(self, *_: Any, **__: Any) -> None:
        self._static: dict[tuple[str, str], Any] = {}
        self._dynamic: dict[tuple[str, str], list[Any]] = {}

    def set_transform(self, transform: Any, authority: str) -> bool:
        key = (transform.header.frame_id, transform.child_frame_id)
        history = self._dynamic.setdefault(key, [])
        history.append(transform)
        history.sort(key=_stamp_ns)
        return True

    def set_transform_static(self, transform: Any, authority: str) -> bool:
        self._static[(transform.header.frame_id, transform.child_frame_id)] = transform
        return True

    def _stored(self, parent: str, child: str, time_ns: int) -> Any:
        static = self._static.get((parent, child))
        if static is not None:
            return static
        history = self._dynamic.get((parent, child))
        if not history:
            return None
        if time_ns == 0:
            return history[-1]
        first, last = _stamp_ns(history[0]), _stamp_ns(history[-1])
        if time_ns > last:
            raise ExtrapolationException(
                f"Lookup would require extrapolation into the future.  Requested time "
                f"{time_ns / _NS:.6f} but the latest data is at time {last / _NS:.6f}, when "
                f"looking up transform from frame [{child}] to frame [{parent}]"
            )
        if time_ns < first:
            raise ExtrapolationException(
                f"Lookup would require extrapolation into the past.  Requested time "
                f"{time_ns / _NS:.6f} but the earliest data is at time {first / _NS:.6f}, "
                f"when looking up transform from frame [{child}] to frame [{parent}]"
            )
        return min(history, key=lambda t: abs(_stamp_ns(t) - time_ns))

    def lookup_transform(
        self, target_frame: str, source_frame: str, time: Any, timeout: Any = None
    ) -> Any:
        from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3

        time_ns = int(getattr(time, "nanoseconds", 0))
        direct = self._stored(target_frame, source_frame, time_ns)
        if direct is not None:
            return direct
        stored = self._stored(source_frame, target_frame, time_ns)
        if stored is None:
            raise LookupException(
                f'"{target_frame}" passed to lookupTransform argument target_frame does not exist.'
            )
        t, r = stored.transform.translation, stored.transform.rotation
        inverse_q = (-r.x, -r.y, -r.z, r.w)
        inverse_t = -_rotate(inverse_q, np.array([t.x, t.y, t.z]))
        result = TransformStamped()
        result.header.frame_id = target_frame
        result.header.stamp = stored.header.stamp
        result.child_frame_id = source_frame
        result.transform = Transform(
            translation=Vector3(
                x=float(inverse_t[0]), y=float(inverse_t[1]), z=float(inverse_t[2])
            ),
            rotation=Quaternion(x=inverse_q[0], y=inverse_q[1], z=inverse_q[2], w=inverse_q[3]),
        )
        return result
