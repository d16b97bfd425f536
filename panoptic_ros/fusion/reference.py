"""Panoptic fusion, NumPy reference: network heads -> panoptic result at camera resolution.

Two halves, so other implementations (the torch/GPU fusion, a fusion folded into the ONNX
graph) can share the second and be compared on the first:

* :func:`fuse_cells` works at the output stride (4): semantic argmax, centre candidates by
  max-pool NMS + threshold + top-k, each thing cell joins the nearest predicted centre,
  instance class by majority vote, small stuff regions and small or weak instances to void.
* :func:`cells_to_frame` maps the cell result to camera pixels through the letterbox
  (nearest, optionally with the class-boundary pixels refined from bilinear class scores by
  :mod:`panoptic_ros.fusion.refine`), builds the drivable mask, and computes boxes, areas
  and centroids exactly from the per-cell pixel counts (plus the refined pixels one by
  one) without scanning the full-resolution map.

Every tie-break and every rounding is explicit, so another implementation can be
bit-identical:

* argmax ties -> lowest class index;
* centre candidates ordered by heatmap value descending, ties -> lower flat cell index;
* a cell's location in network pixels is ``stride * index + (stride - 1) / 2`` (the centre
  of its block); its vote is location + offset, in float32;
* nearest centre by squared distance ``dy * dy + dx * dx`` in float32 network pixels,
  ties -> lower candidate index (the candidate order above);
* majority-vote ties -> lowest class index;
* score = peak heatmap value x mean member probability: the probability is a float32
  softmax (subtract the cell's maximum logit, exp, sum over classes in index order,
  divide), the mean and the product in float64, the score rounded to float32;
* final instance order by score descending, ties -> lower candidate index (so the higher
  centre peak first, then the lower flat index).

Non-finite network outputs never crash, and follow fixed rules:

* NaN logits count as -inf: a NaN class never wins; a cell whose logits are all NaN or
  -inf is void. A +inf logit wins its cell but makes its softmax NaN, so an instance
  holding such a cell gets a NaN score and is dropped (its cells void).
* NaN or +-inf heatmap values are never centres.
* A NaN or infinite offset (or a vote so far away that every squared distance overflows)
  joins no centre: that thing cell is void.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import numpy.typing as npt

from panoptic_ros.config import FusionConfig, UpsampleMode
from panoptic_ros.errors import ConfigError, ModelFileError, PanopticError
from panoptic_ros.geometry import CellGrid, Letterbox
from panoptic_ros.labels import LabelSpace
from panoptic_ros.results import FrameResult, HeadOutputs, Instance

if TYPE_CHECKING:
    from panoptic_ros.fusion.refine import RefinedPixels

__all__ = ["VOID", "CellPanoptic", "FusionParams", "cells_to_frame", "fuse_cells", "fuse_panoptic"]

#: Semantic value of void pixels.
VOID = 255
# Thing cells are matched to centres in chunks of this many cells: chunk x K float32
# temporaries (1.6 MB at K = 200) stay in cache, measured fastest on 256x512 cells.
_CHUNK_CELLS = 2048


@dataclass(frozen=True, slots=True)
class FusionParams:
    """Fusion thresholds (plain numbers; see :class:`~panoptic_ros.config.FusionConfig`).

    Attributes:
        center_threshold: A centre candidate's heatmap value must exceed this.
        nms_kernel: Odd max-pool window (cells) of the centre non-maximum suppression.
        top_k: At most this many centre candidates, best first.
        score_threshold: Instances scoring below this become void.
        stuff_area_threshold_px: Stuff classes covering fewer network pixels become void.
        thing_area_threshold_px: Instances covering fewer network pixels become void.
        upsample: How the cell maps reach camera pixels: "bilinear" refines the pixels of
            class-boundary cells from bilinearly interpolated class scores
            (:mod:`panoptic_ros.fusion.refine`), "nearest" expands whole cells.

    Raises:
        ConfigError: ``nms_kernel`` is even or not positive, or ``top_k`` is negative.
    """

    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int = 200
    score_threshold: float = 0.0
    stuff_area_threshold_px: int = 256
    thing_area_threshold_px: int = 64
    upsample: UpsampleMode = "bilinear"

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ConfigError(
                f"fusion nms_kernel={self.nms_kernel!r} must be a positive odd number of cells"
            )
        if self.top_k < 0:
            raise ConfigError(f"fusion top_k={self.top_k!r} must be >= 0")
        if self.upsample not in get_args(UpsampleMode):
            raise ConfigError(
                f"fusion upsample={self.upsample!r} must be one of {list(get_args(UpsampleMode))}"
            )

    @classmethod
    def from_config(cls, config: FusionConfig) -> FusionParams:
        """Copy the thresholds of a validated config section."""
        return cls(
            center_threshold=config.center_threshold,
            nms_kernel=config.nms_kernel,
            top_k=config.top_k,
            score_threshold=config.score_threshold,
            stuff_area_threshold_px=config.stuff_area_threshold_px,
            thing_area_threshold_px=config.thing_area_threshold_px,
            upsample=config.upsample,
        )


@dataclass(frozen=True, slots=True)
class CellPanoptic:
    """Fusion result at the output stride, over the valid (non-padding) cells.

    Attributes:
        semantic: [h, w] uint8 class per cell, 255 void.
        instances: [h, w] int32, k in 1..N for the k-th instance, 0 none.
        classes: [N] int64 class of instance k at index k-1.
        scores: [N] float32 confidence.
        centers_yx: [N, 2] int64 cell (row, col) of each instance's centre peak.
    """

    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    classes: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    centers_yx: npt.NDArray[np.int64]


def _max_pool_same(values: npt.NDArray[np.float32], kernel: int) -> npt.NDArray[np.float32]:
    """Stride-1 max pool with -inf 'same' padding, separable (rows then columns)."""
    radius = kernel // 2
    if radius == 0:
        return values.copy()
    h, w = values.shape
    padded = np.full((h + 2 * radius, w), -np.inf, dtype=np.float32)
    padded[radius : radius + h] = values
    rows = padded[0:h].copy()
    for shift in range(1, kernel):
        np.maximum(rows, padded[shift : shift + h], out=rows)
    padded = np.full((h, w + 2 * radius), -np.inf, dtype=np.float32)
    padded[:, radius : radius + w] = rows
    pooled = padded[:, 0:w].copy()
    for shift in range(1, kernel):
        np.maximum(pooled, padded[:, shift : shift + w], out=pooled)
    return pooled


def _center_candidates(
    heatmap: npt.NDArray[np.float32], params: FusionParams
) -> npt.NDArray[np.int64]:
    """Flat cell indices of the centre peaks, best first (ties -> lower index)."""
    clean = np.where(np.isfinite(heatmap), heatmap, -np.inf).astype(np.float32)
    pooled = _max_pool_same(clean, params.nms_kernel)
    peaks = (clean == pooled) & (clean > params.center_threshold)
    flat = np.flatnonzero(peaks)
    values = clean.reshape(-1)[flat]
    order = np.argsort(-values, kind="stable")
    return flat[order[: params.top_k]]


def _nearest_center(
    votes_yx: npt.NDArray[np.float32], centers_yx: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """Index of the nearest centre for each vote (float32 squared distance, ties -> lowest).

    Args:
        votes_yx: [M, 2] float32 predicted centre positions of thing cells.
        centers_yx: [K, 2] float32 candidate centre positions.

    Returns:
        [M] int64 in 0..K-1, or -1 for a vote with a non-finite position (or one so far
        away that every squared distance overflows to inf).
    """
    nearest = np.full(len(votes_yx), -1, dtype=np.int64)
    # Only finite votes: then no distance is NaN (finite - finite is finite or +-inf).
    finite_votes = np.flatnonzero(np.isfinite(votes_yx).all(axis=1))
    center_y, center_x = centers_yx[None, :, 0], centers_yx[None, :, 1]
    for start in range(0, len(finite_votes), _CHUNK_CELLS):
        chunk = finite_votes[start : start + _CHUNK_CELLS]
        # distance = dy * dy + dx * dx in float32, in place (same roundings, fewer temporaries).
        with np.errstate(over="ignore"):
            distance = votes_yx[chunk, 0:1] - center_y
            np.multiply(distance, distance, out=distance)
            dx = votes_yx[chunk, 1:2] - center_x
            np.multiply(dx, dx, out=dx)
            distance += dx
        index = np.argmin(distance, axis=1)  # first minimum: lowest candidate index
        reachable = np.isfinite(distance[np.arange(len(chunk)), index])
        nearest[chunk] = np.where(reachable, index, -1)
    return nearest


def _argmax_classes(
    logits: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Per-cell winning class and its logit, NaN counting as -inf.

    A running comparison over the classes (``>``, so ties keep the lowest index) reads each
    class plane once: several times faster than ``np.argmax(axis=0)`` across planes.

    Args:
        logits: [C, h, w] float32 class scores.

    Returns:
        ([h, w] int64 class, 255 where every logit is NaN or -inf; [h, w] float32 maximum
        logit, -inf there).
    """
    best = np.full(logits.shape[1:], -np.inf, dtype=np.float32)
    semantic = np.zeros(logits.shape[1:], dtype=np.int64)
    for index, plane in enumerate(logits):
        better = plane > best  # False for NaN: a NaN never wins
        semantic[better] = index
        np.copyto(best, plane, where=better)
    semantic[~(best > -np.inf)] = VOID
    return semantic, best


