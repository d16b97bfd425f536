"""Filling a 1920x1080 image message: the node's way against element-wise assignment.

python benchmarks/message_fill.py          # prints ms per message, one run, same classes

The message classes are the rclpy stand-in's (test/ros_standin): their ``uint8[]`` setter
behaves as rosidl_generator_py's does with field checks on (an ``array.array('B')`` is kept
as it is; anything else is checked and converted element by element in Python), so the
ratio shows what the node saves under real rclpy. Absolute times are this machine's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test" / "ros_standin"))

from builtin_interfaces import msg as builtin_interfaces_msg  # noqa: E402
from geometry_msgs import msg as geometry_msgs_msg  # noqa: E402
from sensor_msgs import msg as sensor_msgs_msg  # noqa: E402
from std_msgs import msg as std_msgs_msg  # noqa: E402
from vision_msgs import msg as vision_msgs_msg  # noqa: E402

from panoptic_ros.ros_messages import MessageClasses, image_message  # noqa: E402

HEIGHT, WIDTH = 1080, 1920


def _time_ms(fill: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, message = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        message = fill()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), message


def main() -> None:
    """Time three ways of filling the same bgr8 frame and check they hold the same bytes."""
    classes = MessageClasses.from_modules(
        builtin_interfaces=builtin_interfaces_msg,
        std_msgs=std_msgs_msg,
        sensor_msgs=sensor_msgs_msg,
        geometry_msgs=geometry_msgs_msg,
        vision_msgs=vision_msgs_msg,
    )
    bgr = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    header = std_msgs_msg.Header(frame_id="camera")

    def element_wise(value: Any) -> Callable[[], Any]:
        def fill() -> Any:
            message = sensor_msgs_msg.Image(
                header=header, height=HEIGHT, width=WIDTH, encoding="bgr8", step=WIDTH * 3
            )
            message.data = value()
            return message

        return fill

    ways = {
        "node (ros_messages.image_message)": (
            lambda: image_message(classes, header, bgr, "bgr8"),
            20,
        ),
        "msg.data = frame.tobytes()": (element_wise(bgr.tobytes), 2),
        "msg.data = frame.ravel().tolist()": (element_wise(lambda: bgr.ravel().tolist()), 2),
    }
    expected = bgr.tobytes()
    results = {}
    for name, (fill, repeats) in ways.items():
        ms, message = _time_ms(fill, repeats)
        assert bytes(message.data) == expected, name
        results[name] = ms
    fastest = results["node (ros_messages.image_message)"]
    print(f"sensor_msgs/Image bgr8 {WIDTH}x{HEIGHT} ({len(expected) / 1e6:.1f} MB), median ms")
    for name, ms in results.items():
        print(f"  {name:<36} {ms:10.1f} ms  {ms / fastest:8.0f}x")


if __name__ == "__main__":
    main()
