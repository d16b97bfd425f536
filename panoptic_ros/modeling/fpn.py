"""EfficientPS two-way FPN: top-down and bottom-up pathways summed per level."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_ros.modeling.blocks import ConvBnAct, DepthwiseSeparableConv

__all__ = ["TwoWayFPN"]

STRIDES = (4, 8, 16, 32)


class TwoWayFPN(nn.Module):
    """EfficientPS's two-way FPN.

    Lateral 1x1 convs, a top-down (x2 upsample + add) and a bottom-up (stride-2 + add)
    pathway, their sum per level, then a 3x3 depthwise-separable conv per level.

    Args:
        in_channels: Backbone channels at strides 4, 8, 16, 32.
        channels: Output channels of every level.
    """

    def __init__(self, in_channels: tuple[int, int, int, int], channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.lateral_top_down = nn.ModuleList(
            ConvBnAct(c, channels, 1, act_layer=None) for c in in_channels
        )
        self.lateral_bottom_up = nn.ModuleList(
            ConvBnAct(c, channels, 1, act_layer=None) for c in in_channels
        )
        # Strided depthwise convs carry the bottom-up path from one level to the next.
        self.downsample = nn.ModuleList(
            ConvBnAct(channels, channels, 3, stride=2, groups=channels, act_layer=None)
            for _ in in_channels[1:]
        )
        self.output = nn.ModuleList(
            DepthwiseSeparableConv(channels, channels, 3, act_layer=nn.ReLU) for _ in in_channels
        )

    def forward(self, features: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """{stride: [N, C_s, H/s, W/s]} -> {stride: [N, channels, H/s, W/s]}."""
        inputs = [features[s] for s in STRIDES]
        top_down = [lateral(x) for lateral, x in zip(self.lateral_top_down, inputs, strict=True)]
        for level in range(len(STRIDES) - 2, -1, -1):
            top_down[level] = top_down[level] + F.interpolate(
                top_down[level + 1], size=top_down[level].shape[-2:], mode="nearest"
            )
        bottom_up = [lateral(x) for lateral, x in zip(self.lateral_bottom_up, inputs, strict=True)]
        for level in range(1, len(STRIDES)):
            bottom_up[level] = bottom_up[level] + self.downsample[level - 1](bottom_up[level - 1])
        return {
            stride: conv(td + bu)
            for stride, conv, td, bu in zip(STRIDES, self.output, top_down, bottom_up, strict=True)
        }
