"""Run a pipeline over annotated images and score it (PQ/SQ/RQ and mIoU)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from panoptic_ros.evaluation.panoptic_quality import PQResult, evaluate_maps
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.training.data import PanopticSample

__all__ = ["evaluate_pipeline", "evaluate_torch_network", "held_out_synthetic"]


def held_out_synthetic(count: int, height: int, width: int) -> list[Any]:
    """Return ``count`` synthetic scenes from the held-out seed range (never used in training)."""
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene

    return [generate_scene(HELD_OUT_SEED_START + i, height, width) for i in range(count)]


def evaluate_pipeline(
    pipeline: PanopticPipeline, samples: Iterable[PanopticSample], *, progress: bool = False
) -> PQResult:
    """Segment every sample's image and compare with its ground truth.

    Args:
        pipeline: The pipeline to score (any backend).
        samples: Items with ``image``, ``semantic`` (255 void) and ``instances`` (0 none).
        progress: Show a progress bar on stderr.

    Returns:
        PQ/SQ/RQ for all, things and stuff, per class.
    """
    from tqdm import tqdm

    pairs = []
    items: Sequence[PanopticSample] | Iterable[PanopticSample] = samples
    for sample in tqdm(
        items,
        desc="eval",
        unit="img",
        disable=not progress or not sys.stderr.isatty(),
        file=sys.stderr,
    ):
        result = pipeline.process(np.ascontiguousarray(sample.image))
        pairs.append(
            (
                sample.semantic,
                sample.instances,
                result.semantic,
                result.instance_ids.astype(np.int32),
            )
        )
    return evaluate_maps(pairs, pipeline.labels)


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
