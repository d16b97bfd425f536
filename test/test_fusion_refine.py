"""Bilinear edge refinement: masks follow class edges at camera resolution, exactly counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from panoptic_ros.backends.base import BackendBase
from panoptic_ros.config import load_config
from panoptic_ros.errors import ConfigError
from panoptic_ros.fusion import FusionParams, fuse_cells, fuse_panoptic
from panoptic_ros.fusion.refine import (
    bilinear_coords,
    boundary_cells,
    dense_classes,
    finite_cells,
    possible_winners,
    refine_pixels,
)
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.results import FrameResult, HeadOutputs

LABELS = CITYSCAPES.with_drivable(["road"])
ROAD, VEGETATION, CAR = (LABELS.index(n) for n in ("road", "vegetation", "car"))
NO_LIMITS = {"stuff_area_threshold_px": 0, "thing_area_threshold_px": 0}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
#: 300x600 camera into a 128x256 network: 32x64 cells, about 9.4 camera pixels per cell.
CAMERA_HW, NETWORK_HW = (300, 600), (128, 256)


def camera_grid(letterbox: Letterbox, stride: int = 4) -> tuple[npt.NDArray[Any], ...]:
    """Camera (y, x) of every cell centre of the letterbox's valid cells, [h, w] float64."""
    rows, cols = letterbox.valid_cells_hw(stride)
    ys = np.arange(rows) * stride + (stride - 1) / 2
    xs = np.arange(cols) * stride + (stride - 1) / 2
    net_y, net_x = np.meshgrid(ys, xs, indexing="ij")
    ratio_y, ratio_x = letterbox.ratio_yx
    return (net_y + 0.5) / ratio_y - 0.5, (net_x + 0.5) / ratio_x - 0.5


def field_heads(
    letterbox: Letterbox, margin: Any, inside: int, outside: int, *, thing_centre: Any = None
) -> HeadOutputs:
    """Logits from a signed distance in camera pixels: ``inside`` where margin > 0.

    ``margin(y, x)`` is evaluated at the cell centres (camera coordinates). With
    ``thing_centre`` (camera y, x), ``inside`` is a thing with one centre there and offsets
    pointing at it from every cell.
    """
    h, w = letterbox.network_hw[0] // 4, letterbox.network_hw[1] // 4
    cam_y, cam_x = camera_grid(letterbox)
    rows, cols = cam_y.shape
    logits = np.full((1, LABELS.num_classes, h, w), -20.0, np.float32)
    distance = np.zeros((h, w), np.float32)
    distance[:rows, :cols] = margin(cam_y, cam_x) / 4  # a few logits per cell
    logits[0, inside] = distance
    logits[0, outside] = -distance
    heatmap = np.zeros((1, 1, h, w), np.float32)
    offsets = np.zeros((1, 2, h, w), np.float32)
    if thing_centre is not None:
        ratio_y, ratio_x = letterbox.ratio_yx
        cy = round(((thing_centre[0] + 0.5) * ratio_y - 2) / 4)
        cx = round(((thing_centre[1] + 0.5) * ratio_x - 2) / 4)
        heatmap[0, 0, cy, cx] = 1.0
        grid_y, grid_x = np.mgrid[0:h, 0:w]
        offsets[0, 0] = (cy - grid_y) * 4.0
        offsets[0, 1] = (cx - grid_x) * 4.0
    return HeadOutputs(logits, heatmap, offsets)


def exact_labels(shape: tuple[int, int], margin: Any, inside: int, outside: int) -> Any:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return np.where(margin(ys, xs) > 0, inside, outside)


def diagonal(y: Any, x: Any) -> Any:
    return (y - 0.4 * x - 60.0) / np.hypot(1.0, 0.4)


def disc(y: Any, x: Any) -> Any:
    return 80.0 - np.hypot(y - 150.0, x - 310.0)


