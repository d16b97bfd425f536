"""panoptic_node: the ROS 2 face of the pipeline. The only module that imports rclpy.

Two nodes share one implementation of the lifecycle steps (``_configure``, ``_activate``,
``_deactivate``, ``_cleanup``):

* :class:`PanopticNode` (``panoptic_node``, the default) is a plain ``rclpy.node.Node`` that
  configures and activates itself in its constructor, and releases everything in
  ``destroy_node``;
* :class:`PanopticLifecycleNode` (``panoptic_lifecycle_node``) is an
  ``rclpy.lifecycle.LifecycleNode`` driven from outside (``ros2 lifecycle set``, a lifecycle
  manager, launch events): configure reads and validates the parameters, loads the model
  (or builds the engine) and creates the publishers, which are lifecycle publishers that
  publish only while active; activate subscribes and starts the worker; deactivate stops
  them again, model kept; cleanup unloads; shutdown and error processing release
  everything. A failing step is one logged line and FAILURE, leaving the state it started
  from.

Everything they do is delegated to ROS-free modules; this file only wires them to ROS:

* parameters: one declared parameter per leaf of the config sections the node reads
  (``config.RUNTIME_SECTIONS``), with the field's doc as description, ranges, choices and
  ``read_only`` for settings that need a restart; validated by the same
  :func:`~panoptic_ros.config.config_from_flat` as YAML files, at start-up (a bad value is
  one fatal line) and on every run-time change (refused with the reason);
* per camera: a subscription (sensor-data QoS by default) whose callback only drops the
  message into a :class:`~panoptic_ros.ros.latest_frame.LatestFrameMailbox`; one worker thread
  takes the newest frame of each camera in turn, so latency never grows and superseded
  frames are counted as dropped;
* each frame through the camera's :class:`~panoptic_ros.camera_pipeline.CameraPipeline`
  (the same tail as ``replay`` and ``bench``: tracking, overlay, messages built by
  :mod:`panoptic_ros.ros_messages` with the input header unchanged), outputs only for
  topics that have subscribers; the optional ground grid from
  :mod:`panoptic_ros.ros.ground_grid` and ground objects from
  :mod:`panoptic_ros.ground_objects`, with CameraInfo and TF at the image stamp;
* /diagnostics at 1 Hz on a steady clock from :mod:`panoptic_ros.ros.camera_stats`;
* Python logging of the core modules forwarded to the node's logger (so to /rosout).
"""

from __future__ import annotations

import array
import difflib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import rclpy
from builtin_interfaces import msg as builtin_interfaces_msg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs import msg as geometry_msgs_msg
from nav_msgs.msg import MapMetaData, OccupancyGrid
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs import msg as sensor_msgs_msg
from std_msgs import msg as std_msgs_msg
from vision_msgs import msg as vision_msgs_msg
from visualization_msgs import msg as visualization_msgs_msg

from panoptic_ros.camera_model import camera_info_topic
from panoptic_ros.camera_pipeline import CameraPipeline
from panoptic_ros.config import (
    RUNTIME_SECTIONS,
    Config,
    FieldSpec,
    config_fields,
    config_from_flat,
)
from panoptic_ros.errors import CodecError, ConfigError, PanopticError, first_line
from panoptic_ros.fusion import FusionParams
from panoptic_ros.ground_objects import LEFT_OUT_REASONS, ObjectParams, locate_objects
from panoptic_ros.pipeline import PanopticPipeline
from panoptic_ros.ros.camera_stats import CameraStats, HealthThresholds, LogThrottle
from panoptic_ros.ros.ground_grid import (
    CameraModel,
    GridSpec,
    project_drivable_grid,
    transform_matrix,
)
from panoptic_ros.ros.latest_frame import Delivery, LatestFrameMailbox
from panoptic_ros.ros_messages import (
    GROUND_TOPICS,
    MessageClasses,
    object_detection_array,
    object_markers,
)
from panoptic_ros.tracking import InstanceTracker

__all__ = ["PanopticLifecycleNode", "PanopticNode", "lifecycle_main", "main"]

NODE_NAME = "panoptic_node"
_ACTIVE = LifecycleState(label="active", state_id=3)  # lifecycle_msgs/State PRIMARY_STATE_ACTIVE
# Parameters rclpy itself or the middleware layer declares; never ours to warn about.
_FOREIGN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
_FOREIGN_PARAMETER_PREFIXES = ("qos_overrides.",)
_NS_PER_S = 1_000_000_000
_INT64_MAX = 2**63 - 1


