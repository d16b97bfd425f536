"""Hardening (issue #5): bad inputs, model trouble, bags and unsafe files.

Every input either converts correctly or fails with the project's own error type, one line
long; nothing crashes, allocates what a message merely declares, or leaves half-written
files. Hypothesis drives the codec, the fusion and the message conversion; fixed cases
cover corrupt and truncated files, odd camera sizes through the real pipeline, broken and
foreign model files, bags and files from strangers. docs/RELIABILITY.md maps each case of
the issue to the test here (or in test_soak.py) that proves it.

The rclpy stand-in helpers at the end (``ros_standin``, :class:`Probe`, ...) are shared with
test_soak.py.
"""

from __future__ import annotations

import ast
import importlib
import math
import shutil
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from bag_fixtures import (
    FakePipeline as BagFakePipeline,
)
from bag_fixtures import (
    FakeTracker,
    hash_tree,
    make_compressed_bag,
    make_frames,
    make_raw_bag,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from oracle import OracleBackend

from panoptic_ros.backends.base import BackendBase
from panoptic_ros.codec import (
    MAX_IMAGE_SIDE,
    SUPPORTED_ENCODINGS,
    decode_compressed,
    decode_image,
    decode_raw,
    encode_compressed,
    encode_raw,
)
from panoptic_ros.contract import METADATA_KEY, ModelMetadata
from panoptic_ros.errors import (
    BackendError,
    BagError,
    CodecError,
    ConfigError,
    EngineError,
    ModelFileError,
    PanopticError,
)
from panoptic_ros.fusion import FusionParams, fuse_panoptic
from panoptic_ros.geometry import Letterbox
from panoptic_ros.labels import CITYSCAPES, ClassInfo, LabelSpace
from panoptic_ros.results import FrameResult, HeadOutputs, Instance

PACKAGE = Path(__file__).resolve().parent.parent / "panoptic_ros"
# Hypothesis budgets: enough to find the classic mistakes, small enough for a 2-core CI.
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MEDIUM = settings(FAST, max_examples=60)


def one_line(err: BaseException) -> str:
    """The error's message, checked to be a single line (the project's error rule)."""
    text = str(err)
    assert text and "\n" not in text, repr(text)
    return text


# ====================================================================================
# 1. Bad frames: the codec converts or raises CodecError, never anything else.

raw_encodings = st.sampled_from(sorted(SUPPORTED_ENCODINGS))
any_encoding = st.one_of(raw_encodings, st.text(max_size=12))
# Sizes around the interesting edges: empty, tiny, odd, and far beyond the limits.
sides = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, 10**6, 2**31 - 1, 2**32 + 5]),
)


@FAST
@given(
    encoding=any_encoding,
    height=sides,
    width=sides,
    step=st.one_of(st.integers(-4, 200), st.sampled_from([2**31 - 1, 2**40])),
    big_endian=st.booleans(),
    payload=st.binary(max_size=4096),
)
def test_any_raw_fields_convert_or_raise_codec_error(
    encoding: str, height: int, width: int, step: int, big_endian: bool, payload: bytes
) -> None:
    try:
        image = decode_raw(
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=big_endian,
            step=step,
            data=payload,
        )
    except CodecError as err:
        one_line(err)
        return
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8


