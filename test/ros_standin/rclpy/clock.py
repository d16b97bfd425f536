"""rclpy.clock: ROS, system and steady clocks."""

from __future__ import annotations

import enum
import time as _time

from rclpy.time import Time


class ClockType(enum.IntEnum):
    UNINITIALIZED = 0
    ROS_TIME = 1
    SYSTEM_TIME = 2
    STEADY_TIME = 3


class Clock:
    def __init__(self, *, clock_type: ClockType = ClockType.SYSTEM_TIME) -> None:
        self.clock_type = clock_type

    def now(self) -> Time:
        if self.clock_type == ClockType.STEADY_TIME:
            return Time(nanoseconds=_time.monotonic_ns(), clock_type=self.clock_type)
        return Time(nanoseconds=_time.time_ns(), clock_type=self.clock_type)


class ROSClock(Clock):
    def __init__(self) -> None:
        super().__init__(clock_type=ClockType.ROS_TIME)
