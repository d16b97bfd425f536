"""The bundled default model: what it is, and that it sees a real road.

The model was trained on pseudo-labelled real frames (docs/MODEL_CARD.md). These tests
check its file and metadata, that the checkpoint shipped for fine-tuning is the same
network, and its behaviour on a real recording: on the shared highway dashcam the ego
lane ahead is road and the sky above the horizon is sky.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from panoptic_ros.config import config_from_flat
from panoptic_ros.labels import CITYSCAPES
from panoptic_ros.resources import DEFAULT_MODEL_NAME, default_model_path

pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")

# Regions of the 960x540 dashcam frames (rows, columns) that hold one class in every frame:
# the lane ahead, left of its right line, and the sky above the hills.
EGO_LANE = (slice(430, 530), slice(200, 560))
SKY = (slice(10, 140), slice(20, 640))


def test_default_model_is_the_real_one_and_small() -> None:
    from panoptic_ros.export.onnx_export import check_onnx_contract

    path = default_model_path()
    assert path.name == DEFAULT_MODEL_NAME == "panoptic_lite0_real.onnx"
    assert path.stat().st_size < 20e6
    metadata = check_onnx_contract(path)
    assert metadata.input_hw == (384, 768)
    assert metadata.labels.names == CITYSCAPES.names
    assert metadata.labels.drivable == (CITYSCAPES.index("road"),)


def test_shipped_checkpoint_is_the_exported_network(shared_images: Path) -> None:
    """models/*.safetensors (for fine-tuning) computes what the ONNX file computes."""
    torch = pytest.importorskip("torch")
    import cv2
    import onnxruntime as ort

    from panoptic_ros.modeling.checkpoint import load_checkpoint

    onnx_path = default_model_path()
    network, _, _ = load_checkpoint(onnx_path.with_suffix(".safetensors"))
    frame = cv2.imread(str(shared_images / "nuscenes_CAM_FRONT.jpg"))[:, :, ::-1]
    image = np.ascontiguousarray(cv2.resize(frame, (768, 384)))[None]
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(image))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["semantic_logits"], {"image": image})[0]
    np.testing.assert_allclose(logits, expected[0].numpy(), rtol=1e-3, atol=1e-3)


@pytest.fixture(scope="module")
def default_pipeline() -> Any:
    from panoptic_ros.pipeline import PanopticPipeline

    with PanopticPipeline.from_config(config_from_flat({"backend.name": "onnxruntime"})) as built:
        yield built


def test_real_road_and_sky_on_the_dashcam(default_pipeline: Any, shared_bags: Path) -> None:
    from panoptic_ros.bags import iter_messages, open_reader
    from panoptic_ros.codec import decode_image

    road, sky = CITYSCAPES.index("road"), CITYSCAPES.index("sky")
    checked = 0
    with open_reader(shared_bags / "dashcam_compressed_mcap") as reader:
        topic = "/camera/front/image_raw/compressed"
        for index, (_, message) in enumerate(iter_messages(reader, topic)):
            if index % 50:
                continue
            result = default_pipeline.process(decode_image(message))
            assert result.semantic.shape == (540, 960)
            lane = np.mean(result.semantic[EGO_LANE] == road)
            above = np.mean(result.semantic[SKY] == sky)
            assert lane > 0.9, f"frame {index}: only {lane:.0%} of the lane ahead is road"
            assert above > 0.9, f"frame {index}: only {above:.0%} of the sky is sky"
            assert np.mean(result.drivable_mask[EGO_LANE] == 255) > 0.9
            checked += 1
    assert checked == 5
