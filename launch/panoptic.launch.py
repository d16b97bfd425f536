"""Start panoptic_node on one or more cameras (optionally with RViz).

Examples:
  ros2 launch panoptic_ros panoptic.launch.py
  ros2 launch panoptic_ros panoptic.launch.py image_topic:=/front_camera/image_raw
  ros2 launch panoptic_ros panoptic.launch.py params_file:=/path/vehicle.yaml rviz:=true
  ros2 launch panoptic_ros panoptic.launch.py model_file_path:=/models/city.onnx backend:=tensorrt
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node (and RViz when asked)."""
    share = FindPackageShare("panoptic_ros")
    arguments = [
        DeclareLaunchArgument(
            "image_topic",
            default_value="/camera/image_raw",
            description="input image topic of the first camera (node.image_topics in the "
            "params file sets several); compressed transport appends /compressed",
        ),
        DeclareLaunchArgument(
            "input_transport",
            default_value="raw",
            choices=["raw", "compressed"],
            description="sensor_msgs/Image (raw) or sensor_msgs/CompressedImage (compressed)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "panoptic.yaml"]),
            description="ROS 2 parameters file; every parameter is documented in the default one",
        ),
        DeclareLaunchArgument(
            "model_file_path",
            default_value="",
            description="ONNX model; empty = the bundled demo model (synthetic data only)",
        ),
        DeclareLaunchArgument(
            "engine_file_path",
            default_value="",
            description="TensorRT plan; empty = built from the model into the engine cache",
        ),
        DeclareLaunchArgument(
            "backend",
            default_value="auto",
            choices=["auto", "tensorrt", "onnxruntime", "torch"],
            description="inference backend; auto = TensorRT > torch CUDA > ONNX Runtime",
        ),
        DeclareLaunchArgument(
            "namespace",
            default_value="panoptic",
            description="namespace of the node and its outputs (<namespace>/<camera>/...)",
        ),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            choices=["true", "false"],
            description="use /clock (bag replay with --clock)",
        ),
        DeclareLaunchArgument(
            "rviz",
            default_value="false",
            choices=["true", "false"],
            description="also open RViz with rviz/panoptic.rviz",
        ),
    ]
    node = Node(
        package="panoptic_ros",
        executable="panoptic_node",
        name="panoptic_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "model.model_file_path": LaunchConfiguration("model_file_path"),
                "model.engine_file_path": LaunchConfiguration("engine_file_path"),
                "backend.name": LaunchConfiguration("backend"),
                # A list of substitution lists: launch_ros makes it a string array (a flat
                # list of substitutions would be joined into one string).
                "node.image_topics": [[LaunchConfiguration("image_topic")]],
                "node.input_transport": LaunchConfiguration("input_transport"),
            },
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "panoptic.rviz"])],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
