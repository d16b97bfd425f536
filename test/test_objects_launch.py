"""``objects`` end to end through the launch file with real rclpy, tf2 and launch_testing.

Run on a ROS 2 Jazzy (or Humble) machine after ``colcon build``:
``launch_test test/test_objects_launch.py``. Here, without ROS 2, the module is skipped
with the reason (see test_node_launch.py for why the skip is a stand-in test).

What it checks against the real middleware and tf2: the node started by the launch file
with ``node.publish_objects`` (and markers) from a params file, a real
``static_transform_publisher`` for the camera mount and a CameraInfo published by the
probe; ``objects`` arrive in ``base_footprint`` with the image's stamp, their ids are
those of ``instances`` of the same frame, and the markers start with DELETEALL.
"""

from __future__ import annotations

import math
import tempfile
import time
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import launch_ros.actions  # the launch file needs launch_ros
    import launch_testing
    import launch_testing.actions
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import MarkerArray

    import launch

    ROS_ERROR = ""
except ImportError as err:  # pragma: no cover - depends on the machine
    ROS_ERROR = f"ROS 2 is not installed here ({err}); run on a ROS 2 Jazzy machine"

if ROS_ERROR:

    @pytest.mark.skip(reason=ROS_ERROR)
    def test_objects_launch_on_ros_2() -> None:
        """Stands for the launch test below where ROS 2 is absent, to show the skip's reason."""


IMAGE_TOPIC = "/objects_launch/image_raw"
INFO_TOPIC = "/objects_launch/camera_info"
OPTICAL_FRAME = "objects_launch_optical_frame"
HEIGHT, WIDTH = 256, 512
PITCH_DEG = 8.0
PARAMS = """\
/**:
  ros__parameters:
    node:
      publish_objects: true
      publish_objects_markers: true
    grid:
      frame_id: base_footprint
      tf_timeout_s: 0.2
"""

if not ROS_ERROR:

    def _mount_quaternion() -> tuple[float, float, float, float]:
        """base_footprint -> optical frame rotation: REP 103 axes, pitched down PITCH_DEG."""
        pitch = math.radians(PITCH_DEG)
        z_axis = np.array([math.cos(pitch), 0.0, -math.sin(pitch)])
        x_axis = np.array([0.0, -1.0, 0.0])
        m = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis], axis=1)
        w = math.sqrt(1.0 + np.trace(m)) / 2.0
        return (
            (m[2, 1] - m[1, 2]) / (4 * w),
            (m[0, 2] - m[2, 0]) / (4 * w),
            (m[1, 0] - m[0, 1]) / (4 * w),
            w,
        )

    @pytest.mark.launch_test
    def generate_test_description() -> Any:
        """The real launch file with objects on, and a static transform publisher."""
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch_ros.substitutions import FindPackageShare

        params = Path(tempfile.mkdtemp(prefix="objects_launch_")) / "params.yaml"
        params.write_text(PARAMS, encoding="utf-8")
        include = launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                [FindPackageShare("panoptic_ros"), "/launch/panoptic.launch.py"]
            ),
            launch_arguments={"image_topic": IMAGE_TOPIC, "params_file": str(params)}.items(),
        )
        x, y, z, w = _mount_quaternion()
        mount = launch_ros.actions.Node(
            package="tf2_ros",
            executable="static_transform_publisher",
            arguments=[
                "--x", "0", "--y", "0", "--z", "1.5",
                "--qx", str(x), "--qy", str(y), "--qz", str(z), "--qw", str(w),
                "--frame-id", "base_footprint", "--child-frame-id", OPTICAL_FRAME,
            ],
        )  # fmt: skip
        return launch.LaunchDescription([include, mount, launch_testing.actions.ReadyToTest()])

    class TestObjects(unittest.TestCase):
        """Publishes CameraInfo and street scenes; checks objects, ids and markers."""

        node: Any

        @classmethod
        def setUpClass(cls) -> None:
            rclpy.init()
            cls.node = rclpy.create_node("objects_launch_probe")

        @classmethod
        def tearDownClass(cls) -> None:
            cls.node.destroy_node()
            rclpy.shutdown()

        def _collect(self, topic: str, msg_type: Any) -> list[Any]:
            box: list[Any] = []
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.node.create_subscription(msg_type, topic, box.append, qos)
            return box

        def _spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not condition():
                rclpy.spin_once(self.node, timeout_sec=0.1)
            return condition()

        def test_objects_in_the_ground_frame_with_the_instances_ids(self) -> None:
            from panoptic_ros.data.synthetic import generate_scene

            objects = self._collect("/panoptic/front/objects", Detection3DArray)
            markers = self._collect("/panoptic/front/objects_markers", MarkerArray)
            instances = self._collect("/panoptic/front/instances", Detection2DArray)
            sensor = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            images = self.node.create_publisher(Image, IMAGE_TOPIC, sensor)
            info_qos = QoSProfile(
                depth=1,
                reliability=ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.VOLATILE,
            )
            infos = self.node.create_publisher(CameraInfo, INFO_TOPIC, info_qos)
            info = CameraInfo()
            info.width, info.height = WIDTH, HEIGHT
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            f, cx, cy = 400.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2
            info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
            info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
            sent: dict[tuple[int, int], Any] = {}
            deadline = time.monotonic() + 180.0
            index = 0
            while time.monotonic() < deadline and len(objects) < 3:
                scene = generate_scene(index, HEIGHT, WIDTH)
                message = Image()
                message.header.stamp = self.node.get_clock().now().to_msg()
                message.header.frame_id = OPTICAL_FRAME
                message.height, message.width, message.encoding = HEIGHT, WIDTH, "rgb8"
                message.step = WIDTH * 3
                message.data = scene.image.tobytes()
                info.header = message.header
                infos.publish(info)
                images.publish(message)
                sent[(message.header.stamp.sec, message.header.stamp.nanosec)] = message
                index += 1
                self._spin_until(lambda: False, 0.5)
            self._spin_until(lambda: False, 1.0)
            assert objects, "nothing on objects (CameraInfo, static TF and the node all up?)"
            by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in instances}
            for message in objects:
                key = (message.header.stamp.sec, message.header.stamp.nanosec)
                assert key in sent, "objects carry the image's stamp"
                assert message.header.frame_id == "base_footprint"
                if key in by_stamp:
                    ids_2d = {d.id for d in by_stamp[key].detections}
                    assert {d.id for d in message.detections} <= ids_2d
                for detection in message.detections:
                    centre = detection.bbox.center.position
                    assert centre.x > 0.0, "objects lie ahead of the camera"
                    assert 0.0 < math.hypot(centre.x, centre.y) <= 61.0 + detection.bbox.size.x
            assert markers, "nothing on objects_markers"
            assert markers[-1].markers[0].action == 3  # DELETEALL first
