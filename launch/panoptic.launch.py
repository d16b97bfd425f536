"""Start panoptic_node on one or more cameras (optionally with RViz).

Examples:
  ros2 launch panoptic_ros panoptic.launch.py
  ros2 launch panoptic_ros panoptic.launch.py image_topic:=/front_camera/image_raw
  ros2 launch panoptic_ros panoptic.launch.py params_file:=/path/vehicle.yaml rviz:=true
  ros2 launch panoptic_ros panoptic.launch.py model_file_path:=/models/city.onnx backend:=tensorrt
  ros2 launch panoptic_ros panoptic.launch.py managed:=true
  ros2 lifecycle set /panoptic/panoptic_node configure   # then: activate

The camera, transport, model and backend arguments are empty by default: the params file
decides, and an argument overrides it only when given (panoptic_ros.ros.launch_arguments).
With managed:=true the node is a lifecycle node under the same name: it loads nothing and
publishes nothing until configured and activated (ros2 lifecycle set, a lifecycle manager).
"""

from __future__ import annotations

from typing import Any

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription
from panoptic_ros.ros.launch_arguments import (
    EXECUTABLES,
    FROM_PARAMS_FILE,
    MANAGED_CHOICES,
    PARAMETER_ARGUMENTS,
    is_managed,
    node_parameter_overrides,
)


def _node(context: LaunchContext, *_: Any) -> list[Node]:
    """The node, given the params file and only the overriding arguments actually set."""
    given = {name: LaunchConfiguration(name).perform(context) for name in PARAMETER_ARGUMENTS}
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context) == "true"
    managed = is_managed(LaunchConfiguration("managed").perform(context))
    # LifecycleNode is a Node action that also routes lifecycle launch events to the node.
    node_action = LifecycleNode if managed else Node
    return [
        node_action(
            package="panoptic_ros",
            executable=EXECUTABLES[managed],
            name="panoptic_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            # Later entries win: the overrides hold only what the user gave.
            parameters=[
                LaunchConfiguration("params_file"),
                {"use_sim_time": use_sim_time, **node_parameter_overrides(given)},
            ],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node (and RViz when asked)."""
    share = FindPackageShare("panoptic_ros")
    arguments = [
        DeclareLaunchArgument(
            "image_topic",
            default_value=FROM_PARAMS_FILE,
            description="input image topic of a single camera, overriding node.image_topics "
            "(empty: the params file's, by default /camera/image_raw); compressed transport "
            "appends /compressed",
        ),
        DeclareLaunchArgument(
            "input_transport",
            default_value=FROM_PARAMS_FILE,
            choices=[FROM_PARAMS_FILE, "raw", "compressed"],
            description="sensor_msgs/Image (raw) or sensor_msgs/CompressedImage (compressed); "
            "empty: the params file's (by default raw)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "panoptic.yaml"]),
            description="ROS 2 parameters file; every parameter is documented in the default one",
        ),
        DeclareLaunchArgument(
            "model_file_path",
            default_value=FROM_PARAMS_FILE,
            description="ONNX model; empty: the params file's (by default the bundled demo "
            "model, trained on synthetic data only)",
        ),
        DeclareLaunchArgument(
            "engine_file_path",
            default_value=FROM_PARAMS_FILE,
            description="TensorRT plan; empty: the params file's (by default built from the "
            "model into the engine cache)",
        ),
        DeclareLaunchArgument(
            "backend",
            default_value=FROM_PARAMS_FILE,
            choices=[FROM_PARAMS_FILE, "auto", "tensorrt", "onnxruntime", "torch"],
            description="inference backend; auto = TensorRT > torch CUDA > ONNX Runtime; "
            "empty: the params file's (by default auto)",
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
            "managed",
            default_value=MANAGED_CHOICES[0],
            choices=list(MANAGED_CHOICES),
            description="start the managed (lifecycle) node instead, under the same name: it "
            "loads the model on configure and publishes only while active; bring it up with "
            "ros2 lifecycle set <namespace>/panoptic_node configure, then activate, or with a "
            "lifecycle manager",
        ),
        DeclareLaunchArgument(
            "rviz",
            default_value="false",
            choices=["true", "false"],
            description="also open RViz with rviz/panoptic.rviz",
        ),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "panoptic.rviz"])],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=_node), rviz])
