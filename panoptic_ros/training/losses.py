"""Panoptic-DeepLab losses: bootstrapped cross-entropy, centre MSE, offset L1, distillation.

The distillation term is the KL divergence from the teachers' class probabilities to the
student's softmax, both softened by a temperature T (Hinton et al.), scaled by T^2 so its
gradients keep their size whatever T is, averaged over the cells that have soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.labels import IGNORE_INDEX

__all__ = ["LossWeights", "distillation_loss", "panoptic_loss"]


@dataclass(frozen=True, slots=True)
class LossWeights:
    """Weights of the three losses and the bootstrapping fraction (Panoptic-DeepLab's values).

    Attributes:
        semantic: Weight of the semantic loss.
        center: Weight of the centre-heatmap MSE.
        offset: Weight of the offset L1 (offsets are in pixels, hence the small weight).
        top_k_fraction: Fraction of the hardest semantic pixels that enter the loss.
        distill: Weight of the distillation loss (used when the targets hold soft targets).
        temperature: Distillation temperature T.
        teacher_temperature: Temperature of the softmax that made the teachers'
            probabilities (the dataset's); they are re-softened to T exactly.
    """

    semantic: float = 1.0
    center: float = 200.0
    offset: float = 0.01
    top_k_fraction: float = 0.2
    distill: float = 1.0
    temperature: float = 1.0
    teacher_temperature: float = 1.0


def distillation_loss(
    logits: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor,
    *,
    temperature: float = 1.0,
    teacher_temperature: float = 1.0,
) -> torch.Tensor:
    """T^2 * KL(teacher_T || softmax(logits / T)), averaged over weighted cells.

    Args:
        logits: [N, C, h, w] student class scores.
        teacher: [N, C, h, w] teacher probabilities (any float dtype; summing to ~1 over C
            where ``weight`` > 0), made by a softmax at ``teacher_temperature``.
        weight: [N, h, w] per-cell weight, 0 where there is no soft target.
        temperature: T.
        teacher_temperature: The teachers' own temperature tau: softmax(z / T) is
            p ** (tau / T) renormalised, so the teacher is softened without its logits.

    Returns:
        Scalar: sum(weight * KL) / max(sum(weight), 1), times T^2.
    """
    probs = teacher.float().clamp(min=0.0)
    exponent = teacher_temperature / temperature
    if exponent != 1.0:
        probs = probs.pow(exponent)
    probs = probs / probs.sum(dim=1, keepdim=True).clamp(min=1e-8)
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    kl = (torch.special.xlogy(probs, probs) - probs * log_student).sum(dim=1)  # [N, h, w]
    return (kl * weight).sum() / weight.sum().clamp(min=1.0) * temperature**2


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
            ``center_weight``, ``offsets``, ``offset_weight``), and optionally
            ``soft_targets`` [N,C,h,w] with ``soft_weight`` [N,h,w] (distillation).
        weights: Loss weights.

    Returns:
        ``{"semantic", "center", "offset", "total"}`` scalar tensors, and ``"distill"``
        (unweighted) when the targets hold soft targets.
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
    losses = {"semantic": semantic, "center": center, "offset": offset}
    if "soft_targets" in targets:
        distill = distillation_loss(
            logits,
            targets["soft_targets"],
            targets["soft_weight"],
            temperature=weights.temperature,
            teacher_temperature=weights.teacher_temperature,
        )
        total = total + weights.distill * distill
        losses["distill"] = distill
    losses["total"] = total
    return losses
