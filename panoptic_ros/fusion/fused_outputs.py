"""The host side of the ``fused`` contract: output names, graph scope and the NumPy reader.

A fused model (:mod:`panoptic_ros.export.fused` builds it with torch) emits the panoptic
maps directly; what the host needs to run one, replay or quantise it (the output names, the
name prefix of the network's nodes, turning its outputs into a
:class:`~panoptic_ros.fusion.CellPanoptic`, the metadata's provenance) is NumPy only and
lives here, so those paths never import torch.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from panoptic_ros.contract import ContractKind, ModelMetadata
from panoptic_ros.fusion.reference import CellPanoptic, FusionParams

__all__ = ["FUSED_OUTPUT_NAMES", "NETWORK_SCOPE", "cells_from_fused", "fused_metadata"]

FUSED_OUTPUT_NAMES = ("semantic", "instance", "instance_table", "instance_count")
#: Name prefix of the network's nodes in a fused graph; every other node is the fusion,
#: whose arithmetic stays float32 (``convert_fp16`` blocks it).
NETWORK_SCOPE = "/network/"


def cells_from_fused(
    semantic: Any, instance: Any, table: Any, count: Any, *, valid_hw: tuple[int, int]
) -> CellPanoptic:
    """One image's fused outputs (NumPy, batch index already taken) -> CellPanoptic.

    Args:
        semantic: [h, w] int32.
        instance: [h, w] int32.
        table: [K, 4] float32.
        count: Number of valid rows.
        valid_hw: Cells holding image rather than letterbox padding.
    """
    rows, cols = valid_hw
    valid_rows = table[: int(count)]
    return CellPanoptic(
        semantic=np.asarray(semantic[:rows, :cols], dtype=np.uint8),
        instances=np.asarray(instance[:rows, :cols], dtype=np.int32),
        classes=valid_rows[:, 0].astype(np.int64),
        scores=valid_rows[:, 1].astype(np.float32),
        centers_yx=valid_rows[:, 2:4].astype(np.int64),
    )


def fused_metadata(
    metadata: ModelMetadata, params: FusionParams, max_instances: int
) -> ModelMetadata:
    """``metadata`` under the fused contract, with the fusion thresholds recorded."""
    provenance = {
        **metadata.provenance,
        "fusion": {
            "center_threshold": params.center_threshold,
            "nms_kernel": params.nms_kernel,
            "top_k": max_instances,
            "score_threshold": params.score_threshold,
            "stuff_area_threshold_px": params.stuff_area_threshold_px,
            "thing_area_threshold_px": params.thing_area_threshold_px,
        },
    }
    return replace(
        metadata, contract=ContractKind.FUSED, max_instances=max_instances, provenance=provenance
    )