def _mutations(fields: Any) -> dict[str, dict[str, Any]]:
    """Wrong width, height or step, short or long data, zero sizes: one field each."""
    data = fields.data
    return {
        "width+1": {"width": fields.width + 1},
        "width-1": {"width": fields.width - 1},
        "width*2": {"width": fields.width * 2},
        "height+1": {"height": fields.height + 1},
        "height*2": {"height": fields.height * 2},
        "step-1": {"step": fields.step - 1},
        "step+1": {"step": fields.step + 1},
        "step=0": {"step": 0},
        "data-1": {"data": data[:-1]},
        "data/2": {"data": data[: len(data) // 2]},
        "data+7": {"data": data + b"\x07" * 7},
        "no data": {"data": b""},
        "width=0": {"width": 0},
        "height=0": {"height": 0},
        "both=0": {"width": 0, "height": 0, "step": 0, "data": b""},
    }


def _decode_or_error(message: Any) -> npt.NDArray[np.uint8] | CodecError:
    try:
        return decode_image(message)
    except CodecError as err:
        return err


@pytest.mark.parametrize("encoding", sorted(SUPPORTED_ENCODINGS))
def test_every_encoding_with_wrong_fields(encoding: str) -> None:
    """Each supported encoding with each wrong field: a correct image or CodecError."""
    rgb = make_frames(1, height=6, width=8)[0]
    fields = encode_raw(rgb, encoding)
    for name, change in _mutations(fields).items():
        message = replace(fields, **change)
        image = _decode_or_error(message)
        if isinstance(image, CodecError):
            one_line(image)
            assert name != "data+7", image  # extra bytes are ignored, never an error
            continue
        assert image.shape == (message.height, message.width, 3), name
        # These cannot decode: nothing to show, or too few bytes for the declared rows.
        assert name not in ("data-1", "data/2", "no data", "width=0", "height=0", "both=0")
    # A longer payload is the one mutation that must always convert, to the same pixels.
    longer = replace(fields, data=fields.data + b"\x07" * 7)
    np.testing.assert_array_equal(decode_image(longer), decode_image(fields))


@FAST
@given(
    rgb=hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
    encoding=raw_encodings,
    padding=st.integers(0, 9),
    big_endian=st.booleans(),
)
def test_valid_images_decode_the_same_with_any_row_padding(
    rgb: npt.NDArray[np.uint8], encoding: str, padding: int, big_endian: bool
) -> None:
    height, width = rgb.shape[:2]
    if encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2", "nv12", "nv21"):
        # Subsampled chroma needs even sides: crop to them (or skip 1-pixel sides).
        assume(width >= 2 and (height >= 2 or encoding[:2] != "nv"))
        rgb = rgb[: height - height % 2 if encoding[:2] == "nv" else height, : width - width % 2]
    unpadded = decode_image(encode_raw(rgb, encoding, big_endian=big_endian))
    padded = decode_image(encode_raw(rgb, encoding, step_padding=padding, big_endian=big_endian))
    np.testing.assert_array_equal(padded, unpadded)
    assert unpadded.shape == rgb.shape
    if encoding in ("rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "8UC4"):
        np.testing.assert_array_equal(unpadded, rgb)


compressed_prefixes = st.sampled_from(
    [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b""]
)


@FAST
@given(
    prefix=compressed_prefixes,
    body=st.binary(max_size=2048),
    eoi=st.booleans(),
    fmt=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "tiff"]),
)
def test_any_compressed_payload_converts_or_raises_codec_error(
    prefix: bytes, body: bytes, eoi: bool, fmt: str
) -> None:
    payload = prefix + body + (b"\xff\xd9" if eoi else b"")
    try:
        image = decode_compressed(format=fmt, data=payload)
    except CodecError as err:
        one_line(err)
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def _sample_compressed(shared_images: Path | None) -> list[tuple[str, bytes]]:
    rgb = make_frames(1, height=48, width=64)[0]
    samples = [
        ("synthetic.jpg", encode_compressed(rgb, "jpeg").data),
        ("synthetic.png", encode_compressed(rgb, "png").data),
    ]
    if shared_images is not None:
        for name in ("udacity_highway_1280x720.jpg", "kitti_000008_1242x375.png"):
            samples.append((name, (shared_images / name).read_bytes()))
    return samples


@pytest.fixture
def compressed_samples(request: pytest.FixtureRequest) -> list[tuple[str, bytes]]:
    """Synthetic JPEG and PNG, plus a real camera JPEG and PNG when ../shared/data exists."""
    try:
        images: Path | None = request.getfixturevalue("shared_images")
    except pytest.skip.Exception:
        images = None
    return _sample_compressed(images)


def test_truncated_jpeg_and_png_raise_codec_error(
    compressed_samples: list[tuple[str, bytes]],
) -> None:
    for name, data in compressed_samples:
        cuts = sorted({1, 2, 3, 8, 12, 20, 30, *range(0, len(data), max(1, len(data) // 40))})
        for cut in cuts:
            if cut <= 0 or cut >= len(data):
                continue
            with pytest.raises(CodecError) as caught:
                decode_compressed(format=name.rsplit(".", 1)[1], data=data[:cut])
            one_line(caught.value)


def test_corrupt_jpeg_and_png_convert_or_raise_codec_error(
    compressed_samples: list[tuple[str, bytes]],
) -> None:
    """Bytes overwritten anywhere: a frame of some size, or CodecError; never a crash."""
    rng = np.random.default_rng(5)
    outcomes = {"decoded": 0, "refused": 0}
    for name, data in compressed_samples:
        for _ in range(20):
            corrupt = bytearray(data)
            for _ in range(int(rng.integers(1, 6))):
                start = int(rng.integers(0, len(corrupt)))
                length = int(rng.integers(1, 9))
                corrupt[start : start + length] = (
                    rng.integers(0, 256, length).astype(np.uint8).tobytes()
                )
            try:
                image = decode_compressed(format=name, data=bytes(corrupt))
            except CodecError as err:
                one_line(err)
                outcomes["refused"] += 1
                continue
            assert image.ndim == 3 and image.shape[2] == 3
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0  # the corruptions were not all harmless


def _jpeg_declaring(height: int, width: int) -> bytes:
    """A valid 8x8 JPEG whose frame header (SOF0) declares another size."""
    data = bytearray(encode_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg").data)
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _png_declaring(height: int, width: int) -> bytes:
    """A valid 8x8 PNG whose IHDR declares another size (CRC fixed, so libpng reads it)."""
    import zlib

    data = bytearray(encode_compressed(np.zeros((8, 8, 3), np.uint8), "png").data)
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize(
    ("kind", "declared_hw", "payload"),
    [
        ("raw", (10**6, 10**6), 10),
        ("raw", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), 10),
        ("raw", (1, MAX_IMAGE_SIDE + 1), 10),
        ("raw", (2**31 - 1, 3), 10),
        ("raw", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), 3 * 4096),
        ("jpeg", (16384, 16384), 0),
        ("jpeg", (65535, 65535), 0),
        ("jpeg", (4000, 4000), 0),
        ("png", (16384, 16384), 0),
        ("png", (2**31 - 1, 2**31 - 1), 0),
        ("png", (0, 8), 0),
    ],
)
def test_absurd_declared_sizes_allocate_nothing(
    kind: str, declared_hw: tuple[int, int], payload: int
) -> None:
    """The check comes before the allocation: peak traced memory stays under 1 MB."""
    height, width = declared_hw
    if kind == "raw":
        fields: Any = encode_raw(np.zeros((1, 1, 3), np.uint8), "rgb8")
        fields = replace(fields, height=height, width=width, step=3 * width, data=bytes(payload))
    elif kind == "jpeg":
        fields = encode_compressed(np.zeros((1, 1, 3), np.uint8), "jpeg")
        fields = replace(fields, data=_jpeg_declaring(height, width))
    else:
        fields = encode_compressed(np.zeros((1, 1, 3), np.uint8), "png")
        fields = replace(fields, data=_png_declaring(height, width))
    tracemalloc.start()
    try:
        with pytest.raises(CodecError) as caught:
            decode_image(fields)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_line(caught.value)
    assert peak < 1_000_000, f"{peak / 1e6:.1f} MB allocated for a refused {kind} frame"


def test_forged_headers_of_plausible_size_still_decode() -> None:
    """The density check leaves real frames alone (a black 1080p PNG is the densest)."""
    black = np.zeros((1080, 1920, 3), np.uint8)
    ok, png = cv2.imencode(".png", black, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    assert decode_compressed(format="png", data=png.tobytes()).shape == (1080, 1920, 3)
    assert decode_compressed(format="jpeg", data=_jpeg_declaring(16, 16)).shape == (16, 16, 3)


# ====================================================================================
# 2. Fusion: any head values (NaN, Inf, huge) give a valid, self-consistent result.

ROAD, SIDEWALK, BUILDING, CAR, PERSON = range(5)
SMALL_LABELS = LabelSpace(
    (
        ClassInfo("road", False, (128, 64, 128), 7),
        ClassInfo("sidewalk", False, (244, 35, 232), 8),
        ClassInfo("building", False, (70, 70, 70), 11),
        ClassInfo("car", True, (0, 0, 142), 26),
        ClassInfo("person", True, (220, 20, 60), 24),
    ),
    drivable=(ROAD,),
)

head_values = st.one_of(
    st.floats(-30, 30, width=32),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]).map(float),
    st.sampled_from([3.0e38, -3.0e38]).map(lambda v: float(np.float32(v))),
)


def check_frame_result(result: FrameResult, labels: LabelSpace, image_hw: tuple[int, int]) -> None:
    """Every invariant a consumer of FrameResult relies on."""
    assert result.semantic.shape == image_hw and result.semantic.dtype == np.uint8
    assert result.instance_ids.shape == image_hw and result.instance_ids.dtype == np.uint16
    assert result.drivable_mask.shape == image_hw and result.drivable_mask.dtype == np.uint8
    valid_values = set(range(labels.num_classes)) | {255}
    assert set(np.unique(result.semantic).tolist()) <= valid_values
    drivable = np.isin(result.semantic, labels.drivable)
    np.testing.assert_array_equal(result.drivable_mask, np.where(drivable, 255, 0))
    # Thing pixels are exactly the pixels of some instance.
    is_thing = labels.is_thing_table()[result.semantic]
    np.testing.assert_array_equal(is_thing, result.instance_ids > 0)
    count = len(result.instances)
    assert int(result.instance_ids.max(initial=0)) == count
    for position, instance in enumerate(result.instances):
        assert instance.index == position + 1
        assert labels.classes[instance.class_id].is_thing
        assert instance.class_name == labels.names[instance.class_id]
        assert math.isfinite(instance.score) and 0.0 <= instance.score <= 1.0
        ys, xs = np.nonzero(result.instance_ids == instance.index)
        assert len(xs) == instance.area_px > 0
        assert instance.bbox_xyxy == (xs.min(), ys.min(), xs.max(), ys.max())
        assert np.all(result.semantic[ys, xs] == instance.class_id)
        assert instance.centroid_yx == pytest.approx((ys.mean(), xs.mean()))


@st.composite
def fusion_cases(draw: st.DrawFn) -> tuple[HeadOutputs, Letterbox, FusionParams]:
    cells_h, cells_w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    image_hw = (draw(st.integers(1, 60)), draw(st.integers(1, 60)))
    letterbox = Letterbox.fit(image_hw, (4 * cells_h, 4 * cells_w))
    classes = SMALL_LABELS.num_classes

    def plane(channels: int) -> npt.NDArray[np.float32]:
        shape = (1, channels, cells_h, cells_w)
        return draw(hnp.arrays(np.float32, shape, elements=head_values))

    heads = HeadOutputs(plane(classes), plane(1), plane(2))
    params = FusionParams(
        center_threshold=draw(st.floats(0.0, 1.0)),
        nms_kernel=draw(st.sampled_from([1, 3, 5, 7])),
        top_k=draw(st.integers(0, 12)),
        score_threshold=draw(st.floats(0.0, 1.0)),
        stuff_area_threshold_px=draw(st.integers(0, 64)),
        thing_area_threshold_px=draw(st.integers(0, 64)),
        upsample=draw(st.sampled_from(["bilinear", "nearest"])),
    )
    return heads, letterbox, params


@FAST
@given(case=fusion_cases())
def test_fusion_never_raises_and_its_output_is_consistent(
    case: tuple[HeadOutputs, Letterbox, FusionParams],
) -> None:
    heads, letterbox, params = case
    result = fuse_panoptic(heads, letterbox, SMALL_LABELS, params)
    check_frame_result(result, SMALL_LABELS, letterbox.image_hw)


# ====================================================================================
# 3. Message conversion: any FrameResult gives messages that serialise and read back.


@pytest.fixture(scope="module")
def typestore() -> Any:
    from panoptic_ros.bags import make_typestore

    return make_typestore()


# ROS strings are C strings on the wire: no NUL, and valid UTF-8 (no lone surrogates).
ros_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
)


@st.composite
def frame_results(draw: st.DrawFn) -> FrameResult:
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    count = draw(st.integers(0, 4))
    ids = draw(hnp.arrays(np.uint16, (height, width), elements=st.integers(0, count)))
    instances = tuple(
        Instance(
            index=k,
            class_id=draw(st.integers(0, 254)),
            class_name=draw(ros_text),
            score=draw(st.floats(allow_nan=True, allow_infinity=True)),
            bbox_xyxy=draw(st.tuples(*[st.integers(-(2**31), 2**31)] * 4)),
            area_px=draw(st.integers(0, 2**40)),
            centroid_yx=(draw(st.floats(0, 1e4)), draw(st.floats(0, 1e4))),
            track_id=draw(st.integers(0, 2**63 - 1)),
        )
        for k in range(1, count + 1)
    )
    semantic = draw(hnp.arrays(np.uint8, (height, width)))
    drivable = draw(hnp.arrays(np.uint8, (height, width), elements=st.sampled_from([0, 255])))
    return FrameResult(semantic, ids, drivable, instances)


@MEDIUM
@given(
    result=frame_results(),
    sec=st.integers(0, 2**31 - 1),
    nanosec=st.integers(0, 999_999_999),
    frame_id=ros_text,
)
def test_any_frame_result_serialises_and_reads_back(
    typestore: Any, result: FrameResult, sec: int, nanosec: int, frame_id: str
) -> None:
    from panoptic_ros.render import render_overlay
    from panoptic_ros.ros_messages import MessageClasses, build_output_messages, header_message

    classes = MessageClasses.from_typestore(typestore)
    header = header_message(classes, sec * 1_000_000_000 + nanosec, frame_id)
    labels = CITYSCAPES
    safe = replace(
        result,
        semantic=np.where(result.semantic < labels.num_classes, result.semantic, 255).astype(
            np.uint8
        ),
    )
    overlay = render_overlay(
        np.zeros((*safe.image_hw, 3), np.uint8), safe, labels, draw_boxes=False
    )
    messages = build_output_messages(classes, header, result, overlay_bgr=overlay)
    arrays = {
        "drivable_mask": result.drivable_mask,
        "semantic": result.semantic,
        "instance_ids": result.instance_ids,
        "overlay": overlay,
    }
    for name, message in messages.items():
        data = typestore.serialize_cdr(message, message.__msgtype__)
        back = typestore.deserialize_cdr(data, message.__msgtype__)
        assert back.header.frame_id == frame_id
        assert (back.header.stamp.sec, back.header.stamp.nanosec) == (sec, nanosec)
        if name == "instances":
            assert [d.id for d in back.detections] == [
                str(i.track_id or i.index) for i in result.instances
            ]
            for detection, instance in zip(back.detections, result.instances, strict=True):
                hypothesis = detection.results[0].hypothesis
                assert hypothesis.class_id == instance.class_name
                assert hypothesis.score == instance.score or math.isnan(instance.score)
                x0, _, x1, _ = instance.bbox_xyxy
                assert detection.bbox.size_x == float(x1 - x0 + 1)
            continue
        pixels = arrays[name]
        assert (back.height, back.width) == pixels.shape[:2]
        expected = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        assert back.data.tobytes() == expected
        assert back.step * back.height == len(expected)


pixel_dtypes = st.sampled_from(
    [np.uint8, np.uint16, np.int8, np.int16, np.float32, np.bool_, np.int64, ">u2"]
)


@MEDIUM
@given(
    pixels=hnp.arrays(
        pixel_dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
    ),
    encoding=st.one_of(st.sampled_from(["mono8", "16UC1", "bgr8"]), st.text(max_size=6)),
)
def test_any_pixels_make_a_valid_image_message_or_codec_error(
    typestore: Any, pixels: npt.NDArray[Any], encoding: str
) -> None:
    from panoptic_ros.ros_messages import MessageClasses, header_message, image_message

    classes = MessageClasses.from_typestore(typestore)
    header = header_message(classes, 1, "camera")
    try:
        message = image_message(classes, header, pixels, encoding)  # type: ignore[arg-type]
    except CodecError as err:
        one_line(err)
        return
    data = typestore.serialize_cdr(message, message.__msgtype__)
    back = typestore.deserialize_cdr(data, message.__msgtype__)
    assert back.step * back.height == len(back.data) == pixels.nbytes
    assert (back.height, back.width) == pixels.shape[:2]


# ====================================================================================
# 4. Odd sizes and aspect ratios far from the model's: outputs stay on the input's pixels.

ODD_SIZES = [(1, 4000), (4000, 3), (17, 23), (1, 1), (2, 3), (3000, 1), (5, 2000)]


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_onnx_model: Path) -> Iterator[Any]:
    """The real pipeline (letterbox, ONNX Runtime, fusion) on the tiny random-weight model."""
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.pipeline import PanopticPipeline

    config = config_from_flat(
        {
            "model.model_file_path": str(tiny_onnx_model),
            "backend.name": "onnxruntime",
            "backend.num_threads": 1,
            "fusion.stuff_area_threshold_px": 0,
            "fusion.thing_area_threshold_px": 0,
        }
    )
    with PanopticPipeline.from_config(config) as pipeline:
        yield pipeline


@pytest.mark.parametrize("size_hw", ODD_SIZES)
def test_odd_sizes_through_the_onnx_pipeline(tiny_pipeline: Any, size_hw: tuple[int, int]) -> None:
    rgb = np.random.default_rng(sum(size_hw)).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    fields = encode_raw(rgb, "bgr8", step_padding=3)
    image, result = tiny_pipeline.process_message(fields)
    np.testing.assert_array_equal(image, rgb)
    check_frame_result(result, tiny_pipeline.labels, size_hw)


def _oracle_scene(size_hw: tuple[int, int]) -> tuple[npt.NDArray[np.uint8], tuple[int, ...]]:
    """Red (road) right of column bx and below row by; a green car box; black elsewhere."""
    height, width = size_hw
    bx, by = int(width * 0.4), int(height * 0.4)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[by:, bx:, 0] = 255
    car = (int(height * 0.1), int(height * 0.3), int(width * 0.1), int(width * 0.3))
    rgb[car[0] : car[1] + 1, car[2] : car[3] + 1, 1] = 255
    return rgb, (bx, by, *car)


@pytest.mark.parametrize("size_hw", [*ODD_SIZES, (540, 960), (1080, 300), (37, 4001)])
def test_outputs_stay_aligned_with_the_input_pixels(size_hw: tuple[int, int]) -> None:
    from panoptic_ros.pipeline import PanopticPipeline

    labels = CITYSCAPES.with_drivable(["road"])
    backend = OracleBackend((128, 256), labels)
    params = FusionParams(stuff_area_threshold_px=0, thing_area_threshold_px=0)
    pipeline = PanopticPipeline(backend, labels, params, gpu_fusion=False)  # type: ignore[arg-type]
    rgb, (bx, by, car_y0, car_y1, car_x0, car_x1) = _oracle_scene(size_hw)
    result = pipeline.process(rgb)
    check_frame_result(result, labels, size_hw)
    # One stride-4 cell spans 4 / ratio camera pixels; labels may move by about one cell.
    ratio_y, ratio_x = pipeline.letterbox_for(size_hw).ratio_yx
    margin_y, margin_x = math.ceil(4 / ratio_y) + 2, math.ceil(4 / ratio_x) + 2
    ys, xs = np.mgrid[0 : size_hw[0], 0 : size_hw[1]]
    far_from_car = (
        (ys < car_y0 - margin_y)
        | (ys > car_y1 + margin_y)
        | (xs < car_x0 - margin_x)
        | (xs > car_x1 + margin_x)
    )
    building = far_from_car & ((xs < bx - margin_x) | (ys < by - margin_y))
    road = far_from_car & (xs >= bx + margin_x) & (ys >= by + margin_y)
    assert np.all(result.semantic[building] == labels.index("building"))
    assert np.all(result.semantic[road] == labels.index("road"))
    assert np.all(result.drivable_mask[road] == 255)
    inside_car = (
        (ys >= car_y0 + margin_y)
        & (ys <= car_y1 - margin_y)
        & (xs >= car_x0 + margin_x)
        & (xs <= car_x1 - margin_x)
    )
    assert np.all(result.semantic[inside_car] == labels.index("car"))
    if inside_car.any():
        (car,) = result.instances
        x0, y0, x1, y1 = car.bbox_xyxy
        assert abs(x0 - car_x0) <= margin_x and abs(x1 - car_x1) <= margin_x
        assert abs(y0 - car_y0) <= margin_y and abs(y1 - car_y1) <= margin_y


# ====================================================================================
# 5. Model trouble: NaN/Inf heads, broken or foreign model and engine files.


class ConstantBackend(BackendBase):
    """A fake network whose heads are all one value (NaN, +inf, -inf) or random ones."""

    name = "constant"
    device = "cpu"
    model_path = "constant"

    def __init__(self, value: float | None, labels: LabelSpace = CITYSCAPES) -> None:
        self.value = value
        self.input_hw = (64, 128)
        self.metadata = ModelMetadata(labels=labels, input_hw=self.input_hw)
        self.rng = np.random.default_rng(0)

    def infer(self, images: npt.NDArray[np.uint8]) -> HeadOutputs:
        classes = self.metadata.labels.num_classes
        h, w = self.input_hw[0] // 4, self.input_hw[1] // 4

        def plane(channels: int) -> npt.NDArray[np.float32]:
            if self.value is not None:
                return np.full((1, channels, h, w), self.value, np.float32)
            values = self.rng.normal(0, 5, (1, channels, h, w)).astype(np.float32)
            spoiled = self.rng.random(values.shape) < 0.3
            values[spoiled] = self.rng.choice([np.nan, np.inf, -np.inf], int(spoiled.sum()))
            return values

        return HeadOutputs(plane(classes), plane(1), plane(2))

    def close(self) -> None:
        pass


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, None])
def test_non_finite_heads_give_a_valid_frame(value: float | None) -> None:
    from panoptic_ros.pipeline import PanopticPipeline

    labels = CITYSCAPES.with_drivable(["road"])
    pipeline = PanopticPipeline(ConstantBackend(value), labels, FusionParams(), gpu_fusion=False)  # type: ignore[arg-type]
    for _ in range(3):
        rgb = np.zeros((45, 80, 3), np.uint8)
        _, result = pipeline.process_message(encode_raw(rgb, "rgb8"))
        check_frame_result(result, labels, (45, 80))
        if value is not None and np.isnan(value):
            assert np.all(result.semantic == 255) and not result.instances


