"""Panoptic fusion folded into the graph: an engine that emits the panoptic maps directly.

:class:`FusedPanopticNet` wraps a :class:`~panoptic_ros.modeling.network.PanopticNet` and
appends the fusion in plain tensor operators that ONNX and TensorRT both support (ArgMax,
MaxPool, TopK, Equal/Cast one-hots, MatMul, ArgMin, Gather): no loops, no data-dependent
shapes. It follows the second named contract of DESIGN.md:

* ``semantic`` [N, H/4, W/4] int32, 255 void;
* ``instance`` [N, H/4, W/4] int32, k for the k-th instance (by score), 0 none;
* ``instance_table`` [N, K, 4] float32 rows (class, score, centre row, centre column in
  stride-4 cells), the first ``instance_count`` rows valid;
* ``instance_count`` [N] int32.

It applies the rules of :func:`panoptic_ros.fusion.fuse_cells` with the same tie-breaks (the
ONNX TopK, ArgMax and ArgMin specifications break ties by the lower index, as the NumPy
reference does) with two differences, both documented in the metadata: at most K centres
(the fixed table size, K = ``max_instances``), and no letterbox cropping inside the graph
(padding cells are cut off on the host, which only matters for classes that touch the
padding). The grouping distances stay float32 whatever the model's precision: squared
distances of 2-megapixel frames (up to about 2.6e7 network pixels squared) overflow float16.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_ros.fusion import VOID, CellPanoptic, FusionParams
from panoptic_ros.labels import LabelSpace

__all__ = ["FUSED_OUTPUT_NAMES", "FusedPanopticNet", "cells_from_fused"]

FUSED_OUTPUT_NAMES = ("semantic", "instance", "instance_table", "instance_count")


class FusedPanopticNet(nn.Module):
    """Network plus fusion, exportable as one graph.

    Args:
        network: The panoptic network (heads contract).
        labels: Label space (which classes are things).
        params: Fusion thresholds, baked into the graph.
        max_instances: K, the number of centre candidates and table rows.
        stride: Output stride of the network.
    """

    def __init__(
        self,
        network: nn.Module,
        labels: LabelSpace,
        params: FusionParams,
        *,
        max_instances: int = 64,
        stride: int = 4,
    ) -> None:
        super().__init__()
        self.network = network
        self.params = params
        self.max_instances = max_instances
        self.stride = stride
        self.num_classes = labels.num_classes
        is_thing = torch.tensor([c.is_thing for c in labels.classes], dtype=torch.bool)
        self.is_thing: torch.Tensor
        self.register_buffer("is_thing", is_thing)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[N, H, W, 3] uint8 -> (semantic, instance, instance_table, instance_count)."""
        logits, heatmap, offsets = self.network(image)
        return self.fuse(logits.float(), heatmap.float(), offsets.float())

    def fuse(
        self, logits: torch.Tensor, heatmap: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Fuse batched heads (float32) into the fused contract's outputs."""
        params, k_max, stride = self.params, self.max_instances, self.stride
        n, c, h, w = logits.shape
        cells = h * w
        semantic = torch.argmax(logits, dim=1).reshape(n, cells)  # first max: lowest class
        probabilities = torch.softmax(logits, dim=1).reshape(n, c, cells)

        # Centre candidates: max-pool NMS, threshold, top-K (ties -> lower flat index).
        pooled = F.max_pool2d(heatmap, params.nms_kernel, stride=1, padding=params.nms_kernel // 2)
        peaks = (heatmap == pooled) & (heatmap > params.center_threshold)
        candidates_map = torch.where(peaks, heatmap, torch.full_like(heatmap, -1.0)).reshape(
            n, cells
        )
        top_values, top_index = torch.topk(candidates_map, k_max, dim=1)
        valid = top_values > params.center_threshold  # [N, K]

        # Every cell votes for (location + offset) and joins the nearest valid centre (fp32).
        half = (stride - 1) / 2.0
        rows = torch.arange(h, device=logits.device, dtype=torch.float32) * stride + half
        cols = torch.arange(w, device=logits.device, dtype=torch.float32) * stride + half
        vote_y = (rows[None, :, None] + offsets[:, 0]).reshape(n, cells, 1)
        vote_x = (cols[None, None, :] + offsets[:, 1]).reshape(n, cells, 1)
        # Row and column of each candidate without Mod (older TensorRT parsers lack it).
        top_row = top_index // w
        top_col = top_index - top_row * w
        centre_y = top_row.float() * stride + half
        centre_x = top_col.float() * stride + half
        dy = vote_y - centre_y[:, None, :]
        dx = vote_x - centre_x[:, None, :]
        distance = dy * dy + dx * dx  # [N, cells, K] float32
        distance = torch.where(valid[:, None, :], distance, torch.full_like(distance, 3.0e38))
        nearest = torch.argmin(distance, dim=2)  # first minimum: lowest candidate
        is_thing = self.is_thing[semantic]
        has_centre = valid.any(dim=1, keepdim=True)
        member = is_thing & has_centre  # [N, cells]
        instance = torch.where(member, nearest + 1, torch.zeros_like(nearest))  # 1..K, 0 none

        # Majority class per instance (ties -> lowest class) from one-hot products.
        slots = torch.arange(k_max + 1, device=logits.device)
        classes = torch.arange(c, device=logits.device)
        instance_hot = (instance[..., None] == slots).float()  # [N, cells, K+1]
        class_hot = (semantic[..., None] == classes).float()  # [N, cells, C]
        votes = torch.matmul(instance_hot.transpose(1, 2), class_hot)[:, 1:]  # [N, K, C]
        sizes = votes.sum(dim=2)
        majority = torch.argmax(votes, dim=2)  # [N, K]
        # Each member cell's probability of its instance's class, summed per instance.
        padded_class = torch.cat([torch.zeros_like(majority[:, :1]), majority], dim=1)
        cell_class = torch.gather(padded_class, 1, instance)  # [N, cells]
        cell_probability = torch.gather(probabilities, 1, cell_class[:, None])[:, 0]
        probability_sum = torch.matmul(
            instance_hot.transpose(1, 2), (cell_probability * member.float())[..., None]
        )[:, 1:, 0]
        mean_probability = probability_sum / sizes.clamp(min=1.0)
        scores = top_values.clamp(0.0, 1.0) * mean_probability
        keep = (
            valid
            & (sizes > 0)
            & (sizes * (stride * stride) >= params.thing_area_threshold_px)
            & (scores >= params.score_threshold)
        )

        # Cells of dropped instances and unclaimed thing cells become void.
        padded_keep = torch.cat([torch.zeros_like(keep[:, :1]), keep], dim=1)
        kept_cell = torch.gather(padded_keep, 1, instance) & member
        void = torch.full_like(semantic, VOID)
        semantic = torch.where(is_thing, torch.where(kept_cell, cell_class, void), semantic)
        instance = torch.where(kept_cell, instance, torch.zeros_like(instance))

        # Stuff classes covering too little become void.
        counts = (semantic[..., None] == classes).float().sum(dim=1)  # [N, C]
        small = (counts * (stride * stride) < params.stuff_area_threshold_px) & (counts > 0)
        small = small & ~self.is_thing[None]
        small_cell = torch.gather(
            torch.cat([small, torch.zeros_like(small[:, :1])], dim=1),
            1,
            torch.where(semantic == VOID, torch.full_like(semantic, c), semantic),
        )
        semantic = torch.where(small_cell, void, semantic)

        # Rank kept instances by score, ties -> lower candidate index; renumber 1..count.
        ranked_scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
        index = torch.arange(k_max, device=logits.device)
        before = (ranked_scores[:, None, :] > ranked_scores[:, :, None]) | (
            (ranked_scores[:, None, :] == ranked_scores[:, :, None])
            & (index[None, None, :] < index[None, :, None])
        )
        rank = before.sum(dim=2)  # [N, K]: how many rows come first
        new_id = torch.where(keep, rank + 1, torch.zeros_like(rank))
        padded_id = torch.cat([torch.zeros_like(new_id[:, :1]), new_id], dim=1)
        instance = torch.gather(padded_id, 1, instance)

        # The table in rank order: row r holds the candidate whose rank is r.
        order_hot = (rank[:, :, None] == index[None, None, :]).float()  # [N, K(cand), K(row)]
        columns = torch.stack([majority.float(), scores, top_row.float(), top_col.float()], dim=2)
        table = torch.matmul(order_hot.transpose(1, 2), columns * keep[..., None].float())
        count = keep.sum(dim=1).to(torch.int32)
        return (
            semantic.reshape(n, h, w).to(torch.int32),
            instance.reshape(n, h, w).to(torch.int32),
            table,
            count,
        )


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
    import numpy as np

    rows, cols = valid_hw
    valid_rows = table[: int(count)]
    return CellPanoptic(
        semantic=np.asarray(semantic[:rows, :cols], dtype=np.uint8),
        instances=np.asarray(instance[:rows, :cols], dtype=np.int32),
        classes=valid_rows[:, 0].astype(np.int64),
        scores=valid_rows[:, 1].astype(np.float32),
        centers_yx=valid_rows[:, 2:4].astype(np.int64),
    )


def export_fused_onnx(
    network: nn.Module,
    path: Any,
    *,
    metadata: Any,
    params: FusionParams,
    input_hw: tuple[int, int],
    max_instances: int = 64,
    dynamic: bool = True,
) -> Any:
    """Export network + fusion under the ``fused`` contract (see the module docstring).

    Returns:
        The written path (its ``.json`` sidecar beside it).
    """
    from dataclasses import replace

    from panoptic_ros.contract import ContractKind
    from panoptic_ros.export.onnx_export import export_onnx

    fused = FusedPanopticNet(network, metadata.labels, params, max_instances=max_instances)
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
    fused_metadata = replace(
        metadata, contract=ContractKind.FUSED, max_instances=max_instances, provenance=provenance
    )
    return export_onnx(
        fused.eval(), path, metadata=fused_metadata, input_hw=input_hw, dynamic=dynamic
    )
