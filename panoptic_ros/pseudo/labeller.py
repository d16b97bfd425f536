"""Teachers' outputs -> one frame's pseudo panoptic labels (and soft targets).

Per frame:

1. **Semantic ensemble**: every semantic teacher's class probabilities (optionally also
   on the mirrored frame), resized to the frame and averaged with the teachers' weights.
   A teacher's void/unknown channel keeps its mass, so where the teachers are unsure the
   top probability is low.
2. **Road refinement**: where a road model is confident the pixel is road (P >=
   ``road_confidence``) and the ensemble says a stuff class, it becomes road; where it is
   confident the pixel is *not* road and the ensemble says road, the pixel becomes void.
3. **Doubt**: pixels whose top probability is below ``min_confidence`` become void.
4. **Instances**: detector boxes (the whole frame plus overlapping tiles, so small and
   distant objects are found; boxes cut by a tile's inner edge are dropped) after
   class-wise NMS, strongest first; each box takes the not yet taken pixels inside it
   whose class is one of its mapped classes; the instance's class is the majority of
   those pixels and they all take it. Boxes explaining too few pixels are dropped.
5. **Unexplained things**: thing pixels that no box took become void: no loss is better
   than a guessed instance.

Everything is deterministic for a given frame and set of teachers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import IGNORE_INDEX, LabelSpace
from panoptic_ros.pseudo.teachers import Detection, TeacherSet

__all__ = ["LabelSettings", "LabelStats", "PseudoLabel", "PseudoLabeller", "cell_average", "nms"]


@dataclass(frozen=True, slots=True)
class LabelSettings:
    """How teacher outputs become labels (recorded in the dataset JSON).

    Attributes:
        min_confidence: Pixels whose ensemble top probability is below this become void.
        road_confidence: A road model's P(road) (or 1 - P) needed to overrule the ensemble.
        flip: Also run the semantic teachers on the mirrored frame and average.
        detector_score: Smallest detector score (objectness x class) kept.
        nms_iou: Boxes of one label class overlapping more than this are suppressed.
        tile_grid: (rows, cols) of detector tiles over the frame, besides the whole frame;
            (1, 1) = whole frame only.
        tile_overlap: Overlap of neighbouring tiles as a fraction of a tile's size.
        min_instance_px: An instance needs at least this many pixels.
        min_box_fill: ... and at least this fraction of its box's area.
        soft_stride: Stride of the soft targets kept for distillation; 0 = none.
    """

    min_confidence: float = 0.5
    road_confidence: float = 0.8
    flip: bool = False
    detector_score: float = 0.3
    nms_iou: float = 0.5
    tile_grid: tuple[int, int] = (2, 3)
    tile_overlap: float = 0.25
    min_instance_px: int = 48
    min_box_fill: float = 0.15
    soft_stride: int = 4

    def __post_init__(self) -> None:
        for name in ("min_confidence", "road_confidence", "detector_score", "nms_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value} must be in 0..1")
        if min(self.tile_grid) < 1:
            raise ConfigError(f"tile_grid={self.tile_grid} needs at least one row and column")
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ConfigError(f"tile_overlap={self.tile_overlap} must be in 0..1 (exclusive)")
        if self.soft_stride < 0 or self.min_instance_px < 1:
            raise ConfigError("soft_stride must be >= 0 and min_instance_px >= 1")


@dataclass(slots=True)
class LabelStats:
    """Counts of one frame (summed over a run for the summary)."""

    pixels: int = 0
    void_doubt_px: int = 0
    void_unexplained_px: int = 0
    road_added_px: int = 0
    road_removed_px: int = 0
    detections: int = 0
    instances: int = 0
    instances_per_class: dict[str, int] = field(default_factory=dict)

    def add(self, other: LabelStats) -> None:
        """Add another frame's counts to these."""
        self.pixels += other.pixels
        self.void_doubt_px += other.void_doubt_px
        self.void_unexplained_px += other.void_unexplained_px
        self.road_added_px += other.road_added_px
        self.road_removed_px += other.road_removed_px
        self.detections += other.detections
        self.instances += other.instances
        for name, count in other.instances_per_class.items():
            self.instances_per_class[name] = self.instances_per_class.get(name, 0) + count


