"""tf2_ros.TransformListener essentials: subscribes /tf and /tf_static into a buffer."""

from __future__ import annotations

from typing import Any


class TransformListener:
    def __init__(self, buffer: Any, node: Any, *, spin_thread: bool = False, **_: Any) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        self.node = node
        self.tf_sub = node.create_subscription(
            TFMessage, "/tf", self._callback, QoSProfile(depth=100)
        )
        self.tf_static_sub = node.create_subscription(
            TFMessage,
            "/tf_static",
            self._static_callback,
            QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )

    def unregister(self) -> None:
        """Destroy the two subscriptions (tf2_ros' name)."""
        self.node.destroy_subscription(self.tf_sub)
        self.node.destroy_subscription(self.tf_static_sub)

    def _callback(self, message: Any) -> None:
        for transform in message.transforms:
            self.buffer.set_transform(transform, "default_authority")

    def _static_callback(self, message: Any) -> None:
        for transform in message.transforms:
            self.buffer.set_transform_static(transform, "default_authority")
