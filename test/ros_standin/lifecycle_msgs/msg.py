"""Stand-in lifecycle_msgs.msg: State and Transition with their Jazzy constants (rosbags)."""

from standin_messages import module_namespace

globals().update(module_namespace("lifecycle_msgs"))
