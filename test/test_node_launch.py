"""End to end through the launch file with real rclpy and launch_testing (ROS 2 machines).

Run on a ROS 2 Jazzy machine after ``colcon build``: ``launch_test test/test_node_launch.py``
or plain pytest (launch_testing's pytest plugin picks up ``@pytest.mark.launch_test``).
Here, without ROS 2, the module is skipped with the reason. Whether ROS is present is
decided by importing rclpy (rclpy-intellisense installs sources that cannot be imported).
"""

from __future__ import annotations

import time
import unittest
from typing import Any

import numpy as np
import pytest

try:
    import launch_ros  # noqa: F401  (presence check: the launch file needs it)
    import launch_testing
    import launch_testing.actions
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    import launch

    ROS_ERROR = ""
except ImportError as err:  # pragma: no cover - depends on the machine
    ROS_ERROR = f"ROS 2 is not installed here ({err}); run on a ROS 2 Jazzy machine"

pytestmark = pytest.mark.skipif(bool(ROS_ERROR), reason=ROS_ERROR or "ROS 2 present")

IMAGE_TOPIC = "/launch_test/image_raw"
OUTPUTS = ("drivable_mask", "semantic", "instance_ids", "overlay")

if not ROS_ERROR:

    @pytest.mark.launch_test
    def generate_test_description() -> Any:
        """The real launch file, with a test topic and a short diagnostics window."""
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch_ros.substitutions import FindPackageShare

        include = launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                [FindPackageShare("panoptic_ros"), "/launch/panoptic.launch.py"]
            ),
            launch_arguments={"image_topic": IMAGE_TOPIC, "namespace": "panoptic"}.items(),
        )
        return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])

    class TestPanopticNode(unittest.TestCase):
        """Publishes frames and checks the outputs the planner and RViz see."""

        @classmethod
        def setUpClass(cls) -> None:
            rclpy.init()
            cls.node = rclpy.create_node("panoptic_launch_probe")

        @classmethod
        def tearDownClass(cls) -> None:
            cls.node.destroy_node()
            rclpy.shutdown()

        def _collect(self, topic: str, msg_type: Any) -> list[Any]:
            box: list[Any] = []
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.node.create_subscription(msg_type, topic, box.append, qos)
            return box

        def _frame(self, index: int) -> Any:
            rgb = np.random.default_rng(index).integers(0, 255, (270, 480, 3), dtype=np.uint8)
            message = Image()
            message.header.stamp.sec = 1_700_000_000 + index
            message.header.frame_id = "camera_front_optical_frame"
            message.height, message.width, message.encoding = 270, 480, "rgb8"
            message.step = 480 * 3
            message.data = rgb.tobytes()
            return message

        def test_outputs_carry_the_input_header(self) -> None:
            outputs = {n: self._collect(f"/panoptic/front/{n}", Image) for n in OUTPUTS}
            instances = self._collect("/panoptic/front/instances", Detection2DArray)
            diagnostics = self._collect("/diagnostics", DiagnosticArray)
            publisher = self.node.create_publisher(
                Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            )
            sent = []
            deadline = time.monotonic() + 120  # model loading on a slow machine
            while time.monotonic() < deadline and not all(outputs.values()):
                frame = self._frame(len(sent))
                sent.append(frame)
                publisher.publish(frame)
                rclpy.spin_once(self.node, timeout_sec=0.5)
            for _ in range(20):
                rclpy.spin_once(self.node, timeout_sec=0.1)
            stamps = {(m.header.stamp.sec, m.header.frame_id) for m in sent}
            for name, received in outputs.items():
                assert received, f"nothing on {name}"
                for message in received:
                    assert (message.header.stamp.sec, message.header.frame_id) in stamps
                    assert (message.height, message.width) == (270, 480)
            assert instances
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not diagnostics:
                rclpy.spin_once(self.node, timeout_sec=0.2)
            names = {s.name for array in diagnostics for s in array.status}
            assert "panoptic_node: front" in names
