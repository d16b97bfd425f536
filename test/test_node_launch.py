"""End to end through the launch file with real rclpy and launch_testing (ROS 2 machines).

Run on a ROS 2 Jazzy machine after ``colcon build``: ``launch_test test/test_node_launch.py``
or plain pytest (launch_testing's pytest plugin picks up ``@pytest.mark.launch_test``).
Here, without ROS 2, the module is skipped with the reason. Whether ROS is present is
decided by importing rclpy (rclpy-intellisense installs sources that cannot be imported).

What it checks against the real middleware, beyond the stand-in of test_node.py: the QoS
the graph reports for the node's endpoints, the parameter services, the launch file's
defaults, the /diagnostics period, and a clean exit on the SIGINT launch sends at the end.
"""

from __future__ import annotations

import time
import unittest
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

try:
    import launch_ros  # noqa: F401  (presence check: the launch file needs it)
    import launch_testing
    import launch_testing.actions
    import launch_testing.asserts
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import DescribeParameters, SetParameters
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    import launch

    ROS_ERROR = ""
except ImportError as err:  # pragma: no cover - depends on the machine
    ROS_ERROR = f"ROS 2 is not installed here ({err}); run on a ROS 2 Jazzy machine"

if ROS_ERROR:
    # Not a module-level skip: launch_testing's plugin imports this module while collecting,
    # and a Skipped raised there would skip the whole folder.

    @pytest.mark.skip(reason=ROS_ERROR)
    def test_launch_file_on_ros_2() -> None:
        """Stands for the launch tests below where ROS 2 is absent, to show the skip's reason."""


IMAGE_TOPIC = "/launch_test/image_raw"
NODE = "/panoptic/panoptic_node"
OUTPUTS = ("drivable_mask", "semantic", "instance_ids", "overlay")
HEIGHT, WIDTH = 270, 480

