"""Panoptic-DeepLab training targets at the network's output stride (NumPy).

From a semantic map and an instance map at input resolution this builds, per stride-s
cell (location ``(s*i + (s-1)/2, s*j + (s-1)/2)`` in input pixels, the same convention as
:mod:`panoptic_ros.fusion`):

- the semantic class (nearest sample at the cell), 255 = ignore;
- the centre heatmap: a Gaussian (sigma in input pixels) around each instance's centre of
  mass, maximum over instances;
- the offsets (dy, dx) from the cell location to its instance's centre, in input pixels;
- weights: semantic (small instances count more, 0 on void and ignored cells), centre (0 on
  void and ignored cells) and offset (1 on instance cells that are not ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from panoptic_ros.labels import IGNORE_INDEX

__all__ = ["PanopticTargets", "make_targets"]


@dataclass(frozen=True, slots=True)
class PanopticTargets:
    """Training targets of one image at stride s (h = H/s, w = W/s).

    Attributes:
        semantic: [h, w] int64 class index, 255 = ignore.
        semantic_weight: [h, w] float32 per-cell weight of the semantic loss.
        center_heatmap: [1, h, w] float32 Gaussian centre targets in 0..1.
        center_weight: [1, h, w] float32, 0 where the centre target is unknown (void).
        offsets: [2, h, w] float32 (dy, dx) to the instance centre, input pixels.
        offset_weight: [1, h, w] float32, 1 on instance cells.
    """

    semantic: npt.NDArray[np.int64]
    semantic_weight: npt.NDArray[np.float32]
    center_heatmap: npt.NDArray[np.float32]
    center_weight: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.float32]
    offset_weight: npt.NDArray[np.float32]


def make_targets(
    semantic: npt.NDArray[np.uint8],
    instances: npt.NDArray[np.int32],
    *,
    stride: int = 4,
    sigma_px: float = 8.0,
    small_instance_area_px: int = 4096,
    small_instance_weight: float = 3.0,
    ignore_mask: npt.NDArray[np.bool_] | None = None,
) -> PanopticTargets:
    """Build the targets for one image.

    Args:
        semantic: [H, W] uint8 class index per pixel, 255 = void. H, W multiples of stride.
        instances: [H, W] int32 instance number (0 = none); every instance's pixels carry a
            thing class in ``semantic``.
        stride: Output stride of the network.
        sigma_px: Gaussian sigma of the centre heatmap, in input pixels.
        small_instance_area_px: Instances smaller than this (input pixels) are "small".
        small_instance_weight: Semantic-loss weight of small instances' cells.
        ignore_mask: Optional [H, W] bool of pixels to ignore entirely (crowd regions): their
            cells become void with zero weight, and their pixels make no centre.

    Returns:
        The targets at stride ``stride``.
    """
    height, width = semantic.shape
    if ignore_mask is not None:  # ignored pixels belong to no instance: no centre, no area
        instances = np.where(ignore_mask, 0, instances)
    h, w = height // stride, width // stride
    offset = (stride - 1) / 2.0
    # Nearest sample at each cell: the pixel just above-left of the cell centre.
    sample = stride // 2 - (1 if stride > 1 else 0)
    sem_cells = semantic[sample::stride, sample::stride][:h, :w].astype(np.int64)
    inst_cells = instances[sample::stride, sample::stride][:h, :w]

    count = int(instances.max()) if instances.size else 0
    center_y = np.zeros(count + 1)
    center_x = np.zeros(count + 1)
    area = np.zeros(count + 1, dtype=np.int64)
    if count:
        flat = instances.ravel()
        area = np.bincount(flat, minlength=count + 1)
        ys, xs = np.divmod(np.arange(flat.size), width)
        with np.errstate(invalid="ignore", divide="ignore"):
            center_y = np.bincount(flat, weights=ys, minlength=count + 1) / np.maximum(area, 1)
            center_x = np.bincount(flat, weights=xs, minlength=count + 1) / np.maximum(area, 1)

    cell_y = np.arange(h, dtype=np.float64) * stride + offset
    cell_x = np.arange(w, dtype=np.float64) * stride + offset
    heatmap = np.zeros((h, w), dtype=np.float32)
    radius = 3.0 * sigma_px
    for k in range(1, count + 1):
        if area[k] == 0:
            continue
        cy, cx = center_y[k], center_x[k]
        # Only the window within 3 sigma contributes: keeps this O(instances x window).
        i0, i1 = np.searchsorted(cell_y, [cy - radius, cy + radius])
        j0, j1 = np.searchsorted(cell_x, [cx - radius, cx + radius])
        if i0 >= i1 or j0 >= j1:
            continue
        gy = np.exp(-((cell_y[i0:i1] - cy) ** 2) / (2 * sigma_px**2))
        gx = np.exp(-((cell_x[j0:j1] - cx) ** 2) / (2 * sigma_px**2))
        np.maximum(heatmap[i0:i1, j0:j1], np.outer(gy, gx), out=heatmap[i0:i1, j0:j1])

    on_instance = inst_cells > 0
    offsets = np.zeros((2, h, w), dtype=np.float32)
    offsets[0] = np.where(on_instance, center_y[inst_cells] - cell_y[:, None], 0.0)
    offsets[1] = np.where(on_instance, center_x[inst_cells] - cell_x[None, :], 0.0)

    semantic_weight = np.ones((h, w), dtype=np.float32)
    small = (area < small_instance_area_px) & (area > 0)
    small[0] = False
    semantic_weight[small[inst_cells]] = small_instance_weight

    center_weight = np.ones((1, h, w), dtype=np.float32)
    if ignore_mask is not None:
        ignored = ignore_mask[sample::stride, sample::stride][:h, :w]
        sem_cells[ignored] = IGNORE_INDEX
        on_instance &= ~ignored
    # Void and ignored (crowd) cells carry no weight in any loss, as in Panoptic-DeepLab.
    void = sem_cells == IGNORE_INDEX
    semantic_weight[void] = 0.0
    center_weight[0, void] = 0.0

    return PanopticTargets(
        semantic=sem_cells,
        semantic_weight=semantic_weight,
        center_heatmap=heatmap[None],
        center_weight=center_weight,
        offsets=offsets,
        offset_weight=on_instance[None].astype(np.float32),
    )
