"""The managed node (PanopticLifecycleNode) through every lifecycle transition (issue #13).

Driven through the rclpy stand-in (test/ros_standin), whose ``rclpy.lifecycle`` emulates
rcl_lifecycle's default state machine and rclpy's LifecycleNode / LifecyclePublisher;
test_ros_standin.py checks that emulation against rclpy's own sources and rcl's
transitions. The same bring-up runs under real ROS 2 in test_lifecycle_launch.py.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_node import (
    FakePipeline,
    Probe,
    image_message,
    ros,  # noqa: F401 (the fixture, shared: every test runs on the stand-in)
    wait_for,
)

pytestmark = pytest.mark.usefixtures("ros")

REPO = Path(__file__).resolve().parent.parent
OUR_TOPICS = ("/panoptic/front/", "/diagnostics")


# ---------------------------------------------------------------------------- helpers


def state(node: Any) -> str:
    """The label of the node's current lifecycle state (what ``ros2 lifecycle get`` says)."""
    return str(node._state_machine.current_state[1])


def make_managed(pipeline: Any = None, factory: Any = None, **parameters: Any) -> Any:
    from rclpy.parameter import Parameter

    from panoptic_ros.ros.node import PanopticLifecycleNode

    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    kwargs: dict[str, Any] = {"namespace": "/panoptic", "parameter_overrides": overrides}
    if factory is None and pipeline is not None:
        factory = lambda config: pipeline  # noqa: E731
    if factory is not None:
        kwargs["pipeline_factory"] = factory
    return PanopticLifecycleNode(**kwargs)


class CountingFactory:
    """A pipeline factory that counts its calls and hands out fresh FakePipelines."""

    def __init__(self, fail_first: BaseException | None = None) -> None:
        self.built: list[FakePipeline] = []
        self.fail_first = fail_first

    def __call__(self, config: Any) -> FakePipeline:
        if self.fail_first is not None:
            error, self.fail_first = self.fail_first, None
            raise error
        self.built.append(FakePipeline())
        return self.built[-1]


def our_endpoints(node: Any) -> tuple[list[str], list[str]]:
    """Topics of the node's own publishers and subscriptions (not rclpy's or TF's)."""
    publishers = sorted(
        p.topic_name for p in node.publishers if p.topic_name.startswith(OUR_TOPICS)
    )
    subscriptions = sorted(s.topic_name for s in node.subscriptions)
    return publishers, subscriptions


def frame(index: int = 0) -> Any:
    return image_message(
        np.zeros((20, 30, 3), np.uint8),
        stamp_ns=1_700_000_000_000_000_000 + index,
        frame_id=f"f{index}",
    )


def log_lines(level: str) -> list[str]:
    from rclpy.logging import LOG

    return [m for _, lv, m in LOG if lv == level]


# ---------------------------------------------------------------------------- the managed node


def test_a_new_managed_node_is_unconfigured_and_holds_nothing() -> None:
    factory = CountingFactory()
    node = make_managed(factory=factory)
    try:
        assert state(node) == "unconfigured"
        assert factory.built == []
        assert our_endpoints(node) == ([], [])
        assert node.timers == []
        # Parameters are declared (so a manager or params file can set them before configure).
        assert node.get_parameter("fusion.center_threshold").value == 0.1
    finally:
        node.destroy_node()


def test_configure_loads_and_creates_publishers_that_stay_silent() -> None:
    from rclpy.lifecycle import LifecyclePublisher, TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(factory=factory)
    try:
        probe = Probe(None)
        outputs = probe.listen_outputs()
        diagnostics = probe.listen(
            "/diagnostics", __import__("diagnostic_msgs.msg").msg.DiagnosticArray
        )
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert state(node) == "inactive"
        assert len(factory.built) == 1
        publishers, subscriptions = our_endpoints(node)
        assert "/panoptic/front/semantic" in publishers and "/diagnostics" in publishers
        assert subscriptions == []  # no input before activate
        ours = [p for p in node.publishers if p.topic_name.startswith(OUR_TOPICS)]
        assert all(isinstance(p, LifecyclePublisher) and not p.is_activated for p in ours)
        probe.image_pub.publish(frame())
        (timer,) = node.timers
        timer.callback()  # the 1 Hz diagnostics: computed, not published while inactive
        assert factory.built[0].processed == []
        assert diagnostics == [] and all(not box for box in outputs.values())
        assert any(line.startswith("configure done in") for line in log_lines("INFO"))
    finally:
        node.destroy_node()
    assert factory.built[0].closed