@dataclass(frozen=True, slots=True)
class PseudoLabel:
    """One frame's labels.

    Attributes:
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number 1..N on thing pixels, 0 elsewhere.
        soft: [C, ceil(H/s), ceil(W/s)] float16 ensemble probabilities renormalised over
            the C classes (s = ``soft_stride``), or None.
        stats: This frame's counts.
    """

    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    soft: npt.NDArray[np.float16] | None
    stats: LabelStats


def cell_average(values: npt.NDArray[np.float32], stride: int) -> npt.NDArray[np.float32]:
    """Average [H, W, C] over stride x stride cells -> [ceil(H/s), ceil(W/s), C].

    The frame is padded by repeating its last row/column, so a border cell averages the
    pixels it covers (cell (i, j) covers rows [s*i, s*i + s) and columns [s*j, s*j + s)).
    """
    height, width, channels = values.shape
    rows, cols = -(-height // stride), -(-width // stride)
    padded = np.pad(
        values, ((0, rows * stride - height), (0, cols * stride - width), (0, 0)), mode="edge"
    )
    cells = padded.reshape(rows, stride, cols, stride, channels)  # [rows, s, cols, s, C]
    return np.ascontiguousarray(cells.mean(axis=(1, 3), dtype=np.float32))


def _box_iou(
    box: npt.NDArray[np.float64], boxes: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), dtype=np.float64)


def nms(detections: list[Detection], iou: float) -> list[Detection]:
    """Greedy non-maximum suppression per first mapped label class, strongest first.

    Ties in score are broken by the box coordinates, so the result does not depend on
    the order of ``detections``.
    """
    ordered = sorted(detections, key=lambda d: (-d.score, d.box_xyxy, d.detector_class))
    kept: list[Detection] = []
    by_class: dict[int, list[Detection]] = {}
    for det in ordered:
        group = by_class.setdefault(det.label_classes[0], [])
        if group:
            boxes = np.array([g.box_xyxy for g in group], dtype=np.float64)
            if _box_iou(np.array(det.box_xyxy, dtype=np.float64), boxes).max() > iou:
                continue
        group.append(det)
        kept.append(det)
    return kept