def _pipeline_from(model: Path, **settings_: Any) -> Any:
    from panoptic_ros.config import config_from_flat
    from panoptic_ros.pipeline import PanopticPipeline

    values = {"model.model_file_path": str(model), "backend.name": "onnxruntime", **settings_}
    return PanopticPipeline.from_config(config_from_flat(values))


def test_missing_model_is_refused_at_load(tmp_path: Path) -> None:
    for backend in ("onnxruntime", "auto", "torch"):
        with pytest.raises(ModelFileError, match="not found") as caught:
            _pipeline_from(tmp_path / "nowhere.onnx", **{"backend.name": backend})
        one_line(caught.value)


@pytest.mark.parametrize("keep", [0, 10, 1000, 0.5, 0.99])
def test_truncated_onnx_is_refused_at_load(
    tiny_onnx_model: Path, tmp_path: Path, keep: float
) -> None:
    data = tiny_onnx_model.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    model = tmp_path / "truncated.onnx"
    model.write_bytes(data[:cut])
    for backend in ("onnxruntime", "auto"):
        with pytest.raises(ModelFileError, match=r"truncated\.onnx") as caught:
            _pipeline_from(model, **{"backend.name": backend})
        one_line(caught.value)


def _with_metadata(source: Path, target: Path, text: str | None) -> Path:
    """Copy an ONNX model with its embedded metadata replaced (None: removed)."""
    import onnx

    proto = onnx.load(str(source))
    del proto.metadata_props[:]
    if text is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
    onnx.save(proto, str(target))
    return target


