"""The ROS 2 side: the rclpy node and the modules only it uses.

:mod:`panoptic_ros.ros.node` is the only module of the package that imports rclpy and ROS
message packages. Its helpers (per-camera statistics, the newest-frame mailbox, the ground
grid projection and the launch-argument mapping) are plain Python and NumPy, tested
without ROS. This ``__init__`` imports nothing, so the launch files can use
:mod:`panoptic_ros.ros.launch_arguments` without loading the node.
"""