def _class_probability(
    logits: npt.NDArray[np.float32],
    cell_max: npt.NDArray[np.float32],
    classes: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """Float32 softmax probability of one class per cell, for the given cells only.

    The arithmetic is the full-map softmax's, element for element (NaN as -inf, subtract
    the cell maximum, exp, sum over classes in class order, divide), so computing it only
    for the member cells changes no bit.

    Args:
        logits: [C, M] float32 logits of M cells.
        cell_max: [M] float32 maximum logit of each cell (NaN ignored).
        classes: [M] int64 class whose probability is wanted per cell.

    Returns:
        [M] float32 probabilities (NaN where a logit is +inf).
    """
    finite = np.where(np.isnan(logits), np.float32(-np.inf), logits)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = finite - np.where(np.isfinite(cell_max), cell_max, np.float32(0))[None]
        exp = np.exp(shifted, dtype=np.float32)
        # Summed class by class in index order: a fixed order, so every implementation
        # can reproduce the bits (np.sum's order depends on the array's shape).
        total = exp[0].copy()
        for row in exp[1:]:
            total += row
        chosen = exp[classes, np.arange(exp.shape[1])]
        return (chosen / total).astype(np.float32)


def fuse_cells(
    heads: HeadOutputs,
    labels: LabelSpace,
    params: FusionParams,
    *,
    valid_hw: tuple[int, int] | None = None,
    stride: int = 4,
) -> CellPanoptic:
    """Fuse one image's heads into a panoptic map at the output stride.

    Args:
        heads: Head outputs with batch size 1.
        labels: Label space (thing/stuff flags).
        params: Thresholds.
        valid_hw: Cells (rows, cols) that hold image rather than letterbox padding; the
            heads are cropped to it. None keeps the whole map.
        stride: Output stride (network pixels per cell).

    Returns:
        The stride-level panoptic result.
    """
    if heads.batch_size != 1:
        raise PanopticError(
            f"fusion takes one image, got heads of batch size {heads.batch_size}; "
            "pass heads[i] per image"
        )
    if heads.semantic_logits.shape[1] != labels.num_classes:
        raise ModelFileError(
            f"the model outputs {heads.semantic_logits.shape[1]} classes but the label space "
            f"has {labels.num_classes}; use the labels from the model's metadata"
        )
    logits = heads.semantic_logits[0]
    if valid_hw is not None:
        rows, cols = valid_hw
        logits = logits[:, :rows, :cols]
        heatmap = heads.center_heatmap[0, 0, :rows, :cols]
        offsets = heads.offsets[0, :, :rows, :cols]
    else:
        heatmap = heads.center_heatmap[0, 0]
        offsets = heads.offsets[0]
    # The logits stay a (possibly strided) view: copying [C, h, w] costs more than reading it.
    logits = np.asarray(logits, dtype=np.float32)
    heatmap = np.ascontiguousarray(heatmap, dtype=np.float32)
    offsets = np.ascontiguousarray(offsets, dtype=np.float32)
    num_classes, h, w = logits.shape

    # 1. Semantic argmax; NaN counts as -inf, an all-NaN cell is void.
    semantic, cell_max = _argmax_classes(logits)

    # 2. Centre candidates.
    candidates = _center_candidates(heatmap, params)
    is_thing = labels.is_thing_table()
    thing_cells = np.flatnonzero(is_thing[semantic.reshape(-1)])
    instance_flat = np.zeros(h * w, dtype=np.int64)  # candidate index + 1, 0 none
    semantic_flat = semantic.reshape(-1).copy()

    classes = np.zeros(0, dtype=np.int64)
    scores = np.zeros(0, dtype=np.float32)
    kept = np.zeros(0, dtype=np.int64)
    if len(candidates) and len(thing_cells):
        # 3. Every thing cell votes for (its location + offset) and joins the nearest centre.
        location = np.float32(stride), np.float32((stride - 1) / 2)
        cell_y = (thing_cells // w).astype(np.float32) * location[0] + location[1]
        cell_x = (thing_cells % w).astype(np.float32) * location[0] + location[1]
        flat_offsets = offsets.reshape(2, -1)
        with np.errstate(over="ignore", invalid="ignore"):  # huge offsets: inf, no centre
            votes = np.stack(
                [cell_y + flat_offsets[0, thing_cells], cell_x + flat_offsets[1, thing_cells]],
                axis=1,
            )  # [M, 2] float32 (y, x) network pixels
        center_yx = np.stack(
            [
                (candidates // w).astype(np.float32) * location[0] + location[1],
                (candidates % w).astype(np.float32) * location[0] + location[1],
            ],
            axis=1,
        )
        nearest = _nearest_center(votes, center_yx)
        joined = nearest >= 0
        instance_flat[thing_cells[joined]] = nearest[joined] + 1
        semantic_flat[thing_cells[~joined]] = VOID

        # 4. Class by majority vote (ties -> lowest class id), then score.
        num_candidates = len(candidates)
        members = thing_cells[joined]
        member_of = nearest[joined]
        votes_table = np.bincount(
            member_of * num_classes + semantic_flat[members],
            minlength=num_candidates * num_classes,
        ).reshape(num_candidates, num_classes)  # [K, C] cells per (candidate, class)
        sizes = votes_table.sum(axis=1)
        majority = np.argmax(votes_table, axis=1)
        semantic_flat[members] = majority[member_of]
        member_probability = _class_probability(
            logits[:, members // w, members % w],
            cell_max.reshape(-1)[members],
            majority[member_of],
        ).astype(np.float64)
        probability_sum = np.bincount(member_of, member_probability, minlength=num_candidates)
        mean_probability = probability_sum / np.maximum(sizes, 1)
        # The heatmap is regressed, not squashed: clip so scores stay in 0..1.
        peak = np.clip(heatmap.reshape(-1)[candidates].astype(np.float64), 0.0, 1.0)
        candidate_scores = (peak * mean_probability).astype(np.float32)

        # 5. Drop empty, small and weak instances: their cells become void.
        area_px = sizes * stride * stride
        keep = (
            (sizes > 0)
            & (area_px >= params.thing_area_threshold_px)
            & (candidate_scores >= params.score_threshold)
        )
        dropped_cells = members[~keep[member_of]]
        semantic_flat[dropped_cells] = VOID
        instance_flat[dropped_cells] = 0

        # 7. Order by score descending, ties -> lower candidate index; number 1..N.
        kept = np.flatnonzero(keep)
        kept = kept[np.argsort(-candidate_scores[kept], kind="stable")]
        renumber = np.zeros(num_candidates + 1, dtype=np.int64)
        renumber[kept + 1] = np.arange(1, len(kept) + 1)
        instance_flat = renumber[instance_flat]
        classes = majority[kept]
        scores = candidate_scores[kept]
    else:
        semantic_flat[thing_cells] = VOID

    # 6. Stuff classes covering less than the area threshold become void.
    stuff_or_void = ~is_thing[semantic_flat]
    counts = np.bincount(semantic_flat[stuff_or_void], minlength=256)
    small = (counts * stride * stride < params.stuff_area_threshold_px) & (counts > 0)
    small[VOID] = False
    semantic_flat[stuff_or_void & small[semantic_flat]] = VOID

    return CellPanoptic(
        semantic=semantic_flat.reshape(h, w).astype(np.uint8),
        instances=instance_flat.reshape(h, w).astype(np.int32),
        classes=classes.astype(np.int64),
        scores=scores.astype(np.float32),
        centers_yx=np.stack([candidates[kept] // w, candidates[kept] % w], axis=1).astype(np.int64)
        if len(kept)
        else np.zeros((0, 2), dtype=np.int64),
    )


@functools.lru_cache(maxsize=16)
def _cell_grid(letterbox: Letterbox, stride: int) -> CellGrid:
    """The camera-pixel-to-cell mapping, computed once per camera size."""
    return letterbox.cell_grid(stride)


def _instance_stats(
    cells: CellPanoptic,
    grid: CellGrid,
    refined: RefinedPixels | None,
    image_w: int,
) -> tuple[npt.NDArray[np.float64], ...]:
    """Per cell-level instance id: pixel count, sums of y and x, and the pixel box.

    Cells are counted whole through the grid's per-cell pixel counts (no full-resolution
    scan). Refined pixels then move from their cell's instance to their own: counts and
    sums are moved, and boxes come from per-instance row and column pixel counts.

    Returns:
        [N + 1] float64 arrays (index k for instance k): area, sum_y, sum_x, y0, y1, x0,
        x1 (box inf/-inf where the instance has no pixel).
    """
    h, w = cells.instances.shape
    count = len(cells.classes) + 1
    flat = cells.instances.reshape(-1)
    member = np.flatnonzero(flat)
    ids = flat[member]
    member_rows, member_cols = member // w, member % w
    row_counts = grid.row_counts[:h].astype(np.int64)[member_rows]
    col_counts = grid.col_counts[:w].astype(np.int64)[member_cols]
    pixels = row_counts * col_counts
    area = np.bincount(ids, pixels, minlength=count).astype(np.float64)
    sum_y = np.bincount(ids, grid.row_sums[:h][member_rows] * col_counts, minlength=count)
    sum_x = np.bincount(ids, grid.col_sums[:w][member_cols] * row_counts, minlength=count)
    moved = refined is not None and bool(
        np.count_nonzero(refined.instances) or np.count_nonzero(refined.previous)
    )
    if not moved:
        y0 = np.full(count, np.inf)
        y1 = np.full(count, -np.inf)
        x0 = np.full(count, np.inf)
        x1 = np.full(count, -np.inf)
        # Only cells with camera pixels count towards the box: first/last pixel of the cell.
        seen = pixels > 0
        np.minimum.at(y0, ids[seen], np.searchsorted(grid.rows, member_rows[seen], "left"))
        np.maximum.at(y1, ids[seen], np.searchsorted(grid.rows, member_rows[seen], "right") - 1)
        np.minimum.at(x0, ids[seen], np.searchsorted(grid.cols, member_cols[seen], "left"))
        np.maximum.at(x1, ids[seen], np.searchsorted(grid.cols, member_cols[seen], "right") - 1)
        return area, sum_y.astype(np.float64), sum_x.astype(np.float64), y0, y1, x0, x1
    assert refined is not None
    pixel_y = refined.index // image_w
    pixel_x = refined.index % image_w
    new, old = refined.instances.astype(np.int64), refined.previous.astype(np.int64)
    area += np.bincount(new, minlength=count) - np.bincount(old, minlength=count)
    sum_y = sum_y + np.bincount(new, pixel_y, minlength=count)
    sum_y -= np.bincount(old, pixel_y, minlength=count)
    sum_x = sum_x + np.bincount(new, pixel_x, minlength=count)
    sum_x -= np.bincount(old, pixel_x, minlength=count)
    boxes = []
    for cell_of, per_cell, pixel_at, lines in (
        (grid.rows, member_rows, pixel_y, len(grid.rows)),
        (grid.cols, member_cols, pixel_x, len(grid.cols)),
    ):
        # [N + 1, lines] pixels of each instance per camera row (column): whole cells
        # first, then the refined pixels moved; the box is the first and last non-empty.
        other = col_counts if cell_of is grid.rows else row_counts
        cells_per_line = len(grid.row_counts) if cell_of is grid.rows else len(grid.col_counts)
        by_cell = np.bincount(
            ids * cells_per_line + per_cell, other, minlength=count * cells_per_line
        ).reshape(count, cells_per_line)
        table = by_cell[:, cell_of]
        table += np.bincount(new * lines + pixel_at, minlength=count * lines).reshape(count, lines)
        table -= np.bincount(old * lines + pixel_at, minlength=count * lines).reshape(count, lines)
        occupied = table > 0.5
        has = occupied.any(axis=1)
        first = np.argmax(occupied, axis=1)
        last = lines - 1 - np.argmax(occupied[:, ::-1], axis=1)
        boxes += [np.where(has, first, np.inf), np.where(has, last, -np.inf)]
    return area, sum_y, sum_x, *boxes


def _paint(
    expanded: npt.NDArray[Any], refined: RefinedPixels | None, values: npt.NDArray[Any]
) -> npt.NDArray[Any]:
    """Write the refined pixels' values into an expanded [H, W] map (in place if possible)."""
    if refined is None:
        return expanded
    out = np.ascontiguousarray(expanded)
    out.reshape(-1)[refined.index] = values
    return out


def cells_to_frame(
    cells: CellPanoptic,
    letterbox: Letterbox,
    labels: LabelSpace,
    *,
    stride: int = 4,
    upsample: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None,
    refined: RefinedPixels | None = None,
) -> FrameResult:
    """Map a stride-level result onto the camera's pixels.

    Args:
        cells: The stride-level result over the valid cells of ``letterbox``.
        letterbox: How the camera image was placed in the network input.
        labels: Label space (names, drivable classes).
        stride: Output stride.
        upsample: Nearest-neighbour cell map -> camera map with the letterbox's cell grid
            (default: NumPy on the host; the GPU pipeline passes a device version).
        refined: Pixels whose label bilinear class scores changed
            (:func:`panoptic_ros.fusion.refine.refine_pixels`); they replace the
            nearest-neighbour labels there, and boxes, areas and centroids count them.
            None: nearest neighbour everywhere (4x4-cell blocks).

    Returns:
        The frame result at camera resolution; instances that cover no camera pixel are
        removed and the rest renumbered consecutively (k-th instance = id k).
    """
    grid = _cell_grid(letterbox, stride)
    expand = upsample if upsample is not None else grid.upsample
    image_w = letterbox.image_hw[1]

    instances: list[Instance] = []
    renumber = np.zeros(len(cells.classes) + 1, dtype=np.uint16)
    if len(cells.classes):
        area, sum_y, sum_x, y0, y1, x0, x1 = _instance_stats(cells, grid, refined, image_w)
        for k in range(1, len(cells.classes) + 1):
            if area[k] <= 0:
                continue
            class_id = int(cells.classes[k - 1])
            index = len(instances) + 1
            renumber[k] = index
            instances.append(
                Instance(
                    index=index,
                    class_id=class_id,
                    class_name=labels.names[class_id],
                    score=float(cells.scores[k - 1]),
                    bbox_xyxy=(int(x0[k]), int(y0[k]), int(x1[k]), int(y1[k])),
                    area_px=int(area[k]),
                    centroid_yx=(float(sum_y[k] / area[k]), float(sum_x[k] / area[k])),
                )
            )
    # Everything is decided per cell and then upsampled: 16x fewer lookups than per pixel;
    # only the refined pixels (boundary cells) are then written one by one.
    semantic = np.asarray(expand(cells.semantic), dtype=np.uint8)
    semantic = _paint(semantic, refined, refined.semantic if refined else semantic)
    instance_ids = np.asarray(expand(renumber[cells.instances]), dtype=np.uint16)
    instance_ids = _paint(
        instance_ids, refined, renumber[refined.instances] if refined else instance_ids
    )
    drivable_lut = np.where(labels.drivable_table(), 255, 0).astype(np.uint8)
    drivable = np.asarray(expand(drivable_lut[cells.semantic]), dtype=np.uint8)
    drivable = _paint(drivable, refined, drivable_lut[refined.semantic] if refined else drivable)
    return FrameResult(
        semantic=semantic,
        instance_ids=instance_ids,
        drivable_mask=drivable,
        instances=tuple(instances),
    )


def fuse_panoptic(
    heads: HeadOutputs,
    letterbox: Letterbox,
    labels: LabelSpace,
    params: FusionParams,
    *,
    stride: int = 4,
) -> FrameResult:
    """Heads of one image -> panoptic result at the camera's resolution.

    Args:
        heads: Head outputs, batch size 1, for the network input ``letterbox`` produced.
        letterbox: The camera-to-network mapping used for this frame.
        labels: Label space with the drivable classes.
        params: Thresholds.
        stride: Output stride of the heads.

    Returns:
        Semantic map, instance ids, drivable mask and instances in camera pixels.
    """
    valid_hw = letterbox.valid_cells_hw(stride)
    cells = fuse_cells(heads, labels, params, valid_hw=valid_hw, stride=stride)
    refined = None
    if params.upsample == "bilinear":
        # Imported here: refine builds on this module's cell maps.
        from panoptic_ros.fusion.refine import refine_pixels

        logits = heads.semantic_logits[0, :, : valid_hw[0], : valid_hw[1]]
        refined = refine_pixels(logits, cells, letterbox, labels, stride=stride)
    return cells_to_frame(cells, letterbox, labels, stride=stride, refined=refined)
