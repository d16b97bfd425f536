"""One camera's frame from image message to output messages: the tail every tool shares.

:class:`CameraPipeline` runs, for one camera, decode, letterbox, network and fusion (its
:class:`~panoptic_ros.pipeline.PanopticPipeline`, which may serve several cameras), then
the camera's own tracker, the overlay and the output messages
(:mod:`panoptic_ros.ros_messages`, for whichever message classes it is given: rclpy's in
the node, rosbags' in ``replay`` and ``bench``). Every stage is timed under the names of
:data:`panoptic_ros.timing.STAGES`, so the node, ``replay`` and ``bench`` measure the same
work under the same names; what they do with the messages afterwards (publish, write)
is theirs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from panoptic_ros.config import RenderConfig
from panoptic_ros.results import FrameResult
from panoptic_ros.ros_messages import OUTPUT_TOPICS, MessageClasses, build_output_messages
from panoptic_ros.timing import ms_since
from panoptic_ros.tracking import InstanceTracker

__all__ = ["CameraFrame", "CameraPipeline", "FramePipeline", "Tracker"]


class FramePipeline(Protocol):
    """What a camera needs of :class:`~panoptic_ros.pipeline.PanopticPipeline`."""

    def process_message(self, msg: Any) -> tuple[npt.NDArray[np.uint8], FrameResult]:
        """Decode and segment one image message: ([H, W, 3] uint8 RGB, result).

        Raises:
            CodecError: The message cannot be decoded.
        """
        ...

    def render(
        self,
        image: npt.NDArray[np.uint8],
        result: FrameResult,
        *,
        alpha: float = 0.5,
        draw_boxes: bool = True,
    ) -> npt.NDArray[np.uint8]:
        """The [H, W, 3] uint8 BGR overlay of ``result`` over ``image``."""
        ...


class Tracker(Protocol):
    """What a camera needs of :class:`~panoptic_ros.tracking.InstanceTracker`."""

    def update(self, result: FrameResult) -> FrameResult:
        """Return ``result`` with persistent ``track_id`` on its instances."""
        ...


@dataclass(frozen=True, slots=True)
class CameraFrame:
    """One processed frame of a camera.

    Attributes:
        image: [H, W, 3] uint8 RGB, the decoded input.
        result: The tracked panoptic result; its timings cover every stage of
            :data:`panoptic_ros.timing.STAGES`.
        overlay: [H, W, 3] uint8 BGR overlay; None when the overlay was not wanted.
        messages: Output name (:data:`~panoptic_ros.ros_messages.OUTPUT_TOPICS`) -> message,
            only for the outputs wanted, each with the input header unchanged.
    """

    image: npt.NDArray[np.uint8]
    result: FrameResult
    overlay: npt.NDArray[np.uint8] | None
    messages: Mapping[str, Any]


class CameraPipeline:
    """Decode, letterbox, network, fusion, tracking, overlay and messages for one camera.

    Args:
        pipeline: Decodes and segments frames and draws overlays (may be shared by cameras;
            not closed here).
        classes: The message classes the outputs are built from.
        tracker: This camera's tracker (its ids persist across this camera's frames);
            default a new :class:`~panoptic_ros.tracking.InstanceTracker`.
    """

    def __init__(
        self,
        pipeline: FramePipeline,
        classes: MessageClasses,
        *,
        tracker: Tracker | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.classes = classes
        self.tracker: Tracker = tracker if tracker is not None else InstanceTracker()

    def process(
        self,
        message: Any,
        *,
        render: RenderConfig,
        outputs: Iterable[str] = OUTPUT_TOPICS,
    ) -> CameraFrame:
        """Run one image message through every stage.

        Args:
            message: ``sensor_msgs/Image`` or ``CompressedImage`` (any classes with those
                fields and a ``header``).
            render: Overlay settings.
            outputs: Names of the outputs to build; the overlay is drawn only when
                ``overlay`` is among them.

        Returns:
            The frame: image, tracked result with every stage's time, overlay, messages.

        Raises:
            CodecError: The message cannot be decoded.
            BackendError: Inference failed.
        """
        wanted = frozenset(outputs)
        image, result = self.pipeline.process_message(message)

        start = time.perf_counter_ns()
        result = self.tracker.update(result)
        tracking_ms = ms_since(start)

        start = time.perf_counter_ns()
        overlay = None
        if "overlay" in wanted:
            # On the device when the pipeline still holds the frame there.
            overlay = self.pipeline.render(
                image, result, alpha=render.overlay_alpha, draw_boxes=render.draw_boxes
            )
        overlay_ms = ms_since(start) if overlay is not None else 0.0

        start = time.perf_counter_ns()
        messages = build_output_messages(
            self.classes, message.header, result, overlay_bgr=overlay, enabled=wanted
        )
        messages_ms = ms_since(start)

        timings = replace(
            result.timings,
            tracking_ms=tracking_ms,
            overlay_ms=overlay_ms,
            messages_ms=messages_ms,
        )
        return CameraFrame(image, replace(result, timings=timings), overlay, messages)
