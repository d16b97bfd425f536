"""The torch fusion gives the NumPy reference's maps exactly (CPU here, CUDA when present)."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.fusion import FusionParams, fuse_cells
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.results import HeadOutputs

torch = pytest.importorskip("torch")
from panoptic_ros.fusion.torch_fusion import fuse_cells_torch  # noqa: E402

LABELS = CITYSCAPES.with_drivable(["road"])
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def realistic_heads(seed: int, h: int = 64, w: int = 128) -> HeadOutputs:
    """Smooth random logits, a few Gaussian centres, offsets towards them (plus noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 3, (1, LABELS.num_classes, h // 8, w // 8)).astype(np.float32)
    logits = np.kron(coarse, np.ones((1, 1, 8, 8), np.float32))
    logits += rng.normal(0, 0.5, logits.shape).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    heatmap = np.zeros((h, w), np.float32)
    centres = rng.uniform([4, 4], [h - 4, w - 4], (12, 2)).astype(np.float32)
    for cy, cx in centres:
        heatmap = np.maximum(heatmap, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8))
    heatmap += rng.uniform(0, 0.05, heatmap.shape).astype(np.float32)
    d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    nearest = centres[np.argmin(d, axis=-1)]
    offsets = np.stack(
        [4 * nearest[..., 0] + 1.5 - (4 * yy + 1.5), 4 * nearest[..., 1] + 1.5 - (4 * xx + 1.5)]
    )
    offsets += rng.normal(0, 2, offsets.shape).astype(np.float32)
    return HeadOutputs(logits, heatmap[None, None], offsets[None].astype(np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(6))
def test_torch_fusion_equals_numpy(device: str, seed: int) -> None:
    heads = realistic_heads(seed)
    params = FusionParams(
        center_threshold=0.3, thing_area_threshold_px=32, stuff_area_threshold_px=64
    )
    valid = (60, 120) if seed % 2 else None
    reference = fuse_cells(heads, LABELS, params, valid_hw=valid)
    tensors = [
        torch.from_numpy(a).to(device)
        for a in (heads.semantic_logits, heads.center_heatmap, heads.offsets)
    ]
    result = fuse_cells_torch(*tensors, LABELS, params, valid_hw=valid)
    assert len(reference.classes) > 0
    assert np.array_equal(result.semantic, reference.semantic)
    assert np.array_equal(result.instances, reference.instances)
    assert np.array_equal(result.classes, reference.classes)
    assert np.array_equal(result.centers_yx, reference.centers_yx)
    np.testing.assert_allclose(result.scores, reference.scores, rtol=1e-5)


def test_torch_fusion_handles_non_finite_and_empty() -> None:
    heads = realistic_heads(0)
    heads.semantic_logits[0, :, 0, 0] = np.nan
    heads.center_heatmap[...] = np.nan
    tensors = [
        torch.from_numpy(a) for a in (heads.semantic_logits, heads.center_heatmap, heads.offsets)
    ]
    result = fuse_cells_torch(*tensors, LABELS, FusionParams())
    reference = fuse_cells(heads, LABELS, FusionParams())
    assert len(result.classes) == 0
    assert np.array_equal(result.semantic, reference.semantic)
