"""Plain result types shared by backends, fusion, replay and the node (NumPy only, no ROS).

Coordinate conventions used everywhere:
- pixel arrays are indexed (y, x) = (row, column);
- a pixel's centre has integer coordinates; a box ``(x_min, y_min, x_max, y_max)`` is
  inclusive on both ends, so its width in pixels is ``x_max - x_min + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from panoptic_ros.timing import STAGES

__all__ = ["FrameResult", "HeadOutputs", "Instance", "StageTimings"]


@dataclass(frozen=True, slots=True)
class HeadOutputs:
    """The network's three heads for a batch, at stride 4 of the network input.

    Attributes:
        semantic_logits: [N, C, h, w] float32 class scores (pre-softmax).
        center_heatmap: [N, 1, h, w] float32 instance-centre confidence, about 0..1.
        offsets: [N, 2, h, w] float32 (dy, dx) from each cell to its instance's centre,
            in network input pixels.
    """

    semantic_logits: npt.NDArray[np.float32]
    center_heatmap: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        n, _, h, w = self.semantic_logits.shape
        assert self.center_heatmap.shape == (n, 1, h, w), self.center_heatmap.shape
        assert self.offsets.shape == (n, 2, h, w), self.offsets.shape

    @property
    def batch_size(self) -> int:
        """Number of images N."""
        return int(self.semantic_logits.shape[0])

    def __getitem__(self, index: int) -> HeadOutputs:
        """Return the outputs of one image, keeping a batch dimension of 1."""
        s = slice(index, index + 1)
        return HeadOutputs(self.semantic_logits[s], self.center_heatmap[s], self.offsets[s])


@dataclass(frozen=True, slots=True)
class Instance:
    """One detected "thing" instance, in camera pixels.

    Attributes:
        index: k in 1..N: the value of this instance's pixels in the frame's
            ``instance_ids`` map and its position (k-1) in ``FrameResult.instances``.
        class_id: Class index in the label space.
        class_name: Class name (the Detection2D ``class_id``).
        score: Confidence in 0..1 (centre confidence x mean class probability).
        bbox_xyxy: Inclusive box (x_min, y_min, x_max, y_max) in camera pixels.
        area_px: Number of camera pixels of the instance.
        centroid_yx: Mean (y, x) of the instance's camera pixels.
        track_id: Object id that persists across frames and is never reused for another
            object (0 until a tracker assigns one).
    """

    index: int
    class_id: int
    class_name: str
    score: float
    bbox_xyxy: tuple[int, int, int, int]
    area_px: int
    centroid_yx: tuple[float, float]
    track_id: int = 0


@dataclass(slots=True)
class StageTimings:
    """Milliseconds spent per stage for one frame (monotonic clock).

    One field ``<stage>_ms`` per name of :data:`panoptic_ros.timing.STAGES`, which says
    what each stage covers; a stage that did not run (an overlay nobody wants) stays 0.
    """

    decode_ms: float = 0.0
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    fusion_ms: float = 0.0
    tracking_ms: float = 0.0
    overlay_ms: float = 0.0
    messages_ms: float = 0.0
    #: The network's own device time from CUDA events (0 when not measured: off CUDA or on
    #: the host path); part of ``inference_ms``, not added to the total.
    inference_device_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Stage name (:data:`panoptic_ros.timing.STAGES`, in order) -> milliseconds."""
        timings = {
            "decode": self.decode_ms,
            "preprocess": self.preprocess_ms,
            "inference": self.inference_ms,
            "fusion": self.fusion_ms,
            "tracking": self.tracking_ms,
            "overlay": self.overlay_ms,
            "messages": self.messages_ms,
        }
        assert tuple(timings) == STAGES
        return timings

    @property
    def total_ms(self) -> float:
        """Sum of all stages."""
        return sum(self.as_dict().values())


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Panoptic result of one camera frame, at the camera's resolution.

    Attributes:
        semantic: [H, W] uint8 class index per pixel, 255 = void.
        instance_ids: [H, W] uint16, k (1..N) where ``instances[k-1]`` lies, 0 = none.
        drivable_mask: [H, W] uint8, 255 drivable, 0 not.
        instances: Detected things, ordered by ``index``.
        timings: Per-stage milliseconds spent on this frame.
        non_finite_outputs: Network output values that were NaN or infinite (the fusion
            ignores them, so the frame stays valid; a count above 0 means a broken model,
            engine or input and is reported, not hidden).
    """

    semantic: npt.NDArray[np.uint8]
    instance_ids: npt.NDArray[np.uint16]
    drivable_mask: npt.NDArray[np.uint8]
    instances: tuple[Instance, ...]
    timings: StageTimings = field(default_factory=StageTimings, compare=False)
    non_finite_outputs: int = field(default=0, compare=False)

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) of the camera image."""
        return (int(self.semantic.shape[0]), int(self.semantic.shape[1]))
