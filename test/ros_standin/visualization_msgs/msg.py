"""Stand-in visualization_msgs.msg: rclpy-like classes generated from the rosbags typestore."""

from standin_messages import module_namespace

globals().update(module_namespace("visualization_msgs"))
