"""The network: EfficientNet backbone, two-way FPN, EfficientPS semantic head, box-free instances.

Importing this package imports torch; the runtime path (ONNX Runtime, TensorRT) never does.
"""

from __future__ import annotations

from panoptic_ros.modeling.backbone import BACKBONES, EfficientNet, efficientnet_arch
from panoptic_ros.modeling.checkpoint import load_checkpoint, save_checkpoint
from panoptic_ros.modeling.network import (
    PanopticNet,
    build_network,
    build_network_from_config,
    check_input_hw,
)
from panoptic_ros.modeling.pretrained import convert_lite0_checkpoint, load_backbone_weights

__all__ = [
    "BACKBONES",
    "EfficientNet",
    "PanopticNet",
    "build_network",
    "build_network_from_config",
    "check_input_hw",
    "convert_lite0_checkpoint",
    "efficientnet_arch",
    "load_backbone_weights",
    "load_checkpoint",
    "save_checkpoint",
]
