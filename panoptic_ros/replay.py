"""Offline replay: run a rosbag2's camera topic through the pipeline, write the outputs.

``run_replay(bag, output_dir, pipeline, ...)`` writes::

    output_dir/
      panoptic/       rosbag2 (MCAP): <namespace>/drivable_mask, semantic, instance_ids,
                      instances, overlay; one message per processed frame on each, with
                      the input header, at the input message's log time; and
                      <namespace>/objects, objects_markers (ground frame, image stamp)
                      when the bag holds the camera's CameraInfo and /tf_static
      overlay.mp4     the overlay as a video (unless replay.write_video is false)
      summary.json    frames, skipped frames and why, fps, per-stage p50/p99 (the stages of
                      panoptic_ros.timing.STAGES, then objects, write and total), topics,
                      files
      config.yaml     the resolved configuration (when the caller passes one)

Everything is checked before any work (bag readable, topic, output not existing and not
overlapping the input). The output is built in ``<output_dir>.partial-<random>`` and renamed
into place at the end; with ``overwrite`` the old output is replaced only then. Any error
but an undecodable frame removes the partial folder and leaves the file system as it was.
The input bag is only ever opened for reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import yaml
from tqdm import tqdm

from panoptic_ros.bags import (
    BagWriter,
    choose_image_topic,
    iter_messages,
    make_typestore,
    open_reader,
    publish_folder,
    staging_path,
)
from panoptic_ros.camera_pipeline import CameraPipeline, FramePipeline, Tracker
from panoptic_ros.config import GridConfig, ObjectsConfig, RenderConfig, ReplayConfig
from panoptic_ros.errors import BagError, CodecError
from panoptic_ros.labels import LabelSpace
from panoptic_ros.output_paths import check_output
from panoptic_ros.replay_objects import ReplayGround
from panoptic_ros.ros_messages import (
    GROUND_TOPICS,
    OUTPUT_TOPICS,
    MessageClasses,
    object_detection_array,
    object_markers,
    stamp_ns,
)
from panoptic_ros.timing import STAGES as FRAME_STAGES
from panoptic_ros.timing import StageStats, ms_since

__all__ = [
    "BAG_DIRNAME",
    "CONFIG_FILENAME",
    "STAGES",
    "SUMMARY_FILENAME",
    "VIDEO_FILENAME",
    "ReplayPipeline",
    "ReplaySummary",
    "StageStats",
    "run_replay",
]

logger = logging.getLogger(__name__)

BAG_DIRNAME: Final = "panoptic"
VIDEO_FILENAME: Final = "overlay.mp4"
SUMMARY_FILENAME: Final = "summary.json"
CONFIG_FILENAME: Final = "config.yaml"

#: Reported stages: those of every frame (:data:`panoptic_ros.timing.STAGES`), then
#: ``objects`` (placing ground objects and building their messages; 0 without CameraInfo
#: and TF in the bag), ``write`` (serialising the messages, writing them to the bag and the
#: overlay to the video) and ``total`` (the whole frame, wall clock).
STAGES: Final = (*FRAME_STAGES, "objects", "write", "total")

# Frames buffered before the video opens, to estimate its frame rate from their stamps.
_FPS_PROBE_FRAMES: Final = 8
# Frame rate of the video when the stamps give none (all equal, or a single frame).
_FALLBACK_FPS: Final = 10.0


class ReplayPipeline(FramePipeline, Protocol):
    """What replay needs of :class:`panoptic_ros.pipeline.PanopticPipeline`."""

    labels: LabelSpace

    def describe(self) -> str:
        """One line: backend, model, sizes."""
        ...


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """The outcome of one replay (also written as ``summary.json``).

    Attributes:
        input_bag: The bag read.
        topic: The image topic replayed.
        output_dir: The output folder written.
        frames: Frames processed (one message per output topic each).
        skipped: Frames skipped because they could not be decoded.
        skipped_reasons: Decoder message -> number of frames skipped for it.
        wall_s: Wall-clock seconds from the first frame to the finished output.
        fps: Processed frames per wall-clock second.
        stages: Stage name (see :data:`STAGES`) -> per-frame milliseconds.
        topics_written: Output topic -> messages written.
        files: Paths written, relative to ``output_dir``.
        backend: ``pipeline.describe()``.
        video_fps: Frame rate of ``overlay.mp4``; None when no video was written.
        versions: Library versions of the run.
        objects: Ground objects: frames written, frames without (by reason), instances
            left out (by reason); empty when the bag had no CameraInfo or /tf_static.
    """

    input_bag: str
    topic: str
    output_dir: str
    frames: int
    skipped: int
    skipped_reasons: Mapping[str, int]
    wall_s: float
    fps: float
    stages: Mapping[str, StageStats]
    topics_written: Mapping[str, int]
    files: tuple[str, ...]
    backend: str
    video_fps: float | None
    versions: Mapping[str, str] = field(default_factory=dict)
    objects: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping."""
        return {
            "input_bag": self.input_bag,
            "topic": self.topic,
            "output_dir": self.output_dir,
            "frames": self.frames,
            "skipped": self.skipped,
            "skipped_reasons": dict(self.skipped_reasons),
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 3),
            "stages_ms": {
                name: {
                    "p50": round(s.p50_ms, 3),
                    "p99": round(s.p99_ms, 3),
                    "mean": round(s.mean_ms, 3),
                }
                for name, s in self.stages.items()
            },
            "topics_written": dict(self.topics_written),
            "files": list(self.files),
            "backend": self.backend,
            "video_fps": None if self.video_fps is None else round(self.video_fps, 3),
            "versions": dict(self.versions),
            "objects": dict(self.objects),
        }

    def format_table(self) -> str:
        """Return the human summary printed at the end of ``panoptic-ros replay``."""
        lines = [
            f"input    {self.input_bag} ({self.topic})",
            f"frames   {self.frames} processed, {self.skipped} skipped",
            f"speed    {self.fps:.2f} frames/s over {self.wall_s:.2f} s",
            f"backend  {self.backend}",
            "",
            f"{'stage':<12}{'p50 ms':>10}{'p99 ms':>10}",
        ]
        lines += [f"{n:<12}{s.p50_ms:>10.2f}{s.p99_ms:>10.2f}" for n, s in self.stages.items()]
        lines.append("")
        for reason, count in self.skipped_reasons.items():
            lines.append(f"skipped  {count} x {reason}")
        if self.objects:
            left_out = ", ".join(
                f"{n} {reason}" for reason, n in self.objects["left_out"].items() if n
            )
            lines.append(
                f"objects  {self.objects['frames']} frames placed on the ground"
                + (f"; left out: {left_out}" if left_out else "")
            )
            for reason, count in self.objects["frames_without"].items():
                lines.append(f"objects  {count} frames without: {reason}")
        lines += [f"topic    {t} ({n} msgs)" for t, n in self.topics_written.items()]
        lines += [f"wrote    {Path(self.output_dir) / name}" for name in self.files]
        return "\n".join(lines)


