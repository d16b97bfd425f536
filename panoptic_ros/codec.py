"""Image message fields <-> [H, W, 3] uint8 RGB, without ROS.

Messages are duck-typed: anything with the fields of ``sensor_msgs/Image`` (``height``,
``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``) or
``sensor_msgs/CompressedImage`` (``format``, ``data``) works, so rclpy messages, rosbags'
message dataclasses and a ``SimpleNamespace`` all decode through the same code.

Every size is checked against the payload before anything is allocated, so a message that
declares a 10^6 x 10^6 image with ten bytes of data fails in microseconds with a
:class:`~panoptic_ros.errors.CodecError`, never a ``MemoryError`` or an OpenCV exception.
JPEG and PNG payloads are checked the same way: their declared size is read from the
header (JPEG SOF, PNG IHDR) before OpenCV allocates the output, and a header that promises
more pixels than :data:`MAX_PIXELS_PER_COMPRESSED_BYTE` per payload byte is refused (a
631-byte JPEG can otherwise declare 16384 x 16384 and make libjpeg fill 800 MB with grey).

Conversion rules (documented because cameras and cv_bridge disagree on some):

* 16-bit data (``mono16``, ``16UC1``, ``bayer_*16``) keeps its high byte (``value >> 8``):
  a camera's full 16-bit range maps onto the full 8-bit range. Depth-like ``16UC1`` images
  are therefore dark unless they use the whole range; that is deliberate, they are not
  camera frames.
* YUV 4:2:2 and 4:2:0 are BT.601 limited ("video") range, what UVC and GMSL cameras send.
  ``yuv422`` is the old name of ``uyvy`` (bytes U Y0 V Y1) and ``yuv422_yuy2`` the old name
  of ``yuyv`` (Y0 U Y1 V).
* Bayer names follow ROS: ``bayer_rggb8`` has R at pixel (0, 0). OpenCV names its patterns
  after the second row, one pixel off, so ROS ``rggb`` is OpenCV ``BayerBG``. The table
  below is verified by test_codec.py with mosaics built from known colours.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import CodecError

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_PIXELS_PER_COMPRESSED_BYTE",
    "SUPPORTED_ENCODINGS",
    "CompressedImageFields",
    "RawImageFields",
    "decode_compressed",
    "decode_image",
    "decode_raw",
    "encode_compressed",
    "encode_raw",
]

#: Largest accepted side in pixels: larger declarations are refused before allocation.
MAX_IMAGE_SIDE: Final = 16384
#: Largest accepted pixel count (a 16384 x 16384 frame).
MAX_IMAGE_PIXELS: Final = 16384 * 16384
#: Most pixels a JPEG/PNG may declare per byte of payload. The densest camera-like frames
#: measured (all black, PNG level 9, 8-bit) hold 342 (RGB) and about 1030 (mono) pixels per
#: byte, deflate's limit; anything denser is a forged or corrupt header.
MAX_PIXELS_PER_COMPRESSED_BYTE: Final = 2048

ImageRGB = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class _Layout:
    """How an encoding lays out its bytes.

    Attributes:
        bytes_per_pixel: Bytes of one pixel in a row (2 for 4:2:2, 1 for the NV12 luma row).
        channels: Values per pixel for the row reshape (1, 2, 3 or 4).
        sixteen_bit: True when values are 16-bit and ``is_bigendian`` matters.
        kind: ``"direct"``, ``"yuv422"``, ``"yuv420sp"`` or ``"bayer"``.
        conversion: OpenCV colour conversion code to RGB, or -1 when none is needed.
    """

    bytes_per_pixel: int
    channels: int
    sixteen_bit: bool
    kind: str
    conversion: int


def _layouts() -> dict[str, _Layout]:
    direct = {
        "rgb8": _Layout(3, 3, False, "direct", -1),
        "bgr8": _Layout(3, 3, False, "direct", cv2.COLOR_BGR2RGB),
        "8UC3": _Layout(3, 3, False, "direct", cv2.COLOR_BGR2RGB),  # as cv_bridge: BGR
        "rgba8": _Layout(4, 4, False, "direct", cv2.COLOR_RGBA2RGB),
        "bgra8": _Layout(4, 4, False, "direct", cv2.COLOR_BGRA2RGB),
        "8UC4": _Layout(4, 4, False, "direct", cv2.COLOR_BGRA2RGB),
        "mono8": _Layout(1, 1, False, "direct", cv2.COLOR_GRAY2RGB),
        "8UC1": _Layout(1, 1, False, "direct", cv2.COLOR_GRAY2RGB),
        "mono16": _Layout(2, 1, True, "direct", cv2.COLOR_GRAY2RGB),
        "16UC1": _Layout(2, 1, True, "direct", cv2.COLOR_GRAY2RGB),
        "uyvy": _Layout(2, 2, False, "yuv422", cv2.COLOR_YUV2RGB_UYVY),
        "yuv422": _Layout(2, 2, False, "yuv422", cv2.COLOR_YUV2RGB_UYVY),
        "yuyv": _Layout(2, 2, False, "yuv422", cv2.COLOR_YUV2RGB_YUY2),
        "yuv422_yuy2": _Layout(2, 2, False, "yuv422", cv2.COLOR_YUV2RGB_YUY2),
        "nv12": _Layout(1, 1, False, "yuv420sp", cv2.COLOR_YUV2RGB_NV12),
        "nv21": _Layout(1, 1, False, "yuv420sp", cv2.COLOR_YUV2RGB_NV21),
    }
    # ROS names the 2x2 tile from pixel (0, 0); OpenCV from pixel (1, 1): ROS rggb = CV BG.
    bayer_to_cv = {
        "rggb": cv2.COLOR_BayerBG2RGB,
        "bggr": cv2.COLOR_BayerRG2RGB,
        "gbrg": cv2.COLOR_BayerGR2RGB,
        "grbg": cv2.COLOR_BayerGB2RGB,
    }
    for pattern, code in bayer_to_cv.items():
        direct[f"bayer_{pattern}8"] = _Layout(1, 1, False, "bayer", code)
        direct[f"bayer_{pattern}16"] = _Layout(2, 1, True, "bayer", code)
    return direct


_LAYOUTS: Final = _layouts()

#: Every ``sensor_msgs/Image`` encoding :func:`decode_raw` accepts.
SUPPORTED_ENCODINGS: Final = frozenset(_LAYOUTS)

_JPEG_MAGIC: Final = b"\xff\xd8\xff"
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"


def _as_uint8_buffer(data: Any) -> npt.NDArray[np.uint8]:
    """Views a message's ``data`` field as a flat uint8 array without copying.

    Args:
        data: bytes, bytearray, memoryview, ``array.array('B')`` (rclpy) or a 1-D uint8
            NumPy array (rosbags).

    Returns:
        [L] uint8 view of the payload.

    Raises:
        CodecError: If the payload has another type or item size.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            msg = f"image data has dtype {data.dtype}, expected uint8"
            raise CodecError(msg)
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (ValueError, TypeError) as err:
            msg = f"image data of type {type(data).__name__} is not a byte buffer: {err}"
            raise CodecError(msg) from err
    if isinstance(data, (list, tuple)):
        # rclpy exposes uint8[] as array.array, but hand-built messages may use lists.
        try:
            return np.asarray(data, dtype=np.uint8)
        except (ValueError, OverflowError) as err:
            msg = f"image data list holds values outside 0..255: {err}"
            raise CodecError(msg) from err
    msg = f"image data of type {type(data).__name__} is not a byte buffer"
    raise CodecError(msg)


