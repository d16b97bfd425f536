"""Synthetic scenes: determinism, size independence, label consistency, class coverage."""

from __future__ import annotations

import collections
import dataclasses

import cv2
import numpy as np
import pytest

from panoptic_ros.data.synthetic import (
    HELD_OUT_SEED_START,
    SyntheticDataset,
    SyntheticScene,
    generate_scene,
    min_instance_px,
)
from panoptic_ros.labels import CITYSCAPES, IGNORE_INDEX, LabelSpace

THINGS_DRAWN = {"person", "rider", "car", "truck", "bus", "motorcycle", "bicycle"}
# At most 12 placements per scene; a rider brings its bicycle or motorcycle as a second one.
MAX_THINGS = 24

# Small scenes keep the 100-seed statistics at about a second.
SMALL_HW = (128, 256)


@pytest.fixture(scope="module")
def scenes() -> list[SyntheticScene]:
    """Scenes of seeds 0..99 at 128x256."""
    return [generate_scene(seed, *SMALL_HW) for seed in range(100)]


def assert_same_scene(a: SyntheticScene, b: SyntheticScene) -> None:
    assert a.seed == b.seed
    assert a.instance_classes == b.instance_classes
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    np.testing.assert_array_equal(a.instances, b.instances)


def test_same_seed_gives_identical_scene() -> None:
    for seed in (0, 7, HELD_OUT_SEED_START + 3):
        assert_same_scene(generate_scene(seed, 96, 192), generate_scene(seed, 96, 192))


def test_different_seeds_differ() -> None:
    a, b = generate_scene(1, *SMALL_HW), generate_scene(2, *SMALL_HW)
    assert np.mean(a.semantic != b.semantic) > 0.05
    assert np.mean(np.abs(a.image.astype(int) - b.image.astype(int))) > 10


def test_types_and_shapes() -> None:
    scene = generate_scene(5, 64, 160)
    assert scene.image.shape == (64, 160, 3)
    assert scene.image.dtype == np.uint8
    assert scene.semantic.shape == (64, 160)
    assert scene.semantic.dtype == np.uint8
    assert scene.instances.shape == (64, 160)
    assert scene.instances.dtype == np.int32
    assert all(isinstance(c, int) for c in scene.instance_classes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scene.seed = 6  # type: ignore[misc]


@pytest.mark.parametrize("seed", [0, 3, 11, 12, 13])
def test_same_seed_at_two_sizes_is_the_same_scene(seed: int) -> None:
    small = generate_scene(seed, 128, 256)
    large = generate_scene(seed, 256, 512)
    down = cv2.resize(large.semantic, (256, 128), interpolation=cv2.INTER_NEAREST)
    assert np.mean(down == small.semantic) > 0.95


def check_scene(scene: SyntheticScene) -> None:
    thing = CITYSCAPES.is_thing_table()
    n = len(scene.instance_classes)
    inst = scene.instances
    has = inst > 0
    # Instance pixels carry their instance's (thing) class.
    lookup = np.array((IGNORE_INDEX, *scene.instance_classes), dtype=np.uint8)
    np.testing.assert_array_equal(scene.semantic[has], lookup[inst[has]])
    assert all(thing[c] for c in scene.instance_classes)
    # Everything else is stuff or void: no thing pixel without an instance.
    rest = scene.semantic[~has]
    assert not thing[rest].any()
    # Instances are numbered 1..n, each present and above the size threshold.
    areas = np.bincount(inst.ravel(), minlength=n + 1)
    assert len(areas) == n + 1
    assert (areas[1:] >= min_instance_px(*scene.semantic.shape)).all()
    assert int(inst.min()) >= 0
    assert np.mean(scene.semantic == IGNORE_INDEX) < 0.02


def test_every_scene_is_consistent(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        check_scene(scene)


def test_consistent_at_full_size() -> None:
    check_scene(generate_scene(HELD_OUT_SEED_START + 1, 512, 1024))


def test_class_coverage_and_frequencies(scenes: list[SyntheticScene]) -> None:
    names = CITYSCAPES.names
    instances = collections.Counter(names[c] for s in scenes for c in s.instance_classes)
    pixels = np.zeros(256, dtype=np.int64)
    in_scenes: collections.Counter[str] = collections.Counter()
    for scene in scenes:
        counts = np.bincount(scene.semantic.ravel(), minlength=256)
        pixels += counts
        in_scenes.update(names[i] for i in np.flatnonzero(counts[: len(names)]))
    assert set(instances) == THINGS_DRAWN
    assert instances["train"] == 0
    assert in_scenes["train"] == 0
    assert set(CITYSCAPES.names) - THINGS_DRAWN - {"train"} <= set(in_scenes)
    # Sane proportions: road and terrain everywhere, sky nearly always, cars the
    # commonest thing, road the largest class, void tiny.
    assert in_scenes["road"] == len(scenes)
    assert in_scenes["sky"] >= 0.9 * len(scenes)
    assert instances.most_common(1)[0][0] == "car"
    share = pixels / pixels.sum()
    largest = set(np.argsort(share[: len(names)])[-3:].tolist())
    assert CITYSCAPES.index("road") in largest
    assert CITYSCAPES.index("sky") in largest
    assert share[IGNORE_INDEX] < 0.002
    counts = [len(s.instance_classes) for s in scenes]
    assert 3 <= np.mean(counts) <= 9
    assert max(counts) <= MAX_THINGS
    assert min(counts) == 0  # some scenes are empty of things
    # Riders come with a two-wheeler (it may be hidden behind its rider only rarely).
    riders = instances["rider"]
    assert riders <= instances["bicycle"] + instances["motorcycle"]


def test_other_label_spaces_are_refused() -> None:
    reverse = LabelSpace(tuple(reversed(CITYSCAPES.classes)))
    with pytest.raises(ValueError, match="Cityscapes label space only"):
        generate_scene(4, *SMALL_HW, labels=reverse)


def test_dataset_indexes_seeds() -> None:
    dataset = SyntheticDataset(range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + 3), 64, 128)
    assert len(dataset) == 3
    items = list(dataset)
    assert [s.seed for s in items] == [HELD_OUT_SEED_START + i for i in range(3)]
    assert_same_scene(dataset[1], generate_scene(HELD_OUT_SEED_START + 1, 64, 128))
    with pytest.raises(IndexError):
        dataset[3]
    assert HELD_OUT_SEED_START == 1_000_000
