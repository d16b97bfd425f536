"""Panoptic quality (PQ, SQ, RQ) exactly as panopticapi's ``pq_compute``, and mIoU.

The rules are panopticapi's ``evaluation.py``, which cityscapesscripts'
``evalPanopticSemanticLabeling.py`` copies unchanged:

* Ground truth id 0 is void (:data:`VOID`). Crowd segments (``iscrowd=1``) are never
  matched. Ground-truth ids without a segment entry are skipped (neither void nor matched).
* A prediction matches a ground truth segment of the same category when
  ``IoU = inter / (pred_area + gt_area - inter - inter(pred, void)) > 0.5``. Only the
  prediction's void pixels leave the union; same-category crowd pixels matter only for
  the false-positive rule below (both official tools agree on this).
* Unmatched non-crowd ground truth segments are false negatives. Unmatched predictions are
  false positives unless more than half of their pixels lie on void plus the crowd region
  of their own category.
* PQ per category = sum of matched IoU / (tp + fp/2 + fn/2), SQ = sum IoU / tp (0 without
  tp), RQ = tp / (tp + fp/2 + fn/2); the means run over the categories (in the order of
  ``categories``) with tp + fp + fn > 0, for all, things and stuff.
* A ground truth segment's area is its ``"area"`` entry when present (panopticapi reads it
  from the JSON), else its pixel count.
* Where the official tool raises ``KeyError`` (a predicted id in the map without a segment,
  a segment without pixels, a predicted category not in ``categories``), this module raises
  :class:`~panoptic_ros.errors.EvaluationError`. Where it divides by zero (no category with
  tp + fp + fn > 0 in a group), the mean is 0 with ``n`` 0.

:func:`score_panoptic_image` gives the official tool's numbers from the runs of constant
(gt, pred) ids and is what folders and models are scored with; the plain reference (one
``np.unique`` over a combined uint64 key, as the official tool) lives in the tests'
oracle (``test/oracle.py``), which checks it against panopticapi. No Python loop touches
pixels.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import EvaluationError
from panoptic_ros.labels import LabelSpace

__all__ = [
    "INSTANCE_DIVISOR",
    "OFFSET",
    "VOID",
    "CategoryStat",
    "ClassQuality",
    "MapAccumulator",
    "PQResult",
    "PQStat",
    "categories_from_labels",
    "default_workers",
    "evaluate_folders",
    "evaluate_maps",
    "iou_from_confusion",
    "miou_from_confusion",
    "score_panoptic_image",
    "segments_from_maps",
    "semantic_confusion",
]

#: Segment id of void (unlabelled) pixels, in ground truth and prediction.
VOID = 0
#: Key multiplier of the (ground truth, prediction) pair histogram; ids must stay below it
#: (panoptic PNGs hold 24-bit ids).
OFFSET = 256 * 256 * 256
#: ``segments_from_maps`` ids are ``(class + 1) * INSTANCE_DIVISOR + instance``.
INSTANCE_DIVISOR = 1000
_IGNORE = 255  # semantic value of void pixels in our maps


@dataclass(slots=True)
class CategoryStat:
    """Counts of one category: matched IoU sum, true/false positives, false negatives."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0


@dataclass(frozen=True, slots=True)
class ClassQuality:
    """PQ, SQ, RQ (fractions 0..1) and counts of one category."""

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int


