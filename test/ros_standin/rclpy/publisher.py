"""rclpy.publisher: the stand-in's Publisher lives in rclpy.node (re-exported here)."""

from __future__ import annotations

from rclpy.node import Publisher

__all__ = ["Publisher"]
