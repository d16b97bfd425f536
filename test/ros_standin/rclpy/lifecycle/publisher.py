"""Stand-in rclpy.lifecycle.publisher: a publisher that drops messages unless activated."""

from __future__ import annotations

from typing import Any

from rclpy.publisher import Publisher

from .managed_entity import SimpleManagedEntity


class LifecyclePublisher(SimpleManagedEntity, Publisher):
    """Publishes only between its node's activate and deactivate (rclpy drops silently)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        SimpleManagedEntity.__init__(self)
        Publisher.__init__(self, *args, **kwargs)

    @SimpleManagedEntity.when_enabled
    def publish(self, msg: Any) -> None:
        Publisher.publish(self, msg)