def test_model_whose_metadata_does_not_match_its_outputs_is_refused_at_load(
    tiny_onnx_model: Path, tmp_path: Path
) -> None:
    metadata = ModelMetadata(labels=SMALL_LABELS, input_hw=(128, 256))
    model = _with_metadata(tiny_onnx_model, tmp_path / "five.onnx", metadata.to_json())
    with pytest.raises(ModelFileError, match="outputs 19 classes but its metadata names 5") as e:
        _pipeline_from(model, **{"labels.drivable_classes": ["road"]})
    one_line(e.value)


def test_checkpoint_whose_metadata_does_not_match_its_network_is_refused_at_load(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch")
    from panoptic_ros.backends.torch_backend import TorchBackend
    from panoptic_ros.modeling.checkpoint import save_checkpoint
    from panoptic_ros.modeling.network import build_network

    network = build_network(num_classes=19, fpn_channels=8, head_channels=8)
    metadata = ModelMetadata(labels=SMALL_LABELS, input_hw=(64, 128))
    path = save_checkpoint(tmp_path / "five.safetensors", network, metadata=metadata)
    with pytest.raises(ModelFileError, match="outputs 19 classes but its metadata names 5") as e:
        TorchBackend.from_checkpoint(path, device="cpu")
    one_line(e.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (None, "no 'panoptic_ros' metadata"),
        ("{not json", "metadata is not JSON"),
        ('{"format_version": 1}', "invalid panoptic_ros metadata"),
        ('{"format_version": 99}', "format_version 99"),
    ],
)
def test_model_without_valid_metadata_is_refused_at_load(
    tiny_onnx_model: Path, tmp_path: Path, text: str | None, match: str
) -> None:
    model = _with_metadata(tiny_onnx_model, tmp_path / "bad_meta.onnx", text)
    with pytest.raises(ModelFileError, match=match) as caught:
        _pipeline_from(model)
    one_line(caught.value)


