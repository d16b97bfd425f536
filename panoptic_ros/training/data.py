"""Training samples: sources of (image, semantic, instances), augmentation, batching.

A *source* is any sequence whose items have ``image`` [H,W,3] uint8 RGB, ``semantic``
[H,W] uint8 (255 void) and ``instances`` [H,W] int32 (0 none) attributes, e.g. the
synthetic scenes, and optionally ``ignore_mask`` [H,W] bool (crowd regions of a real
dataset) and ``soft_targets`` [C, ceil(H/s), ceil(W/s)] teacher class probabilities with
``soft_stride`` s (a pseudo-labelled dataset). :class:`TargetDataset` turns items into
Panoptic-DeepLab targets with a per-sample random generator, so the same sample index
always yields the same tensors (which makes a resumed run repeat exactly what an
uninterrupted one would do). Void and ignored pixels get no semantic, centre or offset
weight; soft targets go through the image's own flip, rescale and crop (bilinear on their
grid) and the padding gets no distillation weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.data.sample import PanopticSample
from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import IGNORE_INDEX
from panoptic_ros.training.targets import make_targets

__all__ = [
    "AugmentParams",
    "Augmented",
    "SampleSource",
    "TargetDataset",
    "augment",
    "augment_sample",
    "collate",
]


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
            no rescaling), relative to ``reference_hw``'s letterbox scale when that is set.
        scale_max: Largest random rescale factor.
        reference_hw: (height, width) of the network at inference: the rescale factors
            multiply ``min(height / H, width / W)``, the scale at which an H x W image is
            letterboxed into it. None: they are relative to the stored image.
        crop_hw: (height, width) in px of the random crop taken from the rescaled image;
            None keeps the input size. Where the rescaled image is smaller than the crop,
            the rest is padding: ``pad_value`` in the image, void and ignored in the labels.
        pad_value: Grey level of image padding; 127 is the network's mean, so padding is
            about 0 after normalisation.
        hue: Largest hue rotation as a fraction of the colour circle (0: none).
        blur_probability: Probability of blurring the crop: Gaussian or motion blur, even
            odds (0: never).
        blur_max_px: Strongest blur: Gaussian sigma up to a quarter of it, motion streaks
            up to this long (crop pixels).
    """

    flip: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    scale_min: float = 1.0
    scale_max: float = 1.0
    crop_hw: tuple[int, int] | None = None
    pad_value: int = 127
    reference_hw: tuple[int, int] | None = None
    hue: float = 0.0
    blur_probability: float = 0.0
    blur_max_px: float = 5.0


@dataclass(frozen=True, slots=True)
class Augmented:
    """One augmented sample at the crop size (h, w).

    Attributes:
        image: [h, w, 3] uint8 RGB.
        semantic: [h, w] uint8 class index, 255 void.
        instances: [h, w] int32 instance number, 0 none.
        ignore: [h, w] bool, True where training ignores the pixel.
        soft_targets: [C, h / s, w / s] float32 teacher probabilities on the output grid
            (s = ``out_stride``), or None when the sample has none.
        soft_weight: [h / s, w / s] float32, 1 where the soft targets come from the
            image, 0 on padding (None with ``soft_targets``).
    """

    image: npt.NDArray[np.uint8]
    semantic: npt.NDArray[np.uint8]
    instances: npt.NDArray[np.int32]
    ignore: npt.NDArray[np.bool_]
    soft_targets: npt.NDArray[np.float32] | None = None
    soft_weight: npt.NDArray[np.float32] | None = None


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


def _hue_rotation(angle: float) -> npt.NDArray[np.float32]:
    """[3, 3] RGB matrix rotating colours by ``angle`` radians about the grey axis."""
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = cos * np.eye(3) + sin * cross + (1.0 - cos) * np.outer(axis, axis)
    return rotation.astype(np.float32)


def _motion_kernel(length: float, angle: float) -> npt.NDArray[np.float32]:
    """A normalised line kernel ``length`` px long at ``angle`` radians (anti-aliased)."""
    half = int(np.ceil(length / 2.0))
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.uint8)
    dx, dy = 0.5 * length * np.cos(angle), 0.5 * length * np.sin(angle)
    shift = 4  # sub-pixel end points
    scale = 1 << shift
    cv2.line(
        kernel,
        (round((half - dx) * scale), round((half - dy) * scale)),
        (round((half + dx) * scale), round((half + dy) * scale)),
        255,
        1,
        cv2.LINE_AA,
        shift,
    )
    weights = kernel.astype(np.float32)
    return weights / max(float(weights.sum()), 1.0)


