"""Device pre- and post-processing equal the host versions (CPU tensors here, CUDA marked gpu)."""

from __future__ import annotations

import numpy as np
import pytest

from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.render import render_overlay
from panoptic_ros.results import FrameResult, Instance

torch = pytest.importorskip("torch")
from panoptic_ros.device_ops import (  # noqa: E402
    letterbox_on_device,
    render_overlay_on_device,
    upload_frame,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _device(name: str) -> str:
    return name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("image_hw", "network_hw"),
    [
        ((540, 960), (256, 512)),
        ((375, 1242), (256, 512)),
        ((256, 512), (256, 512)),
        ((100, 150), (256, 512)),
    ],
)
def test_letterbox_on_device_matches_opencv(
    device: str, image_hw: tuple[int, int], network_hw: tuple[int, int]
) -> None:
    image = generate_scene(HELD_OUT_SEED_START + 3, *image_hw).image
    box = Letterbox.fit(image_hw, network_hw)
    expected = box.apply(image)
    got = letterbox_on_device(upload_frame(image, _device(device)), box)[0].cpu().numpy()
    difference = np.abs(got.astype(np.int16) - expected)
    rh, rw = box.resized_hw
    assert not got[rh:].any()
    assert not got[:, rw:].any()
    assert difference.max() <= 2  # OpenCV's fixed-point bilinear vs float
    assert difference.mean() < 0.3


@pytest.mark.parametrize("device", DEVICES)
def test_device_overlay_matches_the_host_overlay(device: str) -> None:
    scene = generate_scene(HELD_OUT_SEED_START + 9, 120, 200)
    semantic = scene.semantic.copy()
    ids = np.clip(scene.instances, 0, 3).astype(np.uint16)
    semantic[:5] = 255
    instances = tuple(
        Instance(
            k, 13, "car", 0.5, (0, 0, 10, 10), int((ids == k).sum()), (5.0, 5.0), track_id=k + 4
        )
        for k in range(1, int(ids.max()) + 1)
    )
    drivable = np.zeros_like(semantic)
    result = FrameResult(semantic, ids, drivable, instances)
    expected = render_overlay(scene.image, result, CITYSCAPES, alpha=0.4, draw_boxes=True)
    got = render_overlay_on_device(
        upload_frame(scene.image, _device(device)), result, CITYSCAPES, alpha=0.4, draw_boxes=True
    )
    assert got.shape == expected.shape
    assert np.abs(got.astype(np.int16) - expected).max() <= 1
    # Void shows the camera (right of the box labels drawn at the top left).
    void_region = np.abs(got[:5, 120:].astype(np.int16) - scene.image[:5, 120:, ::-1])
    assert void_region.max() <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_device_upsampling_equals_the_host(device: str) -> None:
    from panoptic_ros.device_ops import DeviceUpsampler

    box = Letterbox.fit((375, 1242), (256, 512))
    grid = box.cell_grid(4)
    rows, cols = box.valid_cells_hw(4)
    upsample = DeviceUpsampler(box, _device(device))
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16):
        cells = rng.integers(0, 200, (rows, cols)).astype(dtype)
        got = upsample(cells)
        assert got.dtype == dtype
        assert np.array_equal(got, grid.upsample(cells))