@dataclass(frozen=True, slots=True)
class PQResult:
    """PQ/SQ/RQ averaged over all, thing and stuff categories, and per category.

    Attributes:
        summary: ``{"all" | "things" | "stuff": {"pq", "sq", "rq", "n"}}``; fractions in
            0..1, ``n`` the number of categories averaged (those with tp + fp + fn > 0).
        per_class: Category name -> quality, for the categories with tp + fp + fn > 0 (the
            official tool also lists the others, as zeros).
        miou: Mean IoU of the semantic maps when computed, else NaN.
        iou: Category name -> semantic IoU, for the categories present in ground truth or
            prediction, when the semantic maps were compared (else empty).
    """

    summary: Mapping[str, Mapping[str, float]]
    per_class: Mapping[str, ClassQuality]
    miou: float = float("nan")
    iou: Mapping[str, float] = field(default_factory=dict)

    @property
    def pq(self) -> float:
        """PQ over all categories."""
        return float(self.summary["all"]["pq"])

    @property
    def sq(self) -> float:
        """SQ over all categories."""
        return float(self.summary["all"]["sq"])

    @property
    def rq(self) -> float:
        """RQ over all categories."""
        return float(self.summary["all"]["rq"])

    @property
    def n(self) -> int:
        """Number of categories in the ``all`` mean."""
        return int(self.summary["all"]["n"])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict: ``all``/``things``/``stuff``, ``per_class``, ``miou``."""
        return {
            **{key: dict(value) for key, value in self.summary.items()},
            "per_class": {
                name: {"pq": q.pq, "sq": q.sq, "rq": q.rq, "tp": q.tp, "fp": q.fp, "fn": q.fn}
                for name, q in self.per_class.items()
            },
            "miou": self.miou,
            "iou": dict(self.iou),
        }

    def format_table(self) -> str:
        """Return a fixed-width table in percent: per class, then all/things/stuff, mIoU."""
        width = max([14, *(len(name) + 1 for name in self.per_class)])
        header = f"{'category':{width}s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s}"
        lines = [f"{header} {'TP':>6s} {'FP':>6s} {'FN':>6s}"]
        for name, q in self.per_class.items():
            lines.append(
                f"{name:{width}s}| {100 * q.pq:5.1f}  {100 * q.sq:5.1f}  {100 * q.rq:5.1f} "
                f"{q.tp:6d} {q.fp:6d} {q.fn:6d}"
            )
        lines.append("-" * len(lines[0]))
        lines.append(f"{'':{width}s}| {'PQ':>5s}  {'SQ':>5s}  {'RQ':>5s} {'N':>6s}")
        for key in ("all", "things", "stuff"):
            row = self.summary[key]
            lines.append(
                f"{key:{width}s}| {100 * row['pq']:5.1f}  {100 * row['sq']:5.1f}  "
                f"{100 * row['rq']:5.1f} {int(row['n']):6d}"
            )
        if np.isfinite(self.miou):
            lines.append(f"{'mIoU':{width}s}| {100 * self.miou:5.1f}")
        if self.iou:
            lines.append(
                f"{'IoU':{width}s}| "
                + ", ".join(f"{name} {100 * value:.1f}" for name, value in self.iou.items())
            )
        return "\n".join(lines)


@dataclass(slots=True)
class PQStat:
    """Per-category statistics accumulated over images; merge with ``+=``.

    Attributes:
        categories: Category id -> counts.
    """

    categories: dict[int, CategoryStat] = field(default_factory=dict)

    def __getitem__(self, category: int) -> CategoryStat:
        """Return the (created on first use) counts of ``category``."""
        return self.categories.setdefault(category, CategoryStat())

    def __iadd__(self, other: PQStat) -> PQStat:
        """Add ``other``'s counts to these."""
        for category, stat in other.categories.items():
            mine = self[category]
            mine.iou += stat.iou
            mine.tp += stat.tp
            mine.fp += stat.fp
            mine.fn += stat.fn
        return self

    def _average(
        self, categories: Mapping[int, Mapping[str, Any]], isthing: bool | None
    ) -> tuple[dict[str, float], dict[int, ClassQuality]]:
        """Mean PQ/SQ/RQ over the selected categories (panopticapi's ``pq_average``)."""
        pq = sq = rq = 0.0
        n = 0
        per_class: dict[int, ClassQuality] = {}
        for category, info in categories.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            stat = self.categories.get(category, CategoryStat())
            if stat.tp + stat.fp + stat.fn == 0:
                continue
            n += 1
            pq_class = stat.iou / (stat.tp + 0.5 * stat.fp + 0.5 * stat.fn)
            sq_class = stat.iou / stat.tp if stat.tp != 0 else 0.0
            rq_class = stat.tp / (stat.tp + 0.5 * stat.fp + 0.5 * stat.fn)
            per_class[category] = ClassQuality(
                pq_class, sq_class, rq_class, stat.tp, stat.fp, stat.fn
            )
            pq += pq_class
            sq += sq_class
            rq += rq_class
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class

    def result(
        self,
        categories: Mapping[int, Mapping[str, Any]],
        miou: float = float("nan"),
        confusion: npt.NDArray[np.int64] | None = None,
    ) -> PQResult:
        """Average into a :class:`PQResult`.

        Args:
            categories: Category id -> ``{"name": str, "isthing": 0 | 1}``.
            miou: Optional mean IoU to carry along.
            confusion: Optional [C, C + 1] pixel confusion in the order of ``categories``;
                gives the per-category IoU.
        """
        summary_all, per_class = self._average(categories, None)
        summary_things, _ = self._average(categories, True)
        summary_stuff, _ = self._average(categories, False)
        return PQResult(
            summary={"all": summary_all, "things": summary_things, "stuff": summary_stuff},
            per_class={str(categories[c]["name"]): q for c, q in per_class.items()},
            miou=miou,
            iou={}
            if confusion is None
            else iou_from_confusion(confusion, [str(row["name"]) for row in categories.values()]),
        )


