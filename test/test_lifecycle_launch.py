"""The managed node under real ROS 2: launch with managed:=true, drive it by its services.

Run on a ROS 2 Jazzy (or Humble) machine after ``colcon build``:
``launch_test test/test_lifecycle_launch.py`` or plain pytest (launch_testing's plugin picks
up ``@pytest.mark.launch_test``). Without ROS 2 the module is skipped with the reason;
test_lifecycle.py runs the same transitions on the rclpy stand-in.

What it checks against the real middleware and rcl_lifecycle: the node comes up
unconfigured with nothing on the graph but its services; a configure with a missing model
answers failure and leaves it unconfigured with the reason on the console, and succeeds
once the path is fixed (set while unconfigured); configured, its publishers exist but
nothing is published and no image is subscribed; activated, outputs carry the input
header; deactivated, output stops and the image subscription goes, then resumes on
activate; cleanup and shutdown take it to unconfigured and finalized; SIGINT ends it with
exit code 0.
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
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    import launch

    ROS_ERROR = ""
except ImportError as err:  # pragma: no cover - depends on the machine
    ROS_ERROR = f"ROS 2 is not installed here ({err}); run on a ROS 2 Jazzy machine"

if ROS_ERROR:
    # Not a module-level skip: launch_testing's plugin imports this module while collecting,
    # and a Skipped raised there would skip the whole folder.

    @pytest.mark.skip(reason=ROS_ERROR)
    def test_managed_node_on_ros_2() -> None:
        """Stands for the launch tests below where ROS 2 is absent, to show the skip's reason."""


IMAGE_TOPIC = "/lifecycle_test/image_raw"
NODE = "/panoptic/panoptic_node"
OUTPUT = "/panoptic/front/semantic"
MISSING_MODEL = "/nonexistent/models/city.onnx"
HEIGHT, WIDTH = 270, 480