def _draw_blur(rng: np.random.Generator, params: AugmentParams) -> tuple[str, float, float]:
    """Draw (kind, size, angle): kind '' (none), 'gaussian' (sigma) or 'motion' (length)."""
    if not params.blur_probability or rng.random() >= params.blur_probability:
        return "", 0.0, 0.0
    if rng.random() < 0.5:
        return "gaussian", float(rng.uniform(0.25, max(0.25, params.blur_max_px / 4.0))), 0.0
    length = float(rng.uniform(min(2.0, params.blur_max_px), params.blur_max_px))
    return "motion", length, float(rng.uniform(0.0, np.pi))


def _blur(image: npt.NDArray[np.uint8], kind: str, size: float, angle: float) -> Any:
    if kind == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), sigmaX=size, borderType=cv2.BORDER_REFLECT)
    return cv2.filter2D(image, -1, _motion_kernel(size, angle), borderType=cv2.BORDER_REFLECT)


def _soft_matrix(
    matrix: npt.NDArray[np.float64],
    *,
    flipped: bool,
    width: int,
    in_stride: int,
    out_stride: int,
) -> npt.NDArray[np.float64]:
    """The image's output -> input pixel map, as output cell -> input soft-target cell.

    A cell of stride s is centred on pixel ``s * i + (s - 1) / 2``; a flip (done on the
    image arrays before ``matrix`` applies) maps input x to ``width - 1 - x``.
    """
    centre_out = (out_stride - 1) / 2.0
    centre_in = (in_stride - 1) / 2.0

    def axis(a: float, b: float, flip_width: int | None) -> tuple[float, float]:
        if flip_width is not None:  # flipped-image pixel -> stored-image pixel
            a, b = -a, flip_width - 1 - b
        return a * out_stride / in_stride, (a * centre_out + b - centre_in) / in_stride

    ax, bx = axis(float(matrix[0, 0]), float(matrix[0, 2]), width if flipped else None)
    ay, by = axis(float(matrix[1, 1]), float(matrix[1, 2]), None)
    return np.array([[ax, 0.0, bx], [0.0, ay, by]])