def categories_from_labels(labels: LabelSpace) -> dict[int, dict[str, Any]]:
    """Panoptic categories keyed by class index: ``{index: {"id", "name", "isthing"}}``."""
    return {
        index: {"id": index, "name": info.name, "isthing": int(info.is_thing)}
        for index, info in enumerate(labels.classes)
    }


def segments_from_maps(
    semantic: npt.NDArray[np.uint8],
    instances: npt.NDArray[np.integer[Any]],
    labels: LabelSpace,
) -> tuple[npt.NDArray[np.uint32], list[dict[str, Any]]]:
    """Our semantic + instance maps -> panoptic ids and segments.

    Categories are keyed by class index (``category_id`` = class index, as
    :func:`categories_from_labels`). Segment ids are ``(class + 1) * 1000 + instance`` for
    things and ``(class + 1) * 1000`` for stuff, 0 for void: the ``+ 1`` keeps class 0's
    stuff segment apart from void id 0. Thing pixels without an instance (0) form one
    crowd segment (``iscrowd=1``) per class, as Cityscapes' group regions.

    Args:
        semantic: [H, W] uint8 class per pixel, 255 void.
        instances: [H, W] integer instance number per pixel (0 none), read on thing pixels.
        labels: The label space.

    Returns:
        ([H, W] uint32 segment ids, segments with ``id``, ``category_id``, ``iscrowd``,
        ``area``).

    Raises:
        EvaluationError: Shapes differ, a class is outside the label space, or an
            instance number is outside 0..999.
    """
    if semantic.shape != instances.shape:
        raise EvaluationError(
            f"semantic shape {semantic.shape!r} and instance shape {instances.shape!r} differ"
        )
    known = semantic[semantic != _IGNORE]
    if known.size and int(known.max()) >= labels.num_classes:
        raise EvaluationError(
            f"semantic map holds class {int(known.max())} but the label space has "
            f"{labels.num_classes} classes; use the labels the map was made with"
        )
    thing = labels.is_thing_table()[semantic]
    instance_values = instances[thing]
    if instance_values.size and (
        int(instance_values.min()) < 0 or int(instance_values.max()) >= INSTANCE_DIVISOR
    ):
        raise EvaluationError(
            f"instance numbers span {int(instance_values.min())}..{int(instance_values.max())}"
            f", outside 0..{INSTANCE_DIVISOR - 1}"
        )
    ids = np.asarray((semantic.astype(np.uint32) + 1) * INSTANCE_DIVISOR, dtype=np.uint32)
    ids += np.where(thing, instances, 0).astype(np.uint32)
    ids[semantic == _IGNORE] = VOID
    segment_ids, areas = np.unique(ids, return_counts=True)
    segments = []
    for segment_id, area in zip(segment_ids.tolist(), areas.tolist(), strict=True):
        if segment_id == VOID:
            continue
        class_index, instance = divmod(segment_id, INSTANCE_DIVISOR)
        class_index -= 1
        crowd = labels.classes[class_index].is_thing and instance == 0
        segments.append(
            {"id": segment_id, "category_id": class_index, "iscrowd": int(crowd), "area": area}
        )
    return ids, segments


def semantic_confusion(
    gt: npt.NDArray[np.uint8], pred: npt.NDArray[np.uint8], num_classes: int
) -> npt.NDArray[np.int64]:
    """Count (ground truth, prediction) class pairs over the non-void ground truth pixels.

    Args:
        gt: [H, W] uint8 ground truth class, values >= ``num_classes`` (255) ignored.
        pred: [H, W] uint8 predicted class; void or unknown values count in the last column.
        num_classes: C.

    Returns:
        [C, C + 1] int64 counts, rows ground truth, columns prediction (column C: void).

    Raises:
        EvaluationError: The shapes differ.
    """
    if gt.shape != pred.shape:
        raise EvaluationError(f"ground truth {gt.shape!r} and prediction {pred.shape!r} differ")
    valid = gt < num_classes
    predicted = np.minimum(pred[valid], num_classes).astype(np.int64)
    index = gt[valid].astype(np.int64) * (num_classes + 1) + predicted
    counts = np.bincount(index, minlength=num_classes * (num_classes + 1))
    return counts.reshape(num_classes, num_classes + 1)