def test_configured_classes_the_model_lacks_are_refused_at_load(tiny_onnx_model: Path) -> None:
    with pytest.raises(ConfigError, match="unknown class 'lava'") as caught:
        _pipeline_from(tiny_onnx_model, **{"labels.drivable_classes": ["road", "lava"]})
    one_line(caught.value)


class _FakeTensorRT:
    """Just enough of the tensorrt module for TensorRTBackend's loading checks.

    Like real TensorRT, ``deserialize_cuda_engine`` returns None for bytes that are not a
    complete plan of this version (TensorRT logs why); the complete plan here is GOOD_PLAN.
    """

    GOOD_PLAN = b"TRT-PLAN-v11" + bytes(range(256)) * 8

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class TensorIOMode:
        INPUT = "input"
        OUTPUT = "output"

    class _Engine:
        def __init__(self, names: list[str], classes: int = 19) -> None:
            self.names = names
            self.num_io_tensors = len(names)
            self.classes = classes

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return (1, self.classes, -1, -1) if name == "semantic_logits" else (-1, -1, -1, -1)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> str:
            return "input" if name == "image" else "output"

        def create_execution_context(self) -> object:
            return object()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            if data == _FakeTensorRT.GOOD_PLAN:
                names = ["image", "semantic_logits", "center_heatmap", "offsets"]
                return _FakeTensorRT._Engine(names)
            if data == _FakeTensorRT.GOOD_PLAN[::-1]:  # a plan of another network
                return _FakeTensorRT._Engine(["input", "output"])
            if data == _FakeTensorRT.GOOD_PLAN * 2:  # the contract, but five classes
                names = ["image", "semantic_logits", "center_heatmap", "offsets"]
                return _FakeTensorRT._Engine(names, classes=5)
            return None


@pytest.fixture
def fake_tensorrt(monkeypatch: pytest.MonkeyPatch) -> type[_FakeTensorRT]:
    import panoptic_ros.backends.trt_backend as trt_backend

    class HostMemory(trt_backend._TorchMemory):
        """Torch CPU tensors stand in for device memory (as in test_engine.py)."""

        def __init__(self, device: str) -> None:
            super().__init__("cpu")

    monkeypatch.setitem(sys.modules, "tensorrt", _FakeTensorRT)
    monkeypatch.setattr(trt_backend, "_TorchMemory", HostMemory)
    return _FakeTensorRT


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ("truncated", "does not deserialize"),
        ("empty", "does not deserialize"),
        ("other version", "does not deserialize"),
        ("other network", "the heads contract needs"),
        ("other labels", "outputs 5 classes but the model's metadata names 19"),
        ("missing", "cannot read engine"),
    ],
)
def test_broken_engine_files_are_refused_at_load(
    fake_tensorrt: type[_FakeTensorRT], tmp_path: Path, plan: str, match: str
) -> None:
    from panoptic_ros.backends.trt_backend import TensorRTBackend

    good = fake_tensorrt.GOOD_PLAN
    contents = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "other version": b"TRT-PLAN-v10" + good[12:],
        "other network": good[::-1],
        "other labels": good * 2,
    }
    path = tmp_path / "model.plan"
    if plan in contents:
        path.write_bytes(contents[plan])
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=(128, 256))
    assert TensorRTBackend(_write(tmp_path / "ok.plan", good), metadata, (128, 256)).name
    error = ModelFileError if plan == "other labels" else EngineError
    with pytest.raises(error, match=match) as caught:
        TensorRTBackend(path, metadata, (128, 256))
    one_line(caught.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_foreign_or_unreadable_engine_records_are_never_trusted(tmp_path: Path) -> None:
    """Another GPU, TensorRT or tool: refused with the reason, or rebuilt when allowed."""
    from panoptic_ros.export.engine import DeviceInfo, EngineRecord, ensure_engine

    onnx_path = _write(tmp_path / "model.onnx", b"onnx bytes")
    here = DeviceInfo("10.3.0", "Orin", "8.7", 16, l4t_version="36.4.3", dla_cores=2)
    metadata = ModelMetadata(labels=CITYSCAPES, input_hw=(128, 256))
    builds: list[Path] = []

    def builder(onnx: Path, engine: Path, **kwargs: Any) -> EngineRecord:
        device, plan = kwargs["device"], kwargs["plan"]
        shape = (1, 128, 256, 3)
        record = EngineRecord.of(
            onnx,
            device,
            plan,
            metadata.precision,
            (shape, shape, shape),
            plan_sha256=__import__("hashlib").sha256(b"plan").hexdigest(),
        )
        engine.write_bytes(b"plan")
        engine.with_suffix(".json").write_text(record.to_json())
        builds.append(engine)
        return record

    kwargs: dict[str, Any] = {
        "metadata": metadata,
        "input_hw": (128, 256),
        "cache_dir": tmp_path / "cache",
        "device": here,
        "builder": builder,
    }
    path, record = ensure_engine(onnx_path, **kwargs)
    good_record = path.with_suffix(".json").read_text()
    foreign = {
        "another GPU": replace(record, gpu_name="NVIDIA H100").to_json(),
        "another TensorRT": replace(record, tensorrt_version="10.7.0").to_json(),
        "another JetPack": replace(record, l4t_version="36.2.0").to_json(),
        "another tool": '{"engine": "yolo", "version": 3}',
        "not JSON": "\x00\x01garbage",
    }
    for name, text in foreign.items():
        path.with_suffix(".json").write_text(text)
        with pytest.raises(EngineError, match="cannot be used") as caught:
            ensure_engine(onnx_path, **kwargs, allow_build=False)
        one_line(caught.value)
        assert path.read_bytes() == b"plan", name  # refused, not replaced
        before = len(builds)
        ensure_engine(onnx_path, **kwargs)
        assert len(builds) == before + 1, name  # rebuilt when building is allowed
        assert path.with_suffix(".json").read_text() == good_record
    path.with_suffix(".json").unlink()
    with pytest.raises(EngineError, match="missing or invalid"):
        ensure_engine(onnx_path, **kwargs, allow_build=False)


# ====================================================================================
# 6. Bags: corrupt, truncated, empty, missing topics, unknown types, output = input.


def _replay(bag: Path, out: Path, **kwargs: Any) -> Any:
    from panoptic_ros.config import RenderConfig, ReplayConfig
    from panoptic_ros.replay import run_replay

    kwargs.setdefault("config", ReplayConfig(write_video=False))
    return run_replay(
        bag, out, BagFakePipeline(), render=RenderConfig(), tracker=FakeTracker(), **kwargs
    )


def _refused(bag: Path, out: Path, match: str, **kwargs: Any) -> None:
    """Replay fails with a one-line BagError, the input is untouched, nothing is left."""
    parent = out.parent
    before = hash_tree(bag)
    siblings = sorted(p.name for p in parent.iterdir())
    with pytest.raises(BagError, match=match) as caught:
        _replay(bag, out, progress=False, **kwargs)
    one_line(caught.value)
    assert hash_tree(bag) == before
    assert sorted(p.name for p in parent.iterdir()) == siblings  # no output, no .partial-*


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95])
def test_truncated_bag_is_refused(tmp_path: Path, storage: str, keep: float) -> None:
    bag = make_raw_bag(tmp_path / "in", count=5, storage=storage)
    storage_file = _storage_file(bag)
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: int(len(data) * keep)])
    _refused(bag, tmp_path / "out", "cannot read bag|cannot read message")


