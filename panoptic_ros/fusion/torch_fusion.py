"""Panoptic fusion in torch: the NumPy reference's first half on the device the heads are on.

:func:`fuse_cells_torch` follows :func:`panoptic_ros.fusion.fuse_cells` step by step with the
same tie-breaks (argmax/argmin take the first extreme, a stable descending sort orders the
centres, float32 distances computed as ``dy*dy + dx*dx`` in separate kernels), so the cell
maps are identical; scores agree to float32 rounding (the softmax reduction order differs).
Only the small stride-4 maps cross to the host; :func:`panoptic_ros.fusion.cells_to_frame`
does the rest. :func:`refine_pixels_torch` is the device twin of the bilinear edge refinement
(:mod:`panoptic_ros.fusion.refine`): ``F.interpolate`` on the device, the labelling on the
host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from panoptic_ros.fusion import VOID, CellPanoptic, FusionParams
from panoptic_ros.fusion.refine import (
    RefinedPixels,
    bilinear_coords,
    boundary_cells,
    edge_rows,
    refined_from_dense,
)
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import LabelSpace

if TYPE_CHECKING:
    import torch

__all__ = ["fuse_cells_torch", "refine_pixels_torch"]

_CHUNK_CELLS = 65536


def fuse_cells_torch(
    semantic_logits: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    labels: LabelSpace,
    params: FusionParams,
    *,
    valid_hw: tuple[int, int] | None = None,
    stride: int = 4,
) -> CellPanoptic:
    """Fuse one image's heads on their device.

    Args:
        semantic_logits: [1, C, h, w] float tensor.
        center_heatmap: [1, 1, h, w] float tensor.
        offsets: [1, 2, h, w] float tensor, (dy, dx) in network pixels.
        labels: Label space.
        params: Thresholds.
        valid_hw: Cells holding image rather than letterbox padding.
        stride: Output stride.

    Returns:
        The stride-level result as NumPy arrays (as :func:`~panoptic_ros.fusion.fuse_cells`).
    """
    import torch
    import torch.nn.functional as F

    device = semantic_logits.device
    if valid_hw is not None:
        rows, cols = valid_hw
        semantic_logits = semantic_logits[..., :rows, :cols]
        center_heatmap = center_heatmap[..., :rows, :cols]
        offsets = offsets[..., :rows, :cols]
    logits = semantic_logits[0].float()
    heatmap = center_heatmap[0, 0].float()
    offset = offsets[0].float()
    num_classes, h, w = logits.shape
    minus_inf = torch.tensor(float("-inf"), device=device)

    finite_logits = torch.where(torch.isnan(logits), minus_inf, logits)
    semantic = torch.argmax(finite_logits, dim=0)
    cell_max = finite_logits.max(dim=0).values
    semantic = torch.where(cell_max > minus_inf, semantic, torch.full_like(semantic, VOID))
    shifted = finite_logits - torch.where(torch.isfinite(cell_max), cell_max, 0)[None]
    exp = torch.exp(shifted)
    probabilities = exp / exp.sum(dim=0, keepdim=True)

    clean = torch.where(torch.isfinite(heatmap), heatmap, minus_inf)
    pooled = F.max_pool2d(
        clean[None, None], params.nms_kernel, stride=1, padding=params.nms_kernel // 2
    )[0, 0]
    peaks = (clean == pooled) & (clean > params.center_threshold)
    flat_peaks = torch.nonzero(peaks.reshape(-1)).reshape(-1)  # ascending flat index
    order = torch.sort(clean.reshape(-1)[flat_peaks], descending=True, stable=True).indices
    candidates = flat_peaks[order[: params.top_k]]

    is_thing = torch.from_numpy(labels.is_thing_table()).to(device)
    semantic_flat = semantic.reshape(-1).clone()
    thing_cells = torch.nonzero(is_thing[semantic_flat]).reshape(-1)
    instance_flat = torch.zeros(h * w, dtype=torch.int64, device=device)
    classes = torch.zeros(0, dtype=torch.int64, device=device)
    scores = torch.zeros(0, dtype=torch.float32, device=device)
    kept = torch.zeros(0, dtype=torch.int64, device=device)
    step, half = float(stride), float((stride - 1) / 2)
    if len(candidates) and len(thing_cells):
        cell_y = (thing_cells // w).float() * step + half
        cell_x = (thing_cells % w).float() * step + half
        flat_offsets = offset.reshape(2, -1)
        vote_y = cell_y + flat_offsets[0, thing_cells]
        vote_x = cell_x + flat_offsets[1, thing_cells]
        center_y = (candidates // w).float() * step + half
        center_x = (candidates % w).float() * step + half
        nearest = torch.empty(len(thing_cells), dtype=torch.int64, device=device)
        for start in range(0, len(thing_cells), _CHUNK_CELLS):
            stop = start + _CHUNK_CELLS
            dy = vote_y[start:stop, None] - center_y[None, :]
            dx = vote_x[start:stop, None] - center_x[None, :]
            distance = dy * dy + dx * dx
            distance = torch.where(torch.isnan(distance), float("inf"), distance)
            best = torch.argmin(distance, dim=1)
            finite = torch.isfinite(distance.gather(1, best[:, None])[:, 0])
            nearest[start:stop] = torch.where(finite, best, -1)
        joined = nearest >= 0
        instance_flat[thing_cells[joined]] = nearest[joined] + 1
        semantic_flat[thing_cells[~joined]] = VOID

        num_candidates = len(candidates)
        members = thing_cells[joined]
        member_of = nearest[joined]
        votes = torch.bincount(
            member_of * num_classes + semantic_flat[members],
            minlength=num_candidates * num_classes,
        ).reshape(num_candidates, num_classes)
        sizes = votes.sum(dim=1)
        majority = torch.argmax(votes, dim=1)
        semantic_flat[members] = majority[member_of]
        member_probability = probabilities.reshape(num_classes, -1)[majority[member_of], members]
        probability_sum = torch.zeros(num_candidates, dtype=torch.float64, device=device)
        probability_sum.index_add_(0, member_of, member_probability.double())
        mean_probability = probability_sum / sizes.clamp(min=1)
        peak = clean.reshape(-1)[candidates].double().clamp(0.0, 1.0)
        candidate_scores = (peak * mean_probability).float()

        keep = (
            (sizes > 0)
            & (sizes * stride * stride >= params.thing_area_threshold_px)
            & (candidate_scores >= params.score_threshold)
        )
        dropped = members[~keep[member_of]]
        semantic_flat[dropped] = VOID
        instance_flat[dropped] = 0
        kept = torch.nonzero(keep).reshape(-1)
        kept = kept[torch.sort(candidate_scores[kept], descending=True, stable=True).indices]
        renumber = torch.zeros(num_candidates + 1, dtype=torch.int64, device=device)
        renumber[kept + 1] = torch.arange(1, len(kept) + 1, device=device)
        instance_flat = renumber[instance_flat]
        classes = majority[kept]
        scores = candidate_scores[kept]
    else:
        semantic_flat[thing_cells] = VOID

    stuff_or_void = ~is_thing[semantic_flat]
    counts = torch.bincount(semantic_flat[stuff_or_void], minlength=256)
    small = (counts * stride * stride < params.stuff_area_threshold_px) & (counts > 0)
    small[VOID] = False
    semantic_flat = torch.where(stuff_or_void & small[semantic_flat], VOID, semantic_flat)

    centers = torch.stack([candidates[kept] // w, candidates[kept] % w], dim=1)
    return CellPanoptic(
        semantic=semantic_flat.reshape(h, w).to(torch.uint8).cpu().numpy(),
        instances=instance_flat.reshape(h, w).to(torch.int32).cpu().numpy(),
        classes=classes.cpu().numpy().astype(np.int64),
        scores=scores.cpu().numpy().astype(np.float32),
        centers_yx=centers.cpu().numpy().astype(np.int64).reshape(-1, 2),
    )


def refine_pixels_torch(
    semantic_logits: torch.Tensor,
    cells: CellPanoptic,
    letterbox: Letterbox,
    labels: LabelSpace,
    *,
    stride: int = 4,
) -> RefinedPixels:
    """:func:`panoptic_ros.fusion.refine.refine_pixels` with the interpolation on the device.

    The class scores are upsampled with ``F.interpolate`` (bilinear, ``align_corners=False``,
    the letterbox's exact scale given as ``scale_factor``) and the argmax taken there; only
    the camera-sized uint8 class map and the small cell maps come to the host, where the
    labelling rules are shared with the NumPy path. Classes agree with it up to float
    rounding of near-ties.

    Args:
        semantic_logits: [1, C, h, w] float tensor (the whole output; cropped here).
        cells: The fused cell maps of the valid cells.
        letterbox: The camera-to-network mapping.
        labels: Label space.
        stride: Output stride.

    Returns:
        The refined pixels.
    """
    import torch
    import torch.nn.functional as F

    rows, cols = letterbox.valid_cells_hw(stride)
    logits = semantic_logits[0, :, :rows, :cols].float()
    finite = torch.isfinite(logits).all(dim=0)
    clean = torch.where(torch.isnan(logits), float("-inf"), logits)
    cell_max, raw = clean.max(dim=0)
    raw = torch.where(cell_max > float("-inf"), raw, VOID)
    raw_host = raw.cpu().numpy().astype(np.int64)
    boundary = boundary_cells(raw_host, finite.cpu().numpy())
    first, stop = edge_rows(boundary, bilinear_coords(letterbox, stride))
    if stop == first:
        empty = np.zeros((0, letterbox.image_hw[1]), dtype=np.uint8)
        return refined_from_dense(empty, 0, boundary, raw_host, cells, letterbox, labels, stride)
    ratio_y, ratio_x = letterbox.ratio_yx
    width = letterbox.image_hw[1]
    # Non-finite cells are never refined; zeros keep their NaN from spreading.
    safe = torch.where(finite[None], logits, 0.0)
    # One repeated edge row and column make the output cover the whole camera image
    # whatever the rounding of its size (repeating the edge is what the clamp does anyway).
    padded = F.pad(safe[None], (0, 1, 0, 1), mode="replicate")
    upsampled = F.interpolate(
        padded,
        scale_factor=(stride / ratio_y, stride / ratio_x),
        mode="bilinear",
        align_corners=False,
        recompute_scale_factor=False,
    )[0, :, first:stop, :width]
    dense = upsampled.argmax(dim=0).to(torch.uint8).cpu().numpy()
    return refined_from_dense(dense, first, boundary, raw_host, cells, letterbox, labels, stride)