def iou_from_confusion(confusion: npt.NDArray[np.int64], names: Sequence[str]) -> dict[str, float]:
    """Semantic IoU per class present in ground truth or prediction.

    Args:
        confusion: [C, C + 1] counts from :func:`semantic_confusion`.
        names: The C class names, in the confusion's order.

    Returns:
        Name -> tp / (gt + pred - tp), for classes with gt + pred > 0.
    """
    num_classes = confusion.shape[0]
    tp = np.diag(confusion[:, :num_classes]).astype(np.float64)
    union = confusion.sum(axis=1) + confusion[:, :num_classes].sum(axis=0) - tp
    return {names[c]: float(tp[c] / union[c]) for c in range(num_classes) if union[c] > 0}


def miou_from_confusion(confusion: npt.NDArray[np.int64]) -> float:
    """Mean IoU over the classes present in ground truth or prediction.

    Args:
        confusion: [C, C + 1] counts from :func:`semantic_confusion` (or [C, C]); a
            ground-truth pixel predicted void is a miss of its class.

    Returns:
        Mean of tp / (gt + pred - tp) over classes with gt + pred > 0; NaN if none.
    """
    num_classes = confusion.shape[0]
    tp = np.diag(confusion[:, :num_classes]).astype(np.float64)
    union = confusion.sum(axis=1) + confusion[:, :num_classes].sum(axis=0) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else float("nan")


class MapAccumulator:
    """PQ/SQ/RQ and mIoU of semantic + instance maps, accumulated one image at a time.

    Only per-category counts and the [C, C + 1] confusion are kept between images, so
    scoring a dataset needs the memory of one image, whatever its length. The numbers are
    those of :func:`evaluate_maps` on the same images in the same order (which uses this).

    Ground truth thing pixels without an instance are crowd regions; predicted thing pixels
    without an instance are left unlabelled (void), as a prediction must not claim a crowd.

    Args:
        labels: The label space of every map; categories are keyed by class index.
    """

    def __init__(self, labels: LabelSpace) -> None:
        self.labels = labels
        self.categories = categories_from_labels(labels)
        self.stat = PQStat()
        self.confusion = np.zeros((labels.num_classes, labels.num_classes + 1), np.int64)
        self.images = 0

    def reset(self) -> None:
        """Forget every image added so far."""
        self.stat = PQStat()
        self.confusion[:] = 0
        self.images = 0

    def add(
        self,
        gt_semantic: npt.NDArray[np.uint8],
        gt_instances: npt.NDArray[np.integer[Any]],
        pred_semantic: npt.NDArray[np.uint8],
        pred_instances: npt.NDArray[np.integer[Any]],
    ) -> None:
        """Score one image and add its counts.

        Args:
            gt_semantic: [H, W] uint8 ground truth class, 255 void.
            gt_instances: [H, W] integer ground truth instance number, 0 none.
            pred_semantic: [H, W] uint8 predicted class at the ground truth's size.
            pred_instances: [H, W] integer predicted instance number, 0 none.

        Raises:
            EvaluationError: Shapes differ or a map is outside the label space.
        """
        labels = self.labels
        gt_ids, gt_segments = segments_from_maps(gt_semantic, gt_instances, labels)
        pred_ids, pred_segments = segments_from_maps(pred_semantic, pred_instances, labels)
        if any(s["iscrowd"] for s in pred_segments):
            # Predicted thing pixels without an instance: exactly the crowd segments.
            crowd = labels.is_thing_table()[pred_semantic] & (pred_instances == 0)
            pred_ids[crowd] = VOID
            pred_segments = [s for s in pred_segments if not s["iscrowd"]]
        image_stat, _ = score_panoptic_image(
            gt_ids, gt_segments, pred_ids, pred_segments, self.categories, check_ids=False
        )
        self.stat += image_stat
        self.confusion += semantic_confusion(gt_semantic, pred_semantic, labels.num_classes)
        self.images += 1

    def result(self) -> PQResult:
        """PQ/SQ/RQ for all, things, stuff and per class over the images added, and mIoU."""
        return self.stat.result(
            self.categories, miou=miou_from_confusion(self.confusion), confusion=self.confusion
        )


