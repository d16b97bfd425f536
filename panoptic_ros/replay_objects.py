"""Ground objects offline: the bag's CameraInfo and TF, the node's geometry, per frame.

When a bag holds the replayed camera's CameraInfo (the sibling ``camera_info`` topic) and
``/tf_static`` (``/tf`` too when present), replay places each frame's instances on the
ground plane exactly as the node does (:func:`panoptic_ros.ground_objects.locate_objects`
with the camera model and the transform at the image stamp) and writes ``objects`` and
``objects_markers``. Frames whose transform is missing or not known at their stamp get no
objects; they are counted by reason, as are the instances left out.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from panoptic_ros.bags import iter_messages
from panoptic_ros.camera_model import CameraModel, camera_info_topic
from panoptic_ros.config import GridConfig, ObjectsConfig
from panoptic_ros.errors import ConfigError, TransformError, first_line
from panoptic_ros.ground_objects import (
    LEFT_OUT_REASONS,
    GroundObjects,
    ObjectParams,
    locate_objects,
)
from panoptic_ros.results import FrameResult
from panoptic_ros.ros_messages import stamp_ns
from panoptic_ros.transforms import TransformTree

__all__ = ["CAMERA_INFO_MSGTYPE", "TF_MSGTYPE", "ReplayGround"]

logger = logging.getLogger(__name__)

CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
TF_MSGTYPE = "tf2_msgs/msg/TFMessage"
_LATE = "transform not known at the image stamp (TF late or too old)"


@dataclass
class ReplayGround:
    """What replay needs to place objects: ground frame, settings, TF, CameraInfo history.

    Attributes:
        frame_id: The ground frame (``grid.frame_id``).
        params: Geometry settings (``objects.*``, ``grid.image_is_rectified``).
        tree: The bag's ``/tf_static`` and ``/tf``.
        camera_infos: (log time ns, CameraInfo) of the camera, in log-time order.
        frames: Frames with objects written.
        skipped: Reason -> frames without objects (missing or late TF, bad CameraInfo).
        left_out: Reason (``LEFT_OUT_REASONS``) -> instances left out over the replay.
    """

    frame_id: str
    params: ObjectParams
    tree: TransformTree
    camera_infos: list[tuple[int, Any]]
    frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LEFT_OUT_REASONS, 0))

    @classmethod
    def from_bag(
        cls, reader: Any, image_topic: str, grid: GridConfig, objects: ObjectsConfig
    ) -> ReplayGround | None:
        """Read CameraInfo and TF from an open bag; None (said in one line) when it lacks them.

        Args:
            reader: An open reader (:func:`panoptic_ros.bags.open_reader`).
            image_topic: The replayed image topic (its ``camera_info`` sibling is read).
            grid: Ground frame and rectification.
            objects: Geometry settings.

        Raises:
            BagError: A CameraInfo or TF message cannot be read.
        """
        topics = reader.topics
        info_topic = camera_info_topic(image_topic)
        info = topics.get(info_topic)
        if info is None or info.msgtype != CAMERA_INFO_MSGTYPE or not info.msgcount:
            logger.info("no %s in the bag: objects are not written", info_topic)
            return None
        static = topics.get("/tf_static")
        if static is None or static.msgtype != TF_MSGTYPE:
            logger.info("no /tf_static in the bag: objects are not written")
            return None
        tree = TransformTree()
        try:
            for _, message in iter_messages(reader, "/tf_static"):
                for transform in message.transforms:
                    tree.add(transform, static=True)
            dynamic = topics.get("/tf")
            if dynamic is not None and dynamic.msgtype == TF_MSGTYPE:
                for _, message in iter_messages(reader, "/tf"):
                    for transform in message.transforms:
                        tree.add(transform, static=False)
        except TransformError as err:
            logger.warning("the bag's TF is unusable (%s): objects are not written", err)
            return None
        camera_infos = list(iter_messages(reader, info_topic))
        return cls(
            frame_id=grid.frame_id,
            params=ObjectParams.from_config(objects, grid),
            tree=tree,
            camera_infos=camera_infos,
        )

    def _camera_info(self, log_time_ns: int) -> Any:
        """The newest CameraInfo logged up to ``log_time_ns`` (else the first one)."""
        times = [t for t, _ in self.camera_infos]
        index = max(bisect.bisect_right(times, log_time_ns) - 1, 0)
        return self.camera_infos[index][1]

    def locate(self, log_time_ns: int, header: Any, result: FrameResult) -> GroundObjects | None:
        """Place one frame's instances; None (counted by reason) when that is not possible.

        Args:
            log_time_ns: The image message's log time (picks the CameraInfo).
            header: The image's header (optical frame and stamp for the TF lookup).
            result: The frame's tracked result.
        """
        try:
            model = CameraModel.from_camera_info(self._camera_info(log_time_ns))
            camera_from_ground = self.tree.lookup(header.frame_id, self.frame_id, stamp_ns(header))
            located = locate_objects(result, model, camera_from_ground, self.params)
        except (TransformError, ConfigError) as err:
            text = first_line(err)
            # One key per kind of problem, not per stamp: the stamps are in the log line.
            reason = _LATE if "extrapolation" in text else text
            if reason not in self.skipped:
                logger.warning("frames without objects: %s", text)
            self.skipped[reason] = self.skipped.get(reason, 0) + 1
            return None
        self.frames += 1
        for reason, count in located.left_out.items():
            self.left_out[reason] += count
        return located

    def summary(self) -> Mapping[str, Any]:
        """Frames with objects, frames without (by reason), instances left out (by reason)."""
        return {
            "frames": self.frames,
            "frames_without": dict(self.skipped),
            "left_out": dict(self.left_out),
        }
