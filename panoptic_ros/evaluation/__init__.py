"""Evaluation: panoptic quality (PQ, SQ, RQ) as panopticapi computes it, and mIoU.

Re-exports :mod:`panoptic_ros.evaluation.panoptic_quality`. Scoring a whole pipeline lives
in :mod:`panoptic_ros.evaluation.model_eval`, imported on demand (it needs a backend).
"""

from __future__ import annotations

from panoptic_ros.evaluation.panoptic_quality import (
    INSTANCE_DIVISOR,
    OFFSET,
    VOID,
    CategoryStat,
    ClassQuality,
    MapAccumulator,
    PQResult,
    PQStat,
    categories_from_labels,
    evaluate_maps,
    miou_from_confusion,
    segments_from_maps,
    semantic_confusion,
)

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
    "evaluate_maps",
    "miou_from_confusion",
    "segments_from_maps",
    "semantic_confusion",
]
