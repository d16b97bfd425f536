"""Cityscapes/COCO panoptic files and folder evaluation, checked against the official tools.

The official tools run here as test dependencies: cityscapesscripts' ``createPanopticImgs``
(the ground truth layout) and ``evalPanopticSemanticLabeling``, and panopticapi's
``pq_compute``, on cases generated from synthetic scenes with perturbed predictions (crowd,
void, unmatched predictions mostly on void, shifted/grown/shrunk/relabelled instances).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from official_tools import import_official_tool
from oracle import pq_single_image
from PIL import Image

from panoptic_ros.cli.main import main
from panoptic_ros.data.panoptic_format import (
    PanopticDataset,
    PanopticDatasetSource,
    category_mapping,
    dataset_categories,
    dataset_mapping,
    id2rgb,
    maps_from_panoptic,
    panoptic_from_maps,
    parse_category_map,
    read_cityscapes_panoptic,
    read_coco_panoptic,
    read_panoptic_png,
    rgb2id,
    write_cityscapes_panoptic,
    write_coco_panoptic,
    write_panoptic_png,
)
from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, SyntheticScene, generate_scene
from panoptic_ros.errors import ConfigError, EvaluationError
from panoptic_ros.evaluation.panoptic_quality import (
    PQResult,
    PQStat,
    evaluate_folders,
    evaluate_maps,
    score_panoptic_image,
)
from panoptic_ros.labels import CITYSCAPES, IGNORE_INDEX, LabelSpace

panopticapi = import_official_tool("panopticapi.evaluation", "panopticapi-lite")
create_panoptic = import_official_tool(
    "cityscapesscripts.preparation.createPanopticImgs", "cityscapesScripts"
)
cityscapes_eval = import_official_tool(
    "cityscapesscripts.evaluation.evalPanopticSemanticLabeling", "cityscapesScripts"
)

REPO_ROOT = Path(__file__).resolve().parent.parent
HEIGHT, WIDTH = 96, 192


def load_eval_speed() -> ModuleType:
    """``benchmarks/eval_speed.py`` (the case generator shared with the benchmark)."""
    if "eval_speed" in sys.modules:
        return sys.modules["eval_speed"]
    spec = importlib.util.spec_from_file_location(
        "eval_speed", REPO_ROOT / "benchmarks" / "eval_speed.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_speed"] = module
    spec.loader.exec_module(module)
    return module


def gt_scene(seed: int, height: int = HEIGHT, width: int = WIDTH) -> SyntheticScene:
    """A synthetic scene whose maps carry void (bonnet, blobs) and crowd regions."""
    scene = generate_scene(seed, height, width)
    (semantic, instances), _ = load_eval_speed().perturb(scene.semantic, scene.instances, seed)
    numbers = np.unique(instances)
    if len(numbers) > 2:  # make sure of one crowd region (perturb makes them at random)
        instances[instances == numbers[1]] = 0
    return SyntheticScene(scene.image, semantic, instances, scene.instance_classes, seed)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two label maps split the pixels the same way (labels may differ)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


# --- PNG colours ------------------------------------------------------------------------------


def test_ids_survive_png_and_read_as_the_official_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256**3, size=(7, 11)).astype(np.uint32)
    ids[0, :3] = [0, 1, 256**3 - 1]
    path = tmp_path / "ids.png"
    write_panoptic_png(path, ids)
    assert np.array_equal(read_panoptic_png(path), ids)
    Image.fromarray(id2rgb(ids)).save(tmp_path / "pil.png")  # as createPanopticImgs writes
    assert np.array_equal(read_panoptic_png(tmp_path / "pil.png"), ids)
    # panopticapi reads with PIL and its rgb2id: the same ids.
    official = panopticapi.rgb2id(np.array(Image.open(path), dtype=np.uint32))
    assert np.array_equal(official, ids)
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    # Any integer dtype and a non-contiguous view give the official ids.
    wide = np.array(Image.open(path), dtype=np.uint32)
    assert np.array_equal(rgb2id(wide[:, ::-1]), official[:, ::-1])
    assert np.array_equal(rgb2id(id2rgb(ids)[::2]), ids[::2])


def test_alpha_is_ignored_and_bad_pngs_are_refused(tmp_path: Path) -> None:
    ids = np.array([[5, 70000], [0, 1234567]], np.uint32)
    rgba = np.concatenate([id2rgb(ids), np.full((2, 2, 1), 200, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_panoptic_png(tmp_path / "rgba.png"), ids)
    cv2.imwrite(str(tmp_path / "gray.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(EvaluationError, match="expected 8-bit RGB"):
        read_panoptic_png(tmp_path / "gray.png")
    # 16-bit colour is not a panoptic PNG either (the ids are 8 bits per channel).
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(EvaluationError, match="expected 8-bit RGB"):
        read_panoptic_png(tmp_path / "deep.png")
    with pytest.raises(EvaluationError, match="check that it exists"):
        read_panoptic_png(tmp_path / "missing.png")
    with pytest.raises(EvaluationError, match="24-bit ids"):
        id2rgb(np.array([[256**3]]))


# --- Cityscapes ids: the same as createPanopticImgs ------------------------------------------


def instance_ids_image(scene: SyntheticScene, labels: LabelSpace) -> np.ndarray:
    """Cityscapes' ``*_instanceIds.png`` content for a scene, written independently.

    labelId on stuff and crowd pixels, labelId * 1000 + n on thing instances (n from 0 per
    class, in instance-number order), 0 ("unlabeled") and 1 ("ego vehicle") on void.
    """
    out = np.zeros(scene.semantic.shape, np.uint16)
    counters: dict[int, int] = {}
    for index, info in enumerate(labels.classes):
        on_class = scene.semantic == index
        out[on_class] = info.dataset_id
        if not info.is_thing:
            continue
        for number in np.unique(scene.instances[on_class]).tolist():
            if number == 0:
                continue
            n = counters.get(index, 0)
            counters[index] = n + 1
            out[on_class & (scene.instances == number)] = info.dataset_id * 1000 + n
    void = scene.semantic == IGNORE_INDEX
    out[void & (np.arange(out.shape[1]) % 2 == 0)] = 1  # ego vehicle: ignoreInEval, void
    return out


@pytest.fixture(scope="module")
def cityscapes_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Any]]:
    """(our dataset root, createPanopticImgs' output folder, scenes) for the same scenes."""
    root = tmp_path_factory.mktemp("cityscapes")
    scenes = [gt_scene(seed) for seed in (3, 4, 5)]
    ours = root / "ours"
    write_cityscapes_panoptic(ours, scenes, CITYSCAPES, "val")
    raw = root / "raw" / "gtFine" / "val" / "synthetic"
    raw.mkdir(parents=True)
    for index, scene in enumerate(scenes):
        name = f"synthetic_000000_{index:06d}_gtFine_instanceIds.png"
        cv2.imwrite(str(raw / name), instance_ids_image(scene, CITYSCAPES))
    official = root / "official"
    official.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        create_panoptic.convert2panoptic(
            str(root / "raw" / "gtFine"), str(official), False, ["val"]
        )
    return ours, official, scenes


def test_written_ground_truth_equals_create_panoptic_imgs(
    cityscapes_pair: tuple[Path, Path, list[Any]],
) -> None:
    ours, official, scenes = cityscapes_pair
    mine = json.loads((ours / "gtFine" / "cityscapes_panoptic_val.json").read_text())
    theirs = json.loads((official / "cityscapes_panoptic_val.json").read_text())
    assert mine["images"] == theirs["images"]  # incl. the "_gtFine_leftImg8bit.png" names
    assert mine["annotations"] == theirs["annotations"]  # ids, areas, bboxes, crowd flags
    assert any(s["iscrowd"] for a in mine["annotations"] for s in a["segments_info"])
    key = ("id", "name", "isthing", "color")
    assert [[c[k] for k in key] for c in mine["categories"]] == [
        [c[k] for k in key] for c in theirs["categories"]
    ]
    for annotation in mine["annotations"]:
        name = annotation["file_name"]
        mine_ids = read_panoptic_png(ours / "gtFine" / "cityscapes_panoptic_val" / name)
        theirs_ids = rgb2id(np.array(Image.open(official / "cityscapes_panoptic_val" / name)))
        assert np.array_equal(mine_ids, theirs_ids)
    image = cv2.imread(
        str(ours / "leftImg8bit" / "val" / "synthetic" / "synthetic_000000_000001_leftImg8bit.png")
    )
    assert np.array_equal(image[..., ::-1], scenes[1].image)


def test_reader_maps_official_ground_truth_back_to_our_maps(
    cityscapes_pair: tuple[Path, Path, list[Any]],
) -> None:
    ours, official, scenes = cityscapes_pair
    # Read createPanopticImgs' files with our images beside them.
    (ours / "gtFine" / "cityscapes_panoptic_val.json").write_text(
        (official / "cityscapes_panoptic_val.json").read_text()
    )
    dataset = read_cityscapes_panoptic(ours, "val")
    assert len(dataset) == 3
    assert dataset[0].image_id == "synthetic_000000_000000"
    assert sorted(dataset.categories) == sorted(category_mapping(CITYSCAPES))
    for crowd_mode in ("keep", "void"):
        source = PanopticDatasetSource(dataset, CITYSCAPES, crowd=crowd_mode)
        for index, scene in enumerate(scenes):
            sample = source(index)
            assert np.array_equal(sample.image, scene.image)
            thing = CITYSCAPES.is_thing_table()[scene.semantic]
            crowd = thing & (scene.instances == 0)
            assert np.array_equal(sample.ignore_mask, crowd)
            expected = scene.semantic.copy()
            if crowd_mode == "void":
                expected[crowd] = IGNORE_INDEX
            assert np.array_equal(sample.semantic, expected)
            assert same_partition(sample.instances, np.where(thing, scene.instances, 0))
            assert not sample.instances[crowd].any()


def test_dataset_source_feeds_training_targets(
    cityscapes_pair: tuple[Path, Path, list[Any]],
) -> None:
    from panoptic_ros.training.data import TargetDataset

    ours, _, _ = cityscapes_pair
    source = PanopticDatasetSource(read_cityscapes_panoptic(ours, "val"), CITYSCAPES)
    item = TargetDataset(source, [0, 1], augment_params=None)[1]
    assert item["image"].shape == (HEIGHT, WIDTH, 3)
    assert item["semantic"].shape == (HEIGHT // 4, WIDTH // 4)
    assert item["offset_weight"].sum() > 0  # instances made it through


def test_maps_round_trip_and_unknown_categories_become_void() -> None:
    scene = gt_scene(7)
    ids, segments = panoptic_from_maps(scene.semantic, scene.instances, CITYSCAPES)
    maps = maps_from_panoptic(ids, segments, CITYSCAPES)
    assert np.array_equal(maps.semantic, scene.semantic)
    assert same_partition(maps.instances, scene.instances)
    # A label space without sky and car: their pixels become void, the rest keeps its class.
    kept = [c for c in CITYSCAPES.classes if c.name not in ("sky", "car")]
    small = LabelSpace(tuple(kept))
    maps = maps_from_panoptic(ids, segments, small)
    names = np.array([*CITYSCAPES.names, *[""] * (256 - CITYSCAPES.num_classes)])
    dropped = np.isin(names[scene.semantic], ["sky", "car"])
    assert (maps.semantic[dropped] == IGNORE_INDEX).all()
    new_index = {c.name: i for i, c in enumerate(small.classes)}
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for i, name in enumerate(CITYSCAPES.names):
        lut[i] = new_index.get(name, IGNORE_INDEX)
    assert np.array_equal(maps.semantic, lut[scene.semantic])
    # Ids in the map without a segment are void.
    maps = maps_from_panoptic(ids, [s for s in segments if s["category_id"] != 7], CITYSCAPES)
    assert (maps.semantic[scene.semantic == CITYSCAPES.index("road")] == IGNORE_INDEX).all()


def test_cityscapes_ids_and_errors() -> None:
    semantic = np.full((4, 6), CITYSCAPES.index("road"), np.uint8)
    instances = np.zeros((4, 6), np.int32)
    semantic[0, :3] = CITYSCAPES.index("car")
    instances[0, :3] = 7
    semantic[1, :2] = CITYSCAPES.index("car")  # car without instance: crowd
    semantic[2, 0] = IGNORE_INDEX
    ids, segments = panoptic_from_maps(semantic, instances, CITYSCAPES)
    assert ids[0, 0] == 26000 and ids[1, 0] == 26 and ids[2, 0] == 0 and ids[3, 0] == 7
    assert segments == [
        {"id": 7, "category_id": 7, "area": 18, "bbox": [0, 0, 6, 4], "iscrowd": 0},
        {"id": 26, "category_id": 26, "area": 2, "bbox": [0, 1, 2, 1], "iscrowd": 1},
        {"id": 26000, "category_id": 26, "area": 3, "bbox": [0, 0, 3, 1], "iscrowd": 0},
    ]
    with pytest.raises(EvaluationError, match="label space has 19 classes"):
        panoptic_from_maps(np.full((2, 2), 30, np.uint8), np.zeros((2, 2), np.int32), CITYSCAPES)
    zero = LabelSpace((CITYSCAPES.classes[0].__class__("x", False, (0, 0, 0), 0),))
    with pytest.raises(ConfigError, match="dataset id 0"):
        panoptic_from_maps(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.int32), zero)
    twice = LabelSpace(
        (CITYSCAPES.classes[0], CITYSCAPES.classes[1].__class__("y", False, (0, 0, 0), 7))
    )
    with pytest.raises(ConfigError, match="share dataset id 7"):
        category_mapping(twice)


def test_coco_panoptic_round_trip_and_errors(tmp_path: Path) -> None:
    scenes = [gt_scene(seed) for seed in (11, 12)]
    entries = []
    for index, scene in enumerate(scenes):
        ids, segments = panoptic_from_maps(scene.semantic, scene.instances, CITYSCAPES)
        entries.append((index + 100, ids, segments))
        cv2.imwrite(str(tmp_path / f"{index + 100}.jpg"), scene.image[..., ::-1])
    json_path = write_coco_panoptic(
        tmp_path / "panoptic.json", tmp_path / "png", entries, dataset_categories(CITYSCAPES)
    )
    data = json.loads(json_path.read_text())
    for row in data["images"]:
        row["file_name"] = f"{row['id']}.jpg"
    json_path.write_text(json.dumps(data))
    dataset = read_coco_panoptic(json_path, tmp_path / "png", tmp_path)
    assert [r.image_id for r in dataset] == [100, 101]
    assert np.array_equal(dataset[1].read_ids(), entries[1][1])
    sample = PanopticDatasetSource(dataset, CITYSCAPES, crowd="keep")(0)
    assert np.array_equal(sample.semantic, scenes[0].semantic)
    assert sample.image.shape == scenes[0].image.shape

    del data["images"][1]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(EvaluationError, match="has no 'images' entry"):
        read_coco_panoptic(broken, tmp_path / "png", tmp_path)
    with pytest.raises(EvaluationError, match="2 panoptic PNGs missing"):
        read_coco_panoptic(tmp_path / "panoptic.json", tmp_path / "nowhere", tmp_path)
    other = LabelSpace((CITYSCAPES.classes[0].__class__("z", False, (0, 0, 0), 999),))
    dataset = read_coco_panoptic(tmp_path / "panoptic.json", tmp_path / "png", tmp_path)
    with pytest.raises(ConfigError, match="maps into the label space"):
        PanopticDatasetSource(dataset, other)


# --- score_panoptic_image = pq_single_image (= panopticapi) ----------------------------------

CATEGORIES = {
    1: {"id": 1, "name": "road", "isthing": 0},
    2: {"id": 2, "name": "sky", "isthing": 0},
    3: {"id": 3, "name": "car", "isthing": 1},
    4: {"id": 4, "name": "person", "isthing": 1},
}
GT_POOL = [0, 1000, 2000, 3001, 3002, 4001, 4002, 777]  # 777: in the map, not listed


def assert_same_stat(fast: PQStat, reference: PQStat) -> None:
    keys = set(fast.categories) | set(reference.categories)
    for key in keys:
        a, b = fast[key], reference[key]
        assert (a.tp, a.fp, a.fn) == (b.tp, b.fp, b.fn), key
        assert a.iou == pytest.approx(b.iou, abs=1e-12), key


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    height=st.integers(3, 9),
    width=st.integers(3, 9),
)
def test_fast_scoring_equals_reference(data: Any, height: int, width: int) -> None:
    size = height * width
    gt_flat = data.draw(st.lists(st.sampled_from(GT_POOL), min_size=size, max_size=size))
    pred_flat = data.draw(
        st.lists(st.sampled_from([0, 5, 6, 7, 8, 9]), min_size=size, max_size=size)
    )
    gt_ids = np.array(gt_flat, np.uint32).reshape(height, width)
    pred_ids = np.array(pred_flat, np.uint32).reshape(height, width)
    gt_segments = []
    for segment_id in GT_POOL[1:-1]:
        category = segment_id // 1000
        crowd = category >= 3 and data.draw(st.booleans())
        entry: dict[str, Any] = {"id": segment_id, "category_id": category, "iscrowd": int(crowd)}
        if data.draw(st.booleans()):
            entry["area"] = int((gt_ids == segment_id).sum())
        gt_segments.append(entry)
    pred_segments = [
        {"id": int(i), "category_id": data.draw(st.integers(1, 4))}
        for i in np.unique(pred_ids).tolist()
        if i != 0 or data.draw(st.booleans())  # sometimes id 0 is a listed segment
    ]
    stat, confusion = score_panoptic_image(gt_ids, gt_segments, pred_ids, pred_segments, CATEGORIES)
    assert_same_stat(
        stat, pq_single_image(gt_ids, gt_segments, pred_ids, pred_segments, CATEGORIES)
    )
    # The confusion, pixel by pixel.
    index = {c: i for i, c in enumerate(CATEGORIES)}
    gt_cat = {s["id"]: index[s["category_id"]] for s in gt_segments}
    pred_cat = {s["id"]: index[s["category_id"]] for s in pred_segments}
    expected = np.zeros((4, 5), np.int64)
    for g, p in zip(gt_ids.ravel().tolist(), pred_ids.ravel().tolist(), strict=True):
        if g in gt_cat:
            expected[gt_cat[g], pred_cat.get(p, 4)] += 1
    assert np.array_equal(confusion, expected)


