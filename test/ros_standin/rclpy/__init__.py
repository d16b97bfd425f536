"""Stand-in for the parts of rclpy panoptic_node uses (see ../README.md)."""

from __future__ import annotations

from typing import Any

from rclpy import logging  # noqa: F401  (rclpy.logging is an attribute of the package)
from rclpy.graph import GRAPH

_initialized = False


def init(*, args: list[str] | None = None, context: Any = None) -> None:
    """Start the (in-process) middleware."""
    global _initialized  # noqa: PLW0603
    del args, context
    _initialized = True


def ok(*, context: Any = None) -> bool:
    """True between init and shutdown."""
    del context
    return _initialized


def shutdown(*, context: Any = None) -> None:
    """Stop the middleware and forget every topic."""
    global _initialized  # noqa: PLW0603
    del context
    _initialized = False
    GRAPH.clear()


def spin(node: Any, executor: Any = None) -> None:
    """Not supported: tests call the node's callbacks through the graph directly."""
    raise NotImplementedError("the rclpy stand-in has no executor")