def check_result(result: FrameResult) -> None:
    """The FrameResult contract: k-th instance = id k, stats exact, things = instances."""
    assert int(result.instance_ids.max(initial=0)) == len(result.instances)
    is_thing = LABELS.is_thing_table()[result.semantic]
    np.testing.assert_array_equal(is_thing, result.instance_ids > 0)
    np.testing.assert_array_equal(
        result.drivable_mask, np.where(np.isin(result.semantic, LABELS.drivable), 255, 0)
    )
    for position, instance in enumerate(result.instances):
        assert instance.index == position + 1
        ys, xs = np.nonzero(result.instance_ids == instance.index)
        assert instance.area_px == len(ys) > 0
        assert instance.bbox_xyxy == (xs.min(), ys.min(), xs.max(), ys.max())
        assert instance.centroid_yx == pytest.approx((ys.mean(), xs.mean()))
        assert np.all(result.semantic[ys, xs] == instance.class_id)


@pytest.mark.parametrize(
    ("margin", "inside", "outside"),
    [(diagonal, ROAD, VEGETATION), (disc, ROAD, VEGETATION), (disc, CAR, ROAD)],
    ids=["diagonal-stuff", "disc-stuff", "disc-car"],
)
def test_bilinear_edges_are_much_closer_to_the_true_edge(
    margin: Any, inside: int, outside: int
) -> None:
    box = Letterbox.fit(CAMERA_HW, NETWORK_HW)
    thing = LABELS.classes[inside].is_thing
    heads = field_heads(box, margin, inside, outside, thing_centre=(150, 310) if thing else None)
    truth = exact_labels(CAMERA_HW, margin, inside, outside)
    errors = {}
    for mode in ("nearest", "bilinear"):
        result = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS, upsample=mode))
        check_result(result)
        errors[mode] = int(np.count_nonzero(result.semantic != truth))
        if thing:
            # One instance, and its mask is the refined thing region.
            assert [i.class_id for i in result.instances] == [inside]
            np.testing.assert_array_equal(result.instance_ids == 1, result.semantic == inside)
    # A staircase of ~9-pixel blocks against an edge within a pixel: many times fewer errors.
    assert errors["nearest"] > 1000, errors
    assert errors["bilinear"] * 10 < errors["nearest"], errors


def test_drivable_mask_follows_the_refined_road() -> None:
    box = Letterbox.fit(CAMERA_HW, NETWORK_HW)
    heads = field_heads(box, diagonal, ROAD, VEGETATION)
    result = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS))
    truth = exact_labels(CAMERA_HW, diagonal, 255, 0)
    assert np.mean(result.drivable_mask != truth) < 0.002


def two_cars() -> tuple[HeadOutputs, Letterbox]:
    """Two touching cars on a road, centres left and right, on a 64x128 cell grid."""
    box = Letterbox.fit((540, 960), (256, 512))
    h, w = 64, 128
    cam_y, cam_x = camera_grid(box)
    rows, cols = cam_y.shape
    logits = np.full((1, LABELS.num_classes, h, w), -20.0, np.float32)
    car = 60.0 - np.hypot((cam_y - 300.0) * 1.5, np.maximum(np.abs(cam_x - 480.0) - 200, 0))
    logits[0, CAR, :rows, :cols] = car / 4
    logits[0, ROAD, :rows, :cols] = -car / 4
    heatmap = np.zeros((1, 1, h, w), np.float32)
    centres = [(int(300 * 256 / 540 / 4), int(x * 256 / 540 / 4)) for x in (380, 580)]
    offsets = np.zeros((1, 2, h, w), np.float32)
    grid_y, grid_x = np.mgrid[0:h, 0:w]
    nearest = np.where(grid_x < (centres[0][1] + centres[1][1]) / 2, 0, 1)
    for index, (cy, cx) in enumerate(centres):
        heatmap[0, 0, cy, cx] = 0.9 - 0.1 * index
        offsets[0, 0][nearest == index] = ((cy - grid_y) * 4.0)[nearest == index]
        offsets[0, 1][nearest == index] = ((cx - grid_x) * 4.0)[nearest == index]
    return HeadOutputs(logits, heatmap, offsets), box


def test_instances_keep_their_cells_identity_and_order() -> None:
    heads, box = two_cars()
    nearest = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS, upsample="nearest"))
    refined = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS))
    check_result(refined)
    assert len(refined.instances) == len(nearest.instances) == 2
    for before, after in zip(nearest.instances, refined.instances, strict=True):
        assert (before.index, before.class_id, before.score) == (
            after.index,
            after.class_id,
            after.score,
        )
        # Only the edge moved: the object is where it was, within a cell.
        assert abs(before.area_px - after.area_px) < 0.1 * before.area_px
        assert np.allclose(before.centroid_yx, after.centroid_yx, atol=3)
    # Where the two cars touch, each pixel keeps the id its cell had.
    both = (nearest.instance_ids > 0) & (refined.instance_ids > 0)
    assert np.mean(nearest.instance_ids[both] == refined.instance_ids[both]) > 0.999