class _OverlayVideo:
    """Writes overlays to an MP4 (mp4v); the frame rate comes from the first stamps.

    The first :data:`_FPS_PROBE_FRAMES` frames are held back until the median spacing of
    their header stamps gives the frame rate (``fps`` overrides it).
    """

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._pending: list[npt.NDArray[np.uint8]] = []
        self._stamps: list[int] = []
        self._resized_warned = False

    def add(self, overlay_bgr: npt.NDArray[np.uint8], stamp: int) -> None:
        """Queue or write one [H, W, 3] uint8 BGR frame stamped ``stamp`` (ns)."""
        if self._writer is None:
            self._pending.append(overlay_bgr)
            self._stamps.append(stamp)
            if len(self._pending) >= _FPS_PROBE_FRAMES:
                self._open()
        else:
            self._write(overlay_bgr)

    def _estimate_fps(self) -> float:
        spacing = np.diff(np.asarray(self._stamps, dtype=np.int64))
        spacing = spacing[spacing > 0]
        if spacing.size == 0:
            logger.warning(
                "cannot estimate the video frame rate from the stamps; using %.0f fps "
                "(set replay.video_fps)",
                _FALLBACK_FPS,
            )
            return _FALLBACK_FPS
        return float(1e9 / np.median(spacing))

    def _open(self) -> None:
        self.fps = self.fps or self._estimate_fps()
        height, width = self._pending[0].shape[:2]
        self._size = (width, height)
        fourcc = cv2.VideoWriter.fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
        if not writer.isOpened():
            raise BagError(f"OpenCV cannot write {str(self.path)!r} (mp4v); set write_video false")
        self._writer = writer
        pending, self._pending = self._pending, []
        for frame in pending:
            self._write(frame)

    def _write(self, frame: npt.NDArray[np.uint8]) -> None:
        assert self._writer is not None
        assert self._size is not None
        if (frame.shape[1], frame.shape[0]) != self._size:
            # A video has one size; a camera that changes resolution mid-bag is rescaled.
            if not self._resized_warned:
                logger.warning(
                    "frame size changed to %dx%d; the video keeps %dx%d",
                    frame.shape[1],
                    frame.shape[0],
                    *self._size,
                )
                self._resized_warned = True
            frame = np.asarray(
                cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA), dtype=np.uint8
            )
        self._writer.write(np.ascontiguousarray(frame))

    def close(self) -> bool:
        """Flush and close; returns True when a video file was written."""
        if self._writer is None and self._pending:
            self._open()
        if self._writer is None:
            return False
        self._writer.release()
        self._writer = None
        return True

    def abort(self) -> None:
        """Release the writer without flushing (its file is removed with the folder)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.release()
        self._writer = None
        self._pending = []


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions["opencv"] = cv2.__version__
    for package in ("rosbags", "panoptic_ros"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def run_replay(
    bag: Path,
    output_dir: Path,
    pipeline: ReplayPipeline,
    *,
    config: ReplayConfig,
    render: RenderConfig,
    topic: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    tracker: Tracker | None = None,
    config_dump: Mapping[str, Any] | None = None,
    grid: GridConfig | None = None,
    objects: ObjectsConfig | None = None,
) -> ReplaySummary:
    """Replay a bag's image topic through ``pipeline`` and write the outputs.

    Args:
        bag: rosbag2 folder or ``.mcap``/``.db3`` file (only read).
        output_dir: Folder to create (see the module docstring for its content).
        pipeline: Decodes and segments messages and draws overlays
            (:class:`PanopticPipeline`).
        config: Replay settings (namespace, video, frame limit).
        render: Overlay settings.
        topic: Image topic; None picks the bag's only image topic.
        overwrite: Replace an existing ``output_dir`` (once the new one is complete).
        progress: Show a progress bar on stderr (only when stderr is a terminal).
        tracker: Assigns persistent ids; default a new ``InstanceTracker``.
        config_dump: The resolved configuration, saved as ``config.yaml``.
        grid: Ground frame and rectification of the ``objects`` output (default settings
            when None).
        objects: Geometry settings of the ``objects`` output (defaults when None).

    Returns:
        The summary (also saved as ``summary.json``).

    Raises:
        ConfigError: The output exists (without ``overwrite``) or overlaps the input.
        BagError: Missing or unreadable bag, no or ambiguous image topic, a topic without
            messages, or writing failed.
        Exception: Whatever the pipeline raises besides ``CodecError`` aborts the replay;
            no output is left behind.
    """
    bag = Path(bag)
    output_dir = Path(output_dir)
    if not bag.exists():
        raise BagError(f"bag {str(bag)!r} does not exist; check the path")
    check_output(output_dir, overwrite, [bag])
    with open_reader(bag) as reader:
        chosen = choose_image_topic(reader, topic)
        total = int(reader.topics[chosen].msgcount)
        if total == 0:
            raise BagError(f"topic {chosen!r} of {str(bag)!r} has no messages; nothing to replay")
        if config.max_frames:
            total = min(total, config.max_frames)
        ground = (
            ReplayGround.from_bag(reader, chosen, grid or GridConfig(), objects or ObjectsConfig())
            if config.write_objects
            else None
        )
        staging = staging_path(output_dir)
        try:
            output_dir.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        except OSError as err:
            raise BagError(f"cannot create output {str(output_dir)!r}: {err.strerror}") from err
        try:
            summary = _replay_into(
                staging,
                reader_messages=iter_messages(reader, chosen),
                total=total,
                bag=bag,
                topic=chosen,
                output_dir=output_dir,
                pipeline=pipeline,
                tracker=tracker,
                config=config,
                render=render,
                progress=progress,
                config_dump=config_dump,
                ground=ground,
            )
            if summary.frames + summary.skipped == 0:
                raise BagError(
                    f"no message of {chosen!r} could be read from {str(bag)!r}; nothing written"
                )
            publish_folder(staging, output_dir, overwrite=overwrite)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info(
        "replayed %d frames (%d skipped) of %s at %.1f fps into %s",
        summary.frames,
        summary.skipped,
        bag,
        summary.fps,
        output_dir,
    )
    return summary


def _replay_into(
    staging: Path,
    *,
    reader_messages: Iterator[tuple[int, Any]],
    total: int,
    bag: Path,
    topic: str,
    output_dir: Path,
    pipeline: ReplayPipeline,
    tracker: Tracker | None,
    config: ReplayConfig,
    render: RenderConfig,
    progress: bool,
    config_dump: Mapping[str, Any] | None,
    ground: ReplayGround | None = None,
) -> ReplaySummary:
    """Process every frame into ``staging``; returns the summary (written there too)."""
    typestore = make_typestore()
    camera = CameraPipeline(pipeline, MessageClasses.from_typestore(typestore), tracker=tracker)
    namespace = config.output_namespace.rstrip("/")
    topics = {name: f"{namespace}/{name}" for name in OUTPUT_TOPICS}
    ground_topics = {name: f"{namespace}/{name}" for name in GROUND_TOPICS}
    colors = {c.name: c.color_rgb for c in pipeline.labels.classes}
    timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
    skipped: dict[str, int] = {}
    processed = 0
    video = (
        _OverlayVideo(staging / VIDEO_FILENAME, config.video_fps or None)
        if config.write_video
        else None
    )
    bar = tqdm(
        total=total,
        unit="frame",
        desc="replay",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
    )
    start = time.perf_counter()
    try:
        with BagWriter(staging / BAG_DIRNAME, storage="mcap", typestore=typestore) as writer:
            for name, msgtype in OUTPUT_TOPICS.items():
                writer.add_topic(topics[name], msgtype)
            if ground is not None:
                for name, msgtype in GROUND_TOPICS.items():
                    writer.add_topic(ground_topics[name], msgtype)
            for index, (log_time_ns, msg) in enumerate(reader_messages):
                if config.max_frames and index >= config.max_frames:
                    break
                bar.update(1)
                frame_start = time.perf_counter_ns()
                try:
                    frame = camera.process(msg, render=render)
                except CodecError as err:
                    reason = str(err)
                    if reason not in skipped:
                        logger.warning("skipping undecodable frames of %s: %s", topic, reason)
                    skipped[reason] = skipped.get(reason, 0) + 1
                    continue

                objects_start = time.perf_counter_ns()
                ground_messages: dict[str, Any] = {}
                located = ground.locate(log_time_ns, msg.header, frame.result) if ground else None
                if ground is not None and located is not None:
                    stamp, frame_id = msg.header.stamp, ground.frame_id
                    ground_messages = {
                        "objects": object_detection_array(
                            camera.classes, stamp, frame_id, located.objects
                        ),
                        "objects_markers": object_markers(
                            camera.classes, stamp, frame_id, located.objects, colors
                        ),
                    }
                objects_ms = ms_since(objects_start)

                write_start = time.perf_counter_ns()
                for name, message in frame.messages.items():
                    data = writer.serialize(message)
                    writer.write_serialized(topics[name], OUTPUT_TOPICS[name], data, log_time_ns)
                for name, message in ground_messages.items():
                    data = writer.serialize(message)
                    writer.write_serialized(
                        ground_topics[name], GROUND_TOPICS[name], data, log_time_ns
                    )
                if video is not None and frame.overlay is not None:
                    video.add(frame.overlay, stamp_ns(msg.header) or log_time_ns)

                for stage, value in frame.result.timings.as_dict().items():
                    timings[stage].append(value)
                timings["objects"].append(objects_ms)
                timings["write"].append(ms_since(write_start))
                timings["total"].append(ms_since(frame_start))
                processed += 1
            written = [*topics.values(), *(ground_topics.values() if ground else ())]
            topics_written = {t: writer.counts.get(t, 0) for t in written}
        files = [BAG_DIRNAME]
        if video is not None:
            if video.close():
                files.append(VIDEO_FILENAME)
            else:
                logger.warning("no frame was processed; no video written")
    except BaseException:
        if video is not None:
            video.abort()
        raise
    finally:
        bar.close()
    wall_s = time.perf_counter() - start

    files.append(SUMMARY_FILENAME)
    if config_dump is not None:
        files.append(CONFIG_FILENAME)
        with (staging / CONFIG_FILENAME).open("w", encoding="utf-8") as stream:
            yaml.safe_dump(dict(config_dump), stream, sort_keys=False)
    summary = ReplaySummary(
        input_bag=str(bag),
        topic=topic,
        output_dir=str(output_dir),
        frames=processed,
        skipped=sum(skipped.values()),
        skipped_reasons=skipped,
        wall_s=wall_s,
        fps=processed / wall_s if wall_s > 0 else 0.0,
        stages={stage: StageStats.of(values) for stage, values in timings.items()},
        topics_written=topics_written,
        files=tuple(files),
        backend=pipeline.describe(),
        video_fps=video.fps if video is not None and VIDEO_FILENAME in files else None,
        versions=_versions(),
        objects=ground.summary() if ground is not None else {},
    )
    (staging / SUMMARY_FILENAME).write_text(
        json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    return summary
