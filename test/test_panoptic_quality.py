"""PQ/SQ/RQ equal panopticapi's pq_compute on generated cases that exercise every rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from official_tools import import_official_tool
from oracle import pq_single_image

from panoptic_ros.errors import EvaluationError
from panoptic_ros.evaluation.panoptic_quality import (
    PQStat,
    categories_from_labels,
    evaluate_maps,
    miou_from_confusion,
    segments_from_maps,
    semantic_confusion,
)
from panoptic_ros.labels import CITYSCAPES

panopticapi = import_official_tool("panopticapi.evaluation", "panopticapi-lite")
from PIL import Image  # noqa: E402

CATEGORIES = {
    1: {"id": 1, "name": "road", "isthing": 0},
    2: {"id": 2, "name": "sky", "isthing": 0},
    3: {"id": 3, "name": "car", "isthing": 1},
    4: {"id": 4, "name": "person", "isthing": 1},
}


def id2rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def segments(
    ids: np.ndarray, categories: dict[int, int], crowd: set[int] = frozenset()
) -> list[dict[str, Any]]:
    out = []
    for segment_id in np.unique(ids).tolist():
        if segment_id == 0:
            continue
        out.append(
            {
                "id": segment_id,
                "category_id": categories[segment_id],
                "iscrowd": int(segment_id in crowd),
                "area": int((ids == segment_id).sum()),
            }
        )
    return out


def official(
    tmp_path: Path, cases: list[tuple[np.ndarray, list, np.ndarray, list]]
) -> tuple[dict[str, Any], Any]:
    """Run panopticapi's pq_compute_single_core on the cases written as PNG + segments."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(exist_ok=True)
    pred_dir.mkdir(exist_ok=True)
    pairs = []
    for index, (gt_ids, gt_segs, pred_ids, pred_segs) in enumerate(cases):
        name = f"{index}.png"
        Image.fromarray(id2rgb(gt_ids)).save(gt_dir / name)
        Image.fromarray(id2rgb(pred_ids)).save(pred_dir / name)
        pairs.append(
            (
                {"image_id": index, "file_name": name, "segments_info": gt_segs},
                {
                    "image_id": index,
                    "file_name": name,
                    "segments_info": [
                        {k: v for k, v in s.items() if k != "area"} for s in pred_segs
                    ],
                },
            )
        )
    stat = panopticapi.pq_compute_single_core(0, pairs, str(gt_dir), str(pred_dir), CATEGORIES)
    results = {}
    for name, isthing in (("all", None), ("things", True), ("stuff", False)):
        results[name], per_class = stat.pq_average(CATEGORIES, isthing=isthing)
        if name == "all":
            results["per_class"] = per_class
    return results, stat


def ours(cases: list[tuple[np.ndarray, list, np.ndarray, list]]) -> Any:
    stat = PQStat()
    for gt_ids, gt_segs, pred_ids, pred_segs in cases:
        stat += pq_single_image(gt_ids, gt_segs, pred_ids, pred_segs, CATEGORIES)
    return stat.result(CATEGORIES)


def assert_same(tmp_path: Path, cases: list[tuple[np.ndarray, list, np.ndarray, list]]) -> Any:
    """Our result equals the official one to 1e-9, per category counts exactly."""
    expected, official_stat = official(tmp_path, cases)
    got = ours(cases)
    for name in ("all", "things", "stuff"):
        for key in ("pq", "sq", "rq", "n"):
            assert got.summary[name][key] == pytest.approx(expected[name][key], abs=1e-9), (
                name,
                key,
            )
    for category, values in expected["per_class"].items():
        name = CATEGORIES[category]["name"]
        counts = official_stat.pq_per_cat[category]
        if counts.tp + counts.fp + counts.fn == 0:
            assert name not in got.per_class
            continue
        quality = got.per_class[name]
        assert (quality.tp, quality.fp, quality.fn) == (counts.tp, counts.fp, counts.fn), name
        for key in ("pq", "sq", "rq"):
            assert getattr(quality, key) == pytest.approx(values[key], abs=1e-9), (name, key)
    return got


def base_case() -> tuple[np.ndarray, dict[int, int]]:
    gt = np.zeros((40, 60), np.int64)
    gt[:20] = 1000  # sky
    gt[20:] = 2000  # road
    gt[22:32, 5:20] = 3001  # car
    gt[25:35, 30:36] = 4001  # person
    return gt, {0: 0, 1000: 2, 2000: 1, 3001: 3, 4001: 4}


def test_perfect_prediction(tmp_path: Path) -> None:
    gt, cats = base_case()
    assert_same(tmp_path, [(gt, segments(gt, cats), gt.copy(), segments(gt, cats))])
    assert (
        ours([(gt, segments(gt, cats), gt.copy(), segments(gt, cats))]).summary["all"]["pq"] == 1.0
    )