def test_fast_scoring_of_a_large_case_equals_the_official_loop() -> None:
    # 24-bit predicted ids, runs across row ends, views and wider dtypes: the run-length
    # histogram must count exactly what panopticapi's per-pixel sort counts.
    gt_ids, gt_segments, pred_ids, pred_segments = load_eval_speed().make_case(
        HELD_OUT_SEED_START, 7, 128, 256
    )
    categories = {c["id"]: c for c in dataset_categories(CITYSCAPES)}
    reference = pq_single_image(gt_ids, gt_segments, pred_ids, pred_segments, categories)
    variants = [
        (gt_ids, pred_ids),
        (gt_ids.T, pred_ids.T),  # column-major views: other runs, the same pairs
        (gt_ids.astype(np.int64), pred_ids.astype(np.uint64)),
        (np.ascontiguousarray(gt_ids[:, ::-1]), pred_ids[:, ::-1]),
    ]
    for gt, pred in variants:
        stat, confusion = score_panoptic_image(gt, gt_segments, pred, pred_segments, categories)
        assert_same_stat(stat, reference)
        listed = [s["id"] for s in gt_segments]
        assert confusion.sum() == int(np.isin(gt_ids, listed).sum())
    assert sum(s.tp for s in reference.categories.values()) > 0
    assert sum(s.fp + s.fn for s in reference.categories.values()) > 0


