"""The fusion folded into the graph equals the NumPy reference, in torch and in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from test_fusion_torch import realistic_heads  # noqa: E402

from panoptic_ros.contract import ModelMetadata  # noqa: E402
from panoptic_ros.export.fused import (  # noqa: E402
    FusedPanopticNet,
    cells_from_fused,
    export_fused_onnx,
)
from panoptic_ros.export.onnx_export import check_onnx_contract  # noqa: E402
from panoptic_ros.fusion import FusionParams, fuse_cells  # noqa: E402
from panoptic_ros.labels import CITYSCAPES  # noqa: E402
from panoptic_ros.results import HeadOutputs  # noqa: E402

LABELS = CITYSCAPES.with_drivable(["road"])
PARAMS = FusionParams(
    center_threshold=0.3, thing_area_threshold_px=32, stuff_area_threshold_px=64, top_k=64
)


class FixedHeads(torch.nn.Module):
    """A stand-in network whose heads are given arrays, whatever the image.

    The heads are offset by ``0 * sum(image)`` so they depend on the input: the exporter
    cannot fold the fusion after them into constants, and ONNX Runtime really runs it.
    """

    def __init__(self, heads: HeadOutputs) -> None:
        super().__init__()
        for name in ("semantic_logits", "center_heatmap", "offsets"):
            self.register_buffer(name, torch.from_numpy(getattr(heads, name)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zero = image.float().sum() * 0.0
        return (
            self.semantic_logits + zero,
            self.center_heatmap + zero,
            self.offsets + zero,
        )


def export_fused_heads(
    heads: HeadOutputs, path: Path, *, max_instances: int = 64, params: FusionParams = PARAMS
) -> Path:
    """A fused-contract ONNX model (static input [1, 4h, 4w, 3]) that fuses ``heads``."""
    h, w = heads.semantic_logits.shape[2:]
    return export_fused_onnx(
        FixedHeads(heads),
        path,
        metadata=ModelMetadata(labels=LABELS, input_hw=(4 * h, 4 * w)),
        params=params,
        input_hw=(4 * h, 4 * w),
        max_instances=max_instances,
        dynamic=False,
    )


@pytest.mark.parametrize("seed", range(6))
def test_graph_fusion_equals_numpy(seed: int) -> None:
    heads = realistic_heads(seed)
    reference = fuse_cells(heads, LABELS, PARAMS)
    fused = FusedPanopticNet(torch.nn.Identity(), LABELS, PARAMS, max_instances=64)
    with torch.no_grad():
        outputs = fused.fuse(
            *(
                torch.from_numpy(a)
                for a in (heads.semantic_logits, heads.center_heatmap, heads.offsets)
            )
        )
    semantic, instance, table, count = (o.numpy() for o in outputs)
    cells = cells_from_fused(
        semantic[0], instance[0], table[0], count[0], valid_hw=reference.semantic.shape
    )
    assert len(reference.classes) > 0
    assert np.array_equal(cells.semantic, reference.semantic)
    assert np.array_equal(cells.instances, reference.instances)
    assert np.array_equal(cells.classes, reference.classes)
    assert np.array_equal(cells.centers_yx, reference.centers_yx)
    np.testing.assert_allclose(cells.scores, reference.scores, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_fused_onnx_in_onnx_runtime_equals_numpy(seed: int, tmp_path: Path) -> None:
    """ONNX Runtime runs the exported fusion on known heads: maps and table equal NumPy's."""
    heads = realistic_heads(seed)
    path = export_fused_heads(heads, tmp_path / "fused.onnx", max_instances=32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = np.zeros((1, *check_onnx_contract(path).input_hw, 3), np.uint8)
    semantic, instance, table, count = session.run(None, {"image": image})
    reference = fuse_cells(heads, LABELS, PARAMS)
    found = int(count[0])
    assert found == len(reference.classes) > 0
    assert np.array_equal(semantic[0], reference.semantic.astype(np.int32))
    assert np.array_equal(instance[0], reference.instances)
    assert table.shape == (1, 32, 4) and table.dtype == np.float32
    rows = table[0, :found]
    assert np.array_equal(rows[:, 0], reference.classes.astype(np.float32))
    np.testing.assert_allclose(rows[:, 1], reference.scores, rtol=1e-5)
    assert np.array_equal(rows[:, 2:4], reference.centers_yx.astype(np.float32))
    assert not table[0, found:].any()  # rows past the count are empty


def test_fused_network_export_takes_other_sizes(tmp_path: Path) -> None:
    """A real network with the fusion: dynamic sizes, and ONNX Runtime equals torch.

    (Random weights find few or no centres; the grouping itself is compared with NumPy on
    known heads above, and on the demo model in test_fusion_appended_to_the_demo_onnx.)
    """
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
    from panoptic_ros.modeling.network import build_network

    torch.manual_seed(0)
    network = build_network(num_classes=19, fpn_channels=16, head_channels=16).eval()
    torch.nn.init.constant_(network.instance_head.center[-1].bias, 0.5)
    metadata = ModelMetadata(labels=LABELS, input_hw=(128, 256))
    path = export_fused_onnx(
        network,
        tmp_path / "fused.onnx",
        metadata=metadata,
        params=PARAMS,
        input_hw=(128, 256),
        max_instances=32,
    )
    stored = check_onnx_contract(path)
    assert stored.contract.value == "fused"
    assert stored.max_instances == 32
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in ((128, 256), (192, 320)):
        image = generate_scene(HELD_OUT_SEED_START + 1, *size).image[None]
        semantic, instance, table, count = session.run(None, {"image": image})
        assert semantic.shape == (1, size[0] // 4, size[1] // 4)
        assert semantic.dtype == np.int32
        assert table.shape == (1, 32, 4)
        with torch.no_grad():
            expected = FusedPanopticNet(network, LABELS, PARAMS, max_instances=32)(
                torch.from_numpy(image)
            )
        assert np.array_equal(semantic, expected[0].numpy())
        assert np.array_equal(instance, expected[1].numpy())
        assert int(count[0]) == int(expected[3][0])
        assert int(instance.max()) == int(count[0])


def _cells_equal(cells: Any, reference: Any) -> bool:
    return (
        np.array_equal(cells.semantic, reference.semantic)
        and np.array_equal(cells.instances, reference.instances)
        and np.array_equal(cells.classes, reference.classes)
        and np.array_equal(cells.centers_yx, reference.centers_yx)
        and np.allclose(cells.scores, reference.scores, rtol=1e-5)
    )


def _fused_cells(session: Any, image: np.ndarray, valid_hw: tuple[int, int]) -> Any:
    semantic, instance, table, count = session.run(None, {"image": image})
    return cells_from_fused(semantic[0], instance[0], table[0], count[0], valid_hw=valid_hw)


def test_fusion_appended_to_the_demo_onnx_equals_numpy(tmp_path: Path) -> None:
    """append_fusion: the bundled heads model gains the fusion without its checkpoint."""
    from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
    from panoptic_ros.export.fused import NETWORK_SCOPE, append_fusion
    from panoptic_ros.resources import synthetic_model_path

    params = FusionParams(top_k=64)
    path = append_fusion(synthetic_model_path(), tmp_path / "demo.fused.onnx", params=params)
    stored = check_onnx_contract(path)
    assert (stored.contract.value, stored.max_instances) == ("fused", 64)
    assert stored.provenance["fusion"]["top_k"] == 64
    proto = __import__("onnx").load(str(path))
    assert sum(n.name.startswith(NETWORK_SCOPE) for n in proto.graph.node) > 100
    heads_session = ort.InferenceSession(
        str(synthetic_model_path()), providers=["CPUExecutionProvider"]
    )
    fused_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    instances = 0
    for index in range(4):
        image = generate_scene(HELD_OUT_SEED_START + index, 256, 512).image[None]
        heads = HeadOutputs(*heads_session.run(None, {"image": image}))
        reference = fuse_cells(heads, LABELS, params)
        assert _cells_equal(_fused_cells(fused_session, image, reference.semantic.shape), reference)
        instances += len(reference.classes)
    assert instances > 0
