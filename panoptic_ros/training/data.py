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
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.data.sample import PanopticSample
from panoptic_ros.labels import IGNORE_INDEX
from panoptic_ros.training.targets import make_targets

__all__ = ["AugmentParams", "SampleSource", "TargetDataset", "augment", "collate"]


SampleSource = Callable[[int], PanopticSample]


@dataclass(frozen=True, slots=True)
class AugmentParams:
    """Photometric and geometric augmentation.

    Attributes:
        flip: Probability of a horizontal flip.
        brightness: Max relative brightness change (0.2 = +-20%).
        contrast: Max relative contrast change.
        saturation: Max relative saturation change.
        scale_min: Smallest random rescale factor of the image (1.0 with ``scale_max`` 1.0:
            no rescaling).
        scale_max: Largest random rescale factor.
        crop_hw: (height, width) in px of the random crop taken from the rescaled image;
            None keeps the input size. Where the rescaled image is smaller than the crop,
            the rest is padding: ``pad_value`` in the image, void and ignored in the labels.
        pad_value: Grey level of image padding; 127 is the network's mean, so padding is
            about 0 after normalisation.
    """

    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    scale_min: float = 1.0
    scale_max: float = 1.0
    crop_hw: tuple[int, int] | None = None
    pad_value: int = 127


def _crop_offset(scaled_px: float, crop_px: int, rng: np.random.Generator) -> int:
    """Where the crop starts in the rescaled image, in px (negative: the image is pasted in)."""
    span = int(np.floor(abs(scaled_px - crop_px)))
    if span == 0:  # no draw: an unscaled, uncropped sample keeps the generator's sequence
        return 0
    offset = int(rng.integers(0, span + 1))
    return offset if scaled_px >= crop_px else -offset


def _warp(
    array: npt.NDArray[Any],
    matrix: npt.NDArray[np.float64],
    size_hw: tuple[int, int],
    *,
    nearest: bool,
    border: int | None,
) -> npt.NDArray[Any]:
    """Resample ``array`` at output pixel -> input pixel ``matrix`` (2x3); None = replicate."""
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    if border is None:
        mode, value = cv2.BORDER_REPLICATE, 0
    else:
        mode, value = cv2.BORDER_CONSTANT, border
    return cv2.warpAffine(
        np.ascontiguousarray(array),
        matrix,
        (size_hw[1], size_hw[0]),
        flags=flags,
        borderMode=mode,
        borderValue=value,
    )


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
    """Flip, rescale, crop and colour-jitter one sample (targets are computed after).

    The random draws come in a fixed order (flip, colour factors, scale, crop offsets) from
    ``rng``, so a sample's augmentation depends on its generator only. The image is
    resampled bilinearly, the label maps by nearest neighbour through the same pixel-centre
    mapping (output pixel u <- input (u + offset + 0.5) / scale - 0.5), so they stay aligned.

    Args:
        image: [H, W, 3] uint8 RGB.
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number, 0 none.
        ignore: [H, W] bool, True where training ignores the pixel (crowd regions).
        rng: The sample's random generator.
        params: What to draw.

    Returns:
        (image [h, w, 3], semantic, instances, ignore [h, w]) with (h, w) =
        ``params.crop_hw`` (or H, W), transformed alike.
    """
    if rng.random() < params.flip:
        image, semantic, instances = image[:, ::-1], semantic[:, ::-1], instances[:, ::-1]
        ignore = ignore[:, ::-1]
    brightness = (
        1.0 + rng.uniform(-params.brightness, params.brightness) if params.brightness else 1.0
    )
    contrast = 1.0 + rng.uniform(-params.contrast, params.contrast) if params.contrast else 1.0
    saturation = (
        1.0 + rng.uniform(-params.saturation, params.saturation) if params.saturation else 1.0
    )
    scale = params.scale_min
    if params.scale_max > params.scale_min:
        scale = float(rng.uniform(params.scale_min, params.scale_max))
    height, width = semantic.shape
    out_h, out_w = params.crop_hw if params.crop_hw is not None else (height, width)
    offset_y = _crop_offset(height * scale, out_h, rng)
    offset_x = _crop_offset(width * scale, out_w, rng)

    outside: npt.NDArray[np.bool_] | None = None  # padding pixels, when there are any
    if scale != 1.0 or (out_h, out_w) != (height, width) or offset_y or offset_x:
        matrix = np.array(
            [
                [1.0 / scale, 0.0, (offset_x + 0.5) / scale - 0.5],
                [0.0, 1.0 / scale, (offset_y + 0.5) / scale - 0.5],
            ]
        )
        size = (out_h, out_w)
        inside = _warp(np.ones((height, width), np.uint8), matrix, size, nearest=True, border=0)
        outside = inside == 0
        image = _warp(image, matrix, size, nearest=False, border=None)
        semantic = _warp(semantic, matrix, size, nearest=True, border=IGNORE_INDEX)
        instances = _warp(instances, matrix, size, nearest=True, border=0)
        ignore = _warp(ignore.view(np.uint8), matrix, size, nearest=True, border=1).astype(bool)

    pixels = image.astype(np.float32)
    if params.brightness:
        pixels *= brightness
    if params.contrast:
        mean = pixels.mean()
        pixels = (pixels - mean) * contrast + mean
    if params.saturation:
        gray = pixels.mean(axis=2, keepdims=True)
        pixels = (pixels - gray) * saturation + gray
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    if outside is not None:
        image[outside] = params.pad_value
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
