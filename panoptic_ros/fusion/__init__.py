"""Panoptic fusion: heads -> panoptic maps and instances, one contract in two implementations.

:mod:`panoptic_ros.fusion.reference` is the NumPy reference (what the host runs and what
every other implementation is tested against); :mod:`panoptic_ros.fusion.torch_fusion`
computes the same stride-4 maps on the heads' device; :mod:`panoptic_ros.fusion.refine`
moves mask edges to camera resolution from bilinear class scores (``fusion.upsample``).
This package re-exports the NumPy side only, so importing it never loads torch.
"""

from __future__ import annotations

from panoptic_ros.fusion.reference import (
    VOID,
    CellPanoptic,
    FusionParams,
    cells_to_frame,
    fuse_cells,
    fuse_panoptic,
)

__all__ = ["VOID", "CellPanoptic", "FusionParams", "cells_to_frame", "fuse_cells", "fuse_panoptic"]