def _parameter_value(spec: FieldSpec) -> Any:
    return list(spec.default) if isinstance(spec.default, tuple) else spec.default


def parameter_descriptor(spec: FieldSpec, *, read_only: bool = True) -> ParameterDescriptor:
    """The ROS parameter descriptor of a config field (description, range, read-only).

    Args:
        spec: The config field.
        read_only: Whether a restart-only field is ``read_only`` for rclpy (the managed node
            passes False: it accepts such changes while unconfigured, refuses them itself
            otherwise).
    """
    constraints = []
    if spec.choices:
        constraints.append("one of: " + ", ".join(spec.choices))
    descriptor = ParameterDescriptor(
        name=spec.name,
        description=spec.doc,
        read_only=spec.read_only and read_only,
        additional_constraints="; ".join(constraints),
    )
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type is int:
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        elif spec.type is float:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0
                )
            ]
    return descriptor


class _RosLogHandler(logging.Handler):
    """Forwards Python logging of the core modules to the node's rclpy logger."""

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(message)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(message)
        elif record.levelno >= logging.INFO:
            self._logger.info(message)
        else:
            self._logger.debug(message)


@dataclass
class _Camera:
    """Subscriptions, publishers and state of one camera."""

    name: str
    image_topic: str
    stats: CameraStats
    tracker: InstanceTracker
    tail: CameraPipeline
    publishers: dict[str, Any] = field(default_factory=dict)
    grid_publisher: Any = None
    ground_publishers: dict[str, Any] = field(default_factory=dict)
    objects_left_out: dict[str, int] = field(default_factory=dict)
    camera_info: Any = None
    subscriptions: list[Any] = field(default_factory=list)


# The standard per-topic QoS parameters (qos_overrides.<topic>.<entity>.<policy>), on top of
# the node.* defaults: what Nav2 and Isaac ROS nodes accept, settable in a params file.
_INPUT_OVERRIDES = QoSOverridingOptions.with_default_policies()
_OUTPUT_OVERRIDES = QoSOverridingOptions(
    [
        QoSPolicyKind.HISTORY,
        QoSPolicyKind.DEPTH,
        QoSPolicyKind.RELIABILITY,
        QoSPolicyKind.DURABILITY,
    ]
)


def _qos(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(
            ReliabilityPolicy.BEST_EFFORT
            if reliability == "best_effort"
            else ReliabilityPolicy.RELIABLE
        ),
        durability=DurabilityPolicy.VOLATILE,
    )


