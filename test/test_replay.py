"""Tests of panoptic_ros.replay with a fake pipeline: outputs, checks, atomicity, skips."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from bag_fixtures import (
    FRAME_ID,
    PERIOD_NS,
    START_NS,
    FakePipeline,
    FakeTracker,
    fake_result,
    hash_tree,
    make_bag_with_corrupt_frames,
    make_compressed_bag,
    make_two_topic_bag,
)

from panoptic_ros.bags import choose_image_topic, iter_messages, make_typestore, open_reader
from panoptic_ros.config import RenderConfig, ReplayConfig
from panoptic_ros.errors import BagError, ConfigError
from panoptic_ros.replay import STAGES, ReplaySummary, run_replay
from panoptic_ros.ros_messages import OUTPUT_TOPICS, stamp_ns
from panoptic_ros.timing import STAGES as FRAME_STAGES

OUTPUTS = {
    "/panoptic/drivable_mask": "sensor_msgs/msg/Image",
    "/panoptic/semantic": "sensor_msgs/msg/Image",
    "/panoptic/instance_ids": "sensor_msgs/msg/Image",
    "/panoptic/instances": "vision_msgs/msg/Detection2DArray",
    "/panoptic/overlay": "sensor_msgs/msg/Image",
}
ENCODINGS = {
    "/panoptic/drivable_mask": "mono8",
    "/panoptic/semantic": "mono8",
    "/panoptic/instance_ids": "16UC1",
    "/panoptic/overlay": "bgr8",
}


def _replay(bag: Path, out: Path, pipeline: Any | None = None, **kwargs: Any) -> ReplaySummary:
    kwargs.setdefault("config", ReplayConfig(write_video=False))
    kwargs.setdefault("render", RenderConfig())
    kwargs.setdefault("tracker", FakeTracker())
    kwargs.setdefault("progress", False)
    return run_replay(bag, out, pipeline or FakePipeline(), **kwargs)


def _input_frames(bag: Path) -> list[tuple[int, Any]]:
    with open_reader(bag) as reader:
        return list(iter_messages(reader, choose_image_topic(reader)))


def _read_outputs(out: Path) -> dict[str, list[tuple[int, Any]]]:
    with open_reader(out / "panoptic") as reader:
        assert {t: i.msgtype for t, i in reader.topics.items()} == OUTPUTS
        # The output bag carries the real vision_msgs definitions (same RIHS01 hash).
        typestore = make_typestore()
        for connection in reader.connections:
            assert connection.digest == typestore.hash_rihs01(connection.msgtype)
        return {topic: list(iter_messages(reader, topic)) for topic in OUTPUTS}


def _check_outputs(out: Path, inputs: list[tuple[int, Any]], hw: tuple[int, int]) -> None:
    outputs = _read_outputs(out)
    for topic, messages in outputs.items():
        assert len(messages) == len(inputs), topic
        for (log_in, msg_in), (log_out, msg_out) in zip(inputs, messages, strict=True):
            assert log_out == log_in
            assert stamp_ns(msg_out.header) == stamp_ns(msg_in.header)
            assert msg_out.header.frame_id == msg_in.header.frame_id
            if topic in ENCODINGS:
                assert msg_out.encoding == ENCODINGS[topic]
                assert (msg_out.height, msg_out.width) == hw
    height, width = hw
    first_mask = outputs["/panoptic/drivable_mask"][0][1]
    mask = first_mask.data.reshape(height, width)
    assert (mask[:, : width // 2] == 255).all()
    assert (mask[:, width // 2 :] == 0).all()
    ids = outputs["/panoptic/instance_ids"][0][1].data.view("<u2").reshape(height, width)
    expected = fake_result(np.zeros((height, width, 3), np.uint8))
    np.testing.assert_array_equal(ids, expected.instance_ids)
    for frame, (_, detections) in enumerate(outputs["/panoptic/instances"], start=1):
        [detection] = detections.detections
        assert detection.results[0].hypothesis.class_id == "car"
        x0, y0, x1, y1 = expected.instances[0].bbox_xyxy
        assert detection.bbox.size_x == x1 - x0 + 1
        assert detection.bbox.center.position.y == (y0 + y1) / 2
        assert detection.id == str(1000 * frame + 1)  # from the tracker
        assert stamp_ns(detection.header) == stamp_ns(detections.header)


def test_replay_fixture_bag(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, "png", count=3)
    before = hash_tree(bag)
    out = tmp_path / "out"
    summary = _replay(bag, out, config_dump={"replay": {"write_video": False}})
    assert hash_tree(bag) == before
    inputs = _input_frames(bag)
    _check_outputs(out, inputs, (64, 96))
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "panoptic", "summary.json"]
    assert [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []
    assert yaml.safe_load((out / "config.yaml").read_text()) == {"replay": {"write_video": False}}

    assert (summary.frames, summary.skipped) == (3, 0)
    assert summary.topics_written == dict.fromkeys(OUTPUTS, 3)
    assert summary.video_fps is None
    assert tuple(summary.stages) == STAGES == (*FRAME_STAGES, "objects", "write", "total")
    assert summary.stages["inference"].p50_ms == pytest.approx(2.0)
    assert summary.stages["objects"].p99_ms < 1.0  # no CameraInfo in the bag: nothing placed
    for stage in ("tracking", "overlay", "messages", "write"):
        assert summary.stages[stage].p50_ms > 0, stage
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary.to_dict()))
    assert saved["frames"] == 3
    assert saved["input_bag"] == str(bag)
    assert saved["backend"] == "backend=fake model=none network=0x0"
    assert saved["stages_ms"]["fusion"]["p99"] == pytest.approx(3.0)
    table = summary.format_table()
    for text in ("3 processed, 0 skipped", "inference", "p99 ms", "/panoptic/overlay (3 msgs)"):
        assert text in table


def test_replay_real_raw_bag_with_video(tmp_path: Path, shared_bags: Path) -> None:
    bag = shared_bags / "dashcam_raw_mcap"
    before = hash_tree(bag)
    out = tmp_path / "dashcam"
    summary = _replay(bag, out, config=ReplayConfig(write_video=True))
    assert hash_tree(bag) == before
    inputs = _input_frames(bag)
    assert len(inputs) == 12
    assert {m.header.frame_id for _, m in inputs} == {"camera_front_optical_frame"}
    _check_outputs(out, inputs, (540, 960))
    assert summary.frames == 12
    assert summary.video_fps == pytest.approx(25.0)  # 40 ms stamp spacing
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    try:
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0)
        ok, frame = capture.read()
        assert ok
        assert frame.shape == (540, 960, 3)
    finally:
        capture.release()
    assert "overlay.mp4" in summary.files


def test_output_exists_needs_overwrite(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, count=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"output '.*out' exists; pass --overwrite"):
        _replay(bag, out)
    assert (out / "old.txt").read_text() == "keep me"
    _replay(bag, out, overwrite=True)
    assert not (out / "old.txt").exists()
    assert (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compressed_jpeg_mcap", "out"]


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_output_overlapping_input_is_refused(tmp_path: Path, where: str) -> None:
    bag = make_compressed_bag(tmp_path / "bags", count=2)
    before = hash_tree(tmp_path / "bags")
    out = {"inside": bag / "out", "same": bag, "parent": tmp_path / "bags"}[where]
    with pytest.raises(ConfigError, match="the input"):
        _replay(bag, out, overwrite=True)
    assert hash_tree(tmp_path / "bags") == before
    assert not (bag / "out").exists()


def test_failure_mid_way_leaves_nothing(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, count=4)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="failure on frame 2"):
        _replay(bag, out, FakePipeline(fail_on=2), config=ReplayConfig(write_video=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == [bag.name]


def test_failure_mid_way_keeps_old_output(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, count=3)
    out = tmp_path / "out"
    _replay(bag, out, config=ReplayConfig(write_video=False, max_frames=1))
    before = hash_tree(out)
    with pytest.raises(RuntimeError):
        _replay(bag, out, FakePipeline(fail_on=2), overwrite=True)
    assert hash_tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [bag.name, "out"]


def test_corrupt_frames_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bag = make_bag_with_corrupt_frames(tmp_path, corrupt=(1, 2), count=5)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="panoptic_ros.replay"):
        summary = _replay(bag, out)
    assert (summary.frames, summary.skipped) == (3, 2)
    [(reason, count)] = summary.skipped_reasons.items()
    assert count == 2
    assert reason
    # One warning per distinct reason, not one per frame.
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) == 1
    outputs = _read_outputs(out)
    kept = [START_NS + i * PERIOD_NS for i in (0, 3, 4)]
    for messages in outputs.values():
        assert [t for t, _ in messages] == kept
    saved = json.loads((out / "summary.json").read_text())
    assert saved["skipped"] == 2
    assert saved["skipped_reasons"] == {reason: 2}
    assert "skipped  2 x" in summary.format_table()


def test_max_frames_and_namespace(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, count=4)
    out = tmp_path / "out"
    config = ReplayConfig(write_video=False, max_frames=2, output_namespace="/seg/front")
    summary = _replay(bag, out, config=config)
    assert summary.frames == 2
    with open_reader(out / "panoptic") as reader:
        assert sorted(reader.topics) == sorted(f"/seg/front/{name}" for name in OUTPUT_TOPICS)
        assert {i.msgcount for i in reader.topics.values()} == {2}


def test_default_tracker_assigns_ids(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path, count=3)
    out = tmp_path / "out"
    run_replay(
        bag,
        out,
        FakePipeline(),
        config=ReplayConfig(write_video=False),
        render=RenderConfig(draw_boxes=False),
        progress=False,
    )
    ids = [d.detections[0].id for _, d in _read_outputs(out)["/panoptic/instances"]]
    # The same object in every frame keeps one id, and it is a tracker id, not 0.
    assert len(set(ids)) == 1
    assert ids[0] != "0"


def test_bad_inputs_fail_before_any_work(tmp_path: Path, shared_bags: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(BagError, match="does not exist"):
        _replay(tmp_path / "missing", out)
    with pytest.raises(BagError, match="no sensor_msgs/Image or sensor_msgs/CompressedImage"):
        _replay(shared_bags / "rosbag2_recorder_talker_mcap", out)
    two = make_two_topic_bag(tmp_path)
    with pytest.raises(BagError, match="--topic"):
        _replay(two, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [two.name]
    summary = _replay(two, out, topic="/cam_b/image_raw/compressed")
    assert summary.topic == "/cam_b/image_raw/compressed"
    assert summary.frames == 2
    assert FRAME_ID in {m.header.frame_id for _, m in _read_outputs(out)["/panoptic/semantic"]}