def test_fast_scoring_refuses_what_the_official_tool_refuses() -> None:
    gt = np.array([[1000, 1000], [2000, 0]], np.uint32)
    gt_segments = [
        {"id": 1000, "category_id": 1, "iscrowd": 0},
        {"id": 2000, "category_id": 2, "iscrowd": 0},
    ]
    pred = np.array([[5, 5], [6, 0]], np.uint32)
    with pytest.raises(EvaluationError, match="segment id 6 is in the prediction map"):
        score_panoptic_image(gt, gt_segments, pred, [{"id": 5, "category_id": 1}], CATEGORIES)
    segments = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 2}]
    with pytest.raises(EvaluationError, match=r"segments \[9\] have no pixels"):
        score_panoptic_image(
            gt, gt_segments, pred, [*segments, {"id": 9, "category_id": 1}], CATEGORIES
        )
    with pytest.raises(EvaluationError, match="unknown category 42"):
        score_panoptic_image(
            gt, gt_segments, pred, [segments[0], {"id": 6, "category_id": 42}], CATEGORIES
        )
    with pytest.raises(EvaluationError, match="differ"):
        score_panoptic_image(gt, gt_segments, pred[:1], segments, CATEGORIES)


# --- evaluate_folders = pq_compute = evalPanopticSemanticLabeling -----------------------------


