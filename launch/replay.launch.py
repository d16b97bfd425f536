"""Play a rosbag2 with --clock, run panoptic_node on sim time, open RViz.

Examples:
  ros2 launch panoptic_ros replay.launch.py bag:=/data/drive_2024_05_01
  ros2 launch panoptic_ros replay.launch.py \
      bag:=$(ros2 pkg prefix panoptic_ros)/share/panoptic_ros/samples/synthetic_street \
      image_topic:=/camera/image_raw/compressed input_transport:=compressed rate:=0.5
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from panoptic_ros.ros.launch_arguments import FROM_PARAMS_FILE


def generate_launch_description() -> LaunchDescription:
    """The bag player, the node (via panoptic.launch.py) and RViz."""
    share = FindPackageShare("panoptic_ros")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to play (MCAP or sqlite3)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument(
            "loop", default_value="false", choices=["true", "false"], description="loop the bag"
        ),
        DeclareLaunchArgument(
            "image_topic",
            default_value=FROM_PARAMS_FILE,
            description="image topic in the bag (without /compressed); empty: the params "
            "file's node.image_topics (by default /camera/image_raw)",
        ),
        DeclareLaunchArgument(
            "input_transport",
            default_value=FROM_PARAMS_FILE,
            choices=[FROM_PARAMS_FILE, "raw", "compressed"],
            description="raw Image or CompressedImage topic; empty: the params file's",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "panoptic.yaml"]),
            description="ROS 2 parameters file for the node",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="true", choices=["true", "false"], description="open RViz"
        ),
    ]
    player = ExecuteProcess(
        cmd=[
            "ros2",
            "bag",
            "play",
            LaunchConfiguration("bag"),
            "--clock",
            "--rate",
            LaunchConfiguration("rate"),
        ],
        output="screen",
        condition=UnlessCondition(LaunchConfiguration("loop")),
    )
    looping = ExecuteProcess(
        cmd=[
            "ros2",
            "bag",
            "play",
            LaunchConfiguration("bag"),
            "--clock",
            "--loop",
            "--rate",
            LaunchConfiguration("rate"),
        ],
        output="screen",
        condition=IfCondition(LaunchConfiguration("loop")),
    )
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([share, "launch", "panoptic.launch.py"])
        ),
        launch_arguments={
            "use_sim_time": "true",
            "image_topic": LaunchConfiguration("image_topic"),
            "input_transport": LaunchConfiguration("input_transport"),
            "params_file": LaunchConfiguration("params_file"),
            "rviz": LaunchConfiguration("rviz"),
        }.items(),
    )
    return LaunchDescription([*arguments, player, looping, node])
