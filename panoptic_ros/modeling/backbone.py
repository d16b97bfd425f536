"""EfficientNet backbones with compound scaling, returning features keyed by stride.

One generator holds the B0 stage table and the (width, depth) coefficients of B0..B5 and
Lite0..Lite4. The Lite variants (Google's EfficientNet-Lite) drop squeeze-excite, use ReLU6
and keep the stem width and the last stage's repeats fixed: friendlier to INT8 and to
TensorRT's layer fusion. Features are taken at the end of the last stage of each stride
(4, 8, 16, 32); there is no classifier head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
from torch import nn

from panoptic_ros.errors import ConfigError
from panoptic_ros.modeling.blocks import ConvBnAct, InvertedResidual

__all__ = ["BACKBONES", "EfficientNet", "FeatureInfo", "build_backbone"]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of the B0 table: MBConv repeated ``repeats`` times."""

    expand_ratio: int
    kernel_size: int
    stride: int
    channels: int
    repeats: int


#: EfficientNet-B0 (Tan & Le, 2019, table 1); other sizes scale it.
B0_STAGES: Final = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)

#: name -> (width coefficient, depth coefficient, lite)
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
class FeatureInfo:
    """Channels and reduction (stride) of one returned feature level."""

    stride: int
    channels: int
    stage: int


class EfficientNet(nn.Module):
    """EfficientNet trunk: stem, seven stages of MBConv blocks.

    Args:
        name: One of :data:`BACKBONES`.
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
        width, depth, lite = BACKBONES[name]
        self.name = name
        act: type[nn.Module] = nn.ReLU6 if lite else nn.SiLU
        stem_channels = 32 if lite else round_channels(32 * width)
        self.stem = ConvBnAct(3, stem_channels, 3, stride=2, act_layer=act)
        stages: list[nn.Sequential] = []
        infos: dict[int, FeatureInfo] = {}
        in_channels, stride = stem_channels, 2
        last = len(B0_STAGES) - 1
        for index, spec in enumerate(B0_STAGES):
            out_channels = round_channels(spec.channels * width)
            repeats = spec.repeats if lite and index == last else math.ceil(spec.repeats * depth)
            blocks = []
            for repeat in range(repeats):
                blocks.append(
                    InvertedResidual(
                        in_channels,
                        out_channels,
                        spec.kernel_size,
                        stride=spec.stride if repeat == 0 else 1,
                        expand_ratio=spec.expand_ratio,
                        se_ratio=0.0 if lite else 0.25,
                        act_layer=act,
                    )
                )
                in_channels = out_channels
            stride *= spec.stride
            stages.append(nn.Sequential(*blocks))
            if stride >= 4:
                # The last stage at each stride provides that stride's feature.
                infos[stride] = FeatureInfo(stride, out_channels, index)
        self.stages = nn.ModuleList(stages)
        self.feature_info = tuple(infos[s] for s in (4, 8, 16, 32))
        reductions = [info.stride for info in self.feature_info]
        assert reductions == sorted(reductions), reductions
        self._taps = {info.stage: info.stride for info in self.feature_info}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """[N, 3, H, W] normalised float -> {4: [N, C4, H/4, W/4], ..., 32: [...]}."""
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
