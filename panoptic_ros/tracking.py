"""Object ids that stay with an object across frames and are never reused.

Each frame's instances are matched to the live tracks by mask overlap (IoU), same class
only, greedily from the highest IoU down. Masks are compared on the instance-id map
subsampled by a fixed step (every 4th row and column by default): a 16th of the pixels,
still several samples per output cell of the network (a stride-4 cell covers 4 network
pixels, i.e. 4 or more camera pixels whenever the camera is at least as large as the
network input), so every instance the fusion keeps has samples. A track keeps the
subsampled pixels of its last appearance, so the overlap of one track with every current
instance is one ``np.bincount`` over those pixels: no loop over pixels, and tracks whose
old masks overlap each other (one unseen for a frame) are still measured exactly.

Ids come from a counter that starts at 1 and only grows, so an id never returns for a
different object, also after :meth:`InstanceTracker.reset` or a change of image size,
and each live track is held once, so an id goes to at most one instance of a frame.
Tracks unseen for more than ``max_age`` consecutive frames are forgotten; their ids stay
retired. Everything is deterministic: ties in IoU go to the lower instance index, then to
the older track.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import ConfigError
from panoptic_ros.results import FrameResult

__all__ = ["InstanceTracker"]

_LOG = logging.getLogger(__name__)


@dataclass(slots=True)
class _Track:
    """One live object: its id, class and where it was last seen.

    Attributes:
        track_id: The persistent id (>= 1).
        class_id: Class index; a different class is a different object.
        mask_index: [P] int64 flat indices of its pixels in the subsampled id map.
        last_seen: Frame number of its last appearance.
    """

    track_id: int
    class_id: int
    mask_index: npt.NDArray[np.int64]
    last_seen: int


class InstanceTracker:
    """Assigns persistent track ids to the instances of consecutive frames of one camera.

    Args:
        min_iou: Mask IoU (0..1) an instance needs with a track of its class to keep that
            track's id (the node's ``node.track_min_overlap``).
        max_age: Consecutive frames a track may go unseen and still be matched (an object
            hidden for a frame or two keeps its id); 0 matches the previous frame only.
        sample_step: Subsampling step (camera pixels) of the id map used for overlaps.

    Raises:
        ConfigError: A parameter is out of range.
    """

    def __init__(self, min_iou: float = 0.3, max_age: int = 2, sample_step: int = 4) -> None:
        if not 0.0 <= min_iou <= 1.0:
            raise ConfigError(f"tracker min_iou={min_iou!r} must be in 0..1")
        if max_age < 0:
            raise ConfigError(f"tracker max_age={max_age!r} must be >= 0")
        if sample_step < 1:
            raise ConfigError(f"tracker sample_step={sample_step!r} must be >= 1")
        #: Mask IoU needed to keep an id; may be changed between frames (node parameters).
        self.min_iou = min_iou
        self.max_age = max_age
        self.sample_step = sample_step
        self._tracks: list[_Track] = []  # oldest first
        self._next_id = 1
        self._frame = 0
        self._shape: tuple[int, ...] | None = None

    @property
    def next_id(self) -> int:
        """The id the next new object will get (ids below it are issued or retired)."""
        return self._next_id

    @property
    def num_tracks(self) -> int:
        """Number of live tracks (seen within the last ``max_age`` + 1 frames)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks; ids issued so far are still never reused."""
        self._tracks = []
        self._shape = None

    def update(self, result: FrameResult) -> FrameResult:
        """Assign track ids to one frame's instances.

        Args:
            result: The next frame of this camera (``instance_ids`` [H, W] uint16, k where
                ``instances[k-1]`` lies).

        Returns:
            A copy of ``result`` whose instances carry their ``track_id``.
        """
        self._frame += 1
        sampled = result.instance_ids[:: self.sample_step, :: self.sample_step]
        if self._shape != sampled.shape:
            if self._tracks:
                _LOG.info("image size changed to %s: tracks restart", result.image_hw)
            self._tracks = []  # overlaps between different sizes mean nothing
            self._shape = sampled.shape
        # Forget tracks unseen for more than max_age frames.
        self._tracks = [t for t in self._tracks if self._frame - t.last_seen <= self.max_age + 1]

        flat = sampled.reshape(-1).astype(np.int64)  # [h * w] instance number, 0 none
        count = len(result.instances)
        masks = _masks_by_index(flat, count)
        assigned = self._associate(result, flat, masks)

        # Matched tracks (the values of ``assigned``) are appended again below; keep each
        # track once, or its id could go to two instances of the next frame.
        matched = set(assigned.values())
        survivors = [t for position, t in enumerate(self._tracks) if position not in matched]
        instances = []
        for instance in result.instances:
            position = assigned.get(instance.index)
            if position is None:
                track = _Track(self._next_id, instance.class_id, masks[instance.index], 0)
                self._next_id += 1
            else:
                track = self._tracks[position]
                track.mask_index = masks[instance.index]
            track.last_seen = self._frame
            survivors.append(track)
            instances.append(replace(instance, track_id=track.track_id))
        # Oldest first, so IoU ties go to the older track next frame too.
        self._tracks = sorted(survivors, key=lambda t: t.track_id)
        return replace(result, instances=tuple(instances))

    def _associate(
        self, result: FrameResult, flat: npt.NDArray[np.int64], masks: list[npt.NDArray[np.int64]]
    ) -> dict[int, int]:
        """Match instances to tracks greedily by IoU: instance index -> track position."""
        count = len(result.instances)
        if not count or not self._tracks:
            return {}
        areas = np.array([m.size for m in masks], dtype=np.int64)
        classes = {i.index: i.class_id for i in result.instances}
        pairs: list[tuple[float, int, int]] = []
        for position, track in enumerate(self._tracks):
            if not track.mask_index.size:
                continue
            overlap = np.bincount(flat[track.mask_index], minlength=count + 1)
            for index in (np.flatnonzero(overlap[1 : count + 1]) + 1).tolist():
                if classes.get(index) != track.class_id:
                    continue
                inter = int(overlap[index])
                iou = inter / int(areas[index] + track.mask_index.size - inter)
                if iou >= self.min_iou:
                    pairs.append((iou, index, position))
        # Highest IoU first; ties -> lower instance index, then the older track.
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for _, index, position in pairs:
            if index not in assigned and position not in used:
                assigned[index] = position
                used.add(position)
        return assigned


def _masks_by_index(flat: npt.NDArray[np.int64], count: int) -> list[npt.NDArray[np.int64]]:
    """Flat pixel indices of each instance number 0..count (entry 0 unused, empty).

    Args:
        flat: [P] int64 instance number per subsampled pixel, 0 none.
        count: Number of instances N.

    Returns:
        N + 1 arrays of int64 flat indices, ascending.
    """
    labelled = np.flatnonzero((flat > 0) & (flat <= count))
    order = labelled[np.argsort(flat[labelled], kind="stable")]
    bounds = np.searchsorted(flat[order], np.arange(count + 2))
    empty = np.zeros(0, dtype=np.int64)
    return [empty] + [order[bounds[k] : bounds[k + 1]] for k in range(1, count + 1)]
