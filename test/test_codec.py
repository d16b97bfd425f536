"""Image codec: every encoding against an independent NumPy expectation, errors, real data."""

from __future__ import annotations

import array
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest

from panoptic_ros.codec import (
    SUPPORTED_ENCODINGS,
    decode_compressed,
    decode_image,
    decode_raw,
    encode_compressed,
    encode_raw,
)
from panoptic_ros.errors import CodecError

# Flat patches big enough that a demosaic or chroma filter sees only one colour inside.
PATCH_COLOURS = [(200, 30, 40), (20, 180, 60), (30, 40, 210), (230, 220, 30), (128, 128, 128)]


def known_image(height: int = 48, width: int = 80) -> npt.NDArray[np.uint8]:
    """[H, W, 3] RGB: a gradient band on top, flat colour patches of 16x16 below."""
    image = np.zeros((height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:16, 0:width]
    image[:16, :, 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    image[:16, :, 1] = (yy * 255 // 15).astype(np.uint8)
    image[:16, :, 2] = 90
    for index, colour in enumerate(PATCH_COLOURS):
        x0 = index * 16
        image[16:, x0 : x0 + 16] = colour
    return image


def message_from(fields: object) -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(fields, name) for name in fields.__slots__})  # type: ignore[attr-defined]


def patch_interiors(image: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.int16]]:
    """Mean colour of the 8x8 interior of each flat patch (away from patch borders)."""
    return [
        image[20 + 4 : 20 + 12, i * 16 + 4 : i * 16 + 12].reshape(-1, 3).astype(np.int16)
        for i in range(len(PATCH_COLOURS))
    ]


DIRECT = ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "8UC4"]
MONO = ["mono8", "8UC1", "mono16", "16UC1"]
YUV = ["uyvy", "yuv422", "yuyv", "yuv422_yuy2", "nv12", "nv21"]
BAYER = [f"bayer_{p}{bits}" for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)]


def test_every_supported_encoding_is_tested() -> None:
    assert set(DIRECT + MONO + YUV + BAYER) == SUPPORTED_ENCODINGS


@pytest.mark.parametrize("encoding", DIRECT)
def test_direct_encodings_are_exact(encoding: str) -> None:
    rgb = known_image()
    assert np.array_equal(decode_image(message_from(encode_raw(rgb, encoding))), rgb)