class _PanopticNodeCore(Node):
    """What the plain and the managed node share: parameters, lifecycle steps, frames.

    Not constructed itself: a subclass initialises its rclpy base class, then calls
    :meth:`_setup`, then drives :meth:`_configure`, :meth:`_activate`, :meth:`_deactivate`
    and :meth:`_cleanup` (each leaves the node as it found it when it raises).
    """

    # Restart-only fields are rclpy read-only (the plain node); the managed node clears this
    # and accepts changes to them while unconfigured instead.
    _READ_ONLY_DESCRIPTORS = True
    _RESTART_HINT = "restart the node"

    def _setup(self, pipeline_factory: Callable[[Config], PanopticPipeline]) -> None:
        """Declare the parameters; load nothing (that is configure's job).

        Raises:
            ConfigError: A given parameter value has the wrong type or range.
        """
        self._log_handler = _RosLogHandler(self.get_logger())
        logging.getLogger("panoptic_ros").addHandler(self._log_handler)
        logging.getLogger("panoptic_ros").setLevel(logging.INFO)
        self._pipeline_factory = pipeline_factory
        self._specs = {
            s.name: s for s in config_fields() if s.name.split(".")[0] in RUNTIME_SECTIONS
        }
        self._lock = threading.Lock()
        # Replaced by the parameters' values in configure; the defaults until then.
        self.config = Config()
        self._pipeline: PanopticPipeline | None = None
        self._classes = MessageClasses.from_modules(
            builtin_interfaces=builtin_interfaces_msg,
            std_msgs=std_msgs_msg,
            sensor_msgs=sensor_msgs_msg,
            geometry_msgs=geometry_msgs_msg,
            vision_msgs=vision_msgs_msg,
            visualization_msgs=visualization_msgs_msg,
        )
        self._cameras: dict[str, _Camera] = {}
        self._mailbox: LatestFrameMailbox[Any] = LatestFrameMailbox(())
        self._tf_buffer: Any = None
        self._tf_listener: Any = None
        self._diagnostics: Any = None
        self._diagnostics_timer: Any = None
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._running = False
        self._worker: threading.Thread | None = None
        self._declare_parameters()
        self._warn_about_unknown_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def pipeline(self) -> PanopticPipeline:
        """The loaded pipeline (between configure and cleanup)."""
        if self._pipeline is None:
            raise RuntimeError("the node is not configured: no pipeline")
        return self._pipeline

    # ---------------------------------------------------------------- lifecycle steps

    def _configure(self) -> None:
        """Read and validate the parameters, load the model, create the publishers.

        Raises:
            ConfigError: A parameter is invalid (one line naming it).
            PanopticError: The model or backend cannot start.
        """
        try:
            self.config = self._config_from_parameters()
            node = self.config.node
            self.get_logger().info(
                f"loading model ({self.config.backend.name} backend, "
                f"{self.config.model.model_file_path or 'bundled default model'}); a TensorRT "
                "engine may need building first, which takes minutes on a Jetson"
            )
            started = time.monotonic()
            self._pipeline = self._pipeline_factory(self.config)
            self.get_logger().info(
                f"model ready in {time.monotonic() - started:.1f} s: {self.pipeline.describe()}"
            )
            self._throttle = LogThrottle(node.log_throttle_s)
            self._thresholds = self._health_thresholds(self.config)
            self._mailbox = LatestFrameMailbox(node.camera_names)
            if node.publish_drivable_grid or node.publish_objects:
                self._start_tf()
            for name, topic in zip(node.camera_names, node.image_topics, strict=True):
                try:
                    self._cameras[name] = self._open_camera(name, topic)
                except RuntimeError as err:  # rclpy: a qos_overrides.* value it cannot apply
                    raise ConfigError(f"camera {name}: {first_line(err)}") from err
            self._diagnostics = self._create_output_publisher(DiagnosticArray, "/diagnostics", 10)
            self._diagnostics_timer = self.create_timer(
                1.0, self.publish_diagnostics, clock=self._steady_clock
            )
        except BaseException:
            self._cleanup()
            raise

    def _activate(self) -> None:
        """Subscribe to every camera and start the worker.

        Raises:
            ConfigError: A ``qos_overrides.*`` value of a subscription cannot be applied.
        """
        try:
            for camera in self._cameras.values():
                try:
                    self._subscribe(camera)
                except RuntimeError as err:  # rclpy: a qos_overrides.* value it cannot apply
                    raise ConfigError(f"camera {camera.name}: {first_line(err)}") from err
        except BaseException:
            self._deactivate()
            raise
        self._mailbox.reopen()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="panoptic_worker", daemon=True)
        self._worker.start()
        node = self.config.node
        self.get_logger().info(
            "serving "
            + ", ".join(
                f"{c.name}: {c.image_topic} ({node.input_transport}) -> {c.name}/*"
                for c in self._cameras.values()
            )
        )

    def _deactivate(self) -> None:
        """Stop the worker and unsubscribe; the model and publishers stay."""
        self._running = False
        self._mailbox.close()  # wakes the worker; a frame still pending is discarded
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            if self._worker.is_alive():
                self.get_logger().warning(
                    "the worker is still busy with a frame after 5 s; it stops after that frame"
                )
            self._worker = None
        for camera in self._cameras.values():
            while camera.subscriptions:
                self.destroy_subscription(camera.subscriptions.pop())

    def _cleanup(self) -> None:
        """Destroy the publishers and TF listener, close the backend (unload the model)."""
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._diagnostics is not None:
            self._destroy_output_publisher(self._diagnostics)
            self._diagnostics = None
        with self._lock:
            for camera in self._cameras.values():
                for publisher in camera.publishers.values():
                    self._destroy_output_publisher(publisher)
                camera.publishers.clear()
                if camera.grid_publisher is not None:
                    self._destroy_output_publisher(camera.grid_publisher)
                    camera.grid_publisher = None
                for publisher in camera.ground_publishers.values():
                    self._destroy_output_publisher(publisher)
                camera.ground_publishers.clear()
            self._cameras.clear()
        if self._tf_listener is not None:
            self._tf_listener.unregister()
        self._tf_listener = self._tf_buffer = None
        self._mailbox.close()
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    def _release(self) -> None:
        """Whatever state the node is in: stop, unsubscribe, unload (shutdown, errors)."""
        self._deactivate()
        self._cleanup()

    def _create_output_publisher(
        self, msg_type: Any, topic: str, qos: QoSProfile | int, **kwargs: Any
    ) -> Any:
        """A publisher of the node's outputs (the managed node makes it a lifecycle one)."""
        return self.create_publisher(msg_type, topic, qos, **kwargs)

    def _destroy_output_publisher(self, publisher: Any) -> None:
        self.destroy_publisher(publisher)

    # ---------------------------------------------------------------- parameters

    def _declare_parameters(self) -> None:
        for spec in self._specs.values():
            try:
                self.declare_parameter(
                    spec.name,
                    _parameter_value(spec),
                    parameter_descriptor(spec, read_only=self._READ_ONLY_DESCRIPTORS),
                )
            except Exception as err:  # rclpy raises several ParameterException kinds
                raise ConfigError(f"parameter {spec.name}: {err}") from err

    def _warn_about_unknown_parameters(self) -> None:
        """Name the given parameters this node does not have (a typo is ignored by rclpy)."""
        given = getattr(self, "_parameter_overrides", {})  # rclpy.node.Node keeps them here
        unknown = sorted(
            name
            for name in given
            if name not in self._specs
            and name not in _FOREIGN_PARAMETERS
            and not name.startswith(_FOREIGN_PARAMETER_PREFIXES)
        )
        for name in unknown:
            close = difflib.get_close_matches(name, self._specs, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see config/panoptic.yaml"
            self.get_logger().warning(f"parameter {name} is not a setting of this node{hint}")

    def _config_from_parameters(self) -> Config:
        values = {}
        for name, spec in self._specs.items():
            try:
                values[name] = self.get_parameter(name).value
            except ParameterUninitializedException as err:
                # `-p name:=[]` gives a parameter without a type (rcl cannot type an empty
                # list), and reading it raises: it means the empty list, which the config
                # validator accepts or refuses with its own one-line reason.
                if not isinstance(spec.default, tuple):
                    raise ConfigError(f"{name} has no value") from err
                values[name] = []
        return config_from_flat(values)

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        """Validate run-time changes with the config validator; apply them or refuse."""
        changes = {p.name: p.value for p in parameters if p.name in self._specs}
        if not changes:
            return SetParametersResult(successful=True)
        if self._pipeline is None:
            # Unconfigured (managed node): nothing to apply; configure validates them all.
            return SetParametersResult(successful=True)
        fixed = sorted(name for name in changes if self._specs[name].read_only)
        if fixed:
            return SetParametersResult(
                successful=False, reason=f"{fixed[0]} is read at start-up; {self._RESTART_HINT}"
            )
        try:
            config = config_from_flat(changes, base=self.config)
            labels = self.pipeline.backend.metadata.labels.with_drivable(
                config.labels.drivable_classes
            )
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        with self._lock:
            self.config = config
            self.pipeline.labels = labels
            self.pipeline.fusion = FusionParams.from_config(config.fusion)
            self._thresholds = self._health_thresholds(config)
            self._throttle.set_period(config.node.log_throttle_s)
            for camera in self._cameras.values():
                camera.tracker.min_iou = config.node.track_min_overlap
                self._sync_publishers(camera)
        return SetParametersResult(successful=True)

    @staticmethod
    def _health_thresholds(config: Config) -> HealthThresholds:
        node = config.node
        return HealthThresholds(
            latency_warn_ms=node.latency_warn_ms,
            latency_error_ms=node.latency_error_ms,
            input_timeout_s=node.input_timeout_s,
            drop_ratio_warn=node.drop_ratio_warn,
        )

    # ---------------------------------------------------------------- topics

    def _open_camera(self, name: str, image_topic: str) -> _Camera:
        """A camera's state and publishers (configure); :meth:`_subscribe` comes later."""
        node = self.config.node
        tracker = InstanceTracker(min_iou=node.track_min_overlap)
        camera = _Camera(
            name=name,
            image_topic=image_topic,
            stats=CameraStats(),
            tracker=tracker,
            tail=CameraPipeline(self.pipeline, self._classes, tracker=tracker),
        )
        if node.input_transport == "compressed":
            camera.image_topic = f"{image_topic}/compressed"
        self._sync_publishers(camera)
        return camera

    def _subscribe(self, camera: _Camera) -> None:
        """Subscribe to a camera's images (and CameraInfo for the grid) (activate)."""
        node = self.config.node
        # A profile per entity: rclpy applies qos_overrides to the profile object itself.
        input_qos = _qos(node.input_reliability, node.input_depth)
        if node.input_transport == "compressed":
            msg_type: Any = sensor_msgs_msg.CompressedImage
        else:
            msg_type = sensor_msgs_msg.Image
        camera.subscriptions.append(
            self.create_subscription(
                msg_type,
                camera.image_topic,
                functools.partial(self._on_image, camera.name),
                input_qos,
                qos_overriding_options=_INPUT_OVERRIDES,
            )
        )
        if node.publish_drivable_grid or node.publish_objects:
            image_topic = camera.image_topic
            if node.input_transport == "compressed":  # CameraInfo sits beside the raw topic
                image_topic = image_topic.removesuffix("/compressed")
            camera.subscriptions.append(
                self.create_subscription(
                    sensor_msgs_msg.CameraInfo,
                    camera_info_topic(image_topic),
                    functools.partial(self._on_camera_info, camera.name),
                    _qos(node.input_reliability, node.input_depth),
                )
            )

    def _sync_publishers(self, camera: _Camera) -> None:
        """Create publishers of enabled outputs, destroy those of disabled ones."""
        node = self.config.node
        wanted = {
            "drivable_mask": node.publish_drivable_mask,
            "semantic": node.publish_semantic,
            "instance_ids": node.publish_instance_ids,
            "instances": node.publish_instances,
            "overlay": node.publish_overlay,
        }
        types = {"instances": vision_msgs_msg.Detection2DArray}
        for output, enabled in wanted.items():
            present = output in camera.publishers
            if enabled and not present:
                msg_type = types.get(output, sensor_msgs_msg.Image)
                camera.publishers[output] = self._create_output_publisher(
                    msg_type,
                    f"{camera.name}/{output}",
                    _qos(node.output_reliability, node.output_depth),
                    qos_overriding_options=_OUTPUT_OVERRIDES,
                )
            elif not enabled and present:
                self._destroy_output_publisher(camera.publishers.pop(output))
        if node.publish_drivable_grid and camera.grid_publisher is None:
            camera.grid_publisher = self._create_output_publisher(
                OccupancyGrid,
                f"{camera.name}/drivable_grid",
                _qos(node.output_reliability, node.output_depth),
                qos_overriding_options=_OUTPUT_OVERRIDES,
            )
        ground = {
            "objects": node.publish_objects,
            "objects_markers": node.publish_objects and node.publish_objects_markers,
        }
        ground_types = {
            "objects": vision_msgs_msg.Detection3DArray,
            "objects_markers": visualization_msgs_msg.MarkerArray,
        }
        for output, enabled in ground.items():
            if enabled and output not in camera.ground_publishers:
                camera.ground_publishers[output] = self._create_output_publisher(
                    ground_types[output],
                    f"{camera.name}/{output}",
                    _qos(node.output_reliability, node.output_depth),
                    qos_overriding_options=_OUTPUT_OVERRIDES,
                )

    def _start_tf(self) -> None:
        from tf2_ros.buffer import Buffer
        from tf2_ros.transform_listener import TransformListener

        self._tf_buffer = Buffer()
        self._tf_listener = TransformListener(self._tf_buffer, self)

    def _on_image(self, camera: str, message: Any) -> None:
        received_ns = time.monotonic_ns()
        self._cameras[camera].stats.record_input(received_ns)
        self._mailbox.offer(camera, message, received_ns)

    def _on_camera_info(self, camera: str, message: Any) -> None:
        self._cameras[camera].camera_info = message

    # ---------------------------------------------------------------- worker

    def _work(self) -> None:
        while self._running:
            delivery = self._mailbox.take(timeout_s=0.5)
            if delivery is not None:
                self.process(delivery)

    def _warn(self, key: str, message: str, *, error: bool = False) -> None:
        if self._throttle.ready(key, time.monotonic_ns()):
            suppressed = self._throttle.suppressed.pop(key, 0)
            suffix = f" ({suppressed} more since the last report)" if suppressed else ""
            (self.get_logger().error if error else self.get_logger().warning)(message + suffix)

    def process(self, delivery: Delivery[Any]) -> None:
        """Segment one frame and publish its outputs; never raises (errors are counted).

        Any failure costs this frame only: it is counted in the camera's diagnostics and
        said in one throttled line, and the worker goes on with the next frame.
        """
        camera = self._cameras[delivery.camera]
        camera.stats.record_drops(self._mailbox.dropped(camera.name))
        try:
            self._process_frame(camera, delivery)
        except CodecError as err:
            self._problem(camera, "codec", f"frame skipped: {err}")
        except PanopticError as err:
            self._problem(camera, "backend", f"inference failed: {err}", error=True)
        except Exception as err:
            self._problem(
                camera,
                "internal",
                f"unexpected {type(err).__name__} while processing: {first_line(err)}",
                error=True,
            )

    def _problem(
        self, camera: _Camera, kind: str, text: str, *, error: bool = False, lost: bool = True
    ) -> None:
        """Count a problem of one camera's frame and say it in one throttled line."""
        text = first_line(text)
        camera.stats.record_error(kind, text, now_ns=time.monotonic_ns(), frame_lost=lost)
        self._warn(f"{camera.name}:{kind}", f"{camera.name}: {text}", error=error)

    def _process_frame(self, camera: _Camera, delivery: Delivery[Any]) -> None:
        message = delivery.message
        with self._lock:
            wanted = {
                name
                for name, publisher in camera.publishers.items()
                if publisher.get_subscription_count() > 0
            }
            grid_wanted = (
                camera.grid_publisher is not None
                and camera.grid_publisher.get_subscription_count() > 0
            )
            ground_wanted = {
                name
                for name, publisher in camera.ground_publishers.items()
                if publisher.get_subscription_count() > 0
            }
            config = self.config
        frame = camera.tail.process(message, render=config.render, outputs=wanted)
        result = frame.result
        if result.non_finite_outputs:
            self._problem(
                camera,
                "non_finite",
                f"{result.non_finite_outputs} network outputs are NaN or infinite (ignored; "
                "check the model, engine and input)",
                lost=False,
            )
        # Under the lock: a run-time parameter change may destroy a publisher meanwhile.
        with self._lock:
            for name, output in frame.messages.items():
                publisher = camera.publishers.get(name)
                if publisher is not None:
                    publisher.publish(output)
        if grid_wanted:
            self._publish_grid(camera, message.header, result.drivable_mask, config)
        if ground_wanted:
            self._publish_objects(camera, message.header, result, config, ground_wanted)
        now = self.get_clock().now().nanoseconds
        stamp = message.header.stamp.sec * _NS_PER_S + message.header.stamp.nanosec
        camera.stats.record_output(
            delivery.received_ns,
            time.monotonic_ns(),
            (now - stamp) / 1e6 if stamp else float("nan"),
            result.timings.as_dict(),
        )

    def _publish_grid(self, camera: _Camera, header: Any, mask: Any, config: Config) -> None:
        grid = config.grid
        if camera.camera_info is None:
            self._warn(f"{camera.name}:grid", f"{camera.name}: no CameraInfo yet; grid skipped")
            return
        try:
            from rclpy.duration import Duration
            from rclpy.time import Time

            transform = self._tf_buffer.lookup_transform(
                header.frame_id,
                grid.frame_id,
                Time.from_msg(header.stamp),
                timeout=Duration(seconds=grid.tf_timeout_s),
            ).transform
            camera_from_ground = transform_matrix(
                (transform.translation.x, transform.translation.y, transform.translation.z),
                (
                    transform.rotation.x,
                    transform.rotation.y,
                    transform.rotation.z,
                    transform.rotation.w,
                ),
            )
            model = CameraModel.from_camera_info(camera.camera_info)
        except Exception as err:  # TF raises several kinds; CameraInfo may be malformed
            self._problem(camera, "grid", f"no ground grid: {first_line(err)}", lost=False)
            return
        spec = GridSpec(grid.resolution_m, grid.length_m, grid.width_m, grid.origin_x_m)
        cells = project_drivable_grid(
            mask, model, camera_from_ground, spec, rectified=grid.image_is_rectified
        )
        rows, cols = cells.shape
        origin_x, origin_y = spec.origin_xy
        data = array.array("b")
        data.frombytes(cells.tobytes())
        occupancy = OccupancyGrid(
            header=std_msgs_msg.Header(stamp=header.stamp, frame_id=grid.frame_id),
            info=MapMetaData(
                map_load_time=header.stamp,
                resolution=float(grid.resolution_m),
                width=cols,
                height=rows,
                origin=geometry_msgs_msg.Pose(
                    position=geometry_msgs_msg.Point(x=origin_x, y=origin_y, z=0.0),
                    orientation=geometry_msgs_msg.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
                ),
            ),
            data=data,
        )
        camera.grid_publisher.publish(occupancy)

    def _publish_objects(
        self, camera: _Camera, header: Any, result: Any, config: Config, wanted: set[str]
    ) -> None:
        """Place the frame's instances on the ground and publish them (and the markers)."""
        if camera.camera_info is None:
            self._warn(
                f"{camera.name}:objects", f"{camera.name}: no CameraInfo yet; objects skipped"
            )
            return
        try:
            camera_from_ground = self._camera_from_ground(header, config)
            model = CameraModel.from_camera_info(camera.camera_info)
            located = locate_objects(
                result,
                model,
                camera_from_ground,
                ObjectParams.from_config(config.objects, config.grid),
            )
        except Exception as err:  # TF raises several kinds; CameraInfo may be malformed
            self._problem(camera, "objects", f"no objects: {first_line(err)}", lost=False)
            return
        for reason, count in located.left_out.items():
            camera.objects_left_out[reason] = camera.objects_left_out.get(reason, 0) + count
        frame_id = config.grid.frame_id
        messages = {
            "objects": lambda: object_detection_array(
                self._classes, header.stamp, frame_id, located.objects
            ),
            "objects_markers": lambda: object_markers(
                self._classes,
                header.stamp,
                frame_id,
                located.objects,
                {c.name: c.color_rgb for c in self.pipeline.labels.classes},
            ),
        }
        for name in GROUND_TOPICS:
            publisher = camera.ground_publishers.get(name)
            if name in wanted and publisher is not None:
                publisher.publish(messages[name]())

    def _camera_from_ground(self, header: Any, config: Config) -> Any:
        """[4, 4] ground -> optical frame at the image stamp; raises what tf2 raises."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        transform = self._tf_buffer.lookup_transform(
            header.frame_id,
            config.grid.frame_id,
            Time.from_msg(header.stamp),
            timeout=Duration(seconds=config.grid.tf_timeout_s),
        ).transform
        return transform_matrix(
            (transform.translation.x, transform.translation.y, transform.translation.z),
            (
                transform.rotation.x,
                transform.rotation.y,
                transform.rotation.z,
                transform.rotation.w,
            ),
        )

    # ---------------------------------------------------------------- diagnostics

    def publish_diagnostics(self) -> None:
        """One DiagnosticStatus per camera (called at 1 Hz on the steady clock)."""
        now_ns = time.monotonic_ns()
        statuses = []
        backend = f"{self.pipeline.backend.name} on {self.pipeline.backend.device}"
        model = str(self.pipeline.backend.model_path)
        for camera in self._cameras.values():
            camera.stats.record_drops(self._mailbox.dropped(camera.name))
            health = camera.stats.health(now_ns, self._thresholds)
            values = [KeyValue(key=k, value=v) for k, v in health.values]
            values += [
                KeyValue(key="backend", value=backend),
                KeyValue(key="model", value=model),
                KeyValue(key="input_topic", value=camera.image_topic),
            ]
            if camera.ground_publishers:
                values += [
                    KeyValue(
                        key=f"objects_left_out_{reason}",
                        value=str(camera.objects_left_out.get(reason, 0)),
                    )
                    for reason in LEFT_OUT_REASONS
                ]
            statuses.append(
                DiagnosticStatus(
                    level=bytes([int(health.level)]),
                    name=f"{self.get_name()}: {camera.name}",
                    message=health.message,
                    hardware_id=backend,
                    values=values,
                )
            )
        self._diagnostics.publish(
            DiagnosticArray(
                header=std_msgs_msg.Header(stamp=self.get_clock().now().to_msg()),
                status=statuses,
            )
        )

    # ---------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        """Stop the worker, close the backend, then destroy the node."""
        self._release()
        logging.getLogger("panoptic_ros").removeHandler(self._log_handler)
        super().destroy_node()


class PanopticNode(_PanopticNodeCore):
    """Panoptic segmentation of one or more cameras (configures and activates itself).

    Args:
        pipeline_factory: Builds the pipeline from the validated config (tests pass a
            small fake; the default loads the model and starts the backend).
        node_kwargs: Passed to ``rclpy.node.Node`` (``namespace``, ``parameter_overrides``...).

    Raises:
        ConfigError: A parameter is invalid (one line naming it).
        PanopticError: The model or backend cannot start.
    """

    def __init__(
        self,
        *,
        pipeline_factory: Callable[[Config], PanopticPipeline] = PanopticPipeline.from_config,
        **node_kwargs: Any,
    ) -> None:
        Node.__init__(self, NODE_NAME, **node_kwargs)
        self._setup(pipeline_factory)
        self._configure()
        try:
            self._activate()
        except BaseException:
            self._cleanup()
            raise


class PanopticLifecycleNode(LifecycleNode, _PanopticNodeCore):
    """The same node, managed: ``configure``, ``activate``... come from outside.

    Construction only declares the parameters. Each transition callback runs the shared
    step and answers SUCCESS, or FAILURE with one logged line saying why (a
    :class:`~panoptic_ros.errors.PanopticError`: a bad parameter, a missing model file, a
    backend that cannot start), leaving the node in the state the transition started from
    with nothing half-loaded. Anything else is an ERROR: error processing releases
    everything and returns the node to unconfigured. Restart-only parameters may be changed
    while unconfigured (fix a model path, then configure again).

    Args:
        pipeline_factory: As for :class:`PanopticNode`.
        node_kwargs: Passed to ``rclpy.lifecycle.LifecycleNode``.

    Raises:
        ConfigError: A given parameter value has the wrong type or range.
    """

    _READ_ONLY_DESCRIPTORS = False
    _RESTART_HINT = "deactivate and clean up the node, set it, then configure again"

    def __init__(
        self,
        *,
        pipeline_factory: Callable[[Config], PanopticPipeline] = PanopticPipeline.from_config,
        **node_kwargs: Any,
    ) -> None:
        LifecycleNode.__init__(self, NODE_NAME, **node_kwargs)
        self._active = False
        self._setup(pipeline_factory)

    def _create_output_publisher(
        self, msg_type: Any, topic: str, qos: QoSProfile | int, **kwargs: Any
    ) -> Any:
        publisher = self.create_lifecycle_publisher(msg_type, topic, qos, **kwargs)
        if self._active:  # switched on by a parameter while active: publish at once
            publisher.on_activate(_ACTIVE)
        return publisher

    def _destroy_output_publisher(self, publisher: Any) -> None:
        self.destroy_lifecycle_publisher(publisher)

    def _step(self, name: str, step: Callable[[], None]) -> TransitionCallbackReturn:
        """Run one shared step and say how it went.

        Returns:
            SUCCESS; FAILURE for a :class:`~panoptic_ros.errors.PanopticError` (the step has
            undone itself), with the reason in one logged line; ERROR, also said in one line,
            for anything else (rclpy then runs :meth:`on_error`).
        """
        started = time.monotonic()
        try:
            step()
        except PanopticError as err:
            self.get_logger().error(f"{name} failed: {first_line(err)}")
            return TransitionCallbackReturn.FAILURE
        except Exception as err:  # rclpy would turn it into ERROR without a word
            self.get_logger().error(
                f"{name} failed: unexpected {type(err).__name__}: {first_line(err)}"
            )
            return TransitionCallbackReturn.ERROR
        self.get_logger().info(f"{name} done in {time.monotonic() - started:.1f} s")
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters, load the model, create the (inactive) publishers."""
        return self._step("configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, subscribe, start the worker."""
        # Publishers first, so that the first frame's outputs are not dropped.
        super().on_activate(state)
        self._active = True
        result = self._step("activate", self._activate)
        if result != TransitionCallbackReturn.SUCCESS:
            self._active = False
            super().on_deactivate(state)
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker and unsubscribe, disable the publishers; the model stays loaded."""
        result = self._step("deactivate", self._deactivate)
        if result == TransitionCallbackReturn.SUCCESS:
            self._active = False
            super().on_deactivate(state)
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and unload the model."""
        return self._step("cleanup", self._cleanup)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release whatever the state it came from holds."""
        self._active = False
        result = self._step(f"shutdown from {state.label}", self._release)
        super().on_deactivate(state)
        return result

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A step raised something unexpected: release everything, back to unconfigured."""
        self._active = False
        self.get_logger().error(
            f"error processing after a failed transition from {state.label}: "
            "releasing everything to return to unconfigured"
        )
        result = self._step("error processing", self._release)
        super().on_deactivate(state)
        return result

    def destroy_node(self) -> None:
        """Release everything whatever the state, then destroy the node."""
        self._active = False
        _PanopticNodeCore.destroy_node(self)


def _spin(node_class: Callable[[], _PanopticNodeCore], args: list[str] | None) -> int:
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        rclpy.spin(node)
    except PanopticError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def main(args: list[str] | None = None) -> int:
    """``ros2 run panoptic_ros panoptic_node``: spin until shutdown; 1 on a start-up error."""
    return _spin(PanopticNode, args)


def lifecycle_main(args: list[str] | None = None) -> int:
    """``ros2 run panoptic_ros panoptic_lifecycle_node``: the managed node, unconfigured.

    Bring it up with ``ros2 lifecycle set <node> configure`` then ``activate``, or with a
    lifecycle manager. Returns 1 when a parameter value is refused at construction.
    """
    return _spin(PanopticLifecycleNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