def test_bag_with_an_undeserialisable_message_is_refused_mid_way(tmp_path: Path) -> None:
    """Frames 0-1 are fine, frame 2 is not a sensor_msgs/Image: no partial output remains."""
    from panoptic_ros.bags import BagWriter

    bag = tmp_path / "in" / "bad_payload"
    frames = make_frames(4, height=8, width=8)
    with BagWriter(bag) as writer:
        types = writer.typestore.types
        for index, rgb in enumerate(frames):
            fields = encode_raw(rgb, "rgb8")
            message = types["sensor_msgs/msg/Image"](
                header=types["std_msgs/msg/Header"](
                    stamp=types["builtin_interfaces/msg/Time"](sec=index, nanosec=0),
                    frame_id="camera",
                ),
                height=8,
                width=8,
                encoding="rgb8",
                is_bigendian=0,
                step=fields.step,
                data=np.frombuffer(fields.data, np.uint8),
            )
            data = bytes(writer.serialize(message))
            if index == 2:
                data = data[:12] + b"\xff\xff\xff\x7f" + data[16:]  # frame_id length 2 GB
            writer.write_serialized("/camera/image_raw", message.__msgtype__, data, index)
    _refused(bag, tmp_path / "out", r"message 2 of /camera/image_raw .* does not deserialise")


def test_bytes_overwritten_anywhere_give_a_full_output_or_a_clear_error(tmp_path: Path) -> None:
    """Seeded corruption of MCAP files (raw and JPEG): never an unexpected exception."""
    sources = [
        make_raw_bag(tmp_path / "src", count=4, name="raw"),
        make_compressed_bag(tmp_path / "src", count=4, name="jpeg"),
    ]
    rng = np.random.default_rng(11)
    outcomes = {"complete": 0, "refused": 0}
    for trial in range(24):
        folder = tmp_path / f"trial{trial}"
        bag = folder / "bag"
        shutil.copytree(sources[trial % 2], bag)
        storage_file = _storage_file(bag)
        data = bytearray(storage_file.read_bytes())
        for _ in range(int(rng.integers(1, 4))):
            start = int(rng.integers(0, len(data)))
            length = int(rng.integers(1, 9))
            data[start : start + length] = rng.integers(0, 256, length).astype(np.uint8).tobytes()
        storage_file.write_bytes(bytes(data))
        before = hash_tree(bag)
        try:
            summary = _replay(bag, folder / "out", progress=False)
        except BagError as err:
            one_line(err)
            outcomes["refused"] += 1
            assert sorted(p.name for p in folder.iterdir()) == ["bag"]
        else:
            outcomes["complete"] += 1
            # Every message read is accounted for: processed or skipped, none lost.
            assert summary.frames + summary.skipped == 4
        assert hash_tree(bag) == before
    assert outcomes["complete"] and outcomes["refused"]


def test_empty_bags_are_refused(tmp_path: Path) -> None:
    from panoptic_ros.bags import BagWriter

    topic_only = tmp_path / "in" / "topic_only"
    with BagWriter(topic_only) as writer:
        writer.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
    _refused(topic_only, tmp_path / "out", "has no messages; nothing to replay")
    nothing = tmp_path / "in" / "nothing"
    with BagWriter(nothing):
        pass
    _refused(nothing, tmp_path / "out", "no sensor_msgs/Image or sensor_msgs/CompressedImage")
    empty_file = tmp_path / "in" / "empty.mcap"
    empty_file.write_bytes(b"")
    _refused(empty_file, tmp_path / "out", "cannot read bag")


def test_missing_topic_is_refused(tmp_path: Path) -> None:
    bag = make_compressed_bag(tmp_path / "in", count=2)
    _refused(
        bag,
        tmp_path / "out",
        r"'/front/image' is not in .*image topics: /camera",
        topic="/front/image",
    )


def _custom_type_bag(path: Path) -> Path:
    """A camera bag with a topic of a message type no ROS distribution knows."""
    from rosbags.typesys import get_types_from_msg

    from panoptic_ros.bags import BagWriter, make_typestore

    typestore = make_typestore()
    typestore.register(get_types_from_msg("int32 level\nstring note\n", "acme_msgs/msg/Blinker"))
    with BagWriter(path, typestore=typestore) as writer:
        types = typestore.types
        for index, rgb in enumerate(make_frames(2, height=8, width=8)):
            fields = encode_raw(rgb, "rgb8")
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=index, nanosec=0), frame_id="cam"
            )
            image = types["sensor_msgs/msg/Image"](
                header=header,
                height=8,
                width=8,
                encoding="rgb8",
                is_bigendian=0,
                step=fields.step,
                data=np.frombuffer(fields.data, np.uint8),
            )
            writer.write("/camera/image_raw", image, index)
            writer.write("/acme/blinker", types["acme_msgs/msg/Blinker"](level=1, note="x"), index)
    return path


def test_unknown_message_types_are_ignored_or_refused(tmp_path: Path) -> None:
    bag = _custom_type_bag(tmp_path / "in" / "custom")
    _refused(
        bag,
        tmp_path / "out",
        "has type acme_msgs/msg/Blinker, not sensor_msgs/Image",
        topic="/acme/blinker",
    )
    summary = _replay(bag, tmp_path / "out", progress=False)  # the camera topic is found
    assert (summary.topic, summary.frames) == ("/camera/image_raw", 2)


@pytest.mark.parametrize("where", ["same", "symlink", "inside", "parent", "storage file"])
def test_output_that_is_or_overlaps_the_input_is_refused(tmp_path: Path, where: str) -> None:
    bag = make_compressed_bag(tmp_path / "in", count=2)
    link = tmp_path / "link"
    link.symlink_to(bag, target_is_directory=True)
    out = {
        "same": bag,
        "symlink": link,
        "inside": bag / "out",
        "parent": tmp_path / "in",
        "storage file": _storage_file(bag),
    }[where]
    before = hash_tree(tmp_path / "in")
    with pytest.raises(ConfigError, match=r"the input") as caught:
        _replay(bag, out, overwrite=True, progress=False)
    one_line(caught.value)
    assert hash_tree(tmp_path / "in") == before
    assert not (bag / "out").exists()


# ====================================================================================
# 7. Unsafe files: no pickle, ONNX external data stays beside the model, safe YAML.