@pytest.mark.parametrize("encoding", MONO)
def test_mono_replicates_gray(encoding: str) -> None:
    rgb = known_image()
    decoded = decode_image(message_from(encode_raw(rgb, encoding)))
    gray = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    # 16-bit values are gray * 257, so their high byte is exactly the gray value.
    assert np.array_equal(decoded, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding", YUV)
def test_yuv_is_bt601_limited_range(encoding: str) -> None:
    rgb = known_image()
    decoded = decode_image(message_from(encode_raw(rgb, encoding)))
    assert decoded.shape == rgb.shape
    for got, colour in zip(patch_interiors(decoded), PATCH_COLOURS, strict=True):
        assert np.abs(got - np.array(colour)).max() <= 3, (encoding, colour, got[0])
    # Chroma subsampling blurs the gradient band a little, no more.
    assert np.abs(decoded.astype(np.int16) - rgb).mean() < 4


@pytest.mark.parametrize("encoding", BAYER)
def test_bayer_pattern_names_follow_ros(encoding: str) -> None:
    """A pattern named one pixel off swaps red and blue on the flat patches."""
    rgb = known_image()
    decoded = decode_image(message_from(encode_raw(rgb, encoding)))
    for got, colour in zip(patch_interiors(decoded), PATCH_COLOURS, strict=True):
        assert np.abs(got - np.array(colour)).max() <= 2, (encoding, colour, got[0])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono16", "yuyv", "nv12", "bayer_grbg16"])
def test_row_padding_with_garbage_is_ignored(encoding: str) -> None:
    rgb = known_image()
    plain = decode_image(message_from(encode_raw(rgb, encoding)))
    padded_fields = encode_raw(rgb, encoding, step_padding=13)
    assert padded_fields.step > len(plain[0]) or encoding != "rgb8"
    assert np.array_equal(decode_image(message_from(padded_fields)), plain)


@pytest.mark.parametrize("encoding", ["mono16", "bayer_rggb16"])
def test_big_endian_sixteen_bit(encoding: str) -> None:
    rgb = known_image()
    little = decode_image(message_from(encode_raw(rgb, encoding)))
    big_fields = encode_raw(rgb, encoding, big_endian=True)
    assert big_fields.is_bigendian
    assert np.array_equal(decode_image(message_from(big_fields)), little)
    # Reading big-endian bytes as little-endian must give something else (test can fail).
    wrong = message_from(big_fields)
    wrong.is_bigendian = False
    values = np.frombuffer(big_fields.data, ">u2")
    if np.any(values >> 8 != (values & 0xFF)):
        assert not np.array_equal(decode_image(wrong), little)


def test_sixteen_bit_keeps_high_byte() -> None:
    values = np.array([[0x0000, 0x00FF, 0x0100, 0xABCD, 0xFFFF, 0x8000]], np.uint16)
    decoded = decode_raw(
        height=1,
        width=6,
        encoding="mono16",
        is_bigendian=False,
        step=12,
        data=values.astype("<u2").tobytes(),
    )
    assert decoded[0, :, 0].tolist() == [0x00, 0x00, 0x01, 0xAB, 0xFF, 0x80]


def test_rgb8_without_padding_is_a_view() -> None:
    rgb = known_image()
    payload = np.frombuffer(rgb.tobytes(), np.uint8)
    decoded = decode_raw(
        height=48, width=80, encoding="rgb8", is_bigendian=0, step=240, data=payload
    )
    assert np.shares_memory(decoded, payload)
    assert not decoded.flags.writeable


@pytest.mark.parametrize(
    "data_kind", ["bytes", "bytearray", "memoryview", "array", "ndarray", "list"]
)
def test_accepts_every_payload_type(data_kind: str) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    raw = rgb.tobytes()
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "array": array.array("B", raw),
        "ndarray": np.frombuffer(raw, np.uint8),
        "list": list(raw),
    }[data_kind]
    decoded = decode_raw(height=8, width=8, encoding="rgb8", is_bigendian=0, step=24, data=data)
    assert np.array_equal(decoded, rgb)


def test_longer_payload_is_accepted() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    decoded = decode_raw(
        height=8, width=8, encoding="rgb8", is_bigendian=0, step=24, data=rgb.tobytes() + b"xyz"
    )
    assert np.array_equal(decoded, rgb)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"encoding": "rgb9"}, "unsupported image encoding 'rgb9'; supported: .*bgr8"),
        ({"data": b"\x00" * 100}, "needs 192 bytes, message has 100"),
        ({"height": 0}, "is empty"),
        ({"width": 0}, "is empty"),
        ({"step": 10}, "step 10 is shorter than a row"),
        ({"encoding": "yuyv", "width": 7, "step": 14}, "odd width 7"),
        ({"encoding": "nv12", "height": 3, "step": 8}, "4:2:0 needs even"),
        ({"height": 10**6, "width": 10**6, "step": 3 * 10**6}, "exceeds the limit"),
        ({"data": np.zeros(192, np.float32)}, "dtype float32"),
        ({"data": 12345}, "is not a byte buffer"),
    ],
)
def test_bad_raw_images_raise_codec_error(fields: dict[str, object], match: str) -> None:
    base: dict[str, object] = {
        "height": 8,
        "width": 8,
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": 24,
        "data": b"\x00" * 192,
    }
    base.update(fields)
    started = time.perf_counter()
    with pytest.raises(CodecError, match=match):
        decode_raw(**base)  # type: ignore[arg-type]
    # Absurd sizes are refused from the header alone, without allocating.
    assert time.perf_counter() - started < 0.5


