"""A small tf2 for offline use: a tree of static and timed transforms, looked up at a stamp.

Replay reads a bag's ``/tf_static`` and ``/tf`` into a :class:`TransformTree` and asks it
what the node asks tf2: the transform between two frames at an image's stamp. As tf2: each
frame has one parent; a lookup chains the edges through the frames' common ancestor;
static edges hold at every time; timed edges are interpolated (translation linearly,
rotation by slerp) between the two stored transforms around the stamp and refused outside
the stored span (tf2's "extrapolation"), up to a tolerance. ROS-free (NumPy only).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from panoptic_ros.camera_model import rigid_inverse, transform_matrix
from panoptic_ros.errors import TransformError

__all__ = ["TransformTree"]


def _slerp(
    q0: npt.NDArray[np.float64], q1: npt.NDArray[np.float64], t: float
) -> npt.NDArray[np.float64]:
    """Spherical interpolation of unit quaternions (x, y, z, w) at 0 <= t <= 1."""
    dot = float(q0 @ q1)
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return np.asarray(q / np.linalg.norm(q), dtype=np.float64)
    theta = float(np.arccos(dot))
    q = (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)
    return np.asarray(q, dtype=np.float64)


@dataclass
class _Edge:
    """parent_from_child of one frame: static, or a history sorted by stamp."""

    parent: str
    static: npt.NDArray[np.float64] | None = None
    stamps: list[int] = field(default_factory=list)
    translations: list[npt.NDArray[np.float64]] = field(default_factory=list)
    rotations: list[npt.NDArray[np.float64]] = field(default_factory=list)

    def at(self, stamp_ns: int, tolerance_ns: int, child: str) -> npt.NDArray[np.float64]:
        if self.static is not None:
            return self.static
        stamps = self.stamps
        if stamp_ns < stamps[0] - tolerance_ns or stamp_ns > stamps[-1] + tolerance_ns:
            side = "future" if stamp_ns > stamps[-1] else "past"
            raise TransformError(
                f"transform {self.parent} -> {child} at {stamp_ns / 1e9:.3f} s would need "
                f"extrapolation into the {side} (known {stamps[0] / 1e9:.3f} .. "
                f"{stamps[-1] / 1e9:.3f} s)"
            )
        after = bisect.bisect_left(stamps, stamp_ns)
        if after == 0 or after == len(stamps):
            index = min(after, len(stamps) - 1)
            translation, rotation = self.translations[index], self.rotations[index]
        else:
            before = after - 1
            span = stamps[after] - stamps[before]
            t = 0.0 if span == 0 else (stamp_ns - stamps[before]) / span
            translation = (1 - t) * self.translations[before] + t * self.translations[after]
            rotation = _slerp(self.rotations[before], self.rotations[after], t)
        return transform_matrix(
            (float(translation[0]), float(translation[1]), float(translation[2])),
            (float(rotation[0]), float(rotation[1]), float(rotation[2]), float(rotation[3])),
        )


class TransformTree:
    """Frames and the transforms between them, as ``tf2_msgs/TFMessage`` carries them.

    Args:
        tolerance_ns: How far before the first or after the last stored transform of a
            timed edge a lookup may still take that transform (tf2 allows none).
    """

    def __init__(self, tolerance_ns: int = 0) -> None:
        self.tolerance_ns = tolerance_ns
        self._edges: dict[str, _Edge] = {}

    def __len__(self) -> int:
        return len(self._edges)

    def add(self, transform: object, *, static: bool) -> None:
        """Add one ``geometry_msgs/TransformStamped`` (rclpy or rosbags message).

        Raises:
            TransformError: The child already has another parent (not a tree).
        """
        header = transform.header  # type: ignore[attr-defined]
        parent = str(header.frame_id).lstrip("/")
        child = str(transform.child_frame_id).lstrip("/")  # type: ignore[attr-defined]
        edge = self._edges.get(child)
        if edge is None:
            edge = self._edges[child] = _Edge(parent)
        elif edge.parent != parent:
            raise TransformError(
                f"frame {child} has two parents ({edge.parent} and {parent}); TF must be a tree"
            )
        t = transform.transform.translation  # type: ignore[attr-defined]
        r = transform.transform.rotation  # type: ignore[attr-defined]
        translation = np.array([t.x, t.y, t.z], dtype=np.float64)
        rotation = np.array([r.x, r.y, r.z, r.w], dtype=np.float64)
        norm = float(np.linalg.norm(rotation))
        if norm < 1e-12:
            raise TransformError(f"transform {parent} -> {child} has a zero quaternion")
        rotation /= norm
        if static:
            edge.static = transform_matrix(
                (float(t.x), float(t.y), float(t.z)),
                (float(rotation[0]), float(rotation[1]), float(rotation[2]), float(rotation[3])),
            )
            return
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        index = bisect.bisect_left(edge.stamps, stamp)
        if index < len(edge.stamps) and edge.stamps[index] == stamp:
            edge.translations[index], edge.rotations[index] = translation, rotation
            return
        edge.stamps.insert(index, stamp)
        edge.translations.insert(index, translation)
        edge.rotations.insert(index, rotation)

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > len(self._edges) + 1:
                raise TransformError(f"TF has a loop through {frame}")
        return chain

    def _root_from(self, chain: list[str], stamp_ns: int) -> npt.NDArray[np.float64]:
        matrix = np.eye(4)
        for child in reversed(chain[:-1]):
            matrix = matrix @ self._edges[child].at(stamp_ns, self.tolerance_ns, child)
        return matrix

    def lookup(self, target: str, source: str, stamp_ns: int) -> npt.NDArray[np.float64]:
        """[4, 4] transform taking ``source``-frame points into ``target`` at ``stamp_ns``.

        The same as tf2's ``lookup_transform(target, source, stamp)``.

        Raises:
            TransformError: No path between the frames, or a timed edge not known then.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((frame for frame in up_source if frame in up_target), None)
        if common is None:
            raise TransformError(
                f"no transform between {target} and {source} (frames known: "
                f"{', '.join(sorted({*self._edges, *(e.parent for e in self._edges.values())}))})"
            )
        common_from_source = self._root_from(up_source[: up_source.index(common) + 1], stamp_ns)
        common_from_target = self._root_from(up_target[: up_target.index(common) + 1], stamp_ns)
        return rigid_inverse(common_from_target) @ common_from_source