@pytest.fixture(scope="module")
def prediction_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """16 ground truth images (Cityscapes layout) and perturbed predictions (COCO layout)."""
    root = tmp_path_factory.mktemp("folders")
    eval_speed = load_eval_speed()
    scenes, predictions, maps = [], [], []
    for index in range(16):
        scene = generate_scene(500 + index % 6, 64, 128)
        (gt_sem, gt_inst), (pred_sem, pred_inst) = eval_speed.perturb(
            scene.semantic, scene.instances, index
        )
        scenes.append(SyntheticScene(scene.image, gt_sem, gt_inst, (), index))
        ids, segments = panoptic_from_maps(pred_sem, pred_inst, CITYSCAPES)
        segments = [{"id": s["id"], "category_id": s["category_id"]} for s in segments]
        predictions.append((f"synthetic_000000_{index:06d}", ids, segments))
        maps.append((gt_sem, gt_inst, pred_sem, pred_inst))
    gt_json = write_cityscapes_panoptic(root / "cityscapes", scenes, CITYSCAPES, "val")
    pred_json = write_coco_panoptic(
        root / "results" / "cityscapes_panoptic_val.json",
        root / "results" / "cityscapes_panoptic_val",
        predictions,
        dataset_categories(CITYSCAPES),
    )
    return {
        "args": (gt_json, gt_json.with_suffix(""), pred_json, pred_json.with_suffix("")),
        "maps": maps,
        "root": root,
    }