def test_jpeg_and_png_round_trip() -> None:
    rgb = known_image()
    png = encode_compressed(rgb, "png")
    assert png.format == "rgb8; png compressed bgr8"
    assert np.array_equal(decode_image(SimpleNamespace(format=png.format, data=png.data)), rgb)
    jpeg = encode_compressed(rgb, "jpeg", quality=95)
    decoded = decode_compressed(format=jpeg.format, data=np.frombuffer(jpeg.data, np.uint8))
    assert decoded.shape == rgb.shape
    # JPEG is lossy, but red must stay red: a BGR/RGB swap would show here.
    for got, colour in zip(patch_interiors(decoded), PATCH_COLOURS, strict=True):
        assert np.abs(got.mean(axis=0) - np.array(colour)).max() < 8


def test_grayscale_png_expands_to_three_channels() -> None:
    import cv2

    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    ok, encoded = cv2.imencode(".png", gray)
    assert ok
    decoded = decode_compressed(format="png", data=encoded.tobytes())
    assert decoded.shape == (8, 8, 3)
    assert np.array_equal(decoded[..., 1], gray)


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("jpeg", "truncated", "truncated"),
        ("png", b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "cannot decode 'png'"),
        ("png", bytes(range(256)) * 4, "neither JPEG nor PNG"),
        ("16UC1; compressedDepth png", b"\x00" * 20, "is a depth image"),
        ("jpeg", b"", "neither JPEG nor PNG"),
    ],
)
def test_bad_compressed_images_raise_codec_error(fmt: str, data: object, match: str) -> None:
    if data == "truncated":
        full = encode_compressed(known_image(), "jpeg").data
        data = full[: len(full) // 2]
    with pytest.raises(CodecError, match=match):
        decode_compressed(format=fmt, data=data)


def test_not_an_image_message() -> None:
    with pytest.raises(CodecError, match="neither sensor_msgs/Image nor CompressedImage"):
        decode_image(SimpleNamespace(data=b""))


# ---- real data ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size_wh"),
    [
        ("udacity_highway_1280x720.jpg", (1280, 720)),
        ("nuscenes_CAM_FRONT.jpg", (1600, 900)),
        ("kitti_000008_1242x375.png", (1242, 375)),
    ],
)
def test_decodes_real_images(shared_images: Path, name: str, size_wh: tuple[int, int]) -> None:
    path = shared_images / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    decoded = decode_compressed(format=path.suffix[1:], data=path.read_bytes())
    assert decoded.shape == (size_wh[1], size_wh[0], 3)
    assert decoded.std() > 20  # a real photo, not a grey failure image


def _first_messages(bag: Path, count: int) -> list[object]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        found = []
        for connection, _, raw in reader.messages(connections=reader.connections):
            found.append(reader.deserialize(raw, connection.msgtype))
            if len(found) == count:
                break
    return found


@pytest.mark.parametrize("bag_name", ["dashcam_compressed_mcap", "dashcam_compressed_sqlite3"])
def test_decodes_real_compressed_bags(shared_bags: Path, bag_name: str) -> None:
    (message,) = _first_messages(shared_bags / bag_name, 1)
    assert decode_image(message).shape == (540, 960, 3)


def test_raw_and_jpeg_frames_of_the_same_recording_agree(shared_bags: Path) -> None:
    raw_frames = _first_messages(shared_bags / "dashcam_raw_mcap", 3)
    jpeg_frames = _first_messages(shared_bags / "dashcam_compressed_mcap", 3)
    for raw_message, jpeg_message in zip(raw_frames, jpeg_frames, strict=True):
        assert raw_message.header.stamp == jpeg_message.header.stamp  # type: ignore[attr-defined]
        raw = decode_image(raw_message).astype(np.int16)
        jpeg = decode_image(jpeg_message).astype(np.int16)
        assert np.abs(raw - jpeg).mean() < 6
        # Swapping channels on one side would make the error far larger.
        assert np.abs(raw - jpeg[..., ::-1]).mean() > np.abs(raw - jpeg).mean()


@pytest.mark.benchmark(group="codec")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "jpeg"])
def test_bench_decode_1080p(benchmark, encoding: str) -> None:  # type: ignore[no-untyped-def]
    rgb = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    if encoding == "jpeg":
        fields: object = encode_compressed(rgb, "jpeg", 80)
    else:
        fields = encode_raw(rgb, encoding)
    message = message_from(fields)
    decoded = benchmark(decode_image, message)
    assert decoded.shape == (1080, 1920, 3)
