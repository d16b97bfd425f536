"""Stand-in builtin_interfaces.msg: rclpy-like classes generated from the rosbags typestore."""

from standin_messages import module_namespace

globals().update(module_namespace("builtin_interfaces"))