if not ROS_ERROR:

    @pytest.mark.launch_test
    def generate_test_description() -> Any:
        """The real launch file with managed:=true; the tests drive the transitions."""
        from launch.launch_description_sources import PythonLaunchDescriptionSource
        from launch_ros.substitutions import FindPackageShare

        include = launch.actions.IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                [FindPackageShare("panoptic_ros"), "/launch/panoptic.launch.py"]
            ),
            launch_arguments={"image_topic": IMAGE_TOPIC, "managed": "true"}.items(),
        )
        return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])

    class TestManagedNode(unittest.TestCase):
        """One bring-up and tear-down, step by step (unittest runs the tests by name)."""

        node: Any
        publisher: Any
        received: list[Any]
        sent: list[Any]

        @classmethod
        def setUpClass(cls) -> None:
            rclpy.init()
            cls.node = rclpy.create_node("panoptic_lifecycle_probe")
            cls.publisher = cls.node.create_publisher(
                Image, IMAGE_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            )
            cls.received = []
            cls.node.create_subscription(
                Image,
                OUTPUT,
                cls.received.append,
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            )
            cls.sent = []

        @classmethod
        def tearDownClass(cls) -> None:
            cls.node.destroy_node()
            rclpy.shutdown()

        def _spin_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not condition():
                rclpy.spin_once(self.node, timeout_sec=0.1)
            return condition()

        def _publish(self) -> None:
            index = len(self.sent)
            message = Image()
            message.header.stamp.sec = 1_700_000_000 + index
            message.header.stamp.nanosec = 123_456_789
            message.header.frame_id = "camera_front_optical_frame"
            message.height, message.width, message.encoding = HEIGHT, WIDTH, "rgb8"
            message.step = WIDTH * 3
            rgb = np.random.default_rng(index).integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)
            message.data = rgb.tobytes()
            self.sent.append(message)
            self.publisher.publish(message)

        def _serve_for(self, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
            """Publish a frame every 0.3 s for ``seconds`` or until ``until``."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not until():
                self._publish()
                self._spin_until(until, 0.3)

        def _call(self, service_type: Any, name: str, request: Any) -> Any:
            client = self.node.create_client(service_type, f"{NODE}/{name}")
            assert client.wait_for_service(timeout_sec=30.0), f"no {name} service"
            future = client.call_async(request)
            # Configure loads the model: allow for an engine build on a slow machine.
            rclpy.spin_until_future_complete(self.node, future, timeout_sec=300.0)
            assert future.result() is not None, f"{name} did not answer"
            return future.result()

        def _state(self) -> int:
            return int(self._call(GetState, "get_state", GetState.Request()).current_state.id)

        def _change(self, transition_id: int) -> bool:
            request = ChangeState.Request()
            request.transition.id = transition_id
            return bool(self._call(ChangeState, "change_state", request).success)

        def _set(self, name: str, value: Any) -> Any:
            request = SetParameters.Request(
                parameters=[Parameter(name, value=value).to_parameter_msg()]
            )
            (result,) = self._call(SetParameters, "set_parameters", request).results
            return result

        def _ours(self, endpoints: list[Any]) -> list[Any]:
            return [e for e in endpoints if e.node_name == "panoptic_node"]

        def test_1_starts_unconfigured_and_a_missing_model_fails_configure(
            self, proc_output: Any
        ) -> None:
            assert self._state() == State.PRIMARY_STATE_UNCONFIGURED
            assert not self._ours(self.node.get_publishers_info_by_topic(OUTPUT))
            assert not self._ours(self.node.get_subscriptions_info_by_topic(IMAGE_TOPIC))
            assert self._set("model.model_file_path", MISSING_MODEL).successful
            assert not self._change(Transition.TRANSITION_CONFIGURE)
            proc_output.assertWaitFor(f"configure failed: model file {MISSING_MODEL!r}", timeout=15)
            assert self._state() == State.PRIMARY_STATE_UNCONFIGURED
            assert self._set("model.model_file_path", "").successful  # the bundled model

        def test_2_configured_publishes_nothing(self) -> None:
            assert self._change(Transition.TRANSITION_CONFIGURE)
            assert self._state() == State.PRIMARY_STATE_INACTIVE
            assert self._spin_until(
                lambda: bool(self._ours(self.node.get_publishers_info_by_topic(OUTPUT))), 10.0
            ), "no output publisher after configure"
            assert not self._ours(self.node.get_subscriptions_info_by_topic(IMAGE_TOPIC))
            refused = self._set("model.model_file_path", MISSING_MODEL)
            assert not refused.successful and "clean up the node" in refused.reason
            self._serve_for(3.0)
            assert self.received == [], "published while inactive"

        def test_3_active_serves_with_the_input_header(self) -> None:
            assert self._change(Transition.TRANSITION_ACTIVATE)
            assert self._state() == State.PRIMARY_STATE_ACTIVE
            self._serve_for(120.0, until=lambda: bool(self.received))
            assert self.received, "no output while active"
            sent = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in self.sent}
            for message in self.received:
                assert (message.header.stamp.sec, message.header.stamp.nanosec) in sent
                assert message.header.frame_id == "camera_front_optical_frame"

        def test_4_deactivated_stops_and_activates_again_without_reloading(self) -> None:
            assert self._change(Transition.TRANSITION_DEACTIVATE)
            assert self._state() == State.PRIMARY_STATE_INACTIVE
            assert self._spin_until(
                lambda: not self._ours(self.node.get_subscriptions_info_by_topic(IMAGE_TOPIC)),
                10.0,
            ), "still subscribed while inactive"
            self._spin_until(lambda: False, 1.0)  # outputs of frames already in flight
            self.received.clear()
            self._serve_for(3.0)
            assert self.received == [], "published while deactivated"
            started = time.monotonic()
            assert self._change(Transition.TRANSITION_ACTIVATE)
            assert time.monotonic() - started < 10.0, "activate reloaded the model?"
            self._serve_for(60.0, until=lambda: bool(self.received))
            assert self.received, "no output after reactivation"

        def test_5_cleanup_and_shutdown(self) -> None:
            assert self._change(Transition.TRANSITION_DEACTIVATE)
            assert self._change(Transition.TRANSITION_CLEANUP)
            assert self._state() == State.PRIMARY_STATE_UNCONFIGURED
            assert self._spin_until(
                lambda: not self._ours(self.node.get_publishers_info_by_topic(OUTPUT)), 10.0
            ), "publishers left after cleanup"
            assert self._change(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
            assert self._state() == State.PRIMARY_STATE_FINALIZED

    @launch_testing.post_shutdown_test()
    class TestShutdown(unittest.TestCase):
        """launch ends the finalized node with SIGINT: exit code 0 and no traceback."""

        def test_clean_exit(self, proc_info: Any, proc_output: Any) -> None:
            launch_testing.asserts.assertExitCodes(proc_info)
            text = "".join(io.text.decode(errors="replace") for io in proc_output)
            assert "Traceback" not in text
