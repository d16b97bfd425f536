"""PanopticNet: uint8 NHWC image in, the three heads of the output contract out.

Normalisation happens inside the graph, so the engine takes the camera's uint8 pixels
(a quarter of the host-to-device traffic of float32) and the mean/std travel with the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from panoptic_ros.config import TrainConfig
from panoptic_ros.errors import ConfigError
from panoptic_ros.labels import LabelSpace
from panoptic_ros.modeling.backbone import EfficientNet
from panoptic_ros.modeling.fpn import TwoWayFPN
from panoptic_ros.modeling.heads import InstanceHead, SemanticHead

__all__ = ["PanopticNet", "build_network", "build_network_from_config"]

#: The TF EfficientNet-Lite checkpoints expect (x - 127) / 128 (checked in test_modeling.py).
LITE_MEAN_RGB = (127.0, 127.0, 127.0)
LITE_STD_RGB = (128.0, 128.0, 128.0)
SIZE_DIVISIBILITY = 32


class PanopticNet(nn.Module):
    """EfficientNet backbone, two-way FPN, EfficientPS semantic head, box-free instance head.

    Args:
        backbone: Backbone name (see :data:`~panoptic_ros.modeling.backbone.BACKBONES`).
        num_classes: Classes of the semantic head.
        fpn_channels: Channels of every FPN level.
        head_channels: Channels inside both heads.
        mean_rgb: Per-channel mean subtracted inside the graph.
        std_rgb: Per-channel divisor applied inside the graph.
    """

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        num_classes: int,
        fpn_channels: int = 64,
        head_channels: int = 64,
        mean_rgb: tuple[float, float, float] = LITE_MEAN_RGB,
        std_rgb: tuple[float, float, float] = LITE_STD_RGB,
    ) -> None:
        super().__init__()
        self.backbone = EfficientNet(backbone)
        channels = tuple(info.channels for info in self.backbone.feature_info)
        self.fpn = TwoWayFPN(channels, fpn_channels)  # type: ignore[arg-type]
        self.semantic_head = SemanticHead(fpn_channels, head_channels, num_classes)
        self.instance_head = InstanceHead(fpn_channels, head_channels)
        self.mean: torch.Tensor
        self.inv_std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean_rgb).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std_rgb).view(1, 3, 1, 1))
        self.mean_rgb = tuple(float(v) for v in mean_rgb)
        self.std_rgb = tuple(float(v) for v in std_rgb)
        self.architecture: dict[str, Any] = {
            "backbone": backbone,
            "num_classes": num_classes,
            "fpn_channels": fpn_channels,
            "head_channels": head_channels,
            "mean_rgb": list(self.mean_rgb),
            "std_rgb": list(self.std_rgb),
        }
        self.output_stride = 4
        self.size_divisibility = SIZE_DIVISIBILITY

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the network on camera pixels.

        [N, H, W, 3] uint8 RGB -> (semantic_logits [N, C, H/4, W/4], center_heatmap
        [N, 1, H/4, W/4], offsets [N, 2, H/4, W/4]); H and W multiples of 32.
        """
        x = image.permute(0, 3, 1, 2).float()
        x = (x - self.mean) * self.inv_std
        return self.forward_normalized(x)

    def forward_normalized(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same as :meth:`forward` for an already normalised [N, 3, H, W] float tensor."""
        fpn = self.fpn(self.backbone(x))
        logits = self.semantic_head(fpn)
        heatmap, offsets = self.instance_head(fpn)
        return logits, heatmap, offsets


def check_input_hw(height: int, width: int) -> None:
    """Raise ConfigError unless both sides are positive multiples of 32."""
    if height <= 0 or width <= 0 or height % SIZE_DIVISIBILITY or width % SIZE_DIVISIBILITY:
        raise ConfigError(
            f"network input {height}x{width} must be positive multiples of {SIZE_DIVISIBILITY}"
        )


def build_network(
    *,
    backbone: str = "efficientnet_lite0",
    num_classes: int,
    fpn_channels: int = 64,
    head_channels: int = 64,
    mean_rgb: tuple[float, float, float] = LITE_MEAN_RGB,
    std_rgb: tuple[float, float, float] = LITE_STD_RGB,
) -> PanopticNet:
    """Build a randomly initialised network (see :mod:`.pretrained` for backbone weights)."""
    return PanopticNet(
        backbone=backbone,
        num_classes=num_classes,
        fpn_channels=fpn_channels,
        head_channels=head_channels,
        mean_rgb=mean_rgb,
        std_rgb=std_rgb,
    )


def build_network_from_config(train: TrainConfig, labels: LabelSpace) -> PanopticNet:
    """Build the network a training config describes for a label space."""
    return build_network(
        backbone=train.backbone,
        num_classes=labels.num_classes,
        fpn_channels=train.fpn_channels,
        head_channels=train.head_channels,
    )


def build_network_from_architecture(architecture: dict[str, Any]) -> PanopticNet:
    """Rebuild a network from the ``architecture`` dict stored in checkpoints."""
    try:
        return build_network(
            backbone=str(architecture["backbone"]),
            num_classes=int(architecture["num_classes"]),
            fpn_channels=int(architecture["fpn_channels"]),
            head_channels=int(architecture["head_channels"]),
            mean_rgb=tuple(architecture["mean_rgb"]),
            std_rgb=tuple(architecture["std_rgb"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"invalid network architecture {architecture!r}: {err}") from err
