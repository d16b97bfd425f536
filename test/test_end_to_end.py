"""The bundled model and sample bag end to end: accuracy, alignment, replay, real recordings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bag_fixtures import hash_tree

from panoptic_ros.config import config_from_flat
from panoptic_ros.data.synthetic import HELD_OUT_SEED_START, generate_scene
from panoptic_ros.errors import BagError
from panoptic_ros.evaluation.model_eval import evaluate_pipeline, held_out_synthetic
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.resources import default_model_path, sample_bag_path

pytest.importorskip("onnxruntime")
#: The demo model must reach this panoptic quality on held-out synthetic scenes.
MIN_PQ = 0.5


@pytest.fixture(scope="module")
def pipeline() -> Any:
    config = config_from_flat({"backend.name": "onnxruntime"})
    with PanopticPipeline.from_config(config) as built:
        yield built


def test_bundled_model_is_small_and_described() -> None:
    from panoptic_ros.export.onnx_export import check_onnx_contract

    path = default_model_path()
    assert path.stat().st_size < 20e6
    metadata = check_onnx_contract(path)
    assert metadata.labels.names[0] == "road"
    assert metadata.provenance["steps"] > 0


def test_panoptic_quality_on_held_out_scenes(pipeline: Any) -> None:
    """Seeds at or above HELD_OUT_SEED_START are never used in training."""
    scenes = held_out_synthetic(24, 256, 512)
    assert all(scene.seed >= HELD_OUT_SEED_START for scene in scenes)
    result = evaluate_pipeline(pipeline, scenes)
    print(result.format_table())
    assert result.summary["all"]["pq"] >= MIN_PQ, result.format_table()
    assert result.miou > 0.7


@pytest.mark.parametrize("size_hw", [(540, 960), (375, 1242), (256, 512)])
def test_outputs_line_up_with_the_input(pipeline: Any, size_hw: tuple[int, int]) -> None:
    """At camera sizes unlike the network's, predictions still sit on the right pixels."""
    scene = generate_scene(HELD_OUT_SEED_START + 77, *size_hw)
    result = pipeline.process(scene.image)
    assert result.semantic.shape == size_hw
    valid = scene.semantic != 255
    agreement = np.mean(result.semantic[valid] == scene.semantic[valid])
    # Shifting the prediction by a few pixels (a misaligned letterbox) costs agreement.
    shifted = np.roll(result.semantic, 12, axis=1)
    assert agreement > 0.8
    assert agreement > np.mean(shifted[valid] == scene.semantic[valid]) + 0.01
    for instance in result.instances:
        ys, xs = np.nonzero(result.instance_ids == instance.index)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == instance.bbox_xyxy
        assert instance.area_px == len(xs)


def read_outputs(bag: Path) -> dict[str, list[Any]]:
    from panoptic_ros.bags import iter_messages, open_reader

    with open_reader(bag) as reader:
        return {topic: [m for _, m in iter_messages(reader, topic)] for topic in reader.topics}


def check_output_bag(output: Path, inputs: list[Any]) -> None:
    topics = read_outputs(output / "panoptic")
    names = ("drivable_mask", "semantic", "instance_ids", "instances", "overlay")
    assert sorted(topics) == sorted(f"/panoptic/{n}" for n in names)
    encodings = {
        "drivable_mask": "mono8",
        "semantic": "mono8",
        "instance_ids": "16UC1",
        "overlay": "bgr8",
    }
    seen_ids: dict[str, int] = {}
    for name in names:
        messages = topics[f"/panoptic/{name}"]
        assert len(messages) == len(inputs), name
        for message, source in zip(messages, inputs, strict=True):
            assert message.header.stamp == source.header.stamp
            assert message.header.frame_id == source.header.frame_id
            if name in encodings:
                assert message.encoding == encodings[name]
                assert (message.height, message.width) == (source.height, source.width)
    for ids_message, detections in zip(
        topics["/panoptic/instance_ids"], topics["/panoptic/instances"], strict=True
    ):
        ids = np.frombuffer(ids_message.data, "<u2").reshape(ids_message.height, ids_message.width)
        assert int(ids.max()) == len(detections.detections)
        for k, detection in enumerate(detections.detections, start=1):
            ys, xs = np.nonzero(ids == k)
            box = detection.bbox
            x0 = box.center.position.x - (box.size_x - 1) / 2
            y0 = box.center.position.y - (box.size_y - 1) / 2
            assert x0 <= xs.min() and xs.max() <= x0 + box.size_x - 1
            assert y0 <= ys.min() and ys.max() <= y0 + box.size_y - 1
            # An id is never given to another object (class change = new object).
            cls = detection.results[0].hypothesis.class_id
            assert seen_ids.setdefault(detection.id, hash(cls)) == hash(cls)


