"""Stand-in rclpy.lifecycle (see ../../README.md): the names real rclpy exports here."""

from __future__ import annotations

from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

from .managed_entity import ManagedEntity, SimpleManagedEntity
from .node import LifecycleNode, LifecycleNodeMixin, LifecycleState
from .publisher import LifecyclePublisher

# The aliases real rclpy defines beside its __all__.
Node = LifecycleNode
NodeMixin = LifecycleNodeMixin
State = LifecycleState
Publisher = LifecyclePublisher
TransitionCallbackReturn = _rclpy.TransitionCallbackReturnType

__all__ = [
    "LifecycleNode",
    "LifecycleNodeMixin",
    "LifecyclePublisher",
    "LifecycleState",
    "ManagedEntity",
    "SimpleManagedEntity",
]
