"""Evaluation during training: PQ and mIoU over the classes the evaluation images contain.

The standard means (``all``, ``miou``) run over every class that occurs in ground truth
*or* prediction, so on a few pseudo-labelled or real frames where most of the 19 classes
never occur, every class the network wrongly predicts counts as a zero and the mean says
little. :func:`score_network` adds the means over the classes present in the evaluation
ground truth, named for what they average:

* ``miou_gt_classes``: mean IoU over the classes with ground-truth pixels;
* ``pq_gt_classes``: mean PQ over the classes with ground-truth segments (tp + fn > 0);
* ``gt_classes``: those class names (pixels), ``n_gt_classes`` their number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.data.sample import PanopticSample
from panoptic_ros.evaluation.model_eval import evaluate_pipeline
from panoptic_ros.evaluation.panoptic_quality import MapAccumulator
from panoptic_ros.pipeline import PanopticPipeline

__all__ = ["present_class_scores", "score_network"]


def present_class_scores(
    confusion: npt.NDArray[np.int64],
    per_class: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
) -> dict[str, Any]:
    """The means over the classes present in the ground truth.

    Args:
        confusion: [C, C + 1] class confusion (rows ground truth, last column void).
        per_class: Class name -> ``{"pq", "tp", "fp", "fn", ...}`` (``PQResult.to_dict``).
        names: The C class names in index order.

    Returns:
        ``gt_classes``, ``n_gt_classes``, ``miou_gt_classes`` and ``pq_gt_classes`` (NaN
        when no class is present).
    """
    count = confusion.shape[0]
    tp = np.diag(confusion[:, :count]).astype(np.float64)
    gt = confusion.sum(axis=1)
    union = gt + confusion[:, :count].sum(axis=0) - tp
    present = np.flatnonzero(gt > 0)
    iou = [tp[k] / union[k] for k in present]
    with_segments = [
        float(row["pq"]) for row in per_class.values() if int(row["tp"]) + int(row["fn"]) > 0
    ]
    return {
        "gt_classes": [names[k] for k in present],
        "n_gt_classes": len(present),
        "miou_gt_classes": float(np.mean(iou)) if iou else float("nan"),
        "pq_gt_classes": float(np.mean(with_segments)) if with_segments else float("nan"),
    }


def score_network(
    network: Any,
    metadata: Any,
    samples: Sequence[PanopticSample],
    fusion: Any,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score an in-memory torch network: ``PQResult.to_dict()`` plus the present-class means.

    Args:
        network: The network (eval mode).
        metadata: Its :class:`~panoptic_ros.contract.ModelMetadata`.
        samples: Evaluation samples (image, semantic, instances).
        fusion: :class:`~panoptic_ros.fusion.FusionParams`.
        device: Where the network runs.
    """
    from panoptic_ros.backends.torch_backend import TorchBackend

    backend = TorchBackend(network, metadata, device=device)
    pipeline = PanopticPipeline(backend, metadata.labels, fusion)
    accumulator = MapAccumulator(metadata.labels)
    result = evaluate_pipeline(pipeline, samples, accumulator=accumulator).to_dict()
    result.update(
        present_class_scores(accumulator.confusion, result["per_class"], metadata.labels.names)
    )
    return result