class _Trap:
    """Unpickling this creates the file ``path``: proof that a loader ran pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.fixture
def pickle_traps(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Pickled "weights" with a payload, saved under every name a user might try."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pickle_ran"
    payload = {"stem.conv.weight": torch.zeros(1), "trap": _Trap(marker)}
    files = []
    for name in ("weights.pth", "weights.pt", "weights.bin", "weights.safetensors"):
        path = tmp_path / name
        torch.save(payload, path)
        files.append(path)
    return marker, files


def test_pickled_weights_are_never_unpickled(pickle_traps: tuple[Path, list[Path]]) -> None:
    from panoptic_ros.modeling.backbone import EfficientNet
    from panoptic_ros.modeling.checkpoint import load_checkpoint
    from panoptic_ros.modeling.pretrained import load_backbone_weights

    marker, files = pickle_traps
    for path in files:
        with pytest.raises(ModelFileError) as caught:
            load_backbone_weights(EfficientNet("efficientnet_lite0"), path)
        one_line(caught.value)
        with pytest.raises(ModelFileError) as caught:
            load_checkpoint(path)
        one_line(caught.value)
        for backend in ("torch", "auto", "onnxruntime"):
            with pytest.raises(PanopticError):
                _pipeline_from(path, **{"backend.name": backend, "backend.allow_fallback": False})
    assert not marker.exists()


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def test_package_source_never_unpickles_or_loads_unsafe_yaml() -> None:
    """Weights only via safetensors (one checksum-verified torch.load with weights_only)."""
    torch_loads = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not {"pickle", "dill", "cloudpickle", "joblib"} & set(names), path
        for name, call in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            assert name not in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"), path
            assert name not in ("numpy.load", "np.load") or keywords.get("allow_pickle") in (
                None,
                "False",
            ), path
            if name == "torch.load":
                assert keywords.get("weights_only") == "True", path
                torch_loads.append(path.name)
    assert torch_loads == ["pretrained.py"]


@pytest.fixture
def external_data_model(tiny_onnx_model: Path, tmp_path: Path) -> Path:
    """The tiny model with its weights in an external data file beside it."""
    import onnx

    folder = tmp_path / "models"
    folder.mkdir()
    proto = onnx.load(str(tiny_onnx_model))
    path = folder / "tiny.onnx"
    onnx.save(
        proto, str(path), save_as_external_data=True, location="tiny.weights", size_threshold=0
    )
    return path


def _relocate_external_data(model: Path, location: str) -> Path:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    target = model.with_name(f"evil_{abs(hash(location))}.onnx")
    onnx.save(proto, str(target))
    return target


@pytest.mark.parametrize("location", ["../tiny.weights", "ABSOLUTE", "link.weights", "sub/../../x"])
def test_onnx_external_data_cannot_leave_the_model_folder(
    external_data_model: Path, location: str
) -> None:
    from panoptic_ros.backends.ort_backend import OnnxRuntimeBackend
    from panoptic_ros.export.onnx_export import check_onnx_contract, read_onnx_metadata

    folder = external_data_model.parent
    with OnnxRuntimeBackend(external_data_model) as backend:  # beside the model: fine
        assert backend.input_hw == (128, 256)
    outside = folder.parent / "tiny.weights"
    shutil.copyfile(folder / "tiny.weights", outside)
    (folder / "link.weights").symlink_to(outside)
    location = str(outside) if location == "ABSOLUTE" else location
    evil = _relocate_external_data(external_data_model, location)
    from panoptic_ros.export.fused import append_fusion
    from panoptic_ros.export.quantize import convert_fp16, quantize_int8

    frame = np.zeros((128, 256, 3), np.uint8)
    made = folder / "made.onnx"
    for load in (
        OnnxRuntimeBackend,
        read_onnx_metadata,
        check_onnx_contract,
        _pipeline_from,
        lambda path: convert_fp16(path, made),
        lambda path: quantize_int8(path, made, [frame], method="minmax"),
        lambda path: append_fusion(path, made, params=FusionParams()),
    ):
        with pytest.raises(ModelFileError, match="outside the model's folder") as caught:
            load(evil)
        one_line(caught.value)
    assert not made.exists()


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    from panoptic_ros.bags import open_reader
    from panoptic_ros.config import load_config

    marker = tmp_path / "yaml_ran"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    config = tmp_path / "panoptic.yaml"
    config.write_text(f"fusion:\n  center_threshold: {tag}\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(config)
    one_line(caught.value)
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_config(None, [f"fusion.top_k={tag}"])
    one_line(caught.value)
    bag = make_raw_bag(tmp_path, count=1)
    metadata = bag / "metadata.yaml"
    metadata.write_text(f"trap: {tag}\n" + metadata.read_text())
    with pytest.raises(BagError, match="cannot read bag") as caught, open_reader(bag):
        pass
    one_line(caught.value)
    assert not marker.exists()


# ====================================================================================
# 8. The node keeps running through bad frames and model trouble (rclpy stand-in).

STANDIN = Path(__file__).parent / "ros_standin"
ROS_MODULES = (
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "vision_msgs",
    "diagnostic_msgs",
    "nav_msgs",
    "visualization_msgs",
    "lifecycle_msgs",
    "tf2_msgs",
    "tf2_ros",
    "standin_messages",
)


def _forget_ros_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ROS_MODULES or name == "panoptic_ros.ros.node":
            del sys.modules[name]


@pytest.fixture
def ros_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """rclpy replaced by test/ros_standin (see its README); yields the rclpy module."""
    for name in list(sys.modules):
        if name.split(".")[0] in ROS_MODULES or name == "panoptic_ros.ros.node":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(STANDIN))
    rclpy = importlib.import_module("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.shutdown()
    _forget_ros_modules()


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the node")
        time.sleep(0.005)


def start_node(pipeline: Any, **parameters: Any) -> Any:
    """A PanopticNode in namespace /panoptic around ``pipeline`` (stand-in rclpy)."""
    from rclpy.parameter import Parameter

    from panoptic_ros.ros.node import PanopticNode

    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    return PanopticNode(
        namespace="/panoptic",
        parameter_overrides=overrides,
        pipeline_factory=lambda config: pipeline,
    )


def standin_image(
    *,
    height: int,
    width: int,
    encoding: str,
    step: int,
    data: bytes,
    stamp_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "camera",
    is_bigendian: int = 0,
) -> Any:
    """A stand-in sensor_msgs/Image (field types checked as rclpy does)."""
    import array

    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    payload = array.array("B")
    payload.frombytes(data)
    return Image(
        header=Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=step,
        data=payload,
    )


def standin_frame(rgb: npt.NDArray[np.uint8], **header: Any) -> Any:
    """A valid rgb8 stand-in Image of ``rgb``."""
    fields = encode_raw(rgb, "rgb8")
    return standin_image(
        height=fields.height,
        width=fields.width,
        encoding="rgb8",
        step=fields.step,
        data=fields.data,
        **header,
    )


def standin_compressed(fmt: str, data: bytes, frame_id: str = "camera") -> Any:
    import array

    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header

    payload = array.array("B")
    payload.frombytes(data)
    return CompressedImage(
        header=Header(stamp=Time(sec=1, nanosec=0), frame_id=frame_id), format=fmt, data=payload
    )


class Listener:
    """Subscribes like RViz (reliable) and records (monotonic_ns, message) per topic."""

    def __init__(self, name: str = "listener") -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.node = Node(name)
        self._sensor_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._reliable_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.received: dict[str, list[tuple[int, Any]]] = {}

    def publisher(self, msg_type: type, topic: str) -> Any:
        return self.node.create_publisher(msg_type, topic, self._sensor_qos)

    def listen(self, topic: str, msg_type: type) -> list[tuple[int, Any]]:
        box: list[tuple[int, Any]] = self.received.setdefault(topic, [])
        self.node.create_subscription(
            msg_type, topic, lambda m: box.append((time.monotonic_ns(), m)), self._reliable_qos
        )
        return box


def oracle_pipeline(network_hw: tuple[int, int] = (64, 128)) -> Any:
    """A real PanopticPipeline (decode, letterbox, fusion) around the OracleBackend."""
    from panoptic_ros.pipeline import PanopticPipeline

    labels = CITYSCAPES.with_drivable(["road"])
    return PanopticPipeline(
        OracleBackend(network_hw, labels),  # type: ignore[arg-type]
        labels,
        FusionParams(),
        gpu_fusion=False,
    )


def _garbage_frames(count: int, seed: int) -> list[Any]:
    """Stand-in Image and CompressedImage messages that are wrong in every way we know."""
    rng = np.random.default_rng(seed)
    encodings = [*sorted(SUPPORTED_ENCODINGS), "rgb9", "", "jpeg", "32FC1", "RGB8"]
    sizes = [0, 1, 2, 3, 7, 64, 16385, 2**20, 2**32 - 1]
    frames = []
    for index in range(count):
        if index % 4 == 3:
            fmt = str(rng.choice(["jpeg", "png", "16UC1; compressedDepth", "tiff", ""]))
            head = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"", _jpeg_declaring(16384, 16384)]
            body = rng.integers(0, 256, int(rng.integers(0, 300))).astype(np.uint8).tobytes()
            frames.append(standin_compressed(fmt, head[index % 4] + body, f"bad{index}"))
            continue
        height, width = int(rng.choice(sizes)), int(rng.choice(sizes))
        frames.append(
            standin_image(
                height=height,
                width=width,
                encoding=str(rng.choice(encodings)),
                step=int(rng.choice([0, 1, width, 3 * width, 2**32 - 1])) % 2**32,
                data=rng.integers(0, 256, int(rng.integers(0, 500))).astype(np.uint8).tobytes(),
                frame_id=f"bad{index}",
                is_bigendian=int(rng.integers(0, 2)),
            )
        )
    return frames


def test_node_survives_garbage_frames_and_says_so_once(ros_standin: Any) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.logging import LOG
    from sensor_msgs.msg import CompressedImage, Image

    node = start_node(oracle_pipeline(), **{"node.log_throttle_s": 600.0})
    LOG.clear()
    try:
        listener = Listener()
        raw = listener.publisher(Image, "/camera/image_raw")
        semantic = listener.listen("/panoptic/front/semantic", Image)
        diagnostics = listener.listen("/diagnostics", DiagnosticArray)
        garbage = _garbage_frames(90, seed=3)
        stats = node._cameras["front"].stats

        def idle() -> bool:
            return stats.processed_total + stats.errors_total == stats.received_total

        raw_garbage = 0
        for index, message in enumerate(garbage):
            if isinstance(message, CompressedImage):
                continue  # this node subscribes raw; compressed garbage is fed directly below
            raw.publish(message)
            raw_garbage += 1
            wait_until(idle)  # no frame superseded: every one reaches the decoder
            if index % 10 == 0:
                raw.publish(standin_frame(np.zeros((30, 40, 3), np.uint8), frame_id=f"ok{index}"))
                wait_until(idle)
        assert node._mailbox.dropped("front") == 0
        assert node._worker.is_alive()
        published = [m.header.frame_id for _, m in semantic]
        assert [f for f in published if f.startswith("ok")] == [
            f"ok{i}" for i in range(0, len(garbage), 10)
        ]
        # A few random frames happen to be valid (say mono8 1x1 with enough bytes): those
        # convert, at their declared size; every other one is counted as a codec error.
        for frame_id in (f for f in published if f.startswith("bad")):
            decode_image(garbage[int(frame_id[3:])])
        assert set(stats.errors_by_kind) == {"codec"}, stats.errors_by_kind
        bad_outputs = sum(f.startswith("bad") for f in published)
        assert stats.errors_total + bad_outputs == raw_garbage
        assert stats.errors_total > 50
        # Compressed garbage through the node's frame loop directly (same code path).
        from panoptic_ros.ros.latest_frame import Delivery

        for message in garbage:
            if isinstance(message, CompressedImage):
                node.process(Delivery("front", message, time.monotonic_ns()))
        assert set(stats.errors_by_kind) == {"codec"}, stats.errors_by_kind
        warnings = [m for _, level, m in LOG if level in ("WARN", "ERROR")]
        assert len(warnings) == 1, warnings  # one line for all of them (throttled)
        assert "\n" not in warnings[0] and warnings[0].startswith("front: frame skipped:")
        node.publish_diagnostics()
        values = {kv.key: kv.value for kv in diagnostics[-1][1].status[0].values}
        assert values["frames_failed"] == values["errors_codec"] == str(stats.errors_total)
        assert diagnostics[-1][1].status[0].level == bytes([1])  # WARN
    finally:
        node.destroy_node()


class _FlakyPipeline:
    """Wraps a pipeline; every third frame its 'backend' fails in a way nobody planned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.labels = inner.labels
        self.fusion = inner.fusion
        self.backend = inner.backend
        self.calls = 0

    def describe(self) -> str:
        return str(self.inner.describe())

    def process_message(self, message: Any) -> tuple[Any, FrameResult]:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError(  # torch's CUDA errors come with advice on further lines
                "CUDA error: an illegal memory access was encountered\n"
                "CUDA kernel errors might be asynchronously reported at some other API call\n"
                "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"
            )
        if self.calls % 3 == 1:
            raise BackendError("onnxruntime inference failed: out of memory")
        return self.inner.process_message(message)  # type: ignore[no-any-return]

    def render(self, image: Any, result: FrameResult, **kwargs: Any) -> Any:
        return self.inner.render(image, result, **kwargs)

    def close(self) -> None:
        self.inner.close()


