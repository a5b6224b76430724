"""The Twill demo: scheduler + perception + planner.

    ros2 launch twill_ros demo.launch.py policy:=gpu_fifo budget:=10.0
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the whole demo: scheduler, clients "
                                          "and their /twill interfaces."),
        DeclareLaunchArgument("policy", default_value="twill",
                              description="Scheduling policy (twill, gpu_fifo, edf, ...)."),
        DeclareLaunchArgument("budget", default_value="15.0",
                              description="Module power budget in watts."),
        DeclareLaunchArgument("platform", default_value="orin_nx_16gb",
                              description="Platform file under config/platforms/ or a path."),
        DeclareLaunchArgument("detector_model", default_value="yolov8s",
                              description="Catalog model of the camera-rate detector."),
        DeclareLaunchArgument("detector_rate_hz", default_value="30.0",
                              description="Camera rate: detector jobs per second."),
        DeclareLaunchArgument("planner_model", default_value="llama-3.2-1b",
                              description="Catalog LLM of the planner."),
    ]
    scheduler = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("twill_ros"), "launch", "twill.launch.py"])),
        launch_arguments={"namespace": LaunchConfiguration("namespace"),
                          "policy": LaunchConfiguration("policy"),
                          "budget": LaunchConfiguration("budget"),
                          "platform": LaunchConfiguration("platform")}.items())
    perception = Node(
        package="twill_ros", executable="perception_node", name="perception_node",
        output="screen",
        parameters=[{"detector.model": LaunchConfiguration("detector_model"),
                     "detector.rate_hz": ParameterValue(LaunchConfiguration("detector_rate_hz"),
                                                        value_type=float)}])
    planner = Node(
        package="twill_ros", executable="planner_node", name="planner_node", output="screen",
        parameters=[{"planner.model": LaunchConfiguration("planner_model")}])
    return LaunchDescription([*args, scheduler, PushRosNamespace(
        LaunchConfiguration("namespace")), perception, planner])