def test_only_boundary_cells_change() -> None:
    heads, box = two_cars()
    cells = fuse_cells(heads, LABELS, FusionParams(), valid_hw=box.valid_cells_hw(4))
    rows, cols = box.valid_cells_hw(4)
    logits = heads.semantic_logits[0, :, :rows, :cols]
    refined = refine_pixels(logits, cells, box, LABELS)
    nearest = fuse_panoptic(heads, box, LABELS, FusionParams(upsample="nearest"))
    result = fuse_panoptic(heads, box, LABELS, FusionParams())
    changed = np.flatnonzero(result.semantic.reshape(-1) != nearest.semantic.reshape(-1))
    assert len(changed) > 0
    assert np.all(np.isin(changed, refined.index))
    grid = box.cell_grid(4)
    in_boundary = refined.boundary[grid.rows][:, grid.cols]
    assert np.all(in_boundary.reshape(-1)[refined.index])
    assert in_boundary.mean() < 0.2  # smooth heads: few cells are on an edge
    # Only pixels whose class differs from their cell's are listed, with that cell's id.
    assert len(refined.index) < 0.5 * np.count_nonzero(in_boundary)
    y, x = np.divmod(refined.index, box.image_hw[1])
    np.testing.assert_array_equal(refined.previous, cells.instances[grid.rows[y], grid.cols[x]])


def bilinear_reference(logits: npt.NDArray[np.float32], box: Letterbox) -> npt.NDArray[Any]:
    """Independent per-pixel bilinear interpolation (float64) and argmax, all classes."""
    rows, cols = logits.shape[1:]
    ratio_y, ratio_x = box.ratio_yx
    u = np.clip((np.arange(box.image_hw[0]) + 0.5) * ratio_y / 4 - 0.5, 0, rows - 1)
    v = np.clip((np.arange(box.image_hw[1]) + 0.5) * ratio_x / 4 - 0.5, 0, cols - 1)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, rows - 1), np.minimum(v0 + 1, cols - 1)
    fy, fx = (u - u0)[:, None], (v - v0)[None, :]
    data = logits.astype(np.float64)
    top = data[:, u0][:, :, v0] * (1 - fx) + data[:, u0][:, :, v1] * fx
    bottom = data[:, u1][:, :, v0] * (1 - fx) + data[:, u1][:, :, v1] * fx
    return np.argmax(top * (1 - fy) + bottom * fy, axis=0)


@pytest.mark.parametrize(
    ("camera", "network"), [((300, 600), (128, 256)), ((97, 203), (64, 128)), ((8, 16), (64, 128))]
)
def test_dense_classes_follow_the_letterbox_mapping(
    camera: tuple[int, int], network: tuple[int, int]
) -> None:
    rng = np.random.default_rng(0)
    box = Letterbox.fit(camera, network)
    rows, cols = box.valid_cells_hw(4)
    logits = rng.normal(0, 3, (6, rows, cols)).astype(np.float32)
    dense = dense_classes(logits, box)
    reference = bilinear_reference(logits, box)
    assert dense.shape == camera
    assert np.mean(dense == reference) > 0.999  # float32 vs float64 near-ties only
    # Refined pixels only take classes possible_winners allows in their cell.
    raw = np.argmax(logits, axis=0)
    boundary = boundary_cells(raw, finite_cells(logits))
    coords = bilinear_coords(box, 4)
    y, x = np.nonzero(boundary[coords.rows][:, coords.cols])
    winners = possible_winners(logits)
    assert np.all(winners[dense[y, x], coords.rows[y], coords.cols[x]])
    assert winners.sum(axis=0).mean() < len(logits)  # it does rule classes out


