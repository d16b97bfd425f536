"""Run a pipeline over annotated images and score it (PQ/SQ/RQ and mIoU).

Images are scored as they come: after each one only its per-category counts stay
(:class:`~panoptic_ros.evaluation.panoptic_quality.MapAccumulator`), so Cityscapes val
(500 images at 1024x2048, about 10 GB of maps) needs the memory of a few images. Reading
and decoding the next images can run on threads while the model works on the current one
(:func:`prefetch`).
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from panoptic_ros.data.sample import PanopticSample
from panoptic_ros.evaluation.panoptic_quality import MapAccumulator, PQResult
from panoptic_ros.pipeline import PanopticPipeline

__all__ = [
    "evaluate_pipeline",
    "evaluate_torch_network",
    "held_out_synthetic",
    "prefetch",
]

_T = TypeVar("_T")


def held_out_synthetic(count: int, height: int, width: int) -> list[Any]:
    """Return ``count`` synthetic scenes from the held-out seed range (never used in training)."""
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene

    return [generate_scene(HELD_OUT_SEED_START + i, height, width) for i in range(count)]


def prefetch(load: Callable[[int], _T], count: int, threads: int) -> Iterator[_T]:
    """Yield ``load(0), ..., load(count - 1)`` in order, loading ahead on threads.

    At most ``2 * threads`` items are loaded but not yet taken, so memory stays bounded.
    OpenCV's decoders and most NumPy work release the GIL, so reading the next images
    overlaps with the model on the current one.

    Args:
        load: Index -> item (e.g. a dataset source).
        count: Number of items.
        threads: Loader threads; 0 loads each item in the caller's thread when it is taken.

    Raises:
        Whatever ``load`` raises, when its item is reached.
    """
    if threads <= 0:
        for index in range(count):
            yield load(index)
        return
    depth = 2 * threads
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="eval-load") as pool:
        pending: deque[concurrent.futures.Future[_T]] = deque()
        submitted = 0
        try:
            while submitted < count or pending:
                while submitted < count and len(pending) < depth:
                    pending.append(pool.submit(load, submitted))
                    submitted += 1
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def evaluate_pipeline(
    pipeline: PanopticPipeline,
    samples: Iterable[PanopticSample],
    *,
    progress: bool = False,
    total: int | None = None,
    accumulator: MapAccumulator | None = None,
) -> PQResult:
    """Segment every sample's image and compare with its ground truth, one at a time.

    Args:
        pipeline: The pipeline to score (any backend).
        samples: Items with ``image`` [H, W, 3] uint8 RGB, ``semantic`` [H, W] uint8 (255
            void) and ``instances`` [H, W] integer (0 none); may be a generator: each
            sample is dropped once scored.
        progress: Show a progress bar on stderr (when it is a terminal).
        total: Number of samples for the progress bar (default ``len(samples)`` if any).
        accumulator: Where to add the counts (default a new one), for callers that read
            more from it than the result (e.g. the class confusion).

    Returns:
        PQ/SQ/RQ for all, things and stuff, per class, and mIoU: the numbers of
        :func:`~panoptic_ros.evaluation.panoptic_quality.evaluate_maps` on the same maps.

    Raises:
        EvaluationError: A prediction and its ground truth differ in size, or a map is
            outside the label space.
    """
    from tqdm import tqdm

    if total is None and isinstance(samples, Sequence):
        total = len(samples)
    if accumulator is None:
        accumulator = MapAccumulator(pipeline.labels)
    bar = tqdm(
        samples,
        total=total,
        desc="eval",
        unit="img",
        disable=not progress or not sys.stderr.isatty(),
        file=sys.stderr,
    )
    with bar:
        for sample in bar:
            result = pipeline.process(np.ascontiguousarray(sample.image))
            accumulator.add(
                sample.semantic,
                sample.instances,
                result.semantic,
                result.instance_ids.astype(np.int32),
            )
            del sample, result  # only the counts outlive the image
    return accumulator.result()


def evaluate_torch_network(
    network: Any,
    metadata: Any,
    samples: Sequence[PanopticSample],
    fusion: Any,
    *,
    device: str = "cpu",
) -> PQResult:
    """Score an in-memory torch network (used during training)."""
    from panoptic_ros.backends.torch_backend import TorchBackend

    backend = TorchBackend(network, metadata, device=device)
    pipeline = PanopticPipeline(backend, metadata.labels, fusion)
    return evaluate_pipeline(pipeline, samples)