def test_activate_serves_and_deactivate_stops_without_unloading() -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(factory=factory)
    try:
        probe = Probe(None)
        outputs = probe.listen_outputs()
        diagnostics = probe.listen(
            "/diagnostics", __import__("diagnostic_msgs.msg").msg.DiagnosticArray
        )
        node.trigger_configure()
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert state(node) == "active"
        assert our_endpoints(node)[1] == ["/camera/image_raw"]
        sent = frame(0)
        probe.image_pub.publish(sent)
        wait_for(lambda: len(outputs["overlay"]) == 1)
        assert outputs["semantic"][0].header == sent.header
        node.timers[0].callback()
        assert len(diagnostics) == 1

        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert state(node) == "inactive"
        assert node._worker is None and our_endpoints(node)[1] == []
        pipeline = factory.built[0]
        assert not pipeline.closed and len(factory.built) == 1  # the model stays loaded
        probe.image_pub.publish(frame(1))
        node.timers[0].callback()
        assert pipeline.processed == ["f0"]
        assert len(outputs["semantic"]) == 1 and len(diagnostics) == 1

        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        probe.image_pub.publish(frame(2))
        wait_for(lambda: len(outputs["overlay"]) == 2)
        assert pipeline.processed == ["f0", "f2"] and len(factory.built) == 1
        assert outputs["overlay"][1].header.frame_id == "f2"
    finally:
        node.destroy_node()


def test_cleanup_unloads_and_configure_loads_again() -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(factory=factory)
    try:
        node.trigger_configure()
        node.trigger_activate()
        node.trigger_deactivate()
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert state(node) == "unconfigured"
        assert factory.built[0].closed
        assert our_endpoints(node) == ([], [])
        assert node.timers == [] and node._managed_entities == set()
        with pytest.raises(RuntimeError, match="not configured"):
            _ = node.pipeline
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert len(factory.built) == 2 and node.pipeline is factory.built[1]
    finally:
        node.destroy_node()


