"""Start the Twill scheduler.

    ros2 launch twill_ros twill.launch.py policy:=gpu_fifo budget:=10.0
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the scheduler node and its "
                                          "twill/* interfaces (clients in the same "
                                          "namespace find it)."),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution(
            [FindPackageShare("twill_ros"), "config", "twill.yaml"]),
            description="Parameter file for twill_scheduler."),
        DeclareLaunchArgument("platform", default_value="orin_nx_16gb",
                              description="Platform file under config/platforms/ or a path."),
        DeclareLaunchArgument("policy", default_value="twill",
                              description="Scheduling policy (twill, gpu_fifo, edf, ...)."),
        DeclareLaunchArgument("budget", default_value="15.0",
                              description="Module power budget in watts."),
    ]
    scheduler = Node(
        package="twill_ros",
        executable="twill_scheduler",
        name="twill_scheduler",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "platform": LaunchConfiguration("platform"),
                "policy": LaunchConfiguration("policy"),
                # budget:=10 reads as an integer; the parameter is a double
                "power_budget_w": ParameterValue(LaunchConfiguration("budget"), value_type=float),
            },
        ],
    )
    return LaunchDescription([*args, scheduler])
