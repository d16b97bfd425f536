"""Test oracles: a fake network that reads the answer from its input, and the plain PQ.

:class:`OracleBackend` checks alignment without a model; :func:`pq_single_image` is the
plain panoptic-quality reference (one ``np.unique`` over a combined uint64 key, as
panopticapi), which the tests check against panopticapi and the package's
``score_panoptic_image`` against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.backends.base import BackendBase
from panoptic_ros.contract import ModelMetadata
from panoptic_ros.errors import EvaluationError
from panoptic_ros.evaluation.panoptic_quality import OFFSET, VOID, PQStat
from panoptic_ros.labels import LabelSpace
from panoptic_ros.results import HeadOutputs

__all__ = ["OracleBackend", "oracle_labels", "pq_single_image"]


def oracle_labels(rgb: npt.NDArray[np.uint8], labels: LabelSpace) -> npt.NDArray[np.int64]:
    """The oracle's rule on [H, W, 3] RGB pixels: red > 127 road, green > 127 car, else building.

    A convex blend (bilinear resize) of pixels that all get one label gets that label too,
    so wherever a neighbourhood is uniform under this rule the prediction must be exact.
    """
    pixels = rgb.astype(np.int32)
    label = np.full(rgb.shape[:2], labels.index("building"), np.int64)
    label[pixels[..., 0] > 127] = labels.index("road")
    label[pixels[..., 1] > 127] = labels.index("car")
    return label


class OracleBackend(BackendBase):
    """A fake network that reads the answer from the letterboxed input it is given.

    Each stride-4 cell is labelled from the network pixel at its top-left corner: red
    > 127 -> road, green > 127 -> car, else building; the car gets one centre (the cell
    nearest the mean of its cells) and offsets pointing there. If the letterbox or the
    mapping back to camera pixels were off, the labels would land on the wrong pixels.
    """

    name = "oracle"
    device = "cpu"
    model_path = "oracle"

    def __init__(self, network_hw: tuple[int, int], labels: LabelSpace) -> None:
        self.input_hw = network_hw
        self.metadata = ModelMetadata(labels=labels, input_hw=network_hw)
        self.labels = labels
        self.calls = 0

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        self.calls += 1
        corner = images[0, ::4, ::4]  # [h, w, 3] network pixels
        h, w = corner.shape[:2]
        car = self.labels.index("car")
        label = oracle_labels(corner, self.labels)
        logits = np.full((1, self.labels.num_classes, h, w), -10.0, np.float32)
        np.put_along_axis(logits[0], label[None], 10.0, axis=0)
        heatmap = np.zeros((1, 1, h, w), np.float32)
        offsets = np.zeros((1, 2, h, w), np.float32)
        ys, xs = np.nonzero(label == car)
        if len(ys):
            centre = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
            cy, cx = ys[centre], xs[centre]
            heatmap[0, 0, cy, cx] = 1.0
            grid_y, grid_x = np.mgrid[0:h, 0:w]
            offsets[0, 0] = (cy - grid_y) * 4.0
            offsets[0, 1] = (cx - grid_x) * 4.0
        return HeadOutputs(logits, heatmap, offsets)

    def close(self) -> None:
        pass


def _histogram(values: npt.NDArray[np.uint64], weights: npt.NDArray[np.int64]) -> dict[int, int]:
    """Sum ``weights`` per distinct value: {value: total}."""
    labels, inverse = np.unique(values, return_inverse=True)
    totals = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(labels))
    return dict(zip(labels.tolist(), totals.astype(np.int64).tolist(), strict=True))


def pq_single_image(
    gt_ids: npt.NDArray[np.integer[Any]],
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: npt.NDArray[np.integer[Any]],
    pred_segments: Sequence[Mapping[str, Any]],
    categories: Mapping[int, Mapping[str, Any]],
) -> PQStat:
    """Match one image's segments; count tp/fp/fn and the matched IoU per category.

    Args:
        gt_ids: [H, W] integer (uint32 in panoptic PNGs) segment id per pixel, 0 void.
        gt_segments: ``{"id", "category_id", "iscrowd"[, "area"]}`` per ground truth
            segment (panoptic ``segments_info``).
        pred_ids: [H, W] integer predicted segment id per pixel, 0 unlabelled.
        pred_segments: ``{"id", "category_id"}`` per predicted segment.
        categories: Category id -> ``{"name", "isthing"}``.

    Returns:
        This image's statistics (add them up with ``+=``).

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
    for name, ids in (("ground truth", gt_ids), ("prediction", pred_ids)):
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= OFFSET):
            raise EvaluationError(
                f"{name} segment ids span {int(ids.min())}..{int(ids.max())}, outside "
                f"0..{OFFSET - 1}; panoptic ids are 24-bit"
            )
    gt = {int(s["id"]): s for s in gt_segments}
    pred = {int(s["id"]): s for s in pred_segments}

    # One sort of the combined key gives every (gt, pred) intersection; areas are its sums.
    keys = gt_ids.astype(np.uint64).reshape(-1) * np.uint64(OFFSET) + pred_ids.astype(
        np.uint64
    ).reshape(-1)
    pair_keys, pair_counts = np.unique(keys, return_counts=True)
    pair_counts = pair_counts.astype(np.int64)
    pair_gt = pair_keys // np.uint64(OFFSET)
    pair_pred = pair_keys % np.uint64(OFFSET)
    pred_area = _histogram(pair_pred, pair_counts)
    gt_pixels = _histogram(pair_gt, pair_counts)

    for label in pred_area:
        if label not in pred and label != VOID:
            raise EvaluationError(
                f"segment id {label} is in the prediction map but not in its segments; "
                "list every predicted id in segments_info"
            )
    missing = sorted(label for label in pred if label not in pred_area)
    if missing:
        raise EvaluationError(
            f"predicted segments {missing[:5]!r} have no pixels in the map; drop them"
        )
    for label, segment in pred.items():
        if segment["category_id"] not in categories:
            raise EvaluationError(
                f"predicted segment {label} has unknown category {segment['category_id']!r}; "
                f"known: {sorted(categories)!r}"
            )
    gt_area = {label: int(s.get("area", gt_pixels.get(label, 0))) for label, s in gt.items()}
    intersections = {
        (g, p): c
        for g, p, c in zip(pair_gt.tolist(), pair_pred.tolist(), pair_counts.tolist(), strict=True)
    }

    stat = PQStat()
    gt_matched: set[int] = set()
    pred_matched: set[int] = set()
    # In key order, as panopticapi, so the IoU sums add up in the same order.
    for (gt_label, pred_label), intersection in intersections.items():
        if gt_label not in gt or pred_label not in pred:
            continue
        gt_segment = gt[gt_label]
        if gt_segment.get("iscrowd", 0) == 1:
            continue
        if gt_segment["category_id"] != pred[pred_label]["category_id"]:
            continue
        union = (
            pred_area[pred_label]
            + gt_area[gt_label]
            - intersection
            - intersections.get((VOID, pred_label), 0)
        )
        iou = intersection / union
        if iou > 0.5:
            category = gt_segment["category_id"]
            stat[category].tp += 1
            stat[category].iou += iou
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    crowd_by_category: dict[int, int] = {}
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
        ignored = intersections.get((VOID, pred_label), 0)
        crowd = crowd_by_category.get(segment["category_id"])
        if crowd is not None:
            ignored += intersections.get((crowd, pred_label), 0)
        if ignored / pred_area[pred_label] > 0.5:
            continue  # mostly void or same-category crowd: not a false positive
        stat[segment["category_id"]].fp += 1
    return stat
