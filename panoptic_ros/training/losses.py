"""Panoptic-DeepLab losses: bootstrapped cross-entropy, centre MSE, offset L1."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.labels import IGNORE_INDEX

__all__ = ["LossWeights", "panoptic_loss"]


@dataclass(frozen=True, slots=True)
class LossWeights:
    """Weights of the three losses and the bootstrapping fraction (Panoptic-DeepLab's values).

    Attributes:
        semantic: Weight of the semantic loss.
        center: Weight of the centre-heatmap MSE.
        offset: Weight of the offset L1 (offsets are in pixels, hence the small weight).
        top_k_fraction: Fraction of the hardest semantic pixels that enter the loss.
    """

    semantic: float = 1.0
    center: float = 200.0
    offset: float = 0.01
    top_k_fraction: float = 0.2


def panoptic_loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    targets: dict[str, torch.Tensor],
    weights: LossWeights = LossWeights(),
) -> dict[str, torch.Tensor]:
    """Compute the weighted losses.

    Args:
        outputs: (semantic_logits [N,C,h,w], center_heatmap [N,1,h,w], offsets [N,2,h,w]).
        targets: Batched :class:`~panoptic_ros.training.targets.PanopticTargets` fields as
            tensors (``semantic`` int64 [N,h,w], ``semantic_weight`` [N,h,w], ``center_heatmap``,
            ``center_weight``, ``offsets``, ``offset_weight``).
        weights: Loss weights.

    Returns:
        ``{"semantic", "center", "offset", "total"}`` scalar tensors.
    """
    logits, heatmap, offsets = (o.float() for o in outputs)
    per_pixel = (
        F.cross_entropy(logits, targets["semantic"], ignore_index=IGNORE_INDEX, reduction="none")
        * targets["semantic_weight"]
    )
    per_pixel = per_pixel.flatten(1)  # [N, h*w]
    k = max(1, int(per_pixel.shape[1] * weights.top_k_fraction))
    # Hard-pixel bootstrapping: only the k highest per-image losses count.
    semantic = per_pixel.topk(k, dim=1).values.mean()

    center_w = targets["center_weight"]
    center_err = (heatmap - targets["center_heatmap"]) ** 2 * center_w
    center = center_err.sum() / center_w.sum().clamp(min=1.0)

    offset_w = targets["offset_weight"]
    offset_err = (offsets - targets["offsets"]).abs() * offset_w
    offset = offset_err.sum() / offset_w.sum().clamp(min=1.0)

    total = weights.semantic * semantic + weights.center * center + weights.offset * offset
    return {"semantic": semantic, "center": center, "offset": offset, "total": total}
