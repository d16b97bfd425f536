"""Real frames in: rosbag2 folders (raw or compressed images), image folders, video files.

Each input is a *source* with a name (its file or folder name, made safe for dataset
ids) and frames numbered in the source's own order, so a frame's id does not depend on
subsampling or on which frames were kept before. Subsampling is decided before decoding
where it can be (every Nth frame, a minimum interval in seconds), near-duplicates (a
slow-moving car, a stop at a light) after decoding, against the last frame kept.

A frame that cannot be decoded is yielded as a :class:`BadFrame` (the caller counts it
and says so in one line); a source that cannot be opened raises :class:`BagError` or
:class:`ConfigError` before any frame.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import CodecError, ConfigError, first_line

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "BadFrame",
    "Frame",
    "FrameSource",
    "Subsampling",
    "open_sources",
    "source_name",
    "thumbnail",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True, slots=True)
class Subsampling:
    """Which frames of a source are labelled.

    Attributes:
        every: Keep every Nth frame of the source (1 = all).
        min_interval_s: At least this many seconds between kept frames (bags: header
            stamps, videos: frame times; image folders have no time and ignore it).
        dedup: Skip a frame whose 64x36 grey thumbnail differs from the last kept one by
            less than this mean absolute grey level (0 = keep all; ~3 skips a standing car).
        limit: At most this many frames per source (0 = no limit).
    """

    every: int = 1
    min_interval_s: float = 0.0
    dedup: float = 0.0
    limit: int = 0

    def __post_init__(self) -> None:
        if self.every < 1 or self.min_interval_s < 0 or self.dedup < 0 or self.limit < 0:
            raise ConfigError(
                "subsampling needs --every >= 1 and non-negative --min-interval, --dedup, --limit"
            )


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.

    Attributes:
        source: The source's name (safe for dataset ids).
        index: The frame's number in its source (before subsampling).
        image: [H, W, 3] uint8 RGB.
        provenance: Where it came from: ``path`` and ``topic``/``stamp_ns`` (bags),
            ``file`` (folders) or ``time_s`` (videos).
        encoded: The frame's original JPEG bytes when it was JPEG (kept as is), else None.
    """

    source: str
    index: int
    image: npt.NDArray[np.uint8]
    provenance: dict[str, Any]
    encoded: bytes | None = None


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be decoded: its place and the one-line reason."""

    source: str
    index: int
    provenance: dict[str, Any]
    reason: str


def source_name(path: Path) -> str:
    """A dataset-safe name for an input: lower-case letters, digits and '-' only.

    Cityscapes ids are ``<city>_<sequence>_<frame>``, so the name must hold no '_'.
    """
    stem = path.name if path.is_dir() else path.stem
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return name or "frames"


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _decode_file(path: Path) -> tuple[npt.NDArray[np.uint8], bytes | None]:
    import cv2

    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or min(image.shape[:2]) < 8:
        raise CodecError(f"{str(path)!r} is not a decodable image (truncated or corrupt?)")
    return np.ascontiguousarray(image[:, :, ::-1]), data if _is_jpeg(data) else None


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """[H, W, 3] uint8 -> [36, 64] float32 grey thumbnail, for near-duplicate checks."""
    import cv2

    grey = image.mean(axis=2, dtype=np.float32)
    return np.asarray(cv2.resize(grey, (64, 36), interpolation=cv2.INTER_AREA), dtype=np.float32)


class FrameSource:
    """Frames of one input path, subsampled.

    Args:
        path: A rosbag2 folder or .mcap/.db3 file, an image folder (searched recursively,
            sorted by path), a single image, or a video file.
        name: The source's name in dataset ids.
        subsampling: Which frames to keep.
        topic: Image topic of a bag with several (default: its only image topic).

    Raises:
        ConfigError: The path does not exist or is of no known kind.
    """

    def __init__(
        self, path: Path, name: str, subsampling: Subsampling, topic: str | None = None
    ) -> None:
        if not path.exists():
            raise ConfigError(f"input {str(path)!r} does not exist")
        self.path = path
        self.name = name
        self.subsampling = subsampling
        self.topic = topic
        self.kind = self._kind(path)

    @staticmethod
    def _kind(path: Path) -> str:
        if path.is_dir():
            if (
                (path / "metadata.yaml").is_file()
                or any(path.glob("*.mcap"))
                or any(path.glob("*.db3"))
            ):
                return "bag"
            return "folder"
        suffix = path.suffix.lower()
        if suffix in (".mcap", ".db3"):
            return "bag"
        if suffix in IMAGE_SUFFIXES:
            return "image"
        if suffix in VIDEO_SUFFIXES:
            return "video"
        raise ConfigError(
            f"input {str(path)!r} is no rosbag2, image folder, image ({', '.join(IMAGE_SUFFIXES)}) "
            f"or video ({', '.join(VIDEO_SUFFIXES)})"
        )

    def __iter__(self) -> Iterator[Frame | BadFrame]:
        """Yield the kept frames (and the bad ones) in the source's order."""
        raw = {
            "bag": self._bag,
            "folder": self._folder,
            "image": self._folder,
            "video": self._video,
        }[self.kind]()
        last_time: float | None = None
        last_thumb: npt.NDArray[np.float32] | None = None
        kept = 0
        for index, time_s, load in raw:
            if self.subsampling.limit and kept >= self.subsampling.limit:
                return
            if index % self.subsampling.every:
                continue
            if (
                time_s is not None
                and last_time is not None
                and time_s - last_time < self.subsampling.min_interval_s
            ):
                continue
            item = load()
            if isinstance(item, BadFrame):
                yield item
                continue
            if self.subsampling.dedup:
                thumb = thumbnail(item.image)
                if (
                    last_thumb is not None
                    and thumb.shape == last_thumb.shape
                    and float(np.abs(thumb - last_thumb).mean()) < self.subsampling.dedup
                ):
                    continue
                last_thumb = thumb
            last_time = time_s
            kept += 1
            yield item

    # Each reader yields (index, time_s or None, loader); loaders decode only when called.

    def _folder(self) -> Iterator[tuple[int, float | None, Any]]:
        root = self.path
        files = (
            [root]
            if root.is_file()
            else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        )
        if not files:
            raise ConfigError(
                f"image folder {str(root)!r} holds no {', '.join(IMAGE_SUFFIXES)} file"
            )
        for index, path in enumerate(files):
            relative = str(path.relative_to(root)) if root.is_dir() else path.name
            provenance = {"path": str(self.path), "file": relative}

            def load(
                path: Path = path, index: int = index, provenance: dict[str, Any] = provenance
            ) -> Frame | BadFrame:
                try:
                    image, encoded = _decode_file(path)
                except (OSError, CodecError) as err:
                    return BadFrame(self.name, index, provenance, first_line(err))
                return Frame(self.name, index, image, provenance, encoded)

            yield index, None, load

    def _video(self) -> Iterator[tuple[int, float | None, Any]]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ConfigError(f"video {str(self.path)!r} cannot be opened (codec or file broken?)")
        fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        try:
            index = 0
            while True:
                ok = capture.grab()
                if not ok:
                    return
                time_s = index / fps
                provenance = {"path": str(self.path), "frame": index, "time_s": round(time_s, 3)}

                def load(
                    index: int = index, provenance: dict[str, Any] = provenance
                ) -> Frame | BadFrame:
                    ok, image = capture.retrieve()
                    if not ok or image is None:
                        return BadFrame(self.name, index, provenance, "frame does not decode")
                    return Frame(
                        self.name, index, np.ascontiguousarray(image[:, :, ::-1]), provenance
                    )

                yield index, time_s, load
                index += 1
        finally:
            capture.release()

    def _bag(self) -> Iterator[tuple[int, float | None, Any]]:
        from panoptic_ros.bags import choose_image_topic, iter_messages, open_reader
        from panoptic_ros.codec import decode_image

        with open_reader(self.path) as reader:
            topic = choose_image_topic(reader, self.topic)
            for index, (_, message) in enumerate(iter_messages(reader, topic)):
                stamp = message.header.stamp
                stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
                provenance = {"path": str(self.path), "topic": topic, "stamp_ns": stamp_ns}

                def load(
                    message: Any = message,
                    index: int = index,
                    provenance: dict[str, Any] = provenance,
                ) -> Frame | BadFrame:
                    try:
                        image = np.ascontiguousarray(decode_image(message))
                    except CodecError as err:
                        return BadFrame(self.name, index, provenance, first_line(err))
                    data = bytes(message.data) if hasattr(message, "format") else b""
                    return Frame(
                        self.name, index, image, provenance, data if _is_jpeg(data) else None
                    )

                yield index, stamp_ns / 1e9, load


def open_sources(
    paths: list[Path], subsampling: Subsampling, topic: str | None = None
) -> list[FrameSource]:
    """One :class:`FrameSource` per input, with unique names (a suffix where names repeat).

    Raises:
        ConfigError: An input is missing or of no known kind.
    """
    sources: list[FrameSource] = []
    seen: dict[str, int] = {}
    for path in paths:
        base = source_name(path)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        sources.append(FrameSource(path, name, subsampling, topic))
    return sources