def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        msg = f"image size {width}x{height} is empty; the camera sent no pixels"
        raise CodecError(msg)
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE or height * width > MAX_IMAGE_PIXELS:
        msg = (
            f"image size {width}x{height} exceeds the limit of {MAX_IMAGE_SIDE} pixels per "
            "side; the message header is probably corrupt"
        )
        raise CodecError(msg)


def decode_raw(
    *,
    height: int,
    width: int,
    encoding: str,
    is_bigendian: int | bool,
    step: int,
    data: Any,
) -> ImageRGB:
    """Decodes the fields of a ``sensor_msgs/Image`` to RGB.

    Args:
        height: Rows.
        width: Columns.
        encoding: A name from ``sensor_msgs/image_encodings`` (see ``SUPPORTED_ENCODINGS``).
        is_bigendian: Byte order of 16-bit values.
        step: Bytes from one row to the next (at least ``width * bytes_per_pixel``).
        data: The payload (see :func:`_as_uint8_buffer`); longer payloads are accepted and
            the extra bytes ignored.

    Returns:
        [H, W, 3] uint8 RGB. For ``rgb8`` without row padding this is a read-only view of
        ``data``: copy it before modifying. Every other encoding returns a new array.

    Raises:
        CodecError: Unsupported encoding, empty or absurd size, step or payload too short,
            or a subsampled encoding with an odd width or height.
    """
    height, width, step = int(height), int(width), int(step)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        msg = (
            f"unsupported image encoding {encoding!r}; supported: "
            f"{', '.join(sorted(SUPPORTED_ENCODINGS))}"
        )
        raise CodecError(msg)
    _check_size(height, width)
    if layout.kind == "yuv422" and width % 2:
        msg = f"{encoding} image has odd width {width}; 4:2:2 needs an even width"
        raise CodecError(msg)
    if layout.kind == "yuv420sp" and (width % 2 or height % 2):
        msg = f"{encoding} image is {width}x{height}; 4:2:0 needs even width and height"
        raise CodecError(msg)
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        msg = (
            f"{encoding} image step {step} is shorter than a row of {width} pixels "
            f"({row_bytes} bytes)"
        )
        raise CodecError(msg)
    rows = height * 3 // 2 if layout.kind == "yuv420sp" else height
    needed = step * (rows - 1) + row_bytes
    buffer = _as_uint8_buffer(data)
    if buffer.size < needed:
        msg = (
            f"{encoding} image {width}x{height} (step {step}) needs {needed} bytes, "
            f"message has {buffer.size}"
        )
        raise CodecError(msg)

    # Rows `step` bytes apart, each `row_bytes` long: a strided view, no copy yet.
    plane = np.lib.stride_tricks.as_strided(
        buffer, shape=(rows, row_bytes), strides=(step, 1), writeable=False
    )
    if layout.kind == "yuv420sp":
        # NV12/NV21: full-resolution Y rows, then half as many interleaved chroma rows.
        return _convert(np.ascontiguousarray(plane), layout.conversion)
    if layout.sixteen_bit:
        plane = _high_bytes(plane, height, width, big_endian=bool(is_bigendian))
        pixels = plane
    else:
        pixels = plane.reshape(height, width, layout.channels)
    if layout.conversion < 0:
        if step == row_bytes:
            return pixels  # rgb8 as sent: a view of the message
        return np.ascontiguousarray(pixels)
    return _convert(np.ascontiguousarray(pixels), layout.conversion)


