"""rclpy.duration.Duration essentials."""

from __future__ import annotations


class Duration:
    def __init__(self, *, seconds: float = 0, nanoseconds: int = 0) -> None:
        self.nanoseconds = int(seconds * 1_000_000_000) + int(nanoseconds)