def test_non_finite_cells_keep_nearest_labels() -> None:
    box = Letterbox.fit(CAMERA_HW, NETWORK_HW)
    heads = field_heads(box, diagonal, ROAD, VEGETATION)
    rows, cols = box.valid_cells_hw(4)
    boundary = boundary_cells(
        np.argmax(heads.semantic_logits[0, :, :rows, :cols], axis=0),
        finite_cells(heads.semantic_logits[0, :, :rows, :cols]),
    )
    by, bx = np.argwhere(boundary)[len(np.argwhere(boundary)) // 2]
    heads.semantic_logits[0, 3, by, bx] = np.nan
    nearest = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS, upsample="nearest"))
    result = fuse_panoptic(heads, box, LABELS, FusionParams(**NO_LIMITS))
    check_result(result)
    grid = box.cell_grid(4)
    near = np.zeros((rows, cols), bool)
    near[max(by - 1, 0) : by + 2, max(bx - 1, 0) : bx + 2] = True
    pixels = near[grid.rows][:, grid.cols]
    np.testing.assert_array_equal(result.semantic[pixels], nearest.semantic[pixels])
    assert np.any(result.semantic != nearest.semantic)  # elsewhere the edge is refined


def test_upsample_mode_is_checked() -> None:
    assert FusionParams().upsample == "bilinear"
    with pytest.raises(ConfigError, match="upsample='cubic' must be one of"):
        FusionParams(upsample="cubic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"fusion\.upsample='cubic' must be one of"):
        load_config(None, ["fusion.upsample=cubic"])
    config = load_config(None, ["fusion.upsample=nearest"])
    assert FusionParams.from_config(config.fusion).upsample == "nearest"


def realistic(seed: int, h: int = 64, w: int = 128) -> HeadOutputs:
    from test_fusion_torch import realistic_heads

    return realistic_heads(seed, h, w)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("seed", "camera"), [(0, (540, 960)), (1, (256, 512)), (2, (97, 203)), (3, (8, 16))]
)
def test_torch_refinement_equals_numpy(device: str, seed: int, camera: tuple[int, int]) -> None:
    torch = pytest.importorskip("torch")
    from panoptic_ros.fusion.reference import cells_to_frame
    from panoptic_ros.fusion.torch_fusion import refine_pixels_torch

    heads = realistic(seed)
    box = Letterbox.fit(camera, (256, 512))
    params = FusionParams(center_threshold=0.3, **NO_LIMITS)
    valid = box.valid_cells_hw(4)
    cells = fuse_cells(heads, LABELS, params, valid_hw=valid)
    reference = refine_pixels(
        heads.semantic_logits[0, :, : valid[0], : valid[1]], cells, box, LABELS
    )
    logits = torch.from_numpy(heads.semantic_logits).to(device)
    result = refine_pixels_torch(logits, cells, box, LABELS)
    np.testing.assert_array_equal(result.boundary, reference.boundary)
    np.testing.assert_array_equal(result.index, reference.index)
    assert len(reference.index) > 0
    # float32 roundings of the blend may differ on an exact near-tie, nowhere else.
    assert np.mean(result.semantic == reference.semantic) > 0.9999
    assert np.mean(result.instances == reference.instances) > 0.9999
    check_result(cells_to_frame(cells, box, LABELS, refined=result))


def test_pipeline_upsample_mode_reaches_the_output() -> None:
    from panoptic_ros.pipeline import PanopticPipeline

    class FieldBackend(BackendBase):
        name, device, model_path, input_hw = "field", "cpu", "field", NETWORK_HW
        box = Letterbox.fit(CAMERA_HW, NETWORK_HW)
        heads = field_heads(box, disc, ROAD, VEGETATION)

        def __init__(self) -> None:
            from panoptic_ros.contract import ModelMetadata

            self.metadata = ModelMetadata(labels=LABELS, input_hw=NETWORK_HW)

        def infer(self, images: Any) -> HeadOutputs:
            return self.heads

        def close(self) -> None:
            pass

    image = np.zeros((*CAMERA_HW, 3), np.uint8)
    truth = exact_labels(CAMERA_HW, disc, ROAD, VEGETATION)
    errors = {}
    for mode in ("nearest", "bilinear"):
        params = FusionParams(**NO_LIMITS, upsample=mode)  # type: ignore[arg-type]
        with PanopticPipeline(FieldBackend(), LABELS, params, gpu_fusion=False) as pipeline:  # type: ignore[arg-type]
            assert f"upsample={mode}" in pipeline.describe()
            errors[mode] = np.count_nonzero(pipeline.process(image).semantic != truth)
    assert errors["bilinear"] * 10 < errors["nearest"]