def evaluate_maps(
    pairs: Iterable[tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]],
    labels: LabelSpace,
) -> PQResult:
    """Score (gt_semantic, gt_instances, pred_semantic, pred_instances) map quadruples.

    Each map is [H, W] at the ground truth's resolution: semantic uint8 (255 void),
    instances integer (0 none). Ground truth thing pixels without an instance are crowd
    regions; predicted thing pixels without an instance are left unlabelled (void), as a
    prediction must not claim a crowd. ``pairs`` may be a generator: one image at a time
    is held (:class:`MapAccumulator`).

    Args:
        pairs: The images' ground truth and predicted maps.
        labels: The label space both use.

    Returns:
        PQ/SQ/RQ over all images (categories keyed by class index), and mIoU.

    Raises:
        EvaluationError: Shapes differ or a map is outside the label space.
    """
    accumulator = MapAccumulator(labels)
    for gt_semantic, gt_instances, pred_semantic, pred_instances in pairs:
        accumulator.add(gt_semantic, gt_instances, pred_semantic, pred_instances)
    return accumulator.result()


# --- Folders of panoptic PNGs: the official tools' input, scored fast and in parallel ------

_UNLISTED = 0  # compact code of ids in the map without a segment entry
_VOID_CODE = 1  # compact code of id 0 when it has no segment entry
_FIRST_SEGMENT = 2  # compact code of the first listed segment (ids in ascending order)


def _runs(
    gt_ids: npt.NDArray[np.integer[Any]], pred_ids: npt.NDArray[np.integer[Any]]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.intp]]:
    """Split both maps, in raster order, into runs where neither id changes.

    Panoptic maps are piecewise constant, so a 1024x2048 pair has some 10^4 runs for 2*10^6
    pixels; everything after this touches runs, not pixels. The per-pixel work is two
    comparisons of neighbours and one ``flatnonzero``.

    Returns:
        (gt id of each run, pred id of each run, [R] intp run lengths in pixels).
    """
    gt_flat = gt_ids.reshape(-1)
    pred_flat = pred_ids.reshape(-1)
    size = gt_flat.size
    if size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return gt_flat[:0], pred_flat[:0], empty
    change = np.empty(size, dtype=np.bool_)
    change[0] = True
    np.not_equal(gt_flat[1:], gt_flat[:-1], out=change[1:])
    pred_change = np.not_equal(pred_flat[1:], pred_flat[:-1])
    np.logical_or(change[1:], pred_change, out=change[1:])
    starts = np.flatnonzero(change)
    lengths = np.diff(starts, append=size)
    return gt_flat[starts], pred_flat[starts], lengths


def _compact_codes(values: npt.NDArray[Any], listed: Sequence[int]) -> npt.NDArray[np.intp]:
    """Segment ids -> compact codes: unlisted 0, void 1, the k-th listed id (ascending) k + 2.

    Args:
        values: [R] integer ids (one per run).
        listed: The ids with a segment entry, ascending.
    """
    codes = np.where(values == VOID, _VOID_CODE, _UNLISTED).astype(np.intp)
    if listed:
        table = np.asarray(listed, dtype=np.int64)
        position = np.searchsorted(table, values)
        inside = np.minimum(position, len(table) - 1)
        found = table[inside] == values
        codes[found] = position[found] + _FIRST_SEGMENT
    return codes