def _warp_soft(
    soft: npt.NDArray[Any],
    matrix: npt.NDArray[np.float64],
    out_hw: tuple[int, int],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Resample [C, h, w] probabilities bilinearly; weight 1 where they come from inside."""
    channels, height, width = soft.shape
    planes = np.ascontiguousarray(np.moveaxis(soft.astype(np.float32), 0, -1))
    warped = _warp(planes, matrix, out_hw, nearest=False, border=None)
    warped = warped.reshape(*out_hw, channels)
    inside = _warp(np.ones((height, width), np.uint8), matrix, out_hw, nearest=True, border=0)
    return (
        np.ascontiguousarray(np.moveaxis(warped, -1, 0)),
        inside.astype(np.float32),
    )


def augment_sample(
    image: npt.NDArray[np.uint8],
    semantic: npt.NDArray[np.uint8],
    instances: npt.NDArray[np.int32],
    ignore: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    params: AugmentParams,
    *,
    soft_targets: npt.NDArray[Any] | None = None,
    soft_stride: int = 4,
    out_stride: int = 4,
) -> Augmented:
    """Flip, rescale, crop, colour-jitter and blur one sample (targets are computed after).

    The random draws come in a fixed order (flip, colour factors, scale, crop offsets,
    then hue and blur when they are on) from ``rng``, so a sample's augmentation depends
    on its generator only. The image is resampled bilinearly, the label maps by nearest
    neighbour through the same pixel-centre mapping (output pixel u <- input
    (u + offset + 0.5) / scale - 0.5), so they stay aligned; soft targets go through the
    same mapping expressed on their cell grids, bilinearly.

    Args:
        image: [H, W, 3] uint8 RGB.
        semantic: [H, W] uint8 class index, 255 void.
        instances: [H, W] int32 instance number, 0 none.
        ignore: [H, W] bool, True where training ignores the pixel (crowd regions).
        rng: The sample's random generator.
        params: What to draw.
        soft_targets: Optional [C, ceil(H / soft_stride), ceil(W / soft_stride)] teacher
            probabilities.
        soft_stride: Image pixels per soft-target cell side.
        out_stride: Cell side of the returned soft targets (the network's output stride).

    Returns:
        The sample at ``params.crop_hw`` (or H, W), transformed alike.
    """
    flipped = bool(rng.random() < params.flip)
    if flipped:
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
    if params.reference_hw is not None:  # relative to the letterbox scale at inference
        scale *= min(params.reference_hw[0] / height, params.reference_hw[1] / width)
    out_h, out_w = params.crop_hw if params.crop_hw is not None else (height, width)
    offset_y = _crop_offset(height * scale, out_h, rng)
    offset_x = _crop_offset(width * scale, out_w, rng)
    hue = float(rng.uniform(-params.hue, params.hue)) if params.hue else 0.0
    blur = _draw_blur(rng, params)

    matrix = np.array(
        [
            [1.0 / scale, 0.0, (offset_x + 0.5) / scale - 0.5],
            [0.0, 1.0 / scale, (offset_y + 0.5) / scale - 0.5],
        ]
    )
    outside: npt.NDArray[np.bool_] | None = None  # padding pixels, when there are any
    if scale != 1.0 or (out_h, out_w) != (height, width) or offset_y or offset_x:
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
    if hue:
        pixels = pixels @ _hue_rotation(2.0 * np.pi * hue).T
    image = np.clip(pixels, 0, 255).astype(np.uint8)
    if blur[0]:
        image = _blur(image, *blur)
    if outside is not None:
        image[outside] = params.pad_value

    soft = weight = None
    if soft_targets is not None:
        soft_matrix = _soft_matrix(
            matrix, flipped=flipped, width=width, in_stride=soft_stride, out_stride=out_stride
        )
        soft, weight = _warp_soft(
            soft_targets, soft_matrix, (out_h // out_stride, out_w // out_stride)
        )
    return Augmented(
        np.ascontiguousarray(image),
        np.ascontiguousarray(semantic),
        np.ascontiguousarray(instances),
        np.ascontiguousarray(ignore),
        soft,
        weight,
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
    """:func:`augment_sample` without soft targets, as (image, semantic, instances, ignore).

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
    out = augment_sample(image, semantic, instances, ignore, rng, params)
    return out.image, out.semantic, out.instances, out.ignore


class TargetDataset:
    """Map-style dataset: sample index -> dict of NumPy arrays (image + targets).

    Args:
        source: Function from a source index to a sample.
        indices: Source index of each sample position (length = samples in the run).
        seed: Seed mixed with the sample position for augmentation.
        augment_params: Augmentation, or None for none (evaluation).
        stride: Network output stride.
        soft_classes: C when the run distils soft targets: every item then has
            ``soft_targets`` [C, h, w] float16 and ``soft_weight`` [h, w] float32 (zero for
            a sample without them, e.g. a synthetic scene), so batches stack. None: soft
            targets of the samples are not read.

    Raises:
        ConfigError: (on access) A sample's soft targets have another number of classes.
    """

    def __init__(
        self,
        source: SampleSource,
        indices: Sequence[int],
        *,
        seed: int = 0,
        augment_params: AugmentParams | None = AugmentParams(),
        stride: int = 4,
        soft_classes: int | None = None,
    ) -> None:
        self.source = source
        self.indices = indices
        self.seed = seed
        self.augment_params = augment_params
        self.stride = stride
        self.soft_classes = soft_classes

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
        soft = getattr(sample, "soft_targets", None) if self.soft_classes else None
        soft_stride = int(getattr(sample, "soft_stride", 4))
        if soft is not None and soft.shape[0] != self.soft_classes:
            raise ConfigError(
                f"soft targets of sample {self.indices[position]} have {soft.shape[0]} "
                f"classes; the model has {self.soft_classes}"
            )
        soft_out = soft_weight = None
        if self.augment_params is not None:
            rng = np.random.default_rng([self.seed, position])
            out = augment_sample(
                image,
                semantic,
                instances,
                ignore,
                rng,
                self.augment_params,
                soft_targets=soft,
                soft_stride=soft_stride,
                out_stride=self.stride,
            )
            image, semantic, instances, ignore = out.image, out.semantic, out.instances, out.ignore
            soft_out, soft_weight = out.soft_targets, out.soft_weight
        elif soft is not None:
            identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
            soft_out, soft_weight = _warp_soft(
                soft,
                _soft_matrix(
                    identity,
                    flipped=False,
                    width=semantic.shape[1],
                    in_stride=soft_stride,
                    out_stride=self.stride,
                ),
                (semantic.shape[0] // self.stride, semantic.shape[1] // self.stride),
            )
        targets = make_targets(semantic, instances, stride=self.stride, ignore_mask=ignore)
        item: dict[str, npt.NDArray[Any]] = {
            "image": np.ascontiguousarray(image),
            "semantic": targets.semantic,
            "semantic_weight": targets.semantic_weight,
            "center_heatmap": targets.center_heatmap,
            "center_weight": targets.center_weight,
            "offsets": targets.offsets,
            "offset_weight": targets.offset_weight,
        }
        if self.soft_classes:
            cells = targets.semantic.shape
            if soft_out is None or soft_weight is None:
                soft_out = np.zeros((self.soft_classes, *cells), np.float32)
                soft_weight = np.zeros(cells, np.float32)
            item["soft_targets"] = soft_out.astype(np.float16)
            item["soft_weight"] = soft_weight
        return item


def collate(samples: Sequence[dict[str, npt.NDArray[Any]]]) -> dict[str, Any]:
    """Stack samples into torch tensors (imported here: the dataset itself is torch-free)."""
    import torch

    return {key: torch.from_numpy(np.stack([s[key] for s in samples])) for key in samples[0]}