def test_node_keeps_running_through_model_trouble(ros_standin: Any) -> None:
    """NaN heads give valid (void) outputs, counted and said; failing inference too."""
    from rclpy.logging import LOG
    from sensor_msgs.msg import Image

    from panoptic_ros.pipeline import PanopticPipeline

    labels = CITYSCAPES.with_drivable(["road"])
    nan_pipeline = PanopticPipeline(
        ConstantBackend(np.nan),
        labels,
        FusionParams(),
        gpu_fusion=False,  # type: ignore[arg-type]
    )
    node = start_node(_FlakyPipeline(nan_pipeline), **{"node.log_throttle_s": 600.0})
    LOG.clear()
    try:
        listener = Listener()
        raw = listener.publisher(Image, "/camera/image_raw")
        semantic = listener.listen("/panoptic/front/semantic", Image)
        instances = listener.listen(
            "/panoptic/front/instances", __import__("vision_msgs.msg").msg.Detection2DArray
        )
        stats = node._cameras["front"].stats
        for index in range(9):
            raw.publish(standin_frame(np.zeros((20, 30, 3), np.uint8), frame_id=f"f{index}"))
            wait_until(lambda: stats.processed_total + stats.errors_total == index + 1)
        assert len(semantic) == 3
        for _, message in semantic:
            assert set(np.frombuffer(message.data, np.uint8).tolist()) == {255}  # all void
        assert all(len(m.detections) == 0 for _, m in instances)
        assert dict(stats.errors_by_kind) == {"backend": 3, "internal": 3, "non_finite": 3}
        assert stats.errors_total == 6  # the NaN frames were still published
        errors = [m for _, level, m in LOG if level == "ERROR"]
        assert len(errors) == 2, errors  # one line per kind of trouble
        assert any("unexpected RuntimeError" in m for m in errors)
        assert all("\n" not in m for m in errors), errors
        warnings = [m for _, level, m in LOG if level == "WARN"]
        assert len(warnings) == 1, warnings
        assert "network outputs are NaN or infinite" in warnings[0]
        # ConstantBackend's 64x128 network: 16x32 cells x (19 logits + 1 heatmap + 2 offsets).
        assert warnings[0].startswith("front: 11264 network outputs")
        node.publish_diagnostics()
        assert node._worker.is_alive()
    finally:
        node.destroy_node()