def _high_bytes(
    plane: npt.NDArray[np.uint8], height: int, width: int, *, big_endian: bool
) -> npt.NDArray[np.uint8]:
    """[H, 2W] uint8 rows of 16-bit values -> [H, W] uint8 high bytes (value >> 8)."""
    pairs = plane.reshape(height, width, 2)
    return np.ascontiguousarray(pairs[:, :, 0 if big_endian else 1])


def _convert(pixels: npt.NDArray[np.uint8], code: int) -> ImageRGB:
    try:
        converted = cv2.cvtColor(pixels, code)
    except cv2.error as err:
        msg = f"colour conversion of a {pixels.shape} image failed: {err.msg.strip()}"
        raise CodecError(msg) from err
    return np.asarray(converted, dtype=np.uint8)


# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or
# arithmetic): every 0xC0..0xCF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0..7, SOI, EOI.
_JPEG_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xDA)})


def _jpeg_size(buffer: npt.NDArray[np.uint8], fmt: str) -> tuple[int, int]:
    """(height, width) from a JPEG's start-of-frame segment, read without decoding.

    Raises:
        CodecError: The marker segments are malformed or end before a start of frame.
    """
    data = buffer.tobytes()
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF_MARKERS:
            if length < 8 or position + 9 > len(data):
                break
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return height, width
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        position += 2 + length
    msg = (
        f"cannot decode {fmt!r} image of {buffer.size} bytes: no valid JPEG frame header "
        "(corrupt or truncated)"
    )
    raise CodecError(msg)