def input_frames(bag: Path) -> list[Any]:
    from panoptic_ros.bags import choose_image_topic, iter_messages, open_reader

    with open_reader(bag) as reader:
        return [m for _, m in iter_messages(reader, choose_image_topic(reader))]


def _with_sizes(frames: list[Any]) -> list[Any]:
    """Header and decoded size of each input (CompressedImage has no size fields)."""
    from types import SimpleNamespace

    from panoptic_ros.codec import decode_image

    sized = []
    for frame in frames:
        image = decode_image(frame)
        sized.append(
            SimpleNamespace(header=frame.header, height=image.shape[0], width=image.shape[1])
        )
    return sized


def test_replay_of_the_bundled_bag(pipeline: Any, tmp_path: Path) -> None:
    from panoptic_ros.config import Config
    from panoptic_ros.replay import run_replay

    bag = sample_bag_path()
    before = hash_tree(bag)
    output = tmp_path / "out"
    summary = run_replay(
        bag, output, pipeline, config=Config().replay, render=Config().render, progress=False
    )
    assert summary.frames == 16
    assert hash_tree(bag) == before
    check_output_bag(output, _with_sizes(input_frames(bag)))
    assert (output / "overlay.mp4").stat().st_size > 10_000
    # The drives zoom in on the same scene: objects keep their ids over several frames.
    detections = read_outputs(output / "panoptic")["/panoptic/instances"]
    ids = [d.id for frame in detections[:8] for d in frame.detections]
    assert max(ids.count(i) for i in set(ids)) >= 4


@pytest.mark.parametrize(
    "bag_name", ["dashcam_compressed_mcap", "dashcam_compressed_sqlite3", "dashcam_raw_mcap"]
)
def test_replay_of_real_recordings(
    pipeline: Any, tmp_path: Path, shared_bags: Path, bag_name: str
) -> None:
    from dataclasses import replace

    from panoptic_ros.config import Config
    from panoptic_ros.replay import run_replay

    bag = shared_bags / bag_name
    config = replace(Config().replay, max_frames=6, write_video=False)
    summary = run_replay(
        bag, tmp_path / "out", pipeline, config=config, render=Config().render, progress=False
    )
    assert summary.frames == 6
    check_output_bag(tmp_path / "out", _with_sizes(input_frames(bag)[:6]))


@pytest.mark.parametrize(
    "bag_name", ["rosbag2_recorder_talker_mcap", "rosbag2_recorder_talker_sqlite3"]
)
def test_bags_without_images_are_refused(
    pipeline: Any, tmp_path: Path, shared_bags: Path, bag_name: str
) -> None:
    from panoptic_ros.config import Config
    from panoptic_ros.replay import run_replay

    with pytest.raises(BagError, match="no sensor_msgs/Image or sensor_msgs/CompressedImage topic"):
        run_replay(
            shared_bags / bag_name,
            tmp_path / "out",
            pipeline,
            config=Config().replay,
            render=Config().render,
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_onnx_runtime_matches_torch(tiny_onnx_model: Path) -> None:
    """The exported graph computes what the PyTorch network computes."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from panoptic_ros.contract import ModelMetadata
    from panoptic_ros.export.onnx_export import export_onnx
    from panoptic_ros.labels import CITYSCAPES
    from panoptic_ros.modeling.network import build_network

    torch.manual_seed(1)
    network = build_network(num_classes=19).eval()
    path = export_onnx(
        network,
        tiny_onnx_model.parent / "full.onnx",
        metadata=ModelMetadata(labels=CITYSCAPES, input_hw=(256, 512)),
        input_hw=(256, 512),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for size in ((256, 512), (384, 640)):
        image = generate_scene(HELD_OUT_SEED_START + 5, *size).image[None]
        with torch.no_grad():
            expected = network(torch.from_numpy(image))
        for got, want in zip(session.run(None, {"image": image}), expected, strict=True):
            worst = max(worst, float(np.abs(got - want.numpy()).max()))
    print(f"max |ONNX Runtime - PyTorch| = {worst:.2e}")
    assert worst < 1e-3
