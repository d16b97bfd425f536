"""Stand-in tf2_msgs.msg."""

from standin_messages import module_namespace

globals().update(module_namespace("tf2_msgs"))