if not ROS_ERROR:

    @pytest.mark.launch_test
    def generate_test_description() -> Any:
        """The real launch file with its defaults, only the input topic changed."""
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch_ros.substitutions import FindPackageShare

        include = launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                [FindPackageShare("panoptic_ros"), "/launch/panoptic.launch.py"]
            ),
            launch_arguments={"image_topic": IMAGE_TOPIC}.items(),
        )
        return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])

    def header_key(message: Any) -> tuple[int, int, str]:
        stamp = message.header.stamp
        return (stamp.sec, stamp.nanosec, message.header.frame_id)

    class TestPanopticNode(unittest.TestCase):
        """Publishes frames and checks what the planner and RViz see."""

        node: Any
        publisher: Any
        sent: list[Any]

        @classmethod
        def setUpClass(cls) -> None:
            rclpy.init()
            cls.node = rclpy.create_node("panoptic_launch_probe")
            cls.publisher = cls.node.create_publisher(
                Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            )
            cls.sent = []

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

        def _publish(self, encoding: str = "rgb8") -> Any:
            index = len(self.sent)
            rgb = np.random.default_rng(index).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
            message = Image()
            # A nanosecond part and a frame id the node must pass through untouched.
            message.header.stamp.sec = 1_700_000_000 + index
            message.header.stamp.nanosec = 123_456_789
            message.header.frame_id = "camera_front_optical_frame"
            message.height, message.width, message.encoding = HEIGHT, WIDTH, encoding
            message.step = WIDTH * 3
            message.data = rgb.tobytes()
            self.sent.append(message)
            self.publisher.publish(message)
            return message

        def _serve_until(self, condition: Callable[[], bool], timeout_s: float) -> None:
            """Publish a frame every 0.3 s until ``condition`` (model loading can be slow)."""
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not condition():
                self._publish()
                self._spin_until(condition, 0.3)
            self._spin_until(lambda: False, 1.0)  # the frames still in flight

        def _call(self, service_type: Any, name: str, request: Any) -> Any:
            client = self.node.create_client(service_type, f"{NODE}/{name}")
            assert client.wait_for_service(timeout_sec=30.0), f"no {name} service"
            future = client.call_async(request)
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=10.0)
            assert future.result() is not None, f"{name} did not answer"
            return future.result()

        def _set(self, name: str, value: Any) -> Any:
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()]
            )
            (result,) = self._call(SetParameters, "set_parameters", request).results
            return result

        def test_outputs_carry_the_input_header(self) -> None:
            outputs = {n: self._collect(f"/panoptic/front/{n}", Image) for n in OUTPUTS}
            instances = self._collect("/panoptic/front/instances", Detection2DArray)
            self._serve_until(lambda: all(outputs.values()) and bool(instances), 120.0)
            sent = {header_key(m) for m in self.sent}
            for name, received in outputs.items():
                assert received, f"nothing on {name}"
                for message in received:
                    assert header_key(message) in sent, name
                    assert (message.height, message.width) == (HEIGHT, WIDTH), name
            assert instances, "nothing on instances"
            for message in instances:
                assert header_key(message) in sent, "instances"

        def test_qos_of_inputs_and_outputs(self) -> None:
            def endpoints() -> tuple[list[Any], list[Any]]:
                inputs = self.node.get_subscriptions_info_by_topic(IMAGE_TOPIC)
                outputs = self.node.get_publishers_info_by_topic("/panoptic/front/semantic")
                return (
                    [e for e in inputs if e.node_name == "panoptic_node"],
                    [e for e in outputs if e.node_name == "panoptic_node"],
                )

            assert self._spin_until(lambda: all(endpoints()), 60.0), "node not found"
            (subscription,), (publisher,) = endpoints()
            assert subscription.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            assert publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            assert publisher.qos_profile.durability == DurabilityPolicy.VOLATILE
            for endpoint in (subscription, publisher):
                # DDS discovery carries the depth only with some middlewares (Cyclone does).
                if endpoint.qos_profile.history == HistoryPolicy.KEEP_LAST:
                    assert endpoint.qos_profile.depth == 1

        def test_diagnostics_once_a_second_with_the_counters(self) -> None:
            diagnostics = self._collect("/diagnostics", DiagnosticArray)
            arrivals: list[float] = []
            self.node.create_subscription(
                DiagnosticArray, "/diagnostics", lambda _: arrivals.append(time.monotonic()), 10
            )
            self._spin_until(lambda: len(arrivals) >= 4, 30.0)
            assert len(diagnostics) >= 4
            period_s = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
            assert 0.75 < period_s < 1.25, period_s
            (status,) = [s for s in diagnostics[-1].status if s.name == "panoptic_node: front"]
            values = {kv.key: kv.value for kv in status.values}
            for key in ("frames_received", "frames_dropped", "latency_p50_ms", "backend"):
                assert key in values
            assert values["input_topic"] == IMAGE_TOPIC
            assert "onnxruntime" in values["backend"]  # CPU machine, bundled model

        def test_parameters_are_described_and_validated(self) -> None:
            described = self._call(
                DescribeParameters,
                "describe_parameters",
                DescribeParameters.Request(names=["fusion.center_threshold", "node.image_topics"]),
            ).descriptors
            threshold, topics = described
            assert threshold.description
            assert threshold.type == ParameterType.PARAMETER_DOUBLE
            assert len(threshold.floating_point_range) == 1
            assert topics.read_only
            refused = self._set("fusion.nms_kernel", 4)
            assert not refused.successful
            assert "must be odd" in refused.reason
            assert not self._set("fusion.center_threshold", 1.5).successful
            assert not self._set("node.input_reliability", "reliable").successful
            assert self._set("fusion.center_threshold", 0.25).successful

        def test_bad_encoding_is_logged_and_the_node_keeps_serving(self, proc_output: Any) -> None:
            semantic = self._collect("/panoptic/front/semantic", Image)
            self._serve_until(lambda: bool(semantic), 120.0)
            self._publish(encoding="32FC1")
            proc_output.assertWaitFor("unsupported image encoding '32FC1'", timeout=15)
            semantic.clear()
            self._serve_until(lambda: bool(semantic), 30.0)
            assert semantic, "no output after a bad frame"

        def test_superseded_frames_are_counted_as_dropped(self) -> None:
            diagnostics = self._collect("/diagnostics", DiagnosticArray)
            semantic = self._collect("/panoptic/front/semantic", Image)
            self._serve_until(lambda: bool(semantic), 120.0)
            for _ in range(30):  # faster than any CPU segments 480x270 frames
                self._publish()
                time.sleep(0.005)

            def dropped() -> int:
                values = [
                    {kv.key: kv.value for kv in s.values}
                    for array in diagnostics
                    for s in array.status
                ]
                return max((int(v.get("frames_dropped", "0")) for v in values), default=0)

            assert self._spin_until(lambda: dropped() > 0, 5.0), "no drops counted"

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        """launch ends the node with SIGINT: exit code 0 and no traceback."""

        def test_clean_exit(self, proc_info: Any, proc_output: Any) -> None:
            launch_testing.asserts.assertExitCodes(proc_info)
            text = "".join(io.text.decode(errors="replace") for io in proc_output)
            assert "Traceback" not in text
