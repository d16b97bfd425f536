"""rclpy.time.Time and rclpy.duration.Duration essentials."""

from __future__ import annotations

from typing import Any

_NS = 1_000_000_000


class Time:
    def __init__(self, *, seconds: float = 0, nanoseconds: int = 0, clock_type: Any = None) -> None:
        self.nanoseconds = int(seconds * _NS) + int(nanoseconds)
        self.clock_type = clock_type

    def to_msg(self) -> Any:
        from builtin_interfaces.msg import Time as TimeMsg

        sec, nanosec = divmod(self.nanoseconds, _NS)
        return TimeMsg(sec=sec, nanosec=nanosec)

    @classmethod
    def from_msg(cls, msg: Any, clock_type: Any = None) -> Time:
        return cls(seconds=msg.sec, nanoseconds=msg.nanosec, clock_type=clock_type)
