"""EfficientPS semantic head (LSFE, DPC, MC) and a box-free Panoptic-DeepLab instance head.

The instance head predicts a centre heatmap and, per pixel, the offset to its instance's
centre. Chosen over Mask R-CNN so the whole network is one static graph: no RoI ops, no
plugins, no data-dependent shapes, which is what TensorRT and INT8 want.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_ros.modeling.blocks import ConvBnAct, DepthwiseSeparableConv

__all__ = ["DensePredictionCell", "InstanceHead", "SemanticHead"]

#: Dilation rates (rows, cols) of the DPC branches, as in EfficientPS / DeepLab's DPC.
DPC_DILATIONS = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3))


def _sep(in_channels: int, out_channels: int, dilation: tuple[int, int] | int = 1) -> nn.Module:
    return DepthwiseSeparableConv(
        in_channels, out_channels, 3, dilation=dilation, act_layer=nn.ReLU
    )


def _upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LargeScaleFeatureExtractor(nn.Sequential):
    """LSFE: two 3x3 depthwise-separable convs (fine detail at strides 4 and 8)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__(_sep(in_channels, channels), _sep(channels, channels))


class DensePredictionCell(nn.Module):
    """DPC: five dilated separable convs in a small tree, concatenated, 1x1 fused.

    Branch a (1, 6) feeds b (1, 1), c (6, 21) and d (18, 15); e (6, 3) follows d. The rates
    are not capped: on small maps (a 256x512 input gives 8x16 at stride 32) the large ones
    mostly see zero padding, which costs no speed (same operator, same size) and keeps one
    graph valid for every input size.

    Args:
        in_channels: Input channels.
        channels: Channels of every branch and of the output.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.a = _sep(in_channels, channels, DPC_DILATIONS[0])
        self.b = _sep(channels, channels, DPC_DILATIONS[1])
        self.c = _sep(channels, channels, DPC_DILATIONS[2])
        self.d = _sep(channels, channels, DPC_DILATIONS[3])
        self.e = _sep(channels, channels, DPC_DILATIONS[4])
        self.fuse = ConvBnAct(5 * channels, channels, 1, act_layer=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C_in, h, w] -> [N, channels, h, w]."""
        a = self.a(x)
        d = self.d(a)
        return self.fuse(torch.cat([a, self.b(a), self.c(a), d, self.e(d)], dim=1))


class MismatchCorrection(nn.Module):
    """MC: two separable convs then x2 bilinear upsampling (coarse -> next finer level)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_sep(channels, channels), _sep(channels, channels))

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Correct and upsample ``x`` to ``size``."""
        return _upsample(self.convs(x), size)


class SemanticHead(nn.Module):
    """LSFE on strides 4 and 8, DPC on 16 and 32, MC 32 -> 16 -> 8, all to stride 4.

    Levels 16 and 8 add the mismatch-corrected, x2-upsampled level below them (as the
    EfficientPS paper connects DPC and LSFE outputs); stride 4 is LSFE only. All four are
    upsampled to stride 4 and concatenated before the classifier. (The bundled model's
    weights fix this layout: changing it needs retraining.)

    Args:
        fpn_channels: Channels of every FPN level.
        channels: Channels of every branch (the classifier sees 4x this).
        num_classes: Semantic classes.
    """

    def __init__(self, fpn_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.lsfe4 = LargeScaleFeatureExtractor(fpn_channels, channels)
        self.lsfe8 = LargeScaleFeatureExtractor(fpn_channels, channels)
        self.dpc16 = DensePredictionCell(fpn_channels, channels)
        self.dpc32 = DensePredictionCell(fpn_channels, channels)
        self.mc32 = MismatchCorrection(channels)
        self.mc16 = MismatchCorrection(channels)
        self.classifier = nn.Conv2d(4 * channels, num_classes, 1)

    def forward(self, fpn: dict[int, torch.Tensor]) -> torch.Tensor:
        """FPN levels {s: [N, fpn_channels, H/s, W/s]} -> logits [N, num_classes, H/4, W/4]."""
        s32 = self.dpc32(fpn[32])
        s16 = self.dpc16(fpn[16]) + self.mc32(s32, fpn[16].shape[-2:])
        s8 = self.lsfe8(fpn[8]) + self.mc16(s16, fpn[8].shape[-2:])
        s4 = self.lsfe4(fpn[4])
        size = s4.shape[-2:]
        merged = torch.cat([s4, _upsample(s8, size), _upsample(s16, size), _upsample(s32, size)], 1)
        return self.classifier(merged)


class InstanceHead(nn.Module):
    """Light decoder over all FPN levels to stride 4, then centre and offset branches.

    Outputs: centre heatmap [N, 1, H/4, W/4] (regressed towards a Gaussian in 0..1, no
    activation) and offsets [N, 2, H/4, W/4] (dy, dx) in network-input pixels.
    """

    def __init__(self, fpn_channels: int, channels: int) -> None:
        super().__init__()
        self.reduce = nn.ModuleDict(
            {
                str(s): ConvBnAct(fpn_channels, channels, 1, act_layer=nn.ReLU)
                for s in (4, 8, 16, 32)
            }
        )
        self.decoder = nn.Sequential(_sep(channels, channels), _sep(channels, channels))
        self.center = nn.Sequential(_sep(channels, channels), nn.Conv2d(channels, 1, 1))
        self.offset = nn.Sequential(_sep(channels, channels), nn.Conv2d(channels, 2, 1))
        # Start the heatmap near zero: almost every cell is background.
        last = self.center[-1]
        assert isinstance(last, nn.Conv2d)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, fpn: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """FPN levels -> (centre heatmap, offsets) at stride 4."""
        size = fpn[4].shape[-2:]
        fused = self.reduce["4"](fpn[4])
        for stride in (8, 16, 32):
            fused = fused + _upsample(self.reduce[str(stride)](fpn[stride]), size)
        decoded = self.decoder(fused)
        return self.center(decoded), self.offset(decoded)