def _tiles(
    height: int, width: int, grid: tuple[int, int], overlap: float
) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of a rows x cols grid of overlapping tiles covering the frame."""
    rows, cols = grid
    tile_h = height / (rows - (rows - 1) * overlap)
    tile_w = width / (cols - (cols - 1) * overlap)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            y0 = round(r * tile_h * (1 - overlap))
            x0 = round(c * tile_w * (1 - overlap))
            tiles.append((y0, x0, min(height, round(y0 + tile_h)), min(width, round(x0 + tile_w))))
    return tiles


class PseudoLabeller:
    """Makes :class:`PseudoLabel` s from a :class:`TeacherSet`.

    Args:
        teachers: The loaded teachers.
        labels: The label space of the labels.
        settings: Thresholds and options.
    """

    def __init__(self, teachers: TeacherSet, labels: LabelSpace, settings: LabelSettings) -> None:
        self.teachers = teachers
        self.labels = labels
        self.settings = settings
        self._is_thing = labels.is_thing_table()
        self._road = labels.index("road") if "road" in labels.names else -1
        if teachers.road and self._road < 0:
            raise ConfigError("a road teacher needs a 'road' class in the label space")

    def ensemble(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Weighted mean of the semantic teachers' probabilities: [H, W, C] float32."""
        import cv2

        height, width = frame.shape[:2]
        total = np.zeros((height, width, self.labels.num_classes), dtype=np.float32)
        weights = 0.0
        for teacher in self.teachers.semantic:
            probs = teacher.probabilities(frame, flip=self.settings.flip)  # [h, w, C]
            if probs.shape[:2] != (height, width):
                probs = cv2.resize(probs, (width, height), interpolation=cv2.INTER_LINEAR)
                probs = probs.reshape(height, width, -1)  # cv2 drops a channel axis of 1
            total += teacher.spec.weight * probs
            weights += teacher.spec.weight
        total /= weights
        return total

    def road_probability(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        """Mean P(road) of the road teachers at frame size, or None without one."""
        import cv2

        if not self.teachers.road:
            return None
        height, width = frame.shape[:2]
        maps = [
            cv2.resize(t.road_probability(frame), (width, height), interpolation=cv2.INTER_LINEAR)
            for t in self.teachers.road
        ]
        return np.asarray(np.mean(maps, axis=0), dtype=np.float32)

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Detection]:
        """Detector boxes over the whole frame and its tiles, after NMS."""
        detector = self.teachers.detector
        if detector is None:
            return []
        score = self.settings.detector_score
        found = detector.detect(frame, score)
        height, width = frame.shape[:2]
        if self.settings.tile_grid != (1, 1):
            for y0, x0, y1, x1 in _tiles(
                height, width, self.settings.tile_grid, self.settings.tile_overlap
            ):
                tile = np.ascontiguousarray(frame[y0:y1, x0:x1])
                for det in detector.detect(tile, score):
                    bx0, by0, bx1, by1 = det.box_xyxy
                    # A box touching a tile edge inside the frame is a cut object: the
                    # whole-frame pass or a neighbouring tile sees it whole.
                    margin = 2.0
                    cut = (
                        (x0 > 0 and bx0 <= margin)
                        or (y0 > 0 and by0 <= margin)
                        or (x1 < width and bx1 >= (x1 - x0) - margin)
                        or (y1 < height and by1 >= (y1 - y0) - margin)
                    )
                    if not cut:
                        box = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
                        found.append(
                            Detection(box, det.score, det.detector_class, det.label_classes)
                        )
        return nms(found, self.settings.nms_iou)

    def label(self, frame: npt.NDArray[np.uint8]) -> PseudoLabel:
        """Label one frame.

        Args:
            frame: [H, W, 3] uint8 RGB.

        Returns:
            Its pseudo-labels, soft targets (when ``soft_stride`` > 0) and counts.
        """
        settings = self.settings
        height, width = frame.shape[:2]
        stats = LabelStats(pixels=height * width)
        probs = self.ensemble(frame)  # [H, W, C]
        semantic = probs.argmax(axis=-1).astype(np.uint8)
        confidence = probs.max(axis=-1)
        road_p = self.road_probability(frame)
        if road_p is not None:
            stuff = ~self._is_thing[semantic]
            add = (road_p >= settings.road_confidence) & stuff & (semantic != self._road)
            remove = (1.0 - road_p >= settings.road_confidence) & (semantic == self._road)
            stats.road_added_px = int(add.sum())
            stats.road_removed_px = int(remove.sum())
            semantic[add] = self._road
            confidence = np.where(add, np.maximum(confidence, road_p), confidence)
            semantic[remove] = IGNORE_INDEX
            # The soft targets lean towards the road model where it overruled the ensemble.
            probs[add] *= 0.5
            probs[add, self._road] += 0.5
        doubt = (confidence < settings.min_confidence) & (semantic != IGNORE_INDEX)
        stats.void_doubt_px = int(doubt.sum())
        semantic[doubt] = IGNORE_INDEX

        instances = np.zeros((height, width), dtype=np.int32)
        detections = self.detect(frame)
        stats.detections = len(detections)
        number = 0
        for det in detections:
            x0, y0 = int(np.floor(det.box_xyxy[0])), int(np.floor(det.box_xyxy[1]))
            x1, y1 = int(np.ceil(det.box_xyxy[2])), int(np.ceil(det.box_xyxy[3]))
            window_sem = semantic[y0:y1, x0:x1]
            window_ids = instances[y0:y1, x0:x1]
            member = np.isin(window_sem, det.label_classes) & (window_ids == 0)
            count = int(member.sum())
            if count < settings.min_instance_px or count < settings.min_box_fill * window_sem.size:
                continue
            votes = np.bincount(window_sem[member], minlength=self.labels.num_classes)
            class_id = int(votes.argmax())
            number += 1
            window_ids[member] = number
            window_sem[member] = class_id
            name = self.labels.names[class_id]
            stats.instances_per_class[name] = stats.instances_per_class.get(name, 0) + 1
        stats.instances = number
        unexplained = self._is_thing[semantic] & (instances == 0)
        stats.void_unexplained_px = int(unexplained.sum())
        semantic[unexplained] = IGNORE_INDEX

        soft = None
        if settings.soft_stride:
            cells = cell_average(probs, settings.soft_stride)  # [h, w, C]
            cells /= np.maximum(cells.sum(axis=-1, keepdims=True), 1e-6)
            soft = np.ascontiguousarray(cells.transpose(2, 0, 1)).astype(np.float16)
        return PseudoLabel(semantic, instances, soft, stats)
