"""EfficientNet backbones with compound scaling, returning features keyed by stride.

One generator, :func:`efficientnet_arch`, holds the B0 stage table and the (width, depth)
coefficients of B0..B5 and Lite0..Lite4, and turns a name into a block-by-block plan; the
:class:`EfficientNet` module only instantiates that plan. The Lite variants (Google's
EfficientNet-Lite) drop squeeze-excite, use ReLU6 and keep the stem width and the repeats of
the first and last stages fixed (as the TF reference's ``fix_head_stem`` and timm's
``fix_first_last`` do): friendlier to INT8 and to TensorRT's layer fusion. Features are
taken at the end of the last stage of each stride (4, 8, 16, 32); there is no classifier
head. Padding is symmetric (``k // 2``), not TF "same": the only difference is at the
borders of stride-2 convs, which fine-tuning absorbs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
from torch import nn

from panoptic_ros.errors import ConfigError
from panoptic_ros.modeling.blocks import ConvBnAct, InvertedResidual

__all__ = [
    "BACKBONES",
    "BackboneArch",
    "BlockSpec",
    "EfficientNet",
    "FeatureInfo",
    "build_backbone",
    "efficientnet_arch",
    "round_channels",
]

#: name -> (width coefficient, depth coefficient, lite), Tan & Le 2019 and EfficientNet-Lite.
BACKBONES: Final[dict[str, tuple[float, float, bool]]] = {
    "efficientnet_b0": (1.0, 1.0, False),
    "efficientnet_b1": (1.0, 1.1, False),
    "efficientnet_b2": (1.1, 1.2, False),
    "efficientnet_b3": (1.2, 1.4, False),
    "efficientnet_b4": (1.4, 1.8, False),
    "efficientnet_b5": (1.6, 2.2, False),
    "efficientnet_lite0": (1.0, 1.0, True),
    "efficientnet_lite1": (1.0, 1.1, True),
    "efficientnet_lite2": (1.1, 1.2, True),
    "efficientnet_lite3": (1.2, 1.4, True),
    "efficientnet_lite4": (1.4, 1.8, True),
}


def round_channels(channels: float, divisor: int = 8) -> int:
    """Scale-and-round as the reference: nearest multiple of 8, never 10% below."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One MBConv block of a generated architecture."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expand_ratio: int


@dataclass(frozen=True, slots=True)
class BackboneArch:
    """A generated EfficientNet: stem width, blocks per stage, activation and SE ratio."""

    name: str
    stem_channels: int
    stages: tuple[tuple[BlockSpec, ...], ...]
    act_layer: type[nn.Module]
    se_ratio: float
    head_channels: int  # width of the (omitted) classifier conv_head, for reference


def efficientnet_arch(name: str) -> BackboneArch:
    """Generate the block plan of an EfficientNet by compound scaling of B0.

    Args:
        name: One of :data:`BACKBONES`.

    Returns:
        Stem width and, per stage, every block's channels, kernel, stride and expansion.

    Raises:
        ConfigError: Unknown name.
    """
    # (expand ratio, kernel, stride, channels, repeats) of EfficientNet-B0 (Tan & Le 2019,
    # table 1); stage 0 is timm's depthwise-separable block (expand ratio 1).
    b0_table = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    width, depth, lite = BACKBONES[name]
    stem = 32 if lite else round_channels(32 * width)
    stages: list[tuple[BlockSpec, ...]] = []
    in_channels = stem
    for index, (expand, kernel, stride, channels, repeats) in enumerate(b0_table):
        out_channels = round_channels(channels * width)
        fixed = lite and index in (0, len(b0_table) - 1)
        count = repeats if fixed else math.ceil(repeats * depth)
        blocks = []
        for repeat in range(count):
            blocks.append(
                BlockSpec(in_channels, out_channels, kernel, stride if repeat == 0 else 1, expand)
            )
            in_channels = out_channels
        stages.append(tuple(blocks))
    return BackboneArch(
        name=name,
        stem_channels=stem,
        stages=tuple(stages),
        act_layer=nn.ReLU6 if lite else nn.SiLU,
        se_ratio=0.0 if lite else 0.25,
        head_channels=1280 if lite else round_channels(1280 * width),
    )


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    """Channels and reduction (stride) of one returned feature level."""

    stride: int
    channels: int
    stage: int


class EfficientNet(nn.Module):
    """EfficientNet trunk: stem, seven stages of MBConv blocks, features by stride.

    Args:
        name: One of :data:`BACKBONES`.

    Raises:
        ConfigError: Unknown name.
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        arch = efficientnet_arch(name)
        self.name = name
        self.arch = arch
        self.stem = ConvBnAct(3, arch.stem_channels, 3, stride=2, act_layer=arch.act_layer)
        stages: list[nn.Sequential] = []
        infos: dict[int, FeatureInfo] = {}
        stride = 2
        for index, specs in enumerate(arch.stages):
            stages.append(
                nn.Sequential(
                    *(
                        InvertedResidual(
                            spec.in_channels,
                            spec.out_channels,
                            spec.kernel_size,
                            stride=spec.stride,
                            expand_ratio=spec.expand_ratio,
                            se_ratio=arch.se_ratio,
                            act_layer=arch.act_layer,
                        )
                        for spec in specs
                    )
                )
            )
            stride *= specs[0].stride
            if stride >= 4:
                # Overwritten by later stages of the same stride: the last one provides it.
                infos[stride] = FeatureInfo(stride, specs[-1].out_channels, index)
        self.stages = nn.ModuleList(stages)
        self.feature_info = tuple(infos[s] for s in (4, 8, 16, 32))
        for finer, coarser in zip(self.feature_info, self.feature_info[1:], strict=False):
            if not (finer.stride < coarser.stride and finer.stage < coarser.stage):
                raise ConfigError(f"{name}: feature levels are not monotonic: {self.feature_info}")
        self._taps = {info.stage: info.stride for info in self.feature_info}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Extract multi-scale features.

        Args:
            x: [N, 3, H, W] float32, normalised; H and W multiples of 32.

        Returns:
            {4: [N, C4, H/4, W/4], 8: ..., 16: ..., 32: [N, C32, H/32, W/32]}, channels as
            in :attr:`feature_info`.
        """
        features: dict[int, torch.Tensor] = {}
        x = self.stem(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._taps:
                features[self._taps[index]] = x
        return features


def build_backbone(name: str) -> EfficientNet:
    """Build a backbone by name (random init; see :mod:`.pretrained` for weights)."""
    return EfficientNet(name)