def _png_size(buffer: npt.NDArray[np.uint8], fmt: str) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk, read without decoding.

    Raises:
        CodecError: The first chunk is not a complete IHDR.
    """
    chunk = buffer[8:24].tobytes()  # length, type, width, height of the first chunk
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        msg = (
            f"cannot decode {fmt!r} image of {buffer.size} bytes: no PNG IHDR header "
            "(corrupt or truncated)"
        )
        raise CodecError(msg)
    return int.from_bytes(chunk[12:16], "big"), int.from_bytes(chunk[8:12], "big")


def decode_compressed(*, format: str, data: Any) -> ImageRGB:
    """Decodes the fields of a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to RGB.

    The codec is found from the payload's magic bytes; ``format`` ("jpeg", "png",
    "rgb8; jpeg compressed bgr8") only names it in errors, because drivers fill it loosely.

    Args:
        format: The message's format string.
        data: The compressed payload.

    Returns:
        [H, W, 3] uint8 RGB; grayscale images are expanded to three channels.

    Raises:
        CodecError: compressedDepth, an unknown codec, corrupt or truncated data, or a
            header declaring an empty, oversized or implausibly dense image.
    """
    if "compresseddepth" in format.lower():
        msg = f"compressed image format {format!r} is a depth image, not a camera frame"
        raise CodecError(msg)
    buffer = _as_uint8_buffer(data)
    head = buffer[:8].tobytes()
    if not (head.startswith(_JPEG_MAGIC) or head.startswith(_PNG_MAGIC)):
        msg = f"compressed image format {format!r} is neither JPEG nor PNG (first bytes {head!r})"
        raise CodecError(msg)
    if head.startswith(_JPEG_MAGIC) and buffer[-2:].tobytes() != b"\xff\xd9":
        # libjpeg decodes a truncated JPEG with a grey bottom and only a warning.
        msg = f"JPEG image of {buffer.size} bytes is truncated (no end-of-image marker)"
        raise CodecError(msg)
    # OpenCV allocates the whole output from the header before decoding: check it first.
    if head.startswith(_JPEG_MAGIC):
        height, width = _jpeg_size(buffer, format)
    else:
        height, width = _png_size(buffer, format)
    _check_size(height, width)
    if height * width > buffer.size * MAX_PIXELS_PER_COMPRESSED_BYTE:
        msg = (
            f"compressed image of {buffer.size} bytes declares {width}x{height} pixels, more "
            f"than {MAX_PIXELS_PER_COMPRESSED_BYTE} per byte; its header is corrupt"
        )
        raise CodecError(msg)
    try:
        bgr: Any = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as err:
        msg = f"cannot decode {format!r} image of {buffer.size} bytes: {err.msg.strip()}"
        raise CodecError(msg) from err
    if bgr is None:
        msg = f"cannot decode {format!r} image of {buffer.size} bytes: corrupt or truncated"
        raise CodecError(msg)
    _check_size(bgr.shape[0], bgr.shape[1])
    return _convert(bgr, cv2.COLOR_BGR2RGB)


def decode_image(message: Any) -> ImageRGB:
    """Decodes a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` to RGB.

    Args:
        message: Any object with the fields of either message type.

    Returns:
        [H, W, 3] uint8 RGB (see :func:`decode_raw` about views).

    Raises:
        CodecError: The message cannot be decoded, or is neither message type.
    """
    if hasattr(message, "encoding"):
        return decode_raw(
            height=message.height,
            width=message.width,
            encoding=message.encoding,
            is_bigendian=message.is_bigendian,
            step=message.step,
            data=message.data,
        )
    if hasattr(message, "format"):
        return decode_compressed(format=message.format, data=message.data)
    msg = f"{type(message).__name__} is neither sensor_msgs/Image nor CompressedImage"
    raise CodecError(msg)


# --------------------------------------------------------------------------------------
# Encoding: builds payloads with NumPy arithmetic only (no OpenCV), so tests compare the
# decoder with an independent expectation, and sample bags can be written in any encoding.


@dataclass(frozen=True, slots=True)
class RawImageFields:
    """The fields of a ``sensor_msgs/Image`` (without header)."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CompressedImageFields:
    """The fields of a ``sensor_msgs/CompressedImage`` (without header)."""

    format: str
    data: bytes


def _gray_bt601(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    weights = np.array([0.299, 0.587, 0.114])
    gray: npt.NDArray[np.uint8] = np.clip(np.rint(rgb @ weights), 0, 255).astype(np.uint8)
    return gray


def _yuv_bt601_limited(
    rgb: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """[H, W, 3] RGB -> (Y, U, V) float planes, BT.601 limited range."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return y, u, v


def _to_u8(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _bayer_mosaic(rgb: npt.NDArray[np.uint8], pattern: str) -> npt.NDArray[np.uint8]:
    """Samples one channel per pixel; ``pattern`` names the 2x2 tile from pixel (0, 0)."""
    channel_of = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], dtype=np.uint8)
    for index, letter in enumerate(pattern):
        dy, dx = divmod(index, 2)
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel_of[letter]]
    return mosaic


def _pixel_rows(rgb: npt.NDArray[np.uint8], encoding: str) -> npt.NDArray[np.uint8]:
    """[H, W, 3] RGB -> the rows of the encoded image, [rows, row_bytes] uint8."""
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        return rgb.reshape(height, -1)
    if encoding in ("bgr8", "8UC3"):
        return rgb[..., ::-1].reshape(height, -1)
    if encoding == "rgba8":
        alpha = np.full((height, width, 1), 255, np.uint8)
        rows: npt.NDArray[np.uint8] = np.concatenate([rgb, alpha], axis=2).reshape(height, -1)
        return rows
    if encoding in ("bgra8", "8UC4"):
        alpha = np.full((height, width, 1), 255, np.uint8)
        swapped: npt.NDArray[np.uint8] = np.concatenate([rgb[..., ::-1], alpha], axis=2)
        return swapped.reshape(height, -1)
    if encoding in ("mono8", "8UC1"):
        return _gray_bt601(rgb)
    if encoding.startswith("bayer_") and encoding.endswith("8"):
        return _bayer_mosaic(rgb, encoding[6:10])
    y, u, v = _yuv_bt601_limited(rgb)
    if encoding in ("uyvy", "yuv422", "yuyv", "yuv422_yuy2"):
        # One chroma pair per two pixels: the mean of the pair's chroma.
        u_pair = _to_u8((u[:, 0::2] + u[:, 1::2]) / 2)
        v_pair = _to_u8((v[:, 0::2] + v[:, 1::2]) / 2)
        y8 = _to_u8(y)
        packed = np.empty((height, width // 2, 4), np.uint8)
        if encoding in ("uyvy", "yuv422"):
            order = (u_pair, y8[:, 0::2], v_pair, y8[:, 1::2])
        else:
            order = (y8[:, 0::2], u_pair, y8[:, 1::2], v_pair)
        for slot, values in enumerate(order):
            packed[..., slot] = values
        return packed.reshape(height, -1)
    if encoding in ("nv12", "nv21"):
        u_quad = _to_u8((u[0::2, 0::2] + u[0::2, 1::2] + u[1::2, 0::2] + u[1::2, 1::2]) / 4)
        v_quad = _to_u8((v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2]) / 4)
        first, second = (u_quad, v_quad) if encoding == "nv12" else (v_quad, u_quad)
        chroma = np.stack([first, second], axis=2).reshape(height // 2, width)
        return np.concatenate([_to_u8(y), chroma], axis=0)
    msg = f"cannot encode {encoding!r}"
    raise CodecError(msg)


def _sixteen_bit_rows(
    rgb: npt.NDArray[np.uint8], encoding: str, *, big_endian: bool
) -> npt.NDArray[np.uint8]:
    """16-bit encodings: value = 8-bit value * 257 (so the high byte is the 8-bit value)."""
    if encoding in ("mono16", "16UC1"):
        eight = _gray_bt601(rgb)
    else:
        eight = _bayer_mosaic(rgb, encoding[6:10])
    values = eight.astype(np.uint16) * 257
    return values.astype(">u2" if big_endian else "<u2").view(np.uint8).reshape(rgb.shape[0], -1)


def encode_raw(
    rgb: npt.NDArray[np.uint8],
    encoding: str,
    *,
    step_padding: int = 0,
    big_endian: bool = False,
) -> RawImageFields:
    """Builds a ``sensor_msgs/Image`` payload from an RGB image (for tests and sample bags).

    Args:
        rgb: [H, W, 3] uint8 RGB. 4:2:2 needs an even width, 4:2:0 even sides.
        encoding: Any of ``SUPPORTED_ENCODINGS``.
        step_padding: Extra bytes at the end of every row (filled with 0xAB garbage).
        big_endian: Byte order for 16-bit encodings.

    Returns:
        The message fields.

    Raises:
        CodecError: For an unsupported encoding or odd sizes the encoding cannot hold.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        msg = f"encode_raw needs [H, W, 3] uint8 RGB, got {rgb.shape} {rgb.dtype}"
        raise CodecError(msg)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        msg = f"unsupported image encoding {encoding!r}"
        raise CodecError(msg)
    height, width = rgb.shape[:2]
    odd_422 = layout.kind == "yuv422" and width % 2
    odd_420 = layout.kind == "yuv420sp" and (width | height) % 2
    if odd_422 or odd_420:
        msg = f"{encoding} cannot hold a {width}x{height} image (odd size)"
        raise CodecError(msg)
    if layout.sixteen_bit:
        rows = _sixteen_bit_rows(rgb, encoding, big_endian=big_endian)
    else:
        rows = _pixel_rows(rgb, encoding)
    if step_padding:
        pad = np.full((rows.shape[0], step_padding), 0xAB, np.uint8)
        rows = np.concatenate([rows, pad], axis=1)
    return RawImageFields(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=big_endian and layout.sixteen_bit,
        step=rows.shape[1],
        data=np.ascontiguousarray(rows).tobytes(),
    )


def encode_compressed(
    rgb: npt.NDArray[np.uint8], fmt: str = "jpeg", quality: int = 90
) -> CompressedImageFields:
    """Compresses an RGB image as ``image_transport``'s compressed plugin does.

    Args:
        rgb: [H, W, 3] uint8 RGB.
        fmt: ``"jpeg"`` or ``"png"``.
        quality: JPEG quality 1..100 (ignored for PNG).

    Returns:
        The message fields; ``format`` reads e.g. ``"rgb8; jpeg compressed bgr8"``.

    Raises:
        CodecError: For another format or a failed encode.
    """
    if fmt not in ("jpeg", "png"):
        msg = f"compressed format {fmt!r} is not supported; use 'jpeg' or 'png'"
        raise CodecError(msg)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[..., ::-1], params)
    if not ok:
        msg = f"OpenCV could not encode a {rgb.shape} image as {fmt}"
        raise CodecError(msg)
    return CompressedImageFields(format=f"rgb8; {fmt} compressed bgr8", data=encoded.tobytes())