def score_panoptic_image(
    gt_ids: npt.NDArray[np.integer[Any]],
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: npt.NDArray[np.integer[Any]],
    pred_segments: Sequence[Mapping[str, Any]],
    categories: Mapping[Any, Mapping[str, Any]],
    *,
    check_ids: bool = True,
) -> tuple[PQStat, npt.NDArray[np.int64]]:
    """Match one image's segments (tp/fp/fn, matched IoU per category), plus the confusion.

    The official tool's rules and results (to the last bit: the matched IoUs are summed
    in the official order), but the pair histogram comes from the runs of constant
    (gt, pred) ids in raster order (:func:`_runs`): only the run values are mapped to
    compact segment codes and counted with one small weighted ``bincount``, instead of
    ``np.unique`` over every pixel's 64-bit key (timings: docs/BENCHMARKS.md, "Evaluation
    speed").

    Args:
        gt_ids: [H, W] integer ground truth segment ids, 0 void.
        gt_segments: Ground truth ``segments_info`` (``id``, ``category_id``, ``iscrowd``,
            optional ``area``).
        pred_ids: [H, W] integer predicted segment ids, 0 unlabelled.
        pred_segments: Predicted ``segments_info`` (``id``, ``category_id``).
        categories: Category id -> ``{"name", "isthing"}``; its order is the confusion's.
        check_ids: Check that ids lie in 0..2**24-1 (ids read from PNGs always do).

    Returns:
        (this image's statistics, [C, C + 1] int64 pixel confusion of categories: rows the
        ground truth category of listed segments, crowd included, void and unlisted ids
        left out; columns the predicted category, column C void or unlisted).

    Raises:
        EvaluationError: The shapes differ, an id is negative or not below :data:`OFFSET`,
            a predicted id in the map has no segment, a predicted segment has no pixels, or
            a predicted segment's category is not in ``categories``.
    """
    if gt_ids.shape != pred_ids.shape:
        raise EvaluationError(
            f"ground truth shape {gt_ids.shape!r} and prediction shape {pred_ids.shape!r} "
            "differ; evaluate at the ground truth's resolution"
        )
    if check_ids:
        for name, ids in (("ground truth", gt_ids), ("prediction", pred_ids)):
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= OFFSET):
                raise EvaluationError(
                    f"{name} segment ids span {int(ids.min())}..{int(ids.max())}, outside "
                    f"0..{OFFSET - 1}; panoptic ids are 24-bit"
                )
    gt = {int(s["id"]): s for s in gt_segments}
    pred = {int(s["id"]): s for s in pred_segments}
    for name, segments in (("ground truth", gt), ("prediction", pred)):
        bad = [label for label in segments if not 0 <= label < OFFSET]
        if bad:
            raise EvaluationError(f"{name} segment ids {bad[:5]!r} do not fit in 24 bits")
    gt_listed = sorted(gt)
    pred_listed = sorted(pred)
    rows, cols = len(gt_listed) + _FIRST_SEGMENT, len(pred_listed) + _FIRST_SEGMENT
    gt_run, pred_run, run_pixels = _runs(gt_ids, pred_ids)
    pred_codes = _compact_codes(pred_run, pred_listed)
    keys = _compact_codes(gt_run, gt_listed) * cols + pred_codes
    # Pair histogram of compact codes: rows gt code, columns pred code, pixels per pair.
    # float64 weights count exactly far beyond any image size (2**53 pixels).
    hist = (
        np.bincount(keys, weights=run_pixels, minlength=rows * cols)
        .astype(np.int64)
        .reshape(rows, cols)
    )

    if hist[:, _UNLISTED].any():
        unknown = pred_run[pred_codes == _UNLISTED]
        raise EvaluationError(
            f"segment id {int(unknown.min())} is in the prediction map but not in its segments; "
            "list every predicted id in segments_info"
        )
    pred_area = hist.sum(axis=0)[_FIRST_SEGMENT:]
    if not pred_area.all():
        missing = [pred_listed[i] for i in np.flatnonzero(pred_area == 0)[:5].tolist()]
        raise EvaluationError(
            f"predicted segments {missing!r} have no pixels in the map; drop them"
        )
    for label in pred_listed:
        if pred[label]["category_id"] not in categories:
            raise EvaluationError(
                f"predicted segment {label} has unknown category "
                f"{pred[label]['category_id']!r}; known: {sorted(categories)!r}"
            )

    gt_code = {label: code for code, label in enumerate(gt_listed, _FIRST_SEGMENT)}
    pred_code = {label: code for code, label in enumerate(pred_listed, _FIRST_SEGMENT)}
    void_row = gt_code.get(VOID, _VOID_CODE)
    void_pixels = hist[void_row, _FIRST_SEGMENT:]
    gt_pixels = hist.sum(axis=1)[_FIRST_SEGMENT:]
    gt_area = np.array(
        [gt[label].get("area", gt_pixels[i]) for i, label in enumerate(gt_listed)],
        dtype=np.float64,
    )
    category_code: dict[Any, int] = {}
    gt_category = np.array(
        [
            category_code.setdefault(gt[label]["category_id"], len(category_code))
            for label in gt_listed
        ],
        dtype=np.int64,
    )
    pred_category = np.array(
        [
            category_code.setdefault(pred[label]["category_id"], len(category_code))
            for label in pred_listed
        ],
        dtype=np.int64,
    )
    gt_crowd = np.array([gt[label].get("iscrowd", 0) == 1 for label in gt_listed], dtype=np.bool_)

    # Candidate pairs in ascending (gt id, pred id) order, the official iteration order.
    pairs = hist[_FIRST_SEGMENT:, _FIRST_SEGMENT:]
    gi, pj = np.nonzero(pairs)
    same = (gt_category[gi] == pred_category[pj]) & ~gt_crowd[gi]
    gi, pj = gi[same], pj[same]
    intersection = pairs[gi, pj].astype(np.float64)
    union = pred_area[pj] + gt_area[gi] - intersection - void_pixels[pj]
    with np.errstate(divide="ignore", invalid="ignore"):  # numpy's scalars, as the official
        iou = intersection / union
    match = iou > 0.5

    stat = PQStat()
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    for g, p, value in zip(
        gi[match].tolist(), pj[match].tolist(), iou[match].tolist(), strict=True
    ):
        category = gt[gt_listed[g]]["category_id"]
        stat[category].tp += 1
        stat[category].iou += value
        gt_matched.add(gt_listed[g])
        pred_matched.add(pred_listed[p])

    crowd_by_category: dict[Any, int] = {}
    for gt_label, segment in gt.items():
        if gt_label in gt_matched:
            continue
        if segment.get("iscrowd", 0) == 1:
            crowd_by_category[segment["category_id"]] = gt_label
            continue
        stat[segment["category_id"]].fn += 1
    for pred_label, segment in pred.items():
        if pred_label in pred_matched:
            continue
        column = pred_code[pred_label]
        ignored = int(hist[void_row, column])
        crowd = crowd_by_category.get(segment["category_id"])
        if crowd is not None:
            ignored += int(hist[gt_code[crowd], column])
        if ignored / int(pred_area[column - _FIRST_SEGMENT]) > 0.5:
            continue  # mostly void or same-category crowd: not a false positive
        stat[segment["category_id"]].fp += 1

    # Pixel confusion of categories, from the same histogram.
    index = {category: i for i, category in enumerate(categories)}
    num = len(index)
    gt_class = np.full(rows, -1, dtype=np.int64)
    gt_class[_FIRST_SEGMENT:] = [index.get(gt[label]["category_id"], -1) for label in gt_listed]
    pred_class = np.full(cols, num, dtype=np.int64)
    pred_class[_FIRST_SEGMENT:] = [index[pred[label]["category_id"]] for label in pred_listed]
    valid = gt_class >= 0
    flat = (gt_class[valid, None] * (num + 1) + pred_class[None, :]).reshape(-1)
    confusion = np.bincount(
        flat, weights=hist[valid].reshape(-1).astype(np.float64), minlength=num * (num + 1)
    )
    return stat, confusion.astype(np.int64).reshape(num, num + 1)


