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

from panoptic_ros.fusion import VOID, FusionParams
from panoptic_ros.fusion.fused_outputs import (
    FUSED_OUTPUT_NAMES,
    NETWORK_SCOPE,
    cells_from_fused,
    fused_metadata,
)
from panoptic_ros.labels import LabelSpace

# The NumPy-only names (FUSED_OUTPUT_NAMES, NETWORK_SCOPE, cells_from_fused) live in
# panoptic_ros.fusion.fused_outputs, which the host imports; they are re-exported here.
__all__ = [
    "FUSED_OUTPUT_NAMES",
    "NETWORK_SCOPE",
    "FusedPanopticNet",
    "append_fusion",
    "cells_from_fused",
    "export_fused_onnx",
]


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


class _FusionOnly(nn.Module):
    """The fusion of :class:`FusedPanopticNet` alone: the three heads in, fused outputs out."""

    def __init__(self, fused: FusedPanopticNet) -> None:
        super().__init__()
        self.fused = fused

    def forward(
        self, logits: torch.Tensor, heatmap: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self.fused.fuse(logits.float(), heatmap.float(), offsets.float())


def append_fusion(
    source: Any, target: Any, *, params: FusionParams, max_instances: int = 64
) -> Any:
    """Fold the fusion into an existing ``heads``-contract ONNX model (no checkpoint needed).

    The fusion graph is exported on its own (heads in, fused outputs out) and joined to the
    model's head outputs with ``onnx.compose``; the model's nodes are renamed into
    :data:`NETWORK_SCOPE`, as in :func:`export_fused_onnx`, so precision conversions can
    tell the network from the fusion.

    Args:
        source: A heads-contract ONNX model with embedded metadata (FP32, or FP16 with
            float32 outputs).
        target: Output path; its ``.json`` sidecar is written too.
        params: Fusion thresholds, baked into the graph.
        max_instances: K, the fixed instance-table size.

    Returns:
        ``target`` as a Path.

    Raises:
        ModelFileError: The source is not a heads-contract model, or the graphs do not join.
    """
    import os
    import tempfile
    import warnings
    from pathlib import Path

    import onnx
    import onnx.compose

    from panoptic_ros.contract import (
        HEAD_OUTPUTS,
        INPUT_NAME,
        METADATA_KEY,
        ContractKind,
        write_sidecar,
    )
    from panoptic_ros.errors import ModelFileError
    from panoptic_ros.export.onnx_export import read_onnx_metadata

    source, target = Path(source), Path(target)
    metadata = read_onnx_metadata(source)
    if metadata.contract is not ContractKind.HEADS:
        raise ModelFileError(
            f"model {str(source)!r} follows the {metadata.contract.value} contract; "
            "append_fusion needs a heads model"
        )
    heads = onnx.load(str(source))
    heads = onnx.compose.add_prefix(
        heads,
        NETWORK_SCOPE.rstrip("/"),
        rename_edges=False,
        rename_inputs=False,
        rename_outputs=False,
        rename_initializers=False,
        rename_value_infos=False,
        rename_functions=False,
    )
    with_fusion = fused_metadata(metadata, params, max_instances)
    module = _FusionOnly(
        FusedPanopticNet(nn.Identity(), metadata.labels, params, max_instances=max_instances)
    ).eval()
    cells_hw = (metadata.input_hw[0] // 4, metadata.input_hw[1] // 4)
    examples = (
        torch.zeros((1, metadata.labels.num_classes, *cells_hw)),
        torch.zeros((1, 1, *cells_hw)),
        torch.zeros((1, 2, *cells_hw)),
    )
    heads_axes = {0: "batch", 2: "height_4", 3: "width_4"}  # [N, C, h, w]
    map_axes = {0: "batch", 1: "height_4", 2: "width_4"}  # [N, h, w]
    axes: dict[str, dict[int, str]] = dict.fromkeys(HEAD_OUTPUTS, heads_axes)
    axes.update(semantic=map_axes, instance=map_axes)
    axes.update(instance_table={0: "batch"}, instance_count={0: "batch"})
    opset = next(o.version for o in heads.opset_import if o.domain in ("", "ai.onnx"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fusion_") as workdir:
        fusion_path = Path(workdir) / "fusion.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                examples,
                str(fusion_path),
                input_names=list(HEAD_OUTPUTS),
                output_names=list(FUSED_OUTPUT_NAMES),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        fusion = onnx.load(str(fusion_path))
    fusion.ir_version = heads.ir_version
    fusion = onnx.compose.add_prefix(fusion, "/fusion", rename_inputs=False, rename_outputs=False)
    try:
        joined = onnx.compose.merge_models(
            heads,
            fusion,
            io_map=[(name, name) for name in HEAD_OUTPUTS],
            inputs=[INPUT_NAME],
            outputs=list(FUSED_OUTPUT_NAMES),
            producer_name="panoptic_ros",
        )
    except ValueError as err:
        raise ModelFileError(f"cannot append the fusion to {str(source)!r}: {err}") from err
    del joined.metadata_props[:]
    entry = joined.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, with_fusion.to_json()
    onnx.checker.check_model(joined)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".onnx.tmp", delete=False) as tmp:
        temporary = Path(tmp.name)
    try:
        onnx.save(joined, str(temporary))
        os.chmod(temporary, 0o644)  # NamedTemporaryFile creates 0600 files
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    write_sidecar(target, with_fusion)
    return target


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
    from panoptic_ros.export.onnx_export import export_onnx

    fused = FusedPanopticNet(network, metadata.labels, params, max_instances=max_instances)
    with_fusion = fused_metadata(metadata, params, max_instances)
    return export_onnx(fused.eval(), path, metadata=with_fusion, input_hw=input_hw, dynamic=dynamic)
