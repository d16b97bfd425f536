"""Building blocks: conv-BN-activation, depthwise-separable conv, inverted residual (MBConv).

Blocks take plain ints plus ``act_layer`` / ``norm_layer`` types, and optional parts are
``nn.Identity`` so ``forward`` never branches on data: every block exports to ONNX and
TensorRT as a static graph of standard operators.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ActLayer",
    "ConvBnAct",
    "DepthwiseSeparableConv",
    "InvertedResidual",
    "NormLayer",
    "SqueezeExcite",
    "make_norm",
]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]

#: BatchNorm epsilon of the TensorFlow EfficientNet checkpoints (their statistics assume it).
BN_EPS = 1e-3


def make_norm(channels: int) -> nn.Module:
    """BatchNorm with the TF EfficientNet epsilon.

    Momentum stays at PyTorch's 0.1 rather than TF's 0.01: with 0.01 the running statistics
    of the new (FPN, head) layers need thousands of steps to leave their initial values, so
    evaluations early in a run (and short fine-tuning runs) would see garbage.
    """
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.1)


class ConvBnAct(nn.Sequential):
    """Conv (no bias) -> norm -> activation, symmetric padding ``dilation * (k // 2)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: tuple[int, int] | int = 1,
        groups: int = 1,
        act_layer: ActLayer | None = nn.ReLU6,
        norm_layer: NormLayer = make_norm,
    ) -> None:
        dil = (dilation, dilation) if isinstance(dilation, int) else dilation
        padding = (dil[0] * (kernel_size // 2), dil[1] * (kernel_size // 2))
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dil,
                groups=groups,
                bias=False,
            ),
            norm_layer(out_channels),
            act_layer() if act_layer is not None else nn.Identity(),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise k x k conv + BN + act, then pointwise 1x1 conv + BN + act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: tuple[int, int] | int = 1,
        act_layer: ActLayer | None = nn.ReLU6,
        norm_layer: NormLayer = make_norm,
    ) -> None:
        super().__init__(
            ConvBnAct(
                in_channels,
                in_channels,
                kernel_size,
                stride=stride,
                dilation=dilation,
                groups=in_channels,
                act_layer=act_layer,
                norm_layer=norm_layer,
            ),
            ConvBnAct(in_channels, out_channels, 1, act_layer=act_layer, norm_layer=norm_layer),
        )


class SqueezeExcite(nn.Module):
    """Channel attention of the non-Lite EfficientNets (global pool, reduce, expand, gate)."""

    def __init__(self, channels: int, reduced: int, act_layer: ActLayer) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act = act_layer()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel by a gate computed from the pooled features."""
        scale = x.mean((2, 3), keepdim=True)
        scale = self.conv_expand(self.act(self.conv_reduce(scale)))
        return x * torch.sigmoid(scale)


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expand (skipped at ratio 1), k x k depthwise, optional SE, 1x1 project.

    The residual is added when the block keeps stride 1 and its channel count.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int,
        expand_ratio: int,
        se_ratio: float = 0.0,
        act_layer: ActLayer = nn.ReLU6,
        norm_layer: NormLayer = make_norm,
    ) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.conv_pw: nn.Module = (
            ConvBnAct(in_channels, mid, 1, act_layer=act_layer, norm_layer=norm_layer)
            if expand_ratio != 1
            else nn.Identity()
        )
        self.conv_dw = ConvBnAct(
            mid,
            mid,
            kernel_size,
            stride=stride,
            groups=mid,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.se: nn.Module = (
            SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), act_layer)
            if se_ratio > 0
            else nn.Identity()
        )
        self.conv_pwl = ConvBnAct(mid, out_channels, 1, act_layer=None, norm_layer=norm_layer)
        self.has_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand, filter, project, add the input when shapes allow."""
        out = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return out + x if self.has_residual else out
