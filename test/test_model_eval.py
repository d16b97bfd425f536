"""Scoring a pipeline over a dataset: one image at a time, the numbers of evaluate_maps."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from test_panoptic_format import load_eval_speed

from panoptic_ros.data.synthetic import generate_scene
from panoptic_ros.errors import EvaluationError
from panoptic_ros.evaluation.model_eval import evaluate_pipeline, prefetch
from panoptic_ros.evaluation.panoptic_quality import MapAccumulator, evaluate_maps
from panoptic_ros.labels import CITYSCAPES

HEIGHT, WIDTH = 64, 128


class ReplayPipeline:
    """A stand-in pipeline: the prediction of image k is the k-th perturbed map pair.

    The image's first pixel carries k, so the pipeline needs no model.
    """

    labels = CITYSCAPES

    def __init__(self, predictions: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.predictions = predictions
        self.outputs: list[weakref.ref[np.ndarray]] = []

    def process(self, image: np.ndarray) -> Any:
        semantic, instances = self.predictions[int(image[0, 0, 0])]
        result = SimpleNamespace(semantic=semantic.copy(), instance_ids=instances.astype(np.uint16))
        self.outputs.append(weakref.ref(result.semantic))
        return result


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Six (gt semantic, gt instances, pred semantic, pred instances) with every PQ rule."""
    out = []
    for index in range(6):
        scene = generate_scene(700 + index % 3, HEIGHT, WIDTH)
        (gt_sem, gt_inst), (pred_sem, pred_inst) = load_eval_speed().perturb(
            scene.semantic, scene.instances, index
        )
        out.append((gt_sem, gt_inst, pred_sem, pred_inst))
    return out


def samples_of(cases: list[Any], alive: list[weakref.ref[Any]]) -> Iterator[Any]:
    """Fresh samples, one at a time; checks that each scored sample was dropped."""
    for index, (gt_sem, gt_inst, _, _) in enumerate(cases):
        # Everything older than the previous sample must be gone by now.
        assert all(ref() is None for ref in alive[: max(0, index - 1)]), index
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        image[0, 0, 0] = index
        sample = SimpleNamespace(image=image, semantic=gt_sem.copy(), instances=gt_inst.copy())
        alive.append(weakref.ref(sample.semantic))
        yield sample


def test_pipeline_scores_equal_evaluate_maps_one_image_at_a_time(cases: list[Any]) -> None:
    pipeline = ReplayPipeline([(c[2], c[3]) for c in cases])
    alive: list[weakref.ref[Any]] = []
    result = evaluate_pipeline(pipeline, samples_of(cases, alive), progress=True)  # type: ignore[arg-type]
    expected = evaluate_maps(cases, CITYSCAPES)
    assert result.to_dict() == expected.to_dict()  # identical, not merely close
    assert len(alive) == len(cases)
    assert all(ref() is None for ref in alive + pipeline.outputs)
    quality = list(result.per_class.values())
    assert sum(q.tp for q in quality) and sum(q.fp for q in quality) and sum(q.fn for q in quality)
    assert 0.0 < result.pq < 1.0 and 0.0 < result.miou < 1.0


def test_accumulator_adds_up_and_resets(cases: list[Any]) -> None:
    accumulator = MapAccumulator(CITYSCAPES)
    for case in cases[:3]:
        accumulator.add(*case)
    assert accumulator.images == 3
    assert accumulator.result().to_dict() == evaluate_maps(cases[:3], CITYSCAPES).to_dict()
    accumulator.reset()
    accumulator.add(*cases[4])
    assert accumulator.result().to_dict() == evaluate_maps(cases[4:5], CITYSCAPES).to_dict()
    gt_sem, gt_inst, pred_sem, pred_inst = cases[0]
    with pytest.raises(EvaluationError, match="differ"):
        accumulator.add(gt_sem, gt_inst, pred_sem[:, :-1], pred_inst[:, :-1])


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_prefetch_keeps_order_and_bounds_what_is_loaded(threads: int) -> None:
    lock = threading.Lock()
    loaded: list[int] = []

    def load(index: int) -> int:
        with lock:
            loaded.append(index)
        return index * 10

    taken = []
    for value in prefetch(load, 20, threads):
        taken.append(value)
        with lock:
            ahead = len(loaded) - len(taken)
        assert ahead <= 2 * threads, (len(taken), ahead)
    assert taken == [10 * i for i in range(20)]


def test_prefetch_raises_the_loader_error_in_order() -> None:
    def load(index: int) -> int:
        if index == 3:
            raise EvaluationError("image 3 is unreadable")
        return index

    values = prefetch(load, 8, 2)
    assert [next(values) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(EvaluationError, match="image 3 is unreadable"):
        next(values)
