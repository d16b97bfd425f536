"""Training samples: sources of (image, semantic, instances), augmentation, batching.

A *source* is any sequence whose items have ``image`` [H,W,3] uint8 RGB, ``semantic``
[H,W] uint8 (255 void) and ``instances`` [H,W] int32 (0 none) attributes, e.g. the
synthetic scenes, and optionally ``ignore_mask`` [H,W] bool (crowd regions of a real
dataset). :class:`TargetDataset` turns items into Panoptic-DeepLab targets with a
per-sample random generator, so the same sample index always yields the same tensors
(which makes a resumed run repeat exactly what an uninterrupted one would do). Void and
ignored pixels get no semantic, centre or offset weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from panoptic_ros.training.targets import make_targets

__all__ = ["AugmentParams", "PanopticSample", "SampleSource", "TargetDataset", "augment", "collate"]


class PanopticSample(Protocol):
    """One annotated image."""

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """[H, W, 3] uint8 RGB."""
        ...

    @property
    def semantic(self) -> npt.NDArray[np.uint8]:
        """[H, W] uint8 class index, 255 void."""
        ...

    @property
    def instances(self) -> npt.NDArray[np.int32]:
        """[H, W] int32 instance number, 0 none."""
        ...


SampleSource = Callable[[int], PanopticSample]


@dataclass(frozen=True, slots=True)
class AugmentParams:
    """Photometric and geometric augmentation.

    Attributes:
        flip: Probability of a horizontal flip.
        brightness: Max relative brightness change (0.2 = +-20%).
        contrast: Max relative contrast change.
        saturation: Max relative saturation change.
    """

    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def augment(
    image: npt.NDArray[np.uint8],
    semantic: npt.NDArray[np.uint8],
    instances: npt.NDArray[np.int32],
    ignore: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    params: AugmentParams,
) -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.bool_]
]:
    """Flip and colour-jitter one sample (targets are computed after, so offsets stay right).

    Args:
        image: [H, W, 3] uint8 RGB.
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number, 0 none.
        ignore: [H, W] bool, True where training ignores the pixel (crowd regions).
        rng: The sample's random generator.
        params: What to draw.

    Returns:
        (image, semantic, instances, ignore), transformed alike.
    """
    if rng.random() < params.flip:
        image, semantic, instances = image[:, ::-1], semantic[:, ::-1], instances[:, ::-1]
        ignore = ignore[:, ::-1]
    pixels = image.astype(np.float32)
    if params.brightness:
        pixels *= 1.0 + rng.uniform(-params.brightness, params.brightness)
    if params.contrast:
        mean = pixels.mean()
        pixels = (pixels - mean) * (1.0 + rng.uniform(-params.contrast, params.contrast)) + mean
    if params.saturation:
        gray = pixels.mean(axis=2, keepdims=True)
        pixels = (pixels - gray) * (1.0 + rng.uniform(-params.saturation, params.saturation)) + gray
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    return (
        image,
        np.ascontiguousarray(semantic),
        np.ascontiguousarray(instances),
        np.ascontiguousarray(ignore),
    )


class TargetDataset:
    """Map-style dataset: sample index -> dict of NumPy arrays (image + targets).

    Args:
        source: Function from a source index to a sample.
        indices: Source index of each sample position (length = samples in the run).
        seed: Seed mixed with the sample position for augmentation.
        augment_params: Augmentation, or None for none (evaluation).
        stride: Network output stride.
    """

    def __init__(
        self,
        source: SampleSource,
        indices: Sequence[int],
        *,
        seed: int = 0,
        augment_params: AugmentParams | None = AugmentParams(),
        stride: int = 4,
    ) -> None:
        self.source = source
        self.indices = indices
        self.seed = seed
        self.augment_params = augment_params
        self.stride = stride

    def __len__(self) -> int:
        """Number of samples."""
        return len(self.indices)

    def __getitem__(self, position: int) -> dict[str, npt.NDArray[Any]]:
        """Return the image and targets of sample ``position``."""
        sample = self.source(self.indices[position])
        image, semantic, instances = sample.image, sample.semantic, sample.instances
        # Crowd regions of real datasets; synthetic scenes have none.
        ignore = getattr(sample, "ignore_mask", None)
        if ignore is None:
            ignore = np.zeros(semantic.shape, dtype=np.bool_)
        if self.augment_params is not None:
            rng = np.random.default_rng([self.seed, position])
            image, semantic, instances, ignore = augment(
                image, semantic, instances, ignore, rng, self.augment_params
            )
        targets = make_targets(semantic, instances, stride=self.stride, ignore_mask=ignore)
        return {
            "image": np.ascontiguousarray(image),
            "semantic": targets.semantic,
            "semantic_weight": targets.semantic_weight,
            "center_heatmap": targets.center_heatmap,
            "center_weight": targets.center_weight,
            "offsets": targets.offsets,
            "offset_weight": targets.offset_weight,
        }


def collate(samples: Sequence[dict[str, npt.NDArray[Any]]]) -> dict[str, Any]:
    """Stack samples into torch tensors (imported here: the dataset itself is torch-free)."""
    import torch

    return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
