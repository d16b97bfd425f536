"""Panoptic fusion on hand-built heads: instances, tie-breaks, thresholds, camera mapping."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from panoptic_ros.config import FusionConfig
from panoptic_ros.errors import ConfigError, ModelFileError, PanopticError
from panoptic_ros.fusion import VOID, FusionParams, cells_to_frame, fuse_cells, fuse_panoptic
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.results import HeadOutputs

LABELS = CITYSCAPES.with_drivable(["road"])
ROAD, SIDEWALK, PERSON, CAR = (LABELS.index(n) for n in ("road", "sidewalk", "person", "car"))
# The exact cell-block expectations below are those of the nearest-neighbour expansion.
NO_AREA_LIMITS = FusionParams(
    stuff_area_threshold_px=0, thing_area_threshold_px=0, upsample="nearest"
)


def cell_location(i: float) -> float:
    return 4 * i + 1.5


def make_heads(
    semantic: npt.NDArray[np.int64],
    centers: list[tuple[int, int, float]],
    members: npt.NDArray[np.int64],
) -> HeadOutputs:
    """One-hot logits from a class map; Gaussian-free heatmap with the given peaks; offsets
    pointing every member cell exactly at its centre (members: index into centers + 1)."""
    h, w = semantic.shape
    logits = np.full((1, LABELS.num_classes, h, w), -5.0, np.float32)
    for c in range(LABELS.num_classes):
        logits[0, c][semantic == c] = 5.0
    heatmap = np.zeros((1, 1, h, w), np.float32)
    offsets = np.zeros((1, 2, h, w), np.float32)
    for index, (cy, cx, value) in enumerate(centers, start=1):
        heatmap[0, 0, cy, cx] = value
        ys, xs = np.nonzero(members == index)
        offsets[0, 0, ys, xs] = cell_location(cy) - cell_location(ys)
        offsets[0, 1, ys, xs] = cell_location(cx) - cell_location(xs)
    return HeadOutputs(logits, heatmap, offsets)


def three_objects() -> tuple[HeadOutputs, npt.NDArray[np.int64]]:
    """16x32 cells: road bottom, sidewalk top; two cars and a person."""
    semantic = np.full((16, 32), SIDEWALK, np.int64)
    semantic[8:] = ROAD
    members = np.zeros((16, 32), np.int64)
    members[4:10, 2:10] = 1  # car A: 48 cells, peak 0.9
    members[6:12, 20:30] = 2  # car B: 60 cells, peak 0.6
    members[2:8, 14:17] = 3  # person: 18 cells, peak 0.8
    semantic[members == 1] = CAR
    semantic[members == 2] = CAR
    semantic[members == 3] = PERSON
    heads = make_heads(semantic, [(6, 5, 0.9), (8, 25, 0.6), (4, 15, 0.8)], members)
    return heads, members


def test_three_objects_identity_letterbox() -> None:
    heads, members = three_objects()
    box = Letterbox.fit((64, 128), (64, 128))
    result = fuse_panoptic(heads, box, LABELS, NO_AREA_LIMITS)
    assert [i.class_name for i in result.instances] == ["car", "person", "car"]
    assert [i.index for i in result.instances] == [1, 2, 3]
    # Scores: peak x mean softmax probability of the class (one-hot logits, 19 classes).
    probability = np.exp(5.0) / (np.exp(5.0) + 18 * np.exp(-5.0))
    assert [i.score for i in result.instances] == pytest.approx(
        [0.9 * probability, 0.8 * probability, 0.6 * probability], rel=1e-5
    )
    # Cells (rows r0..r1, cols c0..c1) cover camera pixels y 4*r0..4*r1+3, x 4*c0..4*c1+3.
    assert [i.bbox_xyxy for i in result.instances] == [
        (8, 16, 39, 39),
        (56, 8, 67, 31),
        (80, 24, 119, 47),
    ]
    assert [i.area_px for i in result.instances] == [48 * 16, 18 * 16, 60 * 16]
    assert [i.centroid_yx for i in result.instances] == [
        pytest.approx((27.5, 23.5)),
        pytest.approx((19.5, 61.5)),
        pytest.approx((35.5, 99.5)),
    ]
    assert all(i.track_id == 0 for i in result.instances)
    assert result.semantic.dtype == np.uint8 and result.instance_ids.dtype == np.uint16
    # The instance map upsampled: every pixel of car A's cells carries 1.
    expected_ids = np.zeros((16, 32), np.uint16)
    expected_ids[members == 1] = 1
    expected_ids[members == 3] = 2
    expected_ids[members == 2] = 3
    assert np.array_equal(result.instance_ids, np.kron(expected_ids, np.ones((4, 4), np.uint16)))
    assert np.array_equal(result.drivable_mask > 0, result.semantic == ROAD)
    assert result.drivable_mask.dtype == np.uint8
    assert set(np.unique(result.drivable_mask)) == {0, 255}


def test_scaled_letterbox_aligns_every_camera_pixel() -> None:
    heads, _ = three_objects()
    box = Letterbox.fit((96, 200), (64, 128))  # scale 0.64; rows beyond 61 px are padding
    result = fuse_panoptic(heads, box, LABELS, NO_AREA_LIMITS)
    grid = box.cell_grid(4)
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS, valid_hw=box.valid_cells_hw(4))
    # Every camera pixel takes the value of the cell covering its centre.
    assert np.array_equal(result.semantic, cells.semantic[grid.rows][:, grid.cols])
    assert np.array_equal(result.instance_ids, cells.instances[grid.rows][:, grid.cols])
    assert len(result.instances) == 3
    for instance in result.instances:
        ys, xs = np.nonzero(result.instance_ids == instance.index)
        assert instance.area_px == len(ys)
        assert instance.bbox_xyxy == (xs.min(), ys.min(), xs.max(), ys.max())
        assert instance.centroid_yx == pytest.approx((ys.mean(), xs.mean()))
    assert result.semantic.shape == (96, 200)


def test_equal_peaks_and_equidistant_cells_break_ties_by_index() -> None:
    semantic = np.full((8, 16), CAR, np.int64)
    heads = make_heads(semantic, [(4, 3, 0.7), (4, 11, 0.7)], np.zeros((8, 16), np.int64))
    # No offsets: every cell votes for its own location; column 7 is 4 cells from the
    # first peak and 4 from the second: equidistant, so it joins the lower candidate.
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert cells.centers_yx.tolist() == [[4, 3], [4, 11]]
    assert np.all(cells.instances[:, :8] == 1)
    assert np.all(cells.instances[:, 8:] == 2)


def test_argmax_and_majority_ties_go_to_the_lowest_class() -> None:
    semantic = np.full((8, 8), ROAD, np.int64)
    semantic[2:6, 2:6] = CAR
    members = np.zeros((8, 8), np.int64)
    members[2:6, 2:6] = 1
    heads = make_heads(semantic, [(3, 3, 0.9)], members)
    heads.semantic_logits[0, SIDEWALK, 0, 0] = 5.0  # road (0) and sidewalk (1) tie
    semantic_votes = heads.semantic_logits[0]
    semantic_votes[:, 2:4, 2:6] = -5.0
    semantic_votes[PERSON, 2:4, 2:6] = 5.0  # 8 person cells and 8 car cells: a tie
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert cells.semantic[0, 0] == ROAD
    assert cells.classes.tolist() == [min(PERSON, CAR)]
    assert np.all(cells.semantic[2:6, 2:6] == min(PERSON, CAR))


def test_nms_top_k_and_threshold() -> None:
    semantic = np.full((8, 16), CAR, np.int64)
    peaks = [(2, 2, 0.9), (2, 4, 0.8), (6, 12, 0.5), (6, 6, 0.05)]
    heads = make_heads(semantic, peaks, np.zeros((8, 16), np.int64))
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    # (2,4) lies within the 7x7 window of the stronger (2,2); (6,6) is below threshold.
    assert cells.centers_yx.tolist() == [[2, 2], [6, 12]]
    top1 = fuse_cells(heads, LABELS, FusionParams(top_k=1, stuff_area_threshold_px=0))
    assert top1.centers_yx.tolist() == [[2, 2]]
    assert np.all(top1.instances == 1)
    narrow = fuse_cells(heads, LABELS, FusionParams(nms_kernel=1, thing_area_threshold_px=0))
    assert len(narrow.classes) == 3


def test_majority_vote_sets_the_instance_class() -> None:
    semantic = np.full((8, 8), ROAD, np.int64)
    members = np.zeros((8, 8), np.int64)
    members[2:6, 2:6] = 1
    semantic[2:6, 2:6] = CAR
    semantic[2, 2:5] = PERSON  # 3 of 16 cells disagree
    heads = make_heads(semantic, [(3, 3, 0.9)], members)
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert cells.classes.tolist() == [CAR]
    assert np.all(cells.semantic[2:6, 2:6] == CAR)


def test_area_and_score_thresholds_make_void() -> None:
    heads, members = three_objects()
    small_things = FusionParams(thing_area_threshold_px=20 * 16, stuff_area_threshold_px=0)
    cells = fuse_cells(heads, LABELS, small_things)
    assert cells.classes.tolist() == [CAR, CAR]  # the 18-cell person is dropped
    assert np.all(cells.semantic[members == 3] == VOID)
    assert np.all(cells.instances[members == 3] == 0)
    weak = fuse_cells(heads, LABELS, FusionParams(score_threshold=0.7, stuff_area_threshold_px=0))
    assert len(weak.classes) == 2
    # Sidewalk covers 8*32 - 48 cells... road 8*32 - ... : a huge stuff threshold voids both.
    no_stuff = fuse_cells(heads, LABELS, FusionParams(stuff_area_threshold_px=10**6))
    assert not np.isin(no_stuff.semantic, [ROAD, SIDEWALK]).any()


def test_things_without_centres_become_void() -> None:
    semantic = np.full((8, 8), CAR, np.int64)
    semantic[:, :2] = ROAD
    heads = make_heads(semantic, [], np.zeros((8, 8), np.int64))
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert len(cells.classes) == 0
    assert np.all(cells.semantic[:, 2:] == VOID)
    assert np.all(cells.semantic[:, :2] == ROAD)


def test_instances_without_camera_pixels_are_removed() -> None:
    # An 8x16 camera in a 64x128 input: 8 network pixels per camera pixel, so only odd cell
    # rows and columns hold a camera pixel's centre.
    semantic = np.full((16, 32), ROAD, np.int64)
    members = np.zeros((16, 32), np.int64)
    members[4, 4] = 1  # even row: no camera pixel
    members[8:12, 20:24] = 2
    semantic[members > 0] = CAR
    heads = make_heads(semantic, [(4, 4, 0.9), (9, 21, 0.8)], members)
    box = Letterbox.fit((8, 16), (64, 128))
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS, valid_hw=box.valid_cells_hw(4))
    assert len(cells.classes) == 2
    result = cells_to_frame(cells, box, LABELS)
    assert [i.index for i in result.instances] == [1]
    only = result.instances[0]
    assert only.score == pytest.approx(float(cells.scores[1]))
    ys, xs = np.nonzero(result.instance_ids == 1)
    assert only.area_px == len(ys) == 4
    assert only.bbox_xyxy == (xs.min(), ys.min(), xs.max(), ys.max()) == (10, 4, 11, 5)
    assert set(np.unique(result.instance_ids)) == {0, 1}


def test_bad_inputs_raise_project_errors() -> None:
    heads, _ = three_objects()
    double = HeadOutputs(
        *(
            np.concatenate([a, a])
            for a in (heads.semantic_logits, heads.center_heatmap, heads.offsets)
        )
    )
    with pytest.raises(PanopticError, match="batch size 2"):
        fuse_cells(double, LABELS, NO_AREA_LIMITS)
    few = HeadOutputs(heads.semantic_logits[:, :5], heads.center_heatmap, heads.offsets)
    with pytest.raises(ModelFileError, match="outputs 5 classes"):
        fuse_cells(few, LABELS, NO_AREA_LIMITS)
    with pytest.raises(ConfigError, match="nms_kernel=4"):
        FusionParams(nms_kernel=4)


def test_from_config_copies_every_threshold() -> None:
    config = FusionConfig(center_threshold=0.2, nms_kernel=5, top_k=7, score_threshold=0.1)
    params = FusionParams.from_config(config)
    assert (params.center_threshold, params.nms_kernel, params.top_k) == (0.2, 5, 7)
    assert params.score_threshold == 0.1
    assert params.thing_area_threshold_px == config.thing_area_threshold_px


def test_non_finite_heads_do_not_crash() -> None:
    heads, _ = three_objects()
    heads.semantic_logits[0, :, 0, 0] = np.nan
    heads.semantic_logits[0, ROAD, 10, 10] = np.nan
    heads.center_heatmap[0, 0, 6, 5] = np.nan  # car A's peak
    heads.offsets[0, :, 6, 25] = np.inf
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert cells.semantic[0, 0] == VOID
    assert cells.semantic[10, 10] != ROAD
    assert len(cells.classes) == 2  # car A has no centre any more
    assert cells.semantic[6, 25] == VOID  # its offset is infinite: it joins no centre
    result = cells_to_frame(cells, Letterbox.fit((64, 128), (64, 128)), LABELS)
    assert result.semantic.shape == (64, 128)
    # A +inf logit wins its cell but has no finite softmax: its instance is dropped.
    heads, members = three_objects()
    heads.semantic_logits[0, CAR, 8, 25] = np.inf
    cells = fuse_cells(heads, LABELS, NO_AREA_LIMITS)
    assert cells.classes.tolist() == [CAR, PERSON]
    assert np.all(cells.semantic[members == 2] == VOID)
    # Nothing finite at all: everything void, no instance.
    heads.semantic_logits[...] = np.nan
    heads.center_heatmap[...] = np.nan
    heads.offsets[...] = np.nan
    empty = fuse_cells(heads, LABELS, FusionParams())
    assert len(empty.classes) == 0 and np.all(empty.semantic == VOID)


@pytest.mark.benchmark(group="fusion")
@pytest.mark.parametrize("cells_hw", [(128, 256), (256, 512)])
def test_bench_fusion(benchmark, cells_hw: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    h, w = cells_hw
    semantic = np.full((h, w), ROAD, np.int64)
    members = np.zeros((h, w), np.int64)
    centers = []
    for index in range(1, 21):
        y, x = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
        members[y - 6 : y + 6, x - 6 : x + 6] = index
        semantic[y - 6 : y + 6, x - 6 : x + 6] = CAR
        centers.append((y, x, 0.5 + index / 100))
    heads = make_heads(semantic, centers, members)
    box = Letterbox.fit((1080, 1920), (h * 4, w * 4))
    result = benchmark(fuse_panoptic, heads, box, LABELS, FusionParams())
    assert len(result.instances) >= 10