# (gt PNG, pred PNG, gt segments, pred segments, image id) of one image.
_Task = tuple[str, str, list[Mapping[str, Any]], list[Mapping[str, Any]], Any]


def _init_worker() -> None:
    """Pool initializer: OpenCV single-threaded (the pool is the parallelism)."""
    import cv2

    cv2.setNumThreads(1)


def _score_task(
    categories: Mapping[Any, Mapping[str, Any]], task: _Task
) -> tuple[PQStat, npt.NDArray[np.int64]]:
    """Read one image's two PNGs and score them (in a pool worker or in-process)."""
    from panoptic_ros.data.panoptic_format import read_panoptic_png

    gt_path, pred_path, gt_segments, pred_segments, image_id = task
    try:
        gt_ids = read_panoptic_png(gt_path)
        pred_ids = read_panoptic_png(pred_path)
        return score_panoptic_image(
            gt_ids, gt_segments, pred_ids, pred_segments, categories, check_ids=False
        )
    except EvaluationError as err:
        raise EvaluationError(f"image {image_id!r}: {err}") from err


def default_workers() -> int:
    """The CPUs this process may run on (the default number of evaluation workers)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def evaluate_folders(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    categories: Mapping[Any, Mapping[str, Any]] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> PQResult:
    """PQ/SQ/RQ and mIoU of a folder of panoptic predictions, as ``pq_compute`` scores it.

    Equal to panopticapi's ``pq_compute`` and cityscapesscripts'
    ``evalPanopticSemanticLabeling`` on the same files (tested to 1e-9). Per image the
    cost is little more than decoding the two PNGs (:func:`score_panoptic_image` on the
    runs of constant ids; timings in docs/BENCHMARKS.md, "Evaluation speed"); images are
    spread over ``workers`` processes.

    Args:
        gt_json: Ground truth panoptic JSON (``annotations``, ``categories``).
        gt_dir: Folder of the ground truth PNGs (annotation ``file_name``).
        pred_json: Prediction JSON (``annotations`` with ``image_id``, ``file_name``,
            ``segments_info``); predictions of images not in the ground truth are ignored.
        pred_dir: Folder of the predicted PNGs.
        categories: Category id -> ``{"name", "isthing"}``; default the ground truth JSON's
            ``categories``, in its order (the order the official tools average in).
        workers: Processes at most (at least 8 images each); default every CPU this
            process may use; 1 runs in-process.
        progress: Show a progress bar on stderr (when it is a terminal).

    Returns:
        PQ/SQ/RQ for all, things, stuff and per category (named by ``name``); mIoU over the
        categories from the pixel confusion of ground truth segments (void left out).

    Raises:
        EvaluationError: A file or folder is missing or malformed, an image has no
            prediction, or a prediction breaks the format (see :func:`score_panoptic_image`).
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, what in ((gt_dir, "ground truth"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise EvaluationError(f"{what} folder {str(folder)!r} does not exist")
    from panoptic_ros.data.panoptic_format import load_panoptic_json

    gt_data = load_panoptic_json(gt_json)
    pred_data = load_panoptic_json(pred_json)
    if categories is None:
        try:
            categories = {row["id"]: row for row in gt_data["categories"]}
        except (KeyError, TypeError) as err:
            raise EvaluationError(
                f"ground truth JSON {str(gt_json)!r} needs 'categories' with 'id': {err!r}"
            ) from err
    for category, info in categories.items():
        if "name" not in info or "isthing" not in info:
            raise EvaluationError(f"category {category!r} needs 'name' and 'isthing': {info!r}")

    tasks: list[_Task] = []
    try:
        predictions = {ann["image_id"]: ann for ann in pred_data["annotations"]}
        for gt_ann in gt_data["annotations"]:
            image_id = gt_ann["image_id"]
            pred_ann = predictions.get(image_id)
            if pred_ann is None:
                raise EvaluationError(
                    f"no prediction for image {image_id!r} in {str(pred_json)!r}; every "
                    "ground truth image needs one"
                )
            tasks.append(
                (
                    str(gt_dir / gt_ann["file_name"]),
                    str(pred_dir / pred_ann["file_name"]),
                    list(gt_ann["segments_info"]),
                    list(pred_ann["segments_info"]),
                    image_id,
                )
            )
    except (KeyError, TypeError) as err:
        raise EvaluationError(f"malformed panoptic annotation: {err!r}") from err

    from tqdm import tqdm

    # Starting a worker costs about as much as scoring a few large images: keep 8 or more
    # images per worker.
    workers = min(default_workers() if workers is None else workers, max(1, len(tasks) // 8))
    if workers < 1:
        raise EvaluationError(f"workers must be at least 1, got {workers!r}")
    stat = PQStat()
    confusion = np.zeros((len(categories), len(categories) + 1), dtype=np.int64)
    bar = tqdm(
        total=len(tasks),
        desc="eval",
        unit="img",
        disable=not progress or not sys.stderr.isatty(),
        file=sys.stderr,
    )
    score = functools.partial(_score_task, categories)
    with contextlib.ExitStack() as stack:
        stack.enter_context(bar)
        results: Iterable[tuple[PQStat, npt.NDArray[np.int64]]]
        if workers == 1:
            results = map(score, tasks)
        else:
            # Spawned, not forked: a fork of a process whose OpenCV thread pool has run
            # deadlocks in the child's first parallel OpenCV call.
            pool = stack.enter_context(
                multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
            )
            # Ordered results keep the float sums the same from run to run.
            results = pool.imap(score, tasks, max(1, min(8, len(tasks) // (4 * workers))))
        for image_stat, image_confusion in results:
            stat += image_stat
            confusion += image_confusion
            bar.update()
    return stat.result(categories, miou=miou_from_confusion(confusion), confusion=confusion)