def assert_equals_official(ours: PQResult, official: dict[str, Any]) -> None:
    names = {c["id"]: c["name"] for c in dataset_categories(CITYSCAPES)}
    for key, name in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        for metric in ("pq", "sq", "rq", "n"):
            assert ours.summary[key][metric] == pytest.approx(official[name][metric], abs=1e-9)
    for category, values in official["per_class"].items():
        quality = ours.per_class.get(names[int(category)])
        for metric in ("pq", "sq", "rq"):
            mine = getattr(quality, metric) if quality is not None else 0.0
            assert mine == pytest.approx(values[metric], abs=1e-9), (category, metric)


def test_folders_equal_panopticapi_and_cityscapes(
    prediction_folders: dict[str, Any], tmp_path: Path
) -> None:
    gt_json, gt_dir, pred_json, pred_dir = prediction_folders["args"]
    with contextlib.redirect_stdout(io.StringIO()):  # both print progress and tables
        coco = panopticapi.pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir))
        cityscapes = cityscapes_eval.evaluatePanoptic(
            str(gt_json), str(gt_dir), str(pred_json), str(pred_dir), str(tmp_path / "cs.json")
        )
    one = evaluate_folders(gt_json, gt_dir, pred_json, pred_dir, workers=1)
    two = evaluate_folders(gt_json, gt_dir, pred_json, pred_dir, workers=2)
    for ours in (one, two):
        assert_equals_official(ours, coco)
        assert_equals_official(ours, cityscapes)
    assert one.pq == pytest.approx(two.pq, abs=1e-12)
    assert {n: (q.tp, q.fp, q.fn) for n, q in one.per_class.items()} == {
        n: (q.tp, q.fp, q.fn) for n, q in two.per_class.items()
    }
    # The cases exercise every rule: crowd, void, fp, fn and partial matches.
    assert 0.2 < one.pq < 0.95
    quality = list(one.per_class.values())
    assert sum(q.fp for q in quality) > 0 and sum(q.fn for q in quality) > 0
    # Counts equal the official per-core statistics.
    gt = json.loads(gt_json.read_text())
    pred = {a["image_id"]: a for a in json.loads(pred_json.read_text())["annotations"]}
    categories = {c["id"]: c for c in gt["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        stat = panopticapi.pq_compute_single_core(
            0,
            [(a, pred[a["image_id"]]) for a in gt["annotations"]],
            str(gt_dir),
            str(pred_dir),
            categories,
        )
    for category, counts in stat.pq_per_cat.items():
        if counts.tp + counts.fp + counts.fn:
            q = one.per_class[categories[category]["name"]]
            assert (q.tp, q.fp, q.fn) == (counts.tp, counts.fp, counts.fn)


def test_folders_equal_the_in_memory_maps(prediction_folders: dict[str, Any]) -> None:
    folders = evaluate_folders(*prediction_folders["args"], workers=1)
    maps = evaluate_maps(prediction_folders["maps"], CITYSCAPES)
    for key in ("all", "things", "stuff"):
        for metric in ("pq", "sq", "rq", "n"):
            assert folders.summary[key][metric] == pytest.approx(
                maps.summary[key][metric], abs=1e-12
            )
    assert folders.miou == pytest.approx(maps.miou, abs=1e-12)
    assert folders.iou == pytest.approx(maps.iou, abs=1e-12) and folders.iou
    assert {n: (q.tp, q.fp, q.fn) for n, q in folders.per_class.items()} == {
        n: (q.tp, q.fp, q.fn) for n, q in maps.per_class.items()
    }


def test_folder_errors_name_the_image(prediction_folders: dict[str, Any], tmp_path: Path) -> None:
    gt_json, gt_dir, pred_json, pred_dir = prediction_folders["args"]
    data = json.loads(pred_json.read_text())
    data["annotations"][3]["segments_info"].pop()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(
        EvaluationError, match=r"image 'synthetic_000000_000003': segment id \d+ is in"
    ):
        evaluate_folders(gt_json, gt_dir, broken, pred_dir, workers=1)
    del data["annotations"][5]
    broken.write_text(json.dumps(data))
    with pytest.raises(EvaluationError, match="no prediction for image 'synthetic_000000_000005'"):
        evaluate_folders(gt_json, gt_dir, broken, pred_dir)
    with pytest.raises(EvaluationError, match=r"folder .* does not exist"):
        evaluate_folders(gt_json, gt_dir, pred_json, tmp_path / "nowhere")


# --- panoptic-ros eval ------------------------------------------------------------------------


def test_cli_scores_prediction_folders(
    prediction_folders: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    gt_json, gt_dir, pred_json, pred_dir = prediction_folders["args"]
    out = tmp_path / "pq.json"
    # The folders default to the JSON paths without ".json", as the official tools.
    code = main(
        [
            "eval",
            "--gt-json",
            str(gt_json),
            "--pred-json",
            str(pred_json),
            "--workers",
            "1",
            "--json",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "things" in printed and "mIoU" in printed
    expected = evaluate_folders(gt_json, gt_dir, pred_json, pred_dir, workers=1)
    assert json.loads(out.read_text())["all"]["pq"] == pytest.approx(expected.pq, abs=1e-12)
    assert (
        main(["eval", "--gt-json", str(tmp_path / "missing.json"), "--pred-json", str(pred_json)])
        == 1
    )
    assert "is not a file" in capsys.readouterr().err
    assert main(["eval", "--synthetic", "3", "--gt-json", str(gt_json)]) == 1
    assert "use one of" in capsys.readouterr().err


def bundled_model_config() -> Any:
    """The config ``--backend onnxruntime`` gives (the bundled model); skips without it."""
    pytest.importorskip("onnxruntime")
    from panoptic_ros.config import load_config
    from panoptic_ros.resources import default_model_path

    try:
        default_model_path()
    except Exception as err:  # any reason the bundled model is absent
        pytest.skip(f"bundled model not available: {err}")
    return load_config(None, ["backend.name=onnxruntime"])


def library_model_pq(source: PanopticDatasetSource, config: Any) -> PQResult:
    """The model's PQ on ``source`` by the library: every map kept, then evaluate_maps."""
    from panoptic_ros.pipeline import PanopticPipeline

    pairs = []
    with PanopticPipeline.from_config(config) as pipeline:
        for index in range(len(source)):
            sample = source(index)
            result = pipeline.process(sample.image)
            pairs.append(
                (
                    sample.semantic,
                    sample.instances,
                    result.semantic,
                    result.instance_ids.astype(np.int32),
                )
            )
        return evaluate_maps(pairs, pipeline.labels)


def assert_same_result(printed: dict[str, Any], expected: PQResult) -> None:
    """The CLI's JSON equals a library result (summary, per class counts, mIoU)."""
    for key in ("all", "things", "stuff"):
        for metric in ("pq", "sq", "rq", "n"):
            assert printed[key][metric] == pytest.approx(expected.summary[key][metric], abs=1e-12)
    per_class = expected.to_dict()["per_class"]
    assert set(printed["per_class"]) == set(per_class)
    for name, values in per_class.items():
        assert printed["per_class"][name] == pytest.approx(values, abs=1e-12), name
    assert printed["miou"] == pytest.approx(expected.miou, abs=1e-12)


def test_cli_runs_the_model_over_cityscapes(
    cityscapes_pair: tuple[Path, Path, list[Any]], tmp_path: Path, capsys: Any
) -> None:
    config = bundled_model_config()
    ours, _, _ = cityscapes_pair
    out = tmp_path / "pq.json"
    args = ["eval", "--cityscapes", str(ours), "--backend", "onnxruntime", "-q"]
    assert main([*args, "--limit", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "evaluated 2 images in" in printed and "stuff" in printed
    dataset = read_cityscapes_panoptic(ours, "val")
    source = PanopticDatasetSource(
        PanopticDataset(dataset.records[:2], dataset.categories), CITYSCAPES, crowd="keep"
    )
    expected = library_model_pq(source, config)
    assert expected.n > 0
    assert_same_result(json.loads(out.read_text()), expected)
    # Loading threads change nothing.
    assert main([*args, "--limit", "2", "--workers", "0", "--json", str(out)]) == 0
    assert_same_result(json.loads(out.read_text()), expected)


# --- COCO panoptic: COCO category ids, mapped into the label space by config -------------------

#: COCO-style category ids for the synthetic scenes' classes (not Cityscapes' labelIds).
COCO_IDS = {
    "road": 149, "sidewalk": 191, "building": 197, "wall": 199, "fence": 200, "pole": 196,
    "traffic light": 10, "traffic sign": 13, "vegetation": 184, "terrain": 193,
    "sky": 187, "person": 1, "rider": 91, "car": 3, "truck": 8, "bus": 6, "train": 7,
    "motorcycle": 4, "bicycle": 2,
}  # fmt: skip
#: dataset.category_map: every category back to its class, except that trucks merge into
#: car (two categories, one class) and terrain (not listed) becomes void.
COCO_MAP = [f"{COCO_IDS[n]}={n}" for n in CITYSCAPES.names if n not in ("truck", "terrain")]
COCO_MAP.append(f"{COCO_IDS['truck']}=car")


def coco_labels() -> LabelSpace:
    """CITYSCAPES with COCO-style dataset ids (how the ground truth files are written)."""
    from dataclasses import replace

    return LabelSpace(tuple(replace(c, dataset_id=COCO_IDS[c.name]) for c in CITYSCAPES.classes))


def coco_ids(
    semantic: np.ndarray, instances: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Maps -> COCO panoptic ids: random 24-bit segment ids, COCO category ids, crowd."""
    ids, segments = panoptic_from_maps(semantic, instances, coco_labels())
    new = rng.choice(np.arange(1, 256**3), size=len(segments), replace=False).tolist()
    table = dict(zip([s["id"] for s in segments], new, strict=True))
    out = np.zeros_like(ids)
    for old, value in table.items():
        out[ids == old] = value
    return out, [{**s, "id": table[s["id"]]} for s in segments]


@pytest.fixture(scope="module")
def coco_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A COCO panoptic val set (int image ids, JPEG images, random ids, crowd) + predictions."""
    root = tmp_path_factory.mktemp("coco")
    for folder in ("val2017", "panoptic_val2017", "annotations"):
        (root / folder).mkdir()
    rng = np.random.default_rng(4)
    images, annotations, predictions, scenes = [], [], [], []
    for index, seed in enumerate((21, 22, 23)):
        raw = generate_scene(seed, HEIGHT, WIDTH)
        (gt_sem, gt_inst), (pred_sem, pred_inst) = load_eval_speed().perturb(
            raw.semantic, raw.instances, seed
        )
        scene = SyntheticScene(raw.image, gt_sem, gt_inst, raw.instance_classes, seed)
        image_id = 139 + 1000 * index
        name = f"{image_id:012d}"
        cv2.imwrite(str(root / "val2017" / f"{name}.jpg"), scene.image[..., ::-1])
        ids, segments = coco_ids(scene.semantic, scene.instances, rng)
        write_panoptic_png(root / "panoptic_val2017" / f"{name}.png", ids)
        images.append(
            {"id": image_id, "file_name": f"{name}.jpg", "height": HEIGHT, "width": WIDTH}
        )
        annotations.append(
            {"image_id": image_id, "file_name": f"{name}.png", "segments_info": segments}
        )
        pred_ids, pred_segments = coco_ids(pred_sem, pred_inst, rng)
        pred_segments = [{"id": s["id"], "category_id": s["category_id"]} for s in pred_segments]
        predictions.append((image_id, pred_ids, pred_segments))
        scenes.append(scene)
    categories = dataset_categories(coco_labels())
    gt_json = root / "annotations" / "panoptic_val2017.json"
    gt_json.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    pred_json = write_coco_panoptic(
        root / "results" / "panoptic_val2017.json",
        root / "results" / "panoptic_val2017",
        predictions,
        categories,
    )
    assert any(s["iscrowd"] for a in annotations for s in a["segments_info"])
    return {
        "gt": (gt_json, root / "panoptic_val2017", root / "val2017"),
        "pred": (pred_json, pred_json.with_suffix("")),
        "scenes": scenes,
    }


def test_config_maps_coco_categories_into_the_label_space(
    coco_dataset: dict[str, Any], tmp_path: Path
) -> None:
    dataset = read_coco_panoptic(*coco_dataset["gt"])
    assert [r.image_id for r in dataset] == [139, 1139, 2139]
    mapping = parse_category_map(COCO_MAP, CITYSCAPES)
    assert mapping[COCO_IDS["truck"]] == mapping[COCO_IDS["car"]] == CITYSCAPES.index("car")
    source = PanopticDatasetSource(dataset, CITYSCAPES, mapping, crowd="keep")
    car, truck, terrain = (CITYSCAPES.index(n) for n in ("car", "truck", "terrain"))
    merged = 0
    for index, scene in enumerate(coco_dataset["scenes"]):
        sample = source(index)
        expected = scene.semantic.copy()
        expected[expected == truck] = car
        expected[expected == terrain] = IGNORE_INDEX
        assert np.array_equal(sample.semantic, expected)
        thing = CITYSCAPES.is_thing_table()[scene.semantic]
        assert same_partition(sample.instances[thing], scene.instances[thing])
        assert np.array_equal(sample.ignore_mask, thing & (scene.instances == 0))
        merged += int((scene.semantic == truck).sum())
    assert merged > 0  # the scenes do exercise the merge
    assert dataset_mapping(dataset.categories, CITYSCAPES, COCO_MAP) == mapping
    # Without a map COCO's ids would be read as Cityscapes labelIds (13: traffic sign as fence).
    with pytest.raises(ConfigError, match="category 13 'traffic sign' would be read as class"):
        dataset_mapping(dataset.categories, CITYSCAPES)
    cityscapes = read_cityscapes_panoptic(
        write_cityscapes_panoptic(tmp_path / "cs", coco_dataset["scenes"][:1], CITYSCAPES).parents[
            1
        ]
    )
    assert dataset_mapping(cityscapes.categories, CITYSCAPES) == category_mapping(CITYSCAPES)
    with pytest.raises(ConfigError, match="names no class of the label space"):
        parse_category_map(["3=automobile"], CITYSCAPES)
    with pytest.raises(ConfigError, match="lists category 3 twice"):
        parse_category_map(["3=car", "3=truck"], CITYSCAPES)


def test_cli_scores_coco_folders_as_pq_compute(
    coco_dataset: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    gt_json, gt_dir, _ = coco_dataset["gt"]
    pred_json, pred_dir = coco_dataset["pred"]
    out = tmp_path / "pq.json"
    args = ["eval", "--gt-json", str(gt_json), "--gt-dir", str(gt_dir)]
    assert main([*args, "--pred-json", str(pred_json), "--json", str(out), "-q"]) == 0
    assert "things" in capsys.readouterr().out
    with contextlib.redirect_stdout(io.StringIO()):
        official = panopticapi.pq_compute(str(gt_json), str(pred_json), str(gt_dir), str(pred_dir))
    printed = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in json.loads(gt_json.read_text())["categories"]}
    for key, name in (("all", "All"), ("things", "Things"), ("stuff", "Stuff")):
        for metric in ("pq", "sq", "rq", "n"):
            assert printed[key][metric] == pytest.approx(official[name][metric], abs=1e-9)
    for category, values in official["per_class"].items():
        mine = printed["per_class"].get(names[category], {"pq": 0.0, "sq": 0.0, "rq": 0.0})
        for metric in ("pq", "sq", "rq"):
            assert mine[metric] == pytest.approx(values[metric], abs=1e-9)
    assert 0.0 < printed["all"]["pq"] < 1.0


def test_cli_runs_the_model_over_coco(
    coco_dataset: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    config = bundled_model_config()
    out = tmp_path / "pq.json"
    mapping = "dataset.category_map=" + json.dumps(COCO_MAP)
    coco = [str(path) for path in coco_dataset["gt"]]
    args = ["eval", "--coco", *coco, "--backend", "onnxruntime", "--set", mapping]
    assert main([*args, "--json", str(out), "-q"]) == 0
    assert "evaluated 3 images in" in capsys.readouterr().out
    source = PanopticDatasetSource(
        read_coco_panoptic(*coco_dataset["gt"]),
        CITYSCAPES,
        parse_category_map(COCO_MAP, CITYSCAPES),
        crowd="keep",
    )
    expected = library_model_pq(source, config)
    assert expected.n > 0
    truck = expected.per_class.get("truck")  # ground truth trucks are cars now
    assert truck is None or truck.tp + truck.fn == 0
    assert_same_result(json.loads(out.read_text()), expected)
    # Bad inputs fail before any work, with one line.
    assert main(["eval", "--coco", coco[0], coco[1], str(tmp_path / "no_images"), "-q"]) == 1
    assert "IMAGE_DIR" in capsys.readouterr().err
    assert main([*args[:5], "--backend", "onnxruntime", "--set", "dataset.category_map=[x]"]) == 1
    assert "must look like 'ID=NAME'" in capsys.readouterr().err
    assert main([*args[:5], "--backend", "onnxruntime", "-q"]) == 1  # no map: refused
    assert "would be read as class" in capsys.readouterr().err