@pytest.mark.parametrize(
    ("width", "shift"), [(15, 0), (15, 3), (15, 5), (15, 6), (41, 13), (41, 14)]
)
def test_iou_around_one_half(tmp_path: Path, width: int, shift: int) -> None:
    # IoU of a car shifted sideways = (width - shift) / (width + shift): 15/5 is exactly 0.5
    # (no match: the rule is > 0.5), 41/13 is 0.519 (match), 41/14 is 0.491 (no match).
    gt, cats = base_case()
    gt[gt == 3001] = 2000
    gt[22:32, 5 : 5 + width] = 3001
    pred = gt.copy()
    pred[pred == 3001] = 2000
    pred[22:32, 5 + shift : 5 + width + shift] = 3001
    got = assert_same(tmp_path, [(gt, segments(gt, cats), pred, segments(pred, cats))])
    iou = (width - shift) / (width + shift)
    assert got.per_class["car"].tp == int(iou > 0.5)
    if iou > 0.5:
        assert got.per_class["car"].sq == pytest.approx(iou, abs=1e-12)


def test_void_pixels_leave_the_union(tmp_path: Path) -> None:
    # Pred car = the gt car (100 px) + 150 px on void: IoU 100 / (250 + 100 - 100 - 150) = 1.
    gt, cats = base_case()
    gt[gt == 3001] = 2000
    gt[22:32, 5:15] = 3001
    gt[22:32, 15:30] = 0
    pred = gt.copy()
    pred[22:32, 5:30] = 3001
    got = assert_same(tmp_path, [(gt, segments(gt, cats), pred, segments(pred, cats))])
    assert got.per_class["car"].sq == pytest.approx(1.0)


def test_void_and_crowd_rules(tmp_path: Path) -> None:
    gt, cats = base_case()
    gt[0:5, :] = 0  # void stripe
    gt[30:40, 40:60] = 3002  # crowd of cars
    cats[3002] = 3
    gt_segs = segments(gt, cats, crowd={3002})
    pred = gt.copy()
    pred[pred == 3002] = 2000
    pred[0:6, 10:30] = 3005  # a car mostly on void: not a false positive
    pred[31:40, 42:58] = 3006  # a car mostly on the crowd region: not a false positive
    pred[10:14, 40:50] = 4009  # a person on sky: a false positive
    cats.update({3005: 3, 3006: 3, 4009: 4})
    assert_same(tmp_path, [(gt, gt_segs, pred, segments(pred, cats))])


def test_missing_category_and_unmatched(tmp_path: Path) -> None:
    gt, cats = base_case()
    pred = gt.copy()
    pred[pred == 4001] = 2000  # the person is missed: fn
    pred[pred == 1000] = 2000  # sky predicted as road
    assert_same(tmp_path, [(gt, segments(gt, cats), pred, segments(pred, cats))])


def test_category_absent_everywhere_is_not_averaged(tmp_path: Path) -> None:
    gt, cats = base_case()
    gt[gt == 4001] = 2000  # no person in the image at all
    pred = gt.copy()
    pred[30:34, 40:50] = 3009  # a car that is not there: fp
    cats[3009] = 3
    got = assert_same(tmp_path, [(gt, segments(gt, cats), pred, segments(pred, cats))])
    assert got.summary["all"]["n"] == 3
    assert got.summary["things"]["n"] == 1
    assert "person" not in got.per_class


def test_crowd_is_never_matched(tmp_path: Path) -> None:
    gt, cats = base_case()
    gt[30:40, 40:60] = 3002
    cats[3002] = 3
    pred = gt.copy()  # predicts the crowd region as one car: not matched, not a fp
    got = assert_same(
        tmp_path, [(gt, segments(gt, cats, crowd={3002}), pred, segments(pred, cats))]
    )
    assert (got.per_class["car"].tp, got.per_class["car"].fp) == (1, 0)


