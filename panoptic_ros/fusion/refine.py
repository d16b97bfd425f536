"""Masks that follow class edges at camera resolution: bilinear class scores on boundary cells.

The stride-4 fusion decides one label per cell; expanded by nearest neighbour, every edge is
a staircase of cell blocks. Here the class scores are interpolated bilinearly to the camera's
pixels (as Panoptic-DeepLab and EfficientPS upsample their logits before the argmax), but
only where it can change anything:

* A cell whose 3x3 neighbourhood has one argmax class keeps it on all its pixels: a pixel's
  interpolated scores are a convex blend of cells in that neighbourhood, and a class that
  beats every other in each blended vector beats it in the blend. Only *boundary cells*
  (more than one class around them) are refined, so the cost follows the edges' length,
  not the image's area.
* Cells whose 3x3 neighbourhood holds a non-finite logit are never refined (an interpolated
  NaN or inf has no argmax): they keep the nearest-neighbour labels.

How (host): the camera rows that hold boundary cells are resized per class with
``cv2.resize`` (vector code; only the classes :func:`possible_winners` allows in some
boundary cell), and the running argmax kept in uint8. Only the pixels whose class then
differs from their cell's are labelled and listed (:class:`RefinedPixels`); the frame result
moves their counts between instances instead of recounting. Scoring only the boundary
cells' pixels one by one in NumPy was measured about ten times slower on a real frame.
The device twin (:func:`panoptic_ros.fusion.torch_fusion.refine_pixels_torch`) interpolates
with ``F.interpolate`` and shares :func:`refined_from_dense`.

Geometry (the letterbox, as :mod:`panoptic_ros.geometry`): cell ``i`` is centred on network
pixel ``stride * i + (stride - 1) / 2``, so camera row ``y`` sits at cell coordinate
``u = (y + 0.5) * ratio_y / stride - 0.5``, clamped to the valid cells (edge values repeat,
``align_corners=False`` as in ``F.interpolate`` and ``cv2.resize``). The blend is
``(1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)`` in float32.

Labels of a refined pixel, from its interpolated argmax class ``r`` and the cell maps of
:func:`panoptic_ros.fusion.fuse_cells`:

* ``r`` is stuff: ``r`` if some fused cell still holds ``r`` (else void: the class was
  dropped as too small, or no cell has it), no instance.
* ``r`` is a thing: the fused label and instance of the nearest of the pixel's four
  interpolation cells whose own argmax is a thing (its containing cell first, then by
  distance to the cell centres, ties in the order top-left, top-right, bottom-left,
  bottom-right); void if none of the four is. So instance masks follow the refined
  thing/stuff edge and keep their cell-level identity.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.fusion.reference import VOID, CellPanoptic, _argmax_classes
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import LabelSpace

__all__ = [
    "BilinearCoords",
    "PixelCorners",
    "RefinedPixels",
    "bilinear_coords",
    "boundary_cells",
    "dense_classes",
    "edge_rows",
    "finite_cells",
    "label_refined_pixels",
    "pixel_corners",
    "possible_winners",
    "refine_pixels",
    "refined_from_dense",
]


@dataclass(frozen=True, slots=True)
class RefinedPixels:
    """Camera pixels whose labels the bilinear refinement changed (all else stays nearest).

    Attributes:
        boundary: [h, w] bool over the valid cells: the cells that were refined.
        index: [P] int64 flat camera pixel index ``y * W + x``, ascending.
        semantic: [P] uint8 class, 255 void.
        instances: [P] int32 cell-level instance id (k-th instance of the
            :class:`~panoptic_ros.fusion.CellPanoptic`), 0 none.
        previous: [P] int32 the instance id the nearest-neighbour map gives these pixels
            (their containing cell's), so counts can be moved rather than recounted.
    """

    boundary: npt.NDArray[np.bool_]
    index: npt.NDArray[np.int64]
    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    previous: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class BilinearCoords:
    """Per camera row and column: the two interpolation cells and the weight of the second.

    Attributes:
        row0, row1: [H] int64 upper and lower cell row (equal at the clamped edges).
        weight_y: [H] float32 weight of ``row1``.
        col0, col1: [W] int64 left and right cell column.
        weight_x: [W] float32 weight of ``col1``.
        rows, cols: [H], [W] int64 containing cell (the nearest-neighbour grid).
    """

    row0: npt.NDArray[np.int64]
    row1: npt.NDArray[np.int64]
    weight_y: npt.NDArray[np.float32]
    col0: npt.NDArray[np.int64]
    col1: npt.NDArray[np.int64]
    weight_x: npt.NDArray[np.float32]
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]


def _axis_coords(
    size: int, ratio: float, cells: int, stride: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Interpolation cells and weights along one axis of ``size`` camera pixels."""
    position = (np.arange(size, dtype=np.float64) + 0.5) * ratio / stride - 0.5
    position = np.clip(position, 0.0, cells - 1)
    first = np.minimum(np.floor(position).astype(np.int64), cells - 1)
    second = np.minimum(first + 1, cells - 1)
    return first, second, (position - first).astype(np.float32)


@functools.lru_cache(maxsize=16)
def bilinear_coords(letterbox: Letterbox, stride: int = 4) -> BilinearCoords:
    """The interpolation cells of every camera row and column (cached per camera size)."""
    ratio_y, ratio_x = letterbox.ratio_yx
    cells_h, cells_w = letterbox.valid_cells_hw(stride)
    row0, row1, weight_y = _axis_coords(letterbox.image_hw[0], ratio_y, cells_h, stride)
    col0, col1, weight_x = _axis_coords(letterbox.image_hw[1], ratio_x, cells_w, stride)
    grid = letterbox.cell_grid(stride)
    return BilinearCoords(row0, row1, weight_y, col0, col1, weight_x, grid.rows, grid.cols)


def boundary_cells(
    raw: npt.NDArray[np.int64], finite: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Cells whose 3x3 neighbourhood (edges repeated) has more than one class, all finite.

    Args:
        raw: [h, w] argmax class per cell.
        finite: [h, w] True where every logit of the cell is finite.

    Returns:
        [h, w] bool.
    """
    padded = np.pad(raw, 1, mode="edge")
    solid = np.pad(finite, 1, mode="edge")
    h, w = raw.shape
    mixed = np.zeros((h, w), dtype=bool)
    all_finite = finite.copy()
    for dy in range(3):
        for dx in range(3):
            mixed |= padded[dy : dy + h, dx : dx + w] != raw
            all_finite &= solid[dy : dy + h, dx : dx + w]
    return mixed & all_finite


@dataclass(frozen=True, slots=True)
class PixelCorners:
    """The four interpolation cells of each refined pixel, flat over the [h, w] cells.

    Attributes:
        corners: [4, P] int64 flat cell index (top-left, top-right, bottom-left,
            bottom-right).
        weight_y: [P] float32 weight of the bottom row.
        weight_x: [P] float32 weight of the right column.
        containing: [P] int64 flat index of the cell that holds the pixel's centre.
    """

    corners: npt.NDArray[np.int64]
    weight_y: npt.NDArray[np.float32]
    weight_x: npt.NDArray[np.float32]
    containing: npt.NDArray[np.int64]


def pixel_corners(
    y: npt.NDArray[np.int64], x: npt.NDArray[np.int64], coords: BilinearCoords, cells_w: int
) -> PixelCorners:
    """The interpolation cells and weights of the camera pixels (y, x)."""
    top, bottom = coords.row0[y] * cells_w, coords.row1[y] * cells_w
    left, right = coords.col0[x], coords.col1[x]
    return PixelCorners(
        np.stack([top + left, top + right, bottom + left, bottom + right]),
        coords.weight_y[y],
        coords.weight_x[x],
        coords.rows[y] * cells_w + coords.cols[x],
    )


def possible_winners(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """Per cell, the classes that can win an interpolated pixel inside it (a safe superset).

    A pixel's scores blend cells of its containing cell's 3x3 neighbourhood, so class ``j``
    scores at least its minimum there and the winner at least the largest such minimum; a
    class whose maximum there is below that never wins in that cell.

    Args:
        logits: [C, h, w] float32 class scores (finite around the cells that matter).

    Returns:
        [C, h, w] bool.
    """
    kernel = np.ones((3, 3), np.uint8)
    # The default border is neutral for max and min: only the image's cells count.
    highest = np.stack([cv2.dilate(plane, kernel) for plane in logits])
    lowest = np.stack([cv2.erode(plane, kernel) for plane in logits])
    return highest >= lowest.max(axis=0)


def dense_classes(
    logits: npt.NDArray[np.float32],
    letterbox: Letterbox,
    stride: int = 4,
    *,
    rows: tuple[int, int] | None = None,
    only: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.uint8]:
    """Argmax of the class scores resized to camera pixels (``cv2.resize`` per class).

    The same mapping as :func:`bilinear_coords`: OpenCV keeps a given ``fx``/``fy`` as the
    exact scale, and the extra rows and columns it makes past the image are cut off.

    Args:
        logits: [C, h, w] float32 class scores of the valid cells (C-contiguous planes).
        letterbox: The camera-to-network mapping.
        stride: Output stride.
        rows: Camera rows [first, stop) wanted (default all); the others are not computed.
        only: Class ids to compare, ascending (default all): classes that cannot win
            (:func:`possible_winners`) need no resize.

    Returns:
        [stop - first, W] uint8 class (ties -> lowest index).
    """
    ratio_y, ratio_x = letterbox.ratio_yx
    height, width = letterbox.image_hw
    first, stop = rows if rows is not None else (0, height)
    class_ids = range(len(logits)) if only is None else [int(c) for c in only]
    best: npt.NDArray[np.float32] | None = None
    classes = np.zeros((stop - first, width), dtype=np.uint8)
    for class_id in class_ids:
        resized = cv2.resize(
            logits[class_id],
            (0, 0),
            fx=stride / ratio_x,
            fy=stride / ratio_y,
            interpolation=cv2.INTER_LINEAR,
        )[first:stop, :width]
        if best is None:
            best = np.ascontiguousarray(resized)
            classes[...] = class_id
            continue
        # OpenCV's vector kernels (several times NumPy's masked writes). Ids rise through
        # the loop, so "class_id where better" is max(classes, better & class_id); ">"
        # keeps the lowest index on ties.
        better = cv2.compare(resized, best, cv2.CMP_GT)  # 255 where better, else 0
        cv2.max(classes, cv2.bitwise_and(better, class_id), dst=classes)
        cv2.max(best, resized, dst=best)
    return classes


def label_refined_pixels(
    classes: npt.NDArray[np.uint8],
    y: npt.NDArray[np.int64],
    x: npt.NDArray[np.int64],
    coords: BilinearCoords,
    raw: npt.NDArray[np.int64],
    cells: CellPanoptic,
    labels: LabelSpace,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Turn the interpolated classes of refined pixels into fused labels (module rules).

    Args:
        classes: [P] uint8 interpolated argmax class per pixel.
        y: [P] int64 camera rows of the pixels.
        x: [P] int64 camera columns.
        coords: The letterbox's interpolation coordinates.
        raw: [h, w] int64 argmax class per cell (before fusion).
        cells: The fused cell maps.
        labels: Label space (thing flags).

    Returns:
        ([P] uint8 class, 255 void; [P] int32 cell-level instance id, 0 none).
    """
    cells_w = raw.shape[1]
    is_thing = labels.is_thing_table()
    fused_semantic = cells.semantic.reshape(-1)
    fused_instances = cells.instances.reshape(-1)
    containing = coords.rows[y] * cells_w + coords.cols[x]
    # Where the pixel's class is its containing cell's own, the rules give that cell's
    # labels (the nearest-neighbour answer); only the others need the rules.
    semantic = fused_semantic[containing]
    instances = fused_instances[containing].astype(np.int32)
    changed = np.flatnonzero(classes != raw.reshape(-1)[containing])
    new_classes = classes[changed].astype(np.int64)
    present = np.bincount(fused_semantic, minlength=256) > 0
    stuff_lut = np.where(present, np.arange(256), VOID).astype(np.uint8)
    semantic[changed] = stuff_lut[new_classes]
    instances[changed] = 0

    thing = changed[is_thing[new_classes]]
    if len(thing):
        pixels = pixel_corners(y[thing], x[thing], coords, cells_w)
        raw_thing = is_thing[raw.reshape(-1)]
        fy, fx = pixels.weight_y, pixels.weight_x
        gy, gx = np.float32(1) - fy, np.float32(1) - fx
        distances = np.stack(
            [fy * fy + fx * fx, fy * fy + gx * gx, gy * gy + fx * fx, gy * gy + gx * gx]
        )  # [4, T] squared distance to each corner cell's centre, in cells
        is_candidate = raw_thing[pixels.corners]
        distances[~is_candidate] = np.inf
        # The containing cell wins whenever it is a thing (it is the nearest, ties included).
        distances[(pixels.corners == pixels.containing) & is_candidate] = -1.0
        choice = np.argmin(distances, axis=0)
        columns = np.arange(len(thing))
        chosen = pixels.corners[choice, columns]
        found = np.isfinite(distances[choice, columns])
        semantic[thing] = np.where(found, fused_semantic[chosen], VOID)
        instances[thing] = np.where(found, fused_instances[chosen], 0)
    return semantic, instances


def finite_cells(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """[h, w] True where every class score of the [C, h, w] logits is finite."""
    finite = np.ones(logits.shape[1:], dtype=bool)
    for plane in logits:
        finite &= np.isfinite(plane)
    return finite


def edge_rows(boundary: npt.NDArray[np.bool_], coords: BilinearCoords) -> tuple[int, int]:
    """Camera rows [first, stop) that hold a boundary cell's pixels ((0, 0) if none)."""
    rows = np.flatnonzero(boundary.any(axis=1)[coords.rows])
    return (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 0)


def refine_pixels(
    logits: npt.NDArray[np.float32],
    cells: CellPanoptic,
    letterbox: Letterbox,
    labels: LabelSpace,
    *,
    stride: int = 4,
) -> RefinedPixels:
    """Bilinear refinement of the boundary cells' pixels (NumPy and OpenCV).

    Args:
        logits: [C, h, w] float32 class scores of the valid cells (the ones ``cells``
            covers; a strided view is fine).
        cells: The fused cell maps of the same cells.
        letterbox: The camera-to-network mapping.
        labels: Label space (thing flags).
        stride: Output stride.

    Returns:
        The refined pixels; apply them with
        :func:`panoptic_ros.fusion.cells_to_frame` (``refined=``).
    """
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    raw, _ = _argmax_classes(logits)
    boundary = boundary_cells(raw, finite_cells(logits))
    first, stop = edge_rows(boundary, bilinear_coords(letterbox, stride))
    dense = np.zeros((0, letterbox.image_hw[1]), dtype=np.uint8)
    if stop > first:
        only = np.flatnonzero(possible_winners(logits)[:, boundary].any(axis=1))
        dense = dense_classes(logits, letterbox, stride, rows=(first, stop), only=only)
    return refined_from_dense(dense, first, boundary, raw, cells, letterbox, labels, stride)


def refined_from_dense(
    dense: npt.NDArray[np.uint8],
    first: int,
    boundary: npt.NDArray[np.bool_],
    raw: npt.NDArray[np.int64],
    cells: CellPanoptic,
    letterbox: Letterbox,
    labels: LabelSpace,
    stride: int = 4,
) -> RefinedPixels:
    """Label the pixels whose interpolated class differs from their cell's (every twin).

    Args:
        dense: [R, W] uint8 interpolated argmax class of camera rows ``first`` to
            ``first + R`` (at least those of :func:`edge_rows`).
        first: Camera row of ``dense[0]``.
        boundary: [h, w] bool boundary cells.
        raw: [h, w] int64 argmax class per cell.
        cells: The fused cell maps.
        letterbox: The camera-to-network mapping.
        labels: Label space.
        stride: Output stride.

    Returns:
        The refined pixels.
    """
    coords = bilinear_coords(letterbox, stride)
    band = coords.rows[first : first + len(dense)]
    # The nearest-neighbour class map of the band, and where a boundary cell holds the pixel.
    nearest = raw.astype(np.uint8)[:, coords.cols][band]
    on_edge = boundary[:, coords.cols][band]
    local_y, x = np.nonzero((dense != nearest) & on_edge)
    y = local_y + first
    classes = dense[local_y, x]
    semantic, instances = label_refined_pixels(classes, y, x, coords, raw, cells, labels)
    previous = cells.instances[coords.rows[y], coords.cols[x]].astype(np.int32)
    index = y.astype(np.int64) * letterbox.image_hw[1] + x
    return RefinedPixels(boundary, index, semantic, instances, previous)