def test_configure_with_a_missing_model_fails_and_says_why(tiny_onnx_model: Path) -> None:
    """The real pipeline factory: FAILURE, one line naming the file, nothing held; fixed
    while unconfigured, configure succeeds."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.logging import LOG
    from rclpy.parameter import Parameter

    LOG.clear()
    missing = "/nonexistent/models/city.onnx"
    node = make_managed(**{"model.model_file_path": missing, "backend.name": "onnxruntime"})
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert state(node) == "unconfigured"
        (line,) = log_lines("ERROR")
        assert line.startswith("configure failed: model file ")
        assert repr(missing) in line and "\n" not in line
        assert our_endpoints(node) == ([], []) and node.timers == []
        assert node._pipeline is None
        # Read at configure: settable now, without a restart.
        (done,) = node.set_parameters(
            [Parameter("model.model_file_path", value=str(tiny_onnx_model))]
        )
        assert done.successful, done.reason
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.pipeline.backend.name == "onnxruntime"
        # ... but not while configured: the reason says what to do.
        (refused,) = node.set_parameters([Parameter("model.model_file_path", value=missing)])
        assert not refused.successful
        assert "clean up the node" in refused.reason
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("fusion.nms_kernel", 4, "must be odd"),
        ("node.image_topics", ["/a", "/b"], "give one topic per camera"),
    ],
)
def test_configure_with_an_invalid_parameter_fails_before_loading(
    name: str, value: Any, match: str
) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(factory=factory, **{name: value})
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert state(node) == "unconfigured" and factory.built == []
        (line,) = [m for m in log_lines("ERROR") if m.startswith("configure failed")]
        assert match in line
    finally:
        node.destroy_node()


def test_a_failing_activate_leaves_the_node_inactive() -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(
        factory=factory,
        **{"qos_overrides./camera/image_raw.subscription.reliability": "sometimes"},
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert state(node) == "inactive"
        assert our_endpoints(node)[1] == [] and node._worker is None
        ours = [p for p in node.publishers if p.topic_name.startswith(OUR_TOPICS)]
        assert ours and not any(p.is_activated for p in ours)
        (line,) = [m for m in log_lines("ERROR") if m.startswith("activate failed")]
        assert "Unexpected QoS override for policy `reliability`" in line
        assert not factory.built[0].closed  # still configured: cleanup or shutdown next
    finally:
        node.destroy_node()


def test_an_unexpected_error_goes_through_error_processing() -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory(fail_first=ValueError("driver crashed\nsecond line"))
    node = make_managed(factory=factory)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.ERROR
        assert state(node) == "unconfigured"  # on_error released everything: SUCCESS
        errors = log_lines("ERROR")
        assert "configure failed: unexpected ValueError: driver crashed" in errors
        assert any(m.startswith("error processing after a failed transition") for m in errors)
        assert our_endpoints(node) == ([], [])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    finally:
        node.destroy_node()


@pytest.mark.parametrize("start", ["unconfigured", "inactive", "active"])
def test_shutdown_from_any_state_releases_everything(start: str) -> None:
    from rclpy.impl.implementation_singleton import rclpy_implementation
    from rclpy.lifecycle import TransitionCallbackReturn

    factory = CountingFactory()
    node = make_managed(factory=factory)
    try:
        if start != "unconfigured":
            node.trigger_configure()
        if start == "active":
            node.trigger_activate()
        assert state(node) == start
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert state(node) == "finalized"
        assert all(p.closed for p in factory.built)
        assert our_endpoints(node) == ([], []) and node.timers == []
        assert node._worker is None and node._pipeline is None
        with pytest.raises(rclpy_implementation.RCLError):
            node.trigger_configure()
    finally:
        node.destroy_node()


def test_outputs_switched_on_while_active_publish_at_once() -> None:
    from rclpy.parameter import Parameter

    node = make_managed(FakePipeline(), **{"node.publish_overlay": False})
    try:
        probe = Probe(None)
        outputs = probe.listen_outputs()
        node.trigger_configure()
        (inactive_on,) = node.set_parameters([Parameter("node.publish_overlay", value=True)])
        assert inactive_on.successful
        assert not node._cameras["front"].publishers["overlay"].is_activated
        node.set_parameters([Parameter("node.publish_overlay", value=False)])
        node.trigger_activate()
        (active_on,) = node.set_parameters([Parameter("node.publish_overlay", value=True)])
        assert active_on.successful
        probe.image_pub.publish(frame())
        wait_for(lambda: len(outputs["overlay"]) == 1)
        node.trigger_deactivate()
        assert not node._cameras["front"].publishers["overlay"].is_activated
    finally:
        node.destroy_node()


def test_destroying_an_active_managed_node_releases_everything() -> None:
    factory = CountingFactory()
    node = make_managed(factory=factory)
    node.trigger_configure()
    node.trigger_activate()
    worker = node._worker
    node.destroy_node()
    assert not worker.is_alive()
    assert factory.built[0].closed and node.destroyed


def test_the_plain_node_is_not_managed() -> None:
    """The default node configures and activates itself and publishes plain publishers."""
    from rclpy.lifecycle import LifecyclePublisher

    from panoptic_ros.ros.node import PanopticNode

    pipeline = FakePipeline()
    node = PanopticNode(namespace="/panoptic", pipeline_factory=lambda config: pipeline)
    try:
        assert not hasattr(node, "_state_machine")
        assert node._worker is not None and node._worker.is_alive()
        assert not any(isinstance(p, LifecyclePublisher) for p in node.publishers)
        assert node._descriptors["model.model_file_path"].read_only
    finally:
        node.destroy_node()
    assert pipeline.closed


def test_managed_entry_point_is_installed() -> None:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    scripts = [
        ast.literal_eval(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.List) and "panoptic_node = " in ast.unparse(n)
    ]
    (entries,) = scripts
    assert "panoptic_node = panoptic_ros.ros.node:main" in entries
    assert "panoptic_lifecycle_node = panoptic_ros.ros.node:lifecycle_main" in entries