@pytest.mark.parametrize("seed", range(8))
def test_random_cases(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(3):
        gt, cats = base_case()
        pred = gt.copy()
        for _ in range(6):
            y, x = rng.integers(0, 36), rng.integers(0, 55)
            h, w = rng.integers(3, 15), rng.integers(3, 20)
            label = int(rng.choice([0, 1000, 2000, 3001, 3007, 4001, 4008]))
            target = pred if rng.random() < 0.7 else gt
            target[y : y + h, x : x + w] = label
        all_cats = {**cats, 3007: 3, 4008: 4}
        crowd = {3007} if rng.random() < 0.5 else set()
        cases.append((gt, segments(gt, all_cats, crowd), pred, segments(pred, all_cats)))
    assert_same(tmp_path, cases)


def test_prediction_errors_match_the_official_tool() -> None:
    gt, cats = base_case()
    with pytest.raises(EvaluationError, match="not in its segments"):
        pq_single_image(gt, segments(gt, cats), gt, segments(gt, cats)[:-1], CATEGORIES)
    bad = segments(gt, cats)
    bad[0]["category_id"] = 99
    with pytest.raises(EvaluationError, match="unknown category 99"):
        pq_single_image(gt, segments(gt, cats), gt, bad, CATEGORIES)


def scene() -> tuple[np.ndarray, np.ndarray]:
    """20x20: sky (10) above road (0), one car (13) instance 1 on the sky."""
    semantic = np.zeros((20, 20), np.uint8)
    semantic[:10] = 10
    instances = np.zeros((20, 20), np.int32)
    semantic[2:6, 2:6] = 13
    instances[2:6, 2:6] = 1
    return semantic, instances


def test_segments_from_maps_keys_categories_by_class_index() -> None:
    semantic, instances = scene()
    semantic[15, 15] = 255
    semantic[18:20, 0:2] = 13  # car pixels without an instance: a crowd region
    ids, segs = segments_from_maps(semantic, instances, CITYSCAPES)
    assert ids.dtype == np.uint32
    assert ids[15, 15] == 0 and ids[19, 19] == 1000 and ids[0, 0] == 11000
    assert ids[3, 3] == 14001 and ids[19, 0] == 14000
    by_id = {s["id"]: s for s in segs}
    assert by_id[1000] == {"id": 1000, "category_id": 0, "iscrowd": 0, "area": 195}
    assert by_id[14001]["category_id"] == 13 and by_id[14001]["area"] == 16
    assert by_id[14000]["iscrowd"] == 1
    assert categories_from_labels(CITYSCAPES)[13]["name"] == "car"
    instances[3, 3] = 1000
    with pytest.raises(EvaluationError, match=r"instance numbers span 0\.\.1000"):
        segments_from_maps(semantic, instances, CITYSCAPES)


def test_evaluate_maps_by_hand() -> None:
    semantic, instances = scene()
    perfect = evaluate_maps([(semantic, instances, semantic.copy(), instances.copy())], CITYSCAPES)
    assert (perfect.pq, perfect.n, perfect.miou) == (1.0, 3, 1.0)
    # The car moves one column: car IoU 12/20; sky IoU 180/188; road stays perfect.
    pred_semantic, pred_instances = semantic.copy(), np.zeros_like(instances)
    pred_semantic[2:6, 2:6] = 10
    pred_semantic[2:6, 3:7] = 13
    pred_instances[2:6, 3:7] = 1
    result = evaluate_maps([(semantic, instances, pred_semantic, pred_instances)], CITYSCAPES)
    assert result.summary["things"]["pq"] == pytest.approx(0.6)
    assert result.summary["stuff"]["pq"] == pytest.approx((1 + 180 / 188) / 2)
    assert result.pq == pytest.approx((1 + 180 / 188 + 0.6) / 3)
    assert result.miou == pytest.approx((1 + 180 / 188 + 0.6) / 3)
    assert result.iou == pytest.approx({"road": 1.0, "sky": 180 / 188, "car": 12 / 20})
    table = result.format_table()
    assert "IoU" in table and "car 60.0" in table
    assert "car" in table and "things" in table and "mIoU" in table
    assert json.loads(json.dumps(result.to_dict()))["per_class"]["car"]["tp"] == 1


def test_evaluate_maps_crowd_and_unlabelled_things() -> None:
    semantic, instances = scene()
    instances[:] = 0  # the ground truth car is a crowd region
    pred_instances = np.zeros_like(instances)
    pred_instances[2:6, 2:6] = 1
    result = evaluate_maps([(semantic, instances, semantic.copy(), pred_instances)], CITYSCAPES)
    assert "car" not in result.per_class  # on the crowd: neither tp nor fp
    assert result.summary["things"]["n"] == 0
    # Predicted car pixels without an instance are unlabelled, not a segment.
    semantic_gt, instances_gt = scene()
    result = evaluate_maps(
        [(semantic_gt, instances_gt, semantic_gt.copy(), np.zeros_like(instances_gt))],
        CITYSCAPES,
    )
    assert (result.per_class["car"].tp, result.per_class["car"].fn) == (0, 1)
    assert result.per_class["car"].fp == 0


def test_semantic_confusion_and_miou() -> None:
    gt = np.array([0, 0, 1, 1, 255, 1], np.uint8)
    pred = np.array([0, 1, 1, 1, 0, 255], np.uint8)
    confusion = semantic_confusion(gt, pred, 2)
    # Rows ground truth, columns prediction, last column predicted void.
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 1]]
    # class 0: 1 / (2 + 1 - 1); class 1: 2 / (3 + 3 - 2).
    assert miou_from_confusion(confusion) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert np.isnan(miou_from_confusion(np.zeros((2, 3), np.int64)))
    with pytest.raises(EvaluationError, match="differ"):
        semantic_confusion(gt, pred[:3], 2)
